"""
At the end of training: does mixed curvature's per-step lead survive a fine tuner, longer training, a hypersphere
(nGPT) control and a second corpus? The size ladder's lead was measured at 600 iterations, a slice of one epoch;
this study measures every arm at the end of fully decayed runs of 1×, 4× and 16× that length.

    python study.py --out results/study          # the CPU study of docs/results.md; one run at a time; resumes
    python study.py --quick --out out-study-quick   # tiny blocks, a few iterations: the pipeline in a minute

Blocks, run in this order so that each finished block is a result on its own (--blocks picks others, e.g.
pycode:4x128:1 where the budget allows; CORPUS:SIZE:MULT:ARM,ARM names a block's arms):
    1×: shakespeare_char 4x128, pycode 2x64, shakespeare_char 6x192   (the ladder's 1× with the fine tuner)
    4×: pycode 2x64, shakespeare_char 4x128 (it repeats the corpus: 1.8 passes; without κ ≡ 0, see SKIP)
    16×: pycode 2x64 (9,600 iterations, 7.4M of its 23.2M training bytes: no byte seen twice; without κ ≡ 0)

Every run is sweep.py's (`python train.py CONFIG --n_layer ... ARM ...` in a subprocess), with the schedule stretched
to its length (10% warmup but for nGPT, cosine to lr/10 at the last step; ngpt-adamw: its own recipe, to zero), its
training windows read in a seeded shuffled order with no window repeated before the epoch is through
(--sampler=epoch), and its results the losses on the whole validation and test splits (train.py --eval_full). Arms:
the baseline euclid+smear (the speedrun's modern block), ngpt (nGPT's block on the baseline's Muon recipe),
ngpt-adamw (nGPT's block on its published AdamW recipe), zero-prev-tangent (the previous-token reference, κ ≡ 0)
and free-prev-tangent (mixed curvature); --arms adds hyp-prev-tangent.

Seeds: the rate is tuned at --tune_seed alone and every reported number comes from --seeds, which must not include
it (the best of a grid at one seed is lucky at that seed: reporting it would flatter every arm's absolute loss). The
rate is chosen on val; reported losses are on test where the data has one (pycode), else on val.

Tuning, per arm and block, at the tuning seed (sweep.tune): a block's first length starts from the coarse grid --lrs,
extended past an edge best and bisected until the best has tried neighbours within √2 on both sides; a longer length
starts from the √2 grid around the same arm's best at the previous length of its corpus and size (b/√2, b, b·√2;
extended by √2 while the best is at an edge, up to --max_extend times), and so does a 1× block whose arm the size
ladder already ran on the √10 grid (PRIOR: its best). Then the other seeds at the best rate.

Views of Δ = loss(arm) − loss(euclid+smear), paired by seed (the same data order; the same validation text for all):
- equal steps: the final losses, in nats (bits = nats / ln 2 per character or byte), mean ± sample std over the n
  reported seeds, the paired t and its 95% interval (mean ± t(0.975, n−1)·std/√n);
- equal compiled cost: r = compiled ms/iter of the arm's block ÷ the baseline's at that size (bench.py --compile,
  the blocks alternating in one process, each with its own optimizer; the curved arms share one timing); the arm at
  N/r steps against the baseline at N (or the baseline at N·r when r < 1), read off the loss-vs-step curves of batch
  estimates anchored at each run's whole-split result (ladder.read: the curves give the change, the result the
  level). The run that is cut is read mid-decay, at a learning rate its schedule has not finished lowering, so this
  view is biased against it by an amount it cannot measure (neither conservative nor fair); the compute-multiplier
  study compares fully decayed runs only.
Mixed curvature's κ at the end: the number of heads with κ > 0, per block, in each seed.

Writes OUT/study.md (the table, the grids), OUT/study.json and OUT/study.png (Δ against training length, per corpus).
"""
import argparse
import json
import math
import os
import subprocess
import sys

import ladder
import sweep
from loader import read_meta

HERE = os.path.dirname(os.path.abspath(__file__))
BASELINE = "euclid+smear"
CORPORA = {"shakespeare_char": "config/train_shakespeare_char_modern.py", "pycode": "config/train_pycode_modern.py"}
BLOCKS = [("shakespeare_char", "4x128", 1), ("pycode", "2x64", 1), ("shakespeare_char", "6x192", 1),
          ("pycode", "2x64", 4), ("shakespeare_char", "4x128", 4), ("pycode", "2x64", 16)]
