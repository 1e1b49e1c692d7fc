"""Nothing stale, nothing silently wrong: what a resumed experiment reuses (harness.finished's rule, the compiled
timings), the tuner's grids by hand, one equal-time rule, and what export refuses."""
import dataclasses
import json
import math
import os

import pytest
import torch

import harness as H
import pretrained
from conftest import ROOT, fake_bench_run
from model import GPT, GPTConfig
from runtime import RunError

TINY = ["--n_layer=1", "--n_embd=16", "--n_head=2", "--block_size=16", "--batch_size=4", "--eval_iters=2",
        "--log_interval=2", "--max_iters=4", "--eval_interval=2", "--curvature=euclidean"]


# ----------------------------------------------------------------------------- harness.finished: the reuse rule


@pytest.fixture
def config_pair(tmp_path):
    """A config file that builds on a sibling, as config/*_euclid.py do."""
    (tmp_path / "base_cfg.py").write_text("learning_rate = 3e-3\n")
    (tmp_path / "child_cfg.py").write_text(
        "import os\nexec(open(os.path.join(os.path.dirname(__file__), 'base_cfg.py')).read())\nwarmup_iters = 1\n")
    return tmp_path / "child_cfg.py", tmp_path / "base_cfg.py"


def test_config_files_follow_the_siblings_a_config_names(config_pair):
    child, base = config_pair
    assert H.config_files([str(child), "--seed=1"]) == [str(child), str(base)]
    modern = H.config_files(["config/train_shakespeare_char_modern_euclid.py"])
    assert [os.path.basename(p) for p in modern] == ["train_shakespeare_char_modern_euclid.py",
                                                     "train_shakespeare_char_modern.py",
                                                     "train_shakespeare_char_cpu.py"]


def test_a_run_whose_config_file_changed_is_trained_again_and_a_code_change_stops(char_data, config_pair, tmp_path,
                                                                                   capsys):
    child, base = config_pair
    options = [str(child), *TINY, f"--data_dir={char_data}"]
    out = str(tmp_path / "run")
    first = H.train_run(out, options, "first")
    assert first["fingerprint"]["config"] and first["fingerprint"]["data"]
    capsys.readouterr()
    assert H.train_run(out, options, "again") == first  # nothing changed: reused
    assert "===" not in capsys.readouterr().out
    base.write_text("learning_rate = 1e-3\n")  # the sibling, not the file the command line names
    again = H.train_run(out, options, "after the edit")
    printed = capsys.readouterr().out
    assert "base_cfg.py" in printed and "=== after the edit" in printed
    assert again["evals"][-1][2] != first["evals"][-1][2]  # another rate, another run
    # the code a run executed, changed: stop with one line, unless told what to do
    with open(os.path.join(out, "summary.json")) as f:
        saved = json.load(f)
    saved["fingerprint"]["code"]["model.py"] = "0" * 16
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(saved, f)
    with pytest.raises(SystemExit, match=r"trained by other code \(model.py\).*--on_code_change"):
        H.finished(out, options)
    assert H.finished(out, options, on_code_change="reuse")["evals"] == saved["evals"]
    assert H.finished(out, options, on_code_change="retrain") is None


def test_a_config_edit_that_leaves_the_runs_options_alone_reuses_and_a_moved_default_trains_again(
        char_data, config_pair, tmp_path, monkeypatch):
    import train
    child, base = config_pair
    options = [str(child), *TINY, f"--data_dir={char_data}"]  # TINY: curvature='euclidean', κ₀ never read
    out = str(tmp_path / "run")
    first = H.train_run(out, options, "first")
    assert first["fingerprint"]["resolved"]
    base.write_text("learning_rate = 3e-3\ncurvature_init = -0.3\nwandb_run_name = 'renamed'\n")
    assert H.finished(out, options) == first  # the file changed, the options this run resolves to did not
    # a summary recorded before resolved options were falls back to the file contents: trained again
    with open(os.path.join(out, "summary.json")) as f:
        saved = json.load(f)
    del saved["fingerprint"]["resolved"]
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(saved, f)
    assert H.finished(out, options) is None
    saved["fingerprint"]["resolved"] = first["fingerprint"]["resolved"]
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(saved, f)
    assert H.finished(out, options) is not None
    # a default the run relies on moved (train.py changed): trained again, whatever the code-change policy
    monkeypatch.setitem(train.DEFAULTS, "weight_decay", train.DEFAULTS["weight_decay"] / 2)
    assert H.finished(out, options, on_code_change="reuse") is None
    # κ₀ is an option of a model that learns κ
    monkeypatch.undo()
    curved = [str(child), *TINY, "--curvature=free", f"--data_dir={char_data}"]
    assert H.resolved(curved) != H.resolved([*curved, "--curvature_init=0.1"])
    assert H.resolved(options) == H.resolved([*options, "--curvature_init=0.1", "--out_dir=elsewhere"])


