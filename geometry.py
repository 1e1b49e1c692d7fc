"""
κ-stereographic geometry: the math every curved part of kappaGPT uses.

One model covers all three constant-curvature geometries with one formula set:
κ < 0 is the Poincaré ball of radius 1/√|κ| (hyperbolic), κ = 0 is R^d with metric 4·I (Euclidean),
κ > 0 is the stereographic projection of a sphere of radius 1/√κ. References: Ganea et al. 2018
(Hyperbolic Neural Networks), Bachmann, Bécigneul & Ganea 2020 (κ-GCN, the unified model).

Conventions for every function here:
- `k` is a tensor that broadcasts against `x[..., :1]` (e.g. [n_head, 1, 1] against [B, n_head, T, hs]).
  It may have either sign and may cross 0: every function is smooth through κ = 0, where it equals
  its Euclidean counterpart. It is never turned into a Python number, so torch.compile builds one graph
  for all values of κ.
- Inputs in float16/bfloat16 are upcast and the math runs in float32 (float64 stays float64) with
  autocast switched off, so the results are float32/float64 even inside a bf16 autocast region: the
  tan/artanh near the boundary and the cancellations in ⊕ are not representable in 8-bit mantissas.
- No division by a norm that can be zero: every "f(‖u‖) u/‖u‖" is written as "g(κ‖u‖²) u" with g even
  and analytic, so gradients are finite at u = 0.

The central trick: tan_κ(r) = r·T(κr²) and artan_κ(r) = r·A(κr²), with
    T(z) = tan(√z)/√z  (z > 0),  tanh(√-z)/√-z  (z < 0),  T(0) = 1
    A(z) = atan(√z)/√z (z > 0),  artanh(√-z)/√-z (z < 0), A(0) = 1.
T and A are evaluated by a Taylor polynomial for |z| < _SERIES_Z and by the closed form elsewhere. Each
branch is evaluated on an argument clamped into its own region (the series never sees a large z, the
closed form never a small one), so the branch `torch.where` does not select cannot put NaN/Inf into the
backward pass (0 · ∞ = NaN there). Switching branches on sign(κ) and dividing by √|κ|
(the usual approach) loses ∂/∂κ to cancellation for |κ| ≲ 1e-4 in float32; this formulation does not.
T and A are autograd Functions whose derivative comes from the ODEs they satisfy (2zT' = 1 + zT² − T,
2zA' = 1/(1+z) − A) or the differentiated series, so their backward is a single multiply.

The last section fuses the default curved block's two maps (`prev_token_enter`, `prev_token_exit`): the same
functions as composing the ones above, computed from per-vector scalars with a written-out backward.
"""
import functools
import math

import torch

# |z| below which T and A use their Taylor polynomials; the closed forms above it lose at most ~15x eps in
# their derivative (2zT' = 1 + zT² − T cancels as z → 0).
_SERIES_Z = 0.1
# Coefficients of tan(x)/x and atan(x)/x in powers of z = x² (tanh/artanh follow with z < 0): for tan,
# (−1)^m 2^(2m+2) (2^(2m+2) − 1) B_(2m+2) / (2m+2)! (B: Bernoulli numbers), which shrink like (4/π²)^m; for
# atan, (−1)^m/(2m+1). float32 uses the first 8 (dropped terms < 1e-9 at |z| = 0.1); float64 all 18, so that
# the dropped terms of values and derivatives stay below float64's eps there.
_T_COEFFS = (1.0, 1 / 3, 2 / 15, 17 / 315, 62 / 2835, 1382 / 155925, 21844 / 6081075, 929569 / 638512875,
             0.000590027440945586, 0.00023912911424355248, 9.691537956929451e-05, 3.927832388331683e-05,
             1.5918905069328964e-05, 6.451689215655431e-06, 2.6147711512907546e-06, 1.0597268320104654e-06,
             4.294911078273806e-07, 1.7406618963571648e-07)
_A_COEFFS = tuple((-1) ** m / (2 * m + 1) for m in range(18))
_SERIES_TERMS = {torch.float32: 8, torch.float64: 18}
# κ > 0: tan has a pole at √κ r = π/2 (the antipode of the origin, the point at infinity of the
# projection). tan_κ saturates at this angle, so √κ‖x‖ never exceeds tan(_MAX_ANGLE) ≈ 100.
_MAX_ANGLE = math.pi / 2 - 1e-2
_SPHERE_MAX_NORM = math.tan(_MAX_ANGLE)
# κ < 0: projection keeps √|κ|‖x‖ ≤ 1 − eps. In float32, 1 − 1e-5 rounds so close to 1 that λ_x and
# artanh blow up; 4e-3 keeps artanh ≤ 3.1 and λ_x ≤ 125.
PROJECT_EPS = {torch.float32: 4e-3, torch.float64: 1e-5}
# κ < 0: artanh's argument is clamped to √(1 − eps) for points that ⊕ pushed past the projected radius.
_ARTANH_EPS = {torch.float32: 1e-6, torch.float64: 1e-12}
# Lower bound for denominators (1 + κ‖x‖², ⊕'s denominator, the midpoint's Σw(λ−1)), which vanish only at
# the κ < 0 boundary or for antipodal points when κ > 0.
_DEN_EPS = {torch.float32: 1e-12, torch.float64: 1e-30}


