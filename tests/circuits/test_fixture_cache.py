"""The fixture cache keeps one set of SAEs per seed: training afresh removes the stale ones."""

import json

from tests.circuits.conftest import RECIPE, _remove_stale


def test_a_fresh_cache_removes_the_stale_caches_of_its_seed(tmp_path):
    def cache(name: str, done: str | None) -> object:
        folder = tmp_path / f"tiny-saes-{name}"
        (folder / "run").mkdir(parents=True)
        if done is not None:
            (folder / "DONE").write_text(done)
        return folder

    seed = RECIPE["seed"]
    fresh = cache("new", json.dumps({"seed": seed}))
    same_seed, legacy = cache("old", json.dumps({"seed": seed})), cache("legacy", "ok\n")
    other_seed = cache("other", json.dumps({"seed": seed + 1}))
    unfinished, unrelated = cache("training", None), tmp_path / "something-else"
    unrelated.mkdir()
    _remove_stale(fresh)
    assert not same_seed.exists() and not legacy.exists()
    assert fresh.exists() and other_seed.exists() and unfinished.exists() and unrelated.exists()
