"""Where the circuits tests cached their fixture SAEs (tests/circuits/conftest.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def fixture_saes(seed: int | None = None) -> Path:
    """The cached ``tiny_saes`` folder of SAE folders for ``seed`` (default: SAE_FIXTURE_SEED or
    0); exits with one line when the tests have not trained it yet."""
    if seed is not None:
        os.environ["SAE_FIXTURE_SEED"] = str(seed)
    sys.path.insert(0, str(ROOT / "tests" / "circuits"))
    import conftest
    saes = ROOT / ".pytest_cache" / "d" / f"tiny-saes-{conftest._cache_key()}" / "run" / "saes"
    if not saes.is_dir():
        sys.exit(f"error: no cached fixture SAEs at {saes}; run `python scripts/fixture_seeds.py --seeds "
                 f"{conftest.RECIPE['seed']} --logs LOGS` (or the slow circuits tests) first, or pass --saes")
    return saes


if __name__ == "__main__":  # python scripts/fixture_path.py [SEED]: print the folder
    print(fixture_saes(int(sys.argv[1]) if len(sys.argv) > 1 else None))
