"""The command line shared by the scripts that take tiny-model checkpoint folders as arguments."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable


def run(main: Callable[[list[str]], None], doc: str | None) -> None:
    """``main(sys.argv[1:])``; ``-h`` prints ``doc``, and a folder that is not a checkpoint
    (``activations.tiny.train.check_checkpoint``, or ``load_model``'s ``ToolkitError``) is a
    one-line error with a non-zero exit."""
    if {"-h", "--help"} & set(sys.argv[1:]):
        print(doc)
        raise SystemExit(0)
    from activations.errors import ToolkitError
    from activations.tiny.train import NotACheckpoint
    try:
        main(sys.argv[1:])
    except (NotACheckpoint, ToolkitError) as err:
        raise SystemExit(f"error: {err}") from None


def need_folders(folders: list[str]) -> None:
    """A one-line error and a non-zero exit when no checkpoint folder was given."""
    if not folders:
        raise SystemExit("give one or more checkpoint folders, e.g. activations/tiny/checkpoint")


def print_table(title: str, columns: list[str], rows: Iterable[tuple[str, list[str]]]) -> None:
    """A markdown table with ``title`` over the row labels and one column per entry of
    ``columns``; each row is printed as soon as ``rows`` yields it."""
    print(f"| {title} | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for label, cells in rows:
        print(f"| {label} | " + " | ".join(cells) + " |")
