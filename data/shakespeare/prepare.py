"""
Shakespeare in GPT-2 BPE tokens, for fine-tuning GPT-2 (config/finetune_shakespeare*.py), as nanoGPT's.

    python data/shakespeare/prepare.py                  # downloads input.txt (1.1 MB)
    python data/shakespeare/prepare.py --input PATH     # uses a local copy instead (offline)

Writes train.bin / val.bin (uint16 GPT-2 token ids of the first 90% / last 10% of the text, split by characters)
and meta.pkl ({'tokenizer': 'gpt2'}: no character table, tiktoken decodes) next to this file, or in --out_dir.
Offline, tiktoken also needs its GPT-2 files cached: see docs/options.md 'Sampling' for TIKTOKEN_CACHE_DIR.
"""
import argparse
import os
import pickle
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))  # the repo root, for loader.py and the char prepare
from loader import GPT2_VOCAB, DataError, gpt2_encoding, write_files  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(HERE), "shakespeare_char"))  # the same corpus, read the same way
from prepare import read_corpus  # noqa: E402


def prepare(text, out_dir, enc, val_fraction=0.1):
    if len(text) < 100:
        raise ValueError(f"the corpus has only {len(text)} characters; that is too small to split")
    split = int(len(text) * (1 - val_fraction))
    train = np.array(enc.encode_ordinary(text[:split]), dtype=np.uint16)
    val = np.array(enc.encode_ordinary(text[split:]), dtype=np.uint16)
    os.makedirs(out_dir, exist_ok=True)
    write_files(out_dir, {"train.bin": train.tobytes(), "val.bin": val.tobytes(),
                          "meta.pkl": pickle.dumps({"tokenizer": "gpt2", "vocab_size": GPT2_VOCAB})})
    return len(train), len(val)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", help="a local input.txt instead of downloading")
    parser.add_argument("--out_dir", default=HERE, help="where to write train.bin, val.bin, meta.pkl")
    args = parser.parse_args(argv)
    path, text = read_corpus(args.input, args.out_dir)
    try:
        n_train, n_val = prepare(text, args.out_dir, gpt2_encoding())
    except DataError as e:
        sys.exit(f"error: {e}")
    except (ValueError, OSError) as e:
        sys.exit(f"error: {path}: {e}")
    print(f"{len(text):,} characters: train {n_train:,} GPT-2 tokens, val {n_val:,} -> {args.out_dir}")


if __name__ == "__main__":
    main()
