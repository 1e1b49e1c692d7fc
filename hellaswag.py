"""
HellaSwag accuracy as llm.c and build-nanogpt report it for GPT-2: for each of the 10,042 validation items (a context
and four endings), the ending the model finds most likely wins, by mean loss over its tokens (acc_norm; GPT-2 124M
≈ 29.5%) or by summed loss (acc).

    items = read("data/hellaswag/hellaswag_val_tokens.jsonl")   # written by data/hellaswag/prepare.py
    evaluate(model, items, autocast, device)                    # {"hellaswag/acc": …, "hellaswag/acc_norm": …}

train.py calls `evaluate` at every evaluation of a GPT-2 BPE run when the file is there.
"""
import json
import os

import torch
import torch.nn.functional as F

from loader import DataError


def read(path, required=False):
    """HellaSwag items as data/hellaswag/prepare.py writes them (ctx and four endings as GPT-2 token ids, label),
    or None when the file is absent and not required."""
    if not os.path.exists(path):
        if required:
            raise DataError(f"{path} not found: run `python data/hellaswag/prepare.py` (or clear hellaswag_dir)")
        return None
    items = []
    with open(path) as f:
        for i, line in enumerate(f):
            try:
                item = json.loads(line)
                ok = len(item["endings"]) == 4 and 0 <= item["label"] < 4 and item["ctx"]
            except (json.JSONDecodeError, KeyError, TypeError):
                ok = False
            if not ok:
                raise DataError(f"{path}, line {i + 1}: not a tokenized HellaSwag item; rerun "
                                f"`python data/hellaswag/prepare.py`")
            items.append(item)
    if not items:
        raise DataError(f"{path} holds no items; rerun `python data/hellaswag/prepare.py`")
    return items


def losses(model, item, block_size, device):
    """Each ending's summed and mean loss over its own tokens after the context, [4] each. Rows longer than the
    context window keep their last block_size + 1 tokens; shorter rows are padded, and causality keeps the padding
    from touching the scored positions."""
    rows = [item["ctx"] + ending for ending in item["endings"]]
    L = min(max(len(r) for r in rows), block_size + 1)
    tokens = torch.zeros(4, L, dtype=torch.long)
    scored = torch.zeros(4, L - 1)
    for i, (row, ending) in enumerate(zip(rows, item["endings"])):
        row = row[-L:]
        tokens[i, :len(row)] = torch.tensor(row)
        scored[i, len(row) - 1 - min(len(ending), L - 1):len(row) - 1] = 1  # predictions of the ending's tokens
    tokens, scored = tokens.to(device), scored.to(device)
    # with targets the model returns the logits of every position
    logits, _ = model(tokens[:, :-1].contiguous(), targets=tokens[:, 1:].contiguous())
    per_token = F.cross_entropy(logits.float().flatten(0, 1), tokens[:, 1:].flatten(), reduction="none")
    total = (per_token.view(4, L - 1) * scored).sum(1)
    return total, total / scored.sum(1)


@torch.no_grad()
def evaluate(model, items, autocast, device, rank=0, world=1):
    """acc and acc_norm over `items`; under DDP each process scores every world-th item and the counts are summed.
    `model` is the uncompiled GPT: every item has its own length."""
    model.eval()
    counts = torch.zeros(3, device=device)  # acc, acc_norm, items
    for item in items[rank::world]:
        with autocast:
            total, mean = losses(model, item, model.config.block_size, device)
        counts += torch.tensor([int(total.argmin()) == item["label"], int(mean.argmin()) == item["label"], 1],
                               device=device)
    if world > 1:
        torch.distributed.all_reduce(counts)
    model.train()
    return {"hellaswag/acc": (counts[0] / counts[2]).item(), "hellaswag/acc_norm": (counts[1] / counts[2]).item()}
