"""The research options: distance attention, midpoint aggregation, window reference, float64 geometry,
the generation cache and Muon."""
import pytest
import torch
import torch.nn.functional as F

import fused_maps
import geometry as geo
from accuracy import lift_midpoint
from model import GPTConfig
from runtime import Muon, MultiOptimizer, configure_optimizers, orthogonalize
from conftest import (TINY, assert_causal, assert_every_parameter_learns, full_logits, make, tiny_corpus, tokens,
                      train_losses)
from generate import generate

MODES = [  # (curvature, reference, residual, attention, aggregate)
    ("euclidean", "prev_token", "tangent", "distance", "tangent"),
    ("zero", "prev_token", "tangent", "distance", "midpoint"),
    ("hyperbolic", "prev_token", "tangent", "distance", "tangent"),
    ("hyperbolic", "prev_token", "tangent", "distance", "midpoint"),
    ("hyperbolic", "prev_token", "mobius", "dot", "midpoint"),
    ("hyperbolic", "window", "tangent", "dot", "tangent"),
    ("spherical", "window", "mobius", "distance", "midpoint"),
    ("free", "origin", "mobius", "distance", "tangent"),
]
IDS = ["-".join(m) for m in MODES]


def make_mode(curvature, reference, residual, attention, aggregate, **kw):
    return make(curvature, reference, residual, attention=attention, aggregate=aggregate, **kw)


def test_distance_attention_at_zero_curvature_is_euclidean_distance_attention():
    m = make("zero", "origin", "mobius", attention="distance", aggregate="tangent")
    attn = m.transformer.h[0].attn
    x = torch.randn(2, 10, 16)
    with torch.no_grad():
        attn.log_tau.copy_(torch.tensor([1.0, 2.0]))
        got = attn(x, torch.zeros(2, 1))
        q, k, v = attn.c_attn(x).split(16, dim=2)
        q, k, v = (t.view(2, 10, 2, 8).transpose(1, 2) for t in (q, k, v))
        d2 = 4 * ((q.unsqueeze(3) - k.unsqueeze(2)) ** 2).sum(-1)  # d_0 = 2‖q − k‖
        scores = -d2 / torch.tensor([1.0, 2.0]).exp().view(2, 1, 1)
        scores = scores.masked_fill(~torch.ones(10, 10, dtype=torch.bool).tril(), float("-inf"))
        y = (F.softmax(scores, -1) @ v).transpose(1, 2).reshape(2, 10, 16)
        want = attn.c_proj(y)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("attention", ["dot", "distance"])
def test_midpoint_aggregation_at_zero_curvature_is_the_weighted_mean(attention):
    a = make("zero", "prev_token", "tangent", attention=attention, aggregate="tangent")
    b = make("zero", "prev_token", "tangent", attention=attention, aggregate="midpoint")
    b.load_state_dict(a.state_dict())
    idx = tokens()
    torch.testing.assert_close(full_logits(b, idx), full_logits(a, idx), rtol=1e-5, atol=1e-5)
    # and with curvature the two aggregations are different functions
    c = make("hyperbolic", "prev_token", "tangent", attention=attention, aggregate="tangent", curvature_init=-1.0)
    d = make("hyperbolic", "prev_token", "tangent", attention=attention, aggregate="midpoint", curvature_init=-1.0)
    d.load_state_dict(c.state_dict())
    assert (full_logits(c, idx) - full_logits(d, idx)).abs().max() > 1e-4


def test_dot_attention_explicit_path_matches_sdpa():
    """aggregate='midpoint' forces the explicit attention path; at κ = 0 it must equal the fused kernel."""
    a = make("zero", "origin", "mobius", attention="dot", aggregate="tangent")
    b = make("zero", "origin", "mobius", attention="dot", aggregate="midpoint")
    b.load_state_dict(a.state_dict())
    idx = tokens()
    torch.testing.assert_close(full_logits(b, idx), full_logits(a, idx), rtol=1e-5, atol=1e-5)