def _float32_math(fn):
    """Run `fn` in float32 (float64 kept) with autocast off; see the module docstring for why."""

    @functools.wraps(fn)
    def wrapper(*args):
        device_type = next(a.device.type for a in args if torch.is_tensor(a))
        args = [a.float() if torch.is_tensor(a) and a.dtype in (torch.float16, torch.bfloat16) else a for a in args]
        with torch.autocast(device_type=device_type, enabled=False):
            return fn(*args)

    return wrapper


def _sqnorm(x):
    return (x * x).sum(dim=-1, keepdim=True)


def _safe_sqrt(s):
    """√s with a zero gradient (not ∞·0 = NaN) at s = 0; s is clamped to the dtype's smallest normal."""
    return s.clamp_min(torch.finfo(s.dtype).tiny).sqrt()


def _horner(z, coeffs):
    """Σ coeffs[i]·zⁱ; in place, which is safe because it only runs inside autograd Functions' forward."""
    out = torch.full_like(z, coeffs[-1])
    for c in reversed(coeffs[:-1]):
        out.mul_(z).add_(c)
    return out


def _series(z, coeffs, derivative=True):
    """The polynomial of `coeffs` truncated for z's dtype, and its derivative (None if not asked for)."""
    coeffs = coeffs[: _SERIES_TERMS[z.dtype]]
    return _horner(z, coeffs), _horner(z, tuple(n * c for n, c in enumerate(coeffs))[1:]) if derivative else None


def _t_and_derivative(z, derivative=True):
    """T(z) and T'(z) (None unless `derivative`). T solves 2zT' = 1 + zT² − T for either sign of z (tan and tanh
    alike), which gives T' from T outside the series region; inside it, the differentiated polynomial is used."""
    small = z.abs() < _SERIES_Z
    # Each branch sees only arguments it is valid for (the series never a large z, the closed form never a
    # small one), so neither can overflow where it is not selected.
    zs = torch.where(small, z, 0.0)
    zc = torch.where(small, _SERIES_Z, z)
    s = zc.abs().sqrt()
    closed = torch.where(zc > 0, torch.tan(s.clamp_max(_MAX_ANGLE)), torch.tanh(s)).div_(s)
    series, dseries = _series(zs, _T_COEFFS, derivative)
    if not derivative:
        return torch.where(small, series, closed), None
    dclosed = torch.where(zc > _MAX_ANGLE**2, 0.0, (1 + zc * closed * closed - closed).div_(2 * zc))
    return torch.where(small, series, closed), torch.where(small, dseries, dclosed)


def _a_and_derivative(z, derivative=True):
    """A(z) and A'(z) (None unless `derivative`). A solves 2zA' = 1/(1 + z) − A for either sign of z (atan and
    artanh alike)."""
    small = z.abs() < _SERIES_Z
    zs = torch.where(small, z, 0.0)
    # κ < 0: −z is capped below 1 (artanh(1) = ∞); past the cap the value is constant, the derivative 0.
    z_min = -(1.0 - _ARTANH_EPS[z.dtype])
    zc = torch.where(small, _SERIES_Z, z.clamp_min(z_min))
    s = zc.abs().sqrt()
    closed = torch.where(zc > 0, torch.atan(s), torch.atanh(s)).div_(s)
    series, dseries = _series(zs, _A_COEFFS, derivative)
    if not derivative:
        return torch.where(small, series, closed), None
    dclosed = torch.where(z < z_min, 0.0, ((1 + zc).reciprocal_() - closed).div_(2 * zc))
    return torch.where(small, series, closed), torch.where(small, dseries, dclosed)


class _EvenFunction(torch.autograd.Function):
    """Autograd for T and A with their derivative computed in the forward pass: the backward is one multiply
    instead of the ~40 elementwise ops autograd would replay through the series and both closed forms."""

    @staticmethod
    def forward(ctx, z, which):
        value, deriv = (_t_and_derivative if which == "T" else _a_and_derivative)(z)
        ctx.save_for_backward(deriv)
        return value

    @staticmethod
    def backward(ctx, grad):
        (deriv,) = ctx.saved_tensors
        return grad * deriv, None


def _T(z):
    """T(z) = tan(√z)/√z for z > 0, tanh(√-z)/√-z for z < 0, 1 at z = 0; so tan_κ(r) = r·T(κr²).

    Clamp: for z > 0, √z is capped at _MAX_ANGLE (π/2 − 0.01) to stay off tan's pole; past it tan_κ
    saturates (zero gradient) instead of wrapping around to the far side of the sphere.
    """
    return _EvenFunction.apply(z, "T")


