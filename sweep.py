"""
A fair comparison in one command: every arm gets the same learning-rate grid and budget, each arm's rate is tuned
until the best is interior with neighbours within √2, the best rate is rerun with more seeds, and the table
reports val loss at equal steps and at equal wall-clock.

    python sweep.py                                   # the modern-block experiment (docs/results.md)
    python sweep.py --max_iters 300 --lrs 1e-2 3e-2 --seeds 1337 1 --out out-sweep-quick

Each run is `python train.py BASE --out_dir=OUT/ARM/lrLR-sSEED ...` in a subprocess, one at a time (wall-clock is
only comparable between runs that did not share the machine). Its result is its loss on the whole validation
split (train.py --eval_full=True): the same text for every arm and seed. Tuning (`tune`, at the first seed): the
grid --lrs, extended past an edge best by its own ratio (--max_extend times at most), then bisected in log space
until the best has tried neighbours within √2 on both sides (--no-refine: the grid only).

A finished run (its summary.json, written when the run ends) is reused on a rerun when nothing it depended on
changed (`finished`: command line, config files, data, code), so an interrupted sweep continues where it stopped.
Writes OUT/sweep.json, OUT/sweep.md (the tables) and OUT/sweep.png (val loss against iteration and against
wall-clock, mean over seeds at each arm's best rate). ladder.py runs these arms over model sizes with the same
helpers.
"""
import argparse
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
DEFAULT_ARMS = ["euclid", "euclid+smear", "zero-prev-tangent", "hyp-prev-tangent", "hyp-prev-tangent+smear"]


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
# options added after runs were recorded, each with the value that reproduces what the code did before it existed:
# at that value the option is left out, so a finished run stays valid when a new option appears
LEGACY = {"sampler": "random"}


def resolved_options(cfg, drop=NOT_COMPUTED):
    """The options of a resolved config that can change what a run computes: all but `drop`, κ's initial value in a
    model whose κ is not learned or fixed (curvature 'euclidean' or 'zero' never reads it), and any LEGACY option at
    the value that reproduces the code before it."""
    drop = set(drop) | ({"curvature_init"} if cfg.get("curvature") in ("euclidean", "zero") else set())
    return {k: v for k, v in cfg.items() if k not in drop and not (k in LEGACY and v == LEGACY[k])}


def _hash(options):
    return hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:16]


def resolved(options):
    """{"options": the resolved options (resolved_options), "legacy": their hash by the rule before NOT_COMPUTED grew,
    what older records hold}; None when the options do not resolve: train.py will say why."""
    from configurator import ConfigError
    try:
        cfg = options_config(options)
    except ConfigError:
        return None
    return {"options": resolved_options(cfg), "legacy": _hash(resolved_options(cfg, OLD_NOT_COMPUTED))}


def same_options(old, new):
    """Whether a recorded run resolved to the options `new` (resolved()) resolves to: compared as dicts where the
    record has them, by the old rule's hash where it has only that (a record before this rule)."""
    if new is None:
        return False
    if isinstance(old, dict):
        return old["options"] == new["options"]
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


def train_run(out_dir, options, label, keep_checkpoint=True, inputs=None, on_code_change="stop"):
    """`python train.py *options` into out_dir, or the summary of a finished run that `finished` may reuse. The
    summary: evaluations [(iter, wall-clock s, val loss)], startup_s (the wall-clock before steady stepping:
    compilation and warm-up), final (the loss on the whole validation split when the run logged it, else None), test
    (the same on the test split, where the data has one),
    median ms/iter, the last logged κ (and reference share α) per block and head ({} for a Euclidean run) and the
    fingerprint. It is written when the run ends, so a run cut short is run again."""
    summary = finished(out_dir, options, inputs, on_code_change)
    if summary is not None:
        return summary
    path = os.path.join(out_dir, "summary.json")
    cmd = [sys.executable, os.path.join(HERE, "train.py"), *options, f"--out_dir={out_dir}", "--overwrite=True"]
    print(f"=== {label}", flush=True)
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
    with open(path + ".tmp", "w") as f:
        json.dump(summary, f)
    os.replace(path + ".tmp", path)
    ckpt = os.path.join(out_dir, "ckpt.pt")  # (none when always_save_checkpoint=False saw no improvement)
    if not keep_checkpoint and os.path.exists(ckpt):  # the ladder keeps logs and summaries, not MiB of weights
        os.remove(ckpt)
    return summary


def final_loss(summary):
    """A run's result: the loss on the whole validation split when it was measured, else the last evaluation."""
    return summary["final"] if summary.get("final") is not None else summary["evals"][-1][2]


