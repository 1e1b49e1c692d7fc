"""
HellaSwag validation set for GPT-2-style evaluation: 10,042 items, each a context and four endings, tokenized
with GPT-2 BPE.

    python data/hellaswag/prepare.py                          # downloads hellaswag_val.jsonl (11 MB)
    python data/hellaswag/prepare.py --input hellaswag_val.jsonl   # a local copy instead (offline)

Writes hellaswag_val_tokens.jsonl next to this file (or in --out_dir): one item per line,
{"ctx": [token ids], "endings": [[ids], [ids], [ids], [ids]], "label": index of the true ending}. Each ending
is tokenized with a leading space, as it follows the context in running text. train.py scores it at every
evaluation of a GPT-2 BPE run when this file is present (see docs/gpu.md).
"""
import argparse
import json
import os
import sys
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))  # the repo root, for loader.py
from loader import DataError, gpt2_encoding, write_files  # noqa: E402
URL = "https://raw.githubusercontent.com/rowanz/hellaswag/master/data/hellaswag_val.jsonl"
OUT_NAME = "hellaswag_val_tokens.jsonl"


def tokenize_items(lines, enc):
    """Raw HellaSwag items (JSON lines with ctx, endings, label) → token items; a bad line is a ValueError."""
    items = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            ctx, endings, label = raw["ctx"], raw["endings"], int(raw["label"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise ValueError(f"line {i + 1} is not a HellaSwag item with ctx, endings and label ({e})") from None
        if len(endings) != 4 or not 0 <= label < 4:
            raise ValueError(f"line {i + 1}: expected 4 endings and a label in 0..3")
        items.append({"ctx": enc.encode(ctx), "endings": [enc.encode(" " + e) for e in endings], "label": label})
    if not items:
        raise ValueError("no items")
    return items


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", help="a local hellaswag_val.jsonl instead of downloading")
    p.add_argument("--out_dir", default=HERE)
    args = p.parse_args(argv)
    if args.input:
        if not os.path.isfile(args.input):
            what = "is a directory" if os.path.isdir(args.input) else "does not exist"
            sys.exit(f"error: --input {args.input} {what}")
        with open(args.input, encoding="utf-8") as f:
            lines = f.read().splitlines()
    else:
        print(f"downloading {URL}")
        try:
            with urllib.request.urlopen(URL, timeout=60) as r:
                lines = r.read().decode("utf-8").splitlines()
        except OSError as e:
            sys.exit(f"error: download failed ({e}); pass a local copy with --input PATH")
    try:
        enc = gpt2_encoding()
    except DataError as e:
        sys.exit(f"error: {e}")
    try:
        items = tokenize_items(lines, enc)
    except ValueError as e:
        sys.exit(f"error: {args.input or URL}: {e}")
    os.makedirs(args.out_dir, exist_ok=True)
    path = os.path.join(args.out_dir, OUT_NAME)
    write_files(args.out_dir, {OUT_NAME: "".join(json.dumps(item) + "\n" for item in items).encode()})
    print(f"{len(items):,} items -> {path}")


if __name__ == "__main__":
    main()
