"""sweep.py: the grid, the best rate per arm, the seeds, the two tables, on tiny runs."""
import json

import pytest

import sweep


def test_sweep_picks_each_arms_best_rate_and_reports_equal_steps_and_wall_clock(char_data, tmp_path, capsys):
    out = tmp_path / "sweep"
    tiny = ["--n_layer=1", "--n_embd=32", "--n_head=2", "--block_size=16", "--batch_size=4", "--eval_iters=2",
            "--log_interval=2", f"--data_dir={char_data}"]
    args = ["--max_iters", "6", "--eval_interval", "3", "--lrs", "1e-3", "3e-2", "--seeds", "1337", "1", "--arms",
            "euclid", "hyp-prev-tangent", "--max_extend", "0", "--no-refine", "--out", str(out), "--extra", *tiny]
    summary = sweep.main(args)
    saved = json.loads((out / "sweep.json").read_text())
    for row in summary["rows"]:
        runs = saved["runs"][row["arm"]]
        grid = {r["lr"]: r["final"] for r in runs if r["seed"] == 1337}
        assert row["best_lr"] == min(grid, key=grid.get) and len(grid) == 2  # the grid ran at the first seed
        finals = [r for r in runs if r["lr"] == row["best_lr"]]
        assert sorted(r["seed"] for r in finals) == [1, 1337]  # then the other seeds at the best rate
        assert all(r["final"] is not None for r in finals)  # on the whole validation split
        mean = sum(r["final"] for r in finals) / 2
        assert row["val_at_steps"][0] == pytest.approx(mean)
        assert row["ms_per_iter"] > 0
    best = {row["arm"]: row["best_lr"] for row in summary["rows"]}
    finals = [r for arm, runs in saved["runs"].items() for r in runs if r["lr"] == best[arm]]
    assert summary["budget_s"] == min(r["evals"][-1][1] for r in finals)  # equal wall-clock: the fastest run's time
    assert (out / "sweep.png").stat().st_size > 10_000 and "| euclid |" in (out / "sweep.md").read_text()
    # a rerun reuses the finished runs
    capsys.readouterr()
    sweep.main(args)
    assert "===" not in capsys.readouterr().out


def test_unknown_arm_is_an_error():
    with pytest.raises(SystemExit, match="unknown arms"):
        sweep.main(["--arms", "nope"])


# ----------------------------------------------------------------------------- what a run's fingerprint holds


def test_the_data_directory_is_resolved_as_train_py_resolves_it(tmp_path):
    import os

    from conftest import ROOT
    # a config file that reads another option: a two-key scope would fail on it and fall back to the default dataset
    cfg = tmp_path / "cfg.py"
    cfg.write_text("dataset = 'pycode' if n_layer == 4 and block_size == 64 else 'enwik8'\n")
    assert sweep.data_dir([str(cfg)]) == os.path.join(ROOT, "data", "pycode")
    assert sweep.data_dir(["--n_layer=2", str(cfg)]) == os.path.join(ROOT, "data", "enwik8")  # in order
    broken = tmp_path / "broken.py"
    broken.write_text("dataset = undefined_name\n")
    with pytest.raises(SystemExit, match="do not resolve: error while executing config file .*NameError"):
        sweep.data_dir([str(broken)])


def test_options_that_cannot_change_a_run_stay_out_of_its_fingerprint(char_data, tmp_path):
    """Two runs that differ only in NOT_COMPUTED keys end with the same weights and log the same losses."""
    import os

    import torch

    import train
    from conftest import tiny_args

    def run(out, **over):
        train.main(tiny_args(char_data, tmp_path / out, max_iters=12, dropout=0.0) + [f"--{k}={v}" for k, v in
                                                                                        over.items()])
        with open(tmp_path / out / "metrics.jsonl") as f:
            recs = [json.loads(line) for line in f]
        losses = {(r["iter"], k): v for r in recs for k, v in r.items() if "loss" in k}
        return torch.load(os.path.join(tmp_path, out, "ckpt.pt"), weights_only=True)["model"], losses

    other = {"log_interval": 2, "peak_flops": 1e12, "wandb_run_name": "renamed", "wandb_project": "elsewhere",
             "overwrite": True}
    assert set(other) | {"out_dir", "wandb_log"} == set(sweep.NOT_COMPUTED)  # (wandb_log needs a wandb login)
    a, la = run("a")
    b, lb = run("b", **other)
    assert all(torch.equal(a[k], b[k]) for k in a)
    common = set(la) & set(lb)
    assert any(k[1] == "train/loss" for k in common) and any(k[1] == "val/loss" for k in common)
    assert all(la[k] == lb[k] for k in common)
    options = [f"--data_dir={char_data}"]
    assert sweep.same_options(sweep.resolved(options), sweep.resolved(options + [f"--{k}={v}" for k, v in
                                                                                    other.items()]))
    assert not sweep.same_options(sweep.resolved(options), sweep.resolved(options + ["--eval_interval=7"]))


def test_a_record_from_before_an_option_existed_matches_at_the_options_legacy_value():
    import hashlib

    import train
    from configurator import configure
    options = ["--curvature=euclidean", "--n_layer=2"]
    # the digest as recorded before the sampler existed: every option but the five output ones and κ₀, hashed
    cfg = configure(train.DEFAULTS, options)
    old = {k: v for k, v in cfg.items() if k not in ("out_dir", "overwrite", "wandb_log", "wandb_project",
                                                      "wandb_run_name", "curvature_init", "sampler")}
    record = hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()[:16]
    assert sweep.same_options(record, sweep.resolved(options))  # the sampler at 'random' is what ran then
    assert sweep.same_options(record, sweep.resolved([*options, "--sampler=random"]))
    assert not sweep.same_options(record, sweep.resolved([*options, "--sampler=epoch"]))
    assert not sweep.same_options(record, sweep.resolved([*options, "--n_layer=3"]))
    new = sweep.resolved(options)  # a record written now holds the options themselves
    assert sweep.same_options(new, sweep.resolved([*options, "--log_interval=7"]))
    assert not sweep.same_options(new, sweep.resolved([*options, "--sampler=epoch"]))
