"""Analysis of trained sparse dictionaries: feature flow across layers, interventions
(ablation and steering), sparse feature circuits, and feature dashboards.

Imports point one way: ``circuits`` uses ``activations`` and ``sae``, never the reverse. Its
command-line verbs (``sae flow``, ``sae steer``, ``sae circuit``, ``sae dashboard``) live in
``circuits/commands/`` and reach the ``sae`` command through the ``sae_toolkit.commands``
entry-point group declared in pyproject.toml.
"""
