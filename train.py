"""
Train a kappaGPT model. With no arguments: a curved 4-layer model on Shakespeare-char, sized for a CPU.

    python train.py                                            # the embedded default
    python train.py config/train_shakespeare_char.py --compile=False
    torchrun --standalone --nproc_per_node=8 train.py config/train_fineweb.py

Config files and --key=value overrides are explained in configurator.py; every key is one of the defaults
below or a field of GPTConfig (model.py). Under torchrun, gradient_accumulation_steps counts micro-steps
across all processes.

Read top to bottom: the options, then the named steps of a run (start, evaluate_and_checkpoint,
optimizer_step, log_step), then train(), whose loop strings them together. What the loop uses but is not the loop
lives beside it: logger.py (metrics.jsonl, wandb), hellaswag.py (its evaluation), runtime.py (processes, checkpoints,
optimizers, the run's clock and stop signal)."""
import dataclasses
import gc
import glob
import math
import os
import shutil
import sys
import tempfile
import time

import torch

from configurator import ConfigError, configure
import hellaswag
import pretrained
from loader import DataError, check_format_options, open_dataset
from logger import Logger, curvature_metrics, geometry_health, kappa_summary, truncate_metrics
from model import GPT, GPTConfig
from runtime import (DTYPES, MODEL_DEFAULTS, MODEL_KEYS, RESUME_MAY_CHANGE, Process, Progress, RunError, StopSignal,
                     check_resume_compatible, check_vocab_compatible, configure_optimizers, load_checkpoint,
                     init_process, precision, save_checkpoint)

# ----------------------------------------------------------------------------- defaults
# I/O
out_dir = "out-shakespeare-char-cpu"
eval_interval = 250  # evaluate (and checkpoint) every this many iterations, and at max_iters
log_interval = 25
eval_iters = 20  # train.bin/val.bin data: batches per split per evaluation, the same batches every time
eval_only = False  # evaluate once and exit
eval_full = False  # at max_iters (and eval_only) also the loss on the whole val (and test.bin's) split: val/loss_full
eval_full_tokens = 0  # eval_full on each split's first this-many tokens (0: all); train.bin data (shards: val_tokens)
always_save_checkpoint = True  # save at every evaluation (else only when val loss improves)
init_from = "scratch"  # 'scratch', 'resume' (from out_dir/ckpt.pt), 'gpt2'…'gpt2-xl', or a Hugging Face GPT-2 dir
overwrite = False  # let init_from='scratch' replace a run already in out_dir (else that is an error)
# logging
wandb_log = False
wandb_project = "kappagpt"
wandb_run_name = "shakespeare-char-cpu"
# data
dataset = "shakespeare_char"
data_dir = ""  # default: data/<dataset> next to this file
data_random_start = False  # sharded data: start at a seeded random shard and position instead of the first
val_tokens = 10_485_760  # sharded data: tokens per evaluation (the speedrun's budget), split across processes
sampler = "random"  # train.bin/val.bin data: 'random' windows (nanoGPT's, drawn with replacement) or 'epoch' (every
# window once in a seeded shuffled order before any repeats; loader.CharDataset). Sharded data is read in order
hellaswag_dir = ""  # GPT-2 BPE data: HellaSwag accuracy at every evaluation when this holds data/hellaswag/prepare.py's
# output ('' = data/hellaswag next to this file); skipped when the file is not there
gradient_accumulation_steps = 1
batch_size = 12
# model: every GPTConfig field is a key, with GPTConfig's default (GPT-2 sized); these make it CPU sized
block_size = 64
n_layer = 4
n_head = 4
n_embd = 128
bias = False
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
# learning-rate schedule: linear warmup, then decay to min_lr
decay_lr = True
decay_shape = "cosine"  # 'cosine', or 'linear' (to min_lr=0: linear decay to zero, Bergsma et al. 2025)
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
threads = 0  # CPU threads of this process (torch.set_num_threads; 0: torch's default). Changes the float sums' order
# -----------------------------------------------------------------------------
DEFAULTS = MODEL_DEFAULTS | {k: v for k, v in dict(globals()).items()
                             if not k.startswith("_") and type(v) in (bool, int, float, str)}
HERE = os.path.dirname(os.path.abspath(__file__))


