import hashlib
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
          "First Citizen:\nYou are all resolved rather to die than to famish?\n\n") * 30


@pytest.fixture(scope="session")
def char_data(tmp_path_factory):
    """A tiny character corpus prepared by the real prepare script: train.bin, val.bin, meta.pkl."""
    d = tmp_path_factory.mktemp("char")
    src = d / "input.txt"
    src.write_text(CORPUS)
    subprocess.run([sys.executable, os.path.join(ROOT, "data/shakespeare_char/prepare.py"), "--input", str(src),
                    "--out_dir", str(d)], check=True, capture_output=True)
    return d
GPT2_URLS = {
    "vocab.bpe": "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",
    "encoder.json": "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json",
}


@pytest.fixture(scope="session")
def gpt2_offline(tmp_path_factory):
    """Make tiktoken's GPT-2 encoding load without a network: tiktoken reads its download cache
    TIKTOKEN_CACHE_DIR/<sha1 of the URL>, so the two BPE files from ../shared/data/gpt2 are placed there.
    Elsewhere (a real user's clone) tiktoken's own cache or download is used; skip only if both fail."""
    shared = os.path.join(ROOT, "..", "shared", "data", "gpt2")
    old = os.environ.get("TIKTOKEN_CACHE_DIR")
    if all(os.path.isfile(os.path.join(shared, f)) for f in GPT2_URLS):
        cache = tmp_path_factory.mktemp("tiktoken_cache")
        for name, url in GPT2_URLS.items():
            shutil.copy(os.path.join(shared, name), cache / hashlib.sha1(url.encode()).hexdigest())
        os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)
    try:
        import tiktoken

        enc = tiktoken.get_encoding("gpt2")
    except Exception as e:  # no files and no network
        pytest.skip(f"GPT-2 BPE files unavailable offline: {e}")
    yield enc
    if old is None:
        os.environ.pop("TIKTOKEN_CACHE_DIR", None)
    else:
        os.environ["TIKTOKEN_CACHE_DIR"] = old
