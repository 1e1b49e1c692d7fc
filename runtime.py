"""
What train.py, sample.py and bench.py share, so that none of them imports another: the error type, device
and precision, checkpoints (atomic save, checked load, resume compatibility), the optimizers, and a run's clock
(Progress: iteration, best loss, wall-clock time across resumes) and stop signal (SIGTERM/SIGINT).

Imports model.py; model.py never imports it.
"""
import dataclasses
import inspect
import os
import signal
import threading
import time
from contextlib import nullcontext

import torch

from configurator import ConfigError
from loader import GPT2_VOCAB
from model import GPT, GPTConfig

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Every GPTConfig field is a run option, except the vocabulary size, which the dataset decides.
MODEL_KEYS = tuple(f.name for f in dataclasses.fields(GPTConfig) if f.name != "vocab_size")
MODEL_DEFAULTS = {f.name: f.default for f in dataclasses.fields(GPTConfig) if f.name in MODEL_KEYS}
RESUME_MAY_CHANGE = ("dropout", "geometry_checkpoint")  # model options that leave the function unchanged
CHECKPOINT_KEYS = ("model", "optimizer", "model_args", "iter_num", "best_val_loss", "elapsed", "config", "ranks")


class RunError(RuntimeError):
    """A problem with a run's inputs (checkpoint, options, state) that the message explains."""


# ----------------------------------------------------------------------------- device and precision


def resolve_device(device):
    """'auto' → 'cuda' when a GPU is visible, else 'cpu'; anything else is checked to exist on this machine."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind, index = torch.device(device).type, torch.device(device).index
    except (RuntimeError, ValueError):
        raise ConfigError(f"device={device!r} is not a device name (cpu, cuda, cuda:1, mps, auto)") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise RunError(f"device={device!r} but torch sees no CUDA GPU on this machine; use --device=cpu (or auto)")
    if kind == "cuda" and index is not None and index >= torch.cuda.device_count():
        raise RunError(f"device={device!r} but this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise RunError(f"device={device!r} but the MPS backend is not available here; use --device=cpu (or auto)")
    if kind not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device={device!r}: kappaGPT runs on cpu, cuda or mps")
    return device


def precision(dtype, device_type):
    """The compute dtype ('auto' → bfloat16 on GPUs that support it, else float32) and its autocast context."""
    if dtype == "auto":
        dtype = "bfloat16" if device_type == "cuda" and torch.cuda.is_bf16_supported() else "float32"
    if dtype not in DTYPES:
        raise ConfigError(f"dtype={dtype!r} is not one of {('auto', *DTYPES)}")
    return dtype, nullcontext() if dtype == "float32" else torch.autocast(device_type, dtype=DTYPES[dtype])


# ----------------------------------------------------------------------------- checkpoints


def save_checkpoint(path, state):
    """Write atomically: a kill mid-write leaves the previous checkpoint intact, never a truncated one. A failed
    write (disk full, permissions) is a RunError that says so."""
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        torch.save(state, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        kept = "the previous checkpoint is intact" if os.path.exists(path) else "no checkpoint was written"
        raise RunError(f"could not write checkpoint {path} ({e.strerror or e}); {kept}") from e
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_checkpoint(path, map_location="cpu"):
    """The checkpoint dict at `path`, loaded with weights_only=True and checked for kappaGPT's keys."""
    if not os.path.exists(path):
        raise RunError(f"no checkpoint at {path} to resume from (train with init_from='scratch' first)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise RunError(f"checkpoint {path} is corrupt or truncated and cannot be loaded "
                       f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise RunError(f"{path} is not a kappaGPT checkpoint (missing {', '.join(missing)})")
    return ckpt


def model_from_checkpoint(ckpt):
    """The checkpoint's model, weights loaded, on the CPU."""
    model = GPT(GPTConfig(**ckpt["model_args"]))
    model.load_state_dict(ckpt["model"])
    return model


def check_resume_compatible(ckpt_args, cfg, path):
    """Resuming with another model shape or geometry would silently train a different model."""
    for key in MODEL_KEYS:
        if key in RESUME_MAY_CHANGE or key not in ckpt_args or ckpt_args[key] == cfg[key]:
            continue
        if key == "block_size" and cfg[key] > ckpt_args[key]:
            raise RunError(f"block_size={cfg[key]} is larger than the checkpoint's {ckpt_args[key]} "
                           f"({path}); a model cannot attend beyond the positions it was trained with")
        raise RunError(f"cannot resume {path}: {key}={cfg[key]!r} but the checkpoint has "
                       f"{key}={ckpt_args[key]!r}; model options must match the checkpoint")


def check_vocab_compatible(ckpt, vocab, meta, path, action="resume"):
    """Resuming (or fine-tuning, action='fine-tune') on data with another vocabulary would train the embeddings on
    ids that mean other tokens."""
    ck_meta = ckpt.get("meta")
    # checkpoints from before "vocab" was recorded: character data carried meta, BPE data none
    ck_vocab = ckpt.get("vocab") or ({"tokenizer": "chars", "size": ck_meta["vocab_size"]} if ck_meta else
                                     {"tokenizer": "gpt2", "size": GPT2_VOCAB})
    if ck_vocab["tokenizer"] == vocab["tokenizer"] == "gpt2" or (ck_vocab == vocab and ck_meta["stoi"] == meta["stoi"]):
        return
    names = [f"a {v['size']}-character vocabulary" if v["tokenizer"] == "chars" else "GPT-2 BPE"
             for v in (ck_vocab, vocab)]
    if names[0] == names[1]:
        names[1] += " with other characters"
    raise RunError(f"cannot {action} {path}: it was trained on {names[0]}, but the data has {names[1]}; {action} on "
                   f"the data it was trained on")


# ----------------------------------------------------------------------------- optimizers


class MultiOptimizer:
    """Several optimizers used as one: step, zero_grad, param_groups (shared dicts, so setting a group's lr
    reaches the optimizer that owns it) and one state_dict."""

    def __init__(self, *optimizers):
        self.optimizers = optimizers

    @property
    def param_groups(self):
        return [g for opt in self.optimizers for g in opt.param_groups]

    def step(self):
        for opt in self.optimizers:
            opt.step()

    def zero_grad(self, set_to_none=True):
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self):
        return {"optimizers": [opt.state_dict() for opt in self.optimizers]}

    def load_state_dict(self, state):
        if len(state.get("optimizers", [])) != len(self.optimizers):
            raise ValueError("the optimizer state does not match this optimizer (adamw vs muon?)")
        for opt, sd in zip(self.optimizers, state["optimizers"]):
            opt.load_state_dict(sd)


