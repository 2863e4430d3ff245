"""The ``sae`` command line: thin verbs over the Python API.

Each verb is a module exposing ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``. Built-in verbs live in ``sae/commands/``; other packages (``circuits``)
add theirs through the ``sae_toolkit.commands`` entry-point group, so ``sae`` never imports
``circuits``. A ``ToolkitError``, an ``OSError`` (a read-only folder, a file where a
folder should be) or a malformed command line (``--tokens abc``) becomes one ``error: ...``
line and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from importlib.metadata import PackageNotFoundError, entry_points, version

from activations.errors import ToolkitError

ENTRY_POINT_GROUP = "sae_toolkit.commands"


def _verb_modules() -> list:
    import sae.commands
    modules = [importlib.import_module(f"sae.commands.{m.name}")
               for m in pkgutil.iter_modules(sae.commands.__path__)]
    modules += [ep.load() for ep in entry_points(group=ENTRY_POINT_GROUP)]
    return sorted((m for m in modules if hasattr(m, "NAME")), key=lambda m: m.NAME)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad command line is one line naming the verb and where to read more,
    not a usage block followed by the error (its sub-parsers are of this class too)."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see '{self.prog} --help')\n")


def _version() -> str:
    try:
        return version("sae-toolkit")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "(not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="sae", description="Sparse-autoencoder interpretability toolkit.")
    parser.add_argument("--version", action="version", version=f"sae-toolkit {_version()}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    for module in _verb_modules():
        sub = verbs.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def os_error_line(err: OSError) -> str:
    """What went wrong and where: ``Not a directory: 'runs/x/config.json'``."""
    what = err.strerror or str(err)
    return f"{what}: '{err.filename}'" if err.filename is not None else what


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except ToolkitError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: {os_error_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; finished shards and checkpoints are kept, rerun with --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
