"""
kappaGPT model: nanoGPT's GPT whose residual stream lives in learnable-curvature κ-stereographic space.

The stream of width n_embd is split into n_head slices of head_size; in block l, the slice of head j is a
point of the κ_{l,j}-stereographic space. One curved block, with p_t the reference point (token t−1's point
at the block's input, the origin for t = 0), and h the stream in the origin's tangent coordinates:

    x  = project(expmap0_κ(h))                  # read the stream into this block's κ-space
    u  = logmap0_κ((−p) ⊕ x)                    # x seen from p, as a tangent vector in the origin frame
    f  = Attn(LN(u))   then   x ← p ⊕ expmap0(u + f)         residual='tangent'
                           or x ← x ⊕ (p ⊕ expmap0(f))       residual='mobius'
    (the same again with the MLP, reference point unchanged)
    h' = logmap0_κ(x)                           # hand the stream to the next block

Why origin-frame maps: the true maps at p satisfy (λ_p/2)·logmap_p(y) = logmap0((−p) ⊕ y) and
expmap_p((2/λ_p)·w) = p ⊕ expmap0(w). The right-hand sides put every token's tangent vector in one frame
(the origin's, up to a per-token factor λ_p/2 that LayerNorm removes), which attention needs: it adds up
vectors of different tokens, and vectors of different tangent spaces cannot be added without transport.

Why the stream travels between blocks as logmap0: blocks have different κ, so a point of κ_l-space is not
one of κ_{l+1}-space. Crossing through the origin's tangent space keeps every point's direction and its
distance from the origin (d(0, expmap0(h)) = 2‖h‖ for any κ), and is the identity when the κ agree.

Options (GPTConfig): reference='origin' (p = 0) or 'window' (p = gyromidpoint of the previous
reference_window points); attention='distance' (scores −d_κ(q, k)²/τ) and aggregate='midpoint' (the
gyromidpoint of value points) in CausalSelfAttention; geometry_dtype='float64'; a generation cache.

The default block (prev_token, tangent) runs its enter and exit maps fused (fused_maps.py):
the same function in a few passes, keeping h, U and per-vector scalars for backward. Block.forward below is the general
path, the readable definition; it also collects the health stats, and tests hold the two paths equal.

At κ ≡ 0 (curvature='zero') every map is the identity and ⊕ is +, so the block becomes
    u = x − x_{t−1},  x ← x + x_{t−1} + f  (mobius + prev_token: a token-shift model, not nanoGPT)
    u = x − x_{t−1},  x ← x + f            (tangent + prev_token)
    u = x,            x ← x + f            (mobius + origin: exactly nanoGPT)
which is what lets the ablations separate "curvature helps" from "mixing in the previous token helps".

Grafting curvature onto a pretrained Euclidean model (GPT-2, init_from='gpt2'; see pretrained.py). The second
line above is not GPT-2's block: at κ = 0 its sublayers read x − x_{t−1}, not x. reference_share=True gives each
head of each block a learnable share α of its reference point, p_t = α ⊗_κ p_t (Möbius scalar multiplication,
α ⊗ x = expmap0(α·logmap0(x))), with α = 0 at init. At α = 0, p = 0 and the tangent residual gives
h' = logmap0(project(expmap0(h + f))): exactly h + f at κ = 0, GPT-2's block. So a graft starts from κ = 0 as well
(curvature='free' with curvature_init=0, or 'zero' for the share alone): its logits at step 0 are GPT-2's, and it
learns its way out. With residual='tangent', at α = 0 the function does not depend on κ, so κ's first gradient is
0; α's is not (∂p/∂α = logmap0(x_{t−1})), and once α moves κ has a gradient too. With residual='mobius' the update
x ⊕ expmap0(f) still depends on κ at p = 0, so κ has a (small) gradient from the first step. α = 1 is the plain prev_token reference. A graft
with κ ≠ 0 at init is not GPT-2 at step 0: expmap0 saturates (and `project` clamps) where √|κ|·‖h‖ is large, and
GPT-2's stream is large (its norm grows through the layers). The share runs on the general path below (not fused); its
parameters are trained with κ's (no weight decay, lr × curvature_lr_mult).
"""
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

import fused_maps
import geometry as geo

CHOICES = {  # the allowed values of GPTConfig's string options
    "block": ("gpt", "ngpt"),
    "curvature": ("euclidean", "zero", "hyperbolic", "spherical", "free", "fixed"),
    "reference": ("prev_token", "origin", "window"), "residual": ("mobius", "tangent"),
    "attention": ("dot", "distance"), "aggregate": ("tangent", "midpoint"), "geometry_dtype": ("float32", "float64"),
    "pos_embedding": ("learned", "rope"), "norm": ("layernorm", "rmsnorm"), "mlp": ("gelu", "gelu_tanh", "relu2"),
}


