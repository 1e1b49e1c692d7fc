"""Observability: metrics.jsonl, plot.py on a real run, wandb offline logging and its fallback."""
import glob
import json
import os
import subprocess
import sys

import matplotlib.image
import pytest

import plot
import train
from conftest import CORPUS, ROOT, tiny_args


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("observe")
    (d / "input.txt").write_text(CORPUS)
    subprocess.run([sys.executable, os.path.join(ROOT, "data/shakespeare_char/prepare.py"), "--input",
                    str(d / "input.txt"), "--out_dir", str(d / "data")], check=True, capture_output=True)
    # the hyperbolic block: its ball has a boundary, so the health stats (radius, clamped) have something to read
    train.main(tiny_args(d / "data", d / "curved", max_iters=20, eval_interval=5, log_interval=5, curvature="hyperbolic",
                         curvature_init=-0.05))
    train.main(tiny_args(d / "data", d / "euclid", max_iters=20, eval_interval=5, log_interval=5,
                         curvature="euclidean"))
    return d


def records(out_dir):
    return [json.loads(line) for line in open(os.path.join(out_dir, "metrics.jsonl"))]


def test_metrics_file(runs):
    recs = records(runs / "curved")
    evals = [r for r in recs if "val/loss" in r]
    logs = [r for r in recs if "train/loss" in r]
    assert [r["iter"] for r in evals] == [0, 5, 10, 15, 20]
    assert [r["iter"] for r in logs] == [5, 10, 15, 20]
    for r in logs:
        assert {"lr", "tokens_per_sec", "grad_norm", "ms_per_iter", "wall"} <= set(r)
        assert {f"curvature/block{l}/head{h}" for l in range(2) for h in range(2)} <= set(r)
        assert "curvature/block1/mean" in r
    for r in evals:
        assert {"geometry/block0/clamped", "geometry/block1/radius"} <= set(r)
        assert 0 <= r["geometry/block0/clamped"] <= 1 and r["geometry/block1/radius"] > 0
    walls = [r["wall"] for r in recs]
    assert walls == sorted(walls)
    assert not any(k.startswith("curvature/") for r in records(runs / "euclid") for k in r)


def test_plot_writes_loss_and_curvature_pngs(runs, tmp_path):
    written = plot.main([str(runs / "curved"), str(runs / "euclid"), "--out", str(tmp_path / "p" / "cmp")])
    assert written == [str(tmp_path / "p" / "cmp_loss.png"), str(tmp_path / "p" / "cmp_curvature.png")]
    for path in written:
        img = matplotlib.image.imread(path)
        assert img.shape[0] > 200 and img.shape[1] > 400
        assert img.std() > 0.01  # not a blank canvas
    # Euclidean runs alone have no curvature to plot; one x-axis gives a narrower figure
    assert plot.main([str(runs / "euclid"), "--out", str(tmp_path / "e"), "--xaxis", "iter"]) == \
        [str(tmp_path / "e_loss.png")]
    one, both = matplotlib.image.imread(tmp_path / "e_loss.png"), matplotlib.image.imread(written[0])
    assert one.shape[0] == both.shape[0] and one.shape[1] < 0.6 * both.shape[1]
    with pytest.raises(SystemExit, match="metrics.jsonl not found"):
        plot.main([str(tmp_path / "nothing")])


def test_plot_reads_a_run_killed_mid_write(runs, tmp_path, capsys):
    d = tmp_path / "killed"
    d.mkdir()
    text = (runs / "curved" / "metrics.jsonl").read_text()
    (d / "metrics.jsonl").write_text(text + '{"iter": 25, "val/lo')
    assert len(plot.read_metrics(str(d))) == len(text.splitlines())
    (d / "metrics.jsonl").write_text('{"iter": 1\n' + text)  # a damaged line in the middle
    assert len(plot.read_metrics(str(d))) == len(text.splitlines())
    assert "line 1: not JSON (cut short?), skipped" in capsys.readouterr().out
    plot.main([str(d), "--out", str(tmp_path / "x")])
    assert (tmp_path / "x_loss.png").exists()


def run_train_subprocess(args, env_over, cwd):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(env_over)
    r = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), *args], capture_output=True, text=True,
                       env=env, cwd=cwd, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return r.stdout + r.stderr


def wandb_files(out_dir):
    return sorted(glob.glob(os.path.join(out_dir, "wandb", "offline-run-*", "run-*.wandb")))


def test_wandb_offline_logs_curvature_and_resume_continues_the_run(runs, tmp_path):
    out = tmp_path / "wb"
    common = dict(max_iters=10, eval_interval=5, log_interval=5, wandb_log=True, wandb_project="kappa-test-proj",
                  wandb_run_name="kappa-test-run")
    run_train_subprocess(tiny_args(runs / "data", out, **common), {"WANDB_MODE": "offline"}, tmp_path)
    files = wandb_files(out)
    assert len(files) == 1
    blob = open(files[0], "rb").read()
    for key in (b"curvature/block0/head0", b"curvature/block1/head1", b"curvature/block1/mean", b"val/loss",
                b"train/loss", b"geometry/block0/clamped", b"tokens_per_sec", b"grad_norm", b"kappa-test-proj",
                b"kappa-test-run"):
        assert key in blob, key
    import torch

    run_id = torch.load(out / "ckpt.pt", weights_only=True)["wandb_run_id"]
    assert run_id and files[0].endswith(f"run-{run_id}.wandb")
    run_train_subprocess(tiny_args(runs / "data", out, **common | {"max_iters": 15, "init_from": "resume"}),
                         {"WANDB_MODE": "offline"}, tmp_path)
    files = wandb_files(out)
    assert len(files) == 2 and all(f.endswith(f"run-{run_id}.wandb") for f in files)


def test_wandb_without_api_key_falls_back_to_offline(runs, tmp_path):
    out = tmp_path / "nokey"
    log = run_train_subprocess(tiny_args(runs / "data", out, max_iters=2, eval_interval=2, wandb_log=True),
                               {"HOME": str(tmp_path)}, tmp_path)
    notices = [line for line in log.splitlines() if line.startswith("wandb: online init failed")]
    assert len(notices) == 1 and "logging offline" in notices[0]
    assert len(wandb_files(out)) == 1
