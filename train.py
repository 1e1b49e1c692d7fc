"""
Train a kappaGPT model. With no arguments: a curved 4-layer model on Shakespeare-char, sized for a CPU.

    python train.py                                            # the embedded default
    python train.py config/train_shakespeare_char.py --compile=False
    torchrun --standalone --nproc_per_node=8 train.py config/train_fineweb.py

Config files and --key=value overrides are explained in configurator.py; every key is one of the
defaults below. Under torchrun, gradient_accumulation_steps counts micro-steps across all processes.
"""
import glob
import json
import math
import os
import signal
import sys
import time
from contextlib import nullcontext

import torch

from configurator import ConfigError, configure
from loader import DataError, open_dataset
from model import GPT, GPTConfig

# ----------------------------------------------------------------------------- defaults
# I/O
out_dir = "out-shakespeare-char-cpu"
eval_interval = 250  # evaluate (and checkpoint) every this many iterations, and at max_iters
log_interval = 25
eval_iters = 20  # train.bin/val.bin data: batches per split per evaluation, the same batches every time
eval_only = False  # evaluate once and exit
always_save_checkpoint = True  # save at every evaluation (else only when val loss improves)
init_from = "scratch"  # 'scratch' or 'resume' (from out_dir/ckpt.pt)
# logging
wandb_log = False
wandb_project = "kappagpt"
wandb_run_name = "shakespeare-char-cpu"
# data
dataset = "shakespeare_char"
data_dir = ""  # default: data/<dataset> next to this file
data_random_start = False  # sharded data: start at a seeded random shard and position instead of the first
val_tokens = 10_485_760  # sharded data: tokens per evaluation (the speedrun's budget), split across processes
gradient_accumulation_steps = 1
batch_size = 12
block_size = 64
# model (see GPTConfig in model.py)
n_layer = 4
n_head = 4
n_embd = 128
dropout = 0.0
bias = False
curvature = "hyperbolic"
curvature_init = -0.05
curvature_per_head = True
curvature_shared = False
reference = "prev_token"
reference_window = 4
residual = "tangent"
attention = "dot"
aggregate = "tangent"
geometry_dtype = "float32"
geometry_checkpoint = False
# optimizer
optimizer = "adamw"  # 'adamw', or 'muon' (Muon for the blocks' weight matrices, AdamW for the rest)
learning_rate = 2e-3
max_iters = 2000
weight_decay = 0.1
beta1 = 0.9
beta2 = 0.99
grad_clip = 1.0  # 0 disables clipping
max_nonfinite = 25  # stop after this many consecutive steps with a non-finite loss or gradient (each skipped)
curvature_lr_mult = 1.0  # lr of the curvature parameters = learning_rate × this
# learning-rate schedule: linear warmup, then cosine decay to min_lr
decay_lr = True
warmup_iters = 100
lr_decay_iters = 2000
min_lr = 2e-4
# system
device = "auto"  # 'auto' (cuda if available, else cpu), 'cpu', 'cuda', 'cuda:1', ...
dtype = "auto"  # 'auto' (bfloat16 on GPUs that support it, else float32), 'float32', 'bfloat16', 'float16'
compile = False  # torch.compile the model
backend = "auto"  # DDP backend: 'auto' (nccl on CUDA, gloo on CPU), 'nccl', 'gloo'
seed = 1337
peak_flops = 0.0  # the accelerator's peak FLOP/s, for MFU in the logs; 0 leaves MFU out
# -----------------------------------------------------------------------------
DEFAULTS = {k: v for k, v in dict(globals()).items() if not k.startswith("_") and type(v) in (bool, int, float, str)}
MODEL_KEYS = ("n_layer", "n_head", "n_embd", "block_size", "bias", "dropout", "curvature", "curvature_init",
              "curvature_per_head", "curvature_shared", "reference", "reference_window", "residual", "attention",
              "aggregate", "geometry_dtype", "geometry_checkpoint")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
RESUME_MAY_CHANGE = ("dropout", "geometry_checkpoint")  # model options that leave the function unchanged
HERE = os.path.dirname(os.path.abspath(__file__))
CHECKPOINT_KEYS = ("model", "optimizer", "model_args", "iter_num", "best_val_loss", "elapsed", "config", "ranks")


