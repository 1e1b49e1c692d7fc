"""HellaSwag: scoring against a hand-computed result, the prepare script on a tiny hand-made file, and evaluation
inside training on GPT-2 BPE shards (single process and split across two DDP processes)."""
import json
import math
import os
import subprocess
import sys

import pytest
import torch

import hellaswag
import train
from conftest import ROOT, fineweb_args, torchrun
from loader import DataError

V = 10


class CountingModel(torch.nn.Module):
    """A stub language model over 10 tokens that predicts "previous token + 1 (mod 10)" with probability 1/2 and
    every other token with 1/18: the right next token costs ln 2, any other ln 18."""

    def forward(self, idx, targets=None):
        logits = torch.zeros(*idx.shape, V)
        logits.scatter_(-1, ((idx + 1) % V).unsqueeze(-1), math.log(9))
        return logits, None


ITEMS = [
    # every ending token of ending 0 continues the count: lowest sum and mean → both right
    {"ctx": [1, 2, 3], "endings": [[4, 5], [7], [4, 9, 9], [5]], "label": 0},
    # ending 0: 4 right + 1 wrong (sum 4 ln2 + ln18 = 5.66, mean 1.13); ending 1: ln18 = 2.89 both;
    # ending 2: ln2 + ln18 (sum 3.58, mean 1.79); ending 3: ln18. Mean picks 0 (right), sum picks 1 (wrong)
    {"ctx": [5], "endings": [[6, 7, 8, 9, 3], [2], [6, 0], [1]], "label": 0},
    # the model prefers ending 2 (it continues the count), but the label says 0: both wrong
    {"ctx": [0], "endings": [[2], [3], [1], [4]], "label": 0},
]


def test_scores_match_a_hand_computation():
    model = CountingModel()
    total, mean = hellaswag.losses(model, ITEMS[1], block_size=16, device="cpu")
    ln2, ln18 = math.log(2), math.log(18)
    torch.testing.assert_close(total, torch.tensor([4 * ln2 + ln18, ln18, ln2 + ln18, ln18]))
    torch.testing.assert_close(mean, torch.tensor([(4 * ln2 + ln18) / 5, ln18, (ln2 + ln18) / 2, ln18]))
    acc = sum(int(hellaswag.losses(model, it, 16, "cpu")[0].argmin()) == it["label"] for it in ITEMS) / 3
    acc_norm = sum(int(hellaswag.losses(model, it, 16, "cpu")[1].argmin()) == it["label"] for it in ITEMS) / 3
    assert (acc, acc_norm) == (1 / 3, 2 / 3)


def test_rows_longer_than_the_context_keep_their_end():
    """block_size 2: only the last 3 tokens of each row are fed, so only the last two predictions are scored."""
    total, _ = hellaswag.losses(CountingModel(), {"ctx": [1, 2, 3], "endings": [[4, 5, 6], [4, 5, 0],
                                                                                      [9, 9, 9], [4, 1, 2]],
                                                        "label": 0}, block_size=2, device="cpu")
    ln2, ln18 = math.log(2), math.log(18)
    torch.testing.assert_close(total, torch.tensor([2 * ln2, ln2 + ln18, 2 * ln18, ln18 + ln2]))


RAW = [
    {"ctx": "A man is sitting on a roof. he", "endings": ["is using wrap to wrap a pair of skis.",
     "is ripping level tiles off.", "is holding a rubik's cube.", "starts pulling up roofing on a roof."],
     "label": 3},
    {"ctx": "A woman walks into the kitchen. she", "endings": ["opens the fridge.", "flies to the moon.",
     "sings a song to the oven.", "paints the ceiling blue."], "label": 0},
    {"ctx": "The dog runs across the park and", "endings": ["catches the frisbee.", "reads a newspaper.",
     "drives a car home.", "writes a letter."], "label": 0},
]


@pytest.fixture(scope="module")
def hellaswag_dir(tmp_path_factory, gpt2_offline):
    d = tmp_path_factory.mktemp("hellaswag")
    (d / "raw.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RAW))
    r = subprocess.run([sys.executable, os.path.join(ROOT, "data/hellaswag/prepare.py"), "--input",
                        str(d / "raw.jsonl"), "--out_dir", str(d)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return d


def test_prepare_tokenizes_context_and_space_prefixed_endings(hellaswag_dir, gpt2_offline):
    items = hellaswag.read(str(hellaswag_dir / "hellaswag_val_tokens.jsonl"))
    assert len(items) == 3 and [it["label"] for it in items] == [3, 0, 0]
    assert gpt2_offline.decode(items[0]["ctx"]) == RAW[0]["ctx"]
    assert [gpt2_offline.decode(e) for e in items[0]["endings"]] == [" " + e for e in RAW[0]["endings"]]


def test_prepare_and_loader_reject_bad_files(tmp_path, gpt2_offline):
    (tmp_path / "bad.jsonl").write_text('{"ctx": "x", "endings": ["a", "b"], "label": 0}\n')
    r = subprocess.run([sys.executable, os.path.join(ROOT, "data/hellaswag/prepare.py"), "--input",
                        str(tmp_path / "bad.jsonl"), "--out_dir", str(tmp_path / "o")], capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.strip().endswith("line 1: expected 4 endings and a label in 0..3")
    assert not (tmp_path / "o").exists()
    (tmp_path / "t.jsonl").write_text('{"ctx": [1], "endings": [[2]], "label": 0}\n')
    with pytest.raises(DataError, match="line 1: not a tokenized HellaSwag item"):
        hellaswag.read(str(tmp_path / "t.jsonl"))
    assert hellaswag.read(str(tmp_path / "absent.jsonl")) is None
    with pytest.raises(DataError, match="run `python data/hellaswag/prepare.py`"):
        hellaswag.read(str(tmp_path / "absent.jsonl"), required=True)


def hellaswag_records(out_dir):
    return [json.loads(line) for line in open(out_dir / "metrics.jsonl") if "hellaswag/acc_norm" in line]


def test_training_on_bpe_data_reports_hellaswag_also_split_across_processes(shards, hellaswag_dir, tmp_path):
    single = tmp_path / "single"
    train.main(fineweb_args(shards[0], single, hellaswag_dir=hellaswag_dir))
    records = hellaswag_records(single)
    assert [r["iter"] for r in records] == [0, 2, 4]
    for r in records:  # a count out of 3 items
        for key in ("hellaswag/acc", "hellaswag/acc_norm"):
            assert abs(3 * r[key] - round(3 * r[key])) < 1e-6 and 0 <= r[key] <= 1
    ddp = tmp_path / "ddp"
    torchrun(fineweb_args(shards[0], ddp, hellaswag_dir=hellaswag_dir))  # 3 items over 2 processes: 2 + 1
    for a, b in zip(records, hellaswag_records(ddp)):
        assert (a["hellaswag/acc"], a["hellaswag/acc_norm"]) == (b["hellaswag/acc"], b["hellaswag/acc_norm"])
