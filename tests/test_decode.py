"""gpt-fast-style generation: a preallocated cache whose shapes never change, so a compiled one-token decode step
compiles once and gives the tokens of eager cached and uncached generation."""
import pytest
import torch
import torch._dynamo.testing

import sample
from configurator import configure
from conftest import make, tokens
from generate import generate

DECODE_MODES = {
    "euclidean": dict(curvature="euclidean"),
    "default": dict(curvature="hyperbolic", reference="prev_token", residual="tangent"),
    "window-distance-midpoint-rope-smear": dict(curvature="spherical", reference="window", residual="mobius",
                                                attention="distance", aggregate="midpoint", pos_embedding="rope",
                                                smear=True),
}


@pytest.mark.parametrize("name", DECODE_MODES)
def test_compiled_decode_compiles_once_and_gives_the_same_tokens(name):
    mode = dict(DECODE_MODES[name])
    model = make(mode.pop("curvature"), mode.pop("reference", "prev_token"), mode.pop("residual", "mobius"), **mode)
    model.eval()
    torch._dynamo.reset()
    counter = torch._dynamo.testing.CompileCounterWithBackend("aot_eager")
    decode = torch.compile(model, backend=counter, fullgraph=True)
    prompt = tokens(B=2, T=4)
    n = 12  # 4 + 12 − 1 = 15 positions pass through the model: within block_size 16
    runs = {}
    for way, kw in {"compiled": dict(decode=decode), "eager": {}, "uncached": dict(use_cache=False)}.items():
        runs[way] = generate(model, prompt, n, top_k=10, generator=torch.Generator().manual_seed(0), **kw)
    assert torch.equal(runs["compiled"], runs["eager"]) and torch.equal(runs["eager"], runs["uncached"])
    assert counter.frame_count == 1, f"the decode step compiled {counter.frame_count} times"
    again = generate(model, prompt, n, top_k=10, generator=torch.Generator().manual_seed(0), decode=decode)
    assert torch.equal(again, runs["compiled"]) and counter.frame_count == 1  # a second run reuses it


def test_cache_is_preallocated_and_written_in_place():
    model = make("hyperbolic", "prev_token", "tangent").eval()
    cache = model.new_cache(10)
    idx = tokens(B=2, T=10)
    model(idx[:, :4], cache=cache)
    k = cache["blocks"][0]["k"]
    assert k.shape[2] == 10  # max_len positions, allocated by the prompt's forward
    for t in range(4, 10):
        model(idx[:, t:t + 1], cache=cache)
    assert cache["blocks"][0]["k"] is k and int(cache["next"]) == 10
    with pytest.raises(ValueError, match="max_len"):
        model(torch.cat([idx, idx[:, :1]], 1), cache=model.new_cache(10))  # 11 tokens


def test_cache_longer_than_learned_positions_is_an_error():
    model = make("euclidean")
    with pytest.raises(ValueError, match="block_size"):
        model.new_cache(17)  # block_size 16, learned positions
    make("euclidean", pos_embedding="rope").new_cache(40)  # rotary positions have no table: fine


@pytest.mark.slow
def test_sample_with_compiled_decode(char_data, tmp_path):
    """sample.py --compile=True (inductor) gives the same text as without, from the same seed."""
    import train
    from conftest import tiny_args

    train.main(tiny_args(char_data, tmp_path, max_iters=2, eval_interval=2))
    args = [f"--out_dir={tmp_path}", "--start=All:", "--num_samples=2", "--max_new_tokens=12"]
    eager = sample.sample(configure(sample.DEFAULTS, args))
    compiled = sample.sample(configure(sample.DEFAULTS, args + ["--compile=True"]))
    assert compiled == eager
