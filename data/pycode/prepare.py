"""
Python source code at byte level: a second corpus, larger than Shakespeare and the same on every machine.

    python data/pycode/prepare.py                  # pip downloads the pinned wheel (6.3 MB) into this folder
    python data/pycode/prepare.py --input PATH     # that wheel, already downloaded (offline)
    python data/pycode/prepare.py --input DIR      # any source tree: every *.py file under DIR

The default corpus is every .py file of SymPy 1.14.0's wheel (sympy-1.14.0-py3-none-any.whl, sha256 checked):
1,533 files, 26.2 MB (train: 1,392 files, 23.2 MB; val: 141 files, 3.0 MB). Why this and not the Python standard
library: the standard library on a machine depends on its Python version and distribution, while a pinned wheel's
bytes are fixed by its checksum and pip fetches it from any package index (and a machine without one can be handed
the file). Why SymPy: pure Python, large enough that a long
CPU run never reads a byte twice, and deeply nested (packages, classes, methods, expression trees): code is where
hierarchy, what hyperbolic geometry is said to capture, is explicit.

Byte level: a token is a byte (vocabulary 256; non-ASCII characters are their UTF-8 bytes). The files are taken in
sorted path order, each followed by one NUL byte (which source text never contains) as an end-of-file mark. Split
by file with a fixed rule: a file goes to val when the CRC-32 of its path inside the corpus is 0 mod 10 (about a
tenth of the files), so no file is in both splits and the split does not depend on the machine.

Writes train.bin / val.bin (uint16 bytes, as train.py's loader reads them) and meta.pkl (the vocabulary, the
source, its version and sha256, and the sha256 of the two token streams). For the pinned wheel, the streams'
checksums are checked against the ones recorded here: every machine that follows the README trains on the same
bytes. Everything is written to temporary files and renamed at the end, so a failure leaves nothing half-written.
"""
import argparse
import hashlib
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
import zlib

import numpy as np

PACKAGE, VERSION = "sympy", "1.14.0"
WHEEL = f"{PACKAGE}-{VERSION}-py3-none-any.whl"
WHEEL_SHA256 = "e091cc3e99d2141a0ba2847328f5479b05d94a6635cb96148ccb3f34671bd8f5"
# the token streams this script makes from that wheel (sha256 of the uint8 bytes), checked after every prepare
STREAM_SHA256 = {"train": "735c65ff13ab6bfe8b2d753cbcac0488810ca1eb988a3fab7c3847c6f4340e74",
                 "val": "9bfd33c3d8a69f948066cfdea90de786682565fb4467d80ced1a1a07766d0c67"}


class PrepareError(Exception):
    """Bad input or output: one line that says what and where."""


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def is_val(path):
    """The fixed split rule: a tenth of the files, by the CRC-32 of their '/'-separated path."""
    return zlib.crc32(path.encode("utf-8")) % 10 == 0


def read_wheel(path):
    """{path inside the wheel: bytes} for every .py file of a wheel (a zip file)."""
    try:
        with zipfile.ZipFile(path) as z:
            return {n: z.read(n) for n in z.namelist() if n.endswith(".py")}
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise PrepareError(f"{path} is not a readable wheel (zip) file ({type(e).__name__}: {e})") from None


def read_tree(root):
    """{path relative to root, '/'-separated: bytes} for every .py file under root."""
    files = {}
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for name in names:
            if name.endswith(".py"):
                full = os.path.join(folder, name)
                with open(full, "rb") as f:
                    files[os.path.relpath(full, root).replace(os.sep, "/")] = f.read()
    return files


def streams(files):
    """The train and val byte streams of {path: bytes}: sorted paths, each file then a NUL, split by is_val."""
    out = {"train": bytearray(), "val": bytearray()}
    for path in sorted(files):
        out["val" if is_val(path) else "train"] += files[path] + b"\0"
    return {k: bytes(v) for k, v in out.items()}


def download(out_dir):
    """The pinned wheel in out_dir, fetched by pip the first time."""
    path = os.path.join(out_dir, WHEEL)
    if not os.path.exists(path):
        print(f"downloading {WHEEL} with pip")
        r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                            f"{PACKAGE}=={VERSION}", "-d", out_dir], capture_output=True, text=True)
        if r.returncode != 0 or not os.path.exists(path):
            last = (r.stderr.strip().splitlines() or ["no output"])[-1]
            raise PrepareError(f"pip could not download {PACKAGE}=={VERSION} ({last}); pass the wheel with --input")
    return path