def orthogonalize(g, steps=5, eps=1e-7):
    """≈ U·Vᵀ for g = U·S·Vᵀ by Muon's quintic Newton–Schulz iteration X ← aX + (bXXᵀ + c(XXᵀ)²)X with
    (a, b, c) = (3.4445, −4.7750, 2.0315), chosen to push small singular values up fast (Jordan et al. 2024): five
    steps leave them in roughly [0.7, 1.2], which trains as well as exactly 1. In bfloat16, as Muon runs it; X is
    first divided by its Frobenius norm (≥ the spectral norm), so the iteration starts inside its basin."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.bfloat16()
    tall = g.size(0) > g.size(1)
    if tall:  # the Gram matrix of the short side is the cheaper one
        x = x.T
    x.div_(x.norm().clamp(min=eps))
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if tall else x


class Muon(torch.optim.Optimizer):
    """Muon (momentum, orthogonalized by Newton–Schulz) for 2-D weight matrices: Nesterov momentum, then each matrix
    — or each of its `split` equal row blocks, so that a fused QKV projection is three matrices, as the speedrun's
    Muon treats it — is replaced by orthogonalize(·) and applied with lr·0.2·√max(rows, cols) of its block, which
    gives the update AdamW's typical RMS so both optimizers share one learning rate (torch.optim.Muon's
    'match_rms_adamw'). Decoupled weight decay, as AdamW's, when weight_decay > 0."""

    def __init__(self, params, lr=1e-3, momentum=0.95, nesterov=True, weight_decay=0.0, ns_steps=5):
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                                      ns_steps=ns_steps, split=1))
        for group in self.param_groups:
            for p in group["params"]:
                if p.dim() != 2 or p.size(0) % group["split"]:
                    raise ValueError(f"Muon takes 2-D matrices whose rows split into {group['split']} blocks, "
                                     f"got {tuple(p.shape)}")

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            m = group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                buf = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p.grad))
                buf.lerp_(p.grad, 1 - m)
                update = p.grad.lerp(buf, m) if group["nesterov"] else buf
                if group["weight_decay"]:
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                n = p.size(0) // group["split"]
                for rows, block in zip(p.split(n), update.split(n)):
                    lr = group["lr"] * 0.2 * max(block.shape) ** 0.5
                    rows.add_(orthogonalize(block, group["ns_steps"]), alpha=-lr)


