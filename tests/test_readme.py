"""The README's Python quickstart runs as written (with a smaller harvest), so the first code a
newcomer copies cannot rot."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def quickstart() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) == 1, "the README should hold one Python quickstart"
    return blocks[0]


def test_the_quickstart_runs_and_gives_what_its_comments_say(tmp_path, monkeypatch):
    code = quickstart()
    assert "tokens=500_000" in code
    monkeypatch.chdir(tmp_path)
    names: dict = {}
    exec(compile(code.replace("tokens=500_000", "tokens=20_000"), str(README), "exec"), names)
    hooks = ["blocks.1.hook_resid_post", "blocks.2.hook_resid_post"]
    assert {h: tuple(a.shape) for h, a in names["acts"].items()} == {h: (1, 15, 192) for h in hooks}
    batch = names["batch"]
    assert set(batch) == {*hooks, "token_ids", "sequence_ids", "positions"}
    assert all(batch[h].shape == (4096, 192) and str(batch[h].dtype) == "torch.float32" for h in hooks)
    assert (tmp_path / "acts" / "manifest.json").is_file() and names["source"].store.n_tokens >= 20_000
    live = next(names["live"].batches(256, seed=0))
    assert live["blocks.2.hook_resid_post"].shape == (256, 192)