def test_window_of_one_is_prev_token():
    a = make("hyperbolic", "prev_token", "tangent")
    b = make("hyperbolic", "window", "tangent", reference_window=1)
    b.load_state_dict(a.state_dict())
    idx = tokens()
    torch.testing.assert_close(full_logits(b, idx), full_logits(a, idx), rtol=1e-5, atol=1e-5)
    c = make("hyperbolic", "window", "tangent", reference_window=3)
    c.load_state_dict(a.state_dict())
    assert (full_logits(c, idx) - full_logits(a, idx)).abs().max() > 1e-4


def test_window_reference_points_are_gyromidpoints_of_the_previous_tokens():
    m = make("hyperbolic", "window", "tangent", reference_window=3)
    block = m.transformer.h[0]
    k = torch.tensor([[-0.5], [-1.0]])
    x = geo.project(geo.expmap0(torch.randn(2, 6, 2, 8) * 0.3, k), k)
    p = block._reference_points(x, k, None)
    assert torch.equal(p[:, 0], torch.zeros_like(p[:, 0]))
    torch.testing.assert_close(p[:, 1], x[:, 0])
    for t in range(2, 6):
        s = max(0, t - 3)
        pts = x[:, s:t].transpose(1, 2)  # [B, H, n, hs]
        w = torch.full((1, t - s), 1.0 / (t - s))
        want = geo.gyromidpoint(pts, w, k.view(2, 1, 1)).squeeze(2)
        torch.testing.assert_close(p[:, t], want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", MODES, ids=IDS)
def test_causal_and_every_parameter_learns(mode):
    m = make_mode(*mode)
    assert_causal(m)
    assert_every_parameter_learns(m)


@pytest.mark.parametrize("mode", MODES, ids=IDS)
def test_mode_trains(mode):
    losses, _ = train_losses(make_mode(*mode, vocab_size=tiny_corpus()[1], n_embd=32, n_head=4), 40, autocast=True)
    assert sum(losses[-5:]) < 0.7 * sum(losses[:5])


def test_geometry_dtype_float64(monkeypatch):
    a = make("hyperbolic", "window", "tangent", attention="distance", aggregate="midpoint")
    b = make("hyperbolic", "window", "tangent", attention="distance", aggregate="midpoint", geometry_dtype="float64")
    b.load_state_dict(a.state_dict())
    seen = set()
    real_project = geo.project

    def spy(x, k):
        seen.add(x.dtype)
        return real_project(x, k)

    monkeypatch.setattr(geo, "project", spy)
    idx = tokens()
    la, lb = full_logits(a, idx), full_logits(b, idx)
    assert seen == {torch.float32, torch.float64}
    assert lb.dtype == torch.float32
    torch.testing.assert_close(la, lb, rtol=1e-4, atol=1e-4)
    _, loss = b(idx, targets=tokens(seed=3))
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in b.parameters())


CACHE_MODES = [("euclidean", "prev_token", "tangent", "dot", "tangent")] + MODES + [
    ("hyperbolic", "prev_token", "mobius", "dot", "tangent"), ("zero", "origin", "mobius", "dot", "tangent")]


@pytest.mark.parametrize("mode", CACHE_MODES, ids=["-".join(m) for m in CACHE_MODES])
def test_cached_generation_matches_uncached(mode):
    m = make_mode(*mode)
    m.eval()
    idx = tokens(B=2, T=16)
    # logits at every position, fed one token at a time after a 5-token prefill, equal the full forward's
    full = full_logits(m, idx)
    cache = m.new_cache()
    steps = [m(idx[:, :5], cache=cache)[0]] + [m(idx[:, t : t + 1], cache=cache)[0] for t in range(5, 16)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full[:, 4:], rtol=1e-4, atol=1e-4)
    # same tokens from the same seed, including past block_size (16) where the context slides
    for seed in (0, 1):
        a = generate(m, idx[:, :3], 30, top_k=10, generator=torch.Generator().manual_seed(seed), use_cache=True)
        b = generate(m, idx[:, :3], 30, top_k=10, generator=torch.Generator().manual_seed(seed), use_cache=False)
        assert torch.equal(a, b)


