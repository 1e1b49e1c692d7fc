"""train.py, sample.py and the Shakespeare-char prepare script, end to end on a tiny corpus (configurator: test_configurator.py)."""
import functools
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

import runtime
import sample
import train
from configurator import ConfigError, configure

from conftest import CORPUS, ROOT, run_error, tiny_args


# ----------------------------------------------------------------------------- configs


def test_shipped_configs_load_and_euclid_twins_differ_only_in_curvature():
    # the plain configs run the default block (mixed curvature from κ = 0); the modern ones, the studies' bases, keep
    # the hyperbolic block the studies' hyperbolic arms read their κ₀ from
    for curved, euclid, mode in [("train_shakespeare_char.py", "train_shakespeare_char_euclid.py", ("free", 0.0)),
                                 ("train_shakespeare_char_cpu.py", "train_shakespeare_char_cpu_euclid.py", ("free", 0.0)),
                                 ("train_fineweb.py", "train_fineweb_euclid.py", ("free", 0.0)),
                                 ("train_fineweb_small.py", "train_fineweb_small_euclid.py", ("free", 0.0)),
                                 ("train_shakespeare_char_modern.py", "train_shakespeare_char_modern_euclid.py",
                                  ("hyperbolic", -0.05)),
                                 ("train_fineweb_speedrun.py", "train_fineweb_speedrun_euclid.py", ("hyperbolic", -0.008))]:
        a = configure(train.DEFAULTS, [os.path.join(ROOT, "config", curved)])
        b = configure(train.DEFAULTS, [os.path.join(ROOT, "config", euclid)])
        diff = {k for k in a if a[k] != b[k]}
        assert diff == {"curvature", "out_dir", "wandb_run_name"}, (curved, diff)
        assert (a["curvature"], a["curvature_init"]) == mode and b["curvature"] == "euclidean"
    # the CPU config is the train.py default
    cpu = configure(train.DEFAULTS, [os.path.join(ROOT, "config", "train_shakespeare_char_cpu.py")])
    assert {k for k in cpu if cpu[k] != train.DEFAULTS[k]} == {"device"}


# ----------------------------------------------------------------------------- prepare


def test_prepare_writes_bins_and_meta(char_data):
    with open(char_data / "meta.pkl", "rb") as f:
        meta = pickle.load(f)
    train_ids = np.fromfile(char_data / "train.bin", dtype=np.uint16)
    val_ids = np.fromfile(char_data / "val.bin", dtype=np.uint16)
    assert meta["vocab_size"] == len(set(CORPUS))
    assert len(train_ids) + len(val_ids) == len(CORPUS)
    assert "".join(meta["itos"][i] for i in train_ids) + "".join(meta["itos"][i] for i in val_ids) == CORPUS


def test_prepare_missing_input_is_a_clear_error(tmp_path):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "data/shakespeare_char/prepare.py"), "--input",
                        str(tmp_path / "nope.txt"), "--out_dir", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode != 0 and f"--input {tmp_path / 'nope.txt'} does not exist" in r.stderr
    assert not list(tmp_path.iterdir())


# ----------------------------------------------------------------------------- train, resume, sample


def final_state(out_dir):
    return torch.load(os.path.join(out_dir, "ckpt.pt"), weights_only=True)


