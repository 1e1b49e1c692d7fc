"""
Look inside trained models, curved or Euclidean: is the representation anisotropic, is it hyperbolic?

    python analyze.py out-cpu/curved out-cpu/euclid                   # table, analysis.json, analysis.png
    python analyze.py out-a out-b --out results/ab --points 400 --resamples 8
    python analyze.py out-pycode --by_file          # each split's whole-split loss, by file, with its standard error

For each run it loads ckpt.pt, feeds one fixed batch of validation tokens (the first evaluation batch of the
run's own data), and reports for every block, on the stream h entering the block (the origin's tangent
coordinates, comparable between curved and Euclidean models):
- κ per head (curved models);
- radius √|κ|‖x‖ of the block's points x = project(expmap0_κ(h)) (1 is the κ < 0 boundary), and the fraction of
  points `project` had to move;
- anisotropy of h: mean pairwise cosine similarity, the share of variance in the top principal direction, and the
  effective rank exp(entropy of the normalised singular values²) (Roy & Vetterli 2007);
- Gromov δ-hyperbolicity of each head's slice: δ_rel = 2δ/diam (Khrulkov et al. 2020; near 0 for tree-like
  data), under the Euclidean distance of the tangent vectors and, for curved models, under the block's own
  metric d_κ between the points, and for a control: Gaussian points with the same tangent norms mapped into the
  same space (how low d_κ alone makes δ). δ is exact for a sample of --points states (fixed base point, see
  gromov_delta), averaged over --resamples random samples, with their standard deviation as the spread; an
  isotropic Gaussian cloud of the same size and dimension is measured too, for scale.

--by_file asks a different question, of the yardstick: how much of a split's loss is the luck of which files it
holds? On data whose files end with a NUL mark (data/pycode), every split the run's data has (val, test) is scored
whole, as train.py's eval_full scores it (consecutive windows of block_size), each predicted token counted in the
file it belongs to. The split's loss is the token-weighted mean over its F files, L = Σ n_f·l_f / Σ n_f, and its
standard error over files is that of a ratio estimator with files as the sampling units:
SE² = F/(F−1) · Σ n_f²·(l_f − L)² / (Σ n_f)². Two splits drawn from the same files by the same rule differ by about
√(SE₁² + SE₂²) from the draw alone.
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch
from tqdm import tqdm

import geometry as geo
from loader import DataError, open_dataset
from runtime import RunError, load_checkpoint, model_from_checkpoint

HERE = os.path.dirname(os.path.abspath(__file__))


def gromov_delta(dist, base=0, chunk=64):
    """Gromov δ of a finite metric space given by its distance matrix (numpy or torch, [n, n]), and
    δ_rel = 2δ/diam. Returns (δ, δ_rel) as floats.

    Four-point condition at a fixed base point w: with Gromov products (x|y)_w = ½(d(x,w) + d(y,w) − d(x,y)),
    δ_w = max over x, y, z of min((x|z)_w, (z|y)_w) − (x|y)_w, i.e. the largest entry of (A ⊗ A) − A for the
    (max, min) matrix product of A = [(x|y)_w]. For every quadruple containing w this equals half the gap
    between the two largest of its three pair sums, the usual four-point δ; over all quadruples δ_w ≤ δ ≤ 2δ_w
    (Gromov), and δ_w is what Khrulkov et al. 2020 report. Cost: O(n³) time in chunks of `chunk` rows, O(n²·chunk)
    memory; n = 300 points take a fraction of a second on a CPU.
    """
    d = torch.as_tensor(np.asarray(dist) if not torch.is_tensor(dist) else dist, dtype=torch.float64)
    if d.dim() != 2 or d.size(0) != d.size(1):
        raise ValueError(f"gromov_delta needs a square distance matrix, got shape {tuple(d.shape)}")
    n = d.size(0)
    if n < 4:
        return 0.0, 0.0
    row = d[base]
    a = 0.5 * (row[:, None] + row[None, :] - d)  # Gromov products (x|y)_w
    delta = 0.0
    for i in range(0, n, chunk):
        # (A ⊗ A)[x, y] = max_z min(A[x, z], A[z, y]) for the rows x in this chunk
        maxmin = torch.minimum(a[i:i + chunk, :, None], a[None, :, :]).amax(dim=1)
        delta = max(delta, (maxmin - a[i:i + chunk]).max().item())
    diam = d.max().item()
    return delta, (2 * delta / diam if diam > 0 else 0.0)


def anisotropy(h):
    """Mean pairwise cosine similarity, top principal direction's share of the variance, and effective rank
    of the rows of h [n, d]."""
    h = h.double()
    unit = h / h.norm(dim=1, keepdim=True).clamp_min(1e-12)
    n = h.size(0)
    mean_cos = ((unit.sum(0).square().sum() - n) / (n * (n - 1))).item()
    s2 = torch.linalg.svdvals(h - h.mean(0)).square()
    p = s2 / s2.sum()
    eff_rank = math.exp(-(p * p.clamp_min(1e-300).log()).sum().item())
    return {"mean_cos": mean_cos, "top_pc_share": p[0].item(), "effective_rank": eff_rank}


def delta_stats(points, metric, n_points, resamples, gen):
    """δ_rel of `points` [N, d] under `metric(x, y) → [n, n]` over random subsamples: mean, std, sample size."""
    values = []
    for _ in range(resamples):
        idx = torch.randperm(points.size(0), generator=gen)[:n_points]
        values.append(gromov_delta(metric(points[idx], points[idx]))[1])
    v = torch.tensor(values, dtype=torch.float64)
    return {"mean": v.mean().item(), "std": v.std().item() if len(values) > 1 else 0.0, "n": int(min(n_points,
            points.size(0))), "resamples": resamples}


def block_inputs(model, idx):
    """The stream entering each block, [B, T, C] each, and each block's κ [H or 1, 1] (None if Euclidean)."""
    seen = []
    hooks = [b.register_forward_pre_hook(lambda m, args: seen.append((args[0].detach(), args[1].detach()
                                                                      if len(args) > 1 else None)))
             for b in model.transformer.h]
    try:
        with torch.no_grad():
            model(idx)
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def analyze_run(out_dir, args):
    """The numbers of one run (see the module docstring), as a JSON-ready dict."""
    path = os.path.join(out_dir, "ckpt.pt")
    if not os.path.exists(path):
        raise RunError(f"no checkpoint at {path}: is {out_dir} the out_dir of a training run?")
    ckpt = load_checkpoint(path)
    model = model_from_checkpoint(ckpt).eval()
    cfg = ckpt["config"]
    data_dir = args.data_dir or cfg.get("data_dir") or os.path.join(HERE, "data", cfg.get("dataset", ""))
    T = model.config.block_size
    # the same seed for every run: runs on the same data see the same tokens
    data = open_dataset(data_dir, cfg.get("dataset", ""), T, args.batch_size, 0, 1, args.seed, 1,
                        args.batch_size * T, False)
    idx = next(data.eval_batches("val", "cpu"))[0]
    gen = torch.Generator().manual_seed(args.seed)
    H = model.config.n_head
    curved = model.curvature is not None
    bar = tqdm(total=model.config.n_layer * H * args.resamples * (3 if curved else 1), leave=False,
               desc=f"δ samples, {os.path.basename(os.path.normpath(out_dir))}")
    blocks = []
    for h, kappa in block_inputs(model, idx):
        h = h.reshape(-1, h.size(-1)).double()  # [N, C]
        heads = h.view(h.size(0), H, -1)
        row = {"anisotropy": anisotropy(h), "delta_tangent": [], "delta_points": [], "delta_control": []}
        if kappa is not None:
            k = kappa.double().view(-1, 1).expand(H, 1) if kappa.numel() == 1 else kappa.double().view(H, 1)
            raw = geo.expmap0(heads, k)
            x = geo.project(raw, k)
            row.update(kappa=k.view(-1).tolist(), clamped=geo.clamped_fraction(raw, k).item(),
                       radius=(k.abs().sqrt() * x.norm(dim=-1, keepdim=True)).mean().item())
        for j in range(H):
            row["delta_tangent"].append(delta_stats(heads[:, j], torch.cdist, args.points, args.resamples, gen))
            bar.update(args.resamples)
            if kappa is not None:
                kj = k[j].view(1, 1)
                metric = lambda a, b, kj=kj: geo.pairwise_dist(a, b, kj)  # noqa: E731
                row["delta_points"].append(delta_stats(x[:, j], metric, args.points, args.resamples, gen))
                # control: structureless points with the same tangent norms, mapped into the same space, show how
                # much of δ under d_κ the metric alone brings
                cloud = torch.randn(heads[:, j].shape, generator=gen, dtype=torch.float64)
                cloud *= heads[:, j].norm(dim=-1, keepdim=True) / cloud.norm(dim=-1, keepdim=True)
                control = geo.project(geo.expmap0(cloud, kj), kj)
                row["delta_control"].append(delta_stats(control, metric, args.points, args.resamples, gen))
                bar.update(2 * args.resamples)
        blocks.append(row)
    bar.close()
    return {"out_dir": out_dir, "iter_num": ckpt["iter_num"], "val_loss": ckpt.get("val_loss"),
            "curvature": model.config.curvature, "head_size": model.config.head_size, "n_states": idx.numel(),
            "blocks": blocks}