def _A(z):
    """A(z) = atan(√z)/√z for z > 0, artanh(√-z)/√-z for z < 0, 1 at z = 0; so artan_κ(r) = r·A(κr²).

    Clamp: for z < 0, −z is capped at 1 − _ARTANH_EPS (artanh(1) = ∞): a point ⊕ put on or past the
    κ < 0 boundary reads as lying just inside it.
    """
    return _EvenFunction.apply(z, "A")


@_float32_math
def tan_k(r, k):
    """tan_κ(r) = tan(√κ r)/√κ (κ > 0), tanh(√|κ| r)/√|κ| (κ < 0), r (κ = 0); computed as r·T(κr²).
    Saturates at √κ r = π/2 − 0.01 for κ > 0 (see _T)."""
    return r * _T(k * r * r)


@_float32_math
def artan_k(r, k):
    """artan_κ(r) = atan(√κ r)/√κ (κ > 0), artanh(√|κ| r)/√|κ| (κ < 0), r (κ = 0); computed as r·A(κr²).
    For κ < 0, √|κ| r is clamped to just below 1 (see _A)."""
    return r * _A(k * r * r)


@_float32_math
def lambda_x(x, k):
    """Conformal factor λ_x = 2 / (1 + κ‖x‖²), shape [..., 1].
    Clamp: the denominator is kept ≥ 1e-12 (float32), which only matters on or past the κ < 0 boundary."""
    return 2.0 / (1.0 + k * _sqnorm(x)).clamp_min(_DEN_EPS[x.dtype])


class _MobiusAdd(torch.autograd.Function):
    """⊕ with a hand-written backward that keeps only x, y, κ (autograd would keep ~5 tensors of x's size per
    call, the bulk of a curved block's activation memory) and recomputes the scalars ⟨x,y⟩, ‖x‖², ‖y‖²."""

    @staticmethod
    def _terms(x, y, k):
        """‖x‖², ‖y‖², ⟨x,y⟩, the coefficients a, b of x and y, and the unclamped denominator."""
        x2, y2 = _sqnorm(x), _sqnorm(y)
        xy = (x * y).sum(dim=-1, keepdim=True)
        return x2, y2, xy, 1 - 2 * k * xy - k * y2, 1 + k * x2, 1 - 2 * k * xy + k * k * x2 * y2

    @staticmethod
    def forward(ctx, x, y, k):
        _, _, _, a, b, den_raw = _MobiusAdd._terms(x, y, k)
        ctx.save_for_backward(x, y, k)
        return (a * x + b * y) / den_raw.clamp_min(_DEN_EPS[x.dtype])

    @staticmethod
    def backward(ctx, g):
        x, y, k = ctx.saved_tensors
        x2, y2, xy, a, b, den_raw = _MobiusAdd._terms(x, y, k)
        den = den_raw.clamp_min(_DEN_EPS[x.dtype])
        gx, gy = (g * x).sum(dim=-1, keepdim=True), (g * y).sum(dim=-1, keepdim=True)
        d_a, d_b = gx / den, gy / den  # ∂L/∂a, ∂L/∂b
        d_den = torch.where(den_raw < den, 0.0, -(a * gx + b * gy) / (den * den))  # 0 where clamped
        d_xy = -2 * k * (d_a + d_den)
        d_x2 = k * d_b + k * k * y2 * d_den
        d_y2 = -k * d_a + k * k * x2 * d_den
        grad_x = grad_y = grad_k = None
        if ctx.needs_input_grad[0]:
            grad_x = ((a / den) * g + d_xy * y + 2 * d_x2 * x).sum_to_size(x.shape).to(x.dtype)
        if ctx.needs_input_grad[1]:
            grad_y = ((b / den) * g + d_xy * x + 2 * d_y2 * y).sum_to_size(y.shape).to(y.dtype)
        if ctx.needs_input_grad[2]:
            grad_k = d_a * (-2 * xy - y2) + d_b * x2 + d_den * (2 * k * x2 * y2 - 2 * xy)
            grad_k = grad_k.sum_to_size(k.shape).to(k.dtype)
        return grad_x, grad_y, grad_k


@_float32_math
def mobius_add(x, y, k):
    """Möbius addition x ⊕ y = [(1 − 2κ⟨x,y⟩ − κ‖y‖²) x + (1 + κ‖x‖²) y] / (1 − 2κ⟨x,y⟩ + κ²‖x‖²‖y‖²).

    Not commutative; x ⊕ 0 = x, 0 ⊕ y = y, (−x) ⊕ (x ⊕ y) = y; at κ = 0 it is x + y.
    Clamp: the denominator, which is ≥ (1 − |κ|‖x‖‖y‖)² > 0 inside the κ < 0 ball and vanishes for
    κ > 0 only when y is the antipode of −x, is kept ≥ 1e-12 (float32).
    """
    return _MobiusAdd.apply(x, y, k)