# arms a default block leaves out, to keep the study within its 5 hours: κ ≡ 0 gained nothing at 1× on both corpora
# and at 6x192, and the ladder's 4× check at 4x128 already found it within noise of a retuned baseline; pycode 2x64 4×
# runs it, so the code corpus has it at two lengths. nGPT runs at 16× as well: at Shakespeare 4x128 4× it caught
# up with mixed curvature per step, so its control at the longest length is the question's other half
SKIP = {("shakespeare_char", "4x128", 4): {"zero-prev-tangent"},
        ("pycode", "2x64", 16): {"zero-prev-tangent"}}
QUICK_BLOCKS = [("shakespeare_char", "1x16", 1), ("pycode", "1x16", 1), ("shakespeare_char", "1x16", 2)]
ARMS = [BASELINE, "ngpt", "zero-prev-tangent", "free-prev-tangent"]
KNOWN_ARMS = [a for a, _ in sweep.ARMS]
# where the size ladder's √10 grid already ran an arm (results/ladder/ladder.md: its best rates), the study's 1×
# block starts from the √2 grid around that best instead of running the coarse grid again
PRIOR = {("shakespeare_char", "4x128"): {BASELINE: 0.01, "zero-prev-tangent": 0.003, "hyp-prev-tangent": 0.003,
                                         "free-prev-tangent": 0.003},
         ("shakespeare_char", "6x192"): {BASELINE: 0.003, "zero-prev-tangent": 0.003, "hyp-prev-tangent": 0.003,
                                         "free-prev-tangent": 0.003}}
# bench.py's spec of each arm's block: (curvature[:reference:residual], overrides applied after the corpus config's
# model options, ladder.bench_setup's spec)
BENCH = {BASELINE: ("euclidean", "smear=True"), "curved": ("free:prev_token:tangent", "smear=False:curvature_init=0.0"),
         "ngpt": ("euclidean", "smear=False:block=ngpt:tie_embeddings=False:zero_init_proj=False:attn_scale=0.0:"
                               "logit_softcap=0.0"),
         "ngpt-adamw": ("euclidean", "smear=False:block=ngpt:tie_embeddings=False:zero_init_proj=False:attn_scale=0.0:"
                                     "logit_softcap=0.0:optimizer=adamw:grad_clip=1.0")}
T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228]  # t(0.975, df) for df 1…10


# ----------------------------------------------------------------------------- the arithmetic (tested by hand)


def start_grid(previous_best, coarse):
    """The grid a block starts from: the √2 grid around the arm's best at the previous length, else the coarse one."""
    if previous_best is None:
        return sorted(coarse)
    return [float(f"{previous_best / math.sqrt(2):.3g}"), previous_best, float(f"{previous_best * math.sqrt(2):.3g}")]


def paired(diffs):
    """(mean, std, t, half-width of the 95% t-interval) of paired differences: t = mean / (std / √n), ±inf when every
    seed agrees exactly; the interval is mean ± t(0.975, n−1)·std/√n (NaN past the table: n > 11)."""
    mean, std = sweep.mean_std(diffs)
    n = len(diffs)
    if n < 2:
        return mean, std, float("nan"), float("nan")
    t = mean / (std / math.sqrt(n)) if std > 0 else math.copysign(math.inf, mean)
    return mean, std, t, (T975[n - 2] * std / math.sqrt(n) if n - 1 <= len(T975) else float("nan"))


def reported(summary):
    """A run's reported loss: on the test split where the data has one, else the validation split."""
    return summary["test"] if summary.get("test") is not None else sweep.final_loss(summary)


def bench_key(arm):
    return arm if arm in (BASELINE, "ngpt", "ngpt-adamw") else "curved"


def positive_heads(kappa):
    return ladder.positive_heads(kappa) if kappa else []