# what the nGPT block requires of the other options: it is Euclidean, has no biases, separate input and output
# embeddings, unit-norm weights (so none starts at 0), and its own query-key scaling s_qk in place of attn_scale
NGPT_REQUIRES = {"curvature": "euclidean", "bias": False, "tie_embeddings": False, "zero_init_proj": False,
                 "attn_scale": 0.0, "attn_scale_learnable": False, "attention": "dot", "aggregate": "tangent"}


@dataclass
class GPTConfig:
    block_size: int = 1024
    vocab_size: int = 50304  # GPT-2's 50257 padded up to a multiple of 64
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True  # biases in Linears and LayerNorms, like GPT-2
    block: str = "gpt"  # 'gpt': GPT-2's pre-norm block (curved or not); 'ngpt': the normalized transformer (NGPTBlock)
    # mixed curvature by default: κ of either sign per head, learned from 0. Of the two curved blocks it saved more
    # training in the compute multiplier study (docs/results.md), though the tuned baseline beat both at 4x128
    curvature: str = "free"  # see CHOICES; 'euclidean' is the plain nanoGPT code path
    curvature_init: float = 0.0  # κ at init (learnable modes) or always ('fixed')
    curvature_per_head: bool = True  # one κ per head per block (else one per block)
    curvature_shared: bool = False  # one set of κ tied across all blocks
    reference: str = "prev_token"  # the tangent point of token t
    reference_window: int = 4  # reference='window': how many previous tokens' points to average
    reference_share: bool = False  # p ← α ⊗ p with a learnable per-head share α starting at 0 (the graft, see above)
    residual: str = "tangent"  # how a sublayer's output joins the stream
    attention: str = "dot"  # scaled dot product, or −d_κ(q, k)²/τ
    aggregate: str = "tangent"  # average values as tangent vectors, or their gyromidpoint
    geometry_dtype: str = "float32"  # 'float32' or 'float64' for the geometry ops (float64 to diagnose)
    geometry_checkpoint: bool = False  # recompute the geometry in backward instead of keeping its intermediates
    # the GPT-2 speedrun's modern block (modded-nanogpt), each part a switch; the defaults are GPT-2's
    pos_embedding: str = "learned"  # learned absolute positions, or rotary embeddings of q and k
    norm: str = "layernorm"  # or 'rmsnorm' (no learned gain, as the speedrun; also normalises the embedding)
    qk_norm: bool = False  # RMS-normalise each head's q and k
    mlp: str = "gelu"  # exact GELU; 'gelu_tanh': its tanh approximation (GPT-2's); 'relu2': ReLU(x)²
    tie_embeddings: bool = True  # the output head shares the token embedding
    logit_softcap: float = 0.0  # c·tanh(logits/c) when > 0
    zero_init_proj: bool = False  # attention's and the MLP's output projections (and an untied head) start at 0
    attn_scale: float = 0.0  # dot-product scores × this; 0 = 1/√head_size (GPT-2's)
    attn_scale_learnable: bool = False  # one learnable score scale per head, starting at attn_scale (or 1/√head_size)
    smear: bool = False  # add a gated share of token t−1's embedding to token t's: e_t + λ·σ(g·e_t[:12])·e_{t−1}

    def __post_init__(self):
        for name in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd", "reference_window"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.logit_softcap < 0:
            raise ValueError(f"logit_softcap must be ≥ 0 (0 = off), got {self.logit_softcap}")
        if self.attn_scale < 0:
            raise ValueError(f"attn_scale must be ≥ 0 (0 = 1/√head_size), got {self.attn_scale}")
        if self.attention == "distance" and (self.attn_scale or self.attn_scale_learnable):
            raise ValueError("attn_scale and attn_scale_learnable scale dot-product scores; attention='distance' has "
                             "its own learnable temperature")
        if self.pos_embedding == "rope" and self.head_size % 2:
            raise ValueError(f"pos_embedding='rope' needs an even head_size, got {self.head_size}")
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r} is not one of {allowed}")
        if self.curvature == "hyperbolic" and not self.curvature_init < 0:
            raise ValueError(f"curvature='hyperbolic' needs curvature_init < 0 (e.g. -0.05), got {self.curvature_init}")
        if self.curvature == "spherical" and not self.curvature_init > 0:
            raise ValueError(f"curvature='spherical' needs curvature_init > 0 (e.g. 0.05), got {self.curvature_init}")
        if self.reference_share and (self.curvature == "euclidean" or self.reference == "origin"):
            raise ValueError("reference_share scales the reference point of a curved block: it needs a curvature other "
                             "than 'euclidean' and reference='prev_token' or 'window'")
        if self.block == "ngpt":
            bad = [f"{k}={getattr(self, k)!r} (nGPT: {v!r})" for k, v in NGPT_REQUIRES.items() if getattr(self, k) != v]
            if bad:
                raise ValueError("block='ngpt' cannot be combined with " + "; ".join(bad))
        if self.curvature != "euclidean" and self.reference == "origin" and self.residual == "tangent":
            # x ← expmap0(logmap0(x) + f): in tangent coordinates this is h ← h + f, exactly the Euclidean
            # model whatever κ is, so a "curved" run would silently be a Euclidean one.
            raise ValueError("reference='origin' with residual='tangent' makes curvature a no-op (the stream is h "
                             "← h + f in the origin's tangent space); use residual='mobius' or reference='prev_token'")

    @property
    def head_size(self):
        return self.n_embd // self.n_head


