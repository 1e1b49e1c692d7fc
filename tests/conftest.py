"""Shared fixtures and helpers: tiny data made here, tiny models, and the checks every mode must pass."""
import hashlib
import json
import math
import random
import os
import shutil
import subprocess
import sys

import pytest
import torch

from model import GPT, GPTConfig
from runtime import configure_optimizers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
          "First Citizen:\nYou are all resolved rather to die than to famish?\n\n") * 30


def tiny_args(data_dir, out_dir, **over):
    """train.py's command line for a 2-layer model on the tiny corpus, 20 iterations; `over` replaces keys."""
    args = dict(data_dir=str(data_dir), out_dir=str(out_dir), n_layer=2, n_head=2, n_embd=32, block_size=32,
                batch_size=4, max_iters=20, eval_interval=10, eval_iters=2, log_interval=5, warmup_iters=5,
                lr_decay_iters=40, learning_rate=3e-3, dropout=0.1, device="cpu")
    args.update(over)
    return [f"--{k}={v}" for k, v in args.items()]


def run_error(argv):
    """The one-line message train.py exits with for these arguments."""
    import train

    with pytest.raises(SystemExit) as e:
        train.main(argv)
    return str(e.value)


# ----------------------------------------------------------------------------- tiny models

TINY = dict(block_size=16, vocab_size=37, n_layer=2, n_head=2, n_embd=16, dropout=0.0, bias=True)


def make(curvature="hyperbolic", reference="prev_token", residual="mobius", seed=0, **kw):
    """A TINY model in the given mode (κ₀ = ±0.3 unless curvature_init is given), seeded."""
    init = kw.pop("curvature_init", 0.3 if curvature == "spherical" else -0.3)
    cfg = GPTConfig(**{**TINY, **kw}, curvature=curvature, reference=reference, residual=residual,
                    curvature_init=init)
    torch.manual_seed(seed)
    return GPT(cfg)


def tokens(B=3, T=16, seed=1, vocab=37):
    """Seeded random token ids [B, T] for TINY models."""
    return torch.randint(0, vocab, (B, T), generator=torch.Generator().manual_seed(seed))


def full_logits(model, idx):
    # targets make forward return logits at every position
    logits, _ = model(idx, targets=torch.zeros_like(idx))
    return logits


def copy_weights(dst, src):
    """Load src's weights into dst, which may differ only in its curvature parameters."""
    missing, unexpected = dst.load_state_dict(src.state_dict(), strict=False)
    assert all("curvature" in n for n in missing + unexpected), (missing, unexpected)


def assert_causal(model, positions=(0, 5, 14)):
    """Changing tokens after position t never changes the logits at positions ≤ t (exactly)."""
    model.eval()
    idx = tokens(B=2)
    base = full_logits(model, idx)
    for t in positions:
        changed = idx.clone()
        changed[:, t + 1 :] = (changed[:, t + 1 :] + 7) % 37
        out = full_logits(model, changed)
        assert torch.equal(out[:, : t + 1], base[:, : t + 1]), f"future tokens leaked into position ≤ {t}"
        assert not torch.equal(out[:, t + 1 :], base[:, t + 1 :])
    model.train()


def assert_every_parameter_learns(model):
    _, loss = model(tokens(), targets=tokens(seed=2))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} gets a zero gradient"


def tiny_corpus():
    text = "the quick brown fox jumps over the lazy dog. " * 40
    chars = sorted(set(text))
    return torch.tensor([chars.index(c) for c in text]), len(chars)


def train_losses(model, steps, autocast=False, optimizer="adamw"):
    """Train `model` (built with the tiny corpus's vocabulary) for `steps` steps; return the losses."""
    data, _ = tiny_corpus()
    opt = configure_optimizers(model, 0.0, 3e-3, (0.9, 0.95), "cpu", optimizer=optimizer)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(steps):
        ix = torch.randint(len(data) - 17, (8,), generator=g)
        x = torch.stack([data[i : i + 16] for i in ix])
        y = torch.stack([data[i + 1 : i + 17] for i in ix])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(l) for l in losses)
    return losses, opt