def test_changed_data_is_trained_again_and_a_summary_without_fingerprint_is_not_trusted(char_data, tmp_path,
                                                                                         capsys):
    data = tmp_path / "data"
    data.mkdir()
    for f in ("train.bin", "val.bin", "meta.pkl"):
        (data / f).write_bytes((char_data / f).read_bytes())
    options = [*TINY, f"--data_dir={data}"]
    out = str(tmp_path / "run")
    summary = H.train_run(out, options, "first")
    assert H.finished(out, options) == summary
    val = (data / "val.bin").read_bytes()
    (data / "val.bin").write_bytes(val[2:] + val[:2])  # the same size, other text
    assert H.finished(out, options) is None and "val.bin" in capsys.readouterr().out
    del summary["fingerprint"]  # a summary written before fingerprints were recorded
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f)
    with pytest.raises(SystemExit, match="predates recorded fingerprints"):
        H.finished(out, options)


def test_the_data_directory_comes_from_the_command_line_or_the_config_files(tmp_path):
    assert H.data_dir(["config/train_shakespeare_char_cpu.py"]) == os.path.join(ROOT, "data", "shakespeare_char")
    assert H.data_dir(["config/train_fineweb.py"]) == os.path.join(ROOT, "data", "fineweb")
    assert H.data_dir(["config/train_fineweb.py", f"--data_dir={tmp_path}"]) == str(tmp_path)


# ----------------------------------------------------------------------------- the tuner, by hand


def loss_of(lr):
    """A convex loss in log(lr) with its minimum at 0.005."""
    return math.log(lr / 0.005) ** 2


def test_the_tuner_extends_an_edge_best_then_bisects_until_its_neighbours_are_within_root_two():
    tried = []
    grid = H.tune(lambda lr: tried.append(lr) or loss_of(lr), [3e-3, 1e-2, 3e-2], max_extend=2)
    # by hand: 0.003 wins the grid at its edge → one √10 step below, 0.00095 (two digits). 0.003 is now interior;
    # its lower neighbour is 3.2× away → the geometric mean √(0.003·0.00095) = 0.00169, then √(0.003·0.00169) =
    # 0.00225 (1.33× away: close enough); the upper, 0.01, is 3.3× away → √(0.003·0.01) = 0.00548, which wins; its
    # neighbours 0.003 (1.83×) → 0.00405, and 0.01 (1.82×) → 0.0074; both now within √2.
    assert tried == [3e-3, 1e-2, 3e-2, 0.00095, 0.00169, 0.00225, 0.00548, 0.00405, 0.0074]
    best, interior = H.best_rate(grid)
    assert best == 0.00548 and interior
    lrs = sorted(grid)
    i = lrs.index(best)
    assert lrs[i] / lrs[i - 1] <= math.sqrt(2) and lrs[i + 1] / lrs[i] <= math.sqrt(2)


def test_an_unsorted_grid_is_tuned_as_the_sorted_one_and_no_refine_runs_the_grid_only():
    runs = {}
    for order in ([3e-3, 1e-2, 3e-2], [3e-2, 3e-3, 1e-2]):
        tried = []
        H.tune(lambda lr: tried.append(lr) or loss_of(lr), order)
        runs[tuple(order)] = tried
    assert len(set(map(tuple, runs.values()))) == 1
    tried = []
    H.tune(lambda lr: tried.append(lr) or (lr - 1e-2) ** 2, [3e-3, 1e-2, 3e-2], refine=False)
    assert tried == [3e-3, 1e-2, 3e-2]


