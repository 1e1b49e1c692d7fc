"""The nGPT block (block='ngpt'): the stream and the weights on the unit sphere, its update rule at the ends of α,
causal, the cache, training through train.py (the weights re-normalised after every step, kept across a resume),
and its refusals."""
import math

import pytest
import torch
import torch.nn.functional as F

import train
from conftest import assert_causal, assert_every_parameter_learns, run_error, tiny_args, tokens, train_losses
from generate import generate
from model import GPT, GPTConfig, NGPTBlock

NGPT = dict(block="ngpt", curvature="euclidean", bias=False, tie_embeddings=False, block_size=16, vocab_size=37,
            n_layer=2, n_head=2, n_embd=16)
# float32: a unit vector's norm is 1 within a few ε·√n_embd; 1e-5 leaves room, and a missed normalisation is O(1) off
UNIT_TOL = 1e-5


def make_ngpt(seed=0, **over):
    torch.manual_seed(seed)
    return GPT(GPTConfig(**(NGPT | over)))


def unit_weight_norms(model):
    """The norms of every weight vector that nGPT keeps on the sphere, along the embedding dimension."""
    c = model.config
    out = {"wte": model.transformer.wte.weight.norm(dim=1), "head": model.lm_head.weight.norm(dim=1)}
    for i, b in enumerate(model.transformer.h):
        out |= {f"{i}.c_attn": b.attn.c_attn.weight.norm(dim=1), f"{i}.attn.c_proj": b.attn.c_proj.weight.norm(dim=0),
                f"{i}.c_fc": b.c_fc.weight.norm(dim=1), f"{i}.c_proj": b.c_proj.weight.norm(dim=0)}
    assert all(v.numel() in (c.vocab_size, 3 * c.n_embd, c.n_embd, 4 * c.n_embd, 8 * c.n_embd) for v in out.values())
    return out


def assert_unit(norms):
    for name, n in norms.items():
        assert (n - 1).abs().max() < UNIT_TOL, name


@pytest.mark.parametrize("pos", ["rope", "learned"])
def test_every_block_leaves_the_stream_on_the_unit_sphere(pos):
    model = make_ngpt(pos_embedding=pos).eval()
    seen = []
    for block in model.transformer.h:
        block.register_forward_hook(lambda m, args, out: seen.append(out.norm(dim=-1)))
    model(tokens(), tokens(seed=2))
    assert len(seen) == 2
    for n in seen:
        assert (n - 1).abs().max() < UNIT_TOL


def test_weights_start_on_the_sphere_and_stay_there_after_each_step():
    model = make_ngpt()
    assert_unit(unit_weight_norms(model))
    losses, _ = train_losses(model, 5)  # the plain optimizer step moves them off...
    off = unit_weight_norms(model)
    assert max((n - 1).abs().max() for n in off.values()) > 1e-3
    model.after_step()  # ...and after_step puts them back
    assert_unit(unit_weight_norms(model))


def test_the_update_rule_at_the_ends_of_alpha():
    """h ← Norm(h + α ⊙ (Norm(f(h)) − h)): α = 0 leaves h as it is, α = 1 replaces it by Norm(f(h))."""
    torch.manual_seed(0)
    cfg = GPTConfig(**NGPT)
    block = NGPTBlock(cfg).eval()
    h = F.normalize(torch.randn(2, 5, 16), dim=-1)
    with torch.no_grad():
        block.alpha_attn.zero_(), block.alpha_mlp.zero_()
        torch.testing.assert_close(block(h), h, rtol=0, atol=1e-6)
        block.alpha_attn.fill_(1 / block.alpha_mult)  # effective α = 1 in every dimension
        after_attn = F.normalize(block.attn(h), dim=-1)
        torch.testing.assert_close(block(h), after_attn, rtol=0, atol=1e-6)
        block.alpha_mlp.fill_(1 / block.alpha_mult)
        torch.testing.assert_close(block(h), F.normalize(block.mlp(after_attn), dim=-1), rtol=0, atol=1e-6)


