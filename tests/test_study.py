"""study.py, the driver: plans resolved and checked (one-line errors), each kind's rows by hand, every kind's quick
plan end to end (tuned alike, paired by seed, resumable), the dry run, and the committed tables rebuilt number for
number from their committed runs."""
import json
import math
import os
import re
import statistics
import subprocess
import sys

import pytest

import harness as H
import study
from conftest import ROOT

NUM = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?")


def plan(tmp_path, text, name="plan.py"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def fake(final, evals=None, kappa=None):
    return {"evals": evals or [(0, 0.0, 4.0), (10, 1.0, 3.0), (20, 2.0, final + 0.01)], "final": final,
            "kappa": kappa or {}, "ms_per_iter": 1.0}


def test_bad_plans_are_one_line_errors(tmp_path):
    end = f"kind = 'end'\nout = '{tmp_path / 'never'}'\n"
    for text, argv, msg in (
            ("kind = 'nope'\n", [], "sets kind = 'nope'"),
            (end + "blocks = ['pycode:2x64']\n", [], "a block is CORPUS:SIZE:MULT"),
            (end + "blocks = ['fineweb:2x64:1']\n", [], "a block is CORPUS:SIZE:MULT"),
            (end + "blocks = ['pycode:2x48:1']\n", [], "not a multiple"),
            (end + "arms = ['ngpt']\n", [], "must include the baseline"),
            (end + "blocks = ['pycode:2x64:16:free-prev-tangent']\n", [], "must include the baseline"),
            (end + "blocks = ['pycode:2x64:16:euclid+smear,curly']\n", [], "choose from"),
            (end + "lerning_rate = 1\n", [], "unknown config key 'lerning_rate'"),
            (end, ["--seeds=1"], "must be list"),
            (end, ["--tune_seed=1", "--seeds=[1, 2]"], "the tuning seed 1 is among the reported"),
            (end + "history = True\n", [], "--rebuild=DIR rebuilds"),
            ("kind = 'ladder'\nout = 'never'\nlength_size = ''\n", ["--sizes=['4by128']"], "a size is LAYERSxWIDTH"),
            ("kind = 'ladder'\nout = 'never'\n", ["--iters=[1, 2]"], "one value or one per size"),
            ("kind = 'graft'\nout = 'never'\n", ["--lrs=[1e-3]"], "lrs does nothing in a graft plan"),
            ("kind = 'graft'\nout = 'never'\n", ["--arms=['euclid', 'ngpt']"], "unknown arms ['ngpt']"),
            (end + "blocks = ['pycode:2x64:1:euclid+smear,share']\n", [], "unknown arms ['share']"),
            (end, [], "the plan names no blocks"),
            (end + "blocks = ['pycode:2x64:1']\nschedule = 'linear'\n", [], "a schedule is 'cosine'"),
            (end + "blocks = ['pycode:2x64:1']\n", ["--workers=0"], "workers must be ≥ 1 and threads ≥ 0"),
            (end + "blocks = ['pycode:2x64:1']\n", ["--threads=-1"], "workers must be ≥ 1 and threads ≥ 0"),
            (end + "blocks = ['pycode:2x64:1']\narm_schedule = {'ngpt': 'cosine'}\n", [],
             "arm_schedule names arms the plan does not run: ['ngpt']")):
        with pytest.raises(SystemExit, match=re.escape(msg)):
            study.main([plan(tmp_path, text), *argv])
        assert not (tmp_path / "never").exists()


def test_a_block_may_name_its_own_arms_and_a_longer_one_starts_from_the_shorter_ones_best(tmp_path):
    p = study.load([plan(tmp_path, "kind = 'end'\nout = 'x'\narms = ['euclid+smear', 'ngpt']\nblocks = "
                               "['pycode:2x64:1', 'pycode:2x64:16:euclid+smear,free-prev-tangent']\n")])
    cells = study.cells(p)
    assert [c["arms"] for c in cells] == [["euclid+smear", "ngpt"], ["euclid+smear", "free-prev-tangent"]]
    assert cells[1]["start"] == {"euclid+smear": ("after", "pycode 2x64 1"), "free-prev-tangent": ("grid", None)}
    assert cells[1]["iters"] == 9600 and cells[1]["dir"] == "pycode/2x64-x16"
    assert "--sampler=epoch" in cells[1]["flags"] and "--eval_full=True" in cells[1]["flags"]


def scripted_runs(monkeypatch):
    """study.run replaced by a script: a loss that is a bowl in log rate, lower for longer cells, plus a little per
    seed; each run a short sleep. Returns the log of ('start'|'end', cell, arm, lr, seed) and the peak concurrency."""
    import threading
    import time
    log, lock, state = [], threading.Lock(), {"active": 0, "peak": 0}

    def run(p, cell, arm, lr, seed):
        with lock:
            state["active"] += 1
            state["peak"] = max(state["peak"], state["active"])
            log.append(("start", cell["name"], arm, lr, seed))
        time.sleep(0.02)
        loss = 1.5 + math.log(lr / (0.006 if arm == "euclid+smear" else 0.012)) ** 2 - 0.05 * cell["mult"] + 0.01 * seed
        with lock:
            state["active"] -= 1
            log.append(("end", cell["name"], arm, lr, seed))
        return {"evals": [(0, 0.0, 4.0), (cell["iters"], 1.0, loss)], "final": loss, "test": loss + 0.02,
                "kappa": {}, "ms_per_iter": 1.0}
    monkeypatch.setattr(study, "run", run)
    return log, state


def test_workers_run_units_side_by_side_in_order_and_give_the_one_at_a_time_results(tmp_path, monkeypatch):
    log, state = scripted_runs(monkeypatch)
    p = study.load([plan(tmp_path, f"kind = 'end'\nout = '{tmp_path}'\narms = ['euclid+smear', 'ngpt']\nblocks = "
                                   "['pycode:2x64:1', 'pycode:2x64:4', 'pycode:2x32:1']\nlrs = [0.003, 0.01]\n")])
    todo = study.cells(p)
    one = study.execute(p, todo)
    assert state["peak"] == 1
    log.clear()
    reports = []
    two = study.execute(p | {"workers": 2}, todo, lambda r: reports.append(list(r)))
    assert two == one and state["peak"] == 2
    for arm in ("euclid+smear", "ngpt"):  # the 4× cell starts from the 1× cell's best: only once that is known
        last_short = max(i for i, e in enumerate(log) if e[:3] == ("end", "pycode 2x64 1", arm))
        first_long = min(i for i, e in enumerate(log) if e[:3] == ("start", "pycode 2x64 4", arm))
        assert last_short < first_long
        best = one["pycode 2x64 1"][arm]["best_lr"]
        assert best in one["pycode 2x64 4"][arm]["grid"]
    names = [c["name"] for c in todo]
    assert reports and all(r == names[:len(r)] for r in reports) and reports[-1] == names  # prefixes, in order
    # a multiplier plan's bracket seeds run as units too, after every cell of their size, size by size
    log.clear()
    m = study.load([plan(tmp_path, f"kind = 'multiplier'\nout = '{tmp_path}'\nsizes = ['2x32', '1x32']\n"
                                   "frontier = [1, 2, 4]\n"
                                   "lengths = [1, 2]\narms = ['euclid+smear', 'ngpt']\nlrs = [0.003, 0.01]\n"
                                   "seeds = [1]\nbracket_seeds = [1, 2, 3]\n", "m.py")])
    one = study.execute(m, study.cells(m))
    starts = [e[1].split()[1] for e in log if e[0] == "start"]  # one at a time: the first size, bracket seeds too
    assert starts == sorted(starts, key=["2x32", "1x32"].index) and "1x32" in starts
    two = study.execute(m | {"workers": 2}, study.cells(m))
    assert two == one and state["peak"] == 2
    for size in ("2x32", "1x32"):
        assert sorted(one[f"pycode {size} 2"]["ngpt"]["runs"]) == [1, 2, 3]  # the arm's longest length
        mine = {n: r for n, r in one.items() if n.startswith(f"pycode {size} ")}
        bracketing = [n for n, r in mine.items() if sorted(r["euclid+smear"]["runs"]) == [1, 2, 3]]
        assert bracketing and all(sorted(r["euclid+smear"]["runs"]) in ([1], [1, 2, 3]) for r in mine.values())


def test_arm_schedule_keeps_an_arm_on_its_own_schedule(tmp_path, monkeypatch):
    p = study.load([plan(tmp_path, "kind = 'multiplier'\nout = 'x'\narms = ['euclid+smear', 'ngpt']\n"
                                   "schedule = 'linear0'\narm_schedule = {'ngpt': 'cosine'}\n")])
    seen = {}
    monkeypatch.setattr(H, "train_run", lambda out_dir, options, *a, **k: seen.update({out_dir: options}))
    cell = study.cells(p)[0]
    for arm in p["arms"]:
        study.run(p, cell, arm, 0.01, 1)
    resolved = {d.split(os.sep)[-2]: H.options_config(o) for d, o in seen.items()}
    assert (resolved["euclid+smear"]["decay_shape"], resolved["euclid+smear"]["min_lr"]) == ("linear", 0.0)
    assert (resolved["ngpt"]["decay_shape"], resolved["ngpt"]["min_lr"]) == ("cosine", pytest.approx(0.001))
    assert "cosine to 0.1·lr" in study.recipe(p, cell, "ngpt") and "linear to 0·lr" in study.recipe(p, cell,
                                                                                                   "euclid+smear")


def test_each_arm_is_costed_by_its_own_timed_block_where_one_was_timed():
    timed = {"euclid+smear": 1.0, "curved": 1.15, "ngpt": 1.4, "ngpt-adamw": 1.4, "hyp-prev-tangent": 1.1}
    assert [study.bench_key(a, timed) for a in ("euclid+smear+linear0", "hyp-prev-tangent", "free-prev-tangent")] \
        == ["euclid+smear", "hyp-prev-tangent", "curved"]
    older = {k: v for k, v in timed.items() if k != "hyp-prev-tangent"}  # a timing made before the default had its own
    assert study.bench_key("hyp-prev-tangent", older) == "curved"
    p = study.load(["plans/multiplier.py", "--cost_ratios=[1.2, 1.5]"])
    assert study.cost_ratios(p, None, "pycode", "2x64") == {"euclid+smear": 1.0, "curved": 1.2, "ngpt": 1.5,
                                                            "ngpt-adamw": 1.5, "hyp-prev-tangent": 1.2}


def test_end_rows_by_hand(tmp_path):
    p = study.load([plan(tmp_path, f"kind = 'end'\nout = '{tmp_path}'\nblocks = ['pycode:2x64:4:euclid+smear,"
                                   "free-prev-tangent,ngpt']\ncost_ratios = [1.25, 1.0]\nseeds = [1, 2]\n")])
    kappa = {"curvature/block0/head0": 0.1, "curvature/block0/head1": -0.2, "curvature/block1/head0": 0.3,
             "curvature/block1/head1": 0.4}
    results = {"pycode 2x64 4": {
        "euclid+smear": {"grid": {}, "best_lr": 0.01, "interior": True, "runs": {1: fake(1.50), 2: fake(1.60)}},
        "free-prev-tangent": {"grid": {}, "best_lr": 0.005, "interior": False,
                              "runs": {1: fake(1.45, kappa=kappa), 2: fake(1.56, kappa=kappa)}},
        "ngpt": {"grid": {}, "best_lr": 0.02, "interior": True, "runs": {1: fake(1.52), 2: fake(1.58)}}}}
    rows = {r["arm"]: r for r in study.report_end(p, results, str(tmp_path))}
    free = rows["free-prev-tangent"]
    assert free["steps"][0] == pytest.approx(-0.045) and free["steps"][1] == pytest.approx(math.sqrt(2) * 0.005)
    assert free["ratio"] == pytest.approx(1.25) and rows["ngpt"]["ratio"] == pytest.approx(1.0)
    assert free["positive_heads"] == [[1, 2], [1, 2]]
    assert free["loss"][0] == pytest.approx(1.505) and not free["interior"]
    # equal compiled cost at ratio 1.25: the arm at 16 of its 20 steps, off its curve (3.0 at 10, final + 0.01 at 20)
    # anchored at its final (so: the curve's value − 0.01), the baseline at its 20 steps (its final)
    at16 = [3.0 + (1.46 - 3.0) * 0.6 - 0.01, 3.0 + (1.57 - 3.0) * 0.6 - 0.01]
    assert free["compiled"][0] == pytest.approx(sum(a - b for a, b in zip(at16, [1.50, 1.60])) / 2)
    assert rows["ngpt"]["compiled"][0] == pytest.approx(rows["ngpt"]["steps"][0])  # ratio 1: the steps view
    assert "steps" not in rows["euclid+smear"]
    assert "the tuning seed 1337 is not among them" in (tmp_path / "study.md").read_text()


def test_graft_rows_pair_by_seed_and_average_kappa_per_head_by_hand(tmp_path):
    def run(start, end, kappa=None):
        return {"evals": [(0, 0.0, start), (10, 1.0, end)], "ms_per_iter": 5.0, "kappa": kappa or {}}
    p = study.load([plan(tmp_path, f"kind = 'graft'\nout = '{tmp_path}'\nseeds = [1337, 1]\narms = ['euclid', "
                                   "'graft']\n")])
    runs = {"euclid": [run(2.0, 1.50), run(2.0, 1.60)],
            "graft": [run(2.0, 1.45, {"curvature/block0/head0": 0.1, "curvature/block0/head1": -0.3,
                                      "share/block0/head0": 0.5, "share/block0/head1": 0.0}),
                      run(2.0, 1.52, {"curvature/block0/head0": 0.3, "curvature/block0/head1": -0.1,
                                      "share/block0/head0": 0.1, "share/block0/head1": 0.2})]}
    rows = {r["arm"]: r for r in study.report_graft(p, {"runs": runs, "pretrain": None}, str(tmp_path))}
    assert rows["graft"]["delta"][0] == pytest.approx(statistics.mean([-0.05, -0.08]))
    assert rows["graft"]["delta"][1] == pytest.approx(statistics.stdev([-0.05, -0.08]))
    assert rows["euclid"]["delta"] == (0.0, 0.0)
    assert rows["graft"]["kappa"] == {0: [pytest.approx(0.2), pytest.approx(-0.2)]}
    assert rows["graft"]["share"] == {0: [pytest.approx(0.3), pytest.approx(0.1)]}
    assert rows["euclid"]["kappa"] == {} and rows["graft"]["start"] == (2.0, 0.0)


TINY = ["--eval_iters=2", "--batch_size=4", "--block_size=16", "--log_interval=2"]


def test_quick_sweep_picks_each_arms_best_rate_and_reports_equal_steps_and_wall_clock(char_data, tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["plans/sweep.py", "--quick", f"--out={out}", "--lrs=[1e-3, 3e-2]", "--seeds=[1337, 1]",
            "--arms=['euclid', 'hyp-prev-tangent']", "--max_extend=0", "--refine=False", "--workers=2", "--threads=1",
            "--extra",
            "--n_layer=1", "--n_embd=32", "--n_head=2", *TINY, f"--data_dir={char_data}"]
    rows = study.main(argv)
    saved = json.loads((out / "sweep.json").read_text())
    for row in rows:
        r = saved["runs"][""][row["arm"]]
        assert row["best_lr"] == min(r["grid"], key=r["grid"].get, default=None) and len(r["grid"]) == 2 or \
            float(min(r["grid"], key=r["grid"].get)) == row["best_lr"]
        assert sorted(r["runs"]) == ["1", "1337"] and all(s["final"] is not None for s in r["runs"].values())
        assert row["val_at_steps"][0] == pytest.approx(statistics.mean(s["final"] for s in r["runs"].values()))
    assert saved["budget_s"] == min(H.steady(s)[-1][1] for a in saved["runs"][""].values() for s in a["runs"].values())
    text = (out / "sweep.md").read_text()
    assert "| euclid |" in text and "the tuning seed 1337 is among them" in text
    assert (out / "sweep.png").stat().st_size > 10_000
    capsys.readouterr()
    study.main(argv)  # a rerun reuses the finished runs
    assert "===" not in capsys.readouterr().out


@pytest.mark.slow
def test_quick_ladder_tables_follow_from_its_runs(char_data, tmp_path, capsys):
    out = tmp_path / "ladder"
    argv = ["plans/ladder.py", "--quick", f"--out={out}", "--lrs=[1e-2, 3e-2]", "--max_extend=0", "--full_eval=True",
            "--arms=['euclid+smear']", "--free_sizes=['1x16']", "--length_arms=['euclid+smear', 'free-prev-tangent']",
            "--cost_ratios=[1.25, 0.8]", "--workers=2", "--threads=1",
            "--extra", *TINY, f"--data_dir={char_data}"]
    rows = study.main(argv)
    saved = json.loads((out / "ladder.json").read_text())
    assert {(r["size"], r["arm"]) for r in rows} == {("1x16", "euclid+smear"), ("1x16", "free-prev-tangent"),
                                                     ("2x32", "euclid+smear")}
    for r in rows:
        grid = {float(lr): v for lr, v in saved["runs"][r["size"]][r["arm"]]["grid"].items()}
        assert (r["best_lr"], r["interior"]) == H.best_rate(grid) and len(grid) == 2  # (extension: test_harness)
        runs, base = saved["runs"][r["size"]][r["arm"]]["runs"], saved["runs"][r["size"]]["euclid+smear"]["runs"]
        assert sorted(runs) == ["1", "1337"]
        diffs = [runs[sd]["final"] - base[sd]["final"] for sd in runs]
        assert r["steps"][0] == pytest.approx(statistics.mean(diffs))
        assert r["steps"][1] == pytest.approx(statistics.stdev(diffs))
        ratio = 1.25 if r["size"] == "1x16" else 0.8
        want = [H.delta(runs[sd], base[sd], "compiled", ratio) for sd in runs]
        assert r["compiled"][0] == pytest.approx(statistics.mean(want)) and r["ratio"] == ratio
    free = next(r for r in rows if r["arm"] == "free-prev-tangent")
    assert len(free["positive_heads"]) == 2 and all(len(per_seed) == 1 for per_seed in free["positive_heads"])
    assert list(saved["length"]) == ["free-prev-tangent"] and saved["length"]["free-prev-tangent"][-1][0] == 16
    assert "| 2x32 |" in (out / "ladder.md").read_text()
    assert (out / "ladder.png").stat().st_size > 10_000 and (out / "ladder_length.png").stat().st_size > 10_000
    assert not list(out.rglob("ckpt.pt"))  # logs and summaries are kept, weights are not
    capsys.readouterr()
    study.main(argv)  # a rerun (or a resumed ladder) trains nothing again
    assert "===" not in capsys.readouterr().out


@pytest.fixture(scope="module")
def pycode_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("src")
    for i in range(30):
        (root / f"m{i}.py").write_text(f"class C{i}:\n    def f(self, x):\n        return x + {i}\n" * 8)
    out = tmp_path_factory.mktemp("pycode")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "data", "pycode", "prepare.py"), "--input", str(root),
                        "--out_dir", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out


@pytest.mark.slow
def test_quick_end_study_tunes_every_arm_per_block_and_resumes(char_data, pycode_data, tmp_path, capsys):
    out = tmp_path / "study"
    arms = ["euclid+smear", "ngpt-adamw"]  # nGPT's recipe: its own optimizer and schedule (curved arms: the ladder)
    argv = [plan(tmp_path, "kind = 'end'\n"), "--quick", f"--out={out}", "--lrs=[1e-2]", "--max_extend=0",
            "--cost_ratios=[1.25, 0.9]", f"--arms={arms}", "--workers=2", "--threads=1",  # two at a time, as studies run
            f"--data_dirs={{'shakespeare_char': '{char_data}', 'pycode': '{pycode_data}'}}", "--extra", *TINY]
    rows = study.main(argv)
    saved = json.loads((out / "study.json").read_text())
    assert {(r["corpus"], r["size"], r["mult"]) for r in rows} == {("shakespeare_char", "1x16", 1),
                                                                    ("pycode", "1x16", 1), ("shakespeare_char", "1x16", 2)}
    assert {r["arm"] for r in rows} == set(arms)
    for r in rows:
        cell = saved["runs"][f"{r['corpus']} {r['size']} {r['mult']}"]
        grid = {float(lr): v for lr, v in cell[r["arm"]]["grid"].items()}
        assert r["best_lr"] == H.best_rate(grid)[0]
        runs = {a: c["runs"] for a, c in cell.items()}
        assert set(runs[r["arm"]]) == {"1", "2"}  # the reported seeds; the tuning seed 1337 only in the grid
        assert all(s["final"] is not None for s in runs[r["arm"]].values())  # the whole validation split
        key = "test" if r["corpus"] == "pycode" else "final"  # reported on pycode's test split, Shakespeare's val
        assert all((s["test"] is not None) == (r["corpus"] == "pycode") for s in runs[r["arm"]].values())
        if r["arm"] != "euclid+smear":
            diffs = [runs[r["arm"]][sd][key] - runs["euclid+smear"][sd][key] for sd in ("1", "2")]
            assert r["steps"][0] == pytest.approx(sum(diffs) / 2)
        if r["mult"] == 2:  # the 2× block started from the √2 grid around the 1× best of the same arm
            first = next(x for x in rows if (x["corpus"], x["size"], x["mult"], x["arm"]) ==
                         ("shakespeare_char", "1x16", 1, r["arm"]))
            assert set(H.start_grid(first["best_lr"], [])) <= set(grid)
    assert next(r for r in rows if r["arm"] == "ngpt-adamw")["ratio"] == pytest.approx(0.9)
    text = (out / "study.md").read_text()
    assert "| pycode | 1x16 | 1× |" in text and "the tuning seed 1337 is not among them" in text
    assert "pycode: the whole test split" in text and "shakespeare_char: the whole val split" in text
    assert "- ngpt-adamw: AdamW β (0.9, 0.95), wd 0, warmup 0%, cosine to 0·lr, clip 1" in text
    assert "- euclid+smear: Muon (matrices) + AdamW β (0.9, 0.95), wd 0, warmup 10%, cosine to 0.1·lr, clip none" in text
    assert (out / "study.png").stat().st_size > 10_000
    capsys.readouterr()
    study.main(argv)  # a rerun trains nothing again
    assert "===" not in capsys.readouterr().out
    assert study.main([*argv[:-len(TINY) - 1], "--dry_run", "--extra", *TINY]) == 0  # nothing left to run
    assert "0.0 h still to run" in capsys.readouterr().out


@pytest.mark.slow
def test_quick_multiplier_inverts_the_baselines_frontier_and_pairs_the_bracketing_seeds(pycode_data, tmp_path,
                                                                                        capsys):
    out = tmp_path / "multiplier"
    argv = ["plans/multiplier.py", "--quick", f"--out={out}", "--lrs=[1e-2]", "--max_extend=0",
            "--arms=['euclid+smear', 'free-prev-tangent']", "--arm_schedule={}", "--cost_ratios=[1.25, 0.9]",
            "--seeds=[1]", "--bracket_seeds=[1, 2, 3]", f"--data_dirs={{'pycode': '{pycode_data}'}}", "--extra", *TINY]
    rows = study.main(argv)
    saved = json.loads((out / "multiplier.json").read_text())
    assert [(r["mult"], r["arm"]) for r in rows] == [(1, "euclid+smear"), (1, "free-prev-tangent"), (2, "euclid+smear")]
    runs = {k: {a: {int(sd): s["test"] for sd, s in c["runs"].items()} for a, c in v.items()}
            for k, v in saved["runs"].items()}
    free = runs["pycode 1x16 1"]["free-prev-tangent"]
    assert sorted(free) == [1, 2, 3]  # the arm's longest length: the bracket seeds (elsewhere seed 1 alone)
    base = {8: runs["pycode 1x16 1"]["euclid+smear"], 16: runs["pycode 1x16 2"]["euclid+smear"]}
    assert any(sorted(b) == [1, 2, 3] for b in base.values())  # a bracketing frontier point ran the arm's seeds too
    # the multiplier by hand: each point's mean over its seeds, the arm's mean, log steps against log loss
    (s0, y0), (s1, y1) = [(n, sum(b.values()) / len(b)) for n, b in sorted(base.items())]
    y = sum(free.values()) / 3
    row = next(r for r in rows if r["arm"] == "free-prev-tangent")
    if y0 > y1 and y1 <= y <= y0:
        t = (math.log(y0) - math.log(y)) / (math.log(y0) - math.log(y1))
        assert row["multiplier"] == pytest.approx(math.exp(math.log(s0) + t * math.log(s1 / s0)) / 8) and not row["flag"]
    elif y0 > y1:
        assert row["flag"] == (">" if y < y1 else "<")
    assert row["per_cost"] == pytest.approx(row["multiplier"] / 1.25)
    md = (out / "multiplier.md").read_text()
    if not row["flag"]:  # (a bound states no interval: the case below)
        lo, hi = row[row["interval"]]
        assert f"{row['per_cost']:.2f} [{lo / 1.25:.2f}, {hi / 1.25:.2f}]" in md
        assert row["percentile"][0] <= row["percentile"][1] and row["log_t"][0] <= row["log_t"][1]
    # the row states what the rule (its own test below) says of its intervals and their coverage
    assert {k: row[k] for k in ("interval", "excludes_1") if k in row} == study.stated_multiplier_interval(row)
    assert "| 1x16 | 1× | 8 | free-prev-tangent |" in md and f"{'yes' if row['excludes_1'] else 'no'} (" in md
    assert "Made by: `python study.py plans/multiplier.py --quick" in md and "1x16 1× free-prev-tangent: 0.01 → " in md
    assert (out / "multiplier.png").stat().st_size > 10_000 and (out / "multiplier_frontier.png").stat().st_size > 10_000
    # timed in two processes (a rebuild reads the bench JSON as it is): the ratio is their median, their range beside it
    def rows_of(base, curved):  # bench.py's rows, each block eager then compiled
        return [r for k in study.BENCH
                for r in ({"name": k, "ms": 20.0}, {"name": f"{k} +compile", "ms": curved if k == "curved" else base})]

    (out / "bench").mkdir(exist_ok=True)  # each process's ratio (1.2, 1.3), not the medians' (11.3 / 9)
    (out / "bench" / "pycode-1x16.json").write_text(json.dumps({"settings": {"processes": 2}, "rows": rows_of(8, 9.6),
                                                                "processes": [rows_of(8, 9.6), rows_of(10, 13)]}))
    rebuilt = study.main([a for a in argv if not a.startswith("--cost_ratios")][:-len(TINY) - 1]
                         + [f"--rebuild={tmp_path / 'rebuilt'}", "--extra", *TINY])
    row = next(r for r in rebuilt if r["arm"] == "free-prev-tangent")
    assert row["ratio"] == pytest.approx(1.25) and row["ratio_processes"] == pytest.approx([1.2, 1.3])
    md = (tmp_path / "rebuilt" / "multiplier.md").read_text()
    assert f"| 1.25 (1.20–1.30) | {row['flag']}{row['multiplier'] / 1.25:.2f}" in md and "1x16: 2 processes" in md
    assert "(1.00–1.00)" not in md  # the baseline's ratio is 1 in every process: no range
    capsys.readouterr()
    study.main(argv)  # a rerun trains nothing again
    assert "===" not in capsys.readouterr().out


def test_two_seeds_state_no_interval_and_three_state_the_better_covering_one():
    row = {"seeds": [1, 2], "percentile": (1.09, 1.09), "log_t": (1.06, 1.12), "coverage": {"percentile": 0.0,
                                                                                           "log_t": 0.0}}
    assert study.stated_multiplier_interval(row) == {}  # one degree of freedom: no claim either way
    row |= {"seeds": [1, 2, 3], "coverage": {"percentile": 0.80, "log_t": 0.93}}
    assert study.stated_multiplier_interval(row) == {"interval": "log_t", "excludes_1": True}
    row |= {"coverage": {"percentile": 0.94, "log_t": 0.99}, "percentile": (0.98, 1.2)}
    assert study.stated_multiplier_interval(row) == {"interval": "percentile", "excludes_1": False}
    del row["coverage"]  # nothing checked it: log-t
    assert study.stated_multiplier_interval(row)["interval"] == "log_t"
    # past the frontier: no interval is stated; the paired loss gap at the arm's length decides whether 1 is excluded
    bound = {"seeds": [1, 2, 3], "flag": ">", "multiplier": 1.0, "gap": (-0.03, -0.01)}
    assert study.stated_multiplier_interval(bound) == {"excludes_1": True}
    assert study.stated_multiplier_interval(bound | {"gap": (-0.03, 0.01)}) == {"excludes_1": False}
    assert study.stated_multiplier_interval(bound | {"flag": "<", "multiplier": 1.0, "gap": (0.01, 0.02)}) == {
        "excludes_1": True}
    assert study.stated_multiplier_interval(bound | {"flag": "<", "multiplier": 2.0, "gap": (0.01, 0.02)}) == {
        "excludes_1": False}  # less than 2 is not less than 1
    assert study.stated_multiplier_interval({"seeds": [1, 2, 3], "flag": ">", "multiplier": 1.0}) == {}  # no seed shared


def test_an_arm_past_the_frontier_is_a_bound_with_no_interval_and_its_paired_gap_decides(tmp_path):
    """The report on hand-made results: an arm whose loss lies below the frontier's last point gets '>' and the bound
    (no bootstrap: its resamples would pile up at the bound), and 1 is excluded only where the paired gap to that point
    is clear of 0 at 95% (t, 2 degrees of freedom: 4.303)."""
    p = study.load(["plans/multiplier.py", "--quick", f"--out={tmp_path}", "--arms=['euclid+smear', 'free-prev-tangent']",
                    "--arm_schedule={}", "--cost_ratios=[1.25, 0.9]"])

    def arm(losses):
        return {"grid": {0.01: 9.0}, "best_lr": 0.01, "interior": True,
                "runs": {sd: {"test": y} for sd, y in enumerate(losses, 1)}}

    base = {"pycode 1x16 2": {"euclid+smear": arm([1.8, 1.81, 1.79])}}
    for free, excluded in (([1.5, 1.52, 1.49], True), ([1.79, 1.82, 1.785], False)):
        results = {"pycode 1x16 1": {"euclid+smear": arm([2.0, 2.02, 1.98]), "free-prev-tangent": arm(free)}} | base
        row = next(r for r in study.report_multiplier(p, results, str(tmp_path)) if r["arm"] == "free-prev-tangent")
        gaps = [y - b for y, b in zip(free, [1.8, 1.81, 1.79])]
        mean, sd = sum(gaps) / 3, math.sqrt(sum((g - sum(gaps) / 3) ** 2 for g in gaps) / 2)
        assert row["flag"] == ">" and row["multiplier"] == pytest.approx(2.0)  # the last point's 16 steps over 8
        assert row["gap"] == pytest.approx((mean - 4.303 * sd / math.sqrt(3), mean + 4.303 * sd / math.sqrt(3)))
        assert not {"percentile", "log_t", "coverage", "interval"} & set(row) and row["excludes_1"] is excluded
        md = (tmp_path / "multiplier.md").read_text()
        assert "| >2.00 | – | – | – |" in md
        assert f"{'yes' if excluded else 'no'} (paired gap [{row['gap'][0]:+.4f}, {row['gap'][1]:+.4f}]) |" in md


@pytest.mark.slow
def test_quick_graft_fine_tunes_every_arm_from_the_exported_model(char_data, tmp_path, capsys):
    import shutil
    out = tmp_path / "graft"
    argv = ["plans/graft.py", "--quick", f"--out={out}", "--seeds=[1337]", "--extra", f"--data_dir={char_data}",
            "--batch_size=4", "--block_size=16", "--eval_iters=2", "--log_interval=5"]
    rows = study.main(argv)
    saved = json.loads((out / "graft.json").read_text())
    assert [r["arm"] for r in rows] == ["euclid", "graft", "share"]
    # every arm starts as the exported model, the graft included: under the pretrain's seed (which fixes the
    # evaluation batches) every arm's first evaluation is the pretrain's last
    runs = saved["runs"]
    for arm in ("euclid", "graft", "share"):
        assert runs[arm][0]["evals"][0][2] == pytest.approx(saved["pretrain"]["evals"][-1][2], rel=1e-5)
    by_arm = {r["arm"]: r for r in rows}
    assert len(by_arm["graft"]["kappa"]) == 4 and len(by_arm["graft"]["share"][0]) == 4  # 4 blocks × 4 heads
    assert by_arm["share"]["kappa"] == {0: [0.0] * 4, 1: [0.0] * 4, 2: [0.0] * 4, 3: [0.0] * 4}
    assert "| graft |" in (out / "graft.md").read_text() and (out / "graft.png").stat().st_size > 10_000
    capsys.readouterr()
    study.main(argv)  # a rerun reuses every finished run
    assert "===" not in capsys.readouterr().out
    # a fresh clone has the summaries, not the weights: nothing is retrained until a fine-tune needs the export
    shutil.rmtree(out / "pretrain" / "hf")
    (out / "pretrain" / "ckpt.pt").unlink()
    study.main(argv)
    assert "===" not in capsys.readouterr().out
    (out / "share" / "s1337" / "summary.json").unlink()
    study.main(argv)
    assert capsys.readouterr().out.count("===") == 2  # the pretrain again (for its weights), then that fine-tune
    # another pretrain: it is trained, exported again, and no fine-tune of the old one is reused
    study.main([*argv[:3], "--pretrain_iters=24", *argv[3:]])
    printed = capsys.readouterr().out
    assert printed.count("===") == 1 + 3 and "pretrain (euclid)" in printed
    with open(out / "pretrain" / "hf" / "kappagpt_source.json") as f:
        assert "--max_iters=24" in json.load(f)["pretrain"]
    assert "24 iterations" in (out / "graft.md").read_text()


# ----------------------------------------------------------------------------- the committed tables, rebuilt


def entries(text):
    """{key: numbers} of a table's rows and bullet lines: a row's key is its cells that name (a word, a size such as
    4x128, a length such as 4×), or where none does, the line above its table and its first cell; its numbers are
    those of every other cell, in order. A bullet's key is the text before its colon."""
    out, above = {}, ""
    for line in text.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            key = tuple(c for c in cells if re.match(r"^([A-Za-z]|\d+x\d+$|\d+×$)", c)) or (above, cells[0])
            numbers = [n for c in cells[0 if key[0] != above else 1:] if c not in key for n in NUM.findall(c)]
        elif line.startswith("- ") and ":" in line:
            head, _, rest = line[2:].partition(":")
            key, numbers = (head.replace("×", ""),), NUM.findall(rest)
        else:
            above = above if line.startswith("|") or not line.strip() else line.strip()
            continue
        if numbers:
            out[key] = [float(n.replace(",", "")) for n in numbers]
    return out


def test_entries_reads_rows_and_bullets():
    got = entries("| 2x64 | 1× | 600 | euclid | 0.01* | +0.5 ± 0.1 (t +2.5) |\n|---|\n- 2x64 1× free: 0.01 → 1.5\n"
                  "κ per block\n\n| block | head 0 |\n|---|---|\n| 0 | +0.25 |\n")
    assert got == {("2x64", "1×", "euclid"): [600, 0.01, 0.5, 0.1, 2.5], ("2x64 1 free",): [0.01, 1.5],
                   ("κ per block", "0"): [0.25]}


@pytest.mark.parametrize("name, table", [("ladder", "ladder.md"), ("end", "study.md"), ("graft", "graft.md")])
def test_each_committed_table_is_rebuilt_from_its_committed_runs(name, table, tmp_path):
    """Every number of the committed table comes back, in order, in the same row of the table the plan rebuilds
    from the committed summaries and timings (a rebuilt row may add numbers: intervals, epochs)."""
    r = subprocess.run([sys.executable, "study.py", f"plans/{name}.py", f"--rebuild={tmp_path}"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    folder = {"end": "study"}.get(name, name)
    old = entries(open(os.path.join(ROOT, "results", folder, table)).read())
    new = entries((tmp_path / table).read_text())
    assert len(old) > 5
    for key, numbers in old.items():
        rebuilt = iter(new.get(key, []))
        assert all(any(x == y for y in rebuilt) for x in numbers), (key, numbers, new.get(key))


def test_the_dry_run_counts_finished_runs_and_estimates_the_rest(tmp_path, capsys):
    hours = study.main(["plans/yardstick.py", f"--out={tmp_path}", "--dry_run"])
    printed = capsys.readouterr().out
    assert "pycode 2x64 16" in printed and "ngpt-adamw" in printed and hours > 0
    # a finished run's wall-clock replaces the guess; here every run is left: 3 arms × (3 start rates + 2 + 3 seeds)
    assert printed.count("0 done") == 7


def test_the_dry_run_times_a_run_by_its_sizes_finished_runs_and_guesses_where_the_bracket_seeds_go(tmp_path, capsys):
    """A run's seconds: its steps at the median ms/iter of finished runs of its size at the plan's thread count, plus
    their median seconds besides the steps (start-up and evaluations: every run evaluates as often, whatever its
    length); the multiplier's bracket seeds are counted at the frontier points at and next above the longest length."""
    for name, threads, ms, iters, wall in (("a", 1, 10.0, 600, 100.0), ("b", 1, 20.0, 1200, 130.0),
                                           ("c", 2, 1000.0, 600, 5000.0)):  # c: another thread count, not read
        (tmp_path / "pycode" / "2x64-x1" / name).mkdir(parents=True)
        H.write_json(str(tmp_path / "pycode" / "2x64-x1" / name / "summary.json"),
                     {"options": [f"--threads={threads}"], "ms_per_iter": ms, "evals": [[iters, wall, 1.5]]})
    p = study.load(["plans/multiplier.py", f"--out={tmp_path}"])
    cell = next(c for c in study.cells(p) if c["size"] == "2x64" and c["mult"] == 4)
    # steps: 2400 × median(10, 20) ms; besides: median(100 − 600·0.010, 130 − 1200·0.020) = median(94, 106)
    assert study.run_seconds(p, cell) == pytest.approx(2400 * 0.015 + 100)
    study.main(["plans/multiplier.py", f"--out={tmp_path}", "--dry_run"])
    guessed = [line.split()[1:3] for line in capsys.readouterr().out.splitlines() if "a guess" in line]
    assert guessed == [["2x64", "16"], ["2x64", "32"], ["4x128", "16"]]  # 4x128's frontier ends at 16


def test_where_no_run_of_a_size_exists_the_dry_run_estimates_at_the_plans_flop_rate(tmp_path, capsys):
    slow = study.main(["plans/multiplier_fineweb.py", f"--out={tmp_path}", "--dry_run"])
    fast = study.main(["plans/multiplier_fineweb.py", f"--out={tmp_path}", "--dry_run", "--flop_rate=8e14"])
    assert slow / 2 < fast < slow  # the steps' share halves; each run's start-up and evaluation stay
    assert "fineweb 12x768 32" in capsys.readouterr().out


def test_the_harness_is_shorter_than_the_four_scripts_it_replaced():
    """harness.py, study.py and the four plans that replaced sweep.py, ladder.py, study.py and graft.py (1,378 lines
    when the harness was asked for), less what was added since for the multiplier (its analysis, `execute`, which runs
    units side by side, `shape`, an arm's own schedule, `check_runs`, their checks, and `process_ratios`, timings over
    several processes: new work, not a replacement), each with the two blank lines before it."""
    import ast
    source = open(os.path.join(ROOT, "study.py")).read()
    added = sum(n.end_lineno - n.lineno + 3 for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)
                and (n.name in ("bracket", "multiplier_cells", "execute", "shape", "check_runs", "process_ratios")
                     or "multiplier" in n.name))
    files = ["harness.py", "study.py", *[os.path.join("plans", f"{n}.py") for n in ("sweep", "ladder", "end", "graft")]]
    assert sum(len(open(os.path.join(ROOT, f)).read().splitlines()) for f in files) - added < 1378
