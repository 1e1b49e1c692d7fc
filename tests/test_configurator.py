"""configurator.py: whatever a config file or the command line sets is set (even to the default's value), unknown
keys and wrong types are one-line errors."""
import pytest

import pretrained
import train
from configurator import ConfigError, configure

DEFAULTS = {"lr": 1e-3, "steps": 10, "name": "run", "flag": False}


def write(tmp_path, text, name="cfg.py"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_config_file_and_overrides(tmp_path):
    path = write(tmp_path, "import math\nsteps = 20\n_scratch = 3\nlr = steps * 1e-4\n")
    cfg = configure(DEFAULTS, [path, "--name=with=equals", "--flag=True", "--lr=2", "--steps=5"])
    assert cfg == {"lr": 2.0, "steps": 5, "name": "with=equals", "flag": True}
    assert isinstance(cfg["lr"], float)  # an int is accepted for a float and stored as float
    assert configure(DEFAULTS, ["--name='quoted'"])["name"] == "quoted"
    assert DEFAULTS["steps"] == 10  # defaults untouched


@pytest.mark.parametrize("argv, message", [
    (["--stepz=3"], "unknown config key 'stepz' in command line (did you mean steps?)"),
    (["--speed=3"], "unknown config key 'speed' in command line"),
    (["--lr=fast"], "config key 'lr' in command line must be float, got str 'fast'"),
    (["--steps=2.5"], "config key 'steps' in command line must be int, got float 2.5"),
    (["--flag=1"], "config key 'flag' in command line must be bool, got int 1"),
    (["--steps"], "override '--steps' must look like --key=value"),
    (["missing.py"], "config file not found: missing.py"),
])
def test_config_errors_on_the_command_line(argv, message):
    with pytest.raises(ConfigError) as e:
        configure(DEFAULTS, argv)
    assert str(e.value) == message


def test_config_errors_in_a_file(tmp_path):
    path = write(tmp_path, "steps = 3\nlearning_rate = 0.1\n")
    with pytest.raises(ConfigError) as e:
        configure(DEFAULTS, [path])
    assert str(e.value) == f"unknown config key 'learning_rate' in config file {path}"
    path = write(tmp_path, "steps = '3'\n", "typed.py")
    with pytest.raises(ConfigError) as e:
        configure(DEFAULTS, [path])
    assert str(e.value) == f"config key 'steps' in config file {path} must be int, got str '3'"
    path = write(tmp_path, "steps = 1 / 0\n", "broken.py")
    with pytest.raises(ConfigError, match="error while executing config file .*ZeroDivisionError"):
        configure(DEFAULTS, [path])



def test_did_you_mean_catches_misspellings():
    with pytest.raises(ConfigError, match=r"unknown config key 'lerning_rate' in command line \(did you mean "
                                          r"learning_rate\?\)"):
        configure(train.DEFAULTS, ["--lerning_rate=1e-3"])


def test_a_key_a_config_file_assigns_is_set_even_at_the_defaults_value(tmp_path):
    # a string, a bool and an int equal to train.py's defaults: CPython shares such objects, so an identity test
    # with the default cannot tell the line from its absence
    assert (train.DEFAULTS["curvature"], train.DEFAULTS["bias"], train.DEFAULTS["n_layer"]) == ("free", False, 4)
    path = tmp_path / "cfg.py"
    path.write_text('curvature = "free"\nbias = False\nn_layer = 4\nimport os\n_scratch = 1\n')
    explicit = set()
    cfg = configure(train.DEFAULTS, [str(path)], explicit)
    assert explicit == {"curvature", "bias", "n_layer"}
    assert (cfg["curvature"], cfg["bias"], cfg["n_layer"]) == ("free", False, 4)
    explicit = set()
    configure(train.DEFAULTS, ["--bias=False", "--n_layer=4"], explicit)
    assert explicit == {"bias", "n_layer"}


def test_a_sibling_a_config_file_runs_sets_its_keys_and_later_lines_read_them(tmp_path):
    (tmp_path / "base.py").write_text("n_embd = 128\nlearning_rate = 3e-3\n")
    (tmp_path / "child.py").write_text("import os\nexec(open(os.path.join(os.path.dirname(__file__), 'base.py')).read())"
                                       "\nmin_lr = learning_rate / 10\n")
    explicit = set()
    cfg = configure(train.DEFAULTS, [str(tmp_path / "child.py")], explicit)
    assert explicit == {"n_embd", "learning_rate", "min_lr"} and cfg["min_lr"] == pytest.approx(3e-4)


def test_curvature_set_in_a_config_file_curves_a_pretrained_model(tmp_path):
    """init_from='gpt2' alone is GPT-2 (Euclidean); curvature='hyperbolic' in a config file asks for the curved model,
    though it is train.py's default value."""
    path = tmp_path / "cfg.py"
    path.write_text('init_from = "gpt2"\ncurvature = "hyperbolic"\n')
    hf = {k: train.DEFAULTS[k] for k in pretrained.ARCH_KEYS} | {"vocab_size": 50257, "block_size": 1024}
    explicit = set()
    cfg = configure(train.DEFAULTS, [str(path)], explicit)
    assert pretrained.merge_args(hf, cfg, explicit, train.DEFAULTS)["curvature"] == "hyperbolic"
    bare = tmp_path / "bare.py"
    bare.write_text('init_from = "gpt2"\n')
    explicit = set()
    cfg = configure(train.DEFAULTS, [str(bare)], explicit)
    assert pretrained.merge_args(hf, cfg, explicit, train.DEFAULTS)["curvature"] == "euclidean"


def test_a_wrong_type_in_a_config_file_is_one_line(tmp_path):
    path = tmp_path / "cfg.py"
    path.write_text('n_layer = "four"\n')
    with pytest.raises(ConfigError, match=r"config key 'n_layer' in config file .*cfg.py must be int, got str 'four'"):
        configure(train.DEFAULTS, [str(path)])