def test_the_papers_init_values_through_the_scaling_trick():
    model = make_ngpt()
    b = model.transformer.h[0]
    d = model.config.n_embd
    torch.testing.assert_close((b.alpha_attn * b.alpha_mult).abs(), torch.full((d,), 0.05))
    torch.testing.assert_close(b.attn.s_qk * b.attn.s_qk_mult, torch.ones(d))
    torch.testing.assert_close(model.s_z * math.sqrt(d), torch.ones(model.config.vocab_size))
    assert b.attn.sdpa_scale == pytest.approx(math.sqrt(d // 2))  # scores × √d_k
    # the logits are cosines × s_z: at init within [−1, 1]
    logits, _ = model(tokens(), tokens(seed=2))
    assert logits.abs().max() <= 1 + 1e-5


def test_causal_and_every_parameter_learns():
    assert_causal(make_ngpt())
    assert_every_parameter_learns(make_ngpt())


@pytest.mark.parametrize("pos", ["rope", "learned"])
def test_cached_generation_equals_uncached(pos):
    model = make_ngpt(pos_embedding=pos).eval()
    idx = tokens(B=2, T=4)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    a = generate(model, idx, 10, top_k=5, generator=g(), use_cache=True)
    b = generate(model, idx, 10, top_k=5, generator=g(), use_cache=False)
    assert torch.equal(a, b)
    # and the cached logits are the full forward's at every position: the prompt in one call, then one at a time
    idx = tokens(B=2, T=8)
    full = model(idx, targets=torch.zeros_like(idx))[0]
    cache = model.new_cache(8)
    got = [model(idx[:, :4], cache=cache)[0][:, -1]] + [model(idx[:, [t]], cache=cache)[0][:, -1] for t in range(4, 8)]
    for i, t in enumerate(range(3, 8)):
        torch.testing.assert_close(got[i], full[:, t], rtol=0, atol=1e-5)


def test_trains_through_train_py_and_a_resume_keeps_the_normalisation(char_data, tmp_path):
    ngpt = dict(block="ngpt", curvature="euclidean", bias=False, tie_embeddings=False, pos_embedding="rope",
                weight_decay=0.0, warmup_iters=0, dropout=0.0)
    straight = train.main(tiny_args(char_data, tmp_path / "a", max_iters=20, **ngpt))
    ckpt = torch.load(tmp_path / "a" / "ckpt.pt", weights_only=False)
    model = GPT(GPTConfig(**ckpt["model_args"]))
    model.load_state_dict(ckpt["model"])
    assert_unit(unit_weight_norms(model))  # train.py called the block's step hook after the last step
    # 10 iterations, then a resume to 20: the same run, bit for bit
    train.main(tiny_args(char_data, tmp_path / "b", max_iters=10, **ngpt))
    resumed = train.main(tiny_args(char_data, tmp_path / "b", max_iters=20, init_from="resume", **ngpt))
    assert resumed["val_loss"] == straight["val_loss"]
    again = torch.load(tmp_path / "b" / "ckpt.pt", weights_only=False)["model"]
    assert all(torch.equal(again[k], v) for k, v in ckpt["model"].items())


@pytest.mark.parametrize("over, named", [
    (dict(curvature="hyperbolic", curvature_init=-0.05), "curvature='hyperbolic'"), (dict(bias=True), "bias=True"),
    (dict(tie_embeddings=True), "tie_embeddings=True"), (dict(zero_init_proj=True), "zero_init_proj=True"),
    (dict(attn_scale_learnable=True), "attn_scale_learnable=True"), (dict(attention="distance"), "attention")])
def test_options_the_block_cannot_take_are_refused_in_one_line(over, named):
    with pytest.raises(ValueError, match="block='ngpt' cannot be combined with") as e:
        GPTConfig(**(NGPT | over))
    assert named in str(e.value) and "\n" not in str(e.value)


def test_weight_decay_is_refused_by_train_py(char_data, tmp_path):
    msg = run_error(tiny_args(char_data, tmp_path / "out", block="ngpt", curvature="euclidean", bias=False,
                              tie_embeddings=False, weight_decay=0.1))
    assert "without weight decay" in msg and "\n" not in msg
    assert not (tmp_path / "out" / "ckpt.pt").exists()


def test_the_shakespeare_ngpt_config_builds_an_ngpt_model():
    cfg = train.configure(train.DEFAULTS, ["config/train_shakespeare_char_ngpt.py"])
    c = GPTConfig(**{k: cfg[k] for k in train.MODEL_KEYS}, vocab_size=65)
    assert c.block == "ngpt" and c.pos_embedding == "rope" and cfg["weight_decay"] == 0.0 and cfg["warmup_iters"] == 0
