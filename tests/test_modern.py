"""The speedrun's modern block as switches (rotary positions, RMSNorm, QK-norm, ReLU², untied head, logit soft-cap,
zero-initialised projections, smear), in the Euclidean model and every curved mode: the κ ≡ 0 reduction, causality,
cached generation, gradients, and what each option does."""
import math

import pytest
import torch
import torch.nn as nn

from conftest import (assert_causal, assert_every_parameter_learns, copy_weights, full_logits, make, tiny_corpus,
                      tokens, train_losses)
from model import GPT, GPTConfig, rotary
from generate import generate

ALL = dict(pos_embedding="rope", norm="rmsnorm", qk_norm=True, mlp="relu2", tie_embeddings=False, logit_softcap=15.0,
           zero_init_proj=True, smear=True)
OPTION_SETS = {
    "rope": dict(pos_embedding="rope"), "rmsnorm": dict(norm="rmsnorm"), "qk_norm": dict(qk_norm=True),
    "relu2": dict(mlp="relu2"), "untied": dict(tie_embeddings=False), "softcap": dict(logit_softcap=2.0),
    "zero_init": dict(zero_init_proj=True), "smear": dict(smear=True), "all": ALL,
    "attn_scale": dict(qk_norm=True, attn_scale=0.35),
    "attn_scale_learnable": dict(qk_norm=True, attn_scale_learnable=True),
}
CURVED = [("hyperbolic", "prev_token", "tangent"), ("hyperbolic", "prev_token", "mobius"),
          ("spherical", "window", "mobius"), ("free", "origin", "mobius"), ("zero", "prev_token", "tangent")]


