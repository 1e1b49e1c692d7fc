"""
Decoding, beside the model as gpt-fast keeps it: sample tokens from a GPT (model.py), with its generation cache or
without. sample.py and bench.py call it; the model only defines forward and the cache.

    from generate import generate
    out = generate(model, prompt, max_new_tokens=200, top_k=200)
"""
import torch
import torch.nn.functional as F


@torch.no_grad()
def generate(model, idx, max_new_tokens, temperature=1.0, top_k=None, generator=None, use_cache=True,
             decode=None):
    """Sample max_new_tokens tokens after idx [B, T], feeding predictions back in.

    With use_cache, the prompt runs in one forward that fills a preallocated cache, then each new token costs
    one position's work (attention over the cache) instead of a forward pass over the whole context. Learned
    positions are absolute, so once the context exceeds block_size and must slide, every step re-encodes the
    last block_size tokens, exactly as without the cache; with rotary positions the context just grows (beyond
    the length trained on). Both paths give the same logits up to float rounding. `decode` runs the one-token
    steps, e.g. torch.compile(model): their shapes never change, so it compiles once (sample.py --compile).
    """
    rope, block_size = model.config.pos_embedding == "rope", model.config.block_size
    fed = idx.size(1) + max_new_tokens - 1  # positions that pass through the model (not the last sample)
    cache, decode = None, model if decode is None else decode
    idx_next = None  # the last sampled token: a decode step's input
    for _ in range(max_new_tokens):
        if use_cache and (rope or idx.size(1) <= block_size):
            if cache is None:  # the whole prompt in one forward, then one token at a time
                cache = model.new_cache(fed if rope else min(fed, block_size))
                logits, _ = model(idx, cache=cache)
            else:
                logits, _ = decode(idx_next, cache=cache)  # a fresh [B, 1]: the same strides every step
        else:
            logits, _ = model(idx if rope else idx[:, -block_size:])
        logits = logits[:, -1, :].float() / temperature
        if top_k is not None:
            v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
            logits[logits < v[:, [-1]]] = -float("Inf")
        probs = F.softmax(logits, dim=-1)
        idx_next = torch.multinomial(probs, num_samples=1, generator=generator)
        idx = torch.cat((idx, idx_next), dim=1)
    return idx
