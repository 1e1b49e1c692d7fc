"""
GPT-2's weights in and out: OpenAI's GPT-2 (or any Hugging Face GPT-2 checkpoint) as kappaGPT's GPT, and a
Euclidean kappaGPT model as a Hugging Face GPT-2 checkpoint.

    init_from='gpt2' | 'gpt2-medium' | 'gpt2-large' | 'gpt2-xl'  # fetched once into the Hugging Face cache
    init_from='path/to/dir'   # config.json + model.safetensors, as transformers' save_pretrained writes them, or
                              # a kappaGPT export (export.py: model_type 'kappagpt'), loaded as it was saved
    python export.py out-euclid                                   # out-euclid/ckpt.pt → out-euclid/hf/

Why no transformers at run time: a GPT-2 checkpoint is a config.json and one safetensors file of named tensors.
huggingface_hub fetches and caches the two files, safetensors reads and writes the tensors, and the table below
maps the names. transformers is used only by the tests, as the reference our logits must equal.

What makes the loaded model compute GPT-2's function and not an approximation of it: Hugging Face keeps GPT-2's
Linear layers as Conv1D, weight [in, out], so they are transposed; the vocabulary stays at its 50,257 rows (not
padded); the MLP's activation is GPT-2's tanh-approximated GELU (mlp='gelu_tanh'); LayerNorm with biases and
ε = 1e-5; learned positions, cropped to the run's block_size (≤ 1,024). Attention scores are q·k/√head_size, as
scale_attn_weights=True; checkpoints with any other attention scaling are refused.

A bare init_from='gpt2' gives GPT-2 itself (curvature='euclidean', whatever the default curvature is); a curvature
set in a config file or on the command line asks for a curved model. A model with curvature loads GPT-2's weights
into its Euclidean parts and starts its curvature and reference
share at their init: with the graft of model.py's docstring (reference_share=True, κ starting at 0) its logits
at step 0 are GPT-2's. Options that fix the architecture (ARCH_KEYS) come from the checkpoint; setting one to
another value is an error.
"""
import json
import math
import os

import torch

from configurator import ConfigError
from model import GPT, GPTConfig
from runtime import MODEL_KEYS, RunError

