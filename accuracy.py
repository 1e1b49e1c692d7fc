"""
How accurate geometry.py is: in float32, every function against its float64 evaluation (values, and ∂/∂κ by
autograd), and tan_κ, artan_κ against 40-digit mpmath; in float64, tan_κ, artan_κ and d_κ against mpmath;
over κ from 0 to ±4.

    python accuracy.py

This module is also the one home of the references the geometry tests use (tests/test_geometry.py): the
mpmath functions, the fixed test points and the table of function cases.
"""
import math

import mpmath
import torch

import geometry as geo

mpmath.mp.dps = 40
KAPPAS = (0.0, 1e-8, -1e-8, 1e-6, -1e-6, 1e-4, -1e-4, 1e-2, -1e-2, 1.0, -1.0, 4.0, -4.0)
RADII = (1e-3, 0.05, 0.2, 0.45)  # √|κ|r stays < 1 (artanh) and < π/2 (tan) for every κ in KAPPAS
NEAR_ZERO = 1e-4  # the table's "κ near 0" columns: |κ| ≤ this, where the √|κ| formulation fails


# ----------------------------------------------------------------------------- mpmath references


def _mp_scaled(trig, hyp, r, k):
    """trig(√κ r)/√κ for κ > 0, hyp(√|κ| r)/√|κ| for κ < 0, r at κ = 0, at 40 digits."""
    r, k = mpmath.mpf(r), mpmath.mpf(k)
    if k == 0:
        return r
    s = mpmath.sqrt(abs(k))
    return (trig if k > 0 else hyp)(s * r) / s


def mp_tan_k(r, k):
    """tan_κ(r) at 40 digits: tan(√κ r)/√κ, tanh(√|κ| r)/√|κ|, or r."""
    return _mp_scaled(mpmath.tan, mpmath.tanh, r, k)


def mp_artan_k(r, k):
    """artan_κ(r) at 40 digits: atan(√κ r)/√κ, artanh(√|κ| r)/√|κ|, or r."""
    return _mp_scaled(mpmath.atan, mpmath.atanh, r, k)


def mp_dist(x, y, k):
    """d_κ(x, y) at 40 digits from the chordal closed form: with c = 2|κ|‖x − y‖²/((1 + κ‖x‖²)(1 + κ‖y‖²)),
    arcosh(1 + c)/√|κ| = 2 arsinh(√(c/2))/√|κ| for κ < 0, arccos(1 − c)/√κ = 2 arcsin(√(c/2))/√κ for κ > 0,
    2‖x − y‖ at 0. The arsinh/arcsin forms keep all 40 digits as κ → 0, where 1 ± c would round c away."""
    x = [mpmath.mpf(float(v)) for v in x]
    y = [mpmath.mpf(float(v)) for v in y]
    k = mpmath.mpf(k)
    d2 = sum((a - b) ** 2 for a, b in zip(x, y))
    if k == 0:
        return 2 * mpmath.sqrt(d2)
    c = 2 * abs(k) * d2 / ((1 + k * sum(a * a for a in x)) * (1 + k * sum(b * b for b in y)))
    root = mpmath.sqrt(c / 2)
    return 2 * (mpmath.asinh(root) / mpmath.sqrt(-k) if k < 0 else mpmath.asin(root) / mpmath.sqrt(k))


def mp_dk(f, r, k):
    """∂f(r, κ)/∂κ at 40 digits; a central difference straddling 0 is fine because f is analytic in κ."""
    h = mpmath.mpf(10) ** -15
    return (f(r, mpmath.mpf(k) + h) - f(r, mpmath.mpf(k) - h)) / (2 * h)


def mp_dr(f, r, k):
    """∂f(r, κ)/∂r at 40 digits."""
    h = mpmath.mpf(10) ** -15
    return (f(mpmath.mpf(r) + h, k) - f(mpmath.mpf(r) - h, k)) / (2 * h)


def lift_midpoint(x, w, k):
    """κ > 0 reference: lift the points to the sphere of radius 1/√κ in R^{d+1} (ξ = λx, ξ₀ = (λ − 1)/√κ),
    take the weighted mean there, push it back onto the sphere and project it stereographically."""
    lam = 2 / (1 + k * (x * x).sum(-1, keepdim=True))
    lifted = torch.cat([lam * x, (lam - 1) / k.sqrt()], dim=-1)
    mean = w @ lifted
    on_sphere = mean / (k.sqrt() * mean.norm(dim=-1, keepdim=True))
    return on_sphere[..., :-1] / (1 + k.sqrt() * on_sphere[..., -1:])


# ----------------------------------------------------------------------------- test points and cases


