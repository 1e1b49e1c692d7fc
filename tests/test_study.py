"""study.py: its arithmetic by hand (the grid a longer run starts from, the paired statistics, the table's rows), and
its quick mode end to end on both corpora: every arm tuned, the longer length starting from the shorter one's best,
each result on the whole validation split, resumable."""
import json
import math
import os
import re
import subprocess
import sys

import pytest

import study
import sweep
from conftest import ROOT


def fake(final, evals=None, kappa=None):
    return {"evals": evals or [(0, 0.0, 4.0), (10, 1.0, 3.0), (20, 2.0, final + 0.01)], "final": final,
            "kappa": kappa or {}, "ms_per_iter": 1.0}


def test_a_longer_run_starts_from_the_root_two_grid_around_the_shorter_ones_best():
    assert study.start_grid(None, [3e-2, 3e-3, 1e-2]) == [3e-3, 1e-2, 3e-2]
    assert study.start_grid(1e-2, [3e-3]) == [0.00707, 1e-2, 0.0141]  # 0.01/√2 and 0.01·√2, three digits


def test_paired_statistics_by_hand():
    mean, std, t, half = study.paired([-0.03, -0.01])
    assert mean == pytest.approx(-0.02) and std == pytest.approx(math.sqrt(2) * 0.01)
    assert t == pytest.approx(-0.02 / (math.sqrt(2) * 0.01 / math.sqrt(2)))  # −2.0
    assert half == pytest.approx(12.706 * 0.01)  # t(0.975, 1) · std/√2, std/√2 = 0.01
    assert study.paired([-0.01, -0.01])[2] == -math.inf
    # n = 3: std 0.01 (−0.03, −0.02, −0.01), t(0.975, 2) = 4.303
    assert study.paired([-0.03, -0.02, -0.01])[3] == pytest.approx(4.303 * 0.01 / math.sqrt(3))


def test_the_t_table_is_students_quantile():
    mpmath = pytest.importorskip("mpmath")
    for df, q in enumerate(study.T975, start=1):
        # Student's t CDF at q, by numerical integration of its density
        pdf = lambda x, n=df: mpmath.gamma((n + 1) / 2) / (mpmath.sqrt(n * mpmath.pi) * mpmath.gamma(n / 2)) * (  # noqa
            1 + x * x / n) ** (-(n + 1) / 2)
        cdf = 0.5 + mpmath.quad(pdf, [0, q])
        assert abs(cdf - 0.975) < 2e-5, (df, q, cdf)  # the table's three decimals


def test_summary_rows_by_hand():
    block = ("pycode", "2x64", 4)
    kappa = {"curvature/block0/head0": 0.1, "curvature/block0/head1": -0.2, "curvature/block1/head0": 0.3,
             "curvature/block1/head1": 0.4}
    results = {block: {
        "euclid+smear": {"best_lr": 0.01, "interior": True, "runs": {1: fake(1.50), 2: fake(1.60)}},
        "free-prev-tangent": {"best_lr": 0.005, "interior": False,
                              "runs": {1: fake(1.45, kappa=kappa), 2: fake(1.56, kappa=kappa)}},
        "ngpt": {"best_lr": 0.02, "interior": True, "runs": {1: fake(1.52), 2: fake(1.58)}}}}
    ratios = {("pycode", "2x64"): {"euclid+smear": 8.0, "curved": 10.0, "ngpt": 8.0}}
    rows = {r["arm"]: r for r in study.summarize([block], results, ratios, [1, 2])}
    free = rows["free-prev-tangent"]
    assert free["steps"][0] == pytest.approx(-0.045) and free["steps"][1] == pytest.approx(
        math.sqrt(2) * 0.005)  # −0.05 and −0.04
    assert free["ratio"] == pytest.approx(1.25) and rows["ngpt"]["ratio"] == pytest.approx(1.0)
    assert free["positive_heads"] == [[1, 2], [1, 2]]
    assert free["loss"][0] == pytest.approx(1.505) and not free["interior"]
    # equal compiled cost at ratio 1.25: the arm at 16 of its 20 steps, off its curve (3.0 at 10, final + 0.01 at 20)
    # anchored at its final (so: the curve's value − 0.01), the baseline at its 20 steps (its final)
    at16 = [3.0 + (1.46 - 3.0) * 0.6 - 0.01, 3.0 + (1.57 - 3.0) * 0.6 - 0.01]
    assert free["compiled"][0] == pytest.approx(sum(a - b for a, b in zip(at16, [1.50, 1.60])) / 2)
    assert rows["ngpt"]["compiled"][0] == pytest.approx(rows["ngpt"]["steps"][0])  # ratio 1: the steps view
    assert "steps" not in rows["euclid+smear"]


