"""
Training data for train.py: random windows from a small .bin file (Shakespeare-char), or an ordered walk
through GPT-2 token shards (FineWeb) with each DDP rank reading a disjoint part of every batch.

Shard format (the one the GPT-2 speedrun community uses, so shards are interchangeable): a 1024-byte
header of 256 int32 — [0] = 20240520 (magic), [1] = 1 (version), [2] = number of tokens — then the tokens
as uint16.
"""
import glob
import os
import pickle

import numpy as np
import torch

SHARD_MAGIC, SHARD_VERSION, HEADER_BYTES = 20240520, 1, 1024
GPT2_VOCAB = 50257  # token ids in shards are GPT-2 BPE


class DataError(RuntimeError):
    """Missing or malformed data; the message names the file and what to do."""


def _to_device(x, y, device):
    if device.startswith("cuda"):
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x, y


# ----------------------------------------------------------------------------- shards


def write_files(out_dir, contents):
    """Every prepare script's writer: {name: bytes} into out_dir, each to a temporary file first, then all renamed
    into place, so that a failure (or a kill) leaves the old files, or none, and never a half-written one. An OSError
    propagates after the temporary files are removed (the caller says what it was writing)."""
    tmps = {}
    try:
        for name, data in contents.items():
            tmps[name] = os.path.join(out_dir, f".{name}.tmp.{os.getpid()}")
            with open(tmps[name], "wb") as f:
                f.write(data)
        for name, tmp in tmps.items():
            os.replace(tmp, os.path.join(out_dir, name))
    finally:
        for tmp in tmps.values():
            if os.path.exists(tmp):
                os.remove(tmp)