def validate(cfg):
    """Options of the run itself; the model's are checked by GPTConfig (see model_config)."""
    for key in ("batch_size", "gradient_accumulation_steps", "eval_interval", "log_interval", "eval_iters",
                "max_nonfinite"):
        if cfg[key] <= 0:
            raise ConfigError(f"{key} must be positive, got {cfg[key]}")
    for key in ("max_iters", "warmup_iters", "grad_clip", "weight_decay", "min_lr", "curvature_lr_mult", "peak_flops",
                "eval_full_tokens", "threads"):
        if cfg[key] < 0:
            raise ConfigError(f"{key} must be ≥ 0, got {cfg[key]}")
    if cfg["learning_rate"] <= 0:
        raise ConfigError(f"learning_rate must be positive, got {cfg['learning_rate']}")
    for key in ("beta1", "beta2"):
        if not 0 <= cfg[key] < 1:
            raise ConfigError(f"{key} must be in [0, 1), got {cfg[key]}")
    if 0 < cfg["eval_full_tokens"] < cfg["block_size"]:
        raise ConfigError(f"eval_full_tokens={cfg['eval_full_tokens']} is shorter than one window (block_size = "
                          f"{cfg['block_size']}): set 0 (the whole split) or at least block_size")
    if not cfg["out_dir"]:
        raise ConfigError("out_dir is empty; name the directory for the checkpoint and logs")
    pretrained.check_init_from(cfg["init_from"])
    for key, allowed in (("backend", ("auto", "nccl", "gloo")), ("dtype", ("auto", *DTYPES)),
                         ("decay_shape", ("cosine", "linear"))):
        if cfg[key] not in allowed:
            raise ConfigError(f"{key}={cfg[key]!r} is not one of {allowed}")


def model_config(model_args):
    """GPTConfig from a dict of model options; an invalid one is a ConfigError with GPTConfig's message."""
    try:
        return GPTConfig(**model_args)
    except ValueError as e:
        raise ConfigError(str(e)) from e


def get_lr(it, cfg):
    """Linear warmup for warmup_iters, decay_shape decay to min_lr at lr_decay_iters, then min_lr."""
    if not cfg["decay_lr"]:
        return cfg["learning_rate"]
    if it < cfg["warmup_iters"]:
        return cfg["learning_rate"] * (it + 1) / (cfg["warmup_iters"] + 1)
    if it > cfg["lr_decay_iters"]:
        return cfg["min_lr"]
    ratio = (it - cfg["warmup_iters"]) / max(1, cfg["lr_decay_iters"] - cfg["warmup_iters"])
    if cfg["decay_shape"] == "linear":
        return cfg["min_lr"] + (1.0 - ratio) * (cfg["learning_rate"] - cfg["min_lr"])
    return cfg["min_lr"] + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (cfg["learning_rate"] - cfg["min_lr"])


# ----------------------------------------------------------------------------- the state of a run


@dataclasses.dataclass
class Run:
    """Everything the steps of a training run share."""
    cfg: dict
    proc: Process
    data: object  # loader.CharDataset or loader.ShardDataset
    raw_model: GPT
    model: torch.nn.Module  # raw_model, compiled and/or wrapped in DDP
    optimizer: object
    scaler: torch.amp.GradScaler
    autocast: object
    dtype: str
    model_args: dict
    progress: Progress
    ckpt_path: str
    logger: "Logger | None" = None
    hellaswag_items: "list | None" = None  # tokenized items, on GPT-2 BPE data when prepared

    @property
    def tokens_per_iter(self):
        return self.cfg["gradient_accumulation_steps"] * self.cfg["batch_size"] * self.cfg["block_size"]


# ----------------------------------------------------------------------------- start: everything before step 1


def check_run_dir(cfg):
    """A new run (scratch or pretrained) never replaces a run already in out_dir by accident; eval_only writes
    nothing there."""
    if cfg["init_from"] == "resume" or cfg["overwrite"] or cfg["eval_only"]:
        return
    found = [f for f in ("ckpt.pt", "metrics.jsonl") if os.path.exists(os.path.join(cfg["out_dir"], f))]
    if found:
        raise RunError(f"{cfg['out_dir']} already holds a run ({', '.join(found)}): continue it with "
                       f"--init_from=resume, or replace it with --overwrite=True")


