"""Nothing lost: SIGKILL at several points (one inside a checkpoint write) then resume, bit-exact against an
uninterrupted run; SIGTERM saves and exits; the non-finite guard skips bad steps and stops cleanly."""
import json
import os
import signal
import subprocess
import sys

import pytest
import torch

import model as model_module
import train
from conftest import ROOT, tiny_args

KILL_DURING_SAVE = """
import os, signal, sys, torch
sys.path.insert(0, {root!r})
import train
real_save = torch.save
def dying_save(obj, f, *args, **kwargs):  # write half a checkpoint, then die before the rename
    real_save(obj, f, *args, **kwargs)
    with open(f, "r+b") as fh:
        fh.truncate(os.path.getsize(f) // 2)
    os.kill(os.getpid(), signal.SIGKILL)
torch.save = dying_save
train.main(sys.argv[1:])
"""


def start(args, script=None):
    cmd = [sys.executable, "-c", script.format(root=ROOT)] if script else [sys.executable,
                                                                           os.path.join(ROOT, "train.py")]
    return subprocess.Popen(cmd + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"), cwd=ROOT)


def run_until(proc, marker):
    """Read the process's output until a line starts with `marker`; return everything read."""
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith(marker):
            return "".join(seen)
    proc.wait()
    raise AssertionError(f"process ended (rc {proc.returncode}) before {marker!r}:\n{''.join(seen)[-2000:]}")


def kill9(proc):
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def ckpt(out):
    return torch.load(os.path.join(out, "ckpt.pt"), weights_only=True)


def test_sigkill_anywhere_then_resume_is_bit_exact(char_data, tmp_path):
    common = dict(max_iters=25, eval_interval=5, log_interval=1, dropout=0.1)
    reference = tmp_path / "reference"
    train.main(tiny_args(char_data, reference, **common))

    out = tmp_path / "killed"
    proc = start(tiny_args(char_data, out, **common))
    run_until(proc, "iter 7:")
    kill9(proc)
    assert ckpt(out)["iter_num"] == 5

    proc = start(tiny_args(char_data, out, init_from="resume", **common))
    assert "starting at iter 5" in run_until(proc, "iter 13:")
    kill9(proc)
    assert ckpt(out)["iter_num"] == 10

    # killed inside the checkpoint write at iter 15: the iter-10 checkpoint must survive untouched
    before = (out / "ckpt.pt").read_bytes()
    proc = start(tiny_args(char_data, out, init_from="resume", **common), script=KILL_DURING_SAVE)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert (out / "ckpt.pt").read_bytes() == before
    assert any(name.startswith("ckpt.pt.tmp.") for name in os.listdir(out))  # the half-written file

    proc = start(tiny_args(char_data, out, init_from="resume", **common))
    output = proc.communicate()[0]
    assert proc.returncode == 0, output[-2000:]
    assert "starting at iter 10" in output
    assert not any(name.startswith("ckpt.pt.tmp.") for name in os.listdir(out))  # cleaned up

    a, b = ckpt(reference), ckpt(out)
    assert a["iter_num"] == b["iter_num"] == 25
    # the log tells the truth: each resume cut metrics.jsonl back to its checkpoint, so every iteration appears
    # once, with the uninterrupted run's losses
    logged = [json.loads(line) for line in open(out / "metrics.jsonl")]
    want = [json.loads(line) for line in open(reference / "metrics.jsonl")]
    assert [(r["iter"], "val/loss" in r) for r in logged] == [(r["iter"], "val/loss" in r) for r in want]
    assert [r.get("train/loss") for r in logged] == [r.get("train/loss") for r in want]
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    assert a["val_loss"] == b["val_loss"]


def test_sigterm_saves_and_exits_cleanly(char_data, tmp_path):
    out = tmp_path / "term"
    proc = start(tiny_args(char_data, out, max_iters=10_000, eval_interval=1000, log_interval=1))
    run_until(proc, "iter 3:")
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 128 + signal.SIGTERM, output[-2000:]  # saved, but the job did not finish
    saved = ckpt(out)["iter_num"]
    assert f"saving a checkpoint at iter {saved} and exiting" in output and saved >= 3
    summary = train.main(tiny_args(char_data, out, max_iters=saved + 2, eval_interval=1000, init_from="resume"))
    assert summary["iter_num"] == saved + 2


@pytest.fixture
def nan_loss_at(monkeypatch):
    """Make the training loss NaN on the given (0-based) training forward calls."""
    calls = {"n": 0, "bad": set()}
    real_forward = model_module.GPT.forward

    def forward(self, idx, targets=None, stats=None):
        logits, loss = real_forward(self, idx, targets, stats)
        if self.training and targets is not None:
            if calls["n"] in calls["bad"]:
                loss = loss * float("nan")
            calls["n"] += 1
        return logits, loss

    monkeypatch.setattr(model_module.GPT, "forward", forward)
    return calls["bad"]


def test_nonfinite_steps_are_skipped_and_counted(char_data, tmp_path, nan_loss_at, capsys):
    nan_loss_at.update({3, 4})
    out = tmp_path / "nan"
    s = train.main(tiny_args(char_data, out, max_iters=10, log_interval=1))
    assert s["iter_num"] == 10
    assert "iter 4: non-finite loss nan" in capsys.readouterr().out
    recs = [json.loads(l) for l in open(out / "metrics.jsonl") if "train/loss" in l]
    assert [r["nonfinite_steps"] for r in recs] == [0, 0, 0, 1, 2, 2, 2, 2, 2, 2]
    assert all(torch.isfinite(t).all() for t in ckpt(out)["model"].values())


def test_too_many_nonfinite_steps_stop_with_the_checkpoint_intact(char_data, tmp_path, nan_loss_at):
    nan_loss_at.update(range(12, 100))
    out = tmp_path / "nan_stop"
    args = tiny_args(char_data, out, max_iters=30, eval_interval=10, max_nonfinite=3)
    with pytest.raises(SystemExit) as e:
        train.main(args)
    assert str(e.value) == (f"error: 3 consecutive non-finite steps at iter 15: stopping. The last good checkpoint "
                            f"{out / 'ckpt.pt'} is intact; lower learning_rate, or resume with dtype='float32' "
                            f"to rule out precision")
    assert ckpt(out)["iter_num"] == 10
