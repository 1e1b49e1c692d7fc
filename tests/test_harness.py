"""harness.py: a run's fingerprint and reuse rule, an interrupted run resumed from its checkpoint, and the
arithmetic by hand (the views of Δ, interpolation, the rate grid, the paired statistics, the sizes, the bench spec).
tests/test_reuse.py holds the reuse rule's end-to-end cases."""
import json
import math
import os

import pytest

import harness as H
from conftest import ROOT


# ----------------------------------------------------------------------------- what a run's fingerprint holds


def test_the_data_directory_is_resolved_as_train_py_resolves_it(tmp_path):
    import os

    from conftest import ROOT
    # a config file that reads another option: a two-key scope would fail on it and fall back to the default dataset
    cfg = tmp_path / "cfg.py"
    cfg.write_text("dataset = 'pycode' if n_layer == 4 and block_size == 64 else 'enwik8'\n")
    assert H.data_dir([str(cfg)]) == os.path.join(ROOT, "data", "pycode")
    assert H.data_dir(["--n_layer=2", str(cfg)]) == os.path.join(ROOT, "data", "enwik8")  # in order
    broken = tmp_path / "broken.py"
    broken.write_text("dataset = undefined_name\n")
    with pytest.raises(SystemExit, match="do not resolve: error while executing config file .*NameError"):
        H.data_dir([str(broken)])


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
    assert set(other) | {"out_dir", "wandb_log"} == set(H.NOT_COMPUTED)  # (wandb_log needs a wandb login)
    a, la = run("a")
    b, lb = run("b", **other)
    assert all(torch.equal(a[k], b[k]) for k in a)
    common = set(la) & set(lb)
    assert any(k[1] == "train/loss" for k in common) and any(k[1] == "val/loss" for k in common)
    assert all(la[k] == lb[k] for k in common)
    options = [f"--data_dir={char_data}"]
    assert H.same_options(H.resolved(options), H.resolved(options + [f"--{k}={v}" for k, v in
                                                                                    other.items()]))
    assert not H.same_options(H.resolved(options), H.resolved(options + ["--eval_interval=7"]))


def test_a_record_from_before_an_option_existed_matches_at_the_options_legacy_value():
    import hashlib

    import train
    from configurator import configure
    options = ["--curvature=euclidean", "--n_layer=2"]
    # the digest as recorded before the sampler existed: every option but the five output ones and κ₀, hashed
    cfg = configure(train.DEFAULTS, options)
    old = {k: v for k, v in cfg.items() if k not in ("out_dir", "overwrite", "wandb_log", "wandb_project",
                                                      "wandb_run_name", "curvature_init", "sampler", "decay_shape",
                                                      "threads")}
    record = hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()[:16]
    assert H.same_options(record, H.resolved(options))  # the sampler at 'random' is what ran then
    assert H.same_options(record, H.resolved([*options, "--sampler=random"]))
    assert not H.same_options(record, H.resolved([*options, "--sampler=epoch"]))
    assert not H.same_options(record, H.resolved([*options, "--n_layer=3"]))
    new = H.resolved(options)  # a record written now holds the options themselves
    assert H.same_options(new, H.resolved([*options, "--log_interval=7"]))
    assert not H.same_options(new, H.resolved([*options, "--sampler=epoch"]))
    # a dict record that lacks an option matches at that option's legacy value only
    lacking = {"options": {k: v for k, v in new["options"].items() if k not in ("sampler", "always_save_checkpoint")}}
    assert H.same_options(lacking, H.resolved(options))
    assert not H.same_options(lacking, H.resolved([*options, "--sampler=epoch"]))
    assert not H.same_options(lacking, H.resolved([*options, "--always_save_checkpoint=False"]))
    older = {"options": {k: v for k, v in new["options"].items() if k != "decay_shape"}}  # before decay_shape
    assert H.same_options(older, H.resolved(options))
    assert not H.same_options(older, H.resolved([*options, "--decay_shape=linear"]))
    before_threads = {"options": {k: v for k, v in new["options"].items() if k != "threads"}}  # ran at torch's default
    assert H.same_options(before_threads, H.resolved(options))
    assert not H.same_options(before_threads, H.resolved([*options, "--threads=1"]))


BASE = [(0, 0.0, 4.0), (10, 1.0, 3.0), (20, 2.0, 2.0)]  # (iter, wall-clock s, val loss)
ARM = [(0, 0.0, 4.0), (10, 1.5, 2.8), (20, 3.0, 1.8)]


