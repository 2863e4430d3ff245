"""A small multi-coder training run, for the kill-and-resume test (run as a script).

    python resume_run.py OUT [--resume]

Each batch is delayed a little so a test can kill the process between checkpoints.
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sae.config import load_config  # noqa: E402
from sae.trainer import train  # noqa: E402
from tests.sae.synthetic import IN_HOOK, synthetic_source  # noqa: E402


class SlowSource:
    def __init__(self, source, delay: float):
        self.source, self.delay = source, delay
        self.model_name, self.hooks = source.model_name, source.hooks
        self.widths, self.mean_norm = source.widths, source.mean_norm

    def batches(self, *args, **kwargs):
        for batch in self.source.batches(*args, **kwargs):
            time.sleep(self.delay)
            yield batch


def config(out: str):
    return load_config(None, {
        "out": out, "hook": IN_HOOK, "d_sae": 96, "k": 4, "architecture": ["topk", "batchtopk", "relu", "jumprelu"],
        "tokens": 40 * 256, "batch_size": 256, "checkpoint_every": 5, "log_every": 3, "dead_window": 1024,
        "warmup_steps": 5, "eval_tokens": 1024, "eval_contexts": 0})


if __name__ == "__main__":
    train(config(sys.argv[1]), SlowSource(synthetic_source(), 0.05), resume="--resume" in sys.argv)
