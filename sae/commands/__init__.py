"""Built-in ``sae`` verbs, one module each (see ``sae.cli``)."""
