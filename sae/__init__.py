"""Sparse dictionaries for language-model activations: architectures, trainer, metrics, files.

    from sae import load_config, train, load_sae
    results = train(load_config("run.toml"))             # run folder, saved SAEs, eval.json
    sae = load_sae("runs/sae/saes/blocks.2.hook_resid_post-topk-d3072-k32")
    latents = sae.encode(acts)                           # [.., d_in] -> [.., d_sae]
"""

from sae.architectures import ARCHITECTURES, SparseCoder, build
from sae.config import SAEConfig, TrainConfig, load_config
from sae.data import TensorSource
from sae.evaluate import reconstruction_scores, splice_scores
from sae.io import load_pretrained, load_sae, save_sae
from sae.trainer import Trainer, train

__all__ = ["ARCHITECTURES", "SAEConfig", "SparseCoder", "TensorSource", "TrainConfig", "Trainer", "build",
           "load_config", "load_pretrained", "load_sae", "reconstruction_scores", "save_sae", "splice_scores",
           "train"]
