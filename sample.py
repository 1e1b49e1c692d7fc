"""
Sample from a trained kappaGPT checkpoint.

    python sample.py --out_dir=out-shakespeare-char-cpu
    python sample.py --out_dir=out --start="ROMEO:" --num_samples=3 --max_new_tokens=200
    python sample.py --out_dir=out --start=FILE:prompt.txt
    python sample.py --out_dir=out --compile=True       # compile the one-token decode step (once, then fast)
    python sample.py --init_from=gpt2 --start="Hello,"  # OpenAI's GPT-2, or a Hugging Face GPT-2 directory

Character-level checkpoints carry their vocabulary; other checkpoints decode with tiktoken's GPT-2 BPE.
"""
import os
import sys

import torch

from configurator import ConfigError, configure
from generate import generate
from loader import DataError, gpt2_encoding
import pretrained
from runtime import RunError, load_checkpoint, model_from_checkpoint, precision, resolve_device

# ----------------------------------------------------------------------------- defaults
init_from = "resume"  # 'resume' (out_dir/ckpt.pt), 'gpt2'…'gpt2-xl', or a Hugging Face GPT-2 directory
out_dir = "out-shakespeare-char-cpu"
start = "\n"  # the prompt, or FILE:path to read it from a file
num_samples = 3
max_new_tokens = 500
temperature = 0.8  # < 1 sharpens, > 1 flattens the distribution
top_k = 200  # keep only the top_k most likely tokens; 0 keeps all
seed = 1337
device = "auto"
dtype = "auto"
compile = False  # torch.compile the decode step: its shapes never change, so it compiles once per run
# -----------------------------------------------------------------------------
DEFAULTS = {k: v for k, v in dict(globals()).items() if not k.startswith("_") and type(v) in (bool, int, float, str)}


class Codec:
    """Text ↔ token ids: the checkpoint's character vocabulary, bytes (UTF-8; data/pycode, data/enwik8), or GPT-2
    BPE."""

    def __init__(self, meta):
        if meta is not None and meta.get("encoding") == "bytes":
            self.kind = "bytes"
        elif meta is not None:
            self.stoi, self.itos = meta["stoi"], meta["itos"]
            self.kind = "char"
        else:
            self.enc = gpt2_encoding()
            self.kind = "gpt2"

    def encode(self, text):
        if self.kind == "gpt2":
            return self.enc.encode(text, allowed_special={"<|endoftext|>"})
        if self.kind == "bytes":
            return list(text.encode("utf-8"))
        unknown = sorted({c for c in text if c not in self.stoi})
        if unknown:
            shown = ", ".join(f"{c!r} (U+{ord(c):04X})" for c in unknown[:10])
            raise ValueError(f"the prompt has characters outside the model's {len(self.stoi)}-character "
                             f"vocabulary: {shown}")
        return [self.stoi[c] for c in text]

    def decode(self, ids):
        if self.kind == "gpt2":
            return self.enc.decode(ids)
        if self.kind == "bytes":  # a sample may stop inside a character's UTF-8 bytes
            return bytes(ids).decode("utf-8", errors="replace")
        return "".join(self.itos[i] for i in ids)


def read_prompt(start_value):
    if start_value.startswith("FILE:"):
        path = start_value[5:]
        if not os.path.isfile(path):
            raise ValueError(f"prompt file not found: {path}")
        with open(path, encoding="utf-8") as f:
            return f.read()
    return start_value


def sample(cfg):
    """Return the list of generated texts (prompt included) for the config dict `cfg`."""
    for key in ("num_samples", "max_new_tokens"):
        if cfg[key] <= 0:
            raise ConfigError(f"{key} must be positive, got {cfg[key]}")
    if cfg["temperature"] <= 0:
        raise ConfigError(f"temperature must be positive, got {cfg['temperature']}")
    if cfg["top_k"] < 0:
        raise ConfigError(f"top_k must be ≥ 0 (0 keeps every token), got {cfg['top_k']}")
    dev = resolve_device(cfg["device"])
    _, ctx = precision(cfg["dtype"], "cuda" if dev.startswith("cuda") else "cpu")

    if cfg["init_from"] == "resume":
        ckpt = load_checkpoint(os.path.join(cfg["out_dir"], "ckpt.pt"), map_location=dev)
        model, meta = model_from_checkpoint(ckpt), ckpt.get("meta")
    else:
        if cfg["init_from"] == "scratch":
            raise ConfigError("init_from='scratch' has nothing to sample from: use 'resume' (out_dir/ckpt.pt), a GPT-2 "
                              "name or a Hugging Face GPT-2 directory")
        pretrained.check_init_from(cfg["init_from"])
        model, meta = pretrained.load_saved(cfg["init_from"])
    model = model.eval().to(dev)
    codec = Codec(meta)
    prompt = read_prompt(cfg["start"])
    ids = codec.encode(prompt)
    if not ids:
        raise ValueError("the prompt is empty; give at least one character or token with --start")
    x = torch.tensor(ids, dtype=torch.long, device=dev)[None, :]
    gen = torch.Generator(device=dev).manual_seed(cfg["seed"])
    decode = torch.compile(model) if cfg["compile"] else None
    outs = []
    with ctx:
        for _ in range(cfg["num_samples"]):
            y = generate(model, x, cfg["max_new_tokens"], temperature=cfg["temperature"],
                               top_k=cfg["top_k"] or None, generator=gen, decode=decode)
            outs.append(codec.decode(y[0].tolist()))
    return outs


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        cfg = configure(DEFAULTS, argv)
        texts = sample(cfg)
    except (ConfigError, RunError, DataError, ValueError) as e:
        sys.exit(f"error: {e}")
    for t in texts:
        print(t)
        print("---------------")


if __name__ == "__main__":
    main()