def test_train_resume_is_exact_and_sample(char_data, tmp_path, capsys):
    full = tmp_path / "full"
    summary = train.main(tiny_args(char_data, full, max_iters=30))
    assert summary["iter_num"] == 30 and np.isfinite(summary["val_loss"])
    out = capsys.readouterr().out
    assert "iter 25: loss" in out and "ms/iter" in out and "tok/s" in out and "κ " in out

    part = tmp_path / "part"
    train.main(tiny_args(char_data, part, max_iters=20))
    ck = final_state(part)
    assert ck["iter_num"] == 20
    resumed = train.main(tiny_args(char_data, part, max_iters=30, init_from="resume"))
    assert resumed["iter_num"] == 30
    assert "starting at iter 20" in capsys.readouterr().out
    a, b = final_state(full), final_state(part)
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), f"resumed run diverged in {name}"
    assert a["val_loss"] == b["val_loss"]

    # metrics.jsonl: one record per log and eval step, continued across the resume
    records = [json.loads(l) for l in open(part / "metrics.jsonl")]
    assert [r["iter"] for r in records if "val/loss" in r] == [0, 10, 20, 30]
    assert all("curvature/block1/head1" in r for r in records)

    texts = sample.sample(configure(sample.DEFAULTS, [f"--out_dir={part}", "--start=All:", "--num_samples=2",
                                                      "--max_new_tokens=15"]))
    assert len(texts) == 2 and all(t.startswith("All:") and len(t) == 19 for t in texts)
    assert set("".join(texts)) <= set(CORPUS)
    again = sample.sample(configure(sample.DEFAULTS, [f"--out_dir={part}", "--start=All:", "--num_samples=2",
                                                      "--max_new_tokens=15"]))
    assert again == texts  # seeded


def test_compiled_model_checkpoint_has_plain_names(char_data, tmp_path, monkeypatch):
    # the eager backend exercises the same wrapper (OptimizedModule) as inductor, in a fraction of the time
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    out = tmp_path / "compiled"
    train.main(tiny_args(char_data, out, max_iters=10, compile=True))
    keys = list(final_state(out)["model"])
    assert keys and not any("_orig_mod" in k for k in keys)
    assert train.main(tiny_args(char_data, out, max_iters=12, init_from="resume", compile=True))["iter_num"] == 12


def test_optimizer_hyperparameters_reach_the_optimizer(char_data, tmp_path):
    out = tmp_path / "betas"
    train.main(tiny_args(char_data, out, max_iters=2, eval_interval=2, beta1=0.8, beta2=0.9, weight_decay=0.05,
                         curvature_lr_mult=3.0, decay_lr=False, learning_rate=1e-3))
    groups = final_state(out)["optimizer"]["param_groups"]
    assert all(g["betas"] == (0.8, 0.9) for g in groups)
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0, 0.0]
    assert [g["lr"] for g in groups] == pytest.approx([1e-3, 1e-3, 3e-3])


def test_bf16_autocast_training_on_cpu(char_data, tmp_path):
    s = train.main(tiny_args(char_data, tmp_path / "bf16", max_iters=10, dtype="bfloat16"))
    assert np.isfinite(s["val_loss"]) and s["val_loss"] < 4.0


def test_missing_dataset_names_the_prepare_command(tmp_path):
    msg = run_error(tiny_args(tmp_path / "nodata", tmp_path / "out"))
    assert msg == (f"error: no data in {tmp_path / 'nodata'} (neither shakespeare_char_train_*.bin shards nor "
                   f"train.bin/val.bin): run `python data/shakespeare_char/prepare.py` first (or set data_dir)")
    msg = run_error(tiny_args(tmp_path / "nodata", tmp_path / "out", dataset="fineweb"))
    assert "run `python data/fineweb/prepare.py` first" in msg
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "train.bin").write_bytes(b"\0" * 200)
    assert run_error(tiny_args(tmp_path / "half", tmp_path / "out")) == (
        f"error: {tmp_path / 'half' / 'val.bin'} not found: run `python data/shakespeare_char/prepare.py` first "
        f"(or set data_dir)")
    assert not (tmp_path / "out").exists()


def test_truncated_bin_is_a_clear_error(char_data, tmp_path):
    d = tmp_path / "trunc"
    d.mkdir()
    for name in ("train.bin", "val.bin", "meta.pkl"):
        (d / name).write_bytes((char_data / name).read_bytes())
    (d / "val.bin").write_bytes((char_data / "val.bin").read_bytes()[:-1])
    size = (d / "val.bin").stat().st_size
    assert run_error(tiny_args(d, tmp_path / "out")) == (
        f"error: {d / 'val.bin'} is truncated ({size} bytes is not a whole number of uint16 tokens): "
        f"rerun `python data/shakespeare_char/prepare.py`")
    assert not (tmp_path / "out").exists()  # a failed start leaves nothing behind


