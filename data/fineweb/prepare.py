"""
FineWeb for GPT-2-scale runs: stream documents, tokenize with GPT-2 BPE, write token shards.

    python data/fineweb/prepare.py                      # HuggingFaceFW/fineweb sample-10BT: ~10B tokens
    python data/fineweb/prepare.py --version 100B       # sample-100BT
    python data/fineweb/prepare.py --input a.parquet b.jsonl --max_tokens 1e6   # local files, offline

Every document is prefixed with GPT-2's end-of-text token (50256). Shards hold --shard_size tokens
(default 1e8) in the speedrun format (see loader.py): the first is fineweb_val_000000.bin, the rest
fineweb_train_000001.bin, ... A document that does not fit is split across two shards.
"""
import argparse
import multiprocessing as mp
import os
import sys

import numpy as np
from tqdm import tqdm

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))  # the repo root, for loader.py
from loader import DataError, gpt2_encoding, write_shard  # noqa: E402

EOT = 50256
_enc = None


def _init_worker():
    global _enc
    _enc = gpt2_encoding()


def tokenize(text):
    if _enc is None:
        _init_worker()
    ids = _enc.encode_ordinary(text)
    tokens = np.empty(len(ids) + 1, dtype=np.uint16)
    tokens[0] = EOT
    tokens[1:] = ids
    return tokens


class PrepareError(ValueError):
    """Bad input; main() prints the message as one line."""


def check_inputs(paths):
    """The local files exist, are of one kind, and hold documents; returns the datasets builder name."""
    for path in paths:
        if not os.path.isfile(path):
            raise PrepareError(f"--input {path} {'is a directory' if os.path.isdir(path) else 'does not exist'}")
        if os.path.getsize(path) == 0:
            raise PrepareError(f"--input {path} is empty")
    kinds = {os.path.splitext(p)[1].lower() for p in paths}
    if kinds <= {".parquet"}:
        import pyarrow.parquet as pq

        for path in paths:
            try:
                rows = pq.read_metadata(path).num_rows
            except Exception as e:  # not parquet at all
                raise PrepareError(f"--input {path} is not a parquet file ({str(e).splitlines()[0]})") from None
            if rows == 0:
                raise PrepareError(f"--input {path} has no rows")
        return "parquet"
    if kinds <= {".jsonl", ".json"}:
        return "json"
    raise PrepareError(f"--input takes .parquet or .jsonl files (all of one kind), got {sorted(kinds)}")


def iter_texts(args):
    import datasets
    from datasets import load_dataset

    datasets.logging.set_verbosity(datasets.logging.CRITICAL)  # its reader errors become our one-line error

    try:
        # Opening is inside the guard too: some versions of `datasets` read a local file's first rows (and fail on
        # a malformed one) already here, others only while iterating.
        if args.input:
            ds = load_dataset(check_inputs(args.input), data_files=args.input, split="train", streaming=True)
        else:
            name = {"10B": "sample-10BT", "100B": "sample-100BT"}[args.version]
            ds = load_dataset("HuggingFaceFW/fineweb", name=name, split="train", streaming=True)
        for i, doc in enumerate(ds):
            if "text" not in doc:
                raise PrepareError(f"documents need a 'text' column; document {i} has {sorted(doc)}")
            if not isinstance(doc["text"], str):
                raise PrepareError(f"document {i} has no text (its 'text' is {doc['text']!r})")
            yield doc["text"]
    except PrepareError:
        raise
    except Exception as e:  # the reader's own errors (a malformed JSON line, a damaged file): one line
        raise PrepareError(f"could not read the documents: {type(e).__name__}: {str(e).splitlines()[0]}") from None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", choices=["10B", "100B"], default="10B", help="FineWeb sample to download")
    parser.add_argument("--input", nargs="+", help="local .parquet or .jsonl files with a 'text' column")
    parser.add_argument("--out_dir", default=HERE, help="where to write the shards")
    parser.add_argument("--shard_size", type=float, default=1e8, help="tokens per shard")
    parser.add_argument("--max_tokens", type=float, default=0, help="stop after this many tokens (0: all)")
    parser.add_argument("--num_proc", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                        help="tokenizer processes")
    args = parser.parse_args(argv)
    shard_size, max_tokens = int(args.shard_size), int(args.max_tokens)
    if shard_size <= 0 or args.num_proc <= 0 or max_tokens < 0:
        sys.exit("error: --shard_size and --num_proc must be positive, --max_tokens non-negative")
    try:
        if args.input:
            check_inputs(args.input)
        _init_worker()  # fail here, once, if the tokenizer cannot be loaded
    except (PrepareError, DataError) as e:
        sys.exit(f"error: {e}")
    os.makedirs(args.out_dir, exist_ok=True)

    buf = np.empty(shard_size, dtype=np.uint16)
    state = {"shard": 0, "fill": 0, "total": 0, "bar": None}

    def flush():
        split = "val" if state["shard"] == 0 else "train"
        path = os.path.join(args.out_dir, f"fineweb_{split}_{state['shard']:06d}.bin")
        write_shard(path, buf[: state["fill"]])
        state["shard"] += 1
        state["fill"] = 0
        if state["bar"] is not None:
            state["bar"].close()
            state["bar"] = None

    pool = mp.Pool(args.num_proc, initializer=_init_worker) if args.num_proc > 1 else None
    tokenized = pool.imap(tokenize, iter_texts(args), chunksize=16) if pool else map(tokenize, iter_texts(args))
    try:
        for tokens in tokenized:
            if max_tokens:
                tokens = tokens[: max_tokens - state["total"]]
            while len(tokens):
                if state["bar"] is None:
                    state["bar"] = tqdm(total=shard_size, unit="tok", unit_scale=True, desc=f"shard {state['shard']}")
                take = min(len(tokens), shard_size - state["fill"])
                buf[state["fill"] : state["fill"] + take] = tokens[:take]
                state["fill"] += take
                state["total"] += take
                state["bar"].update(take)
                tokens = tokens[take:]
                if state["fill"] == shard_size:
                    flush()
            if max_tokens and state["total"] >= max_tokens:
                break
    except PrepareError as e:
        if state["bar"] is not None:
            state["bar"].close()
        sys.exit(f"error: {e} (shards written so far are complete; rerun after fixing the input)")
    finally:
        if pool is not None:
            pool.terminate()
    if state["fill"]:
        flush()
    if state["shard"] < 2:
        print(f"warning: only {state['shard']} shard(s) written; training needs a val shard and at least one "
              f"train shard (lower --shard_size)")
    print(f"{state['total']:,} tokens in {state['shard']} shards -> {args.out_dir}")


if __name__ == "__main__":
    main()
