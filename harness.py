"""
The research harness's library: every piece a study needs, written once. study.py (the driver) runs a plan
(plans/*.py) with these; nothing here knows a plan.

- a training run: `python train.py OPTIONS --out_dir=DIR` in a subprocess (`train_run`), fingerprinted (command line,
  config files and the options they resolve to, code, data, declared inputs) so that a finished run is reused
  when nothing it depended on changed (`finished`), and an interrupted one continues from its last checkpoint
  (`resumable`) instead of starting again;
- tuning a rate (`tune`): a grid, extended past an edge best, bisected until the best has tried neighbours within
  √2 on both sides; `start_grid`: the √2 grid around a shorter run's best;
- reading runs (`final_loss`, `reported`, `steady`, `read`, `delta`: the views of Δ), paired statistics (`mean_std`,
  `paired`: mean, std, t and the 95% t-interval), κ summaries (`positive_heads`, `per_head`);
- the compiled-cost helper (`compiled_ms`: bench.py --compile, the blocks alternating in one process, in one or
  more processes, reused when bench.py recorded the same arguments), and the writers (`write_text`, `write_json`,
  `figure`).

docs/results.md (Studies: how the harness tunes, evaluates and reuses) has the rules in prose.
"""
import glob
import hashlib
import json
import math
import os
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ARMS = [  # (name, overrides): the modern block, the same optimizer for all; smear set explicitly in every arm
    ("euclid", ["--curvature=euclidean", "--smear=False"]),
    ("euclid+smear", ["--curvature=euclidean", "--smear=True"]),
    # the baseline decayed linearly to zero (Bergsma et al. 2025) instead of the plan's schedule: these follow the
    # schedule's options, so they win
    ("euclid+smear+linear0", ["--curvature=euclidean", "--smear=True", "--decay_shape=linear", "--min_lr=0.0"]),
    ("zero-prev-tangent", ["--curvature=zero", "--reference=prev_token", "--residual=tangent", "--smear=False"]),
    ("hyp-prev-tangent", ["--curvature=hyperbolic", "--reference=prev_token", "--residual=tangent", "--smear=False"]),
    ("hyp-prev-tangent+smear", ["--curvature=hyperbolic", "--reference=prev_token", "--residual=tangent",
                                "--smear=True"]),
    # κ of either sign per head, starting flat so that no sign is preferred: mixed curvature
    ("free-prev-tangent", ["--curvature=free", "--curvature_init=0.0", "--reference=prev_token", "--residual=tangent",
                           "--smear=False"]),
    # the hypersphere control: nGPT's block, trained as its paper trains it (no weight decay, no warmup), without the
    # modern switches it replaces or that its paper does not use
    ("ngpt", ["--block=ngpt", "--curvature=euclidean", "--smear=False", "--bias=False", "--tie_embeddings=False",
              "--zero_init_proj=False", "--attn_scale=0.0", "--logit_softcap=0.0", "--weight_decay=0.0",
              "--warmup_iters=0"]),
    # nGPT's block on its own published recipe (NVIDIA's ngpt, train.py, its use_nGPT settings): AdamW rather than the
    # base config's Muon, betas 0.9 and 0.95, weight decay 0 (the sphere replaces it), gradients clipped at norm 1.0,
    # no warmup, cosine decay to zero (min_lr 0; these come after the schedule's options, so they win)
    ("ngpt-adamw", ["--block=ngpt", "--curvature=euclidean", "--smear=False", "--bias=False", "--tie_embeddings=False",
                    "--zero_init_proj=False", "--attn_scale=0.0", "--logit_softcap=0.0", "--optimizer=adamw",
                    "--beta1=0.9", "--beta2=0.95", "--weight_decay=0.0", "--grad_clip=1.0", "--warmup_iters=0",
                    "--min_lr=0.0"]),
]


# ----------------------------------------------------------------------------- a training run and its fingerprint

