"""The shape of the code: imports point one way, every model option has one home, the training loop stays short."""
import ast
import dataclasses
import os
import subprocess
import sys

import pytest

import runtime
import train
from conftest import ROOT
from model import GPTConfig

OURS = {"geometry", "model", "runtime", "train", "sample", "bench", "loader", "configurator", "accuracy", "plot",
        "analyze", "sweep"}


def imported_modules(name):
    """Our modules that `name`.py imports, read from its source."""
    tree = ast.parse(open(os.path.join(ROOT, f"{name}.py")).read())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module.split(".")[0])
    return found & OURS


@pytest.mark.parametrize("name, allowed", [
    ("geometry", set()),
    ("model", {"geometry"}),
    ("runtime", {"model", "configurator", "loader"}),  # loader imports none of ours
    ("sample", {"runtime", "configurator", "loader"}),
    ("bench", {"geometry", "model", "runtime"}),
    ("accuracy", {"geometry"}),
    ("analyze", {"geometry", "loader", "runtime"}),
    ("sweep", set()),  # runs train.py in subprocesses
])
def test_imports_point_one_way(name, allowed):
    assert imported_modules(name) <= allowed, imported_modules(name) - allowed


def test_sampling_and_benchmarking_never_load_the_training_loop():
    code = "import sys, sample, bench, analyze; assert 'train' not in sys.modules, 'train was imported'"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_every_model_option_is_a_run_option_with_gptconfigs_default_unless_sized_for_cpu():
    fields = {f.name: f.default for f in dataclasses.fields(GPTConfig)}
    assert set(runtime.MODEL_KEYS) == set(fields) - {"vocab_size"}
    assert set(runtime.MODEL_KEYS) <= set(train.DEFAULTS)
    cpu_sized = {k for k in runtime.MODEL_KEYS if train.DEFAULTS[k] != fields[k]}
    assert cpu_sized == {"n_layer", "n_head", "n_embd", "block_size", "bias"}


def test_no_function_in_train_py_is_longer_than_80_lines():
    tree = ast.parse(open(os.path.join(ROOT, "train.py")).read())
    lengths = {n.name: n.end_lineno - n.lineno + 1 for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    assert max(lengths.values()) <= 80, {k: v for k, v in lengths.items() if v > 80}