def prepare_out_dir(run):
    """Before the first step: out_dir is a writable directory with room for a checkpoint. A scratch run
    (overwrite=True, or none there) removes an old run's files; a resumed one cuts metrics.jsonl back to the
    checkpoint's iteration."""
    out = run.cfg["out_dir"]
    if os.path.exists(out) and not os.path.isdir(out):
        raise RunError(f"out_dir {out} is a file, not a directory")
    try:
        os.makedirs(out, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise RunError(f"out_dir {out} is not writable ({e.strerror or e})") from None
    # the model, and AdamW's two moments per parameter (Muon keeps one), plus room for the small rest
    need = 3 * sum(p.numel() * p.element_size() for p in run.raw_model.parameters()) + 2**20
    free = shutil.disk_usage(out).free
    if free < need:
        raise RunError(f"out_dir {out} has {free / 2**20:,.1f} MiB free, but a checkpoint needs about "
                       f"{need / 2**20:,.1f} MiB")
    for stale in glob.glob(f"{run.ckpt_path}.tmp.*"):  # left by a process killed while saving
        os.remove(stale)
    metrics = os.path.join(out, "metrics.jsonl")
    if run.cfg["init_from"] != "resume":
        for old in (run.ckpt_path, metrics):
            if os.path.exists(old):
                os.remove(old)
    else:
        truncate_metrics(metrics, run.progress.iter_num)


def restore(ckpt, run):
    """Continue where the checkpoint stopped: weights, optimizer, progress, data position and RNG. Returns
    the wandb run id."""
    run.raw_model.load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    p = run.progress
    p.iter_num, p.best_val_loss, p.elapsed = ckpt["iter_num"], ckpt["best_val_loss"], ckpt["elapsed"]
    ranks, rank = ckpt["ranks"], run.proc.rank
    if len(ranks) == run.proc.world:  # same world size: every process continues exactly where it stopped
        run.data.load_state_dict(ranks[rank]["data"])
        torch.set_rng_state(ranks[rank]["torch_rng"])
        if run.proc.device_type == "cuda" and "cuda_rng" in ranks[rank]:
            torch.cuda.set_rng_state(ranks[rank]["cuda_rng"].cpu(), run.proc.device)
    else:  # the data order restarts from rank 0's position; sampling noise differs from the original run
        run.data.load_state_dict(ranks[0]["data"])
        print(f"resuming {len(ranks)}-process checkpoint with {run.proc.world} processes: not bit-exact")
    return ckpt.get("wandb_run_id")


def build_model(cfg, data, ckpt_path, explicit, device):
    """The model, its options and the checkpoint to restore (None unless resuming): from scratch, from
    out_dir/ckpt.pt, or from GPT-2's weights (pretrained.py; `explicit` are the options the user set)."""
    model_args = {k: cfg[k] for k in MODEL_KEYS} | {"vocab_size": data.meta["vocab_size"] if data.meta else 50304}
    if cfg["init_from"] == "resume":
        ckpt = load_checkpoint(ckpt_path, map_location=device)
        # the architecture comes from the checkpoint where not set (a fine-tuned GPT-2's sizes are in no config)
        arch = {k: ckpt["model_args"][k] for k in pretrained.ARCH_KEYS if k not in explicit and k in ckpt["model_args"]}
        check_resume_compatible(ckpt["model_args"], cfg | arch, ckpt_path)
        check_vocab_compatible(ckpt, data.vocab, data.meta, ckpt_path)
        if ckpt["config"].get("optimizer", "adamw") != cfg["optimizer"]:
            raise RunError(f"cannot resume {ckpt_path}: optimizer={cfg['optimizer']!r} but the checkpoint was "
                           f"trained with optimizer={ckpt['config'].get('optimizer', 'adamw')!r}")
        model_args = dict(ckpt["model_args"], **{k: cfg[k] for k in RESUME_MAY_CHANGE})
        return GPT(model_config(model_args)), model_args, ckpt
    if cfg["init_from"] == "scratch":
        return GPT(model_config(model_args)), model_args, None
    model, model_args, vocab, meta = pretrained.load(cfg["init_from"], cfg, explicit, DEFAULTS)
    check_vocab_compatible({"vocab": vocab, "meta": meta}, data.vocab, data.meta, cfg["init_from"], "fine-tune")
    caveats = pretrained.graft_caveats(model.config, cfg["init_from"])
    if caveats:
        print(f"note: this model does not start as {cfg['init_from']}'s function: {'; '.join(caveats)}")
    return model, model_args, None


def start(cfg, explicit=()):
    """Check the options, join the process group, seed, open the data, build the model (from scratch, from
    out_dir/ckpt.pt or from GPT-2's weights), compile and wrap it, then open out_dir and the logger."""
    validate(cfg)
    model_config({k: cfg[k] for k in MODEL_KEYS})  # a bad model option fails before any work is done
    check_run_dir(cfg)
    proc = init_process(cfg)
    dtype, autocast = precision(cfg["dtype"], proc.device_type)
    torch.manual_seed(cfg["seed"] + proc.rank)
    if proc.device_type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    data = open_dataset(cfg["data_dir"] or os.path.join(HERE, "data", cfg["dataset"]), cfg["dataset"],
                        cfg["block_size"], cfg["batch_size"], proc.rank, proc.world, cfg["seed"], cfg["eval_iters"],
                        cfg["val_tokens"], cfg["data_random_start"], cfg["sampler"])
    check_format_options(data, explicit)
    ckpt_path = os.path.join(cfg["out_dir"], "ckpt.pt")
    raw_model, model_args, ckpt = build_model(cfg, data, ckpt_path, explicit, proc.device)
    raw_model.to(proc.device)
    try:
        optimizer = configure_optimizers(raw_model, cfg["weight_decay"], cfg["learning_rate"],
                                         (cfg["beta1"], cfg["beta2"]), proc.device_type, cfg["curvature_lr_mult"],
                                         cfg["optimizer"])
    except ValueError as e:
        raise ConfigError(str(e)) from e
    run = Run(cfg, proc, data, raw_model, raw_model, optimizer,
              torch.amp.GradScaler(proc.device_type, enabled=(dtype == "float16")), autocast, dtype, model_args,
              Progress(), ckpt_path)
    run_id = restore(ckpt, run) if ckpt is not None else None
    if data.vocab["tokenizer"] == "gpt2":
        hellaswag_dir = cfg["hellaswag_dir"] or os.path.join(HERE, "data", "hellaswag")
        run.hellaswag_items = hellaswag.read(os.path.join(hellaswag_dir, "hellaswag_val_tokens.jsonl"),
                                             required=bool(cfg["hellaswag_dir"]))
    if cfg["compile"]:
        run.model = torch.compile(run.model)
    if proc.ddp:
        from torch.nn.parallel import DistributedDataParallel as DDP

        run.model = DDP(run.model, device_ids=[proc.local_rank] if proc.device_type == "cuda" else None)
    if proc.master:
        if not cfg["eval_only"]:
            prepare_out_dir(run)
        run.logger = Logger(cfg, run_id, resumed=cfg["init_from"] == "resume")
        c = raw_model.config
        print(f"{raw_model.get_num_params() / 1e6:.2f}M parameters | curvature={c.curvature} "
              f"reference={c.reference} residual={c.residual} | {run.tokens_per_iter:,} tokens/iter | device "
              f"{proc.device} {dtype} | world {proc.world} | starting at iter {run.progress.iter_num}")
    return run


# ----------------------------------------------------------------------------- the steps


@torch.no_grad()
def estimate_loss(run, full=False):
    """Mean loss per split over the dataset's fixed evaluation batches, averaged over processes; with `full`, also
    "val_full" (and "test_full" where the data has a test split): the mean loss per token over the whole split (the
    same text for every run; computed on the uncompiled model of rank 0, as its batch shapes differ)."""
    out = {}
    run.model.eval()
    for split in run.data.eval_splits:
        total, n = torch.zeros((), device=run.proc.device), 0
        for x, y in run.data.eval_batches(split, run.proc.device):
            with run.autocast:
                _, loss = run.model(x, y)
            total += loss.float()
            n += 1
        mean = total / n
        if run.proc.ddp:
            torch.distributed.all_reduce(mean, op=torch.distributed.ReduceOp.AVG)
        out[split] = mean.item()
    for split in run.data.full_splits if full and run.proc.master else ():
        total, n = 0.0, 0
        for x, y in run.data.full_batches(split, run.proc.device, run.cfg["eval_full_tokens"]):
            with run.autocast:
                total += run.raw_model(x, y)[1].item() * y.numel()
            n += y.numel()
        out[f"{split}_full"] = total / n
    run.model.train()
    return out


def save(run, val_loss):
    """Checkpoint the run, with every process's data position and RNG so that a resume at the same world
    size continues exactly."""
    mine = {"data": run.data.state_dict(), "torch_rng": torch.get_rng_state()}
    if run.proc.device_type == "cuda":
        mine["cuda_rng"] = torch.cuda.get_rng_state(run.proc.device)
    ranks = [mine]
    if run.proc.ddp:
        ranks = [None] * run.proc.world
        torch.distributed.all_gather_object(ranks, mine)
    if run.proc.master:
        p = run.progress
        save_checkpoint(run.ckpt_path, {"model": run.raw_model.state_dict(), "optimizer": run.optimizer.state_dict(),
            "model_args": run.model_args, "iter_num": p.iter_num, "best_val_loss": p.best_val_loss,
            "val_loss": val_loss, "elapsed": p.wall(), "config": run.cfg, "ranks": ranks,
            "wandb_run_id": run.logger.run_id, "meta": run.data.meta, "vocab": run.data.vocab})


def evaluate_and_checkpoint(run, lr, may_save, last):
    """Evaluate (the whole validation split too when `last` and eval_full), log the losses and the geometry's
    health, and checkpoint when may_save and the policy (always_save_checkpoint, or an improved val loss) say so.
    Returns the losses."""
    losses = estimate_loss(run, full=last and run.cfg["eval_full"])
    stats = geometry_health(run)
    proc = run.proc  # HellaSwag on the uncompiled model: every item has its own length
    hs = (hellaswag.evaluate(run.raw_model, run.hellaswag_items, run.autocast, proc.device, proc.rank, proc.world)
          if run.hellaswag_items else {})
    p = run.progress
    if run.proc.master:
        print(f"eval iter {p.iter_num}: " + ", ".join(
                  f"{k} loss {v:.4f}" + (f" ({v / math.log(2):.4f} bits/token)" if k.endswith("_full") else "")
                  for k, v in losses.items()) +
              (f", hellaswag acc_norm {hs['hellaswag/acc_norm']:.4f}" if hs else ""))
        full = {f"{split}/{kind}_full": losses[f"{split}_full"] / (math.log(2) if kind == "bits" else 1)
                for split in ("val", "test") if f"{split}_full" in losses for kind in ("loss", "bits")}
        run.logger.log(p.iter_num, {"val/loss": losses["val"], **full,
                                    **({"train/eval_loss": losses["train"]} if "train" in losses else {}),
                                    **hs, "wall": p.wall(), "lr": lr, **curvature_metrics(run.raw_model, stats)})
    improved = losses["val"] < p.best_val_loss
    p.best_val_loss = min(p.best_val_loss, losses["val"])
    if may_save and (improved or run.cfg["always_save_checkpoint"]):
        save(run, losses["val"])
    return losses


def optimizer_step(run):
    """One optimizer step over gradient_accumulation_steps micro-batches, gradients clipped. A step whose loss
    or gradient norm is not finite is not applied. Returns the loss, the gradient norm and finiteness."""
    grad_accum = run.cfg["gradient_accumulation_steps"] // run.proc.world
    for micro_step in range(grad_accum):
        if run.proc.ddp:  # sync gradients only on the last micro-step
            run.model.require_backward_grad_sync = micro_step == grad_accum - 1
        x, y = run.data.train_batch(run.proc.device)
        with run.autocast:
            _, loss = run.model(x, y)
            loss = loss / grad_accum
        run.scaler.scale(loss).backward()
    run.scaler.unscale_(run.optimizer)
    max_norm = run.cfg["grad_clip"] if run.cfg["grad_clip"] > 0 else float("inf")  # inf: measure, don't clip
    grad_norm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), max_norm).item()
    loss = loss.item() * grad_accum
    finite = math.isfinite(grad_norm) and math.isfinite(loss)
    if finite or run.scaler.is_enabled():  # a float16 scaler skips non-finite steps itself
        run.scaler.step(run.optimizer)
        run.raw_model.after_step()  # a block's own step (nGPT puts its weights back on the sphere)
    run.scaler.update()
    run.optimizer.zero_grad(set_to_none=True)
    return loss, grad_norm, finite


