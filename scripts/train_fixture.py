"""Train the circuits fixture's SAEs (tests/circuits/conftest.py's recipe) for any checkpoint,
outside pytest, into a folder of its own:

    python scripts/train_fixture.py CKPT OUT          # CKPT: "tiny" or a checkpoint folder

``SAE_FIXTURE_SEED``, ``SAE_FIXTURE_D_SAE``, ``SAE_FIXTURE_K`` and ``SAE_FIXTURE_LR_SCALE`` change
the recipe as they do for the tests. The SAE folders land in ``OUT/saes`` (what
``scripts/unknown_entity_hooks.py --saes`` and ``sae circuit --saes`` read); about 100 s for
the 13 hooks at 512 latents on 2 cores. With a checkpoint folder this gives the dictionaries
``scripts/check_draw.sh`` would train for that draw, without a clone or a test run.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "circuits")]

import conftest  # noqa: E402
from activations.errors import ToolkitError  # noqa: E402


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: python scripts/train_fixture.py CKPT OUT")
    ckpt, out = sys.argv[1], Path(sys.argv[2])
    if out.exists():
        sys.exit(f"error: {out} exists; pick a new folder for the fixture's SAEs")
    started = time.time()
    try:
        conftest._train(out, ckpt)
    except ToolkitError as error:
        sys.exit(f"error: {error}")
    print(f"{out / 'saes'}: {conftest.RECIPE} in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
