"""
Shakespeare-char: the tiny Shakespeare corpus as characters, for fast experiments.

    python data/shakespeare_char/prepare.py                 # downloads input.txt (1.1 MB)
    python data/shakespeare_char/prepare.py --input PATH    # uses a local copy instead (offline)

Writes train.bin / val.bin (uint16 token ids, first 90% / last 10% of the text) and meta.pkl
(vocab_size, stoi, itos) next to this file, or in --out_dir.
"""
import argparse
import os
import pickle
import sys
import urllib.request

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # the repo root
from loader import write_files  # noqa: E402

URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"


def prepare(text, out_dir, val_fraction=0.1):
    if len(text) < 100:
        raise ValueError(f"the corpus has only {len(text)} characters; that is too small to split")
    if "\0" in text:
        raise ValueError("the corpus contains NUL characters: it is a binary file, not text")
    chars = sorted(set(text))
    if len(chars) > 2**16:
        raise ValueError(f"the corpus has {len(chars):,} distinct characters; token ids are uint16 (at most 65,536)")
    stoi = {ch: i for i, ch in enumerate(chars)}
    itos = {i: ch for i, ch in enumerate(chars)}
    n = len(text)
    split = int(n * (1 - val_fraction))
    ids = np.array([stoi[c] for c in text], dtype=np.uint16)
    os.makedirs(out_dir, exist_ok=True)
    meta = {"vocab_size": len(chars), "itos": itos, "stoi": stoi}
    write_files(out_dir, {"train.bin": ids[:split].tobytes(), "val.bin": ids[split:].tobytes(),
                          "meta.pkl": pickle.dumps(meta)})
    return meta, split, n - split


def read_corpus(input_path, out_dir):
    """(path, text) of the corpus: --input's file, or input.txt in out_dir, downloaded there the first time. A
    missing, binary or unreadable file exits with one line."""
    if input_path:
        if os.path.isdir(input_path):
            sys.exit(f"error: --input {input_path} is a directory; give the text file")
        if not os.path.isfile(input_path):
            sys.exit(f"error: --input {input_path} does not exist")
        path = input_path
    else:
        path = os.path.join(out_dir, "input.txt")
        if not os.path.exists(path):
            print(f"downloading {URL}")
            try:
                with urllib.request.urlopen(URL, timeout=60) as r:
                    data = r.read()
            except OSError as e:
                sys.exit(f"error: download failed ({e}); pass a local copy with --input PATH")
            os.makedirs(out_dir, exist_ok=True)
            write_files(out_dir, {"input.txt": data})
    try:
        with open(path, encoding="utf-8") as f:
            return path, f.read()
    except UnicodeDecodeError as e:
        sys.exit(f"error: {path} is not UTF-8 text (byte {e.start}: {e.reason})")
    except OSError as e:
        sys.exit(f"error: {path}: {e}")


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", help="a local input.txt instead of downloading")
    parser.add_argument("--out_dir", default=here, help="where to write train.bin, val.bin, meta.pkl")
    args = parser.parse_args(argv)
    path, text = read_corpus(args.input, args.out_dir)
    try:
        meta, n_train, n_val = prepare(text, args.out_dir)
    except (ValueError, OSError) as e:
        sys.exit(f"error: {path}: {e}")
    print(f"{len(text):,} characters, vocab size {meta['vocab_size']}: "
          f"train {n_train:,} tokens, val {n_val:,} tokens -> {args.out_dir}")


if __name__ == "__main__":
    main()
