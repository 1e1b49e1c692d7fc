"""
The default curved block's two maps, fused: the fast path of `reference='prev_token'`, `residual='tangent'`.

geometry.py is the reference math; this module computes the same two functions as composing it, per token and head,
    enter: x_t = project(expmap0(h_t)),  p_t = x_{t−1} (p_0 = 0, or a cached point q),  u_t = logmap0((−p_t) ⊕ x_t)
    exit:  h'_t = logmap0(project(p_t ⊕ expmap0(U_t)))          (U: u after both sublayers)
Each map rescales its argument and ⊕ combines two vectors with scalar coefficients, so
    u_t = α_t h_t + β_t h_{t−1}        h'_t = γ_t h_{t−1} + δ_t U_t
where α, β, γ, δ depend only on per-vector scalars: ‖h_t‖², ⟨h_{t−1}, h_t⟩, ‖U_t‖², ⟨h_{t−1}, U_t⟩ and κ.
Working with these scalars (1/head_size of the data) instead of composing the maps takes a handful of passes over
[B, T, H, head_size] instead of ~25, and the backward pass keeps only h, U and per-vector scalars (autograd through
the composition keeps ~10 stream-sized tensors per block). The backward is the chain rule through the scalars,
written out step by step in reverse.

The norm of a ⊕ result is expanded, ‖(a·x + b·y)/D‖² = (a²‖x‖² + 2ab⟨x,y⟩ + b²‖y‖²)/D²; this cancels when the
result is short (p ≈ x), but it only feeds A(κ‖·‖²) ≈ 1 + O(κ‖·‖²) there, so the vectors keep float32 accuracy.
T, A, project's scale and the clamps are geometry.py's own, so both paths clamp alike.

tests/test_fused.py holds this module equal to the composed maps (values and gradients in float64 to rounding,
float32 within float32's error, gradcheck) and the model's fused path equal to its general path (Block.forward).
"""
import torch

from geometry import _DEN_EPS, _a_and_derivative, _float32_math, _project_scale, _sqnorm, _t_and_derivative


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