def test_muon_optimizer_groups_training_and_state():
    m = make("hyperbolic", attention="distance")
    opt = configure_optimizers(m, 0.1, 1e-3, (0.9, 0.95), "cpu", optimizer="muon")
    assert isinstance(opt, MultiOptimizer)
    muon, adamw = opt.optimizers
    assert isinstance(muon, Muon)
    hidden = {id(p) for blk in m.transformer.h for p in blk.parameters() if p.dim() == 2}
    assert {id(p) for g in muon.param_groups for p in g["params"]} == hidden
    qkv, rest = muon.param_groups  # q, k and v orthogonalised as three matrices; no weight decay, as the speedrun's
    assert [id(p) for p in qkv["params"]] == [id(b.attn.c_attn.weight) for b in m.transformer.h]
    assert (qkv["split"], rest["split"], qkv["weight_decay"], rest["weight_decay"]) == (3, 1, 0.0, 0.0)
    in_adamw = {id(p) for g in adamw.param_groups for p in g["params"]}
    assert in_adamw.isdisjoint(hidden) and len(in_adamw | hidden) == len(list(m.parameters()))
    assert id(m.transformer.wte.weight) in in_adamw and id(m.transformer.h[0].attn.log_tau) in in_adamw
    for g in opt.param_groups:
        g["lr"] = 2e-3 * g["lr_mult"]
    assert muon.param_groups[0]["lr"] == 2e-3  # setting a group's lr reaches the optimizer that owns it
    m = make("hyperbolic", vocab_size=tiny_corpus()[1], n_embd=32, n_head=4)
    losses, opt = train_losses(m, 40, optimizer="muon")
    assert sum(losses[-5:]) < 0.8 * sum(losses[:5])
    state = opt.state_dict()
    fresh = configure_optimizers(m, 0.0, 3e-3, (0.9, 0.95), "cpu", optimizer="muon")
    fresh.load_state_dict(state)
    assert torch.equal(fresh.optimizers[0].state_dict()["state"][0]["momentum_buffer"],
                       state["optimizers"][0]["state"][0]["momentum_buffer"])
    with pytest.raises(ValueError, match="does not match"):
        fresh.load_state_dict(configure_optimizers(m, 0.0, 3e-3, (0.9, 0.95), "cpu").state_dict())
    with pytest.raises(ValueError, match="optimizer='sgd' is not one of"):
        configure_optimizers(m, 0.0, 3e-3, (0.9, 0.95), "cpu", optimizer="sgd")


@pytest.mark.parametrize("kw, msg", [
    (dict(attention="cosine"), "attention='cosine' is not one of"),
    (dict(aggregate="sum"), "aggregate='sum' is not one of"),
    (dict(geometry_dtype="float16"), "geometry_dtype='float16' is not one of"),
    (dict(reference="window", reference_window=0), "reference_window must be positive"),
])
def test_bad_research_options(kw, msg):
    with pytest.raises(ValueError, match=msg):
        GPTConfig(**{**TINY, **kw})


@pytest.mark.parametrize("reference, residual", [("window", "tangent"), ("window", "mobius"),
                                                 ("prev_token", "tangent")])  # the last: the fused maps
