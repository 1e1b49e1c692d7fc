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

The default curved block's two maps, fused for speed and memory, live in fused_maps.py; tests/test_fused.py
holds them equal to the composition of the functions here.
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

