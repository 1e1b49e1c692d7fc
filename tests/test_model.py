"""model.py: κ ≡ 0 reductions, causality, per-head curvature, gradients everywhere, training in every mode."""

import pytest
import torch

import geometry as geo
from conftest import (TINY, assert_causal, assert_every_parameter_learns, copy_weights, full_logits, make, tiny_corpus,
                      tokens, train_losses)
from model import GPT, GPTConfig
from runtime import configure_optimizers
from generate import generate

MODES = [  # (curvature, reference, residual)
    ("euclidean", "prev_token", "mobius"),
    ("zero", "prev_token", "mobius"),
    ("zero", "prev_token", "tangent"),
    ("zero", "origin", "mobius"),
    ("hyperbolic", "prev_token", "mobius"),
    ("hyperbolic", "prev_token", "tangent"),
    ("hyperbolic", "origin", "mobius"),
    ("spherical", "prev_token", "mobius"),
    ("free", "prev_token", "tangent"),
    ("fixed", "prev_token", "mobius"),
]


def test_zero_curvature_origin_mobius_equals_euclidean():
    euclid = make("euclidean")
    zero = make("zero", reference="origin", residual="mobius", seed=5)
    copy_weights(zero, euclid)
    idx = tokens()
    torch.testing.assert_close(full_logits(zero, idx), full_logits(euclid, idx), rtol=0, atol=1e-5)


def token_shift_reference(model, idx, residual):
    """A plain Euclidean model whose sublayers read LN(x − x_{t−1}) and whose residual adds the previous
    token's block-input state: x ← x + x_{t−1} + f (mobius) or x ← x + f (tangent)."""
    tr = model.transformer
    x = tr.wte(idx) + tr.wpe(torch.arange(idx.size(1)))
    for block in tr.h:
        p = torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], dim=1)
        for ln, sub in ((block.ln_1, block.attn), (block.ln_2, block.mlp)):
            f = sub(ln(x - p))
            x = x + p + f if residual == "mobius" else x + f
    return model.lm_head(tr.ln_f(x))


@pytest.mark.parametrize("residual", ["mobius", "tangent"])
def test_zero_curvature_prev_token_equals_token_shift_model(residual):
    model = make("zero", reference="prev_token", residual=residual)
    idx = tokens()
    with torch.no_grad():
        torch.testing.assert_close(full_logits(model, idx), token_shift_reference(model, idx, residual),
                                   rtol=1e-5, atol=1e-5)


def test_curvature_changes_the_function():
    """The curved model is not secretly Euclidean: the same weights at κ = −0.3 give other logits."""
    zero, curved = make("zero"), make("hyperbolic")
    copy_weights(curved, zero)
    idx = tokens()
    diff = (full_logits(curved, idx) - full_logits(zero, idx)).abs().max()
    assert diff > 1e-3


@pytest.mark.parametrize("mode", MODES, ids=lambda m: "-".join(m))
def test_causal(mode):
    assert_causal(make(*mode))


@pytest.mark.parametrize("mode", MODES, ids=lambda m: "-".join(m))
def test_every_parameter_gets_a_gradient(mode):
    assert_every_parameter_learns(make(*mode))


def test_curvature_parameters_per_head_per_block_and_shared():
    m = make("hyperbolic", curvature_init=-0.2)
    ks = m.kappas()
    assert ks.shape == (2, 2)
    torch.testing.assert_close(ks, torch.full((2, 2), -0.2))
    assert m.kappas().requires_grad
    m = make("hyperbolic", curvature_per_head=False)
    assert m.kappas().shape == (2, 1)
    m = make("spherical", curvature_shared=True)
    assert len(list(m.curvature.parameters())) == 1 and m.kappas().shape == (2, 2) and (m.kappas() > 0).all()
    assert sum(p.numel() for p in make("zero").curvature.parameters()) == 0
    assert sum(p.numel() for p in make("fixed").curvature.parameters()) == 0
    torch.testing.assert_close(make("fixed", curvature_init=-0.7).kappas(), torch.full((2, 2), -0.7))
    # a free κ starts where asked and may sit at or cross 0
    torch.testing.assert_close(make("free", curvature_init=0.0).kappas(), torch.zeros(2, 2))


