"""The command line shared by the scripts that take tiny-model checkpoint folders as arguments."""

from __future__ import annotations

import sys
from collections.abc import Callable


def run(main: Callable[[list[str]], None], doc: str | None) -> None:
    """``main(sys.argv[1:])``; ``-h`` prints ``doc``, and a folder that is not a checkpoint
    (``activations.tiny.train.check_checkpoint``) is a one-line error with a non-zero exit."""
    if {"-h", "--help"} & set(sys.argv[1:]):
        print(doc)
        raise SystemExit(0)
    from activations.tiny.train import NotACheckpoint
    try:
        main(sys.argv[1:])
    except NotACheckpoint as err:
        raise SystemExit(f"error: {err}") from None
