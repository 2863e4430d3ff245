"""Feature dashboards: one streamed pass over an activation store, one HTML page per feature.

``build_dashboard(DashboardConfig(...))`` (the ``sae dashboard`` verb) reads the store once,
shard by shard, and keeps only per-feature summaries whose size does not grow with the number
of tokens: firing counts, an exact streaming histogram (``histogram``), the top activations and
a uniform reservoir sample (``selection``), and global Pearson correlations with every feature
of the SAE (``correlation``). A second, cheaper visit reads only the context windows around the
chosen tokens (``contexts``). Logit effects come from the weights alone (``logits``). The
results are written as JSON per feature in a documented schema (``schema``, convertible to
Neuronpedia's batch format by ``neuronpedia``) and as offline HTML pages (``render``).
"""

from circuits.dashboard.build import DashboardConfig, build_dashboard

__all__ = ["DashboardConfig", "build_dashboard"]