def test_delta_in_each_view_by_hand():
    arm, base = {"evals": ARM}, {"evals": BASE}
    assert H.delta(arm, base, "steps") == pytest.approx(1.8 - 2.0)
    # equal eager time: both at 2.0 s, the baseline's end; the arm is 1/3 of the way from 1.5 s to 3.0 s
    assert H.delta(arm, base, "eager") == pytest.approx((2.8 + (1.8 - 2.8) / 3) - 2.0)
    # compiled ratio 1.25: the arm's 20 steps cost 25 baseline steps, so the arm is read at 16 steps
    assert H.delta(arm, base, "compiled", 1.25) == pytest.approx((2.8 + (1.8 - 2.8) * 0.6) - 2.0)
    # ratio 0.8: the arm is cheaper, so the baseline is read at 16 steps against the arm's 20
    assert H.delta(arm, base, "compiled", 0.8) == pytest.approx(1.8 - (3.0 + (2.0 - 3.0) * 0.6))
    assert H.delta(arm, base, "compiled", 1.0) == H.delta(arm, base, "steps")
    # equal steps read the whole-split loss when the run measured it; equal time starts the clock after startup
    assert H.delta(dict(arm, final=1.7), dict(base, final=2.1), "steps") == pytest.approx(1.7 - 2.1)
    # with whole-split results, the curves give the change and the results the level: the arm at 16 steps is its
    # result plus its curve's rise from 20 back to 16 steps
    rise = (2.8 + (1.8 - 2.8) * 0.6) - 1.8
    assert H.delta(dict(arm, final=1.7), dict(base, final=2.1), "compiled", 1.25) == pytest.approx(
        1.7 + rise - 2.1)
    late = {"evals": [(i, w + 1.0, v) for i, w, v in ARM], "startup_s": 1.0}  # 1 s of compilation first
    assert H.delta(late, base, "eager") == pytest.approx(H.delta(arm, base, "eager"))


def test_interpolate_stays_inside_the_curve():
    pts = [(0, 1.0), (10, 3.0)]
    assert H.interpolate(pts, 2.5) == pytest.approx(1.5)
    assert H.interpolate(pts, 10) == 3.0 and H.interpolate(pts, 11) is None


def test_best_rate_is_interior_only_between_the_edges_and_the_grid_extends_past_an_edge():
    assert H.best_rate({1e-3: 2.0, 3e-3: 1.9, 1e-2: 2.1}) == (3e-3, True)
    assert H.best_rate({1e-3: 1.8, 3e-3: 1.9, 1e-2: 2.1}) == (1e-3, False)
    extended = {"low": 0, "high": 0}
    grid = {1e-2: 1.8, 3e-2: 1.9, 1e-1: 2.0}
    assert H.next_rate(grid, 10 ** 0.5, extended, 2) == pytest.approx(3.2e-3)  # one √10 below, 2 digits
    assert H.next_rate({1e-2: 2.0, 3e-2: 1.9}, 3.0, extended, 2) == pytest.approx(9e-2)
    assert extended == {"low": 1, "high": 1}
    extended["low"] = 2
    assert H.next_rate(grid, 10 ** 0.5, extended, 2) is None  # that side has had its extensions
    assert H.next_rate({1e-3: 2.0, 3e-3: 1.9, 1e-2: 2.1}, 3.0, {"low": 0, "high": 0}, 2) is None


def test_non_embedding_parameters_are_those_of_the_blocks():
    from model import GPT, GPTConfig

    m = GPT(GPTConfig(n_layer=3, n_head=2, n_embd=64, vocab_size=50, block_size=16, bias=False, norm="rmsnorm",
                      tie_embeddings=False, curvature="euclidean"))
    blocks = sum(p.numel() for p in m.transformer.h.parameters())
    assert H.non_embedding_params(3, 64) == blocks