def summarize(blocks, results, ratios, seeds):
    """One row per block and arm: best rate, the final loss and Δ (steps, compiled cost) paired by seed."""
    rows = []
    for block in blocks:
        corpus, size, mult = block
        arms = results[block]
        base = arms[BASELINE]["runs"]
        for arm, r in arms.items():
            finals = [reported(r["runs"][sd]) for sd in seeds]
            row = {"corpus": corpus, "size": size, "mult": mult, "arm": arm, "best_lr": r["best_lr"],
                   "interior": r["interior"], "loss": sweep.mean_std(finals),
                   "ratio": ratios[(corpus, size)][bench_key(arm)] / ratios[(corpus, size)][BASELINE]}
            if arm != BASELINE:
                row["steps"] = paired([reported(r["runs"][sd]) - reported(base[sd]) for sd in seeds])
                # the curves' change at equal compiled cost (ladder.delta reads them anchored at val), moved to the
                # reported split's level: the curve gives the change, the reported loss the level
                row["compiled"] = paired([ladder.delta(r["runs"][sd], base[sd], "compiled", row["ratio"])
                                          - ladder.delta(r["runs"][sd], base[sd], "steps")
                                          + reported(r["runs"][sd]) - reported(base[sd]) for sd in seeds])
            if arm.startswith(("free", "hyp")):
                row["positive_heads"] = [positive_heads(r["runs"][sd]["kappa"]) for sd in seeds]
            rows.append(row)
    return rows


# ----------------------------------------------------------------------------- running


def iterations(args, mult):
    return args.iters * mult