def test_bad_blocks_and_arms_are_one_line_errors(tmp_path):
    for argv, msg in ((["--blocks", "pycode:2x64"], "a block is CORPUS:SIZE:MULT"),
                      (["--blocks", "fineweb:2x64:1"], "a block is CORPUS:SIZE:MULT"),
                      (["--blocks", "pycode:2x48:1"], "not a multiple"),
                      (["--arms", "ngpt"], "including euclid+smear"),
                      (["--blocks", "pycode:2x64:16:free-prev-tangent"], "including euclid+smear"),
                      (["--blocks", "pycode:2x64:16:euclid+smear,curly"], "choose from"),
                      (["--data_dirs", "nowhere"], "CORPUS=DIR"),
                      (["--extra", "--eval_iters=2", "--blocks", "pycode:2x64:1"], "put --extra last"),
                      (["--tune_seed", "1", "--seeds", "1", "2"], "the tuning seed 1 is among the reported")):
        with pytest.raises(SystemExit, match=re.escape(msg)):
            study.main(argv + ["--out", str(tmp_path / "never")])
        assert not (tmp_path / "never").exists()


def test_a_block_may_name_its_own_arms():
    args = study.parse(["--blocks", "pycode:2x64:1", "pycode:2x64:16:euclid+smear,free-prev-tangent"])
    assert args.blocks == [("pycode", "2x64", 1), ("pycode", "2x64", 16)]
    assert args.block_arms == {("pycode", "2x64", 1): study.ARMS,
                               ("pycode", "2x64", 16): ["euclid+smear", "free-prev-tangent"]}
    default = study.parse([]).block_arms  # the default blocks leave out only what SKIP names, with --arms' order
    assert default[("pycode", "2x64", 16)] == ["euclid+smear", "ngpt", "free-prev-tangent"]
    assert default[("shakespeare_char", "4x128", 4)] == ["euclid+smear", "ngpt", "free-prev-tangent"]
    assert default[("pycode", "2x64", 4)] == study.ARMS
    assert study.parse(["--arms", *study.ARMS, "hyp-prev-tangent"]).block_arms[("pycode", "2x64", 16)][-1] == \
        "hyp-prev-tangent"


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
def test_quick_study_tunes_every_arm_per_block_and_resumes(char_data, pycode_data, tmp_path, capsys):
    out = tmp_path / "study"
    args = ["--quick", "--out", str(out), "--lrs", "1e-2", "3e-2", "--max_extend", "0", "--cost_ratios", "1.25", "0.9",
            "--arms", *study.ARMS, "ngpt-adamw",
            "--data_dirs", f"shakespeare_char={char_data}", f"pycode={pycode_data}",
            "--extra", "--eval_iters=2", "--batch_size=4", "--block_size=16", "--log_interval=2"]
    rows = study.main(args)
    saved = json.loads((out / "study.json").read_text())
    blocks = {(r["corpus"], r["size"], r["mult"]) for r in rows}
    assert blocks == set(study.QUICK_BLOCKS)
    assert {r["arm"] for r in rows} == set(study.ARMS) | {"ngpt-adamw"}
    for r in rows:
        grid = {float(lr): v for lr, v in saved["grids"][f"{r['corpus']} {r['size']} {r['mult']} {r['arm']}"].items()}
        assert r["best_lr"] == sweep.best_rate(grid)[0]
        runs = saved["runs"][f"{r['corpus']} {r['size']} {r['mult']}"]
        assert set(runs[r["arm"]]) == {"1", "2"}  # the reported seeds; the tuning seed 1337 only in the grid
        assert all(s["final"] is not None for s in runs[r["arm"]].values())  # the whole validation split
        # reported: on pycode's test split (its prepare writes one), on Shakespeare's val
        key = "test" if r["corpus"] == "pycode" else "final"
        assert all((s["test"] is not None) == (r["corpus"] == "pycode") for s in runs[r["arm"]].values())
        if r["arm"] != "euclid+smear":
            diffs = [runs[r["arm"]][sd][key] - runs["euclid+smear"][sd][key] for sd in ("1", "2")]
            assert r["steps"][0] == pytest.approx(sum(diffs) / 2)
        if r["mult"] == 2:  # the 2× block started from the √2 grid around the 1× best of the same arm
            first = next(x for x in rows if (x["corpus"], x["size"], x["mult"], x["arm"]) ==
                         ("shakespeare_char", "1x16", 1, r["arm"]))
            assert set(study.start_grid(first["best_lr"], [])) <= set(grid)
    ngpt = next(r for r in rows if r["arm"] == "ngpt")
    assert ngpt["ratio"] == pytest.approx(0.9)
    text = (out / "study.md").read_text()
    assert "| pycode | 1x16 | 1× |" in text and "the tuning seed 1337 is not among them" in text
    assert "pycode: the whole test split" in text and "shakespeare_char: the whole val split" in text
    assert "- ngpt-adamw: AdamW β (0.9, 0.95), wd 0, warmup 0%, cosine to 0·lr, clip 1" in text
    assert "- euclid+smear: Muon (matrices) + AdamW β (0.9, 0.95), wd 0, warmup 10%, cosine to 0.1·lr, clip none" in text
    assert (out / "study.png").stat().st_size > 10_000
    capsys.readouterr()
    study.main(args)  # a rerun trains nothing again
    assert "===" not in capsys.readouterr().out