def count_nonfinite(run, finite, loss, grad_norm):
    """Count skipped steps; too many in a row stop the run (one bad batch must not, a diverged run must)."""
    p = run.progress
    if finite:
        p.nonfinite_run = 0
        return
    p.nonfinite_run += 1
    p.nonfinite_steps += 1
    if run.proc.master:
        print(f"iter {p.iter_num}: non-finite loss {loss} or gradient norm {grad_norm}: step skipped "
              f"({p.nonfinite_run} in a row, {p.nonfinite_steps} in all)")
    if p.nonfinite_run >= run.cfg["max_nonfinite"]:
        kept = (f"The last good checkpoint {run.ckpt_path} is intact" if os.path.exists(run.ckpt_path) else
                "No checkpoint was written yet")
        raise RunError(f"{p.nonfinite_run} consecutive non-finite steps at iter {p.iter_num}: stopping. {kept}; "
                       f"lower learning_rate, or resume with dtype='float32' to rule out precision")


def log_step(run, loss, grad_norm, lr, t_step):
    """Print and log one training line (rank 0): loss, speed, lr, κ."""
    if run.proc.device_type == "cuda":
        torch.cuda.synchronize()
    dt = time.time() - t_step
    p, tokens = run.progress, run.tokens_per_iter
    line = f"iter {p.iter_num}: loss {loss:.4f}, {dt * 1000:.1f} ms/iter, {tokens / dt:,.0f} tok/s, lr {lr:.2e}"
    metrics = {"train/loss": loss, "lr": lr, "tokens_per_sec": tokens / dt, "grad_norm": grad_norm,
               "ms_per_iter": dt * 1000, "nonfinite_steps": p.nonfinite_steps, "wall": p.wall()}
    if run.cfg["peak_flops"] > 0:
        micro_batches = run.cfg["batch_size"] * run.cfg["gradient_accumulation_steps"] // run.proc.world
        metrics["mfu"] = run.raw_model.estimate_mfu(micro_batches, dt, run.cfg["peak_flops"])
        line += f", mfu {metrics['mfu'] * 100:.1f}%"
    if run.raw_model.curvature is not None:
        line += ", " + kappa_summary(run.raw_model.kappas().detach().float())
        metrics.update(curvature_metrics(run.raw_model, []))
    print(line)
    run.logger.log(p.iter_num, metrics)