def rand_points(n, d, k, dtype=torch.float64, scale=0.45, seed=0):
    """n points in R^d at radius up to `scale` of the safe region of κ-space (a float κ), seeded."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    x = x / x.norm(dim=-1, keepdim=True) * torch.rand(n, 1, generator=gen, dtype=torch.float64) * scale
    x = x / math.sqrt(abs(k)) if k != 0 else x * 2
    return x.to(dtype)


def vector_cases(k, dtype):
    """{name: f(κ tensor)} for every vector function of geometry.py on fixed points. The points are the same
    for every |κ| ≤ 1, so ∂/∂κ near 0 is measured where it matters: at fixed x as κ → 0."""
    kp = max(abs(k), 1.0)
    x = rand_points(8, 16, kp, seed=7)
    y = rand_points(8, 16, kp, seed=8)
    u = rand_points(8, 16, kp, seed=9, scale=0.3)
    w = torch.softmax(torch.randn(5, 8, generator=torch.Generator().manual_seed(10), dtype=torch.float64), dim=-1)
    x, y, u, w = (t.to(dtype) for t in (x, y, u, w))
    return {
        "mobius_add": lambda kk: geo.mobius_add(x, y, kk),
        "mobius_scalar_mul": lambda kk: geo.mobius_scalar_mul(0.7, x, kk),
        "expmap0": lambda kk: geo.expmap0(u, kk),
        "logmap0": lambda kk: geo.logmap0(y, kk),
        "expmap": lambda kk: geo.expmap(x, u, kk),
        "logmap": lambda kk: geo.logmap(x, y, kk),
        "dist": lambda kk: geo.dist(x, y, kk),
        "pairwise_dist": lambda kk: geo.pairwise_dist(x, y, kk),
        "gyromidpoint": lambda kk: geo.gyromidpoint(x, w, kk),
        "lambda_x": lambda kk: geo.lambda_x(x, kk),
    }


# ----------------------------------------------------------------------------- the table


def _value_and_dk(fn, k, dtype, weights=None):
    """fn(κ) and ∂/∂κ of Σ weights·fn(κ) by autograd, both as float64."""
    kk = torch.tensor(k, dtype=dtype, requires_grad=True)
    out = fn(kk)
    if weights is None:
        weights = torch.ones_like(out, dtype=torch.float64).uniform_(-1, 1, generator=torch.Generator().manual_seed(1))
    (gk,) = torch.autograd.grad((out * weights.to(dtype)).sum(), [kk])
    return out.double(), gk.double(), weights


def measure():
    """{(function, 'near 0' or 'all κ'): [worst value error, worst ∂/∂κ error]}, relative errors (values:
    to the largest entry; mpmath rows: per radius)."""
    rows = {}

    def record(name, k, value, dk):
        for column in (("near 0",) if abs(k) <= NEAR_ZERO else ()) + ("all κ",):
            row = rows.setdefault((name, column), [0.0, 0.0])
            row[0], row[1] = max(row[0], value), max(row[1], dk)

    for k in KAPPAS:
        cases32, cases64 = vector_cases(k, torch.float32), vector_cases(k, torch.float64)
        for name in cases32:
            o64, g64, wts = _value_and_dk(cases64[name], k, torch.float64)
            o32, g32, _ = _value_and_dk(cases32[name], k, torch.float32, wts)
            record(name, k, ((o32 - o64).abs().max() / o64.abs().max()).item(),
                   (abs(g32 - g64) / g64.abs().clamp_min(1e-30)).item())
        one = torch.ones((), dtype=torch.float64)
        for dtype, label in ((torch.float32, " (mpmath)"), (torch.float64, ", float64 (mpmath)")):
            for name, ref in (("tan_k", mp_tan_k), ("artan_k", mp_artan_k)):
                for r in RADII:
                    fn = getattr(geo, name)
                    out, gk, _ = _value_and_dk(lambda kk: fn(torch.tensor(r, dtype=dtype), kk), k, dtype, one)
                    want, want_dk = ref(r, k), mp_dk(ref, r, k)
                    record(name + label, k, abs(out.item() - float(want)) / abs(float(want)),
                           abs(gk.item() - float(want_dk)) / abs(float(want_dk)))
        x, y = rand_points(4, 8, 1.0, seed=5), rand_points(4, 8, 1.0, seed=6)
        for a, b in zip(x, y):
            out, gk, _ = _value_and_dk(lambda kk: geo.dist(a, b, kk), k, torch.float64, one)
            want, want_dk = mp_dist(a, b, k), mp_dk(lambda _, kappa: mp_dist(a, b, kappa), None, k)
            record("dist, float64 (mpmath)", k, abs(out.item() - float(want)) / float(want),
                   abs(gk.item() - float(want_dk)) / abs(float(want_dk)))
    return rows


def main():
    rows = measure()
    print(f"worst relative error of float32 against float64, and against 40-digit mpmath where marked (the float64 "
          f"rows: float64 against mpmath), κ in {list(KAPPAS)}; 'near 0' is |κ| ≤ {NEAR_ZERO:g}")
    print(f"| {'function':<26} | {'value, κ near 0':>17} | {'∂/∂κ, κ near 0':>17} | {'value, all κ':>12} | "
          f"{'∂/∂κ, all κ':>11} |")
    print(f"|{'-' * 28}|{'-' * 19}|{'-' * 19}|{'-' * 14}|{'-' * 13}|")
    for name in dict.fromkeys(n for n, _ in rows):
        near, every = rows[(name, "near 0")], rows[(name, "all κ")]
        print(f"| {name:<26} | {near[0]:>17.1e} | {near[1]:>17.1e} | {every[0]:>12.1e} | {every[1]:>11.1e} |")
    return rows


if __name__ == "__main__":
    main()
