"""graft.py: its table's arithmetic by hand, and the quick mode end to end (pretrain, export, fine-tune from the
export): every arm starts from the exported model's loss, and a rerun trains nothing again."""
import json
import shutil
import statistics

import pytest

import graft


def fake_run(start, end, kappa=None):
    return {"evals": [(0, 0.0, start), (10, 1.0, end)], "ms_per_iter": 5.0, "kappa": kappa or {}}


def test_summary_pairs_by_seed_and_averages_kappa_per_head_by_hand():
    results = {"euclid": [fake_run(2.0, 1.50), fake_run(2.0, 1.60)],
               "graft": [fake_run(2.0, 1.45, {"curvature/block0/head0": 0.1, "curvature/block0/head1": -0.3,
                                              "share/block0/head0": 0.5, "share/block0/head1": 0.0}),
                         fake_run(2.0, 1.52, {"curvature/block0/head0": 0.3, "curvature/block0/head1": -0.1,
                                              "share/block0/head0": 0.1, "share/block0/head1": 0.2})]}
    rows = {r["arm"]: r for r in graft.summarize(results, [1337, 1])}
    assert rows["graft"]["delta"][0] == pytest.approx(statistics.mean([-0.05, -0.08]))
    assert rows["graft"]["delta"][1] == pytest.approx(statistics.stdev([-0.05, -0.08]))
    assert rows["euclid"]["delta"] == (0.0, 0.0)
    assert rows["graft"]["kappa"] == {0: [pytest.approx(0.2), pytest.approx(-0.2)]}
    assert rows["graft"]["share"] == {0: [pytest.approx(0.3), pytest.approx(0.1)]}
    assert rows["euclid"]["kappa"] == {} and rows["graft"]["start"] == (2.0, 0.0)


@pytest.mark.slow
def test_quick_graft_fine_tunes_every_arm_from_the_exported_model(char_data, tmp_path, capsys):
    out = tmp_path / "graft"
    args = ["--quick", "--out", str(out), "--extra", f"--data_dir={char_data}", "--batch_size=4", "--block_size=16"]
    rows = graft.main(args)
    saved = json.loads((out / "graft.json").read_text())
    assert [r["arm"] for r in rows] == ["euclid", "graft", "share"]
    # every arm starts as the exported model, the graft included: within a seed (which fixes the evaluation
    # batches) every arm's first evaluation is the same, and under the pretrain's seed it is the pretrain's last
    runs = saved["runs"]
    for i, seed in enumerate([1337, 1]):
        start = runs["euclid"][i]["evals"][0][2]
        assert all(runs[arm][i]["evals"][0][2] == pytest.approx(start, rel=1e-5) for arm in ("graft", "share"))
        if seed == 1337:
            assert start == pytest.approx(saved["pretrain"]["evals"][-1][2], rel=1e-5)
    by_arm = {r["arm"]: r for r in rows}
    assert len(by_arm["graft"]["kappa"]) == 4 and len(by_arm["graft"]["share"][0]) == 4  # 4 blocks × 4 heads
    assert by_arm["share"]["kappa"] == {0: [0.0] * 4, 1: [0.0] * 4, 2: [0.0] * 4, 3: [0.0] * 4}
    assert "| graft |" in (out / "graft.md").read_text() and (out / "graft.png").stat().st_size > 10_000
    assert (out / "pretrain" / "hf" / "model.safetensors").exists()
    capsys.readouterr()
    graft.main(args)  # a rerun reuses every finished run
    assert "===" not in capsys.readouterr().out
    # a fresh clone has the summaries, not the weights: nothing is retrained until a fine-tune needs the export
    shutil.rmtree(out / "pretrain" / "hf")
    (out / "pretrain" / "ckpt.pt").unlink()
    graft.main(args)
    assert "===" not in capsys.readouterr().out
    (out / "share" / "s1" / "summary.json").unlink()
    graft.main(args)
    assert capsys.readouterr().out.count("===") == 2  # the pretrain again (for its weights), then that fine-tune
    assert (out / "pretrain" / "hf" / "model.safetensors").exists()
    # another pretrain: it is trained, exported again, and no fine-tune of the old one is reused
    longer = args[:1] + ["--pretrain_iters", "24"] + args[1:]
    graft.main(longer)
    printed = capsys.readouterr().out
    assert printed.count("===") == 1 + 6 and "pretrain (euclid)" in printed
    with open(out / "pretrain" / "hf" / "kappagpt_source.json") as f:
        assert "--max_iters=24" in json.load(f)["pretrain"]
    assert "24 iterations" in (out / "graft.md").read_text()