def test_each_head_uses_its_own_curvature():
    """Changing κ of head 1 in block 0 changes the block's output only in head 1's slice."""
    m = make("hyperbolic")
    block = m.transformer.h[0]
    v = torch.randn(2, 8, 16) * 0.3
    k = torch.tensor([[-0.3], [-0.3]])
    k2 = torch.tensor([[-0.3], [-1.5]])
    # the slice of head 0 sees head 1 only through LayerNorm and attention, so isolate the geometry:
    x1 = geo.expmap0(v.view(2, 8, 2, 8), k)
    x2 = geo.expmap0(v.view(2, 8, 2, 8), k2)
    assert torch.equal(x1[:, :, 0], x2[:, :, 0]) and not torch.allclose(x1[:, :, 1], x2[:, :, 1])
    assert not torch.allclose(block(v, k), block(v, k2))


def test_states_stay_inside_each_blocks_ball_without_clamping():
    """At the hyperbolic block's usual κ₀ = −0.05, states of a freshly initialised model sit well inside every
    block's ball."""
    cfg = GPTConfig(**{**TINY, "n_embd": 64, "n_head": 4}, curvature="hyperbolic", curvature_init=-0.05)
    torch.manual_seed(0)
    m = GPT(cfg)
    with torch.no_grad():
        stats = []
        m(tokens(B=4), stats=stats)
    assert len(stats) == cfg.n_layer
    for s in stats:
        assert s["clamped"] == 0.0 and 0 < s["radius"] < 0.5


def test_health_stats_report_clamping_when_states_hit_the_boundary():
    m = make("fixed", curvature_init=-1e4)  # ball of radius 0.01: everything is clamped
    stats = []
    with torch.no_grad():
        m(tokens(), stats=stats)
    assert all(s["clamped"] > 0.5 for s in stats)
    assert all(abs(s["radius"] - (1 - geo.PROJECT_EPS[torch.float32])) < 0.05 for s in stats)


@pytest.mark.parametrize("kw, msg", [
    (dict(curvature="flat"), "curvature='flat' is not one of"),
    (dict(reference="next"), "reference='next' is not one of"),
    (dict(residual="add"), "residual='add' is not one of"),
    (dict(curvature="hyperbolic", curvature_init=0.5), "needs curvature_init < 0"),
    (dict(curvature="spherical", curvature_init=-0.5), "needs curvature_init > 0"),
    (dict(curvature="free", reference="origin", residual="tangent"), "makes curvature a no-op"),
    (dict(n_embd=30, n_head=4), "must be divisible by n_head"),
    (dict(n_layer=0), "n_layer must be positive"),
    (dict(block_size=-1), "block_size must be positive"),
    (dict(dropout=1.0), "dropout must be in"),
])
def test_bad_config_is_a_clear_error(kw, msg):
    with pytest.raises(ValueError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        GPTConfig(**{**TINY, **kw})


def test_sequence_longer_than_block_size_is_a_clear_error():
    with pytest.raises(ValueError, match="longer than block_size 16"):
        make()(tokens(T=17))


def test_crop_block_size_and_generate():
    m = make()
    m.crop_block_size(8)
    assert m.config.block_size == 8 and m.transformer.wpe.weight.shape[0] == 8
    out = generate(m, tokens(B=2, T=4), max_new_tokens=10, top_k=5, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 14) and out.max() < 37
    with pytest.raises(ValueError, match="cannot grow"):
        m.crop_block_size(32)


def test_optimizer_groups():
    m = make()
    opt = configure_optimizers(m, 0.1, 1e-3, (0.9, 0.95), "cpu", curvature_lr_mult=10.0)
    decay, nodecay, curv = opt.param_groups
    assert decay["weight_decay"] == 0.1 and all(p.dim() >= 2 for p in decay["params"])
    assert nodecay["weight_decay"] == 0.0 and all(p.dim() < 2 for p in nodecay["params"])
    assert curv["weight_decay"] == 0.0 and curv["lr_mult"] == 10.0
    assert {id(p) for p in curv["params"]} == {id(p) for p in m.curvature.parameters()}
    n_in_groups = sum(len(gr["params"]) for gr in opt.param_groups)
    assert n_in_groups == len(list(m.parameters()))
    assert len(configure_optimizers(make("euclidean"), 0.1, 1e-3, (0.9, 0.95), "cpu").param_groups) == 2


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16"])
@pytest.mark.parametrize("mode", MODES, ids=lambda m: "-".join(m))
def test_every_mode_trains(mode, autocast):
    model = make(*mode, vocab_size=tiny_corpus()[1], n_embd=32, n_head=4)
    losses, _ = train_losses(model, 50, autocast)
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5, losses[::10]
    assert torch.isfinite(model.kappas()).all()