def one_run(args, block, arm, lr, seed):
    corpus, size, mult = block
    iters = iterations(args, mult)
    out_dir = os.path.join(args.out, corpus, f"{size}-x{mult}", arm, f"lr{lr:g}-s{seed}")
    options = [CORPORA[corpus], *ladder.size_options(args, size),
               *sweep.schedule(lr, iters, max(1, iters // args.evals)), f"--seed={seed}", f"--device={args.device}",
               "--eval_full=True", "--sampler=epoch",
               *(["--data_dir=" + args.data_dirs[corpus]] if corpus in args.data_dirs else []),
               *dict(sweep.ARMS)[arm], *args.extra]
    summary = sweep.train_run(out_dir, options, f"{corpus} {size} {mult}× {arm} lr={lr:g} seed={seed}",
                              keep_checkpoint=False, on_code_change=args.on_code_change)
    args.walls[out_dir] = summary["evals"][-1][1]  # the run's own wall-clock, for the budget
    return summary


def tune(args, block, arm, previous_best):
    """The rate grid at the tuning seed (chosen on val), then the reported seeds at its best."""
    grid = sweep.tune(lambda lr: sweep.final_loss(one_run(args, block, arm, lr, args.tune_seed)),
                      start_grid(previous_best, args.lrs), args.max_extend)
    best, interior = sweep.best_rate(grid)
    return {"grid": grid, "best_lr": best, "interior": interior,
            "runs": {seed: one_run(args, block, arm, best, seed) for seed in args.seeds}}


def compiled_ratios(args, size, corpus):
    """{bench key: compiled ms/iter} at this size (bench.py --compile, the blocks in one process, each with its own
    optimizer: Muon unless its spec names another), reused when bench.py recorded the same arguments."""
    keys = (BASELINE, "curved", "ngpt", "ngpt-adamw")
    if args.cost_ratios is not None:  # nGPT's two recipes share the block's ratio
        return {BASELINE: 1.0, "curved": args.cost_ratios[0], "ngpt": args.cost_ratios[1],
                "ngpt-adamw": args.cost_ratios[1]}
    path = os.path.abspath(os.path.join(args.out, "bench", f"{corpus}-{size}.json"))
    layers, width = ladder.parse_size(size)
    spec, context = ladder.bench_setup(CORPORA[corpus])
    configs = [f"{BENCH[k][0]}:{spec}:{BENCH[k][1]}" for k in keys]
    cmd = [sys.executable, os.path.join(HERE, "bench.py"), "--compile", "--optimizer", "muon", "--configs", *configs,
           "--n_layer", str(layers), "--n_embd", str(width), "--n_head", str(width // args.head_size),
           "--device", args.device, "--rounds", str(args.bench_rounds), "--json", path, *context]
    want = {"configs": configs, "n_layer": layers, "n_embd": width, "n_head": width // args.head_size,
            "device": args.device, "rounds": args.bench_rounds, **dict(zip(context[::2], context[1::2]))}
    saved = json.load(open(path)) if os.path.exists(path) else None
    if saved is None or any(str(saved.get("settings", {}).get(k.lstrip("-"), None)) != str(v)
                            for k, v in want.items()):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        print(f"=== {corpus} {size} bench.py --compile", flush=True)
        subprocess.run(cmd, cwd=HERE, check=True, stdout=subprocess.DEVNULL)
        saved = json.load(open(path))
    compiled = [r["ms"] for r in saved["rows"] if r["name"].endswith("+compile")]
    return dict(zip(keys, compiled))


# ----------------------------------------------------------------------------- writing


def fmt(d):
    mean, std, t, half = d
    return f"{mean:+.4f} ± {std:.4f} (t {t:+.1f}; 95% [{mean - half:+.4f}, {mean + half:+.4f}])"


def epochs(args, corpus, mult):
    """Passes over the training split that a run of this length reads (tokens read ÷ train.bin's tokens), or None
    where train.bin is not here."""
    path = os.path.join(args.data_dirs.get(corpus, os.path.join(HERE, "data", corpus)), "train.bin")
    if not os.path.exists(path):
        return None
    cfg = sweep.options_config([CORPORA[corpus], *args.extra])
    return iterations(args, mult) * cfg["batch_size"] * cfg["block_size"] / (os.path.getsize(path) // 2)


def evaluated(args, corpus):
    """What a corpus's reported numbers evaluate: its test split where it has one, else val; with files and bytes."""
    folder = args.data_dirs.get(corpus, os.path.join(HERE, "data", corpus))
    split = "test" if os.path.exists(os.path.join(folder, "test.bin")) else "val"
    path = os.path.join(folder, f"{split}.bin")
    if not os.path.exists(path):
        return f"{corpus}: {split} split (not prepared here)"
    meta = read_meta(os.path.join(folder, "meta.pkl"), f"python data/{corpus}/prepare.py")
    files = f", {meta['files'][split]:,} files" if isinstance(meta.get("files"), dict) else ""
    return f"{corpus}: the whole {split} split, {os.path.getsize(path) // 2:,} tokens{files}"


def recipe(corpus, arm):
    """How an arm trains, read off the options its runs resolve to: optimizer, warmup, decay, clipping."""
    cfg = sweep.options_config([CORPORA[corpus], *sweep.schedule(1.0, 1000, 100), *dict(sweep.ARMS)[arm]])
    optimizer = "Muon (matrices) + AdamW" if cfg["optimizer"] == "muon" else "AdamW"
    clip = f"{cfg['grad_clip']:g}" if cfg["grad_clip"] > 0 else "none"
    return (f"{optimizer} β ({cfg['beta1']:g}, {cfg['beta2']:g}), wd {cfg['weight_decay']:g}, warmup "
            f"{cfg['warmup_iters'] / 1000:.0%}, cosine to {cfg['min_lr'] / cfg['learning_rate']:g}·lr, clip {clip}")


def write_markdown(args, rows, grids, path):
    corpora = list(dict.fromkeys(r["corpus"] for r in rows))
    n = len(args.seeds)
    lines = [f"Δ = loss(arm) − loss({BASELINE}) at the end of fully decayed runs, paired by seed over the reported seeds "
             f"{args.seeds} (n = {n}; the tuning seed {args.tune_seed} is not among them). Each arm at its own best "
             f"rate, chosen on val at the tuning seed (`*`: at the grid's edge). Evaluated: "
             + "; ".join(evaluated(args, c) for c in corpora) + ". bits = nats / ln 2 per character (Shakespeare) or "
             "byte (pycode). Epochs: passes over the training split (windows read in a shuffled order, none twice "
             "before the epoch is through). Compiled ratio: the arm's block's compiled ms/iter ÷ the baseline's at "
             "that size.", "",
             "| corpus | size | length | iters | epochs | arm | best lr | loss | bits | Δ equal steps | compiled ratio | "
             "Δ equal compiled cost |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ep = epochs(args, r["corpus"], r["mult"])
        lines.append(f"| {r['corpus']} | {r['size']} | {r['mult']}× | {iterations(args, r['mult'])} | "
                     f"{'–' if ep is None else f'{ep:.2f}'} | {r['arm']} | "
                     f"{r['best_lr']:g}{'' if r['interior'] else '*'} | {r['loss'][0]:.4f} ± {r['loss'][1]:.4f} | "
                     f"{r['loss'][0] / math.log(2):.4f} | "
                     + ("– | – | – |" if r["arm"] == BASELINE else
                        f"{fmt(r['steps'])} | {r['ratio']:.2f} | {fmt(r['compiled'])} |"))
    lines += ["", f"±: the sample standard deviation over the n = {n} reported seeds (of the loss, or of the paired Δ); "
              f"t: the paired t (df {n - 1}); 95%: the paired t-interval, mean ± t(0.975, {n - 1})·std/√{n}.", "",
              "Recipes (schedules stretched to each run's length):", ""]
    lines += [f"- {arm}: {recipe(corpora[0], arm)}" for arm in dict.fromkeys(r["arm"] for r in rows)]
    curved = [r for r in rows if "positive_heads" in r]
    if curved:
        lines += ["", "Heads with κ > 0 at the end, per block (one list per reported seed)", ""]
        lines += [f"- {r['corpus']} {r['size']} {r['mult']}× {r['arm']}: {r['positive_heads']} of "
                  f"{ladder.parse_size(r['size'])[1] // args.head_size}" for r in curved]
    lines += ["", f"Learning-rate grids, tuning seed {args.tune_seed}: final loss on the whole validation split", ""]
    for (corpus, size, mult, arm), grid in grids.items():
        lines.append(f"- {corpus} {size} {mult}× {arm}: " + ", ".join(f"{lr:g} → {v:.4f}" for lr, v in sorted(
            grid.items())))
    text = "\n".join(lines) + "\n"
    with open(path, "w") as f:
        f.write(text)
    print(text)


def plot(args, rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    corpora = list(dict.fromkeys(r["corpus"] for r in rows))
    fig, axes = plt.subplots(1, len(corpora), figsize=(5.5 * len(corpora), 4.2), sharey=True, squeeze=False)
    for ax, corpus in zip(axes[0], corpora):
        mine = [r for r in rows if r["corpus"] == corpus and r["arm"] != BASELINE]
        arms = list(dict.fromkeys(r["arm"] for r in rows if r["arm"] != BASELINE))
        for i, size in enumerate(dict.fromkeys(r["size"] for r in mine)):
            for arm in dict.fromkeys(r["arm"] for r in mine):
                pts = sorted((r["mult"], r["steps"][0], r["steps"][1]) for r in mine
                             if r["size"] == size and r["arm"] == arm)
                xs, ys, sd = zip(*pts)
                ax.errorbar([iterations(args, m) for m in xs], ys, yerr=sd, marker="os^D"[i % 4], capsize=3,
                            color=f"C{arms.index(arm)}", ls=("-", "--", ":")[i % 3], label=f"{arm} ({size})")
        ax.axhline(0, color="gray", lw=0.8)
        ax.set_xscale("log")
        ax.set_title(f"{corpus}: arm − {BASELINE}, equal steps")
        ax.set_xlabel("training iterations (each run fully decayed)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("Δ final val loss, whole split (< 0: ahead)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- the command line


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="out-study")
    p.add_argument("--blocks", nargs="+", default=None,
                   help="CORPUS:SIZE:MULT[:ARM,ARM], e.g. pycode:2x64:16:euclid+smear,free-prev-tangent (default: "
                        "all, each with --arms)")
    p.add_argument("--arms", nargs="+", default=ARMS, help=f"including {BASELINE}")
    p.add_argument("--iters", type=int, default=600, help="the 1× length in iterations")
    p.add_argument("--lrs", type=float, nargs="+", default=[3e-3, 1e-2, 3e-2], help="a block's first coarse grid")
    p.add_argument("--max_extend", type=int, default=4, help="grid extensions allowed past each edge")
    p.add_argument("--tune_seed", type=int, default=1337, help="the seed that tunes every rate (never reported)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="the reported seeds, at each best rate")
    p.add_argument("--evals", type=int, default=12, help="evaluations per run (the curves; the result is the last)")
    p.add_argument("--head_size", type=int, default=32)
    p.add_argument("--data_dirs", nargs="*", default=[], help="CORPUS=DIR: a corpus's data elsewhere than data/")
    p.add_argument("--cost_ratios", type=float, nargs=2, default=None, metavar=("CURVED", "NGPT"),
                   help="compiled cost ratios instead of measuring them (one pair for every size)")
    p.add_argument("--bench_rounds", type=int, default=7)
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true", help="tiny blocks and a few iterations, for CI")
    sweep.add_reuse_argument(p)
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more train.py overrides for every run")
    args = p.parse_args(argv)
    args.lrs = sorted(set(args.lrs))
    own = [a for a in args.extra if a.split("=")[0] in p._option_string_actions]
    if own:
        sys.exit(f"error: {own[0]} came after --extra, which passes everything after it to train.py: put --extra last")
    if args.tune_seed in args.seeds:
        sys.exit(f"error: the tuning seed {args.tune_seed} is among the reported --seeds {args.seeds}: a seed that "
                 f"chose the rate flatters it; report other seeds")
    if args.quick:
        args.iters, args.head_size, args.seeds, args.evals, args.bench_rounds = 8, 16, args.seeds[:2], 2, 2
    parsed = [parse_block(b) for b in args.blocks] if args.blocks is not None else \
        [(b, None) for b in (QUICK_BLOCKS if args.quick else BLOCKS)]
    args.blocks = [block for block, _ in parsed]
    args.block_arms = {block: arms or [a for a in args.arms if a not in SKIP.get(block, ())] for block, arms in parsed}
    for corpus, size, _ in args.blocks:
        ladder.size_options(args, size)
    for arms in [args.arms, *args.block_arms.values()]:
        unknown = set(arms) - set(dict(sweep.ARMS)) | ({BASELINE} - set(arms))
        if unknown:
            sys.exit(f"error: arms {sorted(unknown)}: choose from {[a for a, _ in sweep.ARMS]}, including {BASELINE}")
    dirs = dict(d.split("=", 1) for d in args.data_dirs if "=" in d)
    if len(dirs) != len(args.data_dirs) or set(dirs) - set(CORPORA):
        sys.exit(f"error: --data_dirs takes CORPUS=DIR with CORPUS one of {sorted(CORPORA)}")
    args.data_dirs, args.walls = dirs, {}
    return args


def parse_block(text):
    """CORPUS:SIZE:MULT[:ARM,ARM...] -> ((corpus, size, mult), arms or None: all of --arms)."""
    corpus, size, mult, arms = (text.split(":", 3) + [None] * 3)[:4]
    if corpus not in CORPORA or size is None or mult is None or not mult.isdigit():
        sys.exit(f"error: a block is CORPUS:SIZE:MULT[:ARM,ARM] with CORPUS one of {sorted(CORPORA)}, e.g. "
                 f"pycode:2x64:16:euclid+smear,free-prev-tangent; got {text!r}")
    return (corpus, size, int(mult)), (arms.split(",") if arms else None)


def main(argv=None):
    """Run the blocks in order; after each, measure its size's compiled ratios (once per corpus and size) and write
    the tables, the figure and the JSON for every block finished so far: each finished block is a result."""
    args = parse(argv)
    os.makedirs(args.out, exist_ok=True)
    results, grids, best, ratios, done = {}, {}, {}, {}, []
    for block in args.blocks:
        corpus, size, mult = block
        results[block] = {}
        for arm in args.block_arms[block]:
            shorter = [m for (c, s, m, a) in best if (c, s, a) == (corpus, size, arm) and m < mult]
            previous = best[(corpus, size, max(shorter), arm)] if shorter else PRIOR.get((corpus, size), {}).get(arm)
            r = tune(args, block, arm, previous)
            results[block][arm], grids[(*block, arm)], best[(*block, arm)] = r, r["grid"], r["best_lr"]
        if (corpus, size) not in ratios:
            ratios[(corpus, size)] = compiled_ratios(args, size, corpus)
        done.append(block)
        rows = summarize(done, results, ratios, args.seeds)
        write(args, rows, grids, results)
    return rows


def write(args, rows, grids, results):
    write_markdown(args, rows, grids, os.path.join(args.out, "study.md"))
    plot(args, rows, os.path.join(args.out, "study.png"))
    total = sum(args.walls.values())
    with open(os.path.join(args.out, "study.json"), "w") as f:
        settings = {k: v for k, v in vars(args).items() if k not in ("walls", "block_arms")}
        settings["block_arms"] = {" ".join(map(str, b)): arms for b, arms in args.block_arms.items()}
        json.dump({"settings": settings, "hours": total / 3600,
                   "rows": rows,
                   "grids": {" ".join(map(str, k)): {str(lr): v for lr, v in g.items()} for k, g in grids.items()},
                   "runs": {" ".join(map(str, b)): {a: {str(sd): s for sd, s in r["runs"].items()}
                                                   for a, r in arms.items()} for b, arms in results.items()}},
                  f, indent=1)
    print(f"wrote {args.out}/study.md, study.json, study.png ({len(args.walls)} runs, {total / 3600:.2f} h of "
          f"training wall-clock)", flush=True)


if __name__ == "__main__":
    main()
