"""
Config files and command-line overrides, nanoGPT style, with errors instead of silent surprises.

    python train.py config/train_shakespeare_char.py --batch_size=32 --compile=False

Each positional argument is a config file: plain Python, executed (so it must be trusted, like any
script), whose top-level assignments override the defaults. Each `--key=value` then overrides one key;
the value is read as a Python literal (`--lr=3e-4`, `--bias=False`, `--out_dir=out`), and a bare word is
taken as a string. Every key must already exist in the defaults, and every value must have the default's
type (an int is accepted where a float is expected). A config file may read earlier values and may use
names starting with "_" or imported modules as scratch.

A key is set when a config file assigns it, whatever the value: `bias = False` in a file is set even though it
equals the default (what a pretrained model must then agree with; see train.build_model). The file's top-level
assignments are recorded as they happen, including those of a sibling it exec()s.
"""
import ast
import difflib
import os
import types


class ConfigError(ValueError):
    """A bad config file or override; the message says what and where."""


def _check(key, value, defaults, where):
    if key not in defaults:
        # keys sharing the first word (--curvature → curvature_init, ...) and near misspellings (lerning_rate)
        close = {k for k in defaults if k.split("_")[0] == key.split("_")[0]}
        close |= set(difflib.get_close_matches(key, list(defaults), n=3, cutoff=0.8))
        hint = f" (did you mean {', '.join(sorted(close))}?)" if close else ""
        raise ConfigError(f"unknown config key '{key}' in {where}{hint}")
    default = defaults[key]
    if default is None or value is None:
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not type(default):
        raise ConfigError(
            f"config key '{key}' in {where} must be {type(default).__name__}, "
            f"got {type(value).__name__} {value!r}"
        )
    return value


def _parse_value(raw, default):
    if isinstance(default, str):
        # strings need no quotes on the command line; quoted ones are unquoted
        try:
            value = ast.literal_eval(raw)
            return value if isinstance(value, str) else raw
        except (ValueError, SyntaxError):
            return raw
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw  # a bare word: the type check then reports it against the default's type


class _Assignments(dict):
    """A config file's namespace that records every name assigned in it: equal values are still assignments
    (comparing the value with the default cannot tell `n_layer = 4` from no line at all)."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.assigned = []

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        if key not in self.assigned:
            self.assigned.append(key)


def configure(defaults, argv, explicit=None):
    """Apply config files and --key=value overrides in `argv` to a copy of `defaults`; return the new dict.
    `explicit`, a set, collects the keys that a config file changed or the command line set."""
    config = dict(defaults)
    explicit = set() if explicit is None else explicit
    for arg in argv:
        if not arg.startswith("--"):
            if not os.path.isfile(arg):
                raise ConfigError(f"config file not found: {arg}")
            with open(arg) as f:
                source = f.read()
            # globals are a plain dict (exec requires one); assignments land in the recording locals, which name
            # lookups read first, so a file reads the values set so far, its own included
            scope = _Assignments(config, __file__=arg)  # __file__ lets a config build on a sibling (config/*_euclid.py)
            try:
                exec(compile(source, arg, "exec"), dict(config, __file__=arg), scope)
            except Exception as e:  # a config file is user code: report where it broke
                raise ConfigError(f"error while executing config file {arg}: {type(e).__name__}: {e}") from e
            for key in scope.assigned:
                value = scope[key]
                if key.startswith("_") or isinstance(value, types.ModuleType):
                    continue
                config[key] = _check(key, value, defaults, f"config file {arg}")
                explicit.add(key)
        else:
            body = arg[2:]
            if "=" not in body:
                raise ConfigError(f"override '{arg}' must look like --key=value")
            key, raw = body.split("=", 1)  # only the first '=' separates: values may contain '='
            if key not in defaults:
                _check(key, None, defaults, "command line")
            config[key] = _check(key, _parse_value(raw, defaults[key]), defaults, "command line")
            explicit.add(key)
    return config
