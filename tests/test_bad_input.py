"""Nothing lost, second pass: a rerun never replaces a run, every bad input a user can type is one line (the
message checked), and nothing is left half-written (the files checked)."""
import argparse
import errno
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

import runtime
import sample
import train
from conftest import CORPUS, ROOT, run_error, tiny_args
from configurator import ConfigError, configure
from model import GPT, GPTConfig


def files(d):
    """{name: bytes} of every file in d (recursively), to check that nothing changed."""
    return {os.path.relpath(os.path.join(r, f), d): open(os.path.join(r, f), "rb").read()
            for r, _, fs in os.walk(d) for f in fs}


@pytest.fixture
def run_dir(char_data, tmp_path):
    """A finished 10-iteration run."""
    out = tmp_path / "run"
    train.main(tiny_args(char_data, out, max_iters=10))
    return out


# ----------------------------------------------------------------------------- a run is never replaced


def test_scratch_into_a_run_stops_and_overwrite_replaces_it(char_data, run_dir):
    before = files(run_dir)
    assert run_error(tiny_args(char_data, run_dir, max_iters=10)) == (
        f"error: {run_dir} already holds a run (ckpt.pt, metrics.jsonl): continue it with --init_from=resume, "
        f"or replace it with --overwrite=True")
    assert files(run_dir) == before
    train.main(tiny_args(char_data, run_dir, max_iters=5, eval_interval=5, overwrite=True))
    iters = [json.loads(line)["iter"] for line in open(run_dir / "metrics.jsonl")]
    assert iters == [0, 5, 5]  # only the new run: its log at 5 and its evaluation at 5
    assert torch.load(run_dir / "ckpt.pt", weights_only=True)["iter_num"] == 5


def test_resume_cuts_the_log_back_to_the_checkpoint(char_data, run_dir):
    """A kill after the checkpoint leaves later records and a cut-off line; the resumed run replaces them."""
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"iter": 11, "train/loss": 9.0}) + "\n" + '{"iter": 12, "tra')
    train.main(tiny_args(char_data, run_dir, max_iters=15, eval_interval=5, log_interval=1, init_from="resume"))
    records = [json.loads(line) for line in open(run_dir / "metrics.jsonl")]
    logs = [r["iter"] for r in records if "train/loss" in r]
    assert logs == sorted(set(logs)) and logs[-5:] == [11, 12, 13, 14, 15]
    assert 9.0 not in [r.get("train/loss") for r in records]


# ----------------------------------------------------------------------------- vocabulary


def test_char_data_without_or_with_a_broken_meta_pkl_is_an_error(char_data, tmp_path):
    d = tmp_path / "data"
    shutil.copytree(char_data, d)
    (d / "meta.pkl").unlink()
    assert run_error(tiny_args(d, tmp_path / "out")) == (
        f"error: {d / 'meta.pkl'} not found: train.bin/val.bin data needs its vocabulary; run "
        f"`python data/shakespeare_char/prepare.py`")
    (d / "meta.pkl").write_bytes((char_data / "meta.pkl").read_bytes()[:40])
    assert run_error(tiny_args(d, tmp_path / "out")) == (
        f"error: {d / 'meta.pkl'} is corrupt or not a vocabulary (UnpicklingError): rerun "
        f"`python data/shakespeare_char/prepare.py`")
    assert not (tmp_path / "out").exists()


def test_resuming_on_data_with_another_vocabulary_is_an_error(char_data, run_dir, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "input.txt").write_text(CORPUS.replace("e", "é"))
    subprocess.run([sys.executable, os.path.join(ROOT, "data/shakespeare_char/prepare.py"), "--input",
                    str(other / "input.txt"), "--out_dir", str(other)], check=True, capture_output=True)
    before = files(run_dir)
    n = len(set(CORPUS))
    assert run_error(tiny_args(other, run_dir, max_iters=20, init_from="resume")) == (
        f"error: cannot resume {run_dir / 'ckpt.pt'}: it was trained on a {n}-character vocabulary, but the data has "
        f"a {n}-character vocabulary with other characters; resume on the data it was trained on")
    assert files(run_dir) == before
    ck = torch.load(run_dir / "ckpt.pt", weights_only=True)
    assert ck["vocab"] == {"tokenizer": "chars", "size": n} and ck["meta"]["vocab_size"] == n