def records(out_dir):
    with open(os.path.join(out_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


# ----------------------------------------------------------------------------- what a finished run depended on

# the files a training run executes: a change in any of them may change what a run computes
CODE_FILES = ("train.py", "model.py", "geometry.py", "fused_maps.py", "runtime.py", "loader.py", "configurator.py",
              "logger.py", "pretrained.py", "hellaswag.py")


def digest(path):
    """A short sha256 of a file: whole files up to 64 MiB; beyond, the size and the first and last MiB (a token
    shard is rewritten whole, never patched in the middle)."""
    size = os.path.getsize(path)
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        if size <= 64 * 2**20:
            h.update(f.read())
        else:
            h.update(f.read(2**20))
            f.seek(-(2**20), os.SEEK_END)
            h.update(f.read())
    return h.hexdigest()[:16]


def config_files(options):
    """The config files a run reads: those its command line names, and every config file that one of them names
    (a config that builds on a sibling, as config/*_euclid.py do), transitively."""
    todo = [o for o in options if not o.startswith("--")]
    found = []
    while todo:
        path = todo.pop(0)
        full = path if os.path.isabs(path) else os.path.join(HERE, path)
        if full in found or not os.path.isfile(full):
            continue
        found.append(full)
        text = open(full).read()
        folder = os.path.dirname(full)
        todo += [os.path.join(folder, name) for name in re.findall(r"[\"']([\w.-]+\.py)[\"']", text)]
    return found


def options_config(options):
    """The config dict train.py runs `options` with (train.DEFAULTS, then the config files and overrides in order),
    resolved once by configurator as train.py resolves it; a bad option is a ConfigError with train.py's message."""
    import train  # the defaults; imported here, as only fingerprints need them
    from configurator import configure
    return configure(train.DEFAULTS, [o if o.startswith("--") or os.path.isabs(o) else os.path.join(HERE, o)
                                      for o in options])


def data_dir(options):
    """The data directory a run reads: data_dir, else data/<dataset>, as the options resolve them. Options that do
    not resolve stop the sweep with train.py's one-line message: a guess could fingerprint the wrong dataset."""
    from configurator import ConfigError
    try:
        cfg = options_config(options)
    except ConfigError as e:
        sys.exit(f"error: the options {' '.join(options)} do not resolve: {e}")
    return cfg["data_dir"] or os.path.join(HERE, "data", cfg["dataset"])


# options that cannot change a run's weights or any loss it logs, only where it writes and how it reports
# (tests/test_reuse.py trains two runs that differ in all of them and compares weights and every logged loss)
NOT_COMPUTED = ("out_dir", "overwrite", "wandb_log", "wandb_project", "wandb_run_name", "log_interval", "peak_flops")
# the digest recorded before NOT_COMPUTED grew kept these keys; such a record is compared by the old rule
OLD_NOT_COMPUTED = ("out_dir", "overwrite", "wandb_log", "wandb_project", "wandb_run_name")
# options a record may lack, each with the value its run had: options added after runs were recorded, at the value
# that reproduces the code before them (sampler, decay_shape, threads), and always_save_checkpoint, which the
# yardstick's first records left out (written by a sweep whose NOT_COMPUTED briefly held it; each ran at the default)
LEGACY = {"sampler": "random", "decay_shape": "cosine", "threads": 0, "always_save_checkpoint": True}
ADDED = ("sampler", "decay_shape", "threads")  # the LEGACY options that postdate the old rule's hashes


def resolved_options(cfg, drop=NOT_COMPUTED):
    """The options of a resolved config that can change what a run computes: all but `drop` and κ's initial value in
    a model whose κ is not learned or fixed (curvature 'euclidean' or 'zero' never reads it)."""
    drop = set(drop) | ({"curvature_init"} if cfg.get("curvature") in ("euclidean", "zero") else set())
    return {k: v for k, v in cfg.items() if k not in drop}


def _hash(options):
    return hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:16]


def resolved(options):
    """{"options": the resolved options (resolved_options), "legacy": their hash by the rule before NOT_COMPUTED grew,
    what older records hold (without the options ADDED since, at their LEGACY value)}; None when the options do not
    resolve: train.py will say why."""
    from configurator import ConfigError
    try:
        cfg = options_config(options)
    except ConfigError:
        return None
    old = {k: v for k, v in resolved_options(cfg, OLD_NOT_COMPUTED).items() if not (k in ADDED and v == LEGACY[k])}
    return {"options": resolved_options(cfg), "legacy": _hash(old)}


def same_options(old, new):
    """Whether a recorded run resolved to the options `new` (resolved()) resolves to: compared as dicts where the
    record has them (an option the record lacks matches at its LEGACY value), by the old rule's hash where it has
    only that (a record before this rule)."""
    if new is None:
        return False
    if isinstance(old, dict):
        missing = object()
        return (set(old["options"]) <= set(new["options"]) and
                all(old["options"].get(k, LEGACY.get(k, missing)) == v for k, v in new["options"].items()))
    return old == new["legacy"]


def fingerprint(options, inputs=None):
    """What a run of `options` depends on beyond its command line: the contents of its config files and the options
    they resolve to, the code it executes, its data (*.bin, meta.pkl), and `inputs` (what the caller says it read,
    e.g. graft's pretrain)."""
    rel = lambda p: os.path.relpath(p, HERE)  # noqa: E731
    folder = data_dir(options)
    data = sorted(glob.glob(os.path.join(folder, "*.bin")) + glob.glob(os.path.join(folder, "meta.pkl")))
    return {"config": {rel(p): digest(p) for p in config_files(options)},
            "resolved": resolved(options),
            "data": {os.path.basename(p): digest(p) for p in data},
            "code": {f: digest(os.path.join(HERE, f)) for f in CODE_FILES},
            "inputs": inputs or {}}


def changes(old, new):
    """What differs between two fingerprints, as {'config'|'data'|'inputs'|'code': [names]}; a summary written
    before fingerprints were recorded (old is None) differs in 'unknown'. Where old recorded the options its run
    resolved to, they decide 'config': the same options are the same config, whatever the files' contents."""
    if old is None:
        return {"unknown": ["the run predates recorded fingerprints"]}
    out = {}
    for part in ("config", "data", "inputs", "code"):
        a, b = old.get(part, {}), new.get(part, {})
        names = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        if part == "config" and old.get("resolved") is not None:
            names = [] if same_options(old["resolved"], new["resolved"]) else names + ["the options they resolve to"]
        if names:
            out[part] = names
    return out


def finished(out_dir, options, inputs=None, on_code_change="stop"):
    """The summary of a finished run of these options in out_dir that may be reused, else None (train it).

    The rule (docs/results.md): a run is reused when its command line, config files, data and inputs are the new
    run's; when one of those differs it is trained again. Config files count as the same when the options the run
    resolves to are (`resolved`: a base config's default model changed, and this run sets its own), and as changed
    when those options are not (a default in train.py moved). When only the code differs (or the run predates
    fingerprints), on_code_change decides: 'stop' exits with one line naming what changed, 'retrain' trains it
    again, 'reuse' keeps it."""
    path = os.path.join(out_dir, "summary.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        summary = json.load(f)
    if summary["options"] != list(options):
        return None
    diff = changes(summary.get("fingerprint"), fingerprint(options, inputs))
    if {"config", "data", "inputs"} & set(diff):
        what = "; ".join(f"{k}: {', '.join(v)}" for k, v in diff.items() if k != "code")
        print(f"--- {out_dir}: {what} changed since it ran: training it again", flush=True)
        return None
    if diff and on_code_change == "retrain":
        return None
    if diff and on_code_change == "stop":
        what = ", ".join(diff.get("code", diff.get("unknown", [])))
        sys.exit(f"error: {out_dir} was trained by other code ({what}); rerun with --on_code_change=retrain to train "
                 f"it again, or --on_code_change=reuse if the change leaves what it computed alone")
    return summary


def resumable(out_dir, options, inputs=None, on_code_change="stop"):
    """Whether an interrupted run of these options in out_dir may continue from its checkpoint: it started with the
    same command line, and what it depended on then (start.json: its fingerprint at the start) is unchanged, or
    differs in code alone and on_code_change is 'reuse'. train.py then resumes it exactly (init_from='resume')."""
    start = os.path.join(out_dir, "start.json")
    if not (os.path.exists(start) and os.path.exists(os.path.join(out_dir, "ckpt.pt"))):
        return False
    with open(start) as f:
        began = json.load(f)
    if began["options"] != list(options):
        return False
    diff = changes(began["fingerprint"], fingerprint(options, inputs))
    return not diff or (set(diff) == {"code"} and on_code_change == "reuse")


def read_summary(out_dir):
    """A finished run's summary.json as it is (no fingerprint check): what a rebuild of committed tables reads."""
    path = os.path.join(out_dir, "summary.json")
    if not os.path.exists(path):
        sys.exit(f"error: {path} is missing: a rebuild reads finished runs only (run the plan without --rebuild)")
    with open(path) as f:
        return json.load(f)


def train_run(out_dir, options, label, keep_checkpoint=True, inputs=None, on_code_change="stop"):
    """`python train.py *options` into out_dir, or the summary of a finished run that `finished` may reuse; an
    interrupted run that `resumable` allows continues from its checkpoint. The summary: evaluations [(iter,
    wall-clock s, val loss)], startup_s (the wall-clock before steady stepping: compilation and warm-up), final (the
    loss on the whole validation split when the run logged it, else None), test (the same on the test split, where
    the data has one), median ms/iter, the last logged κ (and reference share α) per block and head ({} for a
    Euclidean run) and the fingerprint. It is written when the run ends, so a run cut short is not taken as done."""
    summary = finished(out_dir, options, inputs, on_code_change)
    if summary is not None:
        return summary
    path = os.path.join(out_dir, "summary.json")
    resume = resumable(out_dir, options, inputs, on_code_change)
    cmd = [sys.executable, os.path.join(HERE, "train.py"), *options, f"--out_dir={out_dir}",
           "--init_from=resume" if resume else "--overwrite=True"]
    print(f"=== {label}{' (resumed from its checkpoint)' if resume else ''}", flush=True)
    if not resume:
        os.makedirs(out_dir, exist_ok=True)
        write_json(os.path.join(out_dir, "start.json"), {"options": list(options),
                                                         "fingerprint": fingerprint(options, inputs)})
    r = subprocess.run(cmd, cwd=HERE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.exit(f"error: run {out_dir} failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ''}")
    recs = records(out_dir)
    ms = [r["ms_per_iter"] for r in recs if "ms_per_iter" in r]
    median = statistics.median(ms) if ms else float("nan")
    first = next((r for r in recs if "ms_per_iter" in r), None)
    startup = max(0.0, first["wall"] - first["iter"] * median / 1000) if first else 0.0
    kappa = next(({k: v for k, v in r.items() if k.startswith(("curvature/", "share/")) and "/head" in k}
                  for r in reversed(recs) if any(k.startswith("curvature/") for k in r)), {})
    summary = {"options": list(options),
               "evals": [(r["iter"], r["wall"], r["val/loss"]) for r in recs if "val/loss" in r],
               "startup_s": startup, "final": next((r["val/loss_full"] for r in recs if "val/loss_full" in r), None),
               "test": next((r["test/loss_full"] for r in recs if "test/loss_full" in r), None),
               "ms_per_iter": median, "kappa": kappa, "fingerprint": fingerprint(options, inputs)}
    summary = json.loads(json.dumps(summary))  # what a rerun reads back: lists, not tuples
    write_json(path, summary, indent=None)
    for name in ("start.json", *([] if keep_checkpoint else ["ckpt.pt"])):  # a study keeps logs and summaries
        if os.path.exists(os.path.join(out_dir, name)):
            os.remove(os.path.join(out_dir, name))
    return summary


def final_loss(summary):
    """A run's result: the loss on the whole validation split when it was measured, else the last evaluation."""
    return summary["final"] if summary.get("final") is not None else summary["evals"][-1][2]


def reported(summary):
    """A run's reported loss: on the test split where the data has one, else final_loss (rates are chosen on val)."""
    return summary["test"] if summary.get("test") is not None else final_loss(summary)


def steady(summary):
    """The evaluations with the clock started at steady stepping: wall-clock minus startup_s (compilation, which is
    longer for the curved graphs, and warm-up), so that equal-time views compare training, not compiling."""
    start = summary.get("startup_s", 0.0)
    return [(it, max(0.0, wall - start), loss) for it, wall, loss in summary["evals"]]


# ----------------------------------------------------------------------------- tuning (tested by hand)


def best_rate(grid):
    """The learning rate with the lowest val loss in {lr: loss}, and whether it is interior (not the smallest or
    largest rate tried)."""
    best = min(grid, key=grid.get)
    return best, min(grid) < best < max(grid)


def next_rate(grid, ratio, extended, max_extend):
    """The rate to try next to bring an edge best inside the grid, or None: one step of `ratio` past the edge
    where the best sits, unless that side has been extended max_extend times (extended: {'low': n, 'high': n})."""
    best, inside = best_rate(grid)
    if inside or len(grid) < 2:
        return None
    side = "low" if best == min(grid) else "high"
    if extended[side] >= max_extend:
        return None
    extended[side] += 1
    return float(f"{(best / ratio if side == 'low' else best * ratio):.2g}")


def refine_rate(grid, within=math.sqrt(2)):
    """The rate to try next so that an interior best has a tried neighbour within a factor `within` on each side
    (with 1 % to spare, as rates are rounded): the geometric mean of the best and its farther neighbour (the lower
    side first), to three digits; None when both neighbours are close enough, the best is at an edge, or the
    midpoint rounds onto a rate already tried."""
    lrs = sorted(grid)
    best, inside = best_rate(grid)
    if not inside:
        return None
    i = lrs.index(best)
    for other in (lrs[i - 1], lrs[i + 1]):
        if max(best, other) / min(best, other) > within * 1.01:  # 1 %: rates are written to two or three digits
            mid = float(f"{math.sqrt(best * other):.3g}")
            return None if mid in grid else mid
    return None


def tune(loss_at, lrs, max_extend=2, refine=True):
    """{lr: loss} from the grid `lrs` (sorted first), extended past an edge best by the grid's own ratio (at most
    max_extend times each way), then, with `refine`, bisected in log space until the best has neighbours within
    √2 on both sides. loss_at(lr) trains (or reuses) one run and returns its final loss."""
    lrs = sorted(set(lrs))
    ratio = (lrs[-1] / lrs[0]) ** (1 / (len(lrs) - 1)) if len(lrs) > 1 else math.sqrt(10)
    grid, extended, todo = {}, {"low": 0, "high": 0}, list(lrs)
    while todo:
        lr = todo.pop(0)
        grid[lr] = loss_at(lr)
        if not todo:
            nxt = next_rate(grid, ratio, extended, max_extend)
            if nxt is None and refine:
                nxt = refine_rate(grid)
            todo = [nxt] if nxt is not None and nxt not in grid else []
    return grid


def schedule(lr, iters, eval_interval, shape="cosine"):
    """The same schedule shape for every run of a study, stretched to its length: 10% warmup, then 'cosine' to lr/10
    at the end (the studies so far), or 'linear0': linear decay to zero (Bergsma et al. 2025)."""
    decay = [f"--min_lr={lr / 10}"] if shape == "cosine" else ["--min_lr=0.0"]
    return [f"--learning_rate={lr}", *decay, f"--max_iters={iters}", f"--lr_decay_iters={iters}",
            f"--warmup_iters={max(1, iters // 10)}", f"--eval_interval={eval_interval}",
            *([] if shape == "cosine" else ["--decay_shape=linear"])]


def start_grid(previous_best, coarse):
    """The grid a cell starts from: the √2 grid around the arm's best at a shorter length, else the coarse one."""
    if previous_best is None:
        return sorted(coarse)
    return [float(f"{previous_best / math.sqrt(2):.3g}"), previous_best, float(f"{previous_best * math.sqrt(2):.3g}")]


# ----------------------------------------------------------------------------- reading runs, statistics


def interpolate(points, x):
    """y at x on the piecewise-linear curve through points [(x, y)] sorted by x; None outside it."""
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return points[-1][1] if points and x == points[-1][0] else None


def at_wall(evals, budget, final=None):
    """Val loss at `budget` seconds of the run's clock, read off its loss-vs-time curve by linear interpolation
    between evaluations and, given the run's whole-split result `final`, anchored at it (the curve's change from
    `budget` to its end added to the result: `read`'s rule too); NaN past the run's end."""
    y = interpolate([(wall, loss) for _, wall, loss in evals], budget)
    if y is None:
        return float("nan")
    return y if final is None else final + y - evals[-1][2]


def read(summary, curve, x):
    """A run's loss at x (a step or a time) off its curve of batch estimates, anchored at its result: the result
    (the whole-split loss, when measured) plus how far the curve moves between x and its end. The batch estimates'
    own level is noise (on pycode ±0.03 from the whole split) that the anchor removes; at the end it is the result."""
    return final_loss(summary) + interpolate(curve, x) - curve[-1][1]


def delta(arm, base, view, ratio=1.0):
    """Δ loss of one seed's arm run against the same seed's baseline run, in one view: 'steps' (the results),
    'eager' (both at the earlier end time of the two, clocks from steady stepping), 'compiled' (the arm at N/r steps
    against the baseline at N, or the baseline at N·r when r < 1; r = compiled ms/iter arm ÷ baseline). The run
    that is cut is read mid-decay, so the compiled view is biased against it by an amount it cannot measure."""
    if view == "steps":
        return final_loss(arm) - final_loss(base)
    arm_evals, base_evals = steady(arm), steady(base)
    if view == "eager":
        t = min(arm_evals[-1][1], base_evals[-1][1])
        return read(arm, [(e[1], e[2]) for e in arm_evals], t) - read(base, [(e[1], e[2]) for e in base_evals], t)
    n = base_evals[-1][0]
    arm_at, base_at = (n / ratio, n) if ratio >= 1 else (n, n * ratio)
    return read(arm, [(e[0], e[2]) for e in arm_evals], arm_at) - read(base, [(e[0], e[2]) for e in base_evals], base_at)


def mean_std(xs):
    """(mean, sample std) of xs; NaN for both when one is NaN (statistics.stdev raises on NaN in Python 3.11)."""
    if any(math.isnan(x) for x in xs):
        return float("nan"), float("nan")
    return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228]  # t(0.975, df) for df 1…10


def paired(diffs):
    """(mean, std, t, half-width of the 95% t-interval) of paired differences: t = mean / (std / √n), ±inf when every
    seed agrees exactly; the interval is mean ± t(0.975, n−1)·std/√n (NaN past the table: n > 11)."""
    mean, std = mean_std(diffs)
    n = len(diffs)
    if n < 2:
        return mean, std, float("nan"), float("nan")
    t = mean / (std / math.sqrt(n)) if std > 0 else math.copysign(math.inf, mean)
    return mean, std, t, (T975[n - 2] * std / math.sqrt(n) if n - 1 <= len(T975) else float("nan"))


def positive_heads(kappa):
    """Heads with κ > 0 at the end, per block, from a run's last logged κ (curvature/block{l}/head{h})."""
    kappa = {k: v for k, v in kappa.items() if k.startswith("curvature/")}
    blocks = sorted({int(k.split("/")[1][5:]) for k in kappa})
    return [sum(v > 0 for k, v in kappa.items() if k.split("/")[1] == f"block{b}") for b in blocks]


def per_head(runs, prefix):
    """{block: [mean over runs of the last logged value per head]} for keys prefix/block{l}/head{h}."""
    table = {}
    for key in runs[0]["kappa"]:
        if key.startswith(prefix + "/"):
            _, block, head = key.split("/")
            table.setdefault(int(block[5:]), {})[int(head[4:])] = statistics.mean(r["kappa"][key] for r in runs)
    return {b: [heads[h] for h in sorted(heads)] for b, heads in sorted(table.items())}


# ----------------------------------------------------------------------------- sizes and compiled cost


def parse_size(text):
    layers, _, width = str(text).partition("x")
    if not (layers.isdigit() and width.isdigit()):
        sys.exit(f"error: a size is LAYERSxWIDTH, e.g. 4x128; got {text!r}")
    return int(layers), int(width)


def size_options(size, head_size):
    layers, width = parse_size(size)
    if width % head_size:
        sys.exit(f"error: width {width} of size {size} is not a multiple of head_size {head_size}")
    return [f"--n_layer={layers}", f"--n_embd={width}", f"--n_head={width // head_size}"]


def non_embedding_params(layers, width):
    """12·L·W²: attention's q, k, v and output (4W²) and the MLP's two 4W-wide layers (8W²) per block, no biases
    (the modern block has none, and its RMSNorm has no gains); embeddings, head and the few curvature and smear
    scalars are left out."""
    return 12 * layers * width * width


# the base config's model options that bench.py takes as a spec (the sizes and curvature come from each run)
BENCH_KEYS = ("bias", "pos_embedding", "norm", "qk_norm", "attn_scale", "attn_scale_learnable", "mlp", "tie_embeddings",
              "logit_softcap", "zero_init_proj")


def bench_setup(base):
    """What bench.py needs to time the base config's model: its options as a spec, and bench.py's context
    {block_size, batch_size, vocab_size, curvature_init}. Config files are Python (as train.py runs them)."""
    path = base if os.path.isabs(base) else os.path.join(HERE, base)
    cfg = {"__file__": path}
    exec(open(path).read(), cfg)
    spec = ":".join(f"{k}={cfg[k]}" for k in BENCH_KEYS if k in cfg)
    vocab = {"shakespeare_char": 65, "pycode": 256, "enwik8": 256}.get(cfg.get("dataset", "shakespeare_char"), 50304)
    return spec, {"block_size": cfg.get("block_size", 64), "batch_size": cfg.get("batch_size", 12),
                  "vocab_size": vocab, "curvature_init": cfg.get("curvature_init", -0.05)}


def compiled_ms(path, configs, size, head_size, context, device="cpu", rounds=7, rebuild=False, processes=1):
    """Compiled ms/iter of each bench.py spec in `configs`, in order, at this size, a list per bench.py --compile
    process (blocks alternating rounds, each with its own optimizer: Muon unless its spec names another), `processes`
    of them, as a compiled step's time moves between processes more than within one. The JSON at `path` is reused
    when it recorded the same arguments (as text) and process count, and read as it is by a rebuild."""
    layers, width = parse_size(size)
    want = {"configs": configs, "n_layer": layers, "n_embd": width, "n_head": width // head_size, "device": device,
            "rounds": rounds, **context}
    saved = json.load(open(path)) if os.path.exists(path) else None
    if not rebuild and (saved is None or any(str(saved["settings"].get(k)) != str(v) for k, v in want.items())
                        or saved["settings"].get("processes", 1) != processes):  # as bench.py writes it: one
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        cmd = [sys.executable, os.path.join(HERE, "bench.py"), "--compile", "--optimizer", "muon", "--configs",
               *configs, *[a for k, v in want.items() if k != "configs" for a in (f"--{k}", str(v))],
               "--json", path + ".run"]
        runs = []
        for i in range(processes):
            print(f"=== {size} bench.py --compile, process {i + 1} of {processes}", flush=True)
            subprocess.run(cmd, cwd=HERE, check=True, stdout=subprocess.DEVNULL)
            runs.append(json.load(open(path + ".run")))
        saved = runs[0] if processes == 1 else {**runs[0], "settings": runs[0]["settings"] | {"processes": processes},
                                                "processes": [r["rows"] for r in runs]}
        write_json(path, saved)
        os.remove(path + ".run")
    return [[r["ms"] for r in rows if r["name"].endswith("+compile")]
            for rows in saved.get("processes", [saved["rows"]])]


# ----------------------------------------------------------------------------- writing


def write_text(path, lines):
    """The lines as a file (written whole: a temporary file renamed into place), and printed."""
    text = "\n".join(lines) + "\n"
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)
    print(text)


def write_json(path, obj, indent=1):
    with open(path + ".tmp", "w") as f:
        json.dump(obj, f, indent=indent)
    os.replace(path + ".tmp", path)


def figure(ncols, width=5.5, height=4.2, **kw):
    """A matplotlib figure with a row of ncols axes (a list), drawn off-screen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False, **kw)
    return fig, list(axes[0])


def save_figure(fig, path):
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