class Curvature(nn.Module):
    """The curvatures of one block (or of all blocks when shared): κ of shape [n_head or 1, 1].

    hyperbolic: κ = −softplus(raw) < 0; spherical: κ = softplus(raw) > 0; free: κ = raw (may cross 0);
    fixed: κ = curvature_init (a buffer); zero: κ = 0 (a buffer). The shape [H, 1] broadcasts against the
    stream viewed as [B, T, H, head_size], so no transpose is needed.
    """

    def __init__(self, config):
        super().__init__()
        self.mode = config.curvature
        n = config.n_head if config.curvature_per_head else 1
        c = float(config.curvature_init)
        if self.mode in ("hyperbolic", "spherical"):
            raw = math.log(math.expm1(abs(c)))  # inverse softplus
            self.raw = nn.Parameter(torch.full((n, 1), raw))
        elif self.mode == "free":
            self.raw = nn.Parameter(torch.full((n, 1), c))
        else:
            self.register_buffer("raw", torch.full((n, 1), c if self.mode == "fixed" else 0.0))

    def forward(self):
        if self.mode == "hyperbolic":
            return -F.softplus(self.raw)
        if self.mode == "spherical":
            return F.softplus(self.raw)
        return self.raw


def make_norm(config):
    """LayerNorm (GPT-2), or RMSNorm without a learned gain (the speedrun's)."""
    if config.norm == "rmsnorm":
        return nn.RMSNorm(config.n_embd, elementwise_affine=False)
    return nn.LayerNorm(config.n_embd, bias=config.bias)