@_float32_math
def mobius_scalar_mul(r, x, k):
    """Möbius scalar multiplication r ⊗ x = tan_κ(r · artan_κ(‖x‖)) x/‖x‖ (0 at x = 0).

    Written without dividing by ‖x‖: with a = r‖x‖A(κ‖x‖²), tan_κ(a)/‖x‖ = r·A(κ‖x‖²)·T(κa²).
    `r` is a tensor or number broadcasting against x[..., :1]. Clamps: those of T and A.
    """
    x2 = _sqnorm(x)
    ra = r * _A(k * x2)
    return ra * _T(k * ra * ra * x2) * x


@_float32_math
def expmap0(u, k):
    """Exponential map at the origin: expmap0(u) = tan_κ(‖u‖) u/‖u‖ = T(κ‖u‖²) u.
    Clamp: for κ > 0 the image saturates at √κ‖y‖ = tan(π/2 − 0.01) (see _T). For κ < 0 the exact image
    lies inside the ball, but tanh rounds to 1 for √|κ|‖u‖ ≳ 9 in float32, so pass the result to
    `project` before using it as a point."""
    return _T(k * _sqnorm(u)) * u


@_float32_math
def logmap0(y, k):
    """Logarithmic map at the origin: logmap0(y) = artan_κ(‖y‖) y/‖y‖ = A(κ‖y‖²) y (inverse of expmap0).
    Clamp: for κ < 0, √|κ|‖y‖ is read as at most √(1 − 1e-6) (see _A)."""
    return _A(k * _sqnorm(y)) * y


@_float32_math
def expmap(x, u, k):
    """Exponential map at x: expmap_x(u) = x ⊕ tan_κ(λ_x‖u‖/2) u/‖u‖ = x ⊕ (T(κλ_x²‖u‖²/4) λ_x/2 · u).
    Clamps: those of λ_x, ⊕ and T."""
    half_lam = lambda_x(x, k) / 2
    v = half_lam * u
    return mobius_add(x, _T(k * _sqnorm(v)) * v, k)


@_float32_math
def logmap(x, y, k):
    """Logarithmic map at x: logmap_x(y) = (2/λ_x) artan_κ(‖w‖) w/‖w‖ = (2/λ_x) A(κ‖w‖²) w, w = (−x) ⊕ y.
    Inverse of expmap_x. Clamps: those of λ_x, ⊕ and A."""
    w = mobius_add(-x, y, k)
    return (2 / lambda_x(x, k)) * _A(k * _sqnorm(w)) * w


@_float32_math
def dist(x, y, k):
    """Geodesic distance d_κ(x, y) = 2 artan_κ(‖(−x) ⊕ y‖), shape [..., 1]; at κ = 0 it is 2‖x − y‖
    (the metric of this model is 4·I at κ = 0). ‖·‖ uses a clamped √ so the gradient at x = y is 0, not NaN."""
    w2 = _sqnorm(mobius_add(-x, y, k))
    return 2 * _safe_sqrt(w2) * _A(k * w2)


@_float32_math
def pairwise_dist(x, y, k):
    """All distances d_κ(x_i, y_j): x [..., N, D], y [..., M, D] → [..., N, M].

    Uses ‖(−x) ⊕ y‖² = ‖x − y‖² / (1 + 2κ⟨x,y⟩ + κ²‖x‖²‖y‖²), so the cost is one matmul plus norms and no
    [..., N, M, D] tensor is formed. Clamps: ‖x − y‖² = ‖x‖² + ‖y‖² − 2⟨x,y⟩ is clamped at 0 (rounding can
    make it slightly negative), the denominator as in ⊕. For nearly equal points the matmul form has an
    absolute error of about eps·‖x‖², unlike `dist`, which is exact there.
    """
    xy = x @ y.transpose(-1, -2)
    x2 = _sqnorm(x)
    y2 = _sqnorm(y).transpose(-1, -2)
    diff2 = (x2 + y2 - 2 * xy).clamp_min(0)
    den = (1 + 2 * k * xy + k * k * x2 * y2).clamp_min(_DEN_EPS[x.dtype])
    w2 = diff2 / den
    return 2 * _safe_sqrt(w2) * _A(k * w2)


@_float32_math
def gyromidpoint(x, w, k):
    """Weighted gyromidpoint of points x [..., N, D] with weights w [..., M, N] (rows summing to 1) → [..., M, D].

    With n = Σ_i w_i λ_i x_i and s = Σ_i w_i (λ_i − 1) (two matmuls), the midpoint is n / (s + √(s² + κ‖n‖²))
    (= ½ ⊗ (n/s) where s > 0): the Einstein midpoint of the Klein model for κ < 0, the mean Σ w_i x_i at κ = 0,
    and for κ > 0 the normalised mean of the points lifted to the sphere (ξ = (λx, (λ − 1)/√κ), mean (n, s/√κ)).
    s < 0 (κ > 0: the mean lies past the equator) makes s + √(…) cancel; there it is κ‖n‖²/(√(…) − s).
    Clamps: the safe √ of s² + κ‖n‖² (≥ 0 exactly). Undefined where the lifted mean is 0 (points balanced
    around the sphere's centre) and at infinity where it is the origin's antipode (n = 0, s < 0): there the
    denominator is kept ≥ 1e-12 (float32), so the result stays finite (`project` pulls far points back).
    """
    lam = lambda_x(x, k)
    n = w @ (lam * x)
    s = w @ (lam - 1)
    kn2 = k * _sqnorm(n)
    root = _safe_sqrt(s * s + kn2)
    past_equator = s < 0
    # the unselected branch of each `where` gets a harmless divisor, so neither can put 0/0 into backward
    den = torch.where(past_equator, kn2 / torch.where(past_equator, root - s, 1.0), s + root)
    return n / den.clamp_min(_DEN_EPS[x.dtype])


