"""analyze.py: Gromov δ against known cases and a brute-force loop, anisotropy measures, and the whole report on
real (tiny) curved and Euclidean runs."""
import itertools
import json
import math

import numpy as np
import pytest
import torch

import analyze
import train
from conftest import tiny_args


def cycle_metric(n):
    """The path metric of the n-cycle graph with unit edges."""
    i = np.arange(n)
    d = np.abs(i[:, None] - i[None, :])
    return np.minimum(d, n - d).astype(float)


def tree_metric(n, seed=0):
    """Path distances of a random tree with positive edge lengths: 0-hyperbolic."""
    rng = np.random.default_rng(seed)
    parent = [None] + [int(rng.integers(0, i)) for i in range(1, n)]
    length = [0.0] + list(rng.uniform(0.1, 2.0, n - 1))
    depth_path = []
    for v in range(n):  # each vertex's path to the root, with the distance from v along it
        path, dist, u = {}, 0.0, v
        while u is not None:
            path[u] = dist
            dist += length[u]
            u = parent[u]
        depth_path.append(path)
    d = np.zeros((n, n))
    for a, b in itertools.combinations(range(n), 2):
        common = min((u for u in depth_path[a] if u in depth_path[b]), key=lambda u: depth_path[a][u])
        d[a, b] = d[b, a] = depth_path[a][common] + depth_path[b][common]
    return d


def brute_force_delta(d, base=0):
    """max over x, y, z of min((x|z)_w, (z|y)_w) − (x|y)_w, by loops."""
    n = len(d)
    gp = lambda x, y: 0.5 * (d[x][base] + d[y][base] - d[x][y])  # noqa: E731
    return max(min(gp(x, z), gp(z, y)) - gp(x, y) for x in range(n) for y in range(n) for z in range(n))


def test_a_tree_metric_has_delta_zero():
    delta, rel = analyze.gromov_delta(tree_metric(40))
    assert abs(delta) < 1e-9 and abs(rel) < 1e-9


@pytest.mark.parametrize("n", [4, 8, 12, 16])
def test_a_cycle_has_delta_n_over_4(n):
    """C_n with n = 4m: the quadruple of quarter points has pair sums 2m, 2m, 4m, so δ = m and diam = 2m."""
    delta, rel = analyze.gromov_delta(cycle_metric(n))
    assert delta == pytest.approx(n / 4) and rel == pytest.approx(1.0)


def test_the_unit_square_in_the_plane():
    corners = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=float)
    d = np.linalg.norm(corners[:, None] - corners[None], axis=-1)
    delta, rel = analyze.gromov_delta(d)
    assert delta == pytest.approx(math.sqrt(2) - 1) and rel == pytest.approx(2 * (math.sqrt(2) - 1) / math.sqrt(2))


@pytest.mark.parametrize("seed", range(4))
def test_matches_a_brute_force_loop_numpy_and_torch(seed):
    x = np.random.default_rng(seed).normal(size=(13, 3))
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    want = brute_force_delta(d.tolist(), base=seed % 3)
    assert analyze.gromov_delta(d, base=seed % 3, chunk=5)[0] == pytest.approx(want, abs=1e-12)
    assert analyze.gromov_delta(torch.tensor(d), base=seed % 3)[0] == pytest.approx(want, abs=1e-12)


def test_bad_distance_matrix():
    with pytest.raises(ValueError, match="square distance matrix"):
        analyze.gromov_delta(np.zeros((3, 4)))


def test_anisotropy_of_isotropic_and_of_one_direction_data():
    gen = torch.Generator().manual_seed(0)
    iso = analyze.anisotropy(torch.randn(2000, 16, generator=gen))
    assert abs(iso["mean_cos"]) < 0.01 and iso["top_pc_share"] < 0.1 and iso["effective_rank"] > 15
    direction = torch.randn(16, generator=gen)
    line = torch.randn(2000, 1, generator=gen) * direction + 0.01 * torch.randn(2000, 16, generator=gen) + 5 * direction
    one = analyze.anisotropy(line)
    assert one["mean_cos"] > 0.9 and one["top_pc_share"] > 0.99 and one["effective_rank"] < 1.1


@pytest.fixture(scope="module")
def two_runs(char_data, tmp_path_factory):
    d = tmp_path_factory.mktemp("analyze")
    train.main(tiny_args(char_data, d / "curved", max_iters=10, curvature="hyperbolic", curvature_init=-0.05))
    train.main(tiny_args(char_data, d / "euclid", max_iters=10, curvature="euclidean"))
    return d