def rotary(x, positions):
    """Rotary position embedding (Su et al. 2021) of x [B, H, T, D] at `positions` [T]: each pair
    (x_i, x_{i+D/2}) is rotated by the angle position · 10000^(−2i/D), so q·k depends on relative positions."""
    D = x.size(-1)
    freq = 10000.0 ** (-torch.arange(0, D, 2, device=x.device, dtype=torch.float32) / D)
    angle = positions.float()[:, None] * freq  # [T, D/2]
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    x1, x2 = x[..., : D // 2], x[..., D // 2 :]
    return torch.cat([x1 * cos + x2 * sin, x2 * cos - x1 * sin], dim=-1)


def causal_mask(positions, n_keys):
    """[T, n_keys] booleans, True where the query at positions[i] may see the key at position j."""
    return torch.arange(n_keys, device=positions.device)[None, :] <= positions[:, None]


class CausalSelfAttention(nn.Module):
    """Causal self-attention on tangent vectors. attention='dot' is ordinary scaled dot-product attention;
    'distance' scores a query/key pair by −d_κ(q, k)²/τ with q, k mapped into the head's κ-space and τ a
    learnable per-head temperature. aggregate='tangent' averages value vectors; 'midpoint' takes the
    gyromidpoint of the value points (the Einstein midpoint, for κ < 0) and maps it back to the tangent frame.

    Dot-product scores are q·k × attn_scale (1/√head_size by default). With QK-norm, ‖q‖ = ‖k‖ = √head_size, so
    every score lies within ±attn_scale·head_size: ±√head_size by default, ±5.7 at head_size 32 against ±11.3 at
    the speedrun's 128; attn_scale = √128/head_size restores that headroom, attn_scale_learnable learns it per head.

    Why −d² and not −d: at κ = 0, d² = 4‖q − k‖² and softmax over keys cancels the ‖q‖² term, leaving
    (8 q·k − 4‖k‖²)/τ: dot-product attention with a penalty on long keys (the "L2 attention" of Kim et al.
    2021), smooth everywhere; −d has no gradient direction at q = k. τ starts at 8√head_size, which makes the
    q·k term start at the usual 1/√head_size scale.
    """

    def __init__(self, config):
        super().__init__()
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.attn_dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.attention = config.attention
        self.aggregate = config.aggregate
        self.rope, self.qk_norm = config.pos_embedding == "rope", config.qk_norm
        if config.attention == "distance":
            self.log_tau = nn.Parameter(torch.full((config.n_head,), math.log(8 * math.sqrt(config.head_size))))
        # None keeps SDPA's own 1/√head_size, bit for bit; a learnable scale multiplies q instead
        self.sdpa_scale = 1.0 if config.attn_scale_learnable else (config.attn_scale or None)
        if config.block == "ngpt":  # nGPT: q, k on the unit sphere, × s_qk (init 1, stored at 1/√n_embd), scores × √d_k
            self.s_qk = nn.Parameter(torch.full((config.n_embd,), 1 / math.sqrt(config.n_embd)))
            self.s_qk_mult, self.sdpa_scale = math.sqrt(config.n_embd), math.sqrt(config.head_size)
        if config.attn_scale_learnable:
            start = config.attn_scale or 1 / math.sqrt(config.head_size)
            self.q_scale = nn.Parameter(torch.full((config.n_head, 1, 1), start))

    def forward(self, x, kappa=None, cache=None):
        """x [B, T, C]; kappa: κ [H or 1, 1] (None: κ = 0); cache: this block's generation cache (see GPT.new_cache),
        whose "pos" holds the positions of x's tokens and "mask" which cached keys each may see; keys and values are
        written into it at those positions."""
        B, T, C = x.size()
        H = self.n_head
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))
        positions = torch.arange(T, device=x.device) if cache is None else cache["pos"]
        if self.rope:
            q, k = rotary(q, positions), rotary(k, positions)
        if hasattr(self, "s_qk"):
            s = (self.s_qk * self.s_qk_mult).view(H, 1, C // H).to(q.dtype)
            q, k = s * F.normalize(q, dim=-1), s * F.normalize(k, dim=-1)
        elif self.qk_norm:
            q, k = F.rms_norm(q, (C // H,)), F.rms_norm(k, (C // H,))
        if hasattr(self, "q_scale"):
            q = q * self.q_scale.to(q.dtype)
        mask = None  # causal over x's own tokens
        if cache is not None:  # attend over the whole preallocated cache, masked: shapes never change
            if "k" not in cache:
                cache["k"] = k.new_zeros(B, H, cache["max_len"], C // H)
                cache["v"] = v.new_zeros(B, H, cache["max_len"], C // H)
            cache["k"].index_copy_(2, positions, k)
            cache["v"].index_copy_(2, positions, v)
            k, v, mask = cache["k"], cache["v"], cache["mask"]
        dropout = self.attn_dropout if self.training else 0.0
        if self.attention == "dot" and self.aggregate == "tangent":  # the fused kernel
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=mask is None,
                                               scale=self.sdpa_scale)
        else:
            kappa = torch.zeros(1, 1, 1, device=x.device) if kappa is None else kappa.view(-1, 1, 1)
            if self.attention == "distance":
                qp = geo.project(geo.expmap0(q, kappa), kappa)
                kp = geo.project(geo.expmap0(k, kappa), kappa)
                scores = -geo.pairwise_dist(qp, kp, kappa).square() / self.log_tau.exp().view(H, 1, 1)
            else:
                scores = (q @ k.transpose(-1, -2)).to(torch.promote_types(q.dtype, torch.float32))
                scores = scores / math.sqrt(C // H) if self.sdpa_scale is None else scores * self.sdpa_scale
            mask = causal_mask(positions, k.size(2)) if mask is None else mask
            att = F.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
            att = F.dropout(att, p=dropout, training=self.training)
            if self.aggregate == "midpoint":
                vp = geo.project(geo.expmap0(v, kappa), kappa)
                y = geo.logmap0(geo.gyromidpoint(vp, att, kappa), kappa)
            else:
                y = att.to(v.dtype) @ v
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y.to(x.dtype)))  # geometry may hand back float32/float64


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)
        self.act = {"gelu": F.gelu, "gelu_tanh": lambda z: F.gelu(z, approximate="tanh"),
                    "relu2": lambda z: F.relu(z).square()}[config.mlp]

    def forward(self, x, kappa=None, cache=None):
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class Smear(nn.Module):
    """The speedrun's smear: e_t ← e_t + λ·σ(g·e_t[:12])·e_{t−1} on the token embeddings, a gated share of the
    previous token's. λ and g start at 0 (no effect at init), as in modded-nanogpt."""

    def __init__(self, config):
        super().__init__()
        self.gate = nn.Linear(min(12, config.n_embd), 1, bias=False)
        self.lam = nn.Parameter(torch.zeros(1))

    def forward(self, e, cache=None):
        """e [B, T, C]; cache carries the embedding of the token before e's first (generation)."""
        prev = cache.get("smear_prev") if cache is not None else None
        prev = torch.zeros_like(e[:, :1]) if prev is None else prev
        if cache is not None:
            cache["smear_prev"] = e[:, -1:].clone()
        before = torch.cat([prev, e[:, :-1]], dim=1)
        return e + self.lam * torch.sigmoid(self.gate(e[..., : self.gate.in_features])) * before


class NGPTBlock(nn.Module):
    """The normalized transformer's block (Loshchilov et al. 2024, nGPT; NVIDIA's public ngpt code): the stream h
    stays on the unit sphere, and each sublayer moves it towards its own normalised output,

        h ← Norm(h + α_A ⊙ (Norm(Attn(h)) − h)),    h ← Norm(h + α_M ⊙ (Norm(MLP(h)) − h)),

    Norm(x) = x/‖x‖, with learnable per-dimension step sizes α ("eigen learning rates"). No norm layers: q and k
    are normalised per head and scaled by s_qk, scores are multiplied by √d_k (not divided: q·k is a cosine);
    the MLP is u ⊙ SiLU(v) with u, v scaled by s_u, s_v and v by √n_embd more (so that SiLU sees its non-linear
    range: ‖h‖ = 1 leaves the entries of W·h near 1/√n_embd). GPT puts the embedding on the sphere, scales the
    logits by s_z and keeps every weight vector along the embedding dimension at unit norm after each optimizer
    step (GPT.after_step). The norm and qk_norm options and mlp do not apply to this block: it normalises with the
    L2 norm everywhere and has its own MLP.

    The paper's scaling trick: a scalar with init value a is stored as a parameter starting at s and used as
    param · a/s, so one learning rate moves each at the rate the paper chose. α: a = 0.05, s = 1/√n_embd;
    s_qk and s_z: a = 1, s = 1/√n_embd; s_u, s_v: a = s = 1. α is used as |α| (NVIDIA's code)."""

    ALPHA_INIT = 0.05

    def __init__(self, config):
        super().__init__()
        d = config.n_embd
        self.attn = CausalSelfAttention(config)
        self.c_fc = nn.Linear(d, 2 * 4 * d, bias=False)
        self.c_proj = nn.Linear(4 * d, d, bias=False)
        self.s_uv = nn.Parameter(torch.ones(2 * 4 * d))
        self.v_mult = math.sqrt(d)
        self.dropout = nn.Dropout(config.dropout)
        self.alpha_attn = nn.Parameter(torch.full((d,), 1 / math.sqrt(d)))
        self.alpha_mlp = nn.Parameter(torch.full((d,), 1 / math.sqrt(d)))
        self.alpha_mult = self.ALPHA_INIT * math.sqrt(d)

    def mlp(self, h):
        u, v = (self.c_fc(h) * self.s_uv.to(h.dtype)).chunk(2, dim=-1)
        return self.dropout(self.c_proj(u * F.silu(v * self.v_mult)))

    def forward(self, h, kappa=None, stats=None, cache=None):
        """h: the stream [B, T, C], unit rows; cache as in Block (the attention's keys and values)."""
        for alpha, sublayer in ((self.alpha_attn, lambda x: self.attn(x, None, cache)), (self.alpha_mlp, self.mlp)):
            step = (alpha * self.alpha_mult).abs()
            h = F.normalize(h + step * (F.normalize(sublayer(h).to(h.dtype), dim=-1) - h), dim=-1)
        return h


def window_weights(positions, n_points, W):
    """Rows of averaging weights for the tokens at `positions` [T] over the points at positions 0 … n_points−1:
    position t averages positions max(0, t−W) … t−1 equally; position 0 has no earlier token and gets an all-zero
    row (the gyromidpoint of nothing is the origin)."""
    t = positions.unsqueeze(1)
    s = torch.arange(n_points, device=positions.device).unsqueeze(0)
    w = ((s < t) & (s >= t - W)).float()
    return w / w.sum(dim=1, keepdim=True).clamp_min(1)


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.ln_1 = make_norm(config)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = make_norm(config)
        self.mlp = MLP(config)
        self.n_head = config.n_head
        self.reference = config.reference
        self.reference_window = config.reference_window
        self.residual = config.residual
        self.geometry_dtype = {"float32": torch.float32, "float64": torch.float64}[config.geometry_dtype]
        self.geometry_checkpoint = config.geometry_checkpoint
        if config.reference_share:  # α of each head: p_t = α ⊗ (the reference point); 0 at init, 1 is the plain one
            self.share = nn.Parameter(torch.zeros(config.n_head, 1))

    def forward(self, h, kappa=None, stats=None, cache=None):
        """h: the stream [B, T, C] in the origin's tangent coordinates; kappa: κ [H or 1, 1], None for Euclidean;
        cache: a dict carrying this block's keys/values and reference points from earlier positions."""
        if kappa is None:  # the plain nanoGPT block
            h = h + self.attn(self.ln_1(h), None, cache)
            return h + self.mlp(self.ln_2(h))
        B, T, C = h.shape
        H = self.n_head
        stream = h.dtype  # float32, or float64 in a float64 model
        gdtype = torch.promote_types(stream, self.geometry_dtype)
        kappa = kappa.to(gdtype)
        # geometry_checkpoint: keep only each geometry step's inputs and recompute the rest in backward
        recompute = self.geometry_checkpoint and stats is None and cache is None and torch.is_grad_enabled()

        def run(fn, *args):
            return checkpoint(fn, *args, use_reentrant=False) if recompute else fn(*args)

        fused = self.reference == "prev_token" and self.residual == "tangent" and not hasattr(self, "share")
        if fused and stats is None:
            out = self._fused_forward(h.view(B, T, H, C // H).to(gdtype), kappa, cache, stream, run)
            return out.view(B, T, C).to(stream)
        clamped = []  # fraction of points each projection moved, for the health metrics

        def enter(h4, kappa):
            x = self._project(geo.expmap0(h4, kappa), kappa, clamped, stats)
            p = self._reference_points(x, kappa, cache)
            return x, p, geo.logmap0(geo.mobius_add(-p, x, kappa), kappa)

        def mobius_step(x, p, f, kappa, read):
            x = self._project(geo.mobius_add(x, geo.mobius_add(p, geo.expmap0(f, kappa), kappa), kappa), kappa,
                              clamped, stats)
            return x, (geo.logmap0(geo.mobius_add(-p, x, kappa), kappa) if read else None)

        def tangent_exit(p, u, kappa):
            return self._project(geo.mobius_add(p, geo.expmap0(u, kappa), kappa), kappa, clamped, stats)

        x, p, u = run(enter, h.view(B, T, H, C // H).to(gdtype), kappa)
        for i, (ln, sublayer) in enumerate(((self.ln_1, self.attn), (self.ln_2, self.mlp))):
            f = sublayer(ln(u.view(B, T, C).to(stream)), kappa, cache).view(B, T, H, C // H)
            if self.residual == "tangent":
                # x ← p ⊕ expmap0(u + f), and the next sublayer reads logmap0((−p) ⊕ x) = u + f by left
                # cancellation ((−p) ⊕ (p ⊕ w) = w): the round trip through the point is skipped.
                u = u + f
            else:
                x, u = run(mobius_step, x, p, f, kappa, i == 0)  # only the MLP still needs to read x
        if self.residual == "tangent":
            x = run(tangent_exit, p, u, kappa)
        if stats is not None:
            with torch.no_grad():
                radius = (kappa.abs().sqrt() * x.norm(dim=-1, keepdim=True)).mean()
            stats.append({"clamped": torch.stack(clamped).float().mean().item(), "radius": radius.item()})
        return run(geo.logmap0, x, kappa).view(B, T, C).to(stream)

    def _fused_forward(self, h, kappa, cache, stream, run):
        """The default block (prev_token reference, tangent residual) with its maps fused: the same function as
        the general path above (which also collects the health stats), in a few passes that store h, U and scalars.
        `run` applies geometry_checkpoint to each map, as in the general path."""
        q = cache.get("x_last") if cache is not None else None
        u, cp, p2, x_last = run(fused_maps.prev_token_enter, h, kappa, q)
        if cache is not None:  # the next call's first reference point: this call's last block-input point
            cache["x_last"] = x_last
        B, T, H, hs = h.shape
        for ln, sublayer in ((self.ln_1, self.attn), (self.ln_2, self.mlp)):
            u = u + sublayer(ln(u.view(B, T, H * hs).to(stream)), kappa, cache).view(B, T, H, hs)
        return run(fused_maps.prev_token_exit, h, cp, p2, u, kappa, q)

    def _reference_points(self, x, kappa, cache):
        """The tangent point p_t of every position (x: the block-input points [B, T, H, hs]), scaled by the
        share α when reference_share is on."""
        p = self._reference_base(x, kappa, cache)
        if hasattr(self, "share"):
            p = geo.mobius_scalar_mul(self.share.to(p.dtype), p, kappa)
        return p

    def _reference_base(self, x, kappa, cache):
        if self.reference == "origin":
            return torch.zeros_like(x)
        if self.reference == "prev_token":
            prev = cache.get("x_last") if cache is not None else None
            prev = torch.zeros_like(x[:, :1]) if prev is None else prev
            if cache is not None:
                cache["x_last"] = x[:, -1:].clone()
            return torch.cat([prev, x[:, :-1]], dim=1)
        # 'window': the gyromidpoint of the previous reference_window points
        if cache is None:
            hist, positions = x, torch.arange(x.size(1), device=x.device)
        else:  # every point so far, in a preallocated history written at the tokens' positions
            if "x_hist" not in cache:
                cache["x_hist"] = x.new_zeros(x.size(0), cache["max_len"], *x.shape[2:])
            positions = cache["pos"]
            cache["x_hist"].index_copy_(1, positions, x)
            hist = cache["x_hist"]
        w = window_weights(positions, hist.size(1), self.reference_window).to(x.dtype)
        p = geo.gyromidpoint(hist.transpose(1, 2), w, kappa.view(-1, 1, 1))  # [B, H, T, hs]
        return p.transpose(1, 2)

    @staticmethod
    def _project(x, kappa, clamped, stats):
        if stats is not None:
            clamped.append(geo.clamped_fraction(x.detach(), kappa))
        return geo.project(x, kappa)


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        modules = {"wte": nn.Embedding(config.vocab_size, config.n_embd)}
        if config.pos_embedding == "learned":
            modules["wpe"] = nn.Embedding(config.block_size, config.n_embd)
        block = NGPTBlock if config.block == "ngpt" else Block
        modules.update(drop=nn.Dropout(config.dropout), h=nn.ModuleList([block(config) for _ in range(config.n_layer)]),
                       ln_f=nn.Identity() if config.block == "ngpt" else make_norm(config))
        self.transformer = nn.ModuleDict(modules)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.transformer.wte.weight = self.lm_head.weight
        self.smear = Smear(config) if config.smear else None
        if config.curvature == "euclidean":
            self.curvature = None
        else:
            n = 1 if config.curvature_shared else config.n_layer
            self.curvature = nn.ModuleList([Curvature(config) for _ in range(n)])
        self.apply(self._init_weights)
        for pn, p in self.named_parameters():  # GPT-2's scaled init of the residual projections (or the speedrun's 0)
            if pn.endswith("c_proj.weight"):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
                if config.zero_init_proj:
                    torch.nn.init.zeros_(p)
        if config.zero_init_proj and not config.tie_embeddings:  # the speedrun's untied head starts at 0
            torch.nn.init.zeros_(self.lm_head.weight)
        if self.smear is not None:
            torch.nn.init.zeros_(self.smear.gate.weight)
        if config.block == "ngpt":  # the logits' scale s_z (init 1, stored at 1/√n_embd), and every weight on the sphere
            self.s_z = nn.Parameter(torch.full((config.vocab_size,), 1 / math.sqrt(config.n_embd)))
            self.after_step()

    # nGPT's unit-norm weights: (parameter name ending, the dimension of length n_embd along which each vector is unit)
    NGPT_UNIT = (("wte.weight", 1), ("wpe.weight", 1), ("lm_head.weight", 1), ("c_attn.weight", 1), ("c_fc.weight", 1),
                 ("c_proj.weight", 0))

    @torch.no_grad()
    def after_step(self):
        """What the block needs after every optimizer step (train.py calls it; a no-op but for nGPT): nGPT's weight
        vectors back on the unit sphere, each along the embedding dimension (rows of the embeddings, the head and
        the input projections; columns of the output projections), as its paper trains it."""
        if self.config.block != "ngpt":
            return
        for name, p in self.named_parameters():
            dim = next((d for end, d in self.NGPT_UNIT if name.endswith(end)), None)
            if dim is not None:
                p.copy_(F.normalize(p, dim=dim))

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def get_num_params(self, non_embedding=True):
        """Parameters, without the position embeddings by default (the tied token embeddings stay counted)."""
        wpe = self.transformer.wpe.weight.numel() if "wpe" in self.transformer else 0
        return sum(p.numel() for p in self.parameters()) - (wpe if non_embedding else 0)

    def kappas(self):
        """κ of every block and head as a [n_layer, n_head or 1] float32 tensor (zeros for 'euclidean')."""
        if self.curvature is None:
            return torch.zeros(self.config.n_layer, 1)
        ks = [c() for c in self.curvature]
        if len(ks) == 1:
            ks = ks * self.config.n_layer
        return torch.stack(ks).squeeze(-1)

    def forward(self, idx, targets=None, stats=None, cache=None):
        """Logits [B, T, V] (only the last position when targets is None) and the loss.
        `stats`, a list, collects each curved block's geometry health (used for logging, not training).
        `cache`, a dict from `new_cache()`, makes idx the continuation of the tokens it has seen (generation)."""
        B, T = idx.size()
        learned = "wpe" in self.transformer  # rotary positions have no table and no length limit
        if cache is None and learned and T > self.config.block_size:
            raise ValueError(f"sequence of length {T} is longer than block_size {self.config.block_size}")
        positions = torch.arange(T, device=idx.device)
        if cache is not None:
            if T > cache["max_len"]:
                raise ValueError(f"{T} tokens do not fit a generation cache of max_len {cache['max_len']}")
            # a tensor, not an int: a compiled decode step sees the same input every step, so it compiles once
            if cache["next"] is None:
                cache["next"] = torch.zeros((), dtype=torch.long, device=idx.device)
            positions = cache["next"] + positions
            cache["next"] = cache["next"] + T
            mask = causal_mask(positions, cache["max_len"])  # [T, max_len], shared by every block
            for c in cache["blocks"]:
                c["pos"], c["mask"] = positions, mask
        e = self.transformer.wte(idx)
        if self.smear is not None:
            e = self.smear(e, cache)
        if learned:
            e = e + self.transformer.wpe(positions)
        if self.config.block == "ngpt":  # the stream starts on the unit sphere
            e = F.normalize(e, dim=-1)
        elif self.config.norm == "rmsnorm":  # the speedrun normalises the embedding too
            e = F.rms_norm(e, (e.size(-1),))
        h = self.transformer.drop(e)
        blocks = cache["blocks"] if cache is not None else [None] * len(self.transformer.h)
        if self.curvature is None:
            for block, c in zip(self.transformer.h, blocks):
                h = block(h, cache=c)
        else:
            # the stream stays float32 under autocast (geometry needs the precision); float64 in a float64 model
            h = h.to(torch.promote_types(self.lm_head.weight.dtype, torch.float32))
            shared = len(self.curvature) == 1
            for i, (block, c) in enumerate(zip(self.transformer.h, blocks)):
                h = block(h, self.curvature[0 if shared else i](), stats, c)
        x = self.transformer.ln_f(h)
        cap = self.config.logit_softcap
        if targets is not None:
            logits = self.scaled(self.lm_head(x))
            logits = cap * torch.tanh(logits / cap) if cap > 0 else logits
            logits32 = logits.to(torch.promote_types(logits.dtype, torch.float32))  # float64 stays float64
            loss = F.cross_entropy(logits32.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
        else:
            logits = self.scaled(self.lm_head(x[:, [-1], :]))  # only the last position is needed to sample
            logits = cap * torch.tanh(logits / cap) if cap > 0 else logits
            loss = None
        return logits, loss

    def scaled(self, logits):
        """nGPT's logits are cosines (unit h, unit head rows) × s_z; other blocks' are the head's output."""
        if self.config.block != "ngpt":
            return logits
        return logits * (self.s_z * math.sqrt(self.config.n_embd)).to(logits.dtype)

    def new_cache(self, max_len=None):
        """An empty generation cache for up to max_len positions (default block_size), following gpt-fast: the
        first forward allocates, per block, keys and values [B, H, max_len, head_size] (and for reference='window'
        the block-input points); each call writes its tokens at their positions and attends over the whole
        cache with a mask, so a one-token decode step has the same shapes at every position. prev_token keeps the
        last block-input point; smear the last embedding."""
        max_len = self.config.block_size if max_len is None else max_len
        if "wpe" in self.transformer and max_len > self.config.block_size:
            raise ValueError(f"max_len {max_len} exceeds block_size {self.config.block_size} (learned positions)")
        return {"next": None, "max_len": max_len, "blocks": [{"max_len": max_len} for _ in self.transformer.h]}

    def crop_block_size(self, block_size):
        """Shrink the context (e.g. to finetune or sample a model trained with a longer one)."""
        if block_size > self.config.block_size:
            raise ValueError(f"cannot grow block_size from {self.config.block_size} to {block_size}")
        self.config.block_size = block_size
        if "wpe" in self.transformer:
            self.transformer.wpe.weight = nn.Parameter(self.transformer.wpe.weight[:block_size])

    def estimate_mfu(self, fwdbwd_per_iter, dt, peak_flops):
        """Model FLOPs utilisation from the PaLM formula (6N + 12·L·H·Q·T per token). The geometry ops are
        elementwise, O(T·C) per block, and not counted, so curved and Euclidean runs share one yardstick."""
        N, cfg = self.get_num_params(), self.config
        L, H, Q, T = cfg.n_layer, cfg.n_head, cfg.head_size, cfg.block_size
        return (6 * N + 12 * L * H * Q * T) * T * fwdbwd_per_iter / dt / peak_flops
