"""The shape of the code: imports point one way with no cycle, every model option has one home, the reference
math and the training loop stay short enough to read (their fast path and helpers live beside them)."""
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

OURS = {os.path.splitext(f)[0] for f in os.listdir(ROOT) if f.endswith(".py")}


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
    ("fused_maps", {"geometry"}),  # the fast path of the reference math, never the other way round
    ("model", {"geometry", "fused_maps"}),
    ("loader", set()),
    ("configurator", set()),
    ("runtime", {"model", "configurator", "loader"}),
    ("hellaswag", {"loader"}),
    ("logger", {"runtime"}),
    ("generate", set()),  # the decoding loop beside the model, as gpt-fast keeps it
    ("sample", {"runtime", "configurator", "loader", "pretrained", "generate"}),
    ("pretrained", {"model", "runtime", "configurator"}),  # GPT-2's weights in and out
    ("export", {"pretrained", "runtime", "loader", "hf_model"}),  # GPT-2, or the repo's code as remote code
    ("hf_model", {"model", "geometry", "fused_maps"}),  # the exported wrapper: it runs model.py, nothing more
    ("bench", {"geometry", "model", "runtime", "generate"}),
    ("accuracy", {"geometry"}),
    ("analyze", {"geometry", "loader", "runtime"}),
    ("harness", {"train", "configurator"}),
    ("frontier", {"harness"}),  # the compute multiplier's analysis: numbers in, numbers out (harness: the t-interval)  # runs train.py in subprocesses; resolves their options with its defaults
    ("study", {"harness", "frontier", "configurator", "loader", "export", "runtime"}),  # the driver (loader: meta; the graft's
    # export of its pretrain)
])
def test_imports_point_one_way(name, allowed):
    assert imported_modules(name) <= allowed, imported_modules(name) - allowed


def test_nothing_imports_the_driver():
    assert not [name for name in OURS if "study" in imported_modules(name)]


def test_our_modules_import_each_other_without_a_cycle():
    graph = {name: imported_modules(name) for name in OURS}
    state = {}

    def visit(name, path):
        assert state.get(name) != "open", " → ".join(path + [name])
        if name not in state:
            state[name] = "open"
            for dep in graph[name]:
                visit(dep, path + [name])
            state[name] = "done"

    assert {"geometry", "fused_maps", "model", "train", "hellaswag", "logger"} <= OURS
    for name in sorted(graph):
        visit(name, [])


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


def test_train_py_is_the_loop_short_functions_within_520_lines():
    source = open(os.path.join(ROOT, "train.py")).read()
    assert len(source.splitlines()) <= 520
    tree = ast.parse(source)
    lengths = {n.name: n.end_lineno - n.lineno + 1 for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    assert max(lengths.values()) <= 60, {k: v for k, v in lengths.items() if v > 60}


def test_geometry_py_is_the_reference_math_within_400_lines():
    """The fused maps are the fast path and live in fused_maps.py; geometry.py keeps the definitions."""
    source = open(os.path.join(ROOT, "geometry.py")).read()
    assert len(source.splitlines()) <= 400
    assert "fused_maps.py" in ast.get_docstring(ast.parse(source))
    assert "PrevTokenEnter" not in source and "class PrevTokenEnter" in open(os.path.join(ROOT, "fused_maps.py")).read()
