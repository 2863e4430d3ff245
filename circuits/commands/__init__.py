"""Command-line verbs of the circuits package, registered as ``sae_toolkit.commands`` entry
points (see ``sae/cli.py`` for the module interface: NAME, HELP, add_arguments, run)."""

from __future__ import annotations

from activations.errors import ToolkitError


def check_widths(model, model_name: str, saes) -> None:
    """Refuse an SAE whose input width is not the model's at its hook (it was trained on another model)."""
    for sae in saes:
        if model.hook_width(sae.cfg.hook) != sae.d_in:
            raise ToolkitError(f"the SAE on {sae.cfg.hook} has d_in {sae.d_in} but {model_name} has width "
                               f"{model.hook_width(sae.cfg.hook)} there; it belongs to another model")
