"""Command-line verbs of the circuits package, registered as ``sae_toolkit.commands`` entry
points (see ``sae/cli.py`` for the module interface: NAME, HELP, add_arguments, run)."""