def test_geometry_checkpoint_same_gradients_less_memory(reference, residual, monkeypatch):
    import bench

    calls = []  # the fused enter map runs again in backward when checkpointed
    enter = fused_maps.prev_token_enter
    monkeypatch.setattr(fused_maps, "prev_token_enter", lambda *args: calls.append(1) or enter(*args))

    a = make("hyperbolic", reference, residual, n_embd=32, n_head=4)
    b = make("hyperbolic", reference, residual, n_embd=32, n_head=4, geometry_checkpoint=True)
    b.load_state_dict(a.state_dict())
    x, y = tokens(B=4), tokens(B=4, seed=9)

    def step(m):
        m.zero_grad()
        _, loss = m(x, y)
        loss.backward()
        return loss

    la, lb = step(a), step(b)
    assert la.item() == lb.item()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-6, atol=1e-7, msg=name)
    if reference == "prev_token":
        # the fused maps keep only h, U and per-vector scalars already: checkpointing recomputes the scalars, too
        # little memory to measure at this size (docs/results.md: 1.23× → 1.11× compiled at the CPU config); it must
        # recompute
        calls.clear()
        step(a)
        assert len(calls) == 2  # one per block
        calls.clear()
        step(b)
        assert len(calls) == 4  # and again in backward
    else:  # fewer bytes alive at the peak of a training step (the CPU profiler's allocation events, as bench.py)
        assert bench.peak_memory("cpu", lambda: step(b)) < 0.9 * bench.peak_memory("cpu", lambda: step(a))
    # evaluation and generation never recompute
    with torch.no_grad():
        torch.testing.assert_close(full_logits(a, x), full_logits(b, x))


DTYPE_MODES = [("euclidean", "prev_token", "tangent", "dot", "tangent"), ("hyperbolic", "prev_token", "tangent", "dot",
               "tangent"), ("hyperbolic", "prev_token", "mobius", "dot", "tangent")] + MODES


@pytest.mark.parametrize("mode", DTYPE_MODES, ids=["-".join(m) for m in DTYPE_MODES])
def test_float64_model_matches_float32_on_the_same_weights(mode):
    """model.double() runs every mode in float64 end to end (stream, geometry, loss), as a precision reference."""
    a = make_mode(*mode)
    b = make_mode(*mode)
    b.load_state_dict(a.state_dict())
    b.double()
    idx, targets = tokens(), tokens(seed=3)
    la, lb = full_logits(a, idx), full_logits(b, idx)
    assert lb.dtype == torch.float64
    torch.testing.assert_close(lb.float(), la, rtol=1e-4, atol=1e-5)
    _, loss = b(idx, targets=targets)
    assert loss.dtype == torch.float64
    torch.testing.assert_close(loss.float(), a(idx, targets=targets)[1], rtol=1e-5, atol=1e-6)
    loss.backward()
    assert all(p.grad.dtype == torch.float64 and torch.isfinite(p.grad).all() for p in b.parameters())


def test_spherical_window_reference_past_the_equator_is_the_sphere_midpoint():
    """κ = +0.5 and block-input points past the equator (√κ‖x‖ ≈ 2): every reference point is the midpoint of
    the previous tokens' points on the sphere, not a point on the equator."""
    m = make("fixed", "window", "tangent", curvature_init=0.5, reference_window=3)
    kappa = torch.full((2, 1), 0.5)
    gen = torch.Generator().manual_seed(0)
    direction = torch.randn(1, 1, 2, 8, generator=gen)
    center = direction / direction.norm(dim=-1, keepdim=True) * 2 / 0.5**0.5
    x = center * (1 + 0.1 * torch.randn(2, 6, 2, 8, generator=gen))
    p = m.transformer.h[0]._reference_points(x, kappa, None)
    k64 = torch.tensor(0.5, dtype=torch.float64)
    for t in range(2, 6):
        pts = x[:, max(0, t - 3):t].transpose(1, 2).double()  # [B, H, n, hs]
        want = lift_midpoint(pts, torch.full((1, pts.size(2)), 1.0 / pts.size(2), dtype=torch.float64), k64)
        assert (0.5**0.5 * want.norm(dim=-1) > 1).all()  # the case that matters: past the equator
        torch.testing.assert_close(p[:, t].double(), want.squeeze(2), rtol=1e-4, atol=1e-5)


