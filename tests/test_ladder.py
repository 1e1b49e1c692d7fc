"""ladder.py: the arithmetic of its table by hand (paired Δ, interior-best detection and grid extension, the eager and
compiled views), and the quick mode end to end on tiny runs: tuned alike, paired by seed, resumable."""
import json
import os
import re
import statistics

import pytest

import ladder
from conftest import ROOT, fake_bench_run
import sweep

BASE = [(0, 0.0, 4.0), (10, 1.0, 3.0), (20, 2.0, 2.0)]  # (iter, wall-clock s, val loss)
ARM = [(0, 0.0, 4.0), (10, 1.5, 2.8), (20, 3.0, 1.8)]


def test_delta_in_each_view_by_hand():
    arm, base = {"evals": ARM}, {"evals": BASE}
    assert ladder.delta(arm, base, "steps") == pytest.approx(1.8 - 2.0)
    # equal eager time: both at 2.0 s, the baseline's end; the arm is 1/3 of the way from 1.5 s to 3.0 s
    assert ladder.delta(arm, base, "eager") == pytest.approx((2.8 + (1.8 - 2.8) / 3) - 2.0)
    # compiled ratio 1.25: the arm's 20 steps cost 25 baseline steps, so the arm is read at 16 steps
    assert ladder.delta(arm, base, "compiled", 1.25) == pytest.approx((2.8 + (1.8 - 2.8) * 0.6) - 2.0)
    # ratio 0.8: the arm is cheaper, so the baseline is read at 16 steps against the arm's 20
    assert ladder.delta(arm, base, "compiled", 0.8) == pytest.approx(1.8 - (3.0 + (2.0 - 3.0) * 0.6))
    assert ladder.delta(arm, base, "compiled", 1.0) == ladder.delta(arm, base, "steps")
    # equal steps read the whole-split loss when the run measured it; equal time starts the clock after startup
    assert ladder.delta(dict(arm, final=1.7), dict(base, final=2.1), "steps") == pytest.approx(1.7 - 2.1)
    # with whole-split results, the curves give the change and the results the level: the arm at 16 steps is its
    # result plus its curve's rise from 20 back to 16 steps
    rise = (2.8 + (1.8 - 2.8) * 0.6) - 1.8
    assert ladder.delta(dict(arm, final=1.7), dict(base, final=2.1), "compiled", 1.25) == pytest.approx(
        1.7 + rise - 2.1)
    late = {"evals": [(i, w + 1.0, v) for i, w, v in ARM], "startup_s": 1.0}  # 1 s of compilation first
    assert ladder.delta(late, base, "eager") == pytest.approx(ladder.delta(arm, base, "eager"))


def test_interpolate_stays_inside_the_curve():
    pts = [(0, 1.0), (10, 3.0)]
    assert sweep.interpolate(pts, 2.5) == pytest.approx(1.5)
    assert sweep.interpolate(pts, 10) == 3.0 and sweep.interpolate(pts, 11) is None


def test_best_rate_is_interior_only_between_the_edges_and_the_grid_extends_past_an_edge():
    assert sweep.best_rate({1e-3: 2.0, 3e-3: 1.9, 1e-2: 2.1}) == (3e-3, True)
    assert sweep.best_rate({1e-3: 1.8, 3e-3: 1.9, 1e-2: 2.1}) == (1e-3, False)
    extended = {"low": 0, "high": 0}
    grid = {1e-2: 1.8, 3e-2: 1.9, 1e-1: 2.0}
    assert sweep.next_rate(grid, 10 ** 0.5, extended, 2) == pytest.approx(3.2e-3)  # one √10 below, 2 digits
    assert sweep.next_rate({1e-2: 2.0, 3e-2: 1.9}, 3.0, extended, 2) == pytest.approx(9e-2)
    assert extended == {"low": 1, "high": 1}
    extended["low"] = 2
    assert sweep.next_rate(grid, 10 ** 0.5, extended, 2) is None  # that side has had its extensions
    assert sweep.next_rate({1e-3: 2.0, 3e-3: 1.9, 1e-2: 2.1}, 3.0, {"low": 0, "high": 0}, 2) is None


def test_non_embedding_parameters_are_those_of_the_blocks():
    from model import GPT, GPTConfig

    m = GPT(GPTConfig(n_layer=3, n_head=2, n_embd=64, vocab_size=50, block_size=16, bias=False, norm="rmsnorm",
                      tie_embeddings=False, curvature="euclidean"))
    blocks = sum(p.numel() for p in m.transformer.h.parameters())
    assert ladder.non_embedding_params(3, 64) == blocks