def write_shard(path, tokens):
    """Write uint16 `tokens` with the shard header (write_files: a killed prepare leaves no half shard)."""
    tokens = np.asarray(tokens)
    if tokens.size and (tokens.min() < 0 or tokens.max() >= 2**16):
        raise ValueError("token ids must fit in uint16")
    header = np.zeros(HEADER_BYTES // 4, dtype=np.int32)
    header[0], header[1], header[2] = SHARD_MAGIC, SHARD_VERSION, len(tokens)
    write_files(os.path.dirname(path) or ".", {os.path.basename(path): header.tobytes() +
                                                 tokens.astype(np.uint16).tobytes()})


def read_shard_header(path):
    """Check a shard's header against its size; return its token count."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        header = np.frombuffer(f.read(HEADER_BYTES), dtype=np.int32)
    if len(header) < HEADER_BYTES // 4:
        raise DataError(f"{path}: truncated header ({size} bytes, a shard starts with {HEADER_BYTES})")
    if header[0] != SHARD_MAGIC:
        raise DataError(f"{path}: bad magic number {header[0]} (expected {SHARD_MAGIC}); not a token shard")
    if header[1] != SHARD_VERSION:
        raise DataError(f"{path}: unsupported shard version {header[1]} (expected {SHARD_VERSION})")
    n = int(header[2])
    if size != HEADER_BYTES + 2 * n:
        raise DataError(f"{path}: header says {n} tokens ({HEADER_BYTES + 2 * n} bytes) but the file has "
                        f"{size} bytes; it is truncated or corrupt")
    return n


def read_shard(path):
    n = read_shard_header(path)
    return np.memmap(path, dtype=np.uint16, mode="r", offset=HEADER_BYTES, shape=(n,))


class ShardDataset:
    """Walks {dataset}_train_*.bin in order; every step, rank r of `world` reads the r-th of `world`
    consecutive chunks of batch_size·block_size(+1) tokens, so ranks see disjoint data and N processes ×
    k micro-steps read exactly what 1 process × N·k micro-steps reads. Validation reads a fixed budget of
    val_tokens from the start of the val shards, split across ranks."""

    eval_splits = ("val",)
    full_splits = ("val",)

    def __init__(self, data_dir, dataset, block_size, batch_size, rank=0, world=1, val_tokens=0,
                 random_start=False, seed=0):
        pattern = os.path.join(data_dir, f"{dataset}_%s_*.bin")
        self.files = {s: sorted(glob.glob(pattern % s)) for s in ("train", "val")}
        for split, files in self.files.items():
            if not files:
                raise DataError(f"no {split} shards {pattern % split} found: run "
                                f"`python data/{dataset}/prepare.py` first (or set data_dir)")
        self.sizes = {s: [read_shard_header(f) for f in files] for s, files in self.files.items()}
        self.B, self.T, self.rank, self.world = batch_size, block_size, rank, world
        chunk = batch_size * block_size
        for split, sizes in self.sizes.items():
            if max(sizes) < chunk * world + 1:
                raise DataError(f"the {split} shards hold at most {max(sizes)} tokens, fewer than one step "
                                f"of batch_size·block_size·processes + 1 = {chunk * world + 1}")
        if val_tokens <= 0 or val_tokens % (chunk * world):
            raise DataError(f"val_tokens={val_tokens} must be a positive multiple of batch_size·block_size·"
                            f"processes = {chunk * world}, so every run evaluates the same tokens")
        if val_tokens > sum(self.sizes["val"]):
            raise DataError(f"val_tokens={val_tokens} exceeds the {sum(self.sizes['val'])} validation tokens")
        self.val_steps = val_tokens // (chunk * world)
        self.shard, self.pos = 0, 0
        if random_start:
            gen = torch.Generator().manual_seed(seed)
            self.shard = int(torch.randint(len(self.files["train"]), (1,), generator=gen))
            span = self.sizes["train"][self.shard] - chunk * world - 1
            self.pos = int(torch.randint(span // chunk + 1, (1,), generator=gen)) * chunk
        self.meta = None
        self.vocab = {"tokenizer": "gpt2", "size": GPT2_VOCAB}

    def _advance(self, sizes, shard, pos):
        step = self.B * self.T * self.world
        pos += step
        if pos + step + 1 > sizes[shard]:
            shard, pos = (shard + 1) % len(sizes), 0
        return shard, pos

    def _read(self, files, shard, pos):
        tokens = read_shard(files[shard])
        start = pos + self.rank * self.B * self.T
        buf = torch.from_numpy(tokens[start : start + self.B * self.T + 1].astype(np.int64))
        return buf[:-1].view(self.B, self.T), buf[1:].view(self.B, self.T)

    def train_batch(self, device):
        x, y = self._read(self.files["train"], self.shard, self.pos)
        self.shard, self.pos = self._advance(self.sizes["train"], self.shard, self.pos)
        return _to_device(x, y, device)

    def eval_batches(self, split, device):
        shard, pos = 0, 0
        for _ in range(self.val_steps):
            yield _to_device(*self._read(self.files[split], shard, pos), device)
            shard, pos = self._advance(self.sizes[split], shard, pos)

    def full_batches(self, split, device, max_tokens=0):
        """The evaluation's val_tokens: already a fixed text, the same for every run (max_tokens does not apply)."""
        return self.eval_batches(split, device)

    def state_dict(self):
        return {"shard": self.shard, "pos": self.pos}

    def load_state_dict(self, state):
        self.shard, self.pos = state["shard"], state["pos"]


# ----------------------------------------------------------------------------- train.bin / val.bin


def gpt2_encoding():
    """tiktoken's GPT-2 BPE; offline without tiktoken's cached files, a DataError that says where to put them."""
    import tiktoken

    try:
        return tiktoken.get_encoding("gpt2")
    except Exception as e:  # offline with no cache: requests, OSError, ValueError... all mean the same
        raise DataError(f"the GPT-2 tokenizer could not be loaded ({type(e).__name__}): tiktoken downloads it on "
                        f"first use; offline, see docs/options.md 'Sampling' for TIKTOKEN_CACHE_DIR") from None


def read_meta(path, prepare):
    """meta.pkl, the vocabulary of train.bin/val.bin data: characters (vocab_size, stoi, itos), or
    {'tokenizer': 'gpt2'} for GPT-2 BPE ids: without it the ids in the .bin files cannot be decoded, nor the
    model's vocabulary sized."""
    if not os.path.exists(path):
        raise DataError(f"{path} not found: train.bin/val.bin data needs its vocabulary; run `{prepare}`")
    try:
        with open(path, "rb") as f:
            meta = pickle.load(f)
        if isinstance(meta, dict) and meta.get("tokenizer") == "gpt2":
            return meta
        if not isinstance(meta, dict) or not {"vocab_size", "stoi", "itos"} <= set(meta):
            raise ValueError("not a vocabulary (vocab_size, stoi, itos)")
    except Exception as e:  # truncated, corrupt or foreign: pickle raises many kinds
        raise DataError(f"{path} is corrupt or not a vocabulary ({type(e).__name__}): rerun `{prepare}`") from None
    return meta


class CharDataset:
    """Windows from data_dir/{train,val}.bin (uint16 tokens: characters, as data/shakespeare_char/prepare.py
    writes them, bytes as data/pycode/prepare.py, or GPT-2 BPE as data/shakespeare/prepare.py), and test.bin when the
    prepare script wrote one. Evaluation uses eval_iters batches drawn with a fixed seed: the same batches every time.

    Training windows, by `sampler`:
    - 'random': nanoGPT's: each window starts at a uniformly random position, drawn with replacement. Cheap and fine
      for a short run on a small corpus, but over a long run some bytes are read several times while others are
      never read (at pycode 16× ~15% of the bytes read are read twice or more while ~73% of the corpus is never read).
    - 'epoch': the training tokens cut into consecutive windows of block_size + 1 tokens (an epoch's own random
      offset in [0, block_size) shifts the cuts, so later epochs see other boundaries), visited in a seeded shuffled
      order; no window is read twice before every window of the epoch has been read. Under DDP the processes share
      the order and rank r reads the r-th of every `world` consecutive batches. The position is (epoch, batch), so a
      resumed run continues the same order exactly.
    """

    SPLITS = ("train", "val", "test")
    eval_splits = ("train", "val")

    def __init__(self, data_dir, dataset, block_size, batch_size, rank=0, seed=0, eval_iters=1, sampler="random",
                 world=1):
        self.paths = {s: os.path.join(data_dir, f"{s}.bin") for s in self.SPLITS}
        if not os.path.exists(self.paths["test"]):  # older prepare scripts and small corpora have no test split
            del self.paths["test"]
        prepare = f"python data/{dataset}/prepare.py"
        for path in self.paths.values():
            if not os.path.exists(path):
                raise DataError(f"{path} not found: run `{prepare}` first (or set data_dir)")
            size = os.path.getsize(path)
            if size % 2:
                raise DataError(f"{path} is truncated ({size} bytes is not a whole number of uint16 tokens): "
                                f"rerun `{prepare}`")
            if size // 2 < block_size + 1:
                raise DataError(f"{path} holds {size // 2} tokens, fewer than block_size + 1 = {block_size + 1}")
        if sampler not in ("random", "epoch"):
            raise DataError(f"sampler={sampler!r} is not one of ('random', 'epoch')")
        self.T, self.B, self.seed, self.eval_iters = block_size, batch_size, seed, eval_iters
        self.sampler, self.rank, self.world = sampler, rank, world
        self.gen = torch.Generator().manual_seed(seed + rank)
        self.epoch, self.batch = 0, 0  # the epoch sampler's position: batches of B·world windows read this epoch
        self._order = None  # (epoch, offset, permutation of the epoch's windows), rebuilt from the seed when needed
        self.meta = read_meta(os.path.join(data_dir, "meta.pkl"), prepare)
        self.vocab = {"tokenizer": "chars", "size": self.meta["vocab_size"]}
        if self.meta.get("tokenizer") == "gpt2":  # BPE ids: no character table; checkpoints decode with tiktoken
            self.meta, self.vocab = None, {"tokenizer": "gpt2", "size": GPT2_VOCAB}
        if sampler == "epoch" and self.windows_per_epoch(0) < batch_size * world:
            raise DataError(f"{self.paths['train']} holds fewer windows of block_size + 1 tokens than one step reads "
                            f"(batch_size·processes = {batch_size * world}) for sampler='epoch'")

    @property
    def full_splits(self):
        """The splits the end-of-run evaluation scores whole: val, and test where there is one."""
        return tuple(s for s in ("val", "test") if s in self.paths)

    def _rows(self, data, starts):
        x = torch.stack([torch.from_numpy(data[i : i + self.T].astype(np.int64)) for i in starts])
        y = torch.stack([torch.from_numpy(data[i + 1 : i + 1 + self.T].astype(np.int64)) for i in starts])
        return x, y

    def _batch(self, split, gen):
        # a fresh memmap per batch, as in nanoGPT: a long-lived one grows the process's memory
        data = np.memmap(self.paths[split], dtype=np.uint16, mode="r")
        return self._rows(data, torch.randint(len(data) - self.T, (self.B,), generator=gen).tolist())

    def windows_per_epoch(self, offset):
        n = os.path.getsize(self.paths["train"]) // 2
        return (n - offset - 1) // self.T

    def _epoch_order(self):
        """This epoch's window offset and order: a function of (seed, epoch) alone, the same on every process."""
        if self._order is None or self._order[0] != self.epoch:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            offset = int(torch.randint(self.T, (1,), generator=gen))
            self._order = (self.epoch, offset, torch.randperm(self.windows_per_epoch(offset), generator=gen))
        return self._order[1:]

    def _epoch_batch(self):
        offset, order = self._epoch_order()
        step = self.B * self.world
        if (self.batch + 1) * step > len(order):  # the epoch's remainder, too short for a whole step, is skipped
            self.epoch, self.batch = self.epoch + 1, 0
            offset, order = self._epoch_order()
        first = self.batch * step + self.rank * self.B
        self.batch += 1
        data = np.memmap(self.paths["train"], dtype=np.uint16, mode="r")
        return self._rows(data, (offset + order[first : first + self.B] * self.T).tolist())

    def train_batch(self, device):
        if self.sampler == "epoch":
            return _to_device(*self._epoch_batch(), device)
        return _to_device(*self._batch("train", self.gen), device)

    def eval_batches(self, split, device):
        gen = torch.Generator().manual_seed(self.seed + (1 if split == "val" else 2))
        for _ in range(self.eval_iters):
            yield _to_device(*self._batch(split, gen), device)

    def full_batches(self, split, device, max_tokens=0, batch_size=256):
        """The whole split (or its first max_tokens tokens, when > 0) as consecutive non-overlapping windows,
        batch_size at a time: the same text for every run whatever its seed (only the last < block_size + 1 tokens
        are left out). The batches are large because nothing is kept for a backward pass."""
        data = np.memmap(self.paths[split], dtype=np.uint16, mode="r")
        n = (min(len(data), max_tokens + 1 if max_tokens > 0 else len(data)) - 1) // self.T
        for start in range(0, n, batch_size):
            yield _to_device(*self._rows(data, [i * self.T for i in range(start, min(n, start + batch_size))]), device)

    def state_dict(self):
        return {"gen": self.gen.get_state(), "epoch": self.epoch, "batch": self.batch}

    def load_state_dict(self, state):
        self.gen.set_state(state["gen"])
        self.epoch, self.batch = state.get("epoch", 0), state.get("batch", 0)  # (checkpoints before the epoch sampler)


# options that one data format reads and the other has no use for: setting one where it would be ignored is an error
SHARD_ONLY, BIN_ONLY = ("val_tokens", "data_random_start"), ("eval_iters", "eval_full_tokens", "sampler")


def check_format_options(data, explicit):
    """A set option (in `explicit`) that the data's format would ignore is a DataError, before any work is done."""
    sharded = isinstance(data, ShardDataset)
    for key in (BIN_ONLY if sharded else SHARD_ONLY):
        if key in explicit:
            kind = ("sharded data (its evaluation reads val_tokens from the val shards, in order)" if sharded else
                    "train.bin/val.bin data (its evaluation reads eval_iters seeded batches; eval_full the whole split)")
            raise DataError(f"{key} does not apply to {kind}: remove it")


def open_dataset(data_dir, dataset, block_size, batch_size, rank, world, seed, eval_iters, val_tokens,
                 random_start, sampler="random"):
    """Shards if data_dir holds {dataset}_train_*.bin files, else train.bin/val.bin (and test.bin)."""
    if not glob.glob(os.path.join(data_dir, "*.bin")):
        raise DataError(f"no data in {data_dir} (neither {dataset}_train_*.bin shards nor train.bin/val.bin): "
                        f"run `python data/{dataset}/prepare.py` first (or set data_dir)")
    if glob.glob(os.path.join(data_dir, f"{dataset}_train_*.bin")):
        return ShardDataset(data_dir, dataset, block_size, batch_size, rank, world, val_tokens, random_start, seed)
    if random_start:
        raise DataError("data_random_start applies to sharded datasets only (train.bin/val.bin are sampled "
                        "at random positions already)")
    return CharDataset(data_dir, dataset, block_size, batch_size, rank, seed, eval_iters, sampler, world)