def configure_optimizers(model, weight_decay, learning_rate, betas, device_type, curvature_lr_mult=1.0,
                         optimizer="adamw"):
    """AdamW with decay on ≥2-D weights only (not the smear's gate, which the speedrun does not decay) and the
    curvature (and the graft's reference share) in its own group (no decay, lr × curvature_lr_mult). optimizer='muon': Muon for the blocks' 2-D weight
    matrices, without weight decay as in the speedrun's records, attention's fused q, k, v projection as three
    matrices; AdamW for embeddings, head, gains, biases, temperatures and curvature. Each group carries 'lr_mult'
    for the training loop's schedule."""
    if optimizer not in ("adamw", "muon"):
        raise ValueError(f"optimizer={optimizer!r} is not one of ('adamw', 'muon')")
    if model.config.block == "ngpt" and weight_decay > 0:
        raise ValueError("block='ngpt' keeps its weights on the unit sphere and trains without weight decay, as its "
                         f"paper does: set weight_decay=0.0 (got {weight_decay})")
    curv = {id(p) for p in (model.curvature.parameters() if model.curvature is not None else [])}
    curv |= {id(b.share) for b in model.transformer.h if hasattr(b, "share")}  # the graft's share goes with κ
    no_decay = {id(p) for p in (model.smear.parameters() if model.smear is not None else [])}
    hidden = {id(p) for p in model.transformer.h.parameters() if p.dim() == 2} if optimizer == "muon" else set()
    qkv = {id(b.attn.c_attn.weight) for b in model.transformer.h}
    params = [p for p in model.parameters() if p.requires_grad]
    rest = [p for p in params if id(p) not in curv and id(p) not in hidden]
    groups = [
        {"params": [p for p in rest if p.dim() >= 2 and id(p) not in no_decay], "weight_decay": weight_decay,
         "lr_mult": 1.0},
        {"params": [p for p in rest if p.dim() < 2 or id(p) in no_decay], "weight_decay": 0.0, "lr_mult": 1.0},
    ]
    curv_params = [p for p in params if id(p) in curv]
    if curv_params:
        groups.append({"params": curv_params, "weight_decay": 0.0, "lr_mult": curvature_lr_mult})
    fused = device_type == "cuda" and "fused" in inspect.signature(torch.optim.AdamW).parameters
    adamw = torch.optim.AdamW(groups, lr=learning_rate, betas=betas, **({"fused": True} if fused else {}))
    if optimizer == "adamw":
        return adamw
    matrices = [p for p in params if id(p) in hidden]
    muon = Muon([{"params": [p for p in matrices if id(p) in qkv], "split": 3, "lr_mult": 1.0},
                 {"params": [p for p in matrices if id(p) not in qkv], "lr_mult": 1.0}], lr=learning_rate)
    return MultiOptimizer(muon, adamw)


# ----------------------------------------------------------------------------- the process: alone or one of torchrun's


@dataclasses.dataclass
class Process:
    """This process's place in the job: the only one, or one of torchrun's."""
    ddp: bool
    rank: int
    local_rank: int
    world: int
    device: str

    @property
    def master(self):  # the process that prints, logs and writes checkpoints
        return self.rank == 0

    @property
    def device_type(self):
        return "cuda" if self.device.startswith("cuda") else "cpu"


def init_process(cfg):
    """Single process, or (under torchrun) join the process group; with cfg['threads'] > 0, that many CPU threads."""
    if cfg.get("threads"):
        torch.set_num_threads(cfg["threads"])
    dev = resolve_device(cfg["device"])
    if cfg["backend"] == "nccl" and not (dev.startswith("cuda") and torch.distributed.is_nccl_available()):
        raise ConfigError("backend='nccl' needs CUDA GPUs and a torch built with NCCL; use --backend=gloo (or auto)")
    if cfg["backend"] == "gloo" and not torch.distributed.is_gloo_available():
        raise ConfigError("backend='gloo' is not available in this torch build; use --backend=auto")
    if int(os.environ.get("RANK", -1)) == -1:
        return Process(False, 0, 0, 1, dev)
    rank, local_rank, world = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"]), int(os.environ["WORLD_SIZE"])
    if dev.startswith("cuda"):
        dev = f"cuda:{local_rank}"
        torch.cuda.set_device(dev)
    backend = cfg["backend"] if cfg["backend"] != "auto" else ("nccl" if dev.startswith("cuda") else "gloo")
    torch.distributed.init_process_group(backend=backend)
    if cfg["gradient_accumulation_steps"] % world:
        raise ConfigError(f"gradient_accumulation_steps={cfg['gradient_accumulation_steps']} must be a "
                          f"multiple of the number of processes ({world})")
    return Process(True, rank, local_rank, world, dev)


# ----------------------------------------------------------------------------- a run's clock and stop signal


@dataclasses.dataclass
class Progress:
    """How far the run is; iter_num, best_val_loss and elapsed travel in the checkpoint."""
    iter_num: int = 0
    best_val_loss: float = float("inf")
    elapsed: float = 0.0  # wall-clock seconds of the run before `started` (earlier sessions, when resumed)
    started: float = dataclasses.field(default_factory=time.time)
    last_loss: float = float("nan")
    nonfinite_run: int = 0  # consecutive skipped steps
    nonfinite_steps: int = 0  # skipped steps in this session

    def wall(self):
        return self.elapsed + time.time() - self.started


class StopSignal:
    """SIGTERM or SIGINT (a preemption, a kill, Ctrl-C) asks the run to finish its step, save and return.
    Every process listens: torchrun forwards the signal to all of them."""

    def __init__(self):
        self.received = None
        self.previous = {}
        if threading.current_thread() is threading.main_thread():  # Python allows handlers only there
            self.previous = {s: signal.signal(s, self._receive) for s in (signal.SIGTERM, signal.SIGINT)}

    def _receive(self, signum, frame):
        self.received = signum

    def agreed(self, proc):
        """Whether to stop now; under DDP a signal may reach the processes a step apart, so all stop at the
        step where the first one saw it."""
        stop = self.received is not None
        if proc.ddp:
            flag = torch.tensor(float(stop), device=proc.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            stop = flag.item() > 0
        return stop

    def restore(self):
        for s, handler in self.previous.items():
            signal.signal(s, handler)