@pytest.mark.parametrize("config", ["train_shakespeare_char_modern.py", "train_fineweb_speedrun.py"])
def test_the_bench_spec_is_the_base_configs_model(config):
    """bench.py builds the model of the spec and the context it is given; that model must be the base config's."""
    import bench
    from runtime import MODEL_KEYS

    cfg = {"__file__": os.path.join(ROOT, "config", config)}
    exec(open(cfg["__file__"]).read(), cfg)
    spec, context = ladder.bench_setup(os.path.join("config", config))
    got = bench.parse_spec("euclidean:" + spec)
    for key in set(MODEL_KEYS) & set(cfg) - {"n_layer", "n_head", "n_embd", "block_size", "curvature", "reference",
                                             "residual", "curvature_init", "dropout", "smear", "geometry_checkpoint"}:
        assert got.get(key, bench.GPTConfig.__dataclass_fields__[key].default) == cfg[key], key
    args = dict(zip(context[::2], context[1::2]))
    assert int(args["--block_size"]) == cfg["block_size"] and float(args["--curvature_init"]) == cfg["curvature_init"]


def test_compiled_ratio_runs_bench_once_and_divides_curved_by_baseline(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(ladder.subprocess, "run", fake_bench_run(calls))
    args = ladder.parse(["--out", str(tmp_path / "deep" / "ladder"), "--sizes", "2x64", "--length_size", ""])
    assert ladder.compiled_ratio(args, "2x64") == pytest.approx(9.0 / 8.0)
    assert ladder.compiled_ratio(args, "2x64") == pytest.approx(9.0 / 8.0) and len(calls) == 1  # kept, not rerun
    cmd = calls[0]
    assert cmd[cmd.index("--n_head") + 1] == "2" and cmd[cmd.index("--optimizer") + 1] == "muon"


@pytest.mark.slow
def test_quick_ladder_tables_follow_from_its_runs(char_data, tmp_path, capsys):
    out = tmp_path / "ladder"
    args = ["--quick", "--out", str(out), "--lrs", "1e-2", "3e-2", "--max_extend", "1", "--no-refine", "--arms",
            "euclid+smear", "hyp-prev-tangent", "--free_sizes", "1x16", "--cost_ratios", "1.25", "0.8", "--extra", "--eval_iters=2",
            "--batch_size=4", "--block_size=16", "--log_interval=2", f"--data_dir={char_data}"]
    rows = ladder.main(args)
    saved = json.loads((out / "ladder.json").read_text())
    assert {(r["size"], r["arm"]) for r in rows} == {("1x16", "euclid+smear"), ("1x16", "hyp-prev-tangent"),
                                                     ("1x16", "free-prev-tangent"), ("2x32", "euclid+smear"),
                                                     ("2x32", "hyp-prev-tangent")}
    for r in rows:
        grid = {float(lr): v for lr, v in saved["grids"][r["size"]][r["arm"]].items()}
        best, interior = sweep.best_rate(grid)
        assert r["best_lr"] == best and r["interior"] == interior
        assert 2 <= len(grid) <= 3  # the grid and at most one extension (no refinement: sweep.tune's tests cover it)
        if not interior:  # at an edge after its one extension
            assert len(grid) == 3
        runs = saved["runs"][r["size"]][r["arm"]]
        base = saved["runs"][r["size"]]["euclid+smear"]
        assert sorted(runs) == ["1", "1337"]  # both seeds at the best rate
        assert all(runs[sd]["final"] is not None for sd in runs)  # each result on the whole validation split
        diffs = [runs[sd]["final"] - base[sd]["final"] for sd in runs]
        assert r["steps"][0] == pytest.approx(statistics.mean(diffs))
        assert r["steps"][1] == pytest.approx(statistics.stdev(diffs))
        ratio = 1.25 if r["size"] == "1x16" else 0.8
        want = [ladder.delta(runs[sd], base[sd], "compiled", ratio) for sd in runs]
        assert r["compiled"][0] == pytest.approx(statistics.mean(want)) and r["ratio"] == ratio
    free = next(r for r in rows if r["arm"] == "free-prev-tangent")
    assert len(free["positive_heads"]) == 2 and all(len(per_seed) == 1 for per_seed in free["positive_heads"])
    assert list(saved["length"]) == ["hyp-prev-tangent"] and saved["length"]["hyp-prev-tangent"][-1][0] == 16
    assert "| 2x32 |" in (out / "ladder.md").read_text()
    assert (out / "ladder.png").stat().st_size > 10_000 and (out / "ladder_length.png").stat().st_size > 10_000
    assert not list(out.rglob("ckpt.pt"))  # logs and summaries are kept, weights are not
    capsys.readouterr()
    ladder.main(args)  # a rerun (or a resumed ladder) trains nothing again
    assert "===" not in capsys.readouterr().out


def test_bad_ladder_arguments_are_one_line_errors(tmp_path):
    for argv, msg in ((["--sizes", "4by128"], "a size is LAYERSxWIDTH"), (["--sizes", "2x48"], "not a multiple"),
                      (["--arms", "hyp-prev-tangent"], "including euclid+smear"),
                      (["--iters", "1", "2"], "one value or one per size")):
        with pytest.raises(SystemExit, match=re.escape(msg)):
            ladder.main(argv + ["--out", str(tmp_path / "never")])
        assert not (tmp_path / "never").exists()