def fake_bench_run(calls, curved=(9.0,)):
    """A stand-in for ladder's `subprocess.run` of bench.py --json: it records the command and writes what bench.py
    writes, its arguments as settings and compiled rows (the baseline 8 ms; curved 9 ms, or the n-th call's entry of
    `curved`, the last one repeating)."""

    def run(cmd, **kwargs):
        calls.append(cmd)
        ms = curved[min(len(calls), len(curved)) - 1]
        settings = {cmd[i][2:]: cmd[i + 1] for i in range(2, len(cmd) - 1)
                    if cmd[i].startswith("--") and not cmd[i + 1].startswith("--")}
        settings |= {"configs": cmd[cmd.index("--configs") + 1: cmd.index("--configs") + 3], "compile": True}
        rows = [{"name": "euclidean", "ms": 10.0}, {"name": "euclidean +compile", "ms": 8.0},
                {"name": "hyperbolic", "ms": 15.0}, {"name": "hyperbolic +compile", "ms": ms}]
        with open(cmd[cmd.index("--json") + 1], "w") as f:
            json.dump({"settings": settings, "rows": rows}, f)

    return run


# ----------------------------------------------------------------------------- data

@pytest.fixture(scope="session")
def char_data(tmp_path_factory):
    """A tiny character corpus prepared by the real prepare script: train.bin, val.bin, meta.pkl."""
    d = tmp_path_factory.mktemp("char")
    src = d / "input.txt"
    src.write_text(CORPUS)
    subprocess.run([sys.executable, os.path.join(ROOT, "data/shakespeare_char/prepare.py"), "--input", str(src),
                    "--out_dir", str(d)], check=True, capture_output=True)
    return d


GPT2_URLS = {
    "vocab.bpe": "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",
    "encoder.json": "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json",
}


@pytest.fixture(scope="session")
def gpt2_offline(tmp_path_factory):
    """Make tiktoken's GPT-2 encoding load without a network: tiktoken reads its download cache
    TIKTOKEN_CACHE_DIR/<sha1 of the URL>, so the two BPE files from ../shared/data/gpt2 are placed there.
    Elsewhere (a real user's clone) tiktoken's own cache or download is used; skip only if both fail."""
    shared = os.path.join(ROOT, "..", "shared", "data", "gpt2")
    old = os.environ.get("TIKTOKEN_CACHE_DIR")
    if all(os.path.isfile(os.path.join(shared, f)) for f in GPT2_URLS):
        cache = tmp_path_factory.mktemp("tiktoken_cache")
        for name, url in GPT2_URLS.items():
            shutil.copy(os.path.join(shared, name), cache / hashlib.sha1(url.encode()).hexdigest())
        os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)
    try:
        import tiktoken

        enc = tiktoken.get_encoding("gpt2")
    except Exception as e:  # no files and no network
        pytest.skip(f"GPT-2 BPE files unavailable offline: {e}")
    yield enc
    if old is None:
        os.environ.pop("TIKTOKEN_CACHE_DIR", None)
    else:
        os.environ["TIKTOKEN_CACHE_DIR"] = old


# ----------------------------------------------------------------------------- FineWeb-style shards

PREPARE_FINEWEB = os.path.join(ROOT, "data", "fineweb", "prepare.py")
WORDS = "the of and a to in is was he for it with as his on be at by had are but from or have an they".split()


def make_docs(n=120, seed=0):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 60))).capitalize() + "." for _ in range(n)]


@pytest.fixture(scope="session")
def shards(tmp_path_factory, gpt2_offline):
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = tmp_path_factory.mktemp("fineweb")
    docs = make_docs()
    pq.write_table(pa.table({"text": docs, "id": list(range(len(docs)))}), d / "docs.parquet")
    out = d / "shards"
    r = subprocess.run([sys.executable, PREPARE_FINEWEB, "--input", str(d / "docs.parquet"), "--out_dir", str(out),
                        "--shard_size", "1500", "--num_proc", "2"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out, docs, gpt2_offline


def fineweb_args(data_dir, out_dir, **over):
    args = dict(dataset="fineweb", data_dir=str(data_dir), out_dir=str(out_dir), n_layer=2, n_head=2, n_embd=32,
                block_size=32, batch_size=2, gradient_accumulation_steps=4, max_iters=4, eval_interval=2,
                val_tokens=256, log_interval=1, warmup_iters=1, lr_decay_iters=10, learning_rate=3e-3,
                dropout=0.0, device="cpu", seed=7)
    args.update(over)
    return [f"--{k}={v}" for k, v in args.items()]


def torchrun(args, nproc=2):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           os.path.join(ROOT, "train.py"), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout
