"""
A trained kappaGPT model as a Hugging Face directory: GPT-2 where GPT-2 can express it, else the repo's own code.

    python export.py out-curved                   # out-curved/ckpt.pt → out-curved/hf/
    python export.py out-curved --to hf-curved --overwrite

Two formats, one command:
- A Euclidean model that GPT-2 can express (pretrained.export_refusals is empty) is written as plain GPT-2:
  config.json and model.safetensors, which GPT2LMHeadModel.from_pretrained opens without remote code, as before.
- Every other model (curved with any curvature, reference and residual option, nGPT, Euclidean shapes GPT-2 lacks:
  rotary positions, RMSNorm, ReLU², the smear...) is written with its own modelling code: config.json (model_type
  'kappagpt', GPTConfig's fields under 'kappagpt', an auto_map), model.safetensors (the wrapper's state dict), and
  modeling_kappagpt.py (hf_model.py) beside copies of model.py, geometry.py and fused_maps.py with their imports made
  relative. AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True) opens it and runs the repo's model code.

The tokenizer travels too: a character or byte vocabulary as kappagpt_vocab.json with tokenizer_config.json naming
KappaGPTTokenizer (AutoTokenizer, trust_remote_code=True); GPT-2 BPE as GPT-2's vocab.json and merges.txt (taken from
tiktoken's cache, where the GPT-2 encoding keeps them). Everything is written into a temporary directory beside the
target and renamed into place at the end: a failure leaves no half-written export. An existing target is replaced only
with --overwrite.
"""
import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile

import loader
import pretrained
from runtime import RunError, load_checkpoint, model_from_checkpoint

HERE = os.path.dirname(os.path.abspath(__file__))
# the model's code, copied into the export; the wrapper is hf_model.py, copied as modeling_kappagpt.py
CODE = ("model.py", "geometry.py", "fused_maps.py")
# absolute imports of those modules, made relative (remote code is loaded as a package)
RELATIVE = ((re.compile(r"^import (model|geometry|fused_maps)( as \w+)?$", re.M), r"from . import \1\2"),
            (re.compile(r"^from (model|geometry|fused_maps) import ", re.M), r"from .\1 import "))
# tiktoken's GPT-2 files: the cache names them by the sha1 of their URL; transformers' GPT2Tokenizer calls them
# vocab.json and merges.txt
GPT2_FILES = {"vocab.json": "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json",
              "merges.txt": "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe"}


def relative_imports(source):
    """The source with its imports of the model's modules made relative."""
    for pattern, repl in RELATIVE:
        source = pattern.sub(repl, source)
    return source


def gpt2_tokenizer_files():
    """{name: bytes} of GPT-2's tokenizer from tiktoken's cache (filled by loading the encoding once)."""
    loader.gpt2_encoding()  # downloads into the cache, or raises a DataError that says how to get the files
    cache = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR") or os.path.join(
        tempfile.gettempdir(), "data-gym-cache")
    out = {}
    for name, url in GPT2_FILES.items():
        path = os.path.join(cache, hashlib.sha1(url.encode()).hexdigest())
        if not os.path.exists(path):
            raise RunError(f"GPT-2's tokenizer file {url.rsplit('/', 1)[1]} is not in tiktoken's cache ({cache})")
        with open(path, "rb") as f:
            out[name] = f.read()
    return out


def code_files():
    """{name: bytes} of the modelling code an export runs: the wrapper and the model's modules, imports relative."""
    files = {"__init__.py": b""}
    for name, source in [(n, n) for n in CODE] + [("modeling_kappagpt.py", "hf_model.py")]:
        with open(os.path.join(HERE, source), encoding="utf-8") as f:
            files[name] = relative_imports(f.read()).encode()
    return files