# ----------------------------------------------------------------------------- devices, backend, out_dir


@pytest.mark.parametrize("device, message", [
    ("cuda", "device='cuda' but torch sees no CUDA GPU on this machine; use --device=cpu (or auto)"),
    ("mps", "device='mps' but the MPS backend is not available here; use --device=cpu (or auto)"),
    ("gpu", "device='gpu' is not a device name (cpu, cuda, cuda:1, mps, auto)"),
])
def test_a_device_this_machine_lacks_is_one_line_in_train_and_sample(char_data, run_dir, tmp_path, device, message):
    if device == "cuda" and torch.cuda.is_available() or device == "mps" and torch.backends.mps.is_available():
        pytest.skip(f"this machine has {device}")
    assert run_error(tiny_args(char_data, tmp_path / "new", device=device)) == f"error: {message}"
    with pytest.raises(SystemExit) as e:
        sample.main([f"--out_dir={run_dir}", f"--device={device}"])
    assert str(e.value) == f"error: {message}"
    assert not (tmp_path / "new").exists()


def test_nccl_without_cuda_is_one_line(char_data, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert run_error(tiny_args(char_data, tmp_path / "o", backend="nccl")) == (
        "error: backend='nccl' needs CUDA GPUs and a torch built with NCCL; use --backend=gloo (or auto)")


def test_out_dir_that_is_a_file_or_empty(char_data, tmp_path):
    (tmp_path / "afile").write_text("keep me")
    assert run_error(tiny_args(char_data, tmp_path / "afile")) == (
        f"error: out_dir {tmp_path / 'afile'} is a file, not a directory")
    assert (tmp_path / "afile").read_text() == "keep me"
    assert run_error(tiny_args(char_data, "")) == (
        "error: out_dir is empty; name the directory for the checkpoint and logs")


def test_unwritable_out_dir_is_found_before_training(char_data, tmp_path, monkeypatch):
    # tests run as root, where permissions do not stop writes: make the probe file fail as it would for a user
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(train.tempfile, "TemporaryFile", refuse)
    assert run_error(tiny_args(char_data, tmp_path / "ro")) == (
        f"error: out_dir {tmp_path / 'ro'} is not writable (Permission denied)")


def test_full_disk_is_found_before_training(char_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(train.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 4096, 4096))
    msg = run_error(tiny_args(char_data, tmp_path / "full"))
    assert msg.startswith(f"error: out_dir {tmp_path / 'full'} has 0.0 MiB free, but a checkpoint needs about ")
    assert "iter " not in capsys.readouterr().out  # not one step trained


def test_a_failed_save_is_one_line_and_keeps_the_last_checkpoint(char_data, tmp_path, monkeypatch):
    out = tmp_path / "run"
    train.main(tiny_args(char_data, out, max_iters=10))
    before = (out / "ckpt.pt").read_bytes()

    def disk_full(obj, f, *args, **kwargs):
        with open(f, "wb") as fh:
            fh.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runtime.torch, "save", disk_full)
    assert run_error(tiny_args(char_data, out, max_iters=20, init_from="resume")) == (
        f"error: could not write checkpoint {out / 'ckpt.pt'} (No space left on device); the previous checkpoint "
        f"is intact")
    assert (out / "ckpt.pt").read_bytes() == before
    assert not [f for f in os.listdir(out) if ".tmp" in f]


# ----------------------------------------------------------------------------- options


@pytest.mark.parametrize("key, value", [("grad_clip", -1.0), ("weight_decay", -0.1), ("min_lr", -1e-4),
                                        ("threads", -1)])