def _moved(z):
    """Where `project` rescales a point, from z = κ‖x‖²: past the κ < 0 radius, and past the κ > 0 one."""
    return z < -((1.0 - PROJECT_EPS[z.dtype]) ** 2), z > _SPHERE_MAX_NORM**2


def _project_scale(z):
    """project(x) = s·x, where s depends only on z = κ‖x‖²; returns s and ds/dz (0 where nothing is moved)."""
    too_far_neg, too_far_pos = _moved(z)
    moved = too_far_neg | too_far_pos
    # a harmless z where nothing is moved, so the √ and the divisions never see 0
    zm = torch.where(moved, z, 1.0)
    root = zm.abs().sqrt()
    s = torch.where(too_far_neg, (1.0 - PROJECT_EPS[z.dtype]) / root,
                    torch.where(too_far_pos, _SPHERE_MAX_NORM / root, 1.0))
    return s, torch.where(moved, -s / (2 * zm), 0.0)  # d(r·|z|^(−1/2))/dz = −s/(2z) for either sign


@_float32_math
def project(x, k):
    """Pull points back into the region where the math above is well conditioned.

    κ < 0: rescale x to norm (1 − eps)/√|κ| when √|κ|‖x‖ > 1 − eps (eps = PROJECT_EPS: 4e-3 float32,
    1e-5 float64); the ball's boundary is at infinite distance and λ_x, artanh blow up there.
    κ > 0: rescale to norm tan(π/2 − 0.01)/√κ ≈ 100/√κ when larger, i.e. keep points at least 0.01 rad
    (geodesic angle) from the antipode of the origin, where ⊕ and logmap0 have poles.
    κ = 0: identity. Everything is computed from z = κ‖x‖², so it is smooth and finite at κ = 0.
    """
    return _project_scale(k * _sqnorm(x))[0] * x


@_float32_math
def clamped_fraction(x, k):
    """Fraction of points (over all leading dims and broadcast κ) that `project` would rescale; a health metric."""
    too_far_neg, too_far_pos = _moved(k * _sqnorm(x))
    return (too_far_neg | too_far_pos).float().mean()


# ----------------------------------------------------------------------------- the default block's maps, fused
# The default curved block (reference = the previous token's point, residual = tangent) does, per token and head,
#     enter: x_t = project(expmap0(h_t)),  p_t = x_{t−1} (p_0 = 0, or a cached point q),  u_t = logmap0((−p_t) ⊕ x_t)
#     exit:  h'_t = logmap0(project(p_t ⊕ expmap0(U_t)))          (U: u after both sublayers)
# Each map rescales its argument and ⊕ combines two vectors with scalar coefficients, so
#     u_t = α_t h_t + β_t h_{t−1}        h'_t = γ_t h_{t−1} + δ_t U_t
# where α, β, γ, δ depend only on per-vector scalars: ‖h_t‖², ⟨h_{t−1}, h_t⟩, ‖U_t‖², ⟨h_{t−1}, U_t⟩ and κ.
# Working with these scalars (1/head_size of the data) instead of composing the maps above takes a handful of
# passes over [B, T, H, head_size] instead of ~25, and the backward pass keeps only h, U and per-vector scalars
# (autograd through the composition keeps ~10 stream-sized tensors per block). The backward is the chain rule
# through the scalars, written out step by step in reverse; tests check it against autograd through the composed
# maps and by gradcheck.
# The norm of a ⊕ result is expanded, ‖(a·x + b·y)/D‖² = (a²‖x‖² + 2ab⟨x,y⟩ + b²‖y‖²)/D²; this cancels when the
# result is short (p ≈ x), but it only feeds A(κ‖·‖²) ≈ 1 + O(κ‖·‖²) there, so the vectors keep float32 accuracy.


def _vdot(x, y):
    return torch.linalg.vecdot(x, y).unsqueeze(-1)


def _shift(v, first):
    """v one position later along dim 1 (tokens): [first, v_0, …, v_{T−2}]."""
    return torch.cat([first, v[:, :-1]], dim=1)


def _unshift(g):
    """The adjoint of _shift for v (the first row's gradient belongs to `first`): [g_1, …, g_{T−1}, 0]."""
    return torch.cat([g[:, 1:], torch.zeros_like(g[:, :1])], dim=1)