@pytest.mark.parametrize("config", ["train_shakespeare_char_modern.py", "train_fineweb_speedrun.py"])
def test_the_bench_spec_is_the_base_configs_model(config):
    """bench.py builds the model of the spec and the context it is given; that model must be the base config's."""
    import bench
    from runtime import MODEL_KEYS

    cfg = {"__file__": os.path.join(ROOT, "config", config)}
    exec(open(cfg["__file__"]).read(), cfg)
    spec, context = H.bench_setup(os.path.join("config", config))
    got = bench.parse_spec("euclidean:" + spec)
    for key in set(MODEL_KEYS) & set(cfg) - {"n_layer", "n_head", "n_embd", "block_size", "curvature", "reference",
                                             "residual", "curvature_init", "dropout", "smear", "geometry_checkpoint"}:
        assert got.get(key, bench.GPTConfig.__dataclass_fields__[key].default) == cfg[key], key
    assert context["block_size"] == cfg["block_size"] and context["curvature_init"] == cfg["curvature_init"]


def test_a_longer_run_starts_from_the_root_two_grid_around_the_shorter_ones_best():
    assert H.start_grid(None, [3e-2, 3e-3, 1e-2]) == [3e-3, 1e-2, 3e-2]
    assert H.start_grid(1e-2, [3e-3]) == [0.00707, 1e-2, 0.0141]  # 0.01/√2 and 0.01·√2, three digits


def test_paired_statistics_by_hand():
    mean, std, t, half = H.paired([-0.03, -0.01])
    assert mean == pytest.approx(-0.02) and std == pytest.approx(math.sqrt(2) * 0.01)
    assert t == pytest.approx(-0.02 / (math.sqrt(2) * 0.01 / math.sqrt(2)))  # −2.0
    assert half == pytest.approx(12.706 * 0.01)  # t(0.975, 1) · std/√2, std/√2 = 0.01
    assert H.paired([-0.01, -0.01])[2] == -math.inf
    # n = 3: std 0.01 (−0.03, −0.02, −0.01), t(0.975, 2) = 4.303
    assert H.paired([-0.03, -0.02, -0.01])[3] == pytest.approx(4.303 * 0.01 / math.sqrt(3))


def test_the_t_table_is_students_quantile():
    mpmath = pytest.importorskip("mpmath")
    for df, q in enumerate(H.T975, start=1):
        # Student's t CDF at q, by numerical integration of its density
        pdf = lambda x, n=df: mpmath.gamma((n + 1) / 2) / (mpmath.sqrt(n * mpmath.pi) * mpmath.gamma(n / 2)) * (  # noqa
            1 + x * x / n) ** (-(n + 1) / 2)
        cdf = 0.5 + mpmath.quad(pdf, [0, q])
        assert abs(cdf - 0.975) < 2e-5, (df, q, cdf)  # the table's three decimals




def test_an_interrupted_run_continues_from_its_checkpoint_and_ends_as_an_uninterrupted_one(char_data, tmp_path,
                                                                                            capsys):
    import torch
    options = ["--n_layer=1", "--n_embd=16", "--n_head=2", "--block_size=16", "--batch_size=4", "--eval_iters=2",
               "--max_iters=8", "--lr_decay_iters=8", "--warmup_iters=2", "--eval_interval=4",
               "--curvature=euclidean", "--sampler=epoch", f"--data_dir={char_data}"]
    whole = H.train_run(str(tmp_path / "whole"), options, "whole")
    cut = tmp_path / "cut"
    H.train_run(str(cut), [*options[:6], "--max_iters=4", *options[7:]], "first half")  # a run that stopped at 4
    # what an interrupted run of the whole leaves: its checkpoint at step 4, its log, its start record, no summary
    os.remove(cut / "summary.json")
    H.write_json(str(cut / "start.json"), {"options": options, "fingerprint": H.fingerprint(options)})
    ckpt = torch.load(cut / "ckpt.pt", weights_only=False)
    ckpt["config"]["max_iters"] = ckpt["config"]["lr_decay_iters"] = 8  # as the whole run had it at step 4
    torch.save(ckpt, cut / "ckpt.pt")
    assert H.resumable(str(cut), options) and not H.resumable(str(cut), [*options, "--seed=2"])
    capsys.readouterr()
    resumed = H.train_run(str(cut), options, "the rest")
    assert "(resumed from its checkpoint)" in capsys.readouterr().out
    assert [e[2] for e in resumed["evals"]] == [e[2] for e in whole["evals"]]  # the same losses at every evaluation
    a = torch.load(tmp_path / "whole" / "ckpt.pt", weights_only=False)["model"]
    b = torch.load(cut / "ckpt.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not (cut / "start.json").exists()  # a finished run keeps its summary, not its start record
