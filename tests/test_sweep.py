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
