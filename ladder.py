"""
Does curvature's gain hold as the model grows? The size ladder: the same arms, learning-rate grid and seeds at
several model sizes, with the gain against the baseline read three ways — at equal steps, at equal eager
wall-clock, and at equal compiled cost — plus, at one size, against training length.

    python ladder.py --out results/ladder --no-refine --no-full_eval --on_code_change=reuse --extra --eval_iters=10
        # the CPU ladder of docs/results.md, as it was made (before the fine tuner)
    python ladder.py --quick --out out-ladder-quick  # two tiny sizes, a few iterations: the pipeline in a minute
    python ladder.py --base config/train_fineweb_speedrun_euclid.py --sizes 6x384 12x768 --head_size 128 \\
        --iters 1000 5100 --eval_interval 125 --lrs 1e-3 3.6e-3 1e-2 --device cuda --extra --compile=True

Every run is sweep.py's: `python train.py BASE --n_layer=L --n_embd=W --n_head=W/head_size ARM ...` in a
subprocess, the schedule scaled to its length (10% warmup, cosine to lr/10). Heads are W/head_size at every size,
so that κ₀ ≈ −1/head_size means the same everywhere. Tokens per iteration are the base config's at every size
(batch_size × block_size × gradient_accumulation_steps); the iteration budget is --iters per size.

Tuning (sweep.tune): every arm at every size starts from the same grid (--lrs, sorted); while its best rate sits at
an edge of what it has run, the grid is extended past that edge by the grid's own ratio (at most --max_extend times
each way); then it is bisected in log space until the best has tried neighbours within √2 on both sides (--no-refine
skips this). So each arm is tuned alike, and the table says where a best rate stayed at an edge. Then the other seeds
at the best rate. Differences are paired by seed (same data order) and reported as mean ± std.

The three views of Δ = val loss(arm) − val loss(baseline), per seed:
- equal steps: both at the end of their runs, on the whole validation split (train.py --eval_full; --no-full_eval:
  the last evaluation's batches);
- equal eager wall-clock: both at the earlier of the two runs' end times, each read off its own loss-vs-time
  curve by linear interpolation between evaluations, the clock started at steady stepping (sweep.steady: without
  compilation and warm-up); a curve is anchored at its run's result (`read`: the result plus the curve's change
  from the reading point to its end), so the batch estimates' own level does not enter;
- equal compiled cost: r = compiled ms/iter of the curved block ÷ the baseline's at that size (bench.py --compile,
  alternating rounds in one process; one curved arm is timed and stands for all, as they share the block). The
  curved run at N/r steps is compared with the baseline at N steps (or the baseline at N·r when r < 1), read off
  the loss-vs-step curves, anchored likewise. The run cut at N/r is read mid-decay, at a learning rate its schedule
  has not finished lowering, so this view is biased against the arm that is cut by an amount it cannot measure
  (neither conservative nor fair); only fully decayed runs compare cleanly.

A finished run is reused on a rerun when nothing it depended on changed (sweep.finished), so the ladder can be
stopped and continued; so is a compiled timing that bench.py made with the same arguments. Writes OUT/ladder.md,
OUT/ladder.json, OUT/ladder.png (Δ against non-embedding parameters) and OUT/ladder_length.png (Δ against iterations).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

import sweep

HERE = os.path.dirname(os.path.abspath(__file__))
BASELINE = "euclid+smear"
VIEWS = {"steps": "equal steps", "eager": "equal eager time", "compiled": "equal compiled cost"}
# the base config's model options that bench.py takes as a spec (the sizes and curvature come from each run)
BENCH_KEYS = ("bias", "pos_embedding", "norm", "qk_norm", "attn_scale", "attn_scale_learnable", "mlp", "tie_embeddings",
              "logit_softcap", "zero_init_proj")


# ----------------------------------------------------------------------------- the arithmetic (tested by hand)


def delta(arm, base, view, ratio=1.0):
    """Δ val loss of one seed's arm run against the same seed's baseline run, in one view (see the module
    docstring). arm, base: run summaries (sweep.train_run's)."""
    if view == "steps":
        return sweep.final_loss(arm) - sweep.final_loss(base)
    arm_evals, base_evals = sweep.steady(arm), sweep.steady(base)
    if view == "eager":
        t = min(arm_evals[-1][1], base_evals[-1][1])
        return read(arm, [(e[1], e[2]) for e in arm_evals], t) - read(base, [(e[1], e[2]) for e in base_evals], t)
    n = base_evals[-1][0]  # compiled: the arm's step count at the baseline's cost, or the other way round
    arm_at, base_at = (n / ratio, n) if ratio >= 1 else (n, n * ratio)
    return read(arm, [(e[0], e[2]) for e in arm_evals], arm_at) - read(base, [(e[0], e[2]) for e in base_evals], base_at)


def read(summary, curve, x):
    """A run's loss at x (a step or a time) off its curve of batch estimates, anchored at its result: the result
    (the whole-split loss, when measured) plus how far the curve moves between x and its end. The batch estimates'
    own level is noise (on pycode ±0.03 from the whole split) that the anchor removes; at the end it is the result."""
    return sweep.final_loss(summary) + sweep.interpolate(curve, x) - curve[-1][1]


mean_std = sweep.mean_std


def non_embedding_params(layers, width):
    """12·L·W²: attention's q, k, v and output (4W²) and the MLP's two 4W-wide layers (8W²) per block, no biases
    (the modern block has none, and its RMSNorm has no gains); embeddings, head and the few curvature and smear
    scalars are left out."""
    return 12 * layers * width * width


# ----------------------------------------------------------------------------- running


def parse_size(text):
    layers, _, width = text.partition("x")
    if not (layers.isdigit() and width.isdigit()):
        sys.exit(f"error: a size is LAYERSxWIDTH, e.g. 4x128; got {text!r}")
    return int(layers), int(width)


def size_options(args, size):
    layers, width = parse_size(size)
    if width % args.head_size:
        sys.exit(f"error: width {width} of size {size} is not a multiple of --head_size {args.head_size}")
    return [f"--n_layer={layers}", f"--n_embd={width}", f"--n_head={width // args.head_size}"]


def one_run(args, size, arm, lr, seed, iters, tag=""):
    out_dir = os.path.join(args.out, f"{size}{tag}", arm, f"lr{lr:g}-s{seed}")
    options = [args.base, *size_options(args, size), *sweep.schedule(lr, iters, max(1, iters // args.evals)),
               f"--seed={seed}", f"--device={args.device}", *(["--eval_full=True"] if args.full_eval else []),
               *dict(sweep.ARMS)[arm], *args.extra]
    return sweep.train_run(out_dir, options, f"{size}{tag} {arm} lr={lr:g} seed={seed}", keep_checkpoint=False,
                           on_code_change=args.on_code_change)


def tune(args, size, arm, iters):
    """sweep.tune at the first seed (the grid, extended past an edge best, then refined to √2 unless --no-refine),
    then the other seeds at the best rate. Returns {grid, best_lr, interior, runs: {seed: summary}}."""
    grid = sweep.tune(lambda lr: sweep.final_loss(one_run(args, size, arm, lr, args.seeds[0], iters)), args.lrs,
                      args.max_extend, args.refine)
    best, interior = sweep.best_rate(grid)
    runs = {seed: one_run(args, size, arm, best, seed, iters) for seed in args.seeds}
    return {"grid": grid, "best_lr": best, "interior": interior, "runs": runs}


def bench_setup(base):
    """What bench.py needs to time the base config's model: its options as a spec, and the bench.py arguments for
    its context, batch, vocabulary and κ₀. Config files are Python (as train.py runs them)."""
    path = base if os.path.isabs(base) else os.path.join(HERE, base)
    cfg = {"__file__": path}
    exec(open(path).read(), cfg)
    spec = ":".join(f"{k}={cfg[k]}" for k in BENCH_KEYS if k in cfg)
    vocab = {"shakespeare_char": 65, "pycode": 256, "enwik8": 256}.get(cfg.get("dataset", "shakespeare_char"), 50304)
    return spec, ["--block_size", str(cfg.get("block_size", 64)), "--batch_size", str(cfg.get("batch_size", 12)),
                  "--vocab_size", str(vocab), "--curvature_init", str(cfg.get("curvature_init", -0.05))]


def compiled_ratio(args, size):
    """Compiled ms/iter of the curved block over the baseline's at this size (bench.py, alternating rounds)."""
    if args.cost_ratios:
        return args.cost_ratios[args.sizes.index(size)]
    path = os.path.abspath(os.path.join(args.out, "bench", f"{size}.json"))
    layers, width = parse_size(size)
    spec, context = bench_setup(args.base)
    base, curved = f"euclidean:smear=True:{spec}", f"hyperbolic:prev_token:tangent:smear=False:{spec}"
    want = {"compile": True, "optimizer": "muon", "configs": [base, curved], "n_layer": layers, "n_embd": width,
            "n_head": width // args.head_size, "device": args.device, "rounds": args.bench_rounds,
            **{k[2:]: v for k, v in zip(context[::2], context[1::2])}}
    saved = json.load(open(path)) if os.path.exists(path) else None
    # reused only if it timed this model: bench.py records its arguments (context values compared as text)
    if saved is None or any(str(saved["settings"].get(k)) != str(v) for k, v in want.items()):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        cmd = [sys.executable, os.path.join(HERE, "bench.py"), "--compile", "--optimizer", "muon", "--configs", base,
               curved, "--n_layer", str(layers), "--n_embd", str(width), "--n_head", str(width // args.head_size),
               "--device", args.device, "--rounds", str(args.bench_rounds), "--json", path, *context]
        print(f"=== {size} bench.py --compile", flush=True)
        subprocess.run(cmd, cwd=HERE, check=True, stdout=subprocess.DEVNULL)
        saved = json.load(open(path))
    rows = {r["name"]: r["ms"] for r in saved["rows"]}
    compiled = [ms for name, ms in rows.items() if name.endswith("+compile")]
    return compiled[1] / compiled[0]


def summarize(args, results, ratios):
    """One row per size and arm: best rate, val at equal steps, and Δ ± std in the three views."""
    rows = []
    for size, arms in results.items():
        base = arms[BASELINE]["runs"]
        for arm, r in arms.items():
            finals = [sweep.final_loss(s) for s in r["runs"].values()]
            row = {"size": size, "params": non_embedding_params(*parse_size(size)), "iters": args.iters_of[size],
                   "arm": arm, "best_lr": r["best_lr"], "interior": r["interior"], "val": mean_std(finals),
                   "ratio": ratios[size],
                   "ms_per_iter": statistics.median(s["ms_per_iter"] for s in r["runs"].values())}
            for view in VIEWS:
                row[view] = mean_std([delta(r["runs"][sd], base[sd], view, ratios[size])
                                      for sd in args.seeds])
            if arm.startswith("free"):  # heads that ended with κ > 0, per block, in each seed
                row["positive_heads"] = [positive_heads(s["kappa"]) for s in r["runs"].values()]
            rows.append(row)
    return rows


def positive_heads(kappa):
    blocks = sorted({int(k.split("/")[1][5:]) for k in kappa})
    return [sum(v > 0 for k, v in kappa.items() if k.split("/")[1] == f"block{b}") for b in blocks]


def length_curve(args, base_runs, arm_runs):
    """Paired Δ (mean, std) at every evaluation of the long runs."""
    out = []
    for i, (it, _, _) in enumerate(base_runs[args.seeds[0]]["evals"]):
        diffs = [arm_runs[sd]["evals"][i][2] - base_runs[sd]["evals"][i][2] for sd in args.seeds]
        out.append((it, *mean_std(diffs)))
    return out


def write_markdown(args, rows, length, path):
    fmt = lambda ms: f"{ms[0]:+.4f} ± {ms[1]:.4f}"  # noqa: E731
    lines = [f"Δ = val loss(arm) − val loss({BASELINE}), paired by seed over seeds {args.seeds}, mean ± std; "
             f"each arm at its best learning rate of the grid (`*`: the best stayed at the grid's edge after "
             f"{args.max_extend} extensions); compiled ratio = compiled ms/iter curved ÷ baseline at that size.", "",
             "| size | non-emb. params | iters | arm | best lr | val loss, equal steps | Δ equal steps | "
             "Δ equal eager time | compiled ratio | Δ equal compiled cost | ms/iter (eager) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['size']} | {r['params']:,} | {r['iters']} | {r['arm']} | {r['best_lr']:g}"
                     f"{'' if r['interior'] else '*'} | {r['val'][0]:.4f} ± {r['val'][1]:.4f} | "
                     + ("– | – | – | – |" if r["arm"] == BASELINE else
                        f"{fmt(r['steps'])} | {fmt(r['eager'])} | {r['ratio']:.2f} | {fmt(r['compiled'])} |")
                     + f" {r['ms_per_iter']:.1f} |")
    free = [r for r in rows if "positive_heads" in r]
    if free:
        lines += ["", "free-prev-tangent: heads with κ > 0 at the end, per block (one list per seed)", ""]
        lines += [f"- {r['size']}: {r['positive_heads']} of {parse_size(r['size'])[1] // args.head_size} heads "
                  f"per block" for r in free]
    if length:
        lines += ["", f"Length: {args.length_size} at {args.length_mult}× its iterations, Δ at each evaluation", "",
                  "| iter | " + " | ".join(length) + " |", "|---|" + "---|" * len(length)]
        for i, point in enumerate(next(iter(length.values()))):
            lines.append(f"| {point[0]} | " + " | ".join(fmt(c[i][1:]) for c in length.values()) + " |")
    grids = {(r["size"], r["arm"]): r for r in rows}
    lines += ["", f"Learning-rate grids, seed {args.seeds[0]}: val loss after the run", ""]
    for (size, arm), r in grids.items():
        grid = args.grids[size][arm]
        lines.append(f"- {size} {arm}: " + ", ".join(f"{lr:g} → {loss:.4f}" for lr, loss in sorted(grid.items())))
    text = "\n".join(lines) + "\n"
    with open(path, "w") as f:
        f.write(text)
    print(text)


def plot(args, rows, length, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = [a for a in dict.fromkeys(r["arm"] for r in rows) if a != BASELINE]
    fig, axes = plt.subplots(1, len(arms), figsize=(4.5 * len(arms), 4), sharey=True, squeeze=False)
    for ax, arm in zip(axes[0], arms):
        mine = [r for r in rows if r["arm"] == arm]
        for view, label in VIEWS.items():
            ax.errorbar([r["params"] for r in mine], [r[view][0] for r in mine], yerr=[r[view][1] for r in mine],
                        marker="o", capsize=3, label=label)
        ax.axhline(0, color="gray", lw=0.8)
        ax.set_xscale("log")
        ax.minorticks_off()  # the sizes label the axis; log minor labels would overlap them
        ax.set_xticks([r["params"] for r in mine], [f"{r['size']}\n{r['params']:,}" for r in mine], fontsize=8)
        ax.set_title(f"{arm} − {BASELINE}")
        ax.set_xlabel("non-embedding parameters")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("Δ val loss (< 0: the arm is ahead)")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "ladder.png"), dpi=110)
    plt.close(fig)
    if length:
        fig, ax = plt.subplots(figsize=(6, 4))
        for arm, curve in length.items():
            xs, ys, sd = zip(*curve)
            ax.plot(xs, ys, marker=".", label=f"{arm} − {BASELINE}")
            ax.fill_between(xs, [y - s for y, s in zip(ys, sd)], [y + s for y, s in zip(ys, sd)], alpha=0.2)
        ax.axhline(0, color="gray", lw=0.8)
        ax.set_xlabel(f"iteration ({args.length_size}, {args.length_mult}× budget)")
        ax.set_ylabel("Δ val loss, mean ± std over seeds")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(out, "ladder_length.png"), dpi=110)
        plt.close(fig)


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", default="config/train_shakespeare_char_modern.py",
                   help="the config every run starts from (each arm sets its curvature)")
    p.add_argument("--sizes", nargs="+", default=["2x32", "2x64", "4x128", "6x192"], help="LAYERSxWIDTH")
    p.add_argument("--iters", type=int, nargs="+", default=[600], help="iterations per size (one value: all)")
    p.add_argument("--head_size", type=int, default=32)
    p.add_argument("--arms", nargs="+", default=[BASELINE, "zero-prev-tangent", "hyp-prev-tangent"])
    p.add_argument("--free_sizes", nargs="*", default=None, help="sizes that also run free-prev-tangent "
                   "(default: every size but the smallest)")
    p.add_argument("--lrs", type=float, nargs="+", default=[3e-3, 1e-2, 3e-2], help="the starting grid (geometric)")
    p.add_argument("--max_extend", type=int, default=2, help="grid extensions allowed past each edge")
    p.add_argument("--refine", action=argparse.BooleanOptionalAction, default=True,
                   help="bisect until each best rate has tried neighbours within √2 (--no-refine: the grid only)")
    p.add_argument("--full_eval", action=argparse.BooleanOptionalAction, default=True,
                   help="each run's result is its loss on the whole validation split (train.py --eval_full)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1337, 1, 2], help="the first also runs the grid")
    p.add_argument("--evals", type=int, default=12, help="evaluations per run")
    p.add_argument("--length_size", default="4x128", help="the size whose runs are repeated longer ('' to skip)")
    p.add_argument("--length_mult", type=int, default=4)
    p.add_argument("--cost_ratios", type=float, nargs="*", default=None,
                   help="compiled cost ratios per size instead of measuring them (e.g. from a GPU's bench.py)")
    p.add_argument("--bench_rounds", type=int, default=7)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="out-ladder")
    p.add_argument("--quick", action="store_true", help="two tiny sizes and a few iterations, for CI")
    sweep.add_reuse_argument(p)
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more train.py overrides for every run")
    args = p.parse_args(argv)
    args.lrs = sorted(set(args.lrs))  # the grid's ratio and edges are read off the sorted grid
    if args.quick:
        args.sizes, args.iters, args.head_size, args.seeds = ["1x16", "2x32"], [8], 16, args.seeds[:2]
        args.evals, args.length_size, args.length_mult, args.bench_rounds = 2, "1x16", 2, 2
    for size in args.sizes:
        size_options(args, size)  # a malformed size fails here, before any run
    if len(args.iters) not in (1, len(args.sizes)):
        sys.exit(f"error: --iters takes one value or one per size ({len(args.sizes)})")
    if args.cost_ratios is not None and len(args.cost_ratios) != len(args.sizes):
        sys.exit(f"error: --cost_ratios takes one value per size ({len(args.sizes)})")
    unknown = set(args.arms) - set(dict(sweep.ARMS)) | ({BASELINE} - set(args.arms))
    if unknown:
        sys.exit(f"error: arms {sorted(unknown)}: choose from {[a for a, _ in sweep.ARMS]}, including {BASELINE}")
    args.iters_of = dict(zip(args.sizes, args.iters * len(args.sizes) if len(args.iters) == 1 else args.iters))
    if args.free_sizes is None:
        by_size = sorted(args.sizes, key=lambda s: non_embedding_params(*parse_size(s)))
        args.free_sizes = by_size[1:] if len(by_size) > 1 else by_size
    if args.length_size and args.length_size not in args.sizes:
        sys.exit(f"error: --length_size {args.length_size} is not one of --sizes")
    return args


def main(argv=None):
    args = parse(argv)
    os.makedirs(args.out, exist_ok=True)
    results, args.grids = {}, {}
    for size in args.sizes:
        arms = args.arms + (["free-prev-tangent"] if size in args.free_sizes and "free-prev-tangent" not in args.arms
                            else [])
        results[size] = {arm: tune(args, size, arm, args.iters_of[size]) for arm in arms}
        args.grids[size] = {arm: r["grid"] for arm, r in results[size].items()}
    ratios = {size: compiled_ratio(args, size) for size in args.sizes}
    length = {}
    if args.length_size:
        size, iters = args.length_size, args.iters_of[args.length_size] * args.length_mult
        long_runs = {arm: {sd: one_run(args, size, arm, results[size][arm]["best_lr"], sd, iters, tag="-long")
                           for sd in args.seeds} for arm in (BASELINE, "zero-prev-tangent", "hyp-prev-tangent")
                     if arm in results[size]}
        length = {arm: length_curve(args, long_runs[BASELINE], runs) for arm, runs in long_runs.items()
                  if arm != BASELINE}
    rows = summarize(args, results, ratios)
    write_markdown(args, rows, length, os.path.join(args.out, "ladder.md"))
    plot(args, rows, length, args.out)
    with open(os.path.join(args.out, "ladder.json"), "w") as f:
        json.dump({"settings": {k: v for k, v in vars(args).items() if k != "grids"}, "rows": rows, "length": length,
                   "grids": {s: {a: {str(lr): v for lr, v in g.items()} for a, g in arms.items()}
                             for s, arms in args.grids.items()},
                   "runs": {s: {a: {str(sd): run for sd, run in r["runs"].items()} for a, r in arms.items()}
                            for s, arms in results.items()}}, f, indent=1)
    print(f"wrote {args.out}/ladder.md, ladder.json, ladder.png" + (", ladder_length.png" if length else ""))
    return rows


if __name__ == "__main__":
    main()
