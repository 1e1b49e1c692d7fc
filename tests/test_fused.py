"""The default block's fused maps (fused_maps.prev_token_enter / prev_token_exit) against the composed maps they
replace: values and gradients in float64 to rounding, float32 within float32's own error, gradcheck, the cached
continuation, bf16 autocast, the model's two paths, and what the fused path keeps for backward."""
import pytest
import torch

import fused_maps
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
    u, cp, p2, _ = fused_maps.prev_token_enter(h, k, q)
    return u, fused_maps.prev_token_exit(h, cp, p2, u * 0.7 + U, k, q)  # U depends on u, as in the block


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


EPS32 = torch.finfo(torch.float32).eps
# Two float32 evaluations of one function each carry their own rounding error, in either direction, so they may
# differ by twice the error of one; and the error of one evaluation varies with the kernels' summation order (from
# CPU to CPU, ATEN_CPU_CAPABILITY, MKL version) by another factor of about 2 in these cases. Hence 4.
ROUNDING_SLACK = 4


def input_rounding_sensitivity(fn, args64, weights64, draws=4):
    """How far fn's float64 outputs move when its inputs are rounded by up to float32's unit roundoff (eps/2): the
    least error any float32 evaluation must be allowed, set by the case's conditioning. Near the clamps' kinks this
    dominates the gradients (a point that rounding moves across a kink changes its gradient by O(1))."""
    g = torch.Generator().manual_seed(0)
    ref = values_and_grads(fn, args64, weights64)
    worst = [0.0] * len(ref)
    for _ in range(draws):
        moved = [(t.detach() * (1 + EPS32 / 2 * (2 * torch.rand(t.shape, generator=g, dtype=t.dtype) - 1)))
                 .requires_grad_() for t in args64]
        worst = [max(w, rel(a, b)) for w, a, b in zip(worst, values_and_grads(fn, moved, weights64), ref)]
    return worst


@pytest.mark.parametrize("kv", [-1.0, -0.05, 0.3, 2.0])
@pytest.mark.parametrize("scale", [1.0, 4.0])
def test_float32_is_as_accurate_as_the_composed_maps_near_the_boundary(kv, scale, monkeypatch):
    """Far out (projection and the artanh clamp active) float32 is ill-conditioned: near the κ < 0 boundary the
    rounding of ‖(−p) ⊕ x‖² is amplified by artanh's 1/(1 − r²), so both paths lose about 1e-3 of u. The reference
    is float64 with float32's clamps, so that all compute the same function. The fused maps' error may be what
    float32 costs in this case, measured as the larger of the composed maps' own float32 error (the rounding
    inside the maps) and the input-rounding sensitivity (the kinks), within ROUNDING_SLACK."""
    args64, w64 = inputs(kv, scale, shape=(4, 32, 3, 16))
    args32 = [t.detach().float().requires_grad_() for t in args64]
    w32 = [t.float() for t in w64]
    f32, c32 = values_and_grads(fused, args32, w32), values_and_grads(composed, args32, w32)
    monkeypatch.setitem(geo.PROJECT_EPS, torch.float64, geo.PROJECT_EPS[torch.float32])
    monkeypatch.setitem(geo._ARTANH_EPS, torch.float64, geo._ARTANH_EPS[torch.float32])
    ref = values_and_grads(composed, args64, w64)
    floor = input_rounding_sensitivity(composed, args64, w64)
    for name, f, c, r, s in zip(["u", "h'", "∂h", "∂U", "∂κ"], f32, c32, ref, floor):
        assert torch.isfinite(f).all()
        assert rel(f, r) <= ROUNDING_SLACK * max(rel(c, r), s, EPS32), (name, rel(f, r), rel(c, r), s)


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


def model_loss_and_grads(model, idx, targets, stats):
    model.zero_grad()
    _, loss = model(idx, targets, stats=stats)
    loss.backward()
    return [loss.detach().double()] + [p.grad.double() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize("curvature", ["hyperbolic", "spherical", "zero", "free"])
def test_model_fused_path_equals_the_general_path(curvature):
    """stats=[] sends the block through the general path (it collects health metrics); the rest is fused. In
    float64 the two are equal to rounding. In float32 each carries float32's error for this model, which is no
    constant: QK-norm, softmax and the gradients' sums amplify rounding ~100× over eps here, and the summation
    order of the kernels differs from CPU to CPU. So the bound is the general path's own float32 error against
    float64 (the case's conditioning as float32 sees it), within ROUNDING_SLACK."""
    idx, targets = tokens(), tokens(seed=2)
    m32 = make(curvature, "prev_token", "tangent", qk_norm=True)
    m64 = make(curvature, "prev_token", "tangent", qk_norm=True).double()
    fused64, general64 = (model_loss_and_grads(m64, idx, targets, stats) for stats in (None, []))
    for name, a, b in zip(["loss", *(n for n, p in m64.named_parameters() if p.grad is not None)], fused64, general64):
        assert rel(a, b) < 1e-12, (name, rel(a, b))
    fused32, general32 = (model_loss_and_grads(m32, idx, targets, stats) for stats in (None, []))
    scale = max(max(rel(g, r) for g, r in zip(general32, general64)), EPS32)
    assert max(rel(f, r) for f, r in zip(fused32, general64)) <= ROUNDING_SLACK * scale
    assert max(rel(f, g) for f, g in zip(fused32, general32)) <= ROUNDING_SLACK * scale


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
