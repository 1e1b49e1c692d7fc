"""
A fair comparison in one command: every arm gets the same learning-rate grid and budget, its best rate is rerun
with more seeds, and the table reports val loss at equal steps and at equal wall-clock.

    python sweep.py                                   # the modern-block experiment (docs/results.md)
    python sweep.py --max_iters 300 --lrs 1e-2 3e-2 --seeds 1337 1 --out out-sweep-quick

Each run is `python train.py BASE --out_dir=OUT/ARM/lrLR-sSEED ...` in a subprocess, one at a time (wall-clock is
only comparable between runs that did not share the machine). A finished run (its summary.json, written when the
run ends, for the same command) is reused on a rerun, so an interrupted sweep continues where it stopped. Writes
OUT/sweep.json, OUT/sweep.md (the tables) and OUT/sweep.png (val loss against iteration and against wall-clock,
mean over seeds at each arm's best rate). ladder.py runs these arms over model sizes with the same helpers.
"""
import argparse
import json
import os
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
]
DEFAULT_ARMS = ["euclid", "euclid+smear", "zero-prev-tangent", "hyp-prev-tangent", "hyp-prev-tangent+smear"]


def records(out_dir):
    with open(os.path.join(out_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def finished(out_dir, options):
    """The summary of a finished run of these options in out_dir (what train_run reuses), else None."""
    path = os.path.join(out_dir, "summary.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        summary = json.load(f)
    return summary if summary["options"] == list(options) else None


def train_run(out_dir, options, label, keep_checkpoint=True):
    """`python train.py *options` into out_dir, or the summary of a finished run of the same options there. The
    summary: evaluations [(iter, wall-clock s, val loss)], median ms/iter, and the last logged κ (and reference share
    α) per block and head ({} for a Euclidean run). It is written when the run ends, so a run cut short is run again."""
    summary = finished(out_dir, options)
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
    kappa = next(({k: v for k, v in r.items() if k.startswith(("curvature/", "share/")) and "/head" in k}
                  for r in reversed(recs) if any(k.startswith("curvature/") for k in r)), {})
    summary = {"options": list(options),
               "evals": [(r["iter"], r["wall"], r["val/loss"]) for r in recs if "val/loss" in r],
               "ms_per_iter": statistics.median(ms) if ms else float("nan"), "kappa": kappa}
    with open(path + ".tmp", "w") as f:
        json.dump(summary, f)
    os.replace(path + ".tmp", path)
    ckpt = os.path.join(out_dir, "ckpt.pt")  # (none when always_save_checkpoint=False saw no improvement)
    if not keep_checkpoint and os.path.exists(ckpt):  # the ladder keeps logs and summaries, not MiB of weights
        os.remove(ckpt)
    return summary


def schedule(lr, iters, eval_interval):
    """The same schedule shape for every run: 10% warmup, cosine to lr/10 at the end."""
    return [f"--learning_rate={lr}", f"--min_lr={lr / 10}", f"--max_iters={iters}", f"--lr_decay_iters={iters}",
            f"--warmup_iters={max(1, iters // 10)}", f"--eval_interval={eval_interval}"]


def run(args, arm, lr, seed):
    """Train one run of the sweep (or reuse a finished one); return its evaluations and median ms/iter."""
    out_dir = os.path.join(args.out, arm[0], f"lr{lr:g}-s{seed}")
    options = [args.base, *schedule(lr, args.max_iters, args.eval_interval), f"--seed={seed}",
               f"--device={args.device}", *arm[1], *args.extra]
    summary = train_run(out_dir, options, f"{arm[0]} lr={lr:g} seed={seed}")
    return {"out_dir": out_dir, "lr": lr, "seed": seed, "evals": summary["evals"],
            "ms_per_iter": summary["ms_per_iter"]}


def at_wall(evals, budget):
    """Val loss of the last evaluation made within `budget` wall-clock seconds."""
    within = [loss for _, wall, loss in evals if wall <= budget]
    return within[-1] if within else float("nan")


def mean_std(xs):
    return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def summarize(results, seeds):
    """The grid, each arm's best rate, and the seed statistics at equal steps and at equal wall-clock."""
    best = {}
    for name, runs in results.items():
        grid = {r["lr"]: r["evals"][-1][2] for r in runs if r["seed"] == seeds[0]}
        best[name] = min(grid, key=grid.get)
    finals = {name: [r for r in runs if r["lr"] == best[name]] for name, runs in results.items()}
    budget = min(r["evals"][-1][1] for runs in finals.values() for r in runs)  # the fastest run's total time
    rows = []
    for name, runs in finals.items():
        steps = mean_std([r["evals"][-1][2] for r in runs])
        wall = mean_std([at_wall(r["evals"], budget) for r in runs])
        rows.append({"arm": name, "best_lr": best[name], "seeds": [r["seed"] for r in runs], "val_at_steps": steps,
                     "val_at_wall": wall, "ms_per_iter": statistics.median(r["ms_per_iter"] for r in runs),
                     "finals": {r["seed"]: (r["evals"][-1][2], at_wall(r["evals"], budget)) for r in runs}})
    # a seed fixes the data order and the evaluation batches, so differences within a seed are the sharp comparison
    ref = next((r for r in rows if r["arm"] == "euclid+smear"), rows[0])
    for r in rows:
        for i, key in enumerate(("diff_at_steps", "diff_at_wall")):
            r[key] = mean_std([r["finals"][sd][i] - ref["finals"][sd][i] for sd in seeds])
    for r in rows:
        r.pop("finals")
    rows[0]["reference"] = ref["arm"]
    grid = {name: {r["lr"]: r["evals"][-1][2] for r in runs if r["seed"] == seeds[0]} for name, runs in results.items()}
    return {"budget_s": budget, "rows": rows, "grid": grid}


def write_tables(summary, args, path):
    lines = [f"val loss after {args.max_iters} iterations (equal steps) and after {summary['budget_s']:.0f} s "
             f"(equal wall-clock: the fastest run's time), mean ± std over seeds {args.seeds} at each arm's best "
             f"learning rate; Δ: the difference to {summary['rows'][0]['reference']} within each seed (same data "
             f"order and evaluation batches), mean ± std", "",
             "| arm | best lr | val loss, equal steps | Δ, equal steps | val loss, equal wall-clock | Δ, equal "
             "wall-clock | ms/iter |",
             "|---|---|---|---|---|---|---|"]
    for r in summary["rows"]:
        (s, sd), (w, wd) = r["val_at_steps"], r["val_at_wall"]
        (ds, dsd), (dw, dwd) = r["diff_at_steps"], r["diff_at_wall"]
        lines.append(f"| {r['arm']} | {r['best_lr']:g} | {s:.4f} ± {sd:.4f} | {ds:+.4f} ± {dsd:.4f} | "
                     f"{w:.4f} ± {wd:.4f} | {dw:+.4f} ± {dwd:.4f} | {r['ms_per_iter']:.1f} |")
    lines += ["", f"learning-rate grid, seed {args.seeds[0]}: val loss after {args.max_iters} iterations", "",
              "| arm | " + " | ".join(f"lr {lr:g}" for lr in args.lrs) + " |",
              "|---|" + "---|" * len(args.lrs)]
    for name, grid in summary["grid"].items():
        lines.append(f"| {name} | " + " | ".join(f"{grid[lr]:.4f}" for lr in args.lrs) + " |")
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
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more train.py overrides for every run")
    args = p.parse_args(argv)
    unknown = set(args.arms) - {a[0] for a in ARMS}
    if unknown:
        sys.exit(f"error: unknown arms {sorted(unknown)}; choose from {[a[0] for a in ARMS]}")
    arms = [a for a in ARMS if a[0] in args.arms]
    results = {a[0]: [run(args, a, lr, args.seeds[0]) for lr in args.lrs] for a in arms}
    for a in arms:
        grid = {r["lr"]: r["evals"][-1][2] for r in results[a[0]]}
        lr = min(grid, key=grid.get)
        results[a[0]] += [run(args, a, lr, seed) for seed in args.seeds[1:]]
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