def test_negative_options_are_errors(char_data, tmp_path, key, value):
    assert run_error(tiny_args(char_data, tmp_path, **{key: value})) == f"error: {key} must be ≥ 0, got {value}"


def test_betas_must_be_in_0_1(char_data, tmp_path):
    assert run_error(tiny_args(char_data, tmp_path, beta2=1.0)) == "error: beta2 must be in [0, 1), got 1.0"


def test_nonfinite_stop_before_any_checkpoint_says_so(char_data, tmp_path, monkeypatch):
    real_forward = GPT.forward

    def nan_forward(self, idx, targets=None, stats=None, cache=None):
        logits, loss = real_forward(self, idx, targets, stats, cache)
        return logits, (loss * float("nan") if self.training and loss is not None else loss)

    monkeypatch.setattr(GPT, "forward", nan_forward)
    assert run_error(tiny_args(char_data, tmp_path / "o", max_nonfinite=2)) == (
        "error: 2 consecutive non-finite steps at iter 2: stopping. No checkpoint was written yet; lower "
        "learning_rate, or resume with dtype='float32' to rule out precision")


# ----------------------------------------------------------------------------- sample.py


def sample_error(*argv):
    with pytest.raises(SystemExit) as e:
        sample.main(list(argv))
    return str(e.value)


def test_sample_top_k_must_not_be_negative(run_dir):
    assert sample_error(f"--out_dir={run_dir}", "--top_k=-1") == (
        "error: top_k must be ≥ 0 (0 keeps every token), got -1")


def test_sample_on_a_bpe_checkpoint_without_the_tokenizer_says_how_to_get_it(tmp_path, monkeypatch):
    import tiktoken

    model = GPT(GPTConfig(n_layer=1, n_head=1, n_embd=8, block_size=8))
    runtime.save_checkpoint(str(tmp_path / "ckpt.pt"), {
        "model": model.state_dict(), "optimizer": {}, "model_args": dict(n_layer=1, n_head=1, n_embd=8, block_size=8),
        "iter_num": 0, "best_val_loss": 0.0, "elapsed": 0.0, "config": {}, "ranks": [], "meta": None,
        "vocab": {"tokenizer": "gpt2", "size": 50257}})

    def offline(name):
        raise ConnectionError("Failed to resolve 'openaipublic.blob.core.windows.net'")

    monkeypatch.setattr(tiktoken, "get_encoding", offline)
    assert sample_error(f"--out_dir={tmp_path}") == (
        "error: the GPT-2 tokenizer could not be loaded (ConnectionError): tiktoken downloads it on first use; "
        "offline, see docs/options.md 'Sampling' for TIKTOKEN_CACHE_DIR")


# ----------------------------------------------------------------------------- prepare scripts


def prepare_char(tmp_path, input_path):
    out = tmp_path / "prepared"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "data/shakespeare_char/prepare.py"), "--input",
                        str(input_path), "--out_dir", str(out)], capture_output=True, text=True)
    return r, out


@pytest.mark.parametrize("content, message", [
    (b"", "the corpus has only 0 characters; that is too small to split"),
    (b"To be.", "the corpus has only 6 characters; that is too small to split"),
    (bytes(range(256)) * 4, "is not UTF-8 text (byte 128: invalid start byte)"),
    (b"ab\0" * 100, "the corpus contains NUL characters: it is a binary file, not text"),
])
def test_char_prepare_bad_inputs(tmp_path, content, message):
    (tmp_path / "in.txt").write_bytes(content)
    r, out = prepare_char(tmp_path, tmp_path / "in.txt")
    assert r.returncode == 1 and r.stderr.startswith("error: ") and message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not out.exists()


def test_char_prepare_on_a_directory(tmp_path):
    r, out = prepare_char(tmp_path, tmp_path)
    assert r.stderr.strip() == f"error: --input {tmp_path} is a directory; give the text file" and not out.exists()