def steady(summary):
    """The evaluations with the clock started at steady stepping: wall-clock minus startup_s (compilation, which is
    longer for the curved graphs, and warm-up), so that equal-time views compare training, not compiling."""
    start = summary.get("startup_s", 0.0)
    return [(it, max(0.0, wall - start), loss) for it, wall, loss in summary["evals"]]


def add_reuse_argument(parser):
    parser.add_argument("--on_code_change", choices=("stop", "retrain", "reuse"), default="stop",
                        help="a finished run trained by other code: stop and say so, train it again, or reuse it")


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


def schedule(lr, iters, eval_interval):
    """The same schedule shape for every run: 10% warmup, cosine to lr/10 at the end."""
    return [f"--learning_rate={lr}", f"--min_lr={lr / 10}", f"--max_iters={iters}", f"--lr_decay_iters={iters}",
            f"--warmup_iters={max(1, iters // 10)}", f"--eval_interval={eval_interval}"]


def run(args, arm, lr, seed):
    """Train one run of the sweep (or reuse a finished one); return its evaluations (clock from steady stepping),
    final loss and median ms/iter."""
    out_dir = os.path.join(args.out, arm[0], f"lr{lr:g}-s{seed}")
    options = [args.base, *schedule(lr, args.max_iters, args.eval_interval), f"--seed={seed}",
               f"--device={args.device}", *(["--eval_full=True"] if args.full_eval else []), *arm[1], *args.extra]
    summary = train_run(out_dir, options, f"{arm[0]} lr={lr:g} seed={seed}", on_code_change=args.on_code_change)
    return {"out_dir": out_dir, "lr": lr, "seed": seed, "evals": steady(summary), "final": final_loss(summary),
            "ms_per_iter": summary["ms_per_iter"]}


def interpolate(points, x):
    """y at x on the piecewise-linear curve through points [(x, y)] sorted by x; None outside it."""
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return points[-1][1] if points and x == points[-1][0] else None


def at_wall(evals, budget, final=None):
    """Val loss at `budget` seconds of the run's clock, read off its loss-vs-time curve by linear interpolation
    between evaluations and, given the run's whole-split result `final`, anchored at it (the curve's change from
    `budget` to its end added to the result: ladder.read's rule too); NaN past the run's end."""
    y = interpolate([(wall, loss) for _, wall, loss in evals], budget)
    if y is None:
        return float("nan")
    return y if final is None else final + y - evals[-1][2]


def mean_std(xs):
    """(mean, sample std) of xs; NaN for both when one is NaN (statistics.stdev raises on NaN in Python 3.11)."""
    if any(math.isnan(x) for x in xs):
        return float("nan"), float("nan")
    return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def summarize(results, seeds):
    """The grid, each arm's best rate, and the seed statistics at equal steps (final loss) and at equal wall-clock."""
    grid = {name: {r["lr"]: r["final"] for r in runs if r["seed"] == seeds[0]} for name, runs in results.items()}
    best = {name: best_rate(g)[0] for name, g in grid.items()}
    finals = {name: [r for r in runs if r["lr"] == best[name]] for name, runs in results.items()}
    budget = min(r["evals"][-1][1] for runs in finals.values() for r in runs)  # the fastest run's total time
    rows = []
    for name, runs in finals.items():
        steps = mean_std([r["final"] for r in runs])
        wall = mean_std([at_wall(r["evals"], budget, r["final"]) for r in runs])
        rows.append({"arm": name, "best_lr": best[name], "interior": best_rate(grid[name])[1],
                     "seeds": [r["seed"] for r in runs], "val_at_steps": steps, "val_at_wall": wall,
                     "ms_per_iter": statistics.median(r["ms_per_iter"] for r in runs),
                     "finals": {r["seed"]: (r["final"], at_wall(r["evals"], budget, r["final"])) for r in runs}})
    # a seed fixes the data order (and, without the full-split evaluation, the evaluation batches), so differences
    # within a seed are the sharp comparison
    ref = next((r for r in rows if r["arm"] == "euclid+smear"), rows[0])
    for r in rows:
        for i, key in enumerate(("diff_at_steps", "diff_at_wall")):
            r[key] = mean_std([r["finals"][sd][i] - ref["finals"][sd][i] for sd in seeds])
    for r in rows:
        r.pop("finals")
    rows[0]["reference"] = ref["arm"]
    return {"budget_s": budget, "rows": rows, "grid": grid}