def perturbed(model, seed=3):
    """Give the parts that start at 0 (zero-initialised projections and untied head, the smear gate and λ) random
    values, so that the checks below see them act."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("c_proj.weight") or name.startswith("smear."):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif name == "lm_head.weight":  # GPT-2's init scale, as a tied head has it
                p.copy_(0.02 * torch.randn(p.shape, generator=gen))
    return model


@pytest.mark.parametrize("options", OPTION_SETS, ids=list(OPTION_SETS))
def test_zero_curvature_origin_mobius_equals_euclidean_with_the_same_options(options):
    euclid = perturbed(make("euclidean", **OPTION_SETS[options]))
    zero = make("zero", "origin", "mobius", seed=5, **OPTION_SETS[options])
    copy_weights(zero, euclid)
    idx = tokens()
    torch.testing.assert_close(full_logits(zero, idx), full_logits(euclid, idx), rtol=0, atol=1e-5)


@pytest.mark.parametrize("mode", [("euclidean", "prev_token", "tangent")] + CURVED, ids=lambda m: "-".join(m))
@pytest.mark.parametrize("options", ["all", "rope", "smear", "attn_scale_learnable"])
def test_causal_gradients_and_cached_generation_with_modern_options(mode, options):
    model = perturbed(make(*mode, **OPTION_SETS[options]))
    assert_causal(model)
    assert_every_parameter_learns(model)
    model.eval()
    idx = tokens(B=2)
    full = full_logits(model, idx)
    cache = model.new_cache()
    steps = [model(idx[:, :5], cache=cache)[0]] + [model(idx[:, t:t + 1], cache=cache)[0] for t in range(5, 16)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full[:, 4:], rtol=1e-4, atol=1e-4)
    # past block_size (16) as well: with rotary positions the context grows, with learned ones it slides
    a = generate(model, idx[:, :3], 24, top_k=10, generator=torch.Generator().manual_seed(0), use_cache=True)
    b = generate(model, idx[:, :3], 24, top_k=10, generator=torch.Generator().manual_seed(0), use_cache=False)
    assert torch.equal(a, b)


def test_rotary_scores_depend_only_on_relative_positions():
    gen = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 2, 1, 8, generator=gen), torch.randn(1, 2, 1, 8, generator=gen)
    at = lambda x, i: rotary(x, torch.tensor([i]))  # noqa: E731
    score = lambda i, j: (at(q, i) * at(k, j)).sum(-1)  # noqa: E731
    torch.testing.assert_close(score(3, 1), score(10, 8))
    assert not torch.allclose(score(3, 1), score(3, 2))
    torch.testing.assert_close(at(q, 0), q)  # position 0 is not rotated
    torch.testing.assert_close(at(q, 5).norm(dim=-1), q.norm(dim=-1))  # a rotation


def test_what_each_option_builds():
    plain, modern = make("hyperbolic"), make("hyperbolic", **ALL)
    assert "wpe" in plain.transformer and "wpe" not in modern.transformer
    assert isinstance(modern.transformer.ln_f, nn.RMSNorm) and isinstance(plain.transformer.ln_f, nn.LayerNorm)
    assert plain.lm_head.weight is plain.transformer.wte.weight
    assert modern.lm_head.weight is not modern.transformer.wte.weight
    assert all((p == 0).all() for n, p in modern.named_parameters() if n.endswith("c_proj.weight"))
    assert modern.smear.lam.item() == 0 and (modern.smear.gate.weight == 0).all()
    # ReLU² and the soft cap
    x = torch.linspace(-2, 2, 9)
    torch.testing.assert_close(modern.transformer.h[0].mlp.act(x), torch.relu(x) ** 2)
    capped = perturbed(make("euclidean", logit_softcap=0.5))
    with torch.no_grad():
        capped.lm_head.weight.mul_(100)
    assert full_logits(capped, tokens()).abs().max() <= 0.5


def test_smear_adds_a_gated_share_of_the_previous_token_embedding():
    m = perturbed(make("euclidean", smear=True))
    e = m.transformer.wte(tokens())
    out = m.smear(e)
    gate = m.smear.lam * torch.sigmoid(e[..., :12] @ m.smear.gate.weight.T)
    torch.testing.assert_close(out[:, 1:], e[:, 1:] + gate[:, 1:] * e[:, :-1])
    torch.testing.assert_close(out[:, 0], e[:, 0])


def test_qk_norm_makes_scores_independent_of_the_scale_of_q_and_k():
    m = make("euclidean", qk_norm=True)
    attn = m.transformer.h[0].attn
    x = torch.randn(2, 6, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = attn(x)
        attn.c_attn.weight[:32].mul_(7.0)  # the q and k rows
        b = attn(x)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_rope_has_no_length_limit_and_crop_keeps_working():
    m = make("hyperbolic", pos_embedding="rope")
    logits, _ = m(tokens(T=40))  # block_size is 16: rotary positions are not a table
    assert torch.isfinite(logits).all()
    m.crop_block_size(8)
    assert m.config.block_size == 8
    with pytest.raises(ValueError, match="even head_size"):
        GPTConfig(n_embd=18, n_head=2, pos_embedding="rope")
    with pytest.raises(ValueError, match="logit_softcap must be ≥ 0"):
        GPTConfig(logit_softcap=-1.0)


@pytest.mark.parametrize("curvature", ["euclidean", "hyperbolic"])
def test_the_modern_model_trains(curvature):
    model = GPT(GPTConfig(**{**dict(block_size=16, n_layer=2, n_head=4, n_embd=32, dropout=0.0, bias=False),
                             **ALL, "curvature": curvature, "curvature_init": -0.3,
                             "vocab_size": tiny_corpus()[1]}))
    losses, _ = train_losses(model, 50, optimizer="muon")
    assert sum(losses[-5:]) < 0.6 * sum(losses[:5]) and all(math.isfinite(x) for x in losses)


def manual_attention(attn, x, scale):
    """softmax(scale · q̂·k̂ᵀ, causal) v through c_proj, written out (QK-norm on, one sequence)."""
    T, C = x.shape[1:]
    H = attn.n_head
    q, k, v = (t.view(T, H, C // H).transpose(0, 1) for t in attn.c_attn(x[0]).split(C, dim=1))
    q, k = (t / t.square().mean(-1, keepdim=True).add(torch.finfo(t.dtype).eps).sqrt() for t in (q, k))
    scores = (q @ k.transpose(-1, -2)) * scale.view(-1, 1, 1)
    scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    return attn.c_proj((scores.softmax(-1) @ v).transpose(0, 1).reshape(T, C))


@pytest.mark.parametrize("kw", [dict(), dict(attn_scale=0.35), dict(attn_scale=0.2, attn_scale_learnable=True)])
def test_attention_scale_multiplies_the_scores(kw):
    model = make("euclidean", qk_norm=True, **kw)
    attn = model.transformer.h[0].attn
    with torch.no_grad():
        if kw.get("attn_scale_learnable"):
            attn.q_scale.copy_(torch.tensor([0.1, 0.5]).view(2, 1, 1))  # per head
        default = kw.get("attn_scale", 1 / math.sqrt(8))  # head_size 8
        scale = attn.q_scale.flatten() if kw.get("attn_scale_learnable") else torch.full((2,), default)
        x = torch.randn(1, 16, 16, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(attn(x)[0], manual_attention(attn, x, scale), rtol=1e-5, atol=1e-6)


def test_learnable_scale_starts_at_the_fixed_one_and_learns():
    fixed = make("hyperbolic", "prev_token", "tangent", qk_norm=True, attn_scale=0.3)
    learnable = make("hyperbolic", "prev_token", "tangent", qk_norm=True, attn_scale=0.3, attn_scale_learnable=True)
    learnable.load_state_dict(fixed.state_dict(), strict=False)
    idx = tokens()
    torch.testing.assert_close(full_logits(learnable, idx), full_logits(fixed, idx), rtol=1e-5, atol=1e-6)
    _, loss = learnable(idx, tokens(seed=2))
    loss.backward()
    assert all(b.attn.q_scale.grad.abs().min() > 0 for b in learnable.transformer.h)


def test_scale_options_are_checked():
    with pytest.raises(ValueError, match="attn_scale must be ≥ 0"):
        GPTConfig(attn_scale=-1.0)
    with pytest.raises(ValueError, match="attention='distance' has its own learnable temperature"):
        GPTConfig(attention="distance", attn_scale_learnable=True)


def test_untied_head_starts_at_zero_with_zero_init_proj():
    untied = make("euclidean", tie_embeddings=False, zero_init_proj=True)
    assert not untied.lm_head.weight.any()
    _, loss = untied(tokens(), tokens(seed=2))
    assert loss.item() == pytest.approx(math.log(37), abs=1e-6)  # every token equally likely at init
    tied = make("euclidean", zero_init_proj=True)
    assert tied.lm_head.weight is tied.transformer.wte.weight and tied.lm_head.weight.any()