# ----------------------------------------------------------------------------- the loop


def train(cfg, explicit=()):
    """Run one training job described by the config dict `cfg` (`explicit`: the keys the user set, which a
    pretrained model's architecture must agree with); returns a summary for scripts and tests."""
    run = start(cfg, explicit)
    p, stop, first_iter = run.progress, StopSignal(), run.progress.iter_num
    summary = {"val_loss": None, "train_loss": None}
    p.started = time.time()
    try:
        while True:
            lr = get_lr(p.iter_num, cfg)
            for group in run.optimizer.param_groups:
                group["lr"] = lr * group["lr_mult"]
            is_last = p.iter_num >= cfg["max_iters"]
            # a resumed run does not repeat the evaluation its checkpoint was saved after (eval_only does)
            resumed_here = p.iter_num == first_iter and first_iter > 0 and not cfg["eval_only"]
            if (p.iter_num % cfg["eval_interval"] == 0 or is_last) and not resumed_here:
                losses = evaluate_and_checkpoint(run, lr, p.iter_num > first_iter, is_last or cfg["eval_only"])
                summary.update(train_loss=losses.get("train"), val_loss=losses["val"],
                               **{k: losses.get(k) for k in ("val_full", "test_full")})
            if is_last or (p.iter_num == first_iter and cfg["eval_only"]):
                break
            t_step = time.time()
            p.last_loss, grad_norm, finite = optimizer_step(run)
            p.iter_num += 1
            count_nonfinite(run, finite, p.last_loss, grad_norm)
            if p.iter_num % cfg["log_interval"] == 0 and run.proc.master:
                log_step(run, p.last_loss, grad_norm, lr, t_step)
            if stop.agreed(run.proc):
                if run.proc.master:
                    print(f"stop signal received: saving a checkpoint at iter {p.iter_num} and exiting "
                          f"(exit code {128 + stop.received})")
                save(run, float("nan"))
                summary["stop_signal"] = stop.received
                break
    finally:
        stop.restore()
        if run.logger is not None:
            run.logger.finish()
        if run.proc.ddp:
            # DDP's reducer holds the process group: drop it while the interpreter is fully alive, or gloo's
            # threads may be torn down at exit in an order that aborts the process after a finished run
            run.model = run.raw_model
            gc.collect()
            torch.distributed.destroy_process_group()
    return dict(summary, iter_num=p.iter_num, last_train_loss=p.last_loss, kappas=run.raw_model.kappas().detach().cpu())


def main(argv=None):
    """The command line: one line on stderr and exit code 1 for a bad input; after a stop signal, exit code
    128 + the signal's number (143 for SIGTERM, 130 for Ctrl-C), as a shell reports it, with the checkpoint saved."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        explicit = set()
        cfg = configure(DEFAULTS, argv, explicit)
        summary = train(cfg, explicit)
    except (ConfigError, RunError, DataError) as e:
        sys.exit(f"error: {e}")
    if summary.get("stop_signal"):
        sys.exit(128 + summary["stop_signal"])
    return summary


if __name__ == "__main__":
    main()