@torch.no_grad()
def file_losses(model, data, split, batch_size=256):
    """(token counts, summed losses) per file of a split scored whole (loader.full_batches: consecutive windows); a
    token belongs to the file its target is in, files ending at each NUL (end-of-file mark, token 0)."""
    tokens = np.memmap(data.paths[split], dtype=np.uint16, mode="r")
    file_of = np.concatenate([[0], np.cumsum(tokens == 0)[:-1]])  # the NULs before a position: its file's number
    counts, sums, start = {}, {}, 1  # the first window's first target is token 1
    for x, y in data.full_batches(split, "cpu", batch_size=batch_size):
        logits, _ = model(x, y)
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1),
                                                 reduction="none").double()
        for f, l in zip(file_of[start : start + y.numel()].tolist(), loss.tolist()):
            counts[f] = counts.get(f, 0) + 1
            sums[f] = sums.get(f, 0.0) + l
        start += y.numel()  # the windows are consecutive: the next batch's targets follow on
    return counts, sums


def split_by_file(counts, sums):
    """{loss, se, files, tokens} of a split from per-file token counts and summed losses (the module docstring)."""
    n = np.array([counts[f] for f in counts], dtype=np.float64)
    l = np.array([sums[f] / counts[f] for f in counts])
    total = n.sum()
    mean = float((n * l).sum() / total)
    F = len(n)
    se = math.sqrt(F / (F - 1) * float((n**2 * (l - mean) ** 2).sum()) / total**2) if F > 1 else float("nan")
    return {"loss": mean, "se": se, "files": F, "tokens": int(total)}