def test_spherical_midpoint_aggregation_past_the_equator_is_the_sphere_midpoint():
    m = make("fixed", "prev_token", "tangent", attention="dot", aggregate="midpoint", curvature_init=0.5)
    attn = m.transformer.h[0].attn
    x = 8 * torch.randn(2, 10, 16, generator=torch.Generator().manual_seed(4))  # large values: points far out
    kappa = torch.full((2, 1), 0.5)
    with torch.no_grad():
        got = attn(x, kappa)
        q, k, v = (t.view(2, 10, 2, 8).transpose(1, 2).double() for t in attn.c_attn(x).split(16, dim=2))
        scores = (q @ k.transpose(-1, -2) / 8**0.5).masked_fill(~torch.ones(10, 10, dtype=torch.bool).tril(), -1e300)
        k64 = torch.tensor(0.5, dtype=torch.float64)
        vp = geo.project(geo.expmap0(v, k64), k64)
        mid = lift_midpoint(vp, F.softmax(scores, -1), k64)
        assert (0.5**0.5 * mid.norm(dim=-1) > 1).float().mean() > 0.5  # most midpoints lie past the equator
        y = geo.logmap0(mid, k64).transpose(1, 2).reshape(2, 10, 16)
        want = attn.c_proj(y.float())
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_orthogonalize_maps_every_singular_value_near_one():
    """Muon's five quintic Newton–Schulz steps leave singular values in about [0.7, 1.2] (not exactly 1: that is
    the iteration's design), for wide, tall and square matrices whose singular values span two decades. (Much
    smaller ones grow by about a = 3.4 a step, so five steps do not bring them all the way up.)"""
    g = torch.Generator().manual_seed(0)
    for shape in ((32, 96), (96, 32), (48, 48)):
        u, _, vh = torch.linalg.svd(torch.randn(*shape, generator=g, dtype=torch.float64), full_matrices=False)
        s = torch.logspace(-1, 1, min(shape), dtype=torch.float64)
        sv = torch.linalg.svdvals(orthogonalize((u * s) @ vh).double())
        assert 0.6 < sv.min() and sv.max() < 1.25, (shape, sv.min().item(), sv.max().item())


def test_muon_treats_a_fused_qkv_matrix_as_three():
    """One [3C, C] parameter with split=3 gets exactly the updates of three [C, C] parameters stepped alone."""
    g = torch.Generator().manual_seed(0)
    start = torch.randn(24, 8, generator=g)
    fused, whole = start.clone().requires_grad_(), start.clone().requires_grad_()
    parts = [t.clone().requires_grad_() for t in start.split(8)]
    opts = Muon([{"params": [fused], "split": 3}], lr=0.02), Muon([{"params": parts}], lr=0.02), Muon([whole], lr=0.02)
    for _ in range(3):
        grad = torch.randn(24, 8, generator=g)
        fused.grad, whole.grad = grad.clone(), grad.clone()
        parts[0].grad, parts[1].grad, parts[2].grad = grad.split(8)
        for opt in opts:
            opt.step()
    assert torch.equal(fused.detach(), torch.cat([p.detach() for p in parts]))
    assert (whole.detach() - fused.detach()).abs().max() > 1e-3  # orthogonalised as one matrix, it is not the same


def test_muon_weight_decay_is_decoupled_and_off_by_default():
    p = torch.ones(4, 4, requires_grad=True)
    p.grad = torch.zeros(4, 4)
    Muon([p], lr=0.1).step()
    assert torch.equal(p.detach(), torch.ones(4, 4))  # a zero gradient orthogonalises to 0; nothing decays
    Muon([p], lr=0.1, weight_decay=0.5).step()
    assert torch.allclose(p.detach(), torch.full((4, 4), 0.95))


def test_the_smear_gate_is_not_weight_decayed():
    m = make("euclidean", smear=True)
    opt = configure_optimizers(m, 0.1, 1e-3, (0.9, 0.95), "cpu")
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert id(m.smear.gate.weight) not in decayed and id(m.transformer.h[0].attn.c_attn.weight) in decayed
