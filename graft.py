"""
Grafting curvature onto a pretrained model, in miniature: does a model that already works in flat space want to
curve, and where? The CPU stand-in for GPT-2 (docs/pretrained.md has the GPU command for GPT-2 124M).

    python graft.py --out results/graft                  # the CPU result of docs/pretrained.md
    python graft.py --quick --out out-graft-quick        # the pipeline in a minute
    python graft.py --init_from gpt2 --base config/finetune_shakespeare.py --iters 200 --lr 3e-5 \
        --graft_lr_mult 100 --eval_interval 20 --device cuda --out results/graft-gpt2    # the real thing, on a GPU

1. "Pretrain" (unless --init_from names a pretrained model, e.g. gpt2): the Euclidean CPU config (config/train_shakespeare_char_cpu_euclid.py) → OUT/pretrain.
2. Export it as a Hugging Face GPT-2 checkpoint (OUT/pretrain/hf), so that every fine-tune loads it the way
   GPT-2 is loaded (init_from=<dir>).
3. Fine-tune from it, the same steps, learning rate, data order and evaluation batches for every arm, per seed:
   - euclid: the loaded model as it is;
   - graft: learnable κ per block and head from 0 (curvature='free') and the reference share α from 0
     (reference_share=True): it starts as the pretrained model;
   - share: κ ≡ 0 with the share alone, the control that separates "curving helps" from "looking at the
     previous token helps".
   κ and α learn at --graft_lr_mult × the learning rate (no weight decay).

Runs are sweep.py's (a finished run is reused on a rerun). Writes OUT/graft.md (val loss, Δ against euclid
paired by seed, κ and α per block and head), OUT/graft.json and OUT/graft.png (val loss against iteration).
"""
import argparse
import json
import os
import statistics
import sys

from sweep import HERE, add_reuse_argument, finished, mean_std, train_run

ARMS = [
    ("euclid", ["--curvature=euclidean"]),
    ("graft", ["--curvature=free", "--curvature_init=0.0", "--reference=prev_token", "--residual=tangent",
               "--reference_share=True"]),
    ("share", ["--curvature=zero", "--reference=prev_token", "--residual=tangent", "--reference_share=True"]),
]
PRETRAIN = "config/train_shakespeare_char_cpu_euclid.py"


def pretrain(args):
    """The stand-in for GPT-2: the Euclidean CPU run (trained, or reused); (its export's directory, its summary)."""
    out = os.path.join(args.out, "pretrain")
    return os.path.join(out, "hf"), train_run(out, pretrain_options(args), "pretrain (euclid)",
                                              on_code_change=args.on_code_change)


def pretrain_options(args):
    return [PRETRAIN, f"--max_iters={args.pretrain_iters}", f"--lr_decay_iters={args.pretrain_iters}",
            f"--eval_interval={args.eval_interval}", f"--device={args.device}", *args.extra]


def pretrain_identity(args):
    """What a fine-tune read, for its fingerprint: the pretrain's options (a fine-tune of another pretrain is not
    reused), or the name of the pretrained model."""
    return {"init_from": args.init_from} if args.init_from else {"pretrain": " ".join(pretrain_options(args))}


def ensure_export(args):
    """Export the pretrain run in GPT-2's format, before the first fine-tune that needs it, unless the export there
    is of this pretrain (its options, stamped beside it). Only summaries are committed, so on a fresh clone whose
    fine-tunes are all finished nothing is retrained; one that is not needs the weights, and the pretrain run is
    trained again (the same command gives the same run)."""
    import export
    from runtime import load_checkpoint

    out = os.path.join(args.out, "pretrain")
    stamp = os.path.join(out, "hf", "kappagpt_source.json")
    if os.path.exists(os.path.join(out, "hf", "model.safetensors")) and os.path.exists(stamp):
        with open(stamp) as f:
            if json.load(f) == pretrain_identity(args):
                return
    if not os.path.exists(os.path.join(out, "ckpt.pt")):
        os.remove(os.path.join(out, "summary.json"))
        train_run(out, pretrain_options(args), "pretrain (euclid), again for its weights",
                  on_code_change=args.on_code_change)
    export.export(load_checkpoint(os.path.join(out, "ckpt.pt")), os.path.join(out, "hf"), overwrite=True)
    with open(stamp, "w") as f:
        json.dump(pretrain_identity(args), f)


def finetune(args, hf, arm, seed):
    out = os.path.join(args.out, arm[0], f"s{seed}")
    options = [*([args.base] if args.base else []), f"--init_from={hf}", f"--learning_rate={args.lr}",
               "--decay_lr=False", f"--max_iters={args.iters}", f"--eval_interval={args.eval_interval}",
               f"--curvature_lr_mult={args.graft_lr_mult}", f"--seed={seed}", f"--device={args.device}", *arm[1],
               *args.extra]
    inputs = pretrain_identity(args)
    if not args.init_from and finished(out, options, inputs, args.on_code_change) is None:
        ensure_export(args)
    return train_run(out, options, f"{arm[0]} seed={seed}", keep_checkpoint=False, inputs=inputs,
                     on_code_change=args.on_code_change)


def per_head(runs, prefix):
    """{block: [mean over seeds of the last logged value per head]} for keys prefix/block{l}/head{h}."""
    table = {}
    for key in runs[0]["kappa"]:
        if key.startswith(prefix + "/"):
            _, block, head = key.split("/")
            table.setdefault(int(block[5:]), {})[int(head[4:])] = statistics.mean(r["kappa"][key] for r in runs)
    return {b: [heads[h] for h in sorted(heads)] for b, heads in sorted(table.items())}