def write_tables(summary, args, path):
    where = "the whole validation split" if args.full_eval else "the last evaluation's batches"
    lines = [f"val loss after {args.max_iters} iterations (equal steps, on {where}) and after "
             f"{summary['budget_s']:.0f} s (equal wall-clock from steady stepping: the fastest run's time, batch "
             f"estimates interpolated), mean ± std over seeds {args.seeds} at each arm's best learning rate (`*`: the "
             f"best is at the grid's edge); Δ: the difference to {summary['rows'][0]['reference']} within each seed, "
             f"mean ± std; bits = nats / ln 2 per token", "",
             "| arm | best lr | val loss, equal steps | bits | Δ, equal steps | val loss, equal wall-clock | Δ, equal "
             "wall-clock | ms/iter |",
             "|---|---|---|---|---|---|---|---|"]
    for r in summary["rows"]:
        (s, sd), (w, wd) = r["val_at_steps"], r["val_at_wall"]
        (ds, dsd), (dw, dwd) = r["diff_at_steps"], r["diff_at_wall"]
        lines.append(f"| {r['arm']} | {r['best_lr']:g}{'' if r['interior'] else '*'} | {s:.4f} ± {sd:.4f} | "
                     f"{s / math.log(2):.4f} | {ds:+.4f} ± {dsd:.4f} | {w:.4f} ± {wd:.4f} | {dw:+.4f} ± {dwd:.4f} | "
                     f"{r['ms_per_iter']:.1f} |")
    lines += ["", f"learning-rate grid, seed {args.seeds[0]}: val loss after {args.max_iters} iterations", ""]
    for name, grid in summary["grid"].items():
        lines.append(f"- {name}: " + ", ".join(f"{lr:g} → {loss:.4f}" for lr, loss in sorted(grid.items())))
    text = "\n".join(lines) + "\n"
    with open(path, "w") as f:
        f.write(text)
    print(text)


def plot(results, summary, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    best = {r["arm"]: r["best_lr"] for r in summary["rows"]}
    for name, runs in results.items():
        runs = [r for r in runs if r["lr"] == best[name]]
        n = min(len(r["evals"]) for r in runs)
        for ax, column in zip(axes, (0, 1)):
            xs = [statistics.mean(r["evals"][i][column] for r in runs) for i in range(n)]
            ys = [statistics.mean(r["evals"][i][2] for r in runs) for i in range(n)]
            ax.plot(xs, ys, marker=".", label=f"{name} (lr {best[name]:g})")
    low = min(r["val_at_steps"][0] for r in summary["rows"])
    for ax, label in zip(axes, ("iteration", "wall-clock seconds")):
        ax.set_ylim(low - 0.05, low + 0.5)  # the differences are at the end, not in the first steps
        ax.set_xlabel(label)
        ax.set_ylabel("val loss (mean over seeds)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[1].axvline(summary["budget_s"], color="gray", ls=":")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", default="config/train_shakespeare_char_modern.py", help="the config every arm starts from")
    p.add_argument("--lrs", type=float, nargs="+", default=[3e-3, 1e-2, 3e-2])
    p.add_argument("--seeds", type=int, nargs="+", default=[1337, 1, 2], help="the first also runs the grid")
    p.add_argument("--max_iters", type=int, default=600)
    p.add_argument("--eval_interval", type=int, default=50)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="out-sweep")
    p.add_argument("--arms", nargs="+", default=DEFAULT_ARMS, help=f"a subset of {[a[0] for a in ARMS]}")
    p.add_argument("--max_extend", type=int, default=2, help="grid extensions allowed past each edge")
    p.add_argument("--refine", action=argparse.BooleanOptionalAction, default=True,
                   help="bisect until each best rate has tried neighbours within √2 (--no-refine: the grid only)")
    p.add_argument("--full_eval", action=argparse.BooleanOptionalAction, default=True,
                   help="each run's result is its loss on the whole validation split (train.py --eval_full)")
    add_reuse_argument(p)
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more train.py overrides for every run")
    args = p.parse_args(argv)
    unknown = set(args.arms) - {a[0] for a in ARMS}
    if unknown:
        sys.exit(f"error: unknown arms {sorted(unknown)}; choose from {[a[0] for a in ARMS]}")
    arms = [a for a in ARMS if a[0] in args.arms]
    results = {}
    for a in arms:
        first = {}  # the first seed's runs, by rate

        def loss_at(lr, a=a, first=first):
            first[lr] = run(args, a, lr, args.seeds[0])
            return first[lr]["final"]

        best = best_rate(tune(loss_at, args.lrs, args.max_extend, args.refine))[0]
        results[a[0]] = list(first.values()) + [run(args, a, best, seed) for seed in args.seeds[1:]]
    summary = summarize(results, args.seeds)
    os.makedirs(args.out, exist_ok=True)
    write_tables(summary, args, os.path.join(args.out, "sweep.md"))
    plot(results, summary, os.path.join(args.out, "sweep.png"))
    with open(os.path.join(args.out, "sweep.json"), "w") as f:
        json.dump({"settings": vars(args), "summary": summary, "runs": results}, f, indent=1)
    print(f"wrote {args.out}/sweep.md, sweep.png, sweep.json")
    return summary


if __name__ == "__main__":
    main()