def by_file(out_dir, data_dir=""):
    """Each whole split of a run's data (val, and test where there is one), by file, with its standard error."""
    path = os.path.join(out_dir, "ckpt.pt")
    if not os.path.exists(path):
        raise RunError(f"no checkpoint at {path}: is {out_dir} the out_dir of a training run?")
    ckpt = load_checkpoint(path)
    model = model_from_checkpoint(ckpt).eval()
    cfg = ckpt["config"]
    data_dir = data_dir or cfg.get("data_dir") or os.path.join(HERE, "data", cfg.get("dataset", ""))
    data = open_dataset(data_dir, cfg.get("dataset", ""), model.config.block_size, 1, 0, 1, 0, 1, 1, False)
    if not hasattr(data, "full_splits") or data.vocab["tokenizer"] != "chars":
        raise DataError(f"{data_dir}: --by_file needs train.bin/val.bin data whose files end with a NUL (data/pycode)")
    return {split: split_by_file(*file_losses(model, data, split)) for split in data.full_splits}


def mean_delta(entries):
    return sum(e["mean"] for e in entries) / len(entries) if entries else float("nan")


def print_table(runs):
    print("\nper block: κ (mean over heads), radius √|κ|‖x‖, clamped fraction, mean cosine, top-PC share, effective "
          "rank, δ_rel (mean over heads ± spread over resamples) of the tangent vectors, of the points under d_κ, and "
          "of the control (Gaussian points with the same norms in the same space)")
    header = (f"| {'run':<16} | blk | {'κ':>8} | radius | clamped | cos   | top PC | eff. rank | {'δ_rel tangent':>15} "
              f"| {'δ_rel d_κ':>15} | {'δ_rel control':>15} |")
    print(header)
    print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|")
    for run in runs:
        name = os.path.basename(os.path.normpath(run["out_dir"]))
        for i, b in enumerate(run["blocks"]):
            a = b["anisotropy"]
            k = f"{sum(b['kappa']) / len(b['kappa']):+.4f}" if "kappa" in b else "–"
            radius = f"{b['radius']:.3f}" if "radius" in b else "–"
            clamped = f"{b['clamped']:.3f}" if "clamped" in b else "–"

            def fmt(entries):
                if not entries:
                    return "–"
                spread = sum(e["std"] for e in entries) / len(entries)
                return f"{mean_delta(entries):.3f} ± {spread:.3f}"

            print(f"| {name:<16} | {i:>3} | {k:>8} | {radius:>6} | {clamped:>7} | {a['mean_cos']:.3f} | "
                  f"{a['top_pc_share']:>6.3f} | {a['effective_rank']:>9.1f} | {fmt(b['delta_tangent']):>15} | "
                  f"{fmt(b['delta_points']):>15} | {fmt(b['delta_control']):>15} |")