def test_refine_rate_by_hand():
    assert H.refine_rate({1e-3: 2.0, 4e-3: 1.0, 1.6e-2: 3.0}) == 0.002  # √(0.004·0.001), lower side first
    assert H.refine_rate({1e-3: 1.0, 4e-3: 2.0}) is None  # an edge best is the extension's job
    assert H.refine_rate({1e-3: 2.0, 1.4e-3: 1.0, 1.9e-3: 3.0}) is None  # both within √2


# ----------------------------------------------------------------------------- one equal-time rule


def test_equal_wall_clock_interpolates_and_starts_at_steady_stepping():
    evals = [(0, 0.0, 4.0), (10, 2.0, 3.0), (20, 4.0, 2.0)]
    assert H.at_wall(evals, 3.0) == pytest.approx(2.5)  # halfway between the evaluations, not the earlier one
    assert math.isnan(H.at_wall(evals, 5.0))
    assert H.at_wall(evals, 3.0, final=1.9) == pytest.approx(1.9 + 2.5 - 2.0)  # anchored at the whole-split result
    summary = {"evals": [(0, 5.0, 4.0), (10, 7.0, 3.0)], "startup_s": 5.0}  # 5 s of compilation before the steps
    assert H.steady(summary) == [(0, 0.0, 4.0), (10, 2.0, 3.0)]
    assert H.final_loss({"evals": evals, "final": 1.9}) == 1.9 and H.final_loss({"evals": evals}) == 2.0


def test_startup_is_read_off_the_first_logged_steps(char_data, tmp_path):
    summary = H.train_run(str(tmp_path / "run"), [*TINY, f"--data_dir={char_data}"], "run")
    with open(tmp_path / "run" / "metrics.jsonl") as f:
        first = next(r for r in map(json.loads, f) if "ms_per_iter" in r)
    assert summary["startup_s"] == pytest.approx(max(0.0, first["wall"] - first["iter"] * summary["ms_per_iter"] / 1000))
    assert summary["final"] is None  # no --eval_full: the result is the last evaluation


# ----------------------------------------------------------------------------- ladder's timing


