"""
Plot runs from their out_dir/metrics.jsonl, no wandb needed.

    python plot.py out-shakespeare-char-cpu out-shakespeare-char-cpu-euclid --out results/cpu

writes <out>_loss.png (val loss against iteration and against wall-clock time, every run on one chart)
and, when any run is curved, <out>_curvature.png (κ of every block and head over training, one panel per
curved run; a line per head, one colour per block).
"""
import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")  # headless: write files, never open a window
import matplotlib.pyplot as plt  # noqa: E402


def read_metrics(out_dir):
    path = os.path.join(out_dir, "metrics.jsonl")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: is {out_dir} the out_dir of a training run?")
    with open(path) as f:
        lines = [line for line in f.read().splitlines() if line.strip()]
    records = []
    for i, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # a run killed mid-write leaves a partial line (resuming removes it)
            print(f"warning: {path}, line {i + 1}: not JSON (cut short?), skipped")
    return records


def plot_loss(runs, path, xaxis="both"):
    """Val loss against iteration and/or wall-clock seconds (xaxis: 'iter', 'wall' or 'both')."""
    keys = {"iter": ["iter"], "wall": ["wall"], "both": ["iter", "wall"]}[xaxis]
    fig, axes = plt.subplots(1, len(keys), figsize=(6 * len(keys), 4.5), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for name, recs in runs.items():
            ev = [r for r in recs if "val/loss" in r]
            ax.plot([r[key] for r in ev], [r["val/loss"] for r in ev], marker=".", label=name)
        ax.set_xlabel("iteration" if key == "iter" else "wall-clock seconds")
        ax.set_ylabel("val loss")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curvature(runs, path):
    def head_keys(recs):
        return sorted({k for rec in recs for k in rec if k.startswith("curvature/") and "/head" in k})

    # runs with κ ≡ 0 ('zero') have nothing to show
    curved = {n: r for n, r in runs.items() if any(rec.get(k, 0) != 0 for rec in r for k in head_keys(r))}
    if not curved:
        return False
    fig, axes = plt.subplots(1, len(curved), figsize=(6 * len(curved), 4.5), squeeze=False)
    for ax, (name, recs) in zip(axes[0], curved.items()):
        keys = head_keys(recs)
        blocks = sorted({k.split("/")[1] for k in keys}, key=lambda b: int(b[5:]))
        colours = plt.cm.viridis([i / max(1, len(blocks) - 1) for i in range(len(blocks))])
        for key in keys:
            pts = [(r["iter"], r[key]) for r in recs if key in r]
            block = key.split("/")[1]
            ax.plot(*zip(*pts), color=colours[blocks.index(block)], alpha=0.8,
                    label=block if key.endswith("head0") else None)
        ax.set_title(name)
        ax.set_xlabel("iteration")
        ax.set_ylabel("κ (one line per head)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dirs", nargs="+", help="training out_dirs holding metrics.jsonl")
    parser.add_argument("--out", default="plot", help="prefix of the PNG files to write")
    parser.add_argument("--xaxis", choices=["iter", "wall", "both"], default="both",
                        help="loss against iteration, wall-clock time, or both side by side")
    args = parser.parse_args(argv)
    try:
        runs = {os.path.basename(os.path.normpath(d)): read_metrics(d) for d in args.out_dirs}
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"error: {e}")
    if os.path.dirname(args.out):
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
    written = [f"{args.out}_loss.png"]
    plot_loss(runs, written[0], args.xaxis)
    if plot_curvature(runs, f"{args.out}_curvature.png"):
        written.append(f"{args.out}_curvature.png")
    print("wrote " + ", ".join(written))
    return written


if __name__ == "__main__":
    main()
