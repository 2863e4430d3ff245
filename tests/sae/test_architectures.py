"""Each architecture's forward passes, losses and constraints."""

import pytest
import torch

from sae.architectures import ARCHITECTURES, StepContext, build
from sae.architectures.jumprelu import _JumpReLU, _Step
from sae.config import SAEConfig
from sae.metrics import fvu, l0

D_IN, D_OUT, D_SAE, K, B = 12, 7, 48, 4, 64
IN_HOOK, OUT_HOOK = "blocks.0.hook_resid_post", "blocks.0.hook_mlp_out"


def make(architecture, transcoder=False, skip=False, **fields):
    d_out = D_OUT if transcoder else D_IN
    cfg = SAEConfig(architecture=architecture, hook=IN_HOOK, hook_out=OUT_HOOK if transcoder else "", skip=skip,
                    d_sae=D_SAE, k=K, **fields).resolved(D_IN, d_out)
    torch.manual_seed(0)
    return build(cfg, d_out)


def data(d_out=D_IN, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(B, D_IN, generator=gen) * 3
    return x, (x if d_out == D_IN else torch.randn(B, d_out, generator=gen))


VARIANTS = [(arch, transcoder, skip) for arch in ARCHITECTURES
            for transcoder, skip in [(False, False), (True, False), (True, True)]
            if not (transcoder and arch == "matryoshka")]  # the config refuses matryoshka transcoders


@pytest.mark.parametrize("architecture, transcoder, skip", VARIANTS)
def test_training_step_reaches_every_parameter(architecture, transcoder, skip):
    sae = make(architecture, transcoder, skip)
    x, target = data(sae.d_out)
    out = sae.training_forward(x, target, StepContext(0.5, None))
    assert out.recon.shape == (B, sae.d_out) and torch.isfinite(out.loss)
    assert out.fired.shape == (D_SAE,) and int(out.fired.sum()) == round(float(out.l0) * B)
    out.loss.backward()
    missing = [name for name, p in sae.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == [] if architecture != "jumprelu" else missing in ([], ["threshold"])
    assert sae(x).shape == (B, sae.d_out) and sae.encode(x).shape == (B, D_SAE)
    assert hasattr(sae, "W_skip") and (sae.W_skip is not None) == skip


@pytest.mark.parametrize("architecture", ["topk", "relu", "jumprelu", "gated"])
def test_training_latents_match_inference_latents(architecture):
    sae = make(architecture)
    x, _ = data()
    out = sae.training_forward(x, x, StepContext(0.5, None))
    assert float(out.l0) == pytest.approx(float(l0(sae.encode(x))))
    assert torch.allclose(out.recon, sae(x), atol=1e-5)


def test_topk_keeps_k_latents_per_token():
    sae = make("topk")
    x, _ = data()
    assert ((sae.encode(x) != 0).sum(-1) <= K).all()
    assert float(l0(sae.encode(x))) > K - 0.5


def test_auxk_only_with_dead_latents_and_only_into_their_decoder_rows():
    sae = make("topk")
    x, _ = data()
    assert "auxk" not in sae.training_forward(x, x, StepContext(0.5, None)).losses
    dead = torch.zeros(D_SAE, dtype=torch.bool)
    dead[::3] = True
    out = sae.training_forward(x, x, StepContext(0.5, dead))
    out.losses["auxk"].backward()
    row_grads = sae.W_dec.grad.abs().sum(-1)
    assert (row_grads[~dead] == 0).all() and (row_grads[dead] > 0).any()


def test_unit_norm_decoder_projection_and_renormalisation():
    sae = make("topk")
    x, _ = data()
    sae.training_forward(x, x, StepContext(0.5, None)).loss.backward()
    sae.project_decoder_grad()
    assert torch.allclose((sae.W_dec.grad * sae.W_dec).sum(-1), torch.zeros(D_SAE), atol=1e-5)
    with torch.no_grad():
        sae.W_dec.mul_(3.0)
    sae.after_step()
    assert torch.allclose(sae.W_dec.norm(dim=-1), torch.ones(D_SAE), atol=1e-6)


def test_batchtopk_spends_k_per_token_on_average_and_learns_a_threshold():
    sae = make("batchtopk", threshold_momentum=0.5)
    x, _ = data()
    latents = sae.encode_sparse(x)
    kept = latents.values.detach()[latents.values > 0]
    assert kept.numel() == B * K and float(sae.threshold) == pytest.approx(float(kept.min()))
    first = float(sae.threshold)
    x2, _ = data(seed=1)
    second = sae.encode_sparse(x2).values.detach()
    assert float(sae.threshold) == pytest.approx(0.5 * first + 0.5 * float(second[second > 0].min()))
    pre = torch.relu(sae.pre_acts(x))
    assert torch.equal(sae.encode(x), pre * (pre > sae.threshold))


def test_matryoshka_prefix_losses_ignore_latents_outside_the_prefixes():
    sae = make("matryoshka", matryoshka_prefixes=[8, 16, D_SAE])
    x, _ = data()
    out = sae.training_forward(x, x, StepContext(0.5, None))
    out.losses["prefix_mse"].backward()
    row_grads = sae.W_dec.grad.abs().sum(-1)
    assert (row_grads[16:] == 0).all() and (row_grads[:16] > 0).any()


def test_relu_l1_weighted_by_decoder_norms_with_warmup():
    sae = make("relu", l1_coefficient=2.0, sparsity_warmup=0.1)
    x, _ = data()
    with torch.no_grad():
        sae.W_dec[0] *= 5.0
    with torch.no_grad():
        expected = float(2.0 * (sae.encode(x) * sae.W_dec.norm(dim=-1)).sum(-1).mean())
        l1_at = {p: float(sae.training_forward(x, x, StepContext(p, None)).losses["l1"]) for p in (0.0, 0.05, 0.5)}
    assert l1_at[0.5] == pytest.approx(expected) and l1_at[0.05] == pytest.approx(expected / 2)
    assert l1_at[0.0] == 0.0


def test_relu_resample_reinitialises_dead_latents():
    sae = make("relu")
    x, _ = data()
    dead = torch.tensor([1, 5])
    alive_enc = sae.encoder_weight[2].clone()
    with torch.no_grad():
        sae.b_enc[dead] = 3.0
    sae.resample(dead, x, x, torch.Generator().manual_seed(0))
    assert torch.equal(sae.encoder_weight[2], alive_enc) and (sae.b_enc[dead] == 0).all()
    mean_norm = sae.encoder_weight[[i for i in range(D_SAE) if i not in (1, 5)]].norm(dim=-1).mean()
    assert torch.allclose(sae.encoder_weight[dead].norm(dim=-1), 0.2 * mean_norm.expand(2), rtol=1e-4)


def test_jumprelu_straight_through_gradients_by_hand():
    pre = torch.tensor([[0.48, 0.60], [0.53, 0.10]], requires_grad=True)
    threshold = torch.tensor([0.5, 0.5], requires_grad=True)
    eps = 0.1  # kernel: |pre - θ| < 0.05 -> entries 0.48 and 0.53 of latent 0
    out = _JumpReLU.apply(pre, threshold, eps)
    assert torch.allclose(out, torch.tensor([[0.0, 0.60], [0.53, 0.0]]))
    out.sum().backward()
    assert threshold.grad.tolist() == pytest.approx([-(0.5 / eps) * 2, 0.0])
    assert pre.grad.tolist() == [[0.0, 1.0], [1.0, 0.0]]
    threshold.grad, pre.grad = None, None
    _Step.apply(pre, threshold, eps).sum().backward()
    assert threshold.grad.tolist() == pytest.approx([-2 / eps, 0.0])
    assert pre.grad is None  # the paper's estimator: the L0 term trains the thresholds only
    threshold.grad = None
    _Step.apply(pre, threshold, eps, True).sum().backward()
    assert threshold.grad.tolist() == pytest.approx([-2 / eps, 0.0])
    assert torch.allclose(pre.grad, torch.tensor([[1 / eps, 0.0], [1 / eps, 0.0]]))  # and the pre-activations


def test_jumprelu_target_l0_penalty():
    sae = make("jumprelu", target_l0=4.0, target_l0_coefficient=3.0, l0_coefficient=100.0, sparsity_warmup=0.0)
    x, _ = data()
    with torch.no_grad():
        out = sae.training_forward(x, x, StepContext(0.5, None))
    assert float(out.losses["l0"]) == pytest.approx(3.0 * (float(out.l0) / 4.0 - 1) ** 2, rel=1e-5)


def test_gated_encoding_and_frozen_decoder_in_the_gate_loss():
    sae = make("gated")
    with torch.no_grad():
        sae.r_mag.normal_()
        sae.b_gate.normal_()
        sae.b_mag.normal_()
    x, _ = data()
    h = (x - sae.b_dec) @ sae.W_enc
    expected = (h + sae.b_gate > 0) * torch.relu(h * sae.r_mag.exp() + sae.b_mag)
    assert torch.allclose(sae.encode(x), expected, atol=1e-5)
    out = sae.training_forward(x, x, StepContext(1.0, None))
    out.losses["gate_aux"].backward()
    assert sae.W_dec.grad is None and sae.b_gate.grad.abs().sum() > 0
    assert not hasattr(sae, "b_enc") or "b_enc" not in dict(sae.named_parameters())


def test_skip_transcoder_adds_the_linear_skip():
    sae = make("topk", transcoder=True, skip=True)
    with torch.no_grad():
        sae.W_skip.normal_()
    x, _ = data()
    assert torch.allclose(sae(x), sae.decode(sae.encode(x)) + x @ sae.W_skip.t(), atol=1e-5)
    assert not sae.apply_b_dec_to_input


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_inference_state_uses_saelens_names_and_round_trips(architecture):
    sae = make(architecture)
    x, _ = data()
    sae.training_forward(x, x, StepContext(0.5, None))  # batchtopk measures its threshold here
    state = sae.inference_state()
    assert state["W_enc"].shape == (D_IN, D_SAE) and state["W_dec"].shape == (D_SAE, D_IN)
    expected = {"relu": {"b_enc"}, "topk": {"b_enc"}, "batchtopk": {"b_enc", "threshold"},
                "jumprelu": {"b_enc", "threshold"}, "gated": {"b_gate", "b_mag", "r_mag"},
                "matryoshka": {"b_enc", "threshold"}}[architecture]
    assert set(state) == {"W_enc", "W_dec", "b_dec"} | expected
    twin = make("jumprelu" if "threshold" in state else architecture)
    twin.load_inference_state(state)
    assert torch.allclose(twin(x), sae(x), atol=1e-5)


@pytest.mark.parametrize("architecture, fields", [("jumprelu", {"target_l0": 6.0}), ("gated", {}),
                                                   ("topk", {})])
def test_init_from_data_starts_near_the_asked_sparsity(architecture, fields):
    sae = make(architecture, **fields)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(512, D_IN, generator=gen) + 2.0
    sae.init_from_data(x, x)
    assert torch.allclose(sae.b_dec, x.median(0).values, atol=0.2)  # geometric median of a symmetric cloud
    wanted = fields.get("target_l0", K)
    assert float(l0(sae.encode(x))) == pytest.approx(wanted, abs=0.5 if architecture != "topk" else 0)


@pytest.mark.parametrize("architecture, fields", [("jumprelu", {"target_l0": 6.0}), ("gated", {})])
def test_threshold_architectures_start_no_worse_than_the_mean(architecture, fields):
    """Thresholds placed at a firing quantile over random decoder rows overshoot the data
    (FVU well above 1, which collapses a JumpReLU's L0 in its first steps); the initial code
    is rescaled to its least-squares size, so the first reconstruction beats b_dec alone
    while the same latents fire."""
    sae = make(architecture, **fields)
    gen = torch.Generator().manual_seed(4)
    x = 3.0 * torch.randn(512, D_IN, generator=gen) + 2.0
    sae.init_from_data(x, x)
    assert float(fvu(x, sae(x))) < 1.0
    assert float(l0(sae.encode(x))) == pytest.approx(fields.get("target_l0", K), abs=0.5)
    assert sae.fitted_latent_scale(x, x) == pytest.approx(1.0, abs=0.01)  # already fitted (ties at θ may flip)


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_bfloat16_autocast_keeps_parameters_and_gradients_float32(architecture):
    """The trainer autocasts on CUDA; CPU autocast exercises the same dtype handling."""
    sae = make(architecture)
    x, _ = data()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = sae.training_forward(x, x, StepContext(0.5, torch.ones(D_SAE, dtype=torch.bool)))
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    out.loss.backward()
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in sae.parameters())


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_a_nan_input_row_gives_a_nan_code_and_leaves_the_other_rows_alone(architecture):
    """A NaN in the input must show in that token's code and reconstruction, never as a quiet
    all-zero code that would pass for an inactive token, and must not leak into other tokens."""
    sae = make(architecture)
    x, _ = data()
    clean = sae.encode(x[2:])
    x[1, 3] = float("nan")
    codes, recon = sae.encode(x), sae(x)
    assert codes[1].isnan().any() and recon[1].isnan().any()
    torch.testing.assert_close(codes[2:], clean)
    assert torch.isfinite(recon[2:]).all()
