"""FineWeb path: prepare on a tiny local parquet/jsonl corpus, shard format, sharded loader, and training
single-process and under 2-process torchrun (gloo on CPU) with identical results."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import loader
import train

from conftest import PREPARE_FINEWEB as PREPARE
from conftest import ROOT, fineweb_args, make_docs, torchrun
def test_shard_headers_names_and_round_trip(shards):
    out, docs, enc = shards
    files = sorted(os.listdir(out))
    assert files[0] == "fineweb_train_000001.bin" and "fineweb_val_000000.bin" in files
    ordered = ["fineweb_val_000000.bin"] + sorted(f for f in files if "_train_" in f)
    assert [f"{i:06d}" in name for i, name in enumerate(ordered)] == [True] * len(ordered)
    tokens = []
    for name in ordered:
        raw = np.fromfile(out / name, dtype=np.int32, count=256)
        assert raw[0] == 20240520 and raw[1] == 1
        body = np.fromfile(out / name, dtype=np.uint16, offset=1024)
        assert raw[2] == len(body)
        assert len(body) == 1500 or name == ordered[-1]
        tokens.extend(body.tolist())
    assert tokens[0] == 50256
    # decoding the shards gives back every document, in order, each after an end-of-text token
    text = enc.decode(tokens)
    assert text.split("<|endoftext|>")[1:] == docs


def test_jsonl_input_and_max_tokens(tmp_path, gpt2_offline):
    docs = make_docs(40, seed=1)
    with open(tmp_path / "docs.jsonl", "w") as f:
        for d in docs:
            f.write(json.dumps({"text": d}) + "\n")
    r = subprocess.run([sys.executable, PREPARE, "--input", str(tmp_path / "docs.jsonl"), "--out_dir",
                        str(tmp_path / "o"), "--shard_size", "300", "--max_tokens", "700", "--num_proc", "1"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    sizes = [loader.read_shard_header(str(tmp_path / "o" / f)) for f in sorted(os.listdir(tmp_path / "o"))]
    assert sorted(sizes) == [100, 300, 300]


def test_prepare_bad_input(tmp_path):
    r = subprocess.run([sys.executable, PREPARE, "--input", str(tmp_path / "none.parquet"), "--out_dir",
                        str(tmp_path / "o")], capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr == f"error: --input {tmp_path / 'none.parquet'} does not exist\n"
    assert not (tmp_path / "o").exists() or not os.listdir(tmp_path / "o")


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:500], "truncated header (500 bytes, a shard starts with 1024)"),
    (lambda b: b"\x00\x00\x00\x00" + b[4:], "bad magic number 0 (expected 20240520); not a token shard"),
    (lambda b: b[:4] + b"\x07\x00\x00\x00" + b[8:], "unsupported shard version 7 (expected 1)"),
    (lambda b: b[:-2], "header says 100 tokens (1224 bytes) but the file has 1222 bytes; it is truncated or corrupt"),
])
def test_corrupt_shard_is_a_clear_error(tmp_path, damage, message):
    path = str(tmp_path / "fineweb_train_000001.bin")
    loader.write_shard(path, np.arange(100))
    with open(path, "rb") as f:
        good = f.read()
    with open(path, "wb") as f:
        f.write(damage(good))
    with pytest.raises(loader.DataError) as e:
        loader.read_shard_header(path)
    assert str(e.value) == f"{path}: {message}"


def test_ranks_read_disjoint_parts_that_tile_the_single_process_stream(tmp_path):
    for i, name in enumerate(["fineweb_val_000000.bin", "fineweb_train_000001.bin", "fineweb_train_000002.bin"]):
        loader.write_shard(str(tmp_path / name), np.arange(1000) + 1000 * i)
    kw = dict(block_size=8, batch_size=2, val_tokens=32)
    single = loader.ShardDataset(str(tmp_path), "fineweb", **kw)
    ranks = [loader.ShardDataset(str(tmp_path), "fineweb", rank=r, world=2, **kw) for r in range(2)]
    seq = [single.train_batch("cpu")[0] for _ in range(200)]  # long enough to cross into the next shard
    par = [[rk.train_batch("cpu")[0] for rk in ranks] for _ in range(100)]
    for step in range(100):
        assert torch.equal(par[step][0], seq[2 * step]) and torch.equal(par[step][1], seq[2 * step + 1])
    assert any(b.min() >= 2000 for b in seq)  # it walked into the second train shard
    x, y = next(single.eval_batches("val", "cpu"))
    assert torch.equal(y[:, :-1], x[:, 1:]) and x.min() >= 0 and x.max() < 1000
    with pytest.raises(loader.DataError, match="must be a positive multiple"):
        loader.ShardDataset(str(tmp_path), "fineweb", block_size=8, batch_size=2, val_tokens=20)
    rs = loader.ShardDataset(str(tmp_path), "fineweb", random_start=True, seed=3, **kw)
    rs2 = loader.ShardDataset(str(tmp_path), "fineweb", random_start=True, seed=3, **kw)
    assert (rs.shard, rs.pos) == (rs2.shard, rs2.pos) and (rs.shard, rs.pos) != (0, 0)


@pytest.mark.parametrize("key, value", [("eval_iters", 5), ("eval_full_tokens", 64), ("sampler", "epoch")])
def test_an_option_sharded_data_ignores_is_refused(shards, tmp_path, key, value):
    from conftest import run_error
    msg = run_error(fineweb_args(shards[0], tmp_path / "run") + [f"--{key}={value}"])
    assert msg == f"error: {key} does not apply to sharded data (its evaluation reads val_tokens from the val " \
                  f"shards, in order): remove it"
    assert not (tmp_path / "run").exists()


def test_single_process_equals_two_process_ddp_and_ddp_resumes(shards, tmp_path):
    data_dir = shards[0]
    single = tmp_path / "single"
    train.main(fineweb_args(data_dir, single))
    ddp = tmp_path / "ddp"
    out = torchrun(fineweb_args(data_dir, ddp))
    assert "world 2" in out
    a = torch.load(single / "ckpt.pt", weights_only=True)
    b = torch.load(ddp / "ckpt.pt", weights_only=True)
    assert a["iter_num"] == b["iter_num"] == 4
    assert abs(a["val_loss"] - b["val_loss"]) < 1e-5
    for name in a["model"]:
        torch.testing.assert_close(a["model"][name], b["model"][name], rtol=0, atol=1e-5, msg=name)
    # both ranks' data positions are in the checkpoint; resuming under torchrun continues from them
    assert len(b["ranks"]) == 2 and b["ranks"][0]["data"] == b["ranks"][1]["data"]
    out = torchrun(fineweb_args(data_dir, ddp, max_iters=6, init_from="resume"))
    assert "starting at iter 4" in out
    straight = tmp_path / "ddp_straight"
    torchrun(fineweb_args(data_dir, straight, max_iters=6))
    # resuming a 2-process run with 2 processes continues it exactly (data positions, optimizer, schedule)
    a = torch.load(straight / "ckpt.pt", weights_only=True)
    b = torch.load(ddp / "ckpt.pt", weights_only=True)
    assert a["iter_num"] == b["iter_num"] == 6 and a["val_loss"] == b["val_loss"]
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name


def test_sigterm_to_torchrun_saves_once_and_resumes(shards, tmp_path):
    """Preemption: SIGTERM to the launcher reaches every process; they agree on one step, save, and exit."""
    import signal

    out = tmp_path / "term"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           os.path.join(ROOT, "train.py"), *fineweb_args(shards[0], out, max_iters=100_000, eval_interval=100_000)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                            env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1"))
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("iter 3:"):
            proc.send_signal(signal.SIGTERM)
            break
    output = "".join(seen) + proc.communicate(timeout=120)[0]
    assert proc.returncode != 0  # saved, but the job did not finish: `torchrun ... && next` must not go on
    saved = torch.load(out / "ckpt.pt", weights_only=True)
    assert f"saving a checkpoint at iter {saved['iter_num']} and exiting" in output, output[-3000:]
    assert saved["iter_num"] >= 3 and len(saved["ranks"]) == 2
    resumed = torchrun(fineweb_args(shards[0], out, max_iters=saved["iter_num"] + 2, init_from="resume"))
    assert f"starting at iter {saved['iter_num']}" in resumed


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_with_c10d_rendezvous_equal_one_process(shards, tmp_path):
    """Multi-node as on a cluster: two launchers ("nodes", one process each) meet at a c10d rendezvous endpoint
    (here on localhost); the result equals one process with the same total batch."""
    data_dir = shards[0]
    single = tmp_path / "single"
    train.main(fineweb_args(data_dir, single))
    out = tmp_path / "two_nodes"
    endpoint = f"127.0.0.1:{free_port()}"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
                               f"--node_rank={rank}", "--rdzv_backend=c10d", f"--rdzv_endpoint={endpoint}",
                               "--rdzv_id=kappagpt-test", os.path.join(ROOT, "train.py"), *fineweb_args(data_dir, out)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
             for rank in (0, 1)]
    outputs = [n.communicate(timeout=300)[0] for n in nodes]
    assert all(n.returncode == 0 for n in nodes), "\n".join(o[-2000:] for o in outputs)
    assert any("world 2" in o for o in outputs)
    a = torch.load(single / "ckpt.pt", weights_only=True)
    b = torch.load(out / "ckpt.pt", weights_only=True)
    assert a["iter_num"] == b["iter_num"] == 4 and len(b["ranks"]) == 2
    assert abs(a["val_loss"] - b["val_loss"]) < 1e-5
    for name in a["model"]:
        torch.testing.assert_close(a["model"][name], b["model"][name], rtol=0, atol=1e-5, msg=name)
