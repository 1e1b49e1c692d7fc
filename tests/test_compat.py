"""Behaviour kept across refactors: runs recorded by an earlier version of the code give the same losses and
samples today, and that version's checkpoint still resumes.

tests/data/reference_runs.json holds the per-iteration losses of a few short training runs (several modes and
both optimizers) and the samples drawn from one of them; tests/data/reference_ckpt.pt is the checkpoint that
run wrote at iteration 8. Both were made by the code named in the JSON's "recorded_with", before a refactor
that was to change nothing. Rewrite them only for a change that is meant to alter training, and say so in
the commit:

    python tests/test_compat.py --record
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]  # also run as a script

import sample  # noqa: E402
import train  # noqa: E402
from configurator import configure  # noqa: E402
from conftest import CORPUS, ROOT, tiny_args  # noqa: E402

RECORD = os.path.join(HERE, "data", "reference_runs.json")
CKPT = os.path.join(HERE, "data", "reference_ckpt.pt")
COMMON = dict(n_layer=2, n_head=2, n_embd=16, block_size=16, batch_size=4, max_iters=12, eval_interval=4,
              log_interval=1, eval_iters=2)
RUNS = {
    # the default when recorded (hyperbolic, per-head κ, prev_token reference, tangent residual), now pinned
    "curved": dict(curvature="hyperbolic", curvature_init=-0.05),
    "euclid": dict(curvature="euclidean"),
    "mobius-distance-midpoint": dict(curvature="hyperbolic", curvature_init=-0.05, residual="mobius",
                                     attention="distance", aggregate="midpoint"),
    "window-free-muon": dict(reference="window", curvature="free", curvature_init=-0.1, optimizer="muon"),
}
RESUME_FROM = 8  # the "curved" run's checkpoint at this iteration is kept
SAMPLE_ARGS = ["--start=All:", "--num_samples=2", "--max_new_tokens=20", "--device=cpu"]


def corpus_sha():
    return hashlib.sha256(CORPUS.encode()).hexdigest()[:16]


def losses(out_dir):
    """{'train': {iter: loss}, 'val': {iter: loss}} from a run's metrics.jsonl (iters as strings, as in JSON)."""
    out = {"train": {}, "val": {}}
    with open(os.path.join(out_dir, "metrics.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            for split, key in (("train", "train/loss"), ("val", "val/loss")):
                if key in r:
                    out[split][str(r["iter"])] = r[key]
    return out


def run(data_dir, out_dir, **over):
    train.main(tiny_args(data_dir, out_dir, **{**COMMON, **over}))
    return losses(out_dir)


def draw_samples(out_dir):
    return sample.sample(configure(sample.DEFAULTS, [f"--out_dir={out_dir}", *SAMPLE_ARGS]))


def record(data_dir, work):
    """Make the reference files with the code as it is now."""
    runs = {name: run(data_dir, os.path.join(work, name), **over) for name, over in RUNS.items()}
    run(data_dir, os.path.join(work, "short"), **{**RUNS["curved"], "max_iters": RESUME_FROM})
    shutil.copy(os.path.join(work, "short", "ckpt.pt"), CKPT)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    with open(RECORD, "w") as f:
        json.dump({"recorded_with": commit, "corpus_sha256": corpus_sha(), "runs": runs,
                   "samples": draw_samples(os.path.join(work, "curved"))}, f, indent=1)
        f.write("\n")


@pytest.fixture(scope="module")
def reference():
    with open(RECORD) as f:
        ref = json.load(f)
    assert ref["corpus_sha256"] == corpus_sha(), "tests/conftest.py's CORPUS changed: rerecord the reference"
    return ref


def assert_same_losses(got, want, name):
    # Same machine class and torch: identical. The tolerance only absorbs another CPU's float rounding.
    for split in ("train", "val"):
        assert got[split].keys() == want[split].keys(), (name, split)
        for it, loss in want[split].items():
            assert got[split][it] == pytest.approx(loss, abs=1e-4), f"{name}: {split} loss at iter {it}"


@pytest.mark.parametrize("name", RUNS)
def test_same_losses_as_the_recorded_runs(name, reference, char_data, tmp_path):
    assert_same_losses(run(char_data, tmp_path / name, **RUNS[name]), reference["runs"][name], name)
    if name == "curved":
        assert draw_samples(tmp_path / name) == reference["samples"]


def test_a_checkpoint_from_the_recorded_version_resumes(reference, char_data, tmp_path):
    out = tmp_path / "resumed"
    out.mkdir()
    shutil.copy(CKPT, out / "ckpt.pt")
    got = run(char_data, out, **RUNS["curved"], init_from="resume")
    want = reference["runs"]["curved"]
    # the resumed run logs only the iterations after the checkpoint; they match the uninterrupted run
    after = {split: {it: v for it, v in want[split].items() if int(it) > RESUME_FROM} for split in want}
    assert_same_losses(got, after, "resumed")
    assert draw_samples(out) == reference["samples"]


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        sys.exit(__doc__)
    with tempfile.TemporaryDirectory() as work:
        with open(os.path.join(work, "input.txt"), "w") as f:
            f.write(CORPUS)
        subprocess.run([sys.executable, os.path.join(ROOT, "data/shakespeare_char/prepare.py"), "--input",
                        os.path.join(work, "input.txt"), "--out_dir", os.path.join(work, "data")], check=True)
        record(os.path.join(work, "data"), work)
    print(f"wrote {RECORD} and {CKPT}")