def test_report_on_curved_and_euclidean_runs(two_runs, char_data, tmp_path, capsys):
    out = tmp_path / "report"
    runs = analyze.main([str(two_runs / "curved"), str(two_runs / "euclid"), "--out", str(out), "--points", "40",
                         "--resamples", "2", "--batch_size", "2"])
    curved, euclid = runs
    assert len(curved["blocks"]) == len(euclid["blocks"]) == 2
    ckpt_kappas = torch.load(two_runs / "curved" / "ckpt.pt", weights_only=True)
    for i, block in enumerate(curved["blocks"]):
        raw = ckpt_kappas["model"][f"curvature.{i}.raw"].view(-1)
        assert block["kappa"] == pytest.approx((-torch.nn.functional.softplus(raw)).tolist(), rel=1e-6)
        assert 0 < block["radius"] < 1 and block["clamped"] == 0.0
        assert len(block["delta_tangent"]) == len(block["delta_points"]) == len(block["delta_control"]) == 2
        for e in block["delta_tangent"] + block["delta_points"] + block["delta_control"]:
            assert 0 <= e["mean"] <= 2 and e["n"] == 40 and e["resamples"] == 2
    for block in euclid["blocks"]:
        assert "kappa" not in block and block["delta_points"] == block["delta_control"] == []
        assert len(block["delta_tangent"]) == 2
        assert -1 <= block["anisotropy"]["mean_cos"] <= 1 and 1 <= block["anisotropy"]["effective_rank"] <= 32
    saved = json.loads((tmp_path / "report.json").read_text())
    assert [r["curvature"] for r in saved["runs"]] == ["hyperbolic", "euclidean"]
    assert 0.2 < saved["gaussian_reference"]["mean"] < 0.7 and saved["gaussian_reference"]["n"] == 40
    assert (tmp_path / "report.png").stat().st_size > 10_000
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| curved") or
             line.startswith("| euclid")]
    assert len(table) == 4 and all("±" in line for line in table)


def test_the_same_seed_gives_the_same_numbers(two_runs, tmp_path):
    args = [str(two_runs / "curved"), "--points", "30", "--resamples", "2", "--batch_size", "2"]
    a = analyze.main(args + ["--out", str(tmp_path / "a")])
    b = analyze.main(args + ["--out", str(tmp_path / "b")])
    assert a == b


def test_missing_and_foreign_checkpoints_are_one_line(tmp_path):
    with pytest.raises(SystemExit) as e:
        analyze.main([str(tmp_path / "nothing")])
    assert str(e.value) == (f"error: no checkpoint at {tmp_path / 'nothing' / 'ckpt.pt'}: is {tmp_path / 'nothing'} "
                            f"the out_dir of a training run?")
    (tmp_path / "foreign").mkdir()
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign" / "ckpt.pt")
    with pytest.raises(SystemExit, match="is not a kappaGPT checkpoint"):
        analyze.main([str(tmp_path / "foreign")])


def test_split_by_file_by_hand():
    import math

    import analyze
    # two files of 1 and 3 tokens with mean losses 1 and 3: L = (1·1 + 3·3) / 4 = 2.5; the SE's sum:
    # 1²·(1 − 2.5)² + 3²·(3 − 2.5)² = 2.25 + 2.25 = 4.5; SE² = 2/1 · 4.5 / 16
    r = analyze.split_by_file({0: 1, 1: 3}, {0: 1.0, 1: 9.0})
    assert r["loss"] == pytest.approx(2.5) and r["se"] == pytest.approx(math.sqrt(2 * 4.5 / 16))
    assert (r["files"], r["tokens"]) == (2, 4)


def test_by_file_matches_train_pys_whole_split_loss(tmp_path):
    """The files' losses add up to the loss train.py's eval_full reports for each split."""
    import subprocess
    import sys

    import analyze
    import train
    from conftest import ROOT, tiny_args
    src = tmp_path / "src"
    for i in range(40):
        (src / f"pkg{i % 2}" / "sub").mkdir(parents=True, exist_ok=True)
        (src / f"pkg{i % 2}" / "sub" / f"m{i}.py").write_text("".join(f"def f{j}(x):\n    return x * {i * j}\n"
                                                                      for j in range(3 + i % 5)))
    data = tmp_path / "data"
    r = subprocess.run([sys.executable, f"{ROOT}/data/pycode/prepare.py", "--input", str(src), "--out_dir", str(data)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    summary = train.main(tiny_args(data, tmp_path / "run", curvature="euclidean", max_iters=4, eval_interval=4,
                                   eval_full=True, dropout=0.0, block_size=16))
    found = analyze.by_file(str(tmp_path / "run"))
    assert set(found) == {"val", "test"} and all(f["files"] >= 2 for f in found.values())
    assert found["val"]["loss"] == pytest.approx(summary["val_full"], rel=1e-5)
    assert found["test"]["loss"] == pytest.approx(summary["test_full"], rel=1e-5)
    assert all(0 < f["se"] < 1 for f in found.values())
