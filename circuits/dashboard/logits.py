"""Direct logit effects of features: the top and bottom tokens of W_dec · W_U.

The final norm is treated as a fixed linear map, as TransformerLens does when it folds it into
the unembedding: a LayerNorm centres its input, divides by the token's standard deviation and
scales by γ, so adding a decoder row w to the final residual stream moves the logits by
((w − mean(w)) ⊙ γ) · W_U / σ. The 1/σ factor is positive and depends on the token, not on
the feature, so it is left out; the bias β adds the same β · W_U for every feature and is left
out too. An RMSNorm does not centre, so only γ is applied. Values are therefore comparable
within a feature and across features of one SAE, in logits per unit activation at σ = 1.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from activations.models import LoadedModel

RESIDUAL_SITES = ("hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out",
                  "hook_embed", "hook_pos_embed")
_FINAL_NORM_NAMES = ("transformer.ln_f", "model.norm", "gpt_neox.final_layer_norm", "model.final_layernorm")


def writes_residual(hook: str) -> bool:
    """Whether a decoder writing to ``hook`` writes in the residual-stream basis."""
    return hook.split(".")[-1] in RESIDUAL_SITES


def folded_unembedding(model: LoadedModel) -> tuple[Tensor, bool, str]:
    """(γ-scaled W_U [d_model, vocab], whether to centre directions, a one-line note)."""
    hf = model.hf_model
    w_u = hf.get_output_embeddings().weight.detach().float().t()
    modules = dict(hf.named_modules())
    norm = next((modules[n] for n in _FINAL_NORM_NAMES if n in modules), None)
    if norm is None:
        return w_u, False, "no final norm found: raw W_dec · W_U"
    gamma = norm.weight.detach().float()
    if isinstance(norm, nn.LayerNorm):
        return gamma[:, None] * w_u, True, ("final LayerNorm folded in: ((w - mean w) * gamma) . W_U; "
                                            "1/sigma and beta left out")
    return gamma[:, None] * w_u, False, "final RMSNorm folded in: (w * gamma) . W_U; 1/rms left out"


@torch.no_grad()
def logit_effects(w_dec: Tensor, model: LoadedModel, k: int, chunk: int = 256) -> tuple[Tensor, Tensor, Tensor,
                                                                                         Tensor, str]:
    """For decoder rows ``w_dec`` [F, d_model]: (top ids [F, k], top values, bottom ids [F, k],
    bottom values (ascending), note)."""
    w_u, centre, note = folded_unembedding(model)
    k = min(k, w_u.shape[1])
    top_i, top_v, bot_i, bot_v = [], [], [], []
    for start in range(0, len(w_dec), chunk):
        rows = w_dec[start:start + chunk].float()
        if centre:
            rows = rows - rows.mean(-1, keepdim=True)
        effects = rows @ w_u
        top, bottom = effects.topk(k, dim=1), effects.topk(k, dim=1, largest=False)
        top_i.append(top.indices), top_v.append(top.values), bot_i.append(bottom.indices), bot_v.append(bottom.values)
    return torch.cat(top_i), torch.cat(top_v), torch.cat(bot_i), torch.cat(bot_v), note