def _prev_dot(h, a, q):
    """⟨h_{t−1}, a_t⟩ at every position (q, or the origin, before the first), without forming h shifted."""
    first = torch.zeros_like(a[:, :1, ..., :1]) if q is None else _vdot(q.to(a.dtype), a[:, :1])
    return torch.cat([first, _vdot(h[:, :-1], a[:, 1:])], dim=1)


def _add_prev(out, c, h, q):
    """out_t += c_t·h_{t−1} in place (q before the first position; nothing for the origin); returns out."""
    out[:, 1:].addcmul_(c[:, 1:], h[:, :-1])
    if q is not None:
        out[:, :1].addcmul_(c[:, :1], q.to(out.dtype))
    return out


def _q2(h, q):
    """‖q‖², the squared norm of the point before the first position (0 for the origin)."""
    return torch.zeros_like(h[:, :1, ..., :1]) if q is None else _sqnorm(q.to(h.dtype))


# the per-vector scalars each backward reads, kept from forward (~20 scalars per vector: 20/head_size of the stream)
_SAVED = {"enter": ("t", "dt", "x2raw", "s", "ds", "cx", "x2", "cp", "hp2", "p2", "px", "a", "b", "den_raw", "den",
                    "w2", "daw", "m", "alpha", "beta"),
          "exit": ("ty", "dty", "y2", "py", "a", "b", "den_raw", "den", "z2", "s", "ds", "z2p", "az", "daz", "m",
                   "gamma", "delta")}


def _enter_terms(h2, d, q2, k, derivative=True):
    """The enter map's scalars (names as in PrevTokenEnter's docstring) from ‖h_t‖², ⟨h_{t−1}, h_t⟩, ‖q‖², κ.
    `derivative`: also T′, s′, A′ (for backward)."""
    t, dt = _t_and_derivative(k * h2, derivative)  # expmap0(h) = t·h
    x2raw = t * t * h2
    s, ds = _project_scale(k * x2raw)  # project(expmap0(h)) = s·t·h
    cx = s * t
    x2 = cx * cx * h2
    cp = _shift(cx, torch.ones_like(cx[:, :1]))  # p_t = cp_t·h_{t−1}; q is a point already
    hp2 = _shift(h2, q2)
    p2, px = cp * cp * hp2, cp * cx * d  # ‖p‖², ⟨p, x⟩
    a, b = 1 + 2 * k * px - k * x2, 1 + k * p2  # (−p) ⊕ x = (−a·p + b·x)/D
    den_raw = 1 + 2 * k * px + k * k * p2 * x2
    den = den_raw.clamp_min(_DEN_EPS[h2.dtype])
    w2 = (a * a * p2 - 2 * a * b * px + b * b * x2) / (den * den)
    aw, daw = _a_and_derivative(k * w2, derivative)  # logmap0(w) = aw·w
    m = aw / den
    return dict(t=t, dt=dt, x2raw=x2raw, s=s, ds=ds, cx=cx, x2=x2, cp=cp, hp2=hp2, p2=p2, px=px, a=a, b=b, aw=aw,
                den_raw=den_raw, den=den, w2=w2, daw=daw, m=m, alpha=m * b * cx, beta=-m * a * cp)