def tokenizer_files(vocab, meta, block_size):
    """{name: bytes} of the tokenizer: GPT-2's files for GPT-2 BPE, else the vocabulary and KappaGPTTokenizer (the
    wrapper's module, with the code it imports)."""
    if vocab.get("tokenizer") == "gpt2":
        return gpt2_tokenizer_files() | {"tokenizer_config.json": json.dumps(
            {"tokenizer_class": "GPT2Tokenizer", "model_max_length": block_size}).encode()}
    itos = [meta["itos"][i] for i in range(meta["vocab_size"])]
    return code_files() | {
        "kappagpt_vocab.json": json.dumps({"encoding": meta.get("encoding", "chars"), "itos": itos}).encode(),
        "tokenizer_config.json": json.dumps({
            "tokenizer_class": "KappaGPTTokenizer", "model_max_length": block_size,
            "auto_map": {"AutoTokenizer": ["modeling_kappagpt.KappaGPTTokenizer", None]}}).encode()}


def kappagpt_config(c):
    """config.json of the remote-code format for GPTConfig `c`."""
    return {"architectures": ["KappaGPTForCausalLM"], "model_type": "kappagpt",
            "auto_map": {"AutoConfig": "modeling_kappagpt.KappaGPTConfig",
                         "AutoModelForCausalLM": "modeling_kappagpt.KappaGPTForCausalLM"},
            "kappagpt": {k: getattr(c, k) for k in c.__dataclass_fields__}, "vocab_size": c.vocab_size,
            "n_positions": c.block_size, "tie_word_embeddings": c.tie_embeddings, "use_cache": False,
            "torch_dtype": "float32"}


def export(ckpt, to, overwrite=False):
    """Write the checkpoint's model to directory `to` (module docstring); returns the format: 'gpt2' or 'kappagpt'."""
    if os.path.exists(to) and not overwrite:
        raise RunError(f"{to} already exists: pass --overwrite to replace it")
    try:
        model = model_from_checkpoint(ckpt)
    except (ValueError, TypeError, KeyError) as e:  # GPTConfig's one line for an option this code does not know
        raise RunError(f"the checkpoint's model cannot be built: {e}") from None
    parent = os.path.dirname(os.path.abspath(to))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(to)}.", dir=parent)
    try:
        files = tokenizer_files(ckpt.get("vocab") or {"tokenizer": "gpt2"}, ckpt.get("meta"), model.config.block_size)
        if not pretrained.export_refusals(model.config):
            fmt = "gpt2"
            pretrained.export(model, tmp, ckpt.get("meta"))
        else:
            from safetensors.torch import save_file

            import hf_model
            fmt = "kappagpt"
            files |= code_files() | {"config.json": json.dumps(kappagpt_config(model.config), indent=2).encode()}
            save_file(hf_model.tensors(model), os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
        for name, data in files.items():
            with open(os.path.join(tmp, name), "wb") as f:
                f.write(data)
        if os.path.exists(to):  # --overwrite: the old export goes only once the new one is complete
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(to)}.old.", dir=parent)
            os.replace(to, os.path.join(old, "x"))
            os.replace(tmp, to)
            shutil.rmtree(old)
        else:
            os.replace(tmp, to)
    except OSError as e:
        raise RunError(f"could not write {to} ({e.strerror or e})") from None
    except loader.DataError as e:  # GPT-2's tokenizer files are not to be had
        raise RunError(str(e)) from None
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
    return fmt


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", help="a training run's directory, holding ckpt.pt")
    parser.add_argument("--to", help="the Hugging Face directory to write (default OUT_DIR/hf)")
    parser.add_argument("--overwrite", action="store_true", help="replace the directory if it exists")
    args = parser.parse_args(argv)
    to = args.to or os.path.join(args.out_dir, "hf")
    try:
        path = os.path.join(args.out_dir, "ckpt.pt")
        if not os.path.exists(path):
            raise RunError(f"no checkpoint at {path}: is {args.out_dir} the out_dir of a training run?")
        fmt = export(load_checkpoint(path), to, args.overwrite)
    except RunError as e:
        sys.exit(f"error: {e}")
    opener = ("GPT2LMHeadModel.from_pretrained" if fmt == "gpt2" else
              "AutoModelForCausalLM.from_pretrained(..., trust_remote_code=True)")
    print(f"wrote {to} ({fmt}): open it with {opener}, or train.py --init_from={to}")
    return to


if __name__ == "__main__":
    main()
