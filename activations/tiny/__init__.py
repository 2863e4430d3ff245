"""The embedded tiny model: a GPT-2-architecture checkpoint trained on the tinyworld corpus.

``CHECKPOINT_DIR`` is a HuggingFace folder: ``AutoModelForCausalLM.from_pretrained`` gives a
``GPT2LMHeadModel`` and ``AutoTokenizer.from_pretrained`` its byte-level BPE tokenizer.
``training_summary.json`` there records the command, seed, wall time and measured metrics;
``activations.tiny.train`` rebuilds it (see docs/tiny_model.md).
"""

from pathlib import Path

CHECKPOINT_DIR: Path = Path(__file__).resolve().parent / "checkpoint"

__all__ = ["CHECKPOINT_DIR"]