class PrevTokenEnter(torch.autograd.Function):
    """u = logmap0((−p) ⊕ x), x = project(expmap0(h)), p_t = x_{t−1}: u_t = α_t h_t + β_t h_{t−1}, with
        t = T(κ‖h‖²), s = project's scale at κt²‖h‖², cx = s·t (x = cx·h), cp_t = cx_{t−1} (p = cp·h_{t−1}),
        a = 1 + 2κ⟨p,x⟩ − κ‖x‖², b = 1 + κ‖p‖², D = 1 + 2κ⟨p,x⟩ + κ²‖p‖²‖x‖²  ((−p) ⊕ x = (b·x − a·p)/D),
        ‖w‖² = (a²‖p‖² − 2ab⟨p,x⟩ + b²‖x‖²)/D², α = A(κ‖w‖²)·b·cx/D, β = −A(κ‖w‖²)·a·cp/D.
    Also returns cp and ‖p‖², which the exit map needs, and the last point x_{T−1} (no gradient), the next
    call's q when generating. Saves h and 22 scalars per vector (recomputing them cost more time than memory)."""

    @staticmethod
    def forward(ctx, h, k, q):
        h2, d = _sqnorm(h), _prev_dot(h, h, q)
        S = _enter_terms(h2, d, _q2(h, q), k, derivative=any(ctx.needs_input_grad))  # none needed when generating
        ctx.save_for_backward(h, k, q, h2, d, *(S[n] for n in _SAVED["enter"]))
        x_last = S["cx"][:, -1:] * h[:, -1:]  # the next call's q, when generating
        ctx.mark_non_differentiable(x_last)
        return _add_prev(S["alpha"] * h, S["beta"], h, q), S["cp"], S["p2"], x_last

    @staticmethod
    def backward(ctx, gu, gcp_out, gp2_out, _):
        h, k, q, h2, d, *saved = ctx.saved_tensors
        S = dict(zip(_SAVED["enter"], saved))
        t, x2raw, s, cx, x2, cp, hp2, p2, px, a, b, den, w2, m = (S[n] for n in (
            "t", "x2raw", "s", "cx", "x2", "cp", "hp2", "p2", "px", "a", "b", "den", "w2", "m"))
        g_alpha, g_beta = _vdot(gu, h), _prev_dot(h, gu, q)
        # α = m·b·cx, β = −m·a·cp, m = A/D
        gm = g_alpha * b * cx - g_beta * a * cp
        gb, ga = g_alpha * m * cx, -g_beta * m * cp
        gcx = g_alpha * m * b
        gcp = -g_beta * m * a + (0 if gcp_out is None else gcp_out)
        gA, gden = gm / den, -gm * m / den
        gz = gA * S["daw"]  # A(κ‖w‖²)
        gk = gz * w2
        gw2 = gz * k
        gN = gw2 / (den * den)  # ‖w‖² = N/D²
        gden = gden - 2 * gw2 * w2 / den
        ga = ga + gN * (2 * a * p2 - 2 * b * px)
        gb = gb + gN * (2 * b * x2 - 2 * a * px)
        gp2 = gN * a * a + (0 if gp2_out is None else gp2_out)
        gpx, gx2 = -2 * a * b * gN, gN * b * b
        gD = torch.where(S["den_raw"] < den, 0.0, gden)  # D = max(D_raw, eps)
        gpx = gpx + 2 * k * gD + 2 * k * ga
        gp2 = gp2 + k * k * x2 * gD + k * gb
        gx2 = gx2 + k * k * p2 * gD - k * ga
        gk = gk + (2 * px + 2 * k * p2 * x2) * gD + p2 * gb + (2 * px - x2) * ga
        gcp = gcp + gpx * cx * d + 2 * cp * S["hp2"] * gp2  # ⟨p,x⟩ = cp·cx·d, ‖p‖² = cp²·‖h_{t−1}‖²
        gcx = gcx + gpx * cp * d + 2 * cx * h2 * gx2 + _unshift(gcp)  # cp = cx one position later
        gd = gpx * cp * cx
        gh2 = cx * cx * gx2 + _unshift(cp * cp * gp2)
        gs, gt = gcx * t, gcx * s  # cx = s·t
        gzp = gs * S["ds"]  # s = project's scale at κ·x2raw
        gk = gk + gzp * x2raw
        gx2raw = gzp * k
        gt = gt + 2 * t * h2 * gx2raw  # x2raw = t²‖h‖²
        gh2 = gh2 + t * t * gx2raw
        gzt = gt * S["dt"]  # t = T(κ‖h‖²)
        gk = gk + gzt * h2
        gh2 = gh2 + gzt * k
        # ∂/∂h_t: from u_t (α), ‖h_t‖², d_t = ⟨h_{t−1}, h_t⟩; ∂/∂h_{t−1}: from u_t (β) and d_t
        gh = _add_prev(torch.addcmul(S["alpha"] * gu, 2 * gh2, h), gd, h, q)
        to_prev = torch.addcmul(S["beta"] * gu, gd, h)
        gh[:, :-1] += to_prev[:, 1:]
        return gh, gk.sum_to_size(k.shape) if ctx.needs_input_grad[1] else None, None


def _exit_terms(U2, e, cp, p2, k, derivative=True):
    """The exit map's scalars (names as in PrevTokenExit's docstring) from ‖U‖², ⟨h_{t−1}, U⟩, cp, ‖p‖², κ;
    `derivative` as in _enter_terms."""
    ty, dty = _t_and_derivative(k * U2, derivative)  # expmap0(U) = ty·U
    y2 = ty * ty * U2
    py = cp * ty * e  # ⟨p, y⟩
    a, b = 1 - 2 * k * py - k * y2, 1 + k * p2  # p ⊕ y = (a·p + b·y)/D
    den_raw = 1 - 2 * k * py + k * k * p2 * y2
    den = den_raw.clamp_min(_DEN_EPS[U2.dtype])
    z2 = (a * a * p2 + 2 * a * b * py + b * b * y2) / (den * den)
    s, ds = _project_scale(k * z2)
    z2p = s * s * z2  # ‖project(p ⊕ y)‖²
    az, daz = _a_and_derivative(k * z2p, derivative)
    m = az * s / den
    return dict(ty=ty, dty=dty, y2=y2, py=py, a=a, b=b, den_raw=den_raw, den=den, z2=z2, s=s, ds=ds, z2p=z2p,
                az=az, daz=daz, m=m, gamma=m * a * cp, delta=m * b * ty)


