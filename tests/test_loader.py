"""loader.py's train.bin/val.bin reader: the epoch sampler (every window once per epoch, in a seeded order, shared by
DDP ranks, resumable), whole-split evaluation batches, the test split, and the atomic writer every prepare uses."""
import os
import pickle

import numpy as np
import pytest
import torch

import loader


@pytest.fixture
def numbered(tmp_path):
    """train.bin whose token i is i % 60000 (so a window names its start), small val and test splits."""
    n = 10 * 8 * 13 + 5  # 13 steps of 8 windows of 10 (+ 1) tokens, and a remainder
    (tmp_path / "train.bin").write_bytes(np.arange(n, dtype=np.uint16).tobytes())
    for split in ("val", "test"):
        (tmp_path / f"{split}.bin").write_bytes(np.arange(300, dtype=np.uint16).tobytes())
    itos = {i: chr(i) for i in range(60000)}
    (tmp_path / "meta.pkl").write_bytes(pickle.dumps({"vocab_size": 60000, "itos": itos, "stoi": {}}))
    return tmp_path, n


def starts(x):
    return [int(row[0]) for row in x]


def test_an_epoch_reads_every_window_once_in_a_seeded_order(numbered):
    path, n = numbered
    data = loader.CharDataset(str(path), "t", block_size=10, batch_size=8, seed=3, sampler="epoch")
    offset, order = data._epoch_order()
    windows = (n - offset - 1) // 10
    seen = []
    for _ in range(windows // 8):  # the epoch's whole steps
        x, y = data.train_batch("cpu")
        assert torch.equal(y[:, :-1], x[:, 1:]) and all((s - offset) % 10 == 0 for s in starts(x))
        seen += starts(x)
    assert len(set(seen)) == len(seen) == windows // 8 * 8  # nothing twice
    assert set(seen) <= {offset + 10 * k for k in range(windows)}
    assert data.epoch == 0
    data.train_batch("cpu")  # the next step opens epoch 1 (the remainder, under a step, is skipped)
    assert data.epoch == 1
    again = loader.CharDataset(str(path), "t", block_size=10, batch_size=8, seed=3, sampler="epoch")
    assert [starts(again.train_batch("cpu")[0]) for _ in range(3)] == [seen[:8], seen[8:16], seen[16:24]]
    other = loader.CharDataset(str(path), "t", block_size=10, batch_size=8, seed=4, sampler="epoch")
    assert starts(other.train_batch("cpu")[0]) != seen[:8]


def test_ddp_ranks_split_every_step_of_the_single_process_order(numbered):
    path, _ = numbered
    one = loader.CharDataset(str(path), "t", block_size=10, batch_size=8, seed=3, sampler="epoch")
    ranks = [loader.CharDataset(str(path), "t", block_size=10, batch_size=4, seed=3, sampler="epoch", rank=r,
                                world=2) for r in range(2)]
    for _ in range(20):  # across the epoch boundary
        assert starts(one.train_batch("cpu")[0]) == sum((starts(d.train_batch("cpu")[0]) for d in ranks), [])


def test_the_epoch_position_resumes_exactly(numbered):
    path, _ = numbered
    a = loader.CharDataset(str(path), "t", block_size=10, batch_size=8, seed=3, sampler="epoch")
    for _ in range(11):
        a.train_batch("cpu")
    state = a.state_dict()
    b = loader.CharDataset(str(path), "t", block_size=10, batch_size=8, seed=3, sampler="epoch")
    b.load_state_dict(state)
    for _ in range(6):
        assert torch.equal(a.train_batch("cpu")[0], b.train_batch("cpu")[0])


def test_the_whole_split_batches_tile_it_and_the_test_split_is_found(numbered):
    path, _ = numbered
    data = loader.CharDataset(str(path), "t", block_size=10, batch_size=8)
    assert data.full_splits == ("val", "test")
    xs = [x for x, _ in data.full_batches("test", "cpu", batch_size=7)]
    flat = torch.cat([x.reshape(-1) for x in xs])
    assert torch.equal(flat, torch.arange(290))  # (300 − 1) // 10 windows, consecutive, the last 9 tokens left out
    os.remove(path / "test.bin")
    assert loader.CharDataset(str(path), "t", block_size=10, batch_size=8).full_splits == ("val",)


def test_the_random_sampler_is_nanogpts_and_an_unknown_one_is_an_error(numbered):
    path, _ = numbered
    a = loader.CharDataset(str(path), "t", block_size=10, batch_size=8, seed=3)
    g = torch.Generator().manual_seed(3)
    assert starts(a.train_batch("cpu")[0]) == torch.randint(1045 - 10, (8,), generator=g).tolist()
    with pytest.raises(loader.DataError, match="sampler='shuffle' is not one of"):
        loader.CharDataset(str(path), "t", block_size=10, batch_size=8, sampler="shuffle")


def test_write_files_leaves_whole_files_and_no_temporary_one(tmp_path, monkeypatch):
    loader.write_files(str(tmp_path), {"a.bin": b"old a", "b.bin": b"old b"})
    real = os.replace
    calls = []

    def failing(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError):
        loader.write_files(str(tmp_path), {"a.bin": b"new a", "b.bin": b"new b"})
    assert sorted(os.listdir(tmp_path)) == ["a.bin", "b.bin"]  # no temporary file left behind
    assert (tmp_path / "b.bin").read_bytes() == b"old b"