def test_a_timing_of_another_model_is_made_again_and_the_same_one_is_kept(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(H.subprocess, "run", fake_bench_run(calls))
    path = str(tmp_path / "bench" / "2x64.json")
    spec, context = H.bench_setup("config/train_shakespeare_char_modern.py")
    configs = [f"euclidean:{spec}", f"hyperbolic:{spec}"]
    assert H.compiled_ms(path, configs, "2x64", 32, context) == [[8.0, 9.0]]  # one process's list
    H.compiled_ms(path, configs, "2x64", 32, context)
    assert len(calls) == 1  # the same model: the timing is kept
    H.compiled_ms(path, configs, "2x64", 16, context)
    assert len(calls) == 2 and calls[-1][calls[-1].index("--n_head") + 1] == "4"
    cpu_spec, cpu_context = H.bench_setup("config/train_shakespeare_char_cpu.py")  # another base: another model
    H.compiled_ms(path, [f"euclidean:{cpu_spec}", f"hyperbolic:{cpu_spec}"], "2x64", 16, cpu_context)
    assert len(calls) == 3 and calls[-1][calls[-1].index("--optimizer") + 1] == "muon"
    H.compiled_ms(path, ["x"], "6x192", 32, context, rebuild=True)  # a rebuild reads the file as it is
    assert len(calls) == 3


def test_a_timing_in_several_processes_keeps_each_and_its_ratio_is_their_median(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(H.subprocess, "run", fake_bench_run(calls, curved=(12.0, 9.0, 10.0, 11.0)))
    path = str(tmp_path / "bench" / "2x64.json")
    spec, context = H.bench_setup("config/train_shakespeare_char_modern.py")
    configs = [f"euclidean:{spec}", f"hyperbolic:{spec}"]
    H.compiled_ms(path, configs, "2x64", 32, context)  # one process: curved 12 ms
    ms = H.compiled_ms(path, configs, "2x64", 32, context, processes=3)  # another count of processes: timed again
    assert len(calls) == 4 and ms == [[8.0, 9.0], [8.0, 10.0], [8.0, 11.0]]
    assert json.load(open(path))["settings"]["processes"] == 3
    assert H.compiled_ms(path, configs, "2x64", 32, context, processes=3) == ms and len(calls) == 4  # kept
    assert H.compiled_ms(path, configs, "2x64", 32, context) == [[8.0, 11.0]] and len(calls) == 5  # one asked: retimed
    assert sorted(os.listdir(tmp_path / "bench")) == ["2x64.json"]  # no process's file left beside it


def test_the_committed_ladder_timings_record_what_they_timed():
    """results/ladder/bench/*.json hold bench.py's settings, which the reuse check compares."""
    with open(os.path.join(ROOT, "results", "ladder", "bench", "4x128.json")) as f:
        settings = json.load(f)["settings"]
    assert settings["n_layer"] == 4 and settings["n_head"] == 4 and settings["compile"] is True


@pytest.mark.parametrize("study", ["yardstick", "schedule", "multiplier"])
def test_the_committed_runs_resolve_today_to_the_options_they_ran_with(study):
    """A changed default (model.py, train.py, a base config) must leave every recorded run's options as they were,
    or a resumed study trains it again: each committed summary that recorded its resolved options still resolves
    to them (the rule harness.finished applies)."""
    import glob
    paths = sorted(glob.glob(os.path.join(ROOT, "results", study, "**", "summary.json"), recursive=True))
    assert len(paths) >= 30
    for path in paths:
        with open(path) as f:
            summary = json.load(f)
        assert H.same_options(summary["fingerprint"]["resolved"], H.resolved(summary["options"])), path


# ----------------------------------------------------------------------------- export and init_from


def test_every_model_option_is_classified_for_export():
    fields = {f.name for f in dataclasses.fields(GPTConfig)}
    classified = set(pretrained.EXPORT_SIZES) | set(pretrained.EXPORT_IGNORES) | set(pretrained.EXPORT_REQUIRES)
    assert fields == classified | {"mlp", "attn_scale"}


@pytest.mark.parametrize("over, named", [(dict(attention="distance"), "attention='distance'"),
                                         (dict(aggregate="midpoint"), "aggregate='midpoint'"),
                                         (dict(block="ngpt", bias=False, tie_embeddings=False), "block='ngpt'")])
def test_export_refuses_every_option_gpt2_cannot_express_and_writes_nothing(tmp_path, over, named):
    model = GPT(GPTConfig(vocab_size=61, block_size=32, n_layer=2, n_head=2, n_embd=32, curvature="euclidean", **over))
    with pytest.raises(RunError, match="cannot export as GPT-2") as e:
        pretrained.export(model, str(tmp_path / "hf"))
    assert named in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "hf").exists()


def test_a_distance_attention_model_would_not_compute_gpt2s_function():
    """Why the refusal matters: the learned temperature changes the logits that a dot-product GPT-2 would give."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=61, block_size=32, n_layer=2, n_head=2, n_embd=32, curvature="euclidean",
                          attention="distance"))
    with torch.no_grad():  # trained-sized weights (at init q·k ≈ 0 and any attention is near uniform)
        for name, p in model.named_parameters():
            if "log_tau" not in name:
                p.normal_(0, 0.3)
    plain = GPT(dataclasses.replace(model.config, attention="dot"))
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if "log_tau" not in k})
    idx = torch.randint(0, 61, (2, 32), generator=torch.Generator().manual_seed(1))
    y = torch.zeros_like(idx)
    assert (model(idx, y)[0] - plain(idx, y)[0]).abs().max() > 0.1


def test_a_bare_init_from_is_euclidean_and_a_set_curvature_is_kept():
    import train

    hf = dict(n_layer=2, n_head=2, n_embd=32, block_size=32, vocab_size=61, bias=True, mlp="gelu_tanh",
              tie_embeddings=True, pos_embedding="learned", norm="layernorm", qk_norm=False, logit_softcap=0.0,
              attn_scale=0.0)
    cfg = dict(train.DEFAULTS, block_size=32)
    assert train.DEFAULTS["curvature"] != "euclidean"
    assert pretrained.merge_args(hf, cfg, set(), train.DEFAULTS)["curvature"] == "euclidean"
    set_it = dict(cfg, curvature="spherical", curvature_init=0.05)
    assert pretrained.merge_args(hf, set_it, {"curvature"}, train.DEFAULTS)["curvature"] == "spherical"
    assert pretrained.merge_args(hf, set_it, set(), train.DEFAULTS)["curvature"] == "spherical"  # unlike the default