class TrainError(RuntimeError):
    """A problem with the run's inputs (data, checkpoint, options) that a message explains."""


# ----------------------------------------------------------------------------- checkpoints


def save_checkpoint(path, state):
    """Write atomically: a kill mid-write leaves the previous checkpoint intact, never a truncated one."""
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        torch.save(state, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_checkpoint(path, map_location="cpu"):
    if not os.path.exists(path):
        raise TrainError(f"no checkpoint at {path} to resume from (train with init_from='scratch' first)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise TrainError(f"checkpoint {path} is corrupt or truncated and cannot be loaded "
                         f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise TrainError(f"{path} is not a kappaGPT checkpoint (missing {', '.join(missing)})")
    return ckpt


def check_resume_compatible(ckpt_args, cfg, path):
    """Resuming with another model shape or geometry would silently train a different model."""
    for key in MODEL_KEYS:
        if key in RESUME_MAY_CHANGE:
            continue
        if key in ckpt_args and ckpt_args[key] != cfg[key]:
            if key == "block_size" and cfg[key] > ckpt_args[key]:
                raise TrainError(f"block_size={cfg[key]} is larger than the checkpoint's {ckpt_args[key]} "
                                 f"({path}); a model cannot attend beyond the positions it was trained with")
            raise TrainError(f"cannot resume {path}: {key}={cfg[key]!r} but the checkpoint has "
                             f"{key}={ckpt_args[key]!r}; model options must match the checkpoint")


# ----------------------------------------------------------------------------- helpers


def get_lr(it, cfg):
    """Linear warmup for warmup_iters, cosine decay to min_lr at lr_decay_iters, then min_lr."""
    if not cfg["decay_lr"]:
        return cfg["learning_rate"]
    if it < cfg["warmup_iters"]:
        return cfg["learning_rate"] * (it + 1) / (cfg["warmup_iters"] + 1)
    if it > cfg["lr_decay_iters"]:
        return cfg["min_lr"]
    ratio = (it - cfg["warmup_iters"]) / max(1, cfg["lr_decay_iters"] - cfg["warmup_iters"])
    return cfg["min_lr"] + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (cfg["learning_rate"] - cfg["min_lr"])


def validate(cfg):
    for key in ("batch_size", "block_size", "gradient_accumulation_steps", "eval_interval", "log_interval",
                "eval_iters", "n_layer", "n_head", "n_embd", "max_nonfinite"):
        if cfg[key] <= 0:
            raise ConfigError(f"{key} must be positive, got {cfg[key]}")
    if cfg["max_iters"] < 0:
        raise ConfigError(f"max_iters must be ≥ 0, got {cfg['max_iters']}")
    if cfg["learning_rate"] <= 0:
        raise ConfigError(f"learning_rate must be positive, got {cfg['learning_rate']}")
    for key, allowed in (("init_from", ("scratch", "resume")), ("backend", ("auto", "nccl", "gloo")),
                         ("dtype", ("auto", *DTYPES))):
        if cfg[key] not in allowed:
            raise ConfigError(f"{key}={cfg[key]!r} is not one of {allowed}")


def resolve_device(device):
    """'auto' → 'cuda' when a GPU is visible, else 'cpu'; anything else as given."""
    return device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")


def precision(dtype, device_type):
    """The compute dtype ('auto' → bfloat16 on GPUs that support it, else float32) and its autocast context."""
    if dtype == "auto":
        dtype = "bfloat16" if device_type == "cuda" and torch.cuda.is_bf16_supported() else "float32"
    if dtype not in DTYPES:
        raise ConfigError(f"dtype={dtype!r} is not one of {('auto', *DTYPES)}")
    return dtype, nullcontext() if dtype == "float32" else torch.autocast(device_type, dtype=DTYPES[dtype])


def kappa_summary(kappas):
    return f"κ {kappas.mean():+.4f} [{kappas.min():+.4f}, {kappas.max():+.4f}]"


def curvature_metrics(raw_model, stats):
    """Per block and head κ, per block mean, and geometry health from a forward pass's `stats`."""
    out = {}
    if raw_model.curvature is None:
        return out
    ks = raw_model.kappas().detach().float().cpu()
    for l, row in enumerate(ks):
        for h, k in enumerate(row):
            out[f"curvature/block{l}/head{h}"] = k.item()
        out[f"curvature/block{l}/mean"] = row.mean().item()
    for l, s in enumerate(stats):
        out[f"geometry/block{l}/clamped"] = s["clamped"]
        out[f"geometry/block{l}/radius"] = s["radius"]
    return out


class Logger:
    """metrics.jsonl in out_dir (always, rank 0) and wandb (when wandb_log)."""

    def __init__(self, cfg, run_id, resumed):
        self.path = os.path.join(cfg["out_dir"], "metrics.jsonl")
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
        with open(self.path, "a") as f:
            f.write(json.dumps({"iter": step, **metrics}) + "\n")
        if self.wandb is not None:
            self.wandb.log(metrics, step=step)

    def finish(self):
        if self.wandb is not None:
            self.wandb.finish()


@torch.no_grad()
def estimate_loss(model, data, autocast, device, ddp):
    """Mean loss per split over the dataset's fixed evaluation batches, averaged over processes."""
    out = {}
    model.eval()
    for split in data.eval_splits:
        total, n = torch.zeros((), device=device), 0
        for x, y in data.eval_batches(split, device):
            with autocast:
                _, loss = model(x, y)
            total += loss.float()
            n += 1
        mean = total / n
        if ddp:
            torch.distributed.all_reduce(mean, op=torch.distributed.ReduceOp.AVG)
        out[split] = mean.item()
    model.train()
    return out


# ----------------------------------------------------------------------------- training


def train(cfg):
    """Run one training job described by the config dict `cfg`; returns a summary for scripts and tests."""
    validate(cfg)
    ddp = int(os.environ.get("RANK", -1)) != -1
    dev = resolve_device(cfg["device"])
    if ddp:
        import torch.distributed as dist

        rank, local_rank, world = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"]), int(os.environ["WORLD_SIZE"])
        if dev.startswith("cuda"):
            dev = f"cuda:{local_rank}"
            torch.cuda.set_device(dev)
        backend = cfg["backend"] if cfg["backend"] != "auto" else ("nccl" if dev.startswith("cuda") else "gloo")
        dist.init_process_group(backend=backend)
        if cfg["gradient_accumulation_steps"] % world:
            raise ConfigError(f"gradient_accumulation_steps={cfg['gradient_accumulation_steps']} must be a "
                              f"multiple of the number of processes ({world})")
    else:
        rank, local_rank, world = 0, 0, 1
    master = rank == 0
    grad_accum = cfg["gradient_accumulation_steps"] // world
    device_type = "cuda" if dev.startswith("cuda") else "cpu"
    dtype, autocast = precision(cfg["dtype"], device_type)
    torch.manual_seed(cfg["seed"] + rank)
    if device_type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    data_dir = cfg["data_dir"] or os.path.join(HERE, "data", cfg["dataset"])
    data = open_dataset(data_dir, cfg["dataset"], cfg["block_size"], cfg["batch_size"], rank, world, cfg["seed"],
                        cfg["eval_iters"], cfg["val_tokens"], cfg["data_random_start"])
    vocab_size = data.meta["vocab_size"] if data.meta else 50304
    ckpt_path = os.path.join(cfg["out_dir"], "ckpt.pt")

    model_args = {k: cfg[k] for k in MODEL_KEYS} | {"vocab_size": vocab_size}
    ckpt = None
    if cfg["init_from"] == "resume":
        ckpt = load_checkpoint(ckpt_path, map_location=dev)
        check_resume_compatible(ckpt["model_args"], cfg, ckpt_path)
        if ckpt["config"].get("optimizer", "adamw") != cfg["optimizer"]:
            raise TrainError(f"cannot resume {ckpt_path}: optimizer={cfg['optimizer']!r} but the checkpoint was "
                             f"trained with optimizer={ckpt['config'].get('optimizer', 'adamw')!r}")
        model_args = dict(ckpt["model_args"], **{k: cfg[k] for k in RESUME_MAY_CHANGE})
    try:
        model_config = GPTConfig(**model_args)
    except ValueError as e:  # an invalid combination of model options
        raise ConfigError(str(e)) from e
    model = GPT(model_config).to(dev)
    iter_num, best_val_loss, elapsed, run_id = 0, float("inf"), 0.0, None
    try:
        optimizer = model.configure_optimizers(cfg["weight_decay"], cfg["learning_rate"], (cfg["beta1"], cfg["beta2"]),
                                               device_type, cfg["curvature_lr_mult"], cfg["optimizer"])
    except ValueError as e:
        raise ConfigError(str(e)) from e
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        iter_num, best_val_loss, elapsed = ckpt["iter_num"], ckpt["best_val_loss"], ckpt["elapsed"]
        run_id = ckpt.get("wandb_run_id")
        ranks = ckpt["ranks"]
        if len(ranks) == world:  # same world size: every process continues exactly where it stopped
            data.load_state_dict(ranks[rank]["data"])
            torch.set_rng_state(ranks[rank]["torch_rng"])
            if device_type == "cuda" and "cuda_rng" in ranks[rank]:
                torch.cuda.set_rng_state(ranks[rank]["cuda_rng"].cpu(), dev)
        else:  # the data order restarts from rank 0's position; sampling noise differs from the original run
            data.load_state_dict(ranks[0]["data"])
            print(f"resuming {len(ranks)}-process checkpoint with {world} processes: not bit-exact")
        ckpt = None  # free memory
    raw_model = model
    scaler = torch.amp.GradScaler(device_type, enabled=(dtype == "float16"))
    if cfg["compile"]:
        model = torch.compile(model)
    if ddp:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(model, device_ids=[local_rank] if device_type == "cuda" else None)

    tokens_per_iter = grad_accum * world * cfg["batch_size"] * cfg["block_size"]
    logger = None
    if master:
        os.makedirs(cfg["out_dir"], exist_ok=True)
        for stale in glob.glob(f"{ckpt_path}.tmp.*"):  # left by a process killed while saving
            os.remove(stale)
        logger = Logger(cfg, run_id, resumed=cfg["init_from"] == "resume")
        n_params = raw_model.get_num_params() / 1e6
        print(f"{n_params:.2f}M parameters | curvature={raw_model.config.curvature} reference={raw_model.config.reference} "
              f"residual={raw_model.config.residual} | {tokens_per_iter:,} tokens/iter | device {dev} {dtype} "
              f"| world {world} | starting at iter {iter_num}")

    def checkpoint(val_loss):
        mine = {"data": data.state_dict(), "torch_rng": torch.get_rng_state()}
        if device_type == "cuda":
            mine["cuda_rng"] = torch.cuda.get_rng_state(dev)
        ranks = [mine]
        if ddp:  # every rank's data position and RNG, so a resume at the same world size continues exactly
            ranks = [None] * world
            torch.distributed.all_gather_object(ranks, mine)
        if master:
            save_checkpoint(ckpt_path, {
                "model": raw_model.state_dict(), "optimizer": optimizer.state_dict(), "model_args": model_args,
                "iter_num": iter_num, "best_val_loss": best_val_loss, "val_loss": val_loss, "elapsed": elapsed,
                "config": cfg, "ranks": ranks, "wandb_run_id": logger.run_id,
                "meta": data.meta,
            })

    stop = {"signal": None}

    def on_signal(signum, frame):  # finish the current step, save, exit cleanly
        stop["signal"] = signum

    # every process listens (torchrun forwards SIGTERM to all of them); under DDP they agree on when to stop
    previous_handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)} \
        if _main_thread() else {}

    start_iter = iter_num
    nonfinite_run = nonfinite_steps = 0
    summary = {"val_loss": None, "train_loss": None}
    t0 = time.time()
    last_loss = float("nan")
    try:
        while True:
            lr = get_lr(iter_num, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr * group["lr_mult"]
            is_last = iter_num >= cfg["max_iters"]
            if (iter_num % cfg["eval_interval"] == 0 or is_last) and not (iter_num == start_iter and iter_num > 0):
                losses = estimate_loss(model, data, autocast, dev, ddp)
                summary.update(train_loss=losses.get("train"), val_loss=losses["val"])
                stats = []
                if raw_model.curvature is not None:
                    with torch.no_grad(), autocast:
                        raw_model.eval()
                        raw_model(next(data.eval_batches("val", dev))[0], stats=stats)
                        raw_model.train()
                if master:
                    print(f"eval iter {iter_num}: " + ", ".join(f"{k} loss {v:.4f}" for k, v in losses.items()))
                    logger.log(iter_num, {"val/loss": losses["val"],
                                          **({"train/eval_loss": losses["train"]} if "train" in losses else {}),
                                          "wall": elapsed + time.time() - t0, "lr": lr,
                                          **curvature_metrics(raw_model, stats)})
                improved = losses["val"] < best_val_loss
                best_val_loss = min(best_val_loss, losses["val"])
                if iter_num > start_iter and (improved or cfg["always_save_checkpoint"]):
                    elapsed, t0 = elapsed + time.time() - t0, time.time()  # wall time so far, kept across resumes
                    checkpoint(losses["val"])
            if is_last or (iter_num == start_iter and cfg["eval_only"]):
                break

            t_step = time.time()
            for micro_step in range(grad_accum):
                if ddp:  # sync gradients only on the last micro-step
                    model.require_backward_grad_sync = micro_step == grad_accum - 1
                x, y = data.train_batch(dev)
                with autocast:
                    _, loss = model(x, y)
                    loss = loss / grad_accum
                scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            max_norm = cfg["grad_clip"] if cfg["grad_clip"] > 0 else float("inf")  # inf: measure, don't clip
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm).item()
            last_loss = loss.item() * grad_accum
            finite = math.isfinite(grad_norm) and math.isfinite(last_loss)
            if finite or scaler.is_enabled():  # a float16 scaler skips non-finite steps itself
                scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            iter_num += 1
            if finite:
                nonfinite_run = 0
            else:  # skip the update: one bad batch or spike must not poison the weights
                nonfinite_run += 1
                nonfinite_steps += 1
                if master:
                    print(f"iter {iter_num}: non-finite loss {last_loss} or gradient norm {grad_norm}: step skipped "
                          f"({nonfinite_run} in a row, {nonfinite_steps} in all)")
                if nonfinite_run >= cfg["max_nonfinite"]:
                    raise TrainError(f"{nonfinite_run} consecutive non-finite steps at iter {iter_num}: stopping. "
                                     f"The last good checkpoint {ckpt_path} is intact; lower learning_rate, or "
                                     f"resume with dtype='float32' to rule out precision")
            if iter_num % cfg["log_interval"] == 0 and master:
                if device_type == "cuda":
                    torch.cuda.synchronize()
                dt = time.time() - t_step
                ks = raw_model.kappas().detach().float()
                line = (f"iter {iter_num}: loss {last_loss:.4f}, {dt * 1000:.1f} ms/iter, "
                        f"{tokens_per_iter / dt:,.0f} tok/s, lr {lr:.2e}")
                metrics = {"train/loss": last_loss, "lr": lr, "tokens_per_sec": tokens_per_iter / dt,
                           "grad_norm": grad_norm, "ms_per_iter": dt * 1000, "nonfinite_steps": nonfinite_steps,
                           "wall": elapsed + time.time() - t0}
                if cfg["peak_flops"] > 0:
                    mfu = raw_model.estimate_mfu(cfg["batch_size"] * grad_accum, dt, cfg["peak_flops"])
                    metrics["mfu"] = mfu
                    line += f", mfu {mfu * 100:.1f}%"
                if raw_model.curvature is not None:
                    line += ", " + kappa_summary(ks)
                    metrics.update(curvature_metrics(raw_model, []))
                print(line)
                logger.log(iter_num, metrics)
            stop_now = stop["signal"] is not None
            if ddp:  # a signal may reach the processes a step apart: stop together at the first one's step
                flag = torch.tensor(float(stop_now), device=dev)
                torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
                stop_now = flag.item() > 0
            if stop_now:
                if master:
                    print(f"stop signal received: saving a checkpoint at iter {iter_num} and exiting")
                elapsed, t0 = elapsed + time.time() - t0, time.time()
                checkpoint(float("nan"))
                break
    finally:
        for s, h in previous_handlers.items():
            signal.signal(s, h)
        if logger is not None:
            logger.finish()
        if ddp:
            torch.distributed.destroy_process_group()
    summary.update(iter_num=iter_num, last_train_loss=last_loss, kappas=raw_model.kappas().detach().cpu())
    return summary


def _main_thread():
    import threading

    return threading.current_thread() is threading.main_thread()


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        cfg = configure(DEFAULTS, argv)
        return train(cfg)
    except (ConfigError, TrainError, DataError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