HUB_NAMES = {name: f"openai-community/{name}" for name in ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")}
FILES = ("config.json", "model.safetensors")
VOCAB_FILE = "kappagpt_vocab.json"  # a character model's vocabulary, written by export (GPT-2 BPE needs none)
# the options a GPT-2 checkpoint fixes, with what the loaded model gets
ARCH_KEYS = ("n_layer", "n_head", "n_embd", "bias", "mlp", "tie_embeddings", "pos_embedding", "norm", "qk_norm",
             "logit_softcap", "attn_scale")
ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu"}
# kappaGPT name ← Hugging Face name (after its "transformer." prefix); Conv1D weights are stored [in, out]
BLOCK_TENSORS = {"ln_1.weight": "ln_1.weight", "ln_1.bias": "ln_1.bias", "attn.c_attn.weight": "attn.c_attn.weight",
                 "attn.c_attn.bias": "attn.c_attn.bias", "attn.c_proj.weight": "attn.c_proj.weight",
                 "attn.c_proj.bias": "attn.c_proj.bias", "ln_2.weight": "ln_2.weight", "ln_2.bias": "ln_2.bias",
                 "mlp.c_fc.weight": "mlp.c_fc.weight", "mlp.c_fc.bias": "mlp.c_fc.bias",
                 "mlp.c_proj.weight": "mlp.c_proj.weight", "mlp.c_proj.bias": "mlp.c_proj.bias"}
CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def check_init_from(init_from):
    """A bad init_from is a ConfigError before any work: a GPT-2 name, or a directory."""
    if init_from in ("scratch", "resume") or init_from in HUB_NAMES or os.path.isdir(init_from):
        return
    raise ConfigError(f"init_from={init_from!r} is not 'scratch', 'resume', one of {', '.join(HUB_NAMES)}, or a "
                      f"directory holding a Hugging Face GPT-2 checkpoint (config.json + model.safetensors)")


def locate(init_from):
    """The directory holding config.json and model.safetensors: the Hugging Face cache for a GPT-2 name
    (downloading into it the first time), else init_from itself."""
    if init_from not in HUB_NAMES:
        check_init_from(init_from)
        missing = [f for f in FILES if not os.path.isfile(os.path.join(init_from, f))]
        if missing:
            raise RunError(f"{init_from} has no {' or '.join(missing)}: init_from needs a Hugging Face GPT-2 "
                           f"checkpoint as save_pretrained writes it (config.json + model.safetensors)")
        return init_from
    from huggingface_hub import constants, hf_hub_download

    repo = HUB_NAMES[init_from]
    try:
        paths = [hf_hub_download(repo, f) for f in FILES]
    except Exception as e:  # offline, no cache, hub errors: all mean the files are not here
        raise RunError(f"{init_from}'s weights are neither in the Hugging Face cache ({constants.HF_HUB_CACHE}) nor "
                       f"downloadable ({type(e).__name__}); on a machine with network run `hf download {repo} "
                       f"{' '.join(FILES)}` (HF_HOME moves the cache), or give init_from a local directory") from None
    return os.path.dirname(paths[0])


def read_hf_config(path):
    """GPTConfig options from a Hugging Face GPT-2 config.json; anything that GPT cannot compute is a RunError."""
    file = os.path.join(path, "config.json")
    try:
        with open(file) as f:
            hf = json.load(f)
    except (OSError, ValueError) as e:
        raise RunError(f"{file} is not readable JSON ({type(e).__name__})") from None
    if not isinstance(hf, dict) or hf.get("model_type") != "gpt2":
        kind = hf.get("model_type") if isinstance(hf, dict) else None
        raise RunError(f"{path} holds a {kind or 'non-GPT-2'} checkpoint (model_type={kind!r}); init_from loads "
                       f"GPT-2 (model_type 'gpt2') only")
    n_embd = hf.get("n_embd", 768)
    checks = {  # what kappaGPT's GPT computes, against what the checkpoint asks for
        "activation_function": (hf.get("activation_function", "gelu_new") in ACTIVATIONS, list(ACTIVATIONS)),
        "n_inner": (hf.get("n_inner") in (None, 4 * n_embd), f"None or 4·n_embd = {4 * n_embd}"),
        "layer_norm_epsilon": (math.isclose(hf.get("layer_norm_epsilon", 1e-5), 1e-5), 1e-5),
        "scale_attn_weights": (hf.get("scale_attn_weights", True) is True, True),
        "scale_attn_by_inverse_layer_idx": (hf.get("scale_attn_by_inverse_layer_idx", False) is False, False),
    }
    for key, (ok, wanted) in checks.items():
        if not ok:
            raise RunError(f"{path}: {key}={hf.get(key)!r} is not supported (kappaGPT's GPT computes {wanted})")
    return {"n_layer": hf.get("n_layer", 12), "n_head": hf.get("n_head", 12), "n_embd": n_embd,
            "block_size": hf.get("n_positions", 1024), "vocab_size": hf.get("vocab_size", 50257), "bias": True,
            "mlp": ACTIVATIONS[hf.get("activation_function", "gelu_new")],
            "tie_embeddings": hf.get("tie_word_embeddings", True), "pos_embedding": "learned", "norm": "layernorm",
            "qk_norm": False, "logit_softcap": 0.0, "attn_scale": 0.0}


def read_vocab(path):
    """The checkpoint's vocabulary: {'tokenizer': 'gpt2', ...}, or a character (or byte) vocabulary written by
    export."""
    file = os.path.join(path, VOCAB_FILE)
    if not os.path.exists(file):
        return {"tokenizer": "gpt2"}, None
    with open(file) as f:
        saved = json.load(f)
    itos = saved["itos"]
    meta = {"vocab_size": len(itos), "itos": dict(enumerate(itos)), "stoi": {c: i for i, c in enumerate(itos)}}
    if saved.get("encoding") == "bytes":
        meta["encoding"] = "bytes"
    return {"tokenizer": "chars", "size": len(itos)}, meta


def read_kappagpt(path):
    """The GPTConfig options of a kappaGPT export (config.json's 'kappagpt'), or None for any other checkpoint."""
    with open(os.path.join(path, "config.json")) as f:
        hf = json.load(f)
    return hf.get("kappagpt") if isinstance(hf, dict) and hf.get("model_type") == "kappagpt" else None


def load_kappagpt(path, saved, cfg=None, explicit=()):
    """(model, model_args, vocab, meta) of a kappaGPT export as it was saved; an option the run set to another value
    than the export's is a ConfigError (dropout, and block_size up to the saved one, may be set)."""
    from safetensors.torch import load_file

    args = dict(saved)
    for key in explicit if cfg is not None else ():
        if key in ("dropout",) or key not in args:
            continue
        if key == "block_size" and cfg[key] <= args[key]:
            continue
        if cfg[key] != args[key]:
            raise ConfigError(f"{key}={cfg[key]!r} but the exported model has {key}={args[key]!r}: a kappaGPT "
                              f"export is trained as it was saved (dropout and a shorter block_size may be set)")
    if cfg is not None:
        args |= {k: cfg[k] for k in ("dropout", "block_size") if k in explicit}
    try:
        model = GPT(GPTConfig(**args))
    except (ValueError, TypeError) as e:
        raise RunError(f"{path}: the export's options cannot be built by this code ({e})") from None
    state = {k.removeprefix("model."): v for k, v in load_file(os.path.join(path, "model.safetensors")).items()}
    if "transformer.wpe.weight" in state:
        state["transformer.wpe.weight"] = state["transformer.wpe.weight"][: args["block_size"]]
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise RunError(f"{path}: model.safetensors does not fit its config.json ({str(e).splitlines()[0]})") from None
    vocab, meta = read_vocab(path)
    vocab.setdefault("size", args["vocab_size"])
    return model, args, vocab, meta


def merge_args(hf_args, cfg, explicit, defaults):
    """The loaded model's GPTConfig options: the checkpoint's architecture, the run's everything else (dropout,
    curvature, ...); Euclidean unless curvature is set (in `explicit`, or unlike `defaults`; without `defaults`, cfg is
    taken as asked for). An architecture option set to another value than the checkpoint's, or a block_size beyond
    the checkpoint's positions, is a ConfigError."""
    curved = defaults is None or "curvature" in explicit or cfg["curvature"] != defaults["curvature"]
    defaults = cfg if defaults is None else defaults
    explicit = set(explicit) | {k for k in ARCH_KEYS if cfg[k] != defaults[k]}
    for key in ARCH_KEYS:
        if key in explicit and cfg[key] != hf_args[key]:
            raise ConfigError(f"{key}={cfg[key]!r} but the pretrained checkpoint has {key}={hf_args[key]!r}; a "
                              f"pretrained model's architecture comes from its checkpoint (dropout and the curvature "
                              f"options may be set)")
    if cfg["block_size"] > hf_args["block_size"]:
        raise ConfigError(f"block_size={cfg['block_size']} is longer than the checkpoint's "
                          f"{hf_args['block_size']} positions")
    args = {k: cfg[k] for k in MODEL_KEYS} | {k: hf_args[k] for k in ARCH_KEYS + ("vocab_size",)}
    if not curved:  # a bare init_from='gpt2' is GPT-2, as nanoGPT's users expect; a curved model is asked for
        args["curvature"] = "euclidean"
    return args


def state_from_hf(path, args):
    """kappaGPT's state dict for the Euclidean parts of a model with options `args`, from path/model.safetensors."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    file = os.path.join(path, "model.safetensors")
    try:
        hf = load_file(file)
    except (SafetensorError, OSError, ValueError) as e:
        raise RunError(f"{file} is not a readable safetensors file ({type(e).__name__})") from None
    # GPT2LMHeadModel saves names under "transformer."; the hub's GPT-2 files were saved from GPT2Model, without
    hf = {k.removeprefix("transformer."): v for k, v in hf.items()
          if not k.endswith((".attn.bias", ".attn.masked_bias"))}  # causal-mask buffers, not weights
    names = {"transformer.wte.weight": "wte.weight", "transformer.wpe.weight": "wpe.weight",
             "transformer.ln_f.weight": "ln_f.weight", "transformer.ln_f.bias": "ln_f.bias"}
    for i in range(args["n_layer"]):
        names |= {f"transformer.h.{i}.{ours}": f"h.{i}.{theirs}" for ours, theirs in BLOCK_TENSORS.items()}
    if not args["tie_embeddings"]:
        names["lm_head.weight"] = "lm_head.weight"
    missing = sorted(set(names.values()) - set(hf))
    if missing:
        raise RunError(f"{file} lacks {len(missing)} of GPT-2's tensors ({', '.join(missing[:3])}...)")
    state = {}
    for ours, theirs in names.items():
        t = hf[theirs]
        state[ours] = t.t().contiguous() if theirs.endswith(CONV1D) else t
    state["transformer.wpe.weight"] = state["transformer.wpe.weight"][: args["block_size"]]
    return state


def load(init_from, cfg, explicit=(), defaults=None):
    """(model, model_args, vocab, meta) for init_from: GPT-2's weights in a GPT built from the run's options."""
    path = locate(init_from)
    saved = read_kappagpt(path)
    if saved is not None:
        return load_kappagpt(path, saved, cfg, explicit)
    return _build(path, merge_args(read_hf_config(path), cfg, explicit, defaults))


def load_saved(init_from):
    """(model, meta) for init_from as it was saved, for sampling: the plain GPT-2 of a GPT-2 checkpoint, or a kappaGPT
    export's own model."""
    path = locate(init_from)
    saved = read_kappagpt(path)
    if saved is not None:
        model, _, _, meta = load_kappagpt(path, saved)
        return model, meta
    model, _, _, meta = _build(path, read_hf_config(path) | {"curvature": "euclidean"})
    return model, meta


def _build(path, args):
    try:
        model = GPT(GPTConfig(**args))
    except ValueError as e:
        raise ConfigError(str(e)) from e
    state = state_from_hf(path, args)
    own = model.state_dict()
    for k, t in state.items():
        if own[k].shape != t.shape:
            raise RunError(f"{path}: {k} has shape {tuple(t.shape)} but config.json implies {tuple(own[k].shape)}")
    # the curvature, the share and the other new parameters keep their init; a tied head is wte itself
    model.load_state_dict(state, strict=False)
    vocab, meta = read_vocab(path)
    vocab.setdefault("size", args["vocab_size"])
    return model, args, vocab, meta


def graft_caveats(config, init_from=None):
    """Why a model built with `config` from a pretrained Euclidean one (init_from) would not start at its function ([]
    if it does, and for a kappaGPT export, which is loaded as it was saved)."""
    if config.curvature == "euclidean" or (init_from and os.path.isdir(init_from) and read_kappagpt(init_from)):
        return []
    out = []
    if config.curvature != "zero" and config.curvature_init != 0:
        out.append(f"κ starts at {config.curvature_init}, not 0, and expmap0 saturates where √|κ|·‖h‖ is large "
                   f"(use curvature='free', curvature_init=0.0)")
    if config.reference != "origin" and not config.reference_share:
        out.append(f"reference={config.reference!r} enters at full weight (set reference_share=True)")
    if config.attention == "distance":
        out.append("attention='distance' scores are not GPT-2's dot products")
    return out


# ----------------------------------------------------------------------------- export


# Every GPTConfig option, for export: GPT-2's checkpoint holds the sizes; the options in EXPORT_IGNORES do not change
# a Euclidean model's function (curvature's own options, init, training-time switches); every other option must have
# the value GPT-2 computes with, or the model is refused: a tested list, so a new option cannot slip through.
EXPORT_SIZES = ("block_size", "vocab_size", "n_layer", "n_head", "n_embd", "bias", "tie_embeddings")
EXPORT_IGNORES = ("dropout", "curvature_init", "curvature_per_head", "curvature_shared", "reference",
                  "reference_window", "residual", "geometry_dtype", "geometry_checkpoint", "zero_init_proj")
EXPORT_REQUIRES = {"curvature": "euclidean", "block": "gpt", "reference_share": False, "attention": "dot",
                   "aggregate": "tangent", "pos_embedding": "learned", "norm": "layernorm", "qk_norm": False,
                   "logit_softcap": 0.0, "attn_scale_learnable": False, "smear": False}


def export_refusals(c):
    """Why a model of GPTConfig `c` cannot be written as GPT-2 (every option GPT-2 cannot express), [] if it can."""
    why = [f"{k}={getattr(c, k)!r} (GPT-2 has {v!r})" for k, v in EXPORT_REQUIRES.items() if getattr(c, k) != v]
    if c.mlp not in ("gelu", "gelu_tanh"):
        why.append(f"mlp={c.mlp!r} (GPT-2 has a GELU)")
    if c.attn_scale not in (0.0, 1 / math.sqrt(c.head_size)):
        why.append(f"attn_scale={c.attn_scale} (GPT-2 scales by 1/√head_size)")
    return why


def export(model, out, meta=None):
    """Write `model` (a Euclidean GPT of GPT-2's architecture) to directory `out` as a Hugging Face GPT-2
    checkpoint (config.json + model.safetensors; kappagpt_vocab.json for a character vocabulary). Missing
    biases are written as zeros, which computes the same function."""
    from safetensors.torch import save_file

    c = model.config
    why = export_refusals(c)
    if why:
        raise RunError("cannot export as GPT-2: " + "; ".join(why))
    sd = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    tensors = {"transformer.wte.weight": sd["transformer.wte.weight"],
               "transformer.wpe.weight": sd["transformer.wpe.weight"],
               "transformer.ln_f.weight": sd["transformer.ln_f.weight"],
               "transformer.ln_f.bias": sd.get("transformer.ln_f.bias", torch.zeros(c.n_embd))}
    for i in range(c.n_layer):
        for ours, theirs in BLOCK_TENSORS.items():
            key = f"transformer.h.{i}.{ours}"
            if key in sd:
                t = sd[key]
                t = t.t() if ours in CONV1D else t
            else:  # a bias of a bias=False model
                t = torch.zeros(sd[key.replace(".bias", ".weight")].shape[0])
            tensors[f"transformer.h.{i}.{theirs}"] = t.contiguous()
    if not c.tie_embeddings:
        tensors["lm_head.weight"] = sd["lm_head.weight"]
    hf = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": c.vocab_size,
          "n_positions": c.block_size, "n_embd": c.n_embd, "n_layer": c.n_layer, "n_head": c.n_head, "n_inner": None,
          "activation_function": "gelu_new" if c.mlp == "gelu_tanh" else "gelu", "resid_pdrop": c.dropout,
          "embd_pdrop": c.dropout, "attn_pdrop": c.dropout, "layer_norm_epsilon": 1e-5, "initializer_range": 0.02,
          "scale_attn_weights": True, "tie_word_embeddings": c.tie_embeddings, "use_cache": True}
    os.makedirs(out, exist_ok=True)
    _atomic(os.path.join(out, "model.safetensors"), lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    _atomic(os.path.join(out, "config.json"), lambda tmp: _write_json(tmp, hf))
    if meta is not None:
        itos = [meta["itos"][i] for i in range(meta["vocab_size"])]
        _atomic(os.path.join(out, VOCAB_FILE), lambda tmp: _write_json(tmp, {"itos": itos}))
    return out


def _write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)


def _atomic(path, write):
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise RunError(f"could not write {path} ({e.strerror or e})") from e
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
