"""The default block's fused maps (geometry.prev_token_enter / prev_token_exit) against the composed maps they
replace: values and gradients in float64 to rounding, float32 within float32's own error, gradcheck, the cached
continuation, bf16 autocast, the model's two paths, and what the fused path keeps for backward."""
import pytest
import torch

import geometry as geo
from conftest import make, tokens

KAPPAS = [-1.0, -0.05, 0.0, 1e-6, -1e-6, 0.3, 2.0]


def composed(h, U, k, q=None):
    """The enter and exit maps written with the general functions, as the model's general path does."""
    x = geo.project(geo.expmap0(h, k), k)
    first = torch.zeros_like(x[:, :1]) if q is None else q
    p = torch.cat([first, x[:, :-1]], 1)
    u = geo.logmap0(geo.mobius_add(-p, x, k), k)
    return u, geo.logmap0(geo.project(geo.mobius_add(p, geo.expmap0(u * 0.7 + U, k), k), k), k)


def fused(h, U, k, q=None):
    u, cp, p2, _ = geo.prev_token_enter(h, k, q)
    return u, geo.prev_token_exit(h, cp, p2, u * 0.7 + U, k, q)  # U depends on u, as in the block


def inputs(kv, scale, dtype=torch.float64, shape=(2, 6, 3, 4), seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(*shape, generator=g, dtype=torch.float64) * scale
    U = torch.randn(*shape, generator=g, dtype=torch.float64) * scale
    k = torch.tensor([[kv], [kv * 0.5], [-kv]], dtype=torch.float64)  # per head, both signs when kv ≠ 0
    weights = [torch.randn(*shape, generator=g, dtype=torch.float64) for _ in range(2)]
    return [t.to(dtype).requires_grad_() for t in (h, U, k)], [w.to(dtype) for w in weights]


def values_and_grads(fn, args, weights):
    out = fn(*args)
    grads = torch.autograd.grad(sum((o * w).sum() for o, w in zip(out, weights)), args)
    return [t.double() for t in (*out, *grads)]


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item()


@pytest.mark.parametrize("kv", KAPPAS)
@pytest.mark.parametrize("scale", [0.05, 0.3])  # inside, away from the clamps (kinks)
def test_float64_equals_the_composed_maps(kv, scale):
    args, w = inputs(kv, scale)
    got, want = values_and_grads(fused, args, w), values_and_grads(composed, args, w)
    for name, a, b in zip(["u", "h'", "∂h", "∂U", "∂κ"], got, want):
        assert rel(a, b) < 1e-12, (name, rel(a, b))


@pytest.mark.parametrize("kv", [-0.7, 0.0, 0.4])
def test_gradcheck(kv):
    (h, U, k), _ = inputs(kv, 0.4, shape=(1, 4, 3, 3))
    assert torch.autograd.gradcheck(fused, (h, U, k))


@pytest.mark.parametrize("kv", [-1.0, -0.05, 0.3, 2.0])
@pytest.mark.parametrize("scale", [1.0, 4.0])
def test_float32_is_as_accurate_as_the_composed_maps_near_the_boundary(kv, scale, monkeypatch):
    """Far out (projection and the artanh clamp active), both float32 paths are ill-conditioned alike; the
    reference is float64 with float32's clamps, so that both compute the same function."""
    args64, w64 = inputs(kv, scale, shape=(4, 32, 3, 16))
    args32 = [t.detach().float().requires_grad_() for t in args64]
    w32 = [t.float() for t in w64]
    f32, c32 = values_and_grads(fused, args32, w32), values_and_grads(composed, args32, w32)
    monkeypatch.setitem(geo.PROJECT_EPS, torch.float64, geo.PROJECT_EPS[torch.float32])
    monkeypatch.setitem(geo._ARTANH_EPS, torch.float64, geo._ARTANH_EPS[torch.float32])
    ref = values_and_grads(composed, args64, w64)
    for name, f, c, r in zip(["u", "h'", "∂h", "∂U", "∂κ"], f32, c32, ref):
        assert torch.isfinite(f).all()
        assert rel(f, r) <= 2 * rel(c, r) + 1e-5, (name, rel(f, r), rel(c, r))


def test_finite_at_zero_vectors_kappa_zero_and_past_the_boundary():
    for kv in (0.0, -1.0, 1.0):
        (h, U, k), w = inputs(kv, 1.0)
        with torch.no_grad():
            h[:, 2] = 0  # a zero vector, and the next token's reference at the origin
            h[:, 4] *= 1e4  # far past the κ < 0 boundary / near the κ > 0 antipode
        for t in values_and_grads(fused, (h, U, k), w):
            assert torch.isfinite(t).all()


def test_continuation_from_a_cached_point_equals_the_whole_sequence():
    (h, U, k), _ = inputs(-0.5, 0.7)
    with torch.no_grad():
        u_all, out_all = fused(h, U, k)
        q = geo.project(geo.expmap0(h[:, 2:3], k), k)  # the block-input point before position 3
        u_rest, out_rest = fused(h[:, 3:], U[:, 3:], k, q)
    assert torch.allclose(u_rest, u_all[:, 3:], atol=1e-12)
    assert torch.allclose(out_rest, out_all[:, 3:], atol=1e-12)


def test_bf16_autocast_computes_in_float32():
    (h, U, k), w = inputs(-0.3, 0.5, dtype=torch.float32)
    want = values_and_grads(fused, (h, U, k), w)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        u, out = fused(h.bfloat16(), U, k)
    assert u.dtype == out.dtype == torch.float32
    assert rel(out.double(), want[1]) < 1e-2  # only the bf16 rounding of h's input


@pytest.mark.parametrize("curvature", ["hyperbolic", "spherical", "zero", "free"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_model_fused_path_equals_the_general_path(curvature, dtype):
    """stats=[] sends the block through the general path (it collects health metrics); the rest is fused."""
    model = make(curvature, "prev_token", "tangent", qk_norm=True).to(dtype)
    idx = tokens()
    targets = tokens(seed=2)
    results = []
    for stats in (None, []):
        model.zero_grad()
        _, loss = model(idx, targets, stats=stats)
        loss.backward()
        results.append([loss.detach()] + [p.grad.clone() for p in model.parameters() if p.grad is not None])
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for a, b in zip(*results):
        assert rel(a, b) < tol


def saved_bytes(fn):
    """Bytes of distinct storages autograd keeps for backward while fn() runs."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(storages.values())


def test_fused_block_keeps_a_fraction_of_what_the_composed_maps_keep():
    model = make("hyperbolic", "prev_token", "tangent", n_embd=64, n_head=2)
    idx = tokens(B=8)
    fused_bytes = saved_bytes(lambda: model(idx, idx))
    general_bytes = saved_bytes(lambda: model(idx, idx, stats=[]))
    euclid = make("euclidean", n_embd=64, n_head=2)
    euclid_bytes = saved_bytes(lambda: euclid(idx, idx))
    # the fused maps keep h and U (two stream-sized tensors per block) and a few per-vector scalars
    assert fused_bytes < 1.3 * euclid_bytes < general_bytes
