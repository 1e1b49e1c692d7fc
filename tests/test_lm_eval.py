"""lm-evaluation-harness scores an exported model, offline, on a tiny local multiple-choice task, and its numbers are
the repo's: each choice's log-likelihood computed by hand with model.GPT, and the accuracy they imply."""
import json
import math

import pytest
import torch

import export
from test_export import CHARS, checkpoint

lm_eval = pytest.importorskip("lm_eval")

ITEMS = [  # every character in CHARS: the model's vocabulary
    {"question": "First Citizen:", "choices": ["Speak.", "famish?", "All:"], "answer": 0},
    {"question": "You are all resolved", "choices": ["rather", "to die", "hear me"], "answer": 1},
    {"question": "Before we proceed", "choices": ["any further", "speak", "No."], "answer": 0},
    {"question": "ROMEO:", "choices": ["hear me speak.", "Citizen", "é"], "answer": 2},
]
TASK = """task: kappagpt_tiny_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {path}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: answer
metric_list:
  - metric: acc
"""


def loglikelihood(model, stoi, context, continuation):
    """log p(continuation | context) under model.GPT: the sum of the continuation's tokens' log-probabilities."""
    ids = torch.tensor([[stoi[c] for c in context + continuation]])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids, ids)[0].double(), dim=-1)[0]
    n = len(continuation)
    return sum(float(logp[len(context) - 1 + i, ids[0, len(context) + i]]) for i in range(n))


def test_the_harness_scores_an_export_with_the_repos_log_likelihoods(tmp_path):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    ckpt, ours = checkpoint("mixed")
    hf = tmp_path / "hf"
    export.export(ckpt, str(hf))
    data = tmp_path / "items.json"
    data.write_text("\n".join(json.dumps(item) for item in ITEMS))
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "kappagpt_tiny_mc.yaml").write_text(TASK.format(path=data))
    stoi = {c: i for i, c in enumerate(CHARS)}
    # a character vocabulary has no end-of-text token for the harness to start an empty context with: name one
    out = simple_evaluate(model="hf", model_args=f"pretrained={hf},trust_remote_code=True,dtype=float32,"
                                                 f"prefix_token_id={stoi[chr(10)]}",
                          tasks=["kappagpt_tiny_mc"], task_manager=TaskManager(include_path=str(tasks)),
                          device="cpu", batch_size=1, log_samples=True)
    samples = sorted(out["samples"]["kappagpt_tiny_mc"], key=lambda s: s["doc_id"])
    correct = 0
    for item, sample in zip(ITEMS, samples):
        theirs = [float(r[0]) for r in sample["filtered_resps"]]
        # the harness joins context and choice with a space (its target_delimiter)
        mine = [loglikelihood(ours, stoi, item["question"], " " + c) for c in item["choices"]]
        # float32 log-probabilities summed over ≤ 15 tokens of size ≤ ~10: a few hundred ulps of 10
        assert theirs == pytest.approx(mine, abs=256 * torch.finfo(torch.float32).eps * 10)
        correct += max(range(len(mine)), key=mine.__getitem__) == item["answer"]
    assert out["results"]["kappagpt_tiny_mc"]["acc,none"] == pytest.approx(correct / len(ITEMS))
    assert not math.isnan(out["results"]["kappagpt_tiny_mc"]["acc,none"])