def load(input_path, out_dir):
    """(files, source description, whether it is the pinned wheel) for --input (a wheel or a directory) or the
    downloaded wheel."""
    if input_path and os.path.isdir(input_path):
        files = read_tree(input_path)
        if not files:
            raise PrepareError(f"{input_path} holds no .py files")
        return files, {"source": os.path.abspath(input_path), "version": None}, False
    if input_path and not os.path.isfile(input_path):
        raise PrepareError(f"--input {input_path} does not exist")
    path = input_path or download(out_dir)
    with open(path, "rb") as f:
        digest = sha256(f.read())
    pinned = digest == WHEEL_SHA256
    if os.path.basename(path) == WHEEL and not pinned:
        raise PrepareError(f"{path} has sha256 {digest[:16]}…, not the pinned {WHEEL}'s {WHEEL_SHA256[:16]}…: a "
                           f"corrupt or truncated download; delete it and rerun")
    files = read_wheel(path)
    if not files:
        raise PrepareError(f"{path} holds no .py files")
    version = VERSION if pinned else None
    return files, {"source": WHEEL if pinned else os.path.abspath(path), "version": version, "sha256": digest}, pinned


def check_writable(out_dir):
    try:
        os.makedirs(out_dir, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as e:
        raise PrepareError(f"--out_dir {out_dir} is not writable ({e.strerror or e})") from None


def write_all(out_dir, contents):
    """Write {name: bytes} to temporary files, then rename them all: a failure leaves the old files (or none)."""
    tmps = {}
    try:
        for name, data in contents.items():
            tmps[name] = os.path.join(out_dir, f".{name}.tmp")
            with open(tmps[name], "wb") as f:
                f.write(data)
        for name, tmp in tmps.items():
            os.replace(tmp, os.path.join(out_dir, name))
    except OSError as e:
        for tmp in tmps.values():
            if os.path.exists(tmp):
                os.remove(tmp)
        raise PrepareError(f"could not write to {out_dir} ({e.strerror or e})") from None


def prepare(input_path, out_dir):
    check_writable(out_dir)
    files, source, pinned = load(input_path, out_dir)
    data = streams(files)
    for split, stream in data.items():
        if not stream:
            raise PrepareError(f"the {split} split is empty: {len(files)} file(s) are too few to split by file "
                               f"(a tenth go to val)")
    checks = {split: sha256(stream) for split, stream in data.items()}
    if pinned and checks != STREAM_SHA256:
        raise PrepareError(f"the token streams of {WHEEL} differ from the recorded ones ({checks}): this script "
                           f"changed since they were recorded")
    itos = {i: bytes([i]).decode("latin-1") for i in range(256)}
    meta = {"vocab_size": 256, "itos": itos, "stoi": {c: i for i, c in itos.items()}, "encoding": "bytes",
            **source, "files": {s: sum(is_val(p) == (s == "val") for p in files) for s in data},
            "stream_sha256": checks}
    write_all(out_dir, {"train.bin": np.frombuffer(data["train"], np.uint8).astype(np.uint16).tobytes(),
                        "val.bin": np.frombuffer(data["val"], np.uint8).astype(np.uint16).tobytes(),
                        "meta.pkl": pickle.dumps(meta)})
    return meta, {s: len(v) for s, v in data.items()}


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", help=f"{WHEEL} (offline), another wheel, or a directory of .py files")
    parser.add_argument("--out_dir", default=here, help="where to write train.bin, val.bin, meta.pkl")
    args = parser.parse_args(argv)
    try:
        meta, sizes = prepare(args.input, args.out_dir)
    except PrepareError as e:
        sys.exit(f"error: {e}")
    print(f"{meta['source']}: {meta['files']['train']:,} + {meta['files']['val']:,} files, train {sizes['train']:,} "
          f"bytes, val {sizes['val']:,} bytes -> {args.out_dir}")
    return meta


if __name__ == "__main__":
    main()
