"""
What a training run writes about itself: metrics.jsonl in out_dir (one JSON object per log or evaluation step, with
`iter` and the wall-clock seconds `wall`, continued across resumes) and, when asked, Weights & Biases; plus the κ
and geometry-health entries both carry. plot.py and analyze.py read what this writes.
"""
import json
import os

import torch

from runtime import RunError


def kappa_summary(kappas):
    return f"κ {kappas.mean():+.4f} [{kappas.min():+.4f}, {kappas.max():+.4f}]"


def curvature_metrics(raw_model, stats):
    """Per block and head κ (and the reference share α), per block mean, and geometry health from a forward
    pass's `stats`."""
    out = {}
    if raw_model.curvature is None:
        return out
    ks = raw_model.kappas().detach().float().cpu()
    for l, row in enumerate(ks):
        for h, k in enumerate(row):
            out[f"curvature/block{l}/head{h}"] = k.item()
        out[f"curvature/block{l}/mean"] = row.mean().item()
    for l, block in enumerate(raw_model.transformer.h):  # the graft's reference share α (reference_share)
        if hasattr(block, "share"):
            for h, a in enumerate(block.share.detach().float().cpu().view(-1)):
                out[f"share/block{l}/head{h}"] = a.item()
    for l, s in enumerate(stats):
        out[f"geometry/block{l}/clamped"] = s["clamped"]
        out[f"geometry/block{l}/radius"] = s["radius"]
    return out


def truncate_metrics(path, iter_num):
    """Cut metrics.jsonl back to the records up to iter_num, the checkpoint's iteration (the resumed run logs
    the later ones again), dropping any line a kill cut short; atomically."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        lines = f.read().splitlines()
    keep = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("iter", 0) <= iter_num:
            keep.append(line + "\n")
    with open(f"{path}.tmp", "w") as f:
        f.writelines(keep)
    os.replace(f"{path}.tmp", path)


class Logger:
    """metrics.jsonl in out_dir (rank 0, unless eval_only) and wandb (when wandb_log)."""

    def __init__(self, cfg, run_id, resumed):
        self.path = None if cfg["eval_only"] else os.path.join(cfg["out_dir"], "metrics.jsonl")
        self.wandb = None
        self.run_id = run_id
        if cfg["wandb_log"]:
            import wandb

            kwargs = dict(project=cfg["wandb_project"], name=cfg["wandb_run_name"], config=cfg,
                          id=run_id, resume="allow" if resumed else None, dir=cfg["out_dir"])
            try:
                self.wandb = wandb.init(**kwargs)
            except Exception as e:  # no API key or no network: keep the run, log offline
                print(f"wandb: online init failed ({type(e).__name__}); logging offline to {cfg['out_dir']}/wandb")
                self.wandb = wandb.init(**kwargs, mode="offline")
            self.run_id = self.wandb.id

    def log(self, step, metrics):
        if self.path is not None:
            try:
                with open(self.path, "a") as f:
                    f.write(json.dumps({"iter": step, **metrics}) + "\n")
            except OSError as e:
                raise RunError(f"could not write {self.path} ({e.strerror or e})") from e
        if self.wandb is not None:
            self.wandb.log(metrics, step=step)

    def finish(self):
        if self.wandb is not None:
            self.wandb.finish()


@torch.no_grad()
def geometry_health(run):
    """Each curved block's clamped fraction and mean radius on one validation batch (empty if Euclidean)."""
    stats = []
    if run.raw_model.curvature is not None:
        with run.autocast:
            run.raw_model.eval()
            run.raw_model(next(run.data.eval_batches("val", run.proc.device))[0], stats=stats)
            run.raw_model.train()
    return stats
