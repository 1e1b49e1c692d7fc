"""
enwik8 at byte level: the first 10^8 bytes of an English Wikipedia XML dump (the Hutter Prize file), split as
every published character-level transformer splits it, so that bits per character can be compared with theirs.

    python data/enwik8/prepare.py                  # downloads enwik8.zip (36 MB) into this folder
    python data/enwik8/prepare.py --input PATH     # enwik8.zip, or the unzipped enwik8 file (offline)

The standard split: the first 90,000,000 bytes train, the next 5,000,000 val, the last 5,000,000 test. A token is a
byte (vocabulary 256; the loss in nats / ln 2 is bits per character as the literature reports it, which counts
bytes). A file of another length is refused: the split is only the standard one for the whole file.

Writes train.bin, val.bin, test.bin (uint16 bytes, as train.py's loader reads them) and meta.pkl (the vocabulary,
the source and its sha256). Everything is written to temporary files and renamed at the end, so a failure leaves
nothing half-written. train.py reads train.bin and val.bin; test.bin is for a final number only.
"""
import argparse
import hashlib
import os
import pickle
import sys
import tempfile
import urllib.request
import zipfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # the repo root
from loader import write_files  # noqa: E402

URL = "http://mattmahoney.net/dc/enwik8.zip"
SIZES = {"train": 90_000_000, "val": 5_000_000, "test": 5_000_000}


class PrepareError(Exception):
    """Bad input or output: one line that says what and where."""


def read_input(path):
    """The bytes of enwik8: the member 'enwik8' of a zip file, or the file itself."""
    if not os.path.isfile(path):
        raise PrepareError(f"{path} does not exist")
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                if "enwik8" not in z.namelist():
                    raise PrepareError(f"{path} is a zip file without an 'enwik8' member ({z.namelist()[:3]}): not "
                                       f"the Hutter Prize archive")
                return z.read("enwik8")
        except (zipfile.BadZipFile, EOFError, OSError) as e:  # e.g. a truncated download
            raise PrepareError(f"{path} is a damaged zip file ({type(e).__name__}: {e}); download it again") from None
    with open(path, "rb") as f:
        return f.read()


def split(data, sizes=SIZES):
    """{split: bytes}: consecutive pieces of `sizes`, which must add up to the whole file."""
    total = sum(sizes.values())
    if len(data) != total:
        raise PrepareError(f"the input has {len(data):,} bytes, not enwik8's {total:,}: a truncated or other file")
    out, start = {}, 0
    for name, n in sizes.items():
        out[name] = data[start : start + n]
        start += n
    return out


def download(out_dir):
    path = os.path.join(out_dir, "enwik8.zip")
    if not os.path.exists(path):
        print(f"downloading {URL}")
        try:
            with urllib.request.urlopen(URL, timeout=120) as r:
                data = r.read()
        except OSError as e:
            raise PrepareError(f"download failed ({e}); pass a local copy with --input PATH") from None
        try:
            write_files(out_dir, {"enwik8.zip": data})
        except OSError as e:
            raise PrepareError(f"could not write to {out_dir} ({e.strerror or e})") from None
    return path


def prepare(input_path, out_dir, sizes=SIZES):
    try:
        os.makedirs(out_dir, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as e:
        raise PrepareError(f"--out_dir {out_dir} is not writable ({e.strerror or e})") from None
    path = input_path or download(out_dir)
    data = read_input(path)
    parts = split(data, sizes)
    itos = {i: bytes([i]).decode("latin-1") for i in range(256)}
    meta = {"vocab_size": 256, "itos": itos, "stoi": {c: i for i, c in itos.items()}, "encoding": "bytes",
            "source": "enwik8", "sha256": hashlib.sha256(data).hexdigest(), "sizes": dict(sizes)}
    try:
        write_files(out_dir, {f"{name}.bin": np.frombuffer(part, np.uint8).astype(np.uint16).tobytes()
                              for name, part in parts.items()} | {"meta.pkl": pickle.dumps(meta)})
    except OSError as e:
        raise PrepareError(f"could not write to {out_dir} ({e.strerror or e})") from None
    return meta


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", help="enwik8.zip or the enwik8 file, instead of downloading")
    parser.add_argument("--out_dir", default=here, help="where to write train.bin, val.bin, test.bin, meta.pkl")
    args = parser.parse_args(argv)
    try:
        meta = prepare(args.input, args.out_dir)
    except PrepareError as e:
        sys.exit(f"error: {e}")
    print(f"enwik8 (sha256 {meta['sha256'][:16]}…): " + ", ".join(f"{k} {v:,} bytes" for k, v in meta["sizes"].items())
          + f" -> {args.out_dir}")
    return meta


if __name__ == "__main__":
    main()
