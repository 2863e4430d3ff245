"""The fixture cache keeps one set of SAEs per seed and width: training afresh removes the stale ones."""

import json

from tests.circuits.conftest import LEGACY_D_SAE, RECIPE, _remove_stale


def test_a_fresh_cache_removes_the_stale_caches_of_its_seed_and_width(tmp_path):
    def cache(name: str, done: str | None) -> object:
        folder = tmp_path / f"tiny-saes-{name}"
        (folder / "run").mkdir(parents=True)
        if done is not None:
            (folder / "DONE").write_text(done)
        return folder

    seed, width = RECIPE["seed"], RECIPE["d_sae"]
    fresh = cache("new", json.dumps({"seed": seed, "d_sae": width}))
    same_seed, legacy = cache("old", json.dumps({"seed": seed, "d_sae": width})), cache("legacy", "ok\n")
    other_seed = cache("other", json.dumps({"seed": seed + 1, "d_sae": width}))
    other_width = cache("wide", json.dumps({"seed": seed, "d_sae": width * 2}))
    unrecorded_width = cache("unrecorded", json.dumps({"seed": seed}))  # written before widths were recorded
    unfinished, unrelated = cache("training", None), tmp_path / "something-else"
    unrelated.mkdir()
    _remove_stale(fresh)
    assert not same_seed.exists() and not legacy.exists()
    assert fresh.exists() and other_seed.exists() and other_width.exists()
    assert unfinished.exists() and unrelated.exists()
    assert unrecorded_width.exists() == (width != LEGACY_D_SAE)  # such caches hold 1,536-latent SAEs