def fineweb_prepare(tmp_path, input_path, num_proc=1):
    return subprocess.run([sys.executable, os.path.join(ROOT, "data/fineweb/prepare.py"), "--input", str(input_path),
                           "--out_dir", str(tmp_path / "shards"), "--num_proc", str(num_proc)],
                          capture_output=True, text=True)


def test_fineweb_prepare_on_an_empty_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": pa.array([], pa.string())}), tmp_path / "empty.parquet")
    r = fineweb_prepare(tmp_path, tmp_path / "empty.parquet")
    assert r.returncode == 1 and r.stderr.strip() == f"error: --input {tmp_path / 'empty.parquet'} has no rows"
    assert not (tmp_path / "shards").exists()


@pytest.mark.parametrize("num_proc", [1, 2])
@pytest.mark.parametrize("bad_line, message", [
    # the reader's own words after the colon are datasets'/pyarrow's and change between their versions
    ("{not json", "could not read the documents: "),
    (json.dumps({"text": None}), "document 1 has no text (its 'text' is None)"),
])
def test_fineweb_prepare_on_a_bad_jsonl(tmp_path, gpt2_offline, num_proc, bad_line, message):
    (tmp_path / "docs.jsonl").write_text(json.dumps({"text": "The first document."}) + "\n" + bad_line + "\n")
    r = fineweb_prepare(tmp_path, tmp_path / "docs.jsonl", num_proc)
    lines = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert r.returncode == 1 and len(lines) == 1 and message in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    shards = os.listdir(tmp_path / "shards") if (tmp_path / "shards").exists() else []
    assert not [f for f in shards if f.endswith(".tmp")]  # nothing half-written


def test_fineweb_prepare_without_the_tokenizer_offline(tmp_path):
    (tmp_path / "docs.jsonl").write_text(json.dumps({"text": "A document."}) + "\n")
    (tmp_path / "empty_cache").mkdir()
    # offline, made certain: an empty tiktoken cache and a proxy that refuses every connection
    env = dict(os.environ, TIKTOKEN_CACHE_DIR=str(tmp_path / "empty_cache"), HTTPS_PROXY="http://127.0.0.1:9",
               HTTP_PROXY="http://127.0.0.1:9")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "data/fineweb/prepare.py"), "--input",
                        str(tmp_path / "docs.jsonl"), "--out_dir", str(tmp_path / "shards")],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1 and r.stderr.strip().startswith("error: the GPT-2 tokenizer could not be loaded (")
    assert r.stderr.strip().endswith("offline, see docs/options.md 'Sampling' for TIKTOKEN_CACHE_DIR")
    assert not (tmp_path / "shards").exists()


def load_fineweb_prepare():
    spec = importlib.util.spec_from_file_location("fineweb_prepare", os.path.join(ROOT, "data/fineweb/prepare.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Unreadable:
    """What datasets' streaming reader does with a malformed line, in either of the versions pip has served:
    raise as the dataset is opened, or only when iterated."""

    def __init__(self, when):
        if when == "open":
            raise ValueError("JSON parse error: Missing a name for object member. in row 1")

    def __iter__(self):
        yield {"text": "The first document."}
        raise ValueError("JSON parse error: Missing a name for object member. in row 1")


@pytest.mark.parametrize("when", ["open", "iterate"])
def test_fineweb_reader_errors_are_one_line_whenever_the_reader_raises(tmp_path, monkeypatch, when):
    import datasets

    prepare = load_fineweb_prepare()
    (tmp_path / "docs.jsonl").write_text(json.dumps({"text": "The first document."}) + "\n{not json\n")
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: Unreadable(when))
    args = argparse.Namespace(input=[str(tmp_path / "docs.jsonl")], version="10B")
    with pytest.raises(prepare.PrepareError) as e:
        list(prepare.iter_texts(args))
    assert str(e.value) == "could not read the documents: ValueError: JSON parse error: Missing a name for object " \
                           "member. in row 1"
