"""The byte-level corpora: data/pycode (any source tree or wheel; the pinned wheel's recorded bytes) and data/enwik8
(the standard 90M/5M/5M split, on a small file made here), their one-line errors that write nothing, and sampling
from a byte vocabulary."""
import importlib.util
import os
import pickle
import subprocess
import sys
import zipfile
import zlib

import numpy as np
import pytest

import train
from conftest import ROOT, tiny_args


def load_prepare(name):
    spec = importlib.util.spec_from_file_location(f"prepare_{name}", os.path.join(ROOT, "data", name, "prepare.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_prepare(name, *args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "data", name, "prepare.py"), *args],
                          capture_output=True, text=True)


def one_line_error(r):
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


def tokens(path):
    return np.fromfile(path, dtype=np.uint16).astype(np.uint8).tobytes()


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A small source tree: 40 modules in nested packages, one non-ASCII, and files that are not Python."""
    root = tmp_path_factory.mktemp("tree")
    files = {}
    for i in range(40):
        rel = f"pkg{i % 3}/sub{i % 2}/mod{i}.py"
        text = f"def f{i}(x):\n    '''{'é' if i == 7 else ''}{i}'''\n    return x * {i}\n" * (1 + i % 4)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
        files[rel] = text.encode("utf-8")
    (root / "README.md").write_text("not python")
    (root / "pkg0" / "data.json").write_text("{}")
    return root, files


def test_a_source_tree_is_split_by_file_per_package(tree, tmp_path):
    root, files = tree
    r = run_prepare("pycode", "--input", str(root), "--out_dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    streams = {s: tokens(tmp_path / f"{s}.bin") for s in ("train", "val", "test")}
    # every file is in exactly one split, whole, followed by its NUL, in sorted path order
    where = {}
    for split, stream in streams.items():
        parts = stream.split(b"\0")[:-1]
        assert stream.endswith(b"\0") and parts
        for part in parts:
            path = next(p for p, b in files.items() if b == part and p not in where)
            where[path] = split
        assert [p for p in sorted(files) if where.get(p) == split] == [p for p in where if where[p] == split]
    assert set(where) == set(files)
    meta = pickle.loads((tmp_path / "meta.pkl").read_bytes())
    assert meta["vocab_size"] == 256 and meta["encoding"] == "bytes" and meta["source"] == str(root)
    assert meta["files"] == {s: sum(w == s for w in where.values()) for s in streams}
    assert "é".encode() in b"".join(streams.values())  # UTF-8 bytes, not characters


def test_the_split_rule_by_hand():
    """Per package, in CRC-32 order of the paths: a file goes to val while val's bytes plus half the file's stay
    within 5% of the package's, then to test by the same rule, else to train."""
    pycode = load_prepare("pycode")
    files = {f"top/p/s{i}.py": b"x" * 99 for i in range(3)} | {"top/p/big.py": b"y" * 1699}  # 100·3 + 1700 = 2000
    files |= {"top/q/only.py": b"z" * 50}  # a package of one file: 5% of it cannot hold it
    where = pycode.split(files)
    small = sorted((p for p in files if "/s" in p), key=lambda p: (zlib.crc32(p.encode()), p))
    # 5% of 2000 = 100: the first small file in CRC order fills val (0 + 50 ≤ 100), the next fills test; the big
    # file would need 850 ≤ 100
    assert where[small[0]] == "val" and where[small[1]] == "test" and where[small[2]] == "train"
    assert where["top/p/big.py"] == "train" and where["top/q/only.py"] == "train"
    assert pycode.package("top/p/s0.py") == "p" and pycode.package("top/mod.py") == ""


def test_every_package_is_represented_in_val_and_test_as_in_train():
    pycode = load_prepare("pycode")
    files = {f"top/pkg{k}/m{i}.py": bytes(100 + (i * 37 + k * 11) % 400) for k in range(6) for i in range(200)}
    where = pycode.split(files)
    size = {s: sum(len(b) + 1 for p, b in files.items() if where[p] == s) for s in ("train", "val", "test")}
    assert 0.045 < size["val"] / sum(size.values()) < 0.055 and 0.045 < size["test"] / sum(size.values()) < 0.055
    for k in range(6):
        share = {s: sum(len(b) + 1 for p, b in files.items() if where[p] == s and f"/pkg{k}/" in p) / size[s]
                 for s in size}
        assert abs(share["val"] - share["train"]) < 0.02 and abs(share["test"] - share["train"]) < 0.02


def test_the_rule_leaves_out_empty_generated_dump_and_duplicate_files():
    pycode = load_prepare("pycode")
    code = b"def f(x):\n    return x + 1\n\n\nclass A:\n    pass\n"
    files = {"p/a.py": code,
             "p/antlr.py": b"# *** GENERATED BY `setup.py antlr`, DO NOT EDIT BY HAND ***\n" + code,
             "p/table.py": b'"""A table."""\n# This table was generated by a call to make()\n' + code,
             "p/facts.py": b'"""\nDo NOT manually edit this file.\n"""\n' + code,
             "p/doc.py": b'"""Helpers for temporary files generated by the tests."""\n' + code,  # prose, not a mark
             "p/late.py": code * 3 + b"# DO NOT EDIT below\n",  # past the first 5 lines: kept
             "p/long.py": b"x = [" + b"12345, " * 300 + b"]\n" + code,  # a 2,106-byte line: 97% of the file
             "p/some_long.py": b"x = [" + b"1, " * 100 + b"]\n" + b"".join(  # one long line, a small share
                 f"def f{i}(x, y={i * 7 % 13}):\n    return x ** {i % 5} - y * {i * i % 97}\n".encode() for i in range(40)),
             "p/rep.py": b"assert f(1) == 2\n" * 3000,
             "p/empty.py": b"", "p/blank.py": b"\n\n",
             "p/z_copy.py": code}  # a duplicate of p/a.py, which comes first in path order
    kept, dropped = pycode.kept(files)
    assert dropped == {"generated": ["p/antlr.py", "p/facts.py", "p/table.py"], "empty": ["p/blank.py", "p/empty.py"],
                       "long lines": ["p/long.py"], "repetitive": ["p/rep.py"], "duplicate": ["p/z_copy.py"]}
    assert sorted(kept) == ["p/a.py", "p/doc.py", "p/late.py", "p/some_long.py"]


def test_the_split_check_holds_out_a_slice_of_train_as_large_as_val(tmp_path):
    pycode = load_prepare("pycode")
    files = {f"top/pkg{k}/m{i}.py": b"#" * (100 + (i * 37 + k * 11) % 400) for k in range(4) for i in range(150)}
    where = pycode.split(files)
    check = pycode.heldout(files, where)
    assert {p for p in files if check[p] == "val"} == {p for p in files if where[p] == "val"}
    assert all(check[p] is None for p in files if where[p] == "test")  # the real test split stays out
    held = {p for p in files if check[p] == "test"}
    assert held and all(where[p] == "train" for p in held)
    size = lambda split: sum(len(files[p]) + 1 for p in files if check[p] == split)  # noqa: E731
    assert size("test") == pytest.approx(size("val"), rel=0.05)


def test_train_py_trains_on_bytes_and_eval_full_reads_the_whole_split(tree, tmp_path):
    root, _ = tree
    data = tmp_path / "data"
    assert run_prepare("pycode", "--input", str(root), "--out_dir", str(data)).returncode == 0
    summary = train.main(tiny_args(data, tmp_path / "out", curvature="euclidean", max_iters=4, eval_interval=4,
                                   eval_full=True))
    assert summary["iter_num"] == 4 and np.isfinite(summary["val_full"]) and np.isfinite(summary["test_full"])
    import json

    with open(tmp_path / "out" / "metrics.jsonl") as f:
        last = [json.loads(line) for line in f if "val/loss_full" in line][-1]
    assert last["val/bits_full"] == pytest.approx(last["val/loss_full"] / np.log(2))
    assert last["test/bits_full"] == pytest.approx(last["test/loss_full"] / np.log(2))


def test_a_wheel_is_read_from_its_zip(tree, tmp_path):
    root, files = tree
    wheel = tmp_path / "other-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for rel, data in files.items():
            z.writestr(rel, data)
        z.writestr("other-1.0.dist-info/METADATA", "Name: other")
    assert run_prepare("pycode", "--input", str(wheel), "--out_dir", str(tmp_path / "a")).returncode == 0
    assert run_prepare("pycode", "--input", str(root), "--out_dir", str(tmp_path / "b")).returncode == 0
    for f in ("train.bin", "val.bin", "test.bin"):  # the same files, from a zip or a folder: the same bytes
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()


@pytest.mark.parametrize("case", ["empty tree", "not a zip", "wrong pinned wheel", "unwritable out_dir",
                                  "missing input"])
def test_bad_input_to_pycode_is_one_line_and_writes_nothing(tmp_path, case):
    out = tmp_path / "out"
    if case == "empty tree":
        (tmp_path / "src").mkdir()
        (tmp_path / "src" / "notes.txt").write_text("no python here")
        arg, want = tmp_path / "src", "holds no .py files"
    elif case == "not a zip":
        (tmp_path / "x.whl").write_bytes(b"this is not a zip file" * 10)
        arg, want = tmp_path / "x.whl", "not a readable wheel"
    elif case == "wrong pinned wheel":
        arg, want = tmp_path / "sympy-1.14.0-py3-none-any.whl", "not the pinned"
        with zipfile.ZipFile(arg, "w") as z:
            z.writestr("a.py", "x = 1\n")
    elif case == "unwritable out_dir":
        (tmp_path / "a_file").write_text("")
        (tmp_path / "src").mkdir()
        (tmp_path / "src" / "a.py").write_text("x = 1\n")
        arg, out, want = tmp_path / "src", tmp_path / "a_file" / "out", "not writable"
    else:
        arg, want = tmp_path / "nope.whl", "does not exist"
    msg = one_line_error(run_prepare("pycode", "--input", str(arg), "--out_dir", str(out)))
    assert want in msg
    assert not any(out.glob("*")) if out.is_dir() else not out.exists()


def test_too_few_files_to_split_is_one_line(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("x = 1\n")
    msg = one_line_error(run_prepare("pycode", "--input", str(tmp_path / "src"), "--out_dir", str(tmp_path / "o")))
    assert "split is empty" in msg and not list((tmp_path / "o").glob("*.bin"))


def test_the_pinned_wheel_gives_the_recorded_bytes(tmp_path):
    """On any machine with a package index: the corpus the README's command makes is the one recorded here."""
    pycode = load_prepare("pycode")
    r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                        f"{pycode.PACKAGE}=={pycode.VERSION}", "-d", str(tmp_path)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip("no package index reachable")
    meta, sizes = pycode.prepare(str(tmp_path / pycode.WHEEL), str(tmp_path / "out"))
    assert meta["stream_sha256"] == pycode.STREAM_SHA256 and meta["version"] == pycode.VERSION
    assert sizes["train"] + sizes["val"] > 10_000_000  # ≥ 10 MB, as the corpus must be


# ----------------------------------------------------------------------------- enwik8


SMALL = {"train": 900, "val": 50, "test": 50}


def small_enwik8(tmp_path, n=1000, member="enwik8"):
    data = bytes((i * 7919) % 251 for i in range(n))
    path = tmp_path / "enwik8.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr(member, data)
    return path, data


def test_enwik8_is_split_in_order_into_train_val_test(tmp_path):
    enwik8 = load_prepare("enwik8")
    assert enwik8.SIZES == {"train": 90_000_000, "val": 5_000_000, "test": 5_000_000}  # the standard split
    path, data = small_enwik8(tmp_path)
    meta = enwik8.prepare(str(path), str(tmp_path / "out"), sizes=SMALL)
    assert tokens(tmp_path / "out" / "train.bin") == data[:900]
    assert tokens(tmp_path / "out" / "val.bin") == data[900:950]
    assert tokens(tmp_path / "out" / "test.bin") == data[950:]
    assert meta["vocab_size"] == 256 and meta["encoding"] == "bytes"
    # the unzipped file works the same
    (tmp_path / "enwik8").write_bytes(data)
    enwik8.prepare(str(tmp_path / "enwik8"), str(tmp_path / "raw"), sizes=SMALL)
    assert (tmp_path / "raw" / "val.bin").read_bytes() == (tmp_path / "out" / "val.bin").read_bytes()


@pytest.mark.parametrize("case", ["truncated file", "damaged zip", "other zip", "unwritable out_dir"])
def test_bad_input_to_enwik8_is_one_line_and_writes_nothing(tmp_path, case):
    out = tmp_path / "out"
    if case == "truncated file":
        path, _ = small_enwik8(tmp_path)  # 1,000 bytes: not enwik8's 10^8
        want = "not enwik8's 100,000,000"
    elif case == "damaged zip":
        path, _ = small_enwik8(tmp_path, n=5000)
        whole = path.read_bytes()
        path.write_bytes(whole[: len(whole) // 2] + whole[-200:])  # a download cut in the middle
        want = "damaged zip" if zipfile.is_zipfile(path) else "not enwik8's"
    elif case == "other zip":
        path, _ = small_enwik8(tmp_path, member="something_else")
        want = "without an 'enwik8' member"
    else:
        path, _ = small_enwik8(tmp_path)
        (tmp_path / "a_file").write_text("")
        out, want = tmp_path / "a_file" / "out", "not writable"
    msg = one_line_error(run_prepare("enwik8", "--input", str(path), "--out_dir", str(out)))
    assert want in msg
    assert not any(out.glob("*")) if out.is_dir() else not out.exists()


def test_sampling_encodes_and_decodes_bytes_as_utf8():
    import sample

    codec = sample.Codec({"encoding": "bytes", "vocab_size": 256, "stoi": {}, "itos": {}})
    ids = codec.encode("déf λ")
    assert ids == list("déf λ".encode("utf-8")) and codec.decode(ids) == "déf λ"
    assert codec.decode(ids[:2]) == "d\ufffd"  # cut inside a character's bytes: a replacement, not an error