def test_resume_errors(char_data, tmp_path):
    out = tmp_path / "run"
    assert run_error(tiny_args(char_data, out, init_from="resume")) == \
        f"error: no checkpoint at {out / 'ckpt.pt'} to resume from (train with init_from='scratch' first)"
    train.main(tiny_args(char_data, out, max_iters=10))
    ck = out / "ckpt.pt"
    assert run_error(tiny_args(char_data, out, init_from="resume", n_layer=3)) == (
        f"error: cannot resume {ck}: n_layer=3 but the checkpoint has n_layer=2; model options must match the "
        f"checkpoint")
    assert run_error(tiny_args(char_data, out, init_from="resume", curvature="spherical", curvature_init=0.5)) == (
        f"error: cannot resume {ck}: curvature='spherical' but the checkpoint has curvature='free'; model "
        f"options must match the checkpoint")
    assert run_error(tiny_args(char_data, out, init_from="resume", block_size=64)) == (
        f"error: block_size=64 is larger than the checkpoint's 32 ({ck}); a model cannot attend beyond the "
        f"positions it was trained with")
    assert run_error(tiny_args(char_data, out, init_from="resume", optimizer="muon")) == (
        f"error: cannot resume {ck}: optimizer='muon' but the checkpoint was trained with optimizer='adamw'")
    torch.save({"model": {}, "iter_num": 3}, out / "other.pt")
    with pytest.raises(runtime.RunError,
                       match="other.pt is not a kappaGPT checkpoint \\(missing optimizer, model_args"):
        runtime.load_checkpoint(str(out / "other.pt"))
    good = (out / "ckpt.pt").read_bytes()
    (out / "ckpt.pt").write_bytes(good[: len(good) // 2])
    msg = run_error(tiny_args(char_data, out, init_from="resume", max_iters=20))
    assert msg.startswith(f"error: checkpoint {out / 'ckpt.pt'} is corrupt or truncated and cannot be loaded (")
    assert (out / "ckpt.pt").read_bytes() == good[: len(good) // 2]  # left as it was, for inspection


def test_bad_train_options(char_data, tmp_path):
    assert run_error(tiny_args(char_data, tmp_path, batch_size=0)) == "error: batch_size must be positive, got 0"
    assert run_error(tiny_args(char_data, tmp_path, init_from="gpt3")) == (
        "error: init_from='gpt3' is not 'scratch', 'resume', one of gpt2, gpt2-medium, gpt2-large, gpt2-xl, or a "
        "directory holding a Hugging Face GPT-2 checkpoint (config.json + model.safetensors)")
    assert run_error(["--not_a_key=1"]).startswith("error: unknown config key 'not_a_key' in command line")
    assert run_error(tiny_args(char_data, tmp_path, reference="origin", residual="tangent")) == (
        "error: reference='origin' with residual='tangent' makes curvature a no-op (the stream is h ← h + f in "
        "the origin's tangent space); use residual='mobius' or reference='prev_token'")
    assert run_error(tiny_args(char_data, tmp_path, curvature="hyperbolic", curvature_init=0.1)) == (
        "error: curvature='hyperbolic' needs curvature_init < 0 (e.g. -0.05), got 0.1")
    assert run_error(tiny_args(char_data, tmp_path, n_embd=30, n_head=4)) == (
        "error: n_embd=30 must be divisible by n_head=4")
    assert run_error(tiny_args(char_data, tmp_path, max_iters=-1)) == "error: max_iters must be ≥ 0, got -1"
    assert run_error(tiny_args(char_data, tmp_path, optimizer="sgd")) == (
        "error: optimizer='sgd' is not one of ('adamw', 'muon')")


def test_sample_errors(char_data, tmp_path):
    out = tmp_path / "s"
    train.main(tiny_args(char_data, out, max_iters=2, eval_interval=2))

    def err(*argv):
        with pytest.raises(SystemExit) as e:
            sample.main([f"--out_dir={out}", "--max_new_tokens=3", *argv])
        return str(e.value)

    assert err("--start=Hello é") == ("error: the prompt has characters outside the model's "
                                      f"{len(set(CORPUS))}-character vocabulary: 'H' (U+0048), 'é' (U+00E9)")
    assert err(f"--start=FILE:{tmp_path / 'nope.txt'}") == f"error: prompt file not found: {tmp_path / 'nope.txt'}"
    assert err("--temperature=0") == "error: temperature must be positive, got 0.0"
    assert err("--dtype=fp8") == "error: dtype='fp8' is not one of ('auto', 'float32', 'bfloat16', 'float16')"
    (tmp_path / "p.txt").write_text("Speak")
    with pytest.raises(SystemExit) as e:
        sample.main([f"--out_dir={tmp_path / 'empty'}"])
    assert "no checkpoint at" in str(e.value)
    texts = sample.sample(configure(sample.DEFAULTS, [f"--out_dir={out}", f"--start=FILE:{tmp_path / 'p.txt'}",
                                                      "--num_samples=1", "--max_new_tokens=4"]))
    assert texts[0].startswith("Speak") and len(texts[0]) == 9


def test_lr_schedule():
    cfg = dict(train.DEFAULTS, learning_rate=1.0, min_lr=0.1, warmup_iters=10, lr_decay_iters=110)
    lrs = [train.get_lr(i, cfg) for i in range(200)]
    assert lrs[0] == pytest.approx(1 / 11) and lrs[9] == pytest.approx(10 / 11)  # linear warmup
    assert lrs[10] == pytest.approx(1.0) and lrs[60] == pytest.approx(0.55)  # cosine midpoint
    assert lrs[110] == pytest.approx(0.1) and lrs[199] == 0.1
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert {train.get_lr(i, dict(cfg, decay_lr=False)) for i in range(200)} == {1.0}
    # linear decay to zero: a straight line from the peak after warmup to 0 at lr_decay_iters
    line = [train.get_lr(i, dict(cfg, decay_shape="linear", min_lr=0.0)) for i in range(200)]
    assert line[:10] == lrs[:10] and line[10] == 1.0 and line[35] == pytest.approx(0.75)
    assert line[60] == pytest.approx(0.5) and line[110] == 0.0 and line[199] == 0.0
    with pytest.raises(ConfigError, match="decay_shape='step' is not one of"):
        train.validate(dict(cfg, decay_shape="step", out_dir="x"))


def metrics(out_dir):
    return [json.loads(l) for l in open(os.path.join(out_dir, "metrics.jsonl"))]


def test_same_seed_same_losses_other_seed_other_losses(char_data, tmp_path):
    runs = {name: train.main(tiny_args(char_data, tmp_path / name, max_iters=10, seed=seed))
            for name, seed in (("a", 5), ("b", 5), ("c", 6))}
    losses = {n: [r["train/loss"] for r in metrics(tmp_path / n) if "train/loss" in r] for n in runs}
    assert losses["a"] == losses["b"] and losses["a"] != losses["c"]
    assert runs["a"]["val_loss"] == runs["b"]["val_loss"]


def test_eval_only_checkpoint_policy_mfu_and_no_clip(char_data, tmp_path):
    out = tmp_path / "r"
    s = train.main(tiny_args(char_data, out, eval_only=True))
    assert s["iter_num"] == 0 and s["val_loss"] > 0 and not out.exists()  # eval_only writes nothing
    # without always_save_checkpoint, the checkpoint is rewritten only when the val loss improves
    out = tmp_path / "best"
    train.main(tiny_args(char_data, out, max_iters=30, always_save_checkpoint=False, peak_flops=1e12,
                         grad_clip=0.0, learning_rate=1e-2, min_lr=1e-9, warmup_iters=0, lr_decay_iters=10))
    ck = torch.load(out / "ckpt.pt", weights_only=True)
    assert ck["val_loss"] == ck["best_val_loss"]
    logs = [r for r in metrics(out) if "train/loss" in r]
    assert all("mfu" in r and 0 < r["mfu"] < 1 for r in logs)
    assert all(r["grad_norm"] > 0 for r in logs)  # measured even when not clipping
    evals = {r["iter"]: r["val/loss"] for r in metrics(out) if "val/loss" in r}
    best_iter = min((i for i in evals if i > 0), key=evals.get)
    assert evals[best_iter] < evals[0]
    assert ck["iter_num"] == best_iter and ck["val_loss"] == evals[best_iter]


def test_threads_sets_the_process_cpu_threads(char_data, tmp_path):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        train.main(tiny_args(char_data, tmp_path / "r", eval_only=True, threads=1))
        assert torch.get_num_threads() == 1
        train.main(tiny_args(char_data, tmp_path / "r", eval_only=True))  # 0: torch's default, left as it is
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_data_random_start_needs_shards(char_data, tmp_path):
    assert "data_random_start applies to sharded datasets only" in run_error(
        tiny_args(char_data, tmp_path, data_random_start=True))


def test_eval_only_on_a_checkpoint_evaluates_it_and_changes_nothing(char_data, tmp_path):
    out = tmp_path / "run"
    train.main(tiny_args(char_data, out, max_iters=10))
    before = {f: (out / f).read_bytes() for f in ("ckpt.pt", "metrics.jsonl")}
    s = train.main(tiny_args(char_data, out, init_from="resume", eval_only=True))
    assert s["iter_num"] == 10 and s["val_loss"] == final_state(out)["val_loss"]  # the same fixed eval batches
    assert {f: (out / f).read_bytes() for f in before} == before


def test_an_eval_full_text_shorter_than_one_window_is_refused_before_training(char_data, tmp_path):
    msg = run_error(tiny_args(char_data, tmp_path / "run", eval_full=True, eval_full_tokens=5))
    assert msg == ("error: eval_full_tokens=5 is shorter than one window (block_size = 32): set 0 (the whole split) "
                   "or at least block_size")
    assert not (tmp_path / "run").exists()
    summary = train.main(tiny_args(char_data, tmp_path / "ok", eval_full=True, eval_full_tokens=32, max_iters=2))
    assert np.isfinite(summary["val_full"])  # one window: the smallest text there is


@pytest.mark.parametrize("key, value", [("val_tokens", 256), ("data_random_start", False)])
def test_an_option_train_bin_data_ignores_is_refused(char_data, tmp_path, key, value):
    msg = run_error(tiny_args(char_data, tmp_path / "run") + [f"--{key}={value}"])
    assert msg.startswith(f"error: {key} does not apply to train.bin/val.bin data") or \
        "applies to sharded datasets only" in msg
    assert not (tmp_path / "run").exists()


def test_the_epoch_sampler_resumes_exactly(char_data, tmp_path):
    full = tmp_path / "full"
    train.main(tiny_args(char_data, full, max_iters=40, sampler="epoch", dropout=0.0))
    part = tmp_path / "part"
    train.main(tiny_args(char_data, part, max_iters=20, sampler="epoch", dropout=0.0))
    train.main(tiny_args(char_data, part, max_iters=40, sampler="epoch", dropout=0.0, init_from="resume"))
    a, b = final_state(full), final_state(part)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    # the tiny corpus's train split holds 4,023 characters: ~125 windows of 33, ~31 steps of 4 per epoch, so the
    # resumed half crossed into the second epoch
    assert a["ranks"][0]["data"]["epoch"] == 1