def plot(runs, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("mean pairwise cosine", lambda b: b["anisotropy"]["mean_cos"]),
              ("effective rank", lambda b: b["anisotropy"]["effective_rank"]),
              ("δ_rel, tangent vectors", lambda b: mean_delta(b["delta_tangent"])),
              ("δ_rel, points under d_κ", lambda b: mean_delta(b["delta_points"]))]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8))
    for ax, (title, value) in zip(axes, panels):
        for color, run in enumerate(runs):
            ys = [value(b) for b in run["blocks"]]
            if all(math.isnan(y) for y in ys):
                continue
            name = os.path.basename(os.path.normpath(run["out_dir"]))
            ax.plot(range(len(ys)), ys, marker="o", color=f"C{color}", label=name)
            if "d_κ" in title:
                ax.plot(range(len(ys)), [mean_delta(b["delta_control"]) for b in run["blocks"]], ls="--",
                        color=f"C{color}", label=f"{name}: Gaussian control")
        ax.set_title(title)
        ax.set_xlabel("block")
        ax.set_xticks(range(max(len(r["blocks"]) for r in runs)))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dirs", nargs="+", help="training runs' out_dirs (each with a ckpt.pt)")
    p.add_argument("--out", default="analysis", help="write OUT.json and OUT.png")
    p.add_argument("--batch_size", type=int, default=8, help="validation sequences fed through each model")
    p.add_argument("--points", type=int, default=300, help="states per δ sample (δ costs O(points³))")
    p.add_argument("--resamples", type=int, default=5, help="δ samples per head, for the spread")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data_dir", default="", help="the validation data (default: each run's own)")
    p.add_argument("--by_file", action="store_true",
                   help="instead: each whole split's loss by file, with its standard error over files")
    args = p.parse_args(argv)
    if args.by_file:
        try:
            found = {d: by_file(d, args.data_dir) for d in args.out_dirs}
        except (RunError, DataError) as e:
            sys.exit(f"error: {e}")
        for d, splits in found.items():
            print(f"{d}: " + "; ".join(f"{s} {r['loss']:.4f} ± {r['se']:.4f} (SE over {r['files']} files, "
                                         f"{r['tokens']:,} tokens)" for s, r in splits.items()))
        return found
    if args.batch_size <= 0 or args.points < 4 or args.resamples <= 0:
        sys.exit("error: --batch_size and --resamples must be positive, --points at least 4")
    try:
        missing = [d for d in args.out_dirs if not os.path.exists(os.path.join(d, "ckpt.pt"))]
        if missing:  # before any work
            raise RunError(f"no checkpoint at {os.path.join(missing[0], 'ckpt.pt')}: is {missing[0]} the out_dir of "
                           f"a training run?")
        runs = [analyze_run(d, args) for d in args.out_dirs]
    except (RunError, DataError) as e:
        sys.exit(f"error: {e}")
    print_table(runs)
    # for scale: the same estimate on structureless data of the same size and dimension
    dim = runs[0]["head_size"]
    gen = torch.Generator().manual_seed(args.seed)
    cloud = torch.randn(max(args.points, 4), dim, generator=gen, dtype=torch.float64)
    gaussian = delta_stats(cloud, torch.cdist, args.points, args.resamples, gen)
    print(f"\nfor scale, an isotropic Gaussian cloud of {gaussian['n']} points in {dim} dimensions: δ_rel "
          f"{gaussian['mean']:.3f} ± {gaussian['std']:.3f}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump({"settings": vars(args), "runs": runs, "gaussian_reference": gaussian}, f, indent=1)
    plot(runs, args.out + ".png")
    print(f"\nwrote {args.out}.json and {args.out}.png")
    return runs


if __name__ == "__main__":
    main()