def summarize(results, seeds):
    ref = {s: r["evals"][-1][2] for s, r in zip(seeds, results["euclid"])}
    rows = []
    for name, runs in results.items():
        finals = [r["evals"][-1][2] for r in runs]
        rows.append({"arm": name, "val": mean_std(finals),
                     "delta": mean_std([f - ref[s] for f, s in zip(finals, seeds)]),
                     "start": mean_std([r["evals"][0][2] for r in runs]),
                     "kappa": per_head(runs, "curvature"), "share": per_head(runs, "share")})
    return rows


def write_table(rows, args, pre, path):
    what = (f"{args.init_from}" if pre is None else f"the exported Euclidean CPU model (val loss "
            f"{pre['evals'][-1][2]:.4f} after {args.pretrain_iters} iterations)")
    lines = [f"Fine-tuning {what} for {args.iters} iterations at lr {args.lr:g} (κ and α at "
             f"× {args.graft_lr_mult:g}), seeds {args.seeds}; Δ: the difference to euclid within each seed, mean ± std. "
             f"At step 0 every arm is the loaded model (the spread is the seeds' evaluation batches)", "",
             "| arm | val loss at step 0 | val loss after fine-tuning | Δ vs euclid |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['arm']} | {r['start'][0]:.4f} ± {r['start'][1]:.4f} | {r['val'][0]:.4f} ± "
                     f"{r['val'][1]:.4f} | {r['delta'][0]:+.4f} ± {r['delta'][1]:.4f} |")
    for r in rows:
        for key, name in (("kappa", "κ"), ("share", "α")):
            if r[key]:
                lines += ["", f"{r['arm']}: {name} per block (rows) and head (columns) after fine-tuning, mean over "
                              f"seeds", ""]
                n = len(next(iter(r[key].values())))
                lines += ["| block | " + " | ".join(f"head {h}" for h in range(n)) + " |", "|---|" + "---|" * n]
                lines += [f"| {b} | " + " | ".join(f"{v:+.4f}" for v in vals) + " |" for b, vals in r[key].items()]
    text = "\n".join(lines) + "\n"
    with open(path, "w") as f:
        f.write(text)
    print(text)


def plot(results, seeds, path):
    """Val loss against iteration (mean over seeds), and each arm's Δ against euclid paired by seed (mean ± std):
    the seeds' evaluation batches differ, so the paired Δ is the sharp view."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    base = results["euclid"]
    for name, runs in results.items():
        n = min(len(r["evals"]) for r in runs + base)
        xs = [runs[0]["evals"][i][0] for i in range(n)]
        axes[0].plot(xs, [statistics.mean(r["evals"][i][2] for r in runs) for i in range(n)], marker=".", label=name)
        stats = [mean_std([r["evals"][i][2] - b["evals"][i][2] for r, b in zip(runs, base)]) for i in range(n)]
        axes[1].plot(xs, [m for m, _ in stats], marker=".", label=f"{name} − euclid")
        axes[1].fill_between(xs, [m - s for m, s in stats], [m + s for m, s in stats], alpha=0.2)
    axes[0].set_ylabel(f"val loss (mean over seeds {seeds})")
    axes[1].set_ylabel("Δ val loss, paired by seed (mean ± std)")
    for ax in axes:
        ax.set_xlabel("fine-tuning iteration")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="out-graft")
    p.add_argument("--init_from", help="fine-tune this model (gpt2, ..., or a Hugging Face directory) instead of "
                                       "pretraining and exporting the CPU stand-in")
    p.add_argument("--base", help="a config file every fine-tune starts from (e.g. config/finetune_shakespeare.py)")
    p.add_argument("--pretrain_iters", type=int, default=2000)
    p.add_argument("--iters", type=int, default=500, help="fine-tuning iterations, every arm")
    p.add_argument("--lr", type=float, default=2e-4, help="fine-tuning learning rate (constant): the pretrain's last")
    p.add_argument("--graft_lr_mult", type=float, default=10.0,
                   help="κ and α learn at lr × this (10: the pretrain's peak rate, at which κ learns from scratch)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1337, 1, 2])
    p.add_argument("--eval_interval", type=int, default=50)
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true", help="a few iterations, two seeds: the pipeline, not a result")
    add_reuse_argument(p)
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more train.py overrides for every run")
    args = p.parse_args(argv)
    if args.quick:  # a pretrain length given on the command line is kept
        if args.pretrain_iters == p.get_default("pretrain_iters"):
            args.pretrain_iters = 20
        args.iters, args.eval_interval, args.seeds = 10, 5, args.seeds[:2]
        args.extra = ["--eval_iters=2", "--log_interval=5", *args.extra]
    if min(args.pretrain_iters, args.iters, args.eval_interval) <= 0 or args.lr <= 0:
        sys.exit("error: --pretrain_iters, --iters, --eval_interval and --lr must be positive")
    hf, pre = (args.init_from, None) if args.init_from else pretrain(args)
    results = {arm[0]: [finetune(args, hf, arm, seed) for seed in args.seeds] for arm in ARMS}
    rows = summarize(results, args.seeds)
    write_table(rows, args, pre, os.path.join(args.out, "graft.md"))
    plot(results, args.seeds, os.path.join(args.out, "graft.png"))
    with open(os.path.join(args.out, "graft.json"), "w") as f:
        json.dump({"settings": vars(args), "pretrain": pre, "rows": rows, "runs": results}, f, indent=1)
    print(f"wrote {args.out}/graft.md, graft.png, graft.json")
    return rows


if __name__ == "__main__":
    os.chdir(HERE)
    main()