class PrevTokenExit(torch.autograd.Function):
    """h' = logmap0(project(p ⊕ expmap0(U))), p = cp·h_{t−1}: h'_t = γ_t h_{t−1} + δ_t U_t, with
        ty = T(κ‖U‖²) (y = ty·U), a = 1 − 2κ⟨p,y⟩ − κ‖y‖², b = 1 + κ‖p‖², D = 1 − 2κ⟨p,y⟩ + κ²‖p‖²‖y‖²
        (p ⊕ y = (a·p + b·y)/D), ‖p ⊕ y‖² = (a²‖p‖² + 2ab⟨p,y⟩ + b²‖y‖²)/D², s = project's scale there,
        γ = A(κs²‖p ⊕ y‖²)·s·a·cp/D, δ = A(κs²‖p ⊕ y‖²)·s·b·ty/D.
    Saves h, U and 21 scalars per vector."""

    @staticmethod
    def forward(ctx, h, cp, p2, U, k, q):
        U2, e = _sqnorm(U), _prev_dot(h, U, q)
        S = _exit_terms(U2, e, cp, p2, k, derivative=any(ctx.needs_input_grad))
        ctx.save_for_backward(h, cp, p2, U, k, q, U2, e, *(S[n] for n in _SAVED["exit"]))
        return _add_prev(S["delta"] * U, S["gamma"], h, q)

    @staticmethod
    def backward(ctx, go):
        h, cp, p2, U, k, q, U2, e, *saved = ctx.saved_tensors
        S = dict(zip(_SAVED["exit"], saved))
        ty, y2, py, a, b, den, z2, s, z2p, az, m = (S[n] for n in (
            "ty", "y2", "py", "a", "b", "den", "z2", "s", "z2p", "az", "m"))
        g_gamma, g_delta = _prev_dot(h, go, q), _vdot(go, U)
        # γ = m·a·cp, δ = m·b·ty, m = A·s/D
        gm = g_gamma * a * cp + g_delta * b * ty
        ga, gcp = g_gamma * m * cp, g_gamma * m * a
        gb, gty = g_delta * m * ty, g_delta * m * b
        gA, gs, gden = gm * s / den, gm * az / den, -gm * m / den
        gz = gA * S["daz"]  # A(κ·z2p)
        gk = gz * z2p
        gz2p = gz * k
        gs = gs + 2 * s * z2 * gz2p  # z2p = s²·z2
        gz2 = gz2p * s * s
        gzp = gs * S["ds"]  # s = project's scale at κ·z2
        gk = gk + gzp * z2
        gz2 = gz2 + gzp * k
        gN = gz2 / (den * den)  # z2 = N/D²
        gden = gden - 2 * gz2 * z2 / den
        ga = ga + gN * (2 * a * p2 + 2 * b * py)
        gb = gb + gN * (2 * a * py + 2 * b * y2)
        gp2, gpy, gy2 = gN * a * a, 2 * a * b * gN, gN * b * b
        gD = torch.where(S["den_raw"] < den, 0.0, gden)  # D = max(D_raw, eps)
        gpy = gpy - 2 * k * gD - 2 * k * ga
        gp2 = gp2 + k * k * y2 * gD + k * gb
        gy2 = gy2 + k * k * p2 * gD - k * ga
        gk = gk + (2 * k * p2 * y2 - 2 * py) * gD + p2 * gb - (2 * py + y2) * ga
        gcp = gcp + gpy * ty * e  # ⟨p,y⟩ = cp·ty·e
        gty = gty + gpy * cp * e + 2 * ty * U2 * gy2  # ‖y‖² = ty²‖U‖²
        ge = gpy * cp * ty
        gzt = gty * S["dty"]  # ty = T(κ‖U‖²)
        gk = gk + gzt * U2
        gU2 = ty * ty * gy2 + gzt * k
        gU = _add_prev(torch.addcmul(S["delta"] * go, 2 * gU2, U), ge, h, q)
        gh = _unshift(torch.addcmul(S["gamma"] * go, ge, U))
        return gh, gcp, gp2, gU, gk.sum_to_size(k.shape) if ctx.needs_input_grad[4] else None, None


@_float32_math
def prev_token_enter(h, k, q=None):
    """The default block's enter map, fused (see PrevTokenEnter): h [B, T, H, D] in the origin's tangent
    coordinates, κ [H or 1, 1], q the point before h_0 ([B, 1, H, D], generation) or None (the origin).
    Returns u = logmap0((−p) ⊕ project(expmap0(h))), cp and ‖p‖² for `prev_token_exit`, and the last point
    project(expmap0(h_{T−1})) (without gradient), which is q for the tokens that follow.
    Clamps: those of T, A, ⊕ and `project`."""
    return PrevTokenEnter.apply(h, k, q)


@_float32_math
def prev_token_exit(h, cp, p2, U, k, q=None):
    """The default block's exit map, fused (see PrevTokenExit): logmap0(project(p ⊕ expmap0(U))) with p_t the
    previous token's point, given by h, q and `prev_token_enter`'s cp, ‖p‖². Clamps: those of T, A, ⊕, `project`."""
    return PrevTokenExit.apply(h, cp, p2, U, k, q)
