"""GPT-2's weights in and out (pretrained.py, export.py): our logits against transformers' own GPT-2 on checkpoints
built here (no network), the graft that starts as the loaded model, the round trip, and one-line errors."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers", reason="transformers is a test requirement (requirements.txt)")

import pretrained  # noqa: E402
import sample  # noqa: E402
import train  # noqa: E402
from configurator import ConfigError, configure  # noqa: E402
from loader import open_dataset  # noqa: E402
from conftest import ROOT, full_logits, run_error, tiny_args  # noqa: E402
from model import GPT, GPTConfig  # noqa: E402
from runtime import RunError, configure_optimizers  # noqa: E402
from generate import generate

HF_TINY = dict(vocab_size=97, n_positions=32, n_embd=48, n_layer=2, n_head=4, resid_pdrop=0.0, embd_pdrop=0.0,
               attn_pdrop=0.0)
# 1e-5 on logits of order 1 (the bound): ~80 float32 epsilons, room for two 48-wide blocks summed in
# another order than transformers' (eager attention and Conv1D's addmm against our SDPA and Linear)
TOL = 1e-5
GRAFT = dict(curvature="free", curvature_init=0.0, reference="prev_token", residual="tangent", reference_share=True)


def hf_checkpoint(path, seed=0, **over):
    """A random GPT2LMHeadModel saved with save_pretrained; every parameter, LayerNorms and biases included, random,
    so that a transposed or misplaced tensor changes the logits."""
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**(HF_TINY | over))).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    model.save_pretrained(path)
    return model


def run_cfg(**over):
    """train.py's options for a model loaded from a checkpoint (the architecture comes from the checkpoint)."""
    return dict(train.DEFAULTS, curvature="euclidean", block_size=32) | over


def hf_logits(model, idx):
    with torch.no_grad():
        return model(idx).logits


@pytest.fixture(scope="module")
def tied(tmp_path_factory):
    path = tmp_path_factory.mktemp("hf_tied")
    return path, hf_checkpoint(path)


def inputs():
    g = torch.Generator().manual_seed(3)
    return [torch.randint(0, 97, (2, 7), generator=g), torch.randint(0, 97, (1, 32), generator=g),
            torch.tensor([[0, 96, 5]])]


@pytest.mark.parametrize("activation, ours", [("gelu_new", "gelu_tanh"), ("gelu", "gelu")])
@pytest.mark.parametrize("tie", [True, False])
def test_loaded_model_computes_transformers_gpt2(tmp_path, activation, ours, tie):
    theirs = hf_checkpoint(tmp_path, activation_function=activation, tie_word_embeddings=tie)
    model, args, vocab, meta = pretrained.load(str(tmp_path), run_cfg())
    assert (args["mlp"], args["tie_embeddings"], args["vocab_size"], vocab, meta) == (ours, tie, 97,
                                                                                       {"tokenizer": "gpt2",
                                                                                        "size": 97}, None)
    model.eval()
    for idx in inputs():  # the second is a full-length sequence: every position row is used
        torch.testing.assert_close(full_logits(model, idx), hf_logits(theirs, idx), rtol=0, atol=TOL)


def test_the_hubs_layout_without_the_transformer_prefix_loads_the_same(tmp_path, tied):
    """OpenAI's files on the hub were saved from GPT2Model: names without "transformer." and causal-mask buffers."""
    from safetensors.torch import load_file, save_file

    src, theirs = tied
    tensors = {k.removeprefix("transformer."): v for k, v in load_file(os.path.join(src, "model.safetensors")).items()}
    tensors |= {f"h.{i}.attn.bias": torch.tril(torch.ones(1, 1, 32, 32)) for i in range(2)}
    save_file(tensors, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    (tmp_path / "config.json").write_text((src / "config.json").read_text())
    model = pretrained.load(str(tmp_path), run_cfg())[0].eval()
    idx = inputs()[1]
    torch.testing.assert_close(full_logits(model, idx), hf_logits(theirs, idx), rtol=0, atol=TOL)


def test_greedy_generation_gives_transformers_tokens(tied):
    path, theirs = tied
    model = pretrained.load(str(path), run_cfg())[0].eval()
    prompt = torch.tensor([[5, 17, 42, 8]])
    ours = generate(model, prompt, 20, top_k=1)  # top_k=1 samples the argmax: greedy
    with torch.no_grad():
        ref = theirs.generate(prompt, max_new_tokens=20, do_sample=False, pad_token_id=0)
    assert ours.tolist() == ref.tolist()


def test_a_shorter_block_size_crops_the_positions(tied):
    path, theirs = tied
    model = pretrained.load(str(path), run_cfg(block_size=8))[0].eval()
    assert model.transformer.wpe.weight.shape == (8, 48)
    idx = inputs()[0]
    torch.testing.assert_close(full_logits(model, idx), hf_logits(theirs, idx), rtol=0, atol=TOL)


# ----------------------------------------------------------------------------- the graft


def test_the_graft_starts_as_the_loaded_model_and_learns_its_way_out(tied):
    path, theirs = tied
    model = pretrained.load(str(path), run_cfg(**GRAFT))[0]
    assert pretrained.graft_caveats(model.config) == []
    model.eval()
    for idx in inputs():
        torch.testing.assert_close(full_logits(model, idx), hf_logits(theirs, idx), rtol=0, atol=TOL)
    model.train()
    opt = configure_optimizers(model, 0.0, 1e-3, (0.9, 0.95), "cpu", curvature_lr_mult=10.0)
    x, y = inputs()[1], torch.roll(inputs()[1], -1, dims=1)
    losses = []
    for _ in range(8):
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert model.kappas().abs().min() > 0, "every κ left 0"
    assert all(b.share.abs().min() > 0 for b in model.transformer.h), "every share α left 0"


def test_at_share_zero_kappa_has_no_gradient_and_the_share_has_one(tied):
    """Why a graft from κ = 0 learns: α gets the first gradient (the function does not depend on κ while α = 0)."""
    model = pretrained.load(str(tied[0]), run_cfg(**GRAFT))[0]
    _, loss = model(inputs()[1], torch.roll(inputs()[1], -1, dims=1))
    loss.backward()
    assert all(c.raw.grad.abs().max() == 0 for c in model.curvature)
    assert all(b.share.grad.abs().min() > 0 for b in model.transformer.h)


@pytest.mark.parametrize("over, reason", [
    (dict(curvature="free", curvature_init=0.0, reference="prev_token", residual="tangent"), "full weight"),
    # at α = 0 only the clamp separates κ ≠ 0 from GPT-2: large for GPT-2's large stream, here
    # reached with a large |κ|
    (dict(curvature="free", curvature_init=-50.0, reference="prev_token", residual="tangent", reference_share=True),
     "κ starts at -50.0"),
])
def test_a_curved_model_that_is_not_a_graft_starts_elsewhere_and_says_why(tied, over, reason):
    path, theirs = tied
    model = pretrained.load(str(path), run_cfg(**over))[0].eval()
    assert any(reason in c for c in pretrained.graft_caveats(model.config))
    idx = inputs()[1]
    assert (full_logits(model, idx) - hf_logits(theirs, idx)).abs().max() > 100 * TOL


def test_reference_share_scales_the_reference_point_and_at_one_is_the_plain_reference():
    """α = 1 is prev_token itself, in every block, whatever κ (a test of the share that does not need GPT-2)."""
    torch.manual_seed(0)
    base = dict(block_size=16, vocab_size=37, n_layer=2, n_head=2, n_embd=16, curvature="hyperbolic",
                curvature_init=-0.3, reference="prev_token", residual="tangent")
    plain, shared = GPT(GPTConfig(**base)).double(), GPT(GPTConfig(**base, reference_share=True)).double()
    shared.load_state_dict(plain.state_dict(), strict=False)
    with torch.no_grad():
        for b in shared.transformer.h:
            b.share.fill_(1.0)
    idx = torch.randint(0, 37, (2, 16), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(full_logits(shared, idx), full_logits(plain, idx), rtol=0, atol=1e-12)


@pytest.mark.parametrize("over", [dict(curvature="euclidean"), dict(curvature="free", reference="origin",
                                                                    residual="mobius")])
def test_reference_share_without_a_reference_point_is_refused(over):
    with pytest.raises(ValueError, match="reference_share scales the reference point"):
        GPTConfig(**over, reference_share=True)


# ----------------------------------------------------------------------------- export


def ours_model(seed=0, **over):
    torch.manual_seed(seed)
    cfg = dict(block_size=32, vocab_size=61, n_layer=2, n_head=2, n_embd=32, curvature="euclidean") | over
    model = GPT(GPTConfig(**cfg)).eval()
    with torch.no_grad():  # random LayerNorms and biases, so that none of them can be lost unnoticed
        for name, p in model.named_parameters():
            if "ln" in name or name.endswith("bias"):
                p.copy_(torch.randn_like(p) * 0.3)
    return model


@pytest.mark.parametrize("over", [dict(bias=True), dict(bias=False, mlp="gelu_tanh"), dict(tie_embeddings=False)])
def test_export_opens_in_transformers_with_the_same_logits_and_round_trips(tmp_path, over):
    model = ours_model(**over)
    pretrained.export(model, str(tmp_path))
    theirs = transformers.GPT2LMHeadModel.from_pretrained(str(tmp_path)).eval()
    back = pretrained.load(str(tmp_path), run_cfg())[0].eval()
    for idx in (torch.randint(0, 61, (2, 32), generator=torch.Generator().manual_seed(4)),):
        ours = full_logits(model, idx)
        torch.testing.assert_close(hf_logits(theirs, idx), ours, rtol=0, atol=TOL)
        # the same function: exactly when every tensor maps to one of ours; a bias=False model comes back with
        # zero biases, and a matmul with a zero bias may round differently
        torch.testing.assert_close(full_logits(back, idx), ours, rtol=0, atol=0 if over.get("bias", True) else TOL)
    sd = back.state_dict()
    for k, v in model.state_dict().items():
        assert torch.equal(sd[k], v), k


def test_a_curved_model_does_not_export_and_nothing_is_written(tmp_path):
    model = ours_model(curvature="hyperbolic", curvature_init=-0.05)
    with pytest.raises(RunError, match="cannot export as GPT-2: curvature='hyperbolic' \\(GPT-2 has 'euclidean'\\)"):
        pretrained.export(model, str(tmp_path / "hf"))
    assert not (tmp_path / "hf").exists()


# ----------------------------------------------------------------------------- through train.py, sample.py, export.py


@pytest.fixture(scope="module")
def exported_char_run(tmp_path_factory, char_data):
    """A character model trained by train.py and exported by export.py, with its vocabulary."""
    out = tmp_path_factory.mktemp("run")
    train.main(tiny_args(char_data, out, curvature="euclidean", dropout=0.0, max_iters=10))
    r = subprocess.run([sys.executable, os.path.join(ROOT, "export.py"), str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out, out / "hf"


def test_fine_tuning_starts_from_the_exported_models_loss(tmp_path, char_data, exported_char_run):
    out, hf = exported_char_run
    pre = torch.load(out / "ckpt.pt", weights_only=True)["val_loss"]
    for name, over in (("euclid", {"curvature": "euclidean"}), ("graft", GRAFT)):
        # the sizes in tiny_args are the checkpoint's: setting them to the same values is allowed
        summary = train.main(tiny_args(char_data, tmp_path / name, init_from=str(hf), dropout=0.0, max_iters=3,
                                       eval_interval=3, **over))
        with open(tmp_path / name / "metrics.jsonl") as f:
            first = next(json.loads(line) for line in f if "val/loss" in json.loads(line))
        assert first["iter"] == 0 and abs(first["val/loss"] - pre) <= 1e-5 * pre, name
        assert summary["iter_num"] == 3
    # resuming takes the sizes from the checkpoint: a fine-tune's config need not name them (train.py's defaults
    # are 4 × 128, the checkpoint's 2 × 32)
    args = tiny_args(char_data, tmp_path / "graft", init_from="resume", dropout=0.0, max_iters=5, eval_interval=5,
                     **GRAFT)
    assert train.main([a for a in args if not a.startswith(("--n_layer", "--n_head", "--n_embd"))])["iter_num"] == 5


def test_eval_only_measures_a_pretrained_models_loss_and_writes_no_run(tmp_path, char_data, exported_char_run):
    """What config/eval_gpt2*.py do: init_from a pretrained model, eval_only, no training."""
    out, hf = exported_char_run
    pre = torch.load(out / "ckpt.pt", weights_only=True)["val_loss"]
    summary = train.main(tiny_args(char_data, tmp_path / "eval", init_from=str(hf), eval_only=True,
                                   curvature="euclidean"))
    assert summary["iter_num"] == 0 and abs(summary["val_loss"] - pre) <= 1e-5 * pre
    assert not (tmp_path / "eval" / "ckpt.pt").exists()


def test_sample_generates_from_a_local_hf_checkpoint(exported_char_run):
    _, hf = exported_char_run
    texts = sample.sample(configure(sample.DEFAULTS, [f"--init_from={hf}", "--start=All:", "--num_samples=2",
                                                      "--max_new_tokens=20", "--device=cpu"]))
    assert len(texts) == 2 and all(t.startswith("All:") and len(t) == 24 for t in texts)


def test_finetune_and_eval_configs_load_gpt2_small_shaped_options():
    gpt2 = {"n_layer": 12, "n_head": 12, "n_embd": 768, "block_size": 1024, "vocab_size": 50257, "bias": True,
            "mlp": "gelu_tanh", "tie_embeddings": True, "pos_embedding": "learned", "norm": "layernorm",
            "qk_norm": False, "logit_softcap": 0.0, "attn_scale": 0.0}
    for name in ("finetune_shakespeare", "finetune_shakespeare_curved", "eval_gpt2", "eval_gpt2_medium",
                 "eval_gpt2_large", "eval_gpt2_xl"):
        explicit = set()
        cfg = configure(train.DEFAULTS, [os.path.join(ROOT, "config", f"{name}.py")], explicit)
        args = pretrained.merge_args(gpt2, cfg, explicit, train.DEFAULTS)
        assert pretrained.graft_caveats(GPTConfig(**args)) == [], name
        assert cfg["init_from"] in pretrained.HUB_NAMES


# ----------------------------------------------------------------------------- bad input: one line each


def one_line(msg):
    assert msg.startswith("error: ") and "\n" not in msg and "Traceback" not in msg, msg
    return msg


def test_offline_without_the_cache_says_what_to_download_and_writes_nothing(tmp_path, char_data):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"))
    args = tiny_args(char_data, tmp_path / "out", init_from="gpt2")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), *args], capture_output=True, text=True,
                       env=env, cwd=ROOT)
    assert r.returncode == 1
    msg = one_line(r.stderr.strip())
    assert "hf download openai-community/gpt2 config.json model.safetensors" in msg
    assert str(tmp_path / "hf_home") in msg
    assert not (tmp_path / "out").exists()


def test_a_directory_without_weights_is_one_line(tmp_path, char_data):
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text("{}")
    msg = one_line(run_error(tiny_args(char_data, tmp_path / "out", init_from=str(tmp_path / "hf"))))
    assert "has no model.safetensors" in msg


def test_a_checkpoint_of_another_architecture_is_one_line(tmp_path, char_data, tied):
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 64}))
    (tmp_path / "hf" / "model.safetensors").write_bytes((tied[0] / "model.safetensors").read_bytes())
    msg = one_line(run_error(tiny_args(char_data, tmp_path / "out", init_from=str(tmp_path / "hf"))))
    assert "holds a llama checkpoint" in msg


def test_a_size_override_is_an_error_and_dropout_is_not(tied):
    path, _ = tied
    with pytest.raises(ConfigError, match="n_layer=4 but the pretrained checkpoint has n_layer=2"):
        pretrained.load(str(path), run_cfg(), explicit={"n_layer"})
    with pytest.raises(ConfigError, match="block_size=64 is longer than the checkpoint's 32 positions"):
        pretrained.load(str(path), run_cfg(block_size=64))
    assert pretrained.load(str(path), run_cfg(dropout=0.2))[0].config.dropout == 0.2


def test_gpt2_bpe_weights_on_character_data_is_one_line(tmp_path, char_data, tied):
    msg = one_line(run_error([a for a in tiny_args(char_data, tmp_path / "out", init_from=str(tied[0]))
                              if not a.startswith(("--n_layer", "--n_head", "--n_embd"))]))
    assert "cannot fine-tune" in msg and "GPT-2 BPE" in msg and "character vocabulary" in msg


def test_an_unknown_init_from_is_one_line(tmp_path, char_data):
    msg = one_line(run_error(tiny_args(char_data, tmp_path / "out", init_from="gpt3")))
    assert "init_from='gpt3' is not 'scratch', 'resume', one of gpt2" in msg


def test_shakespeare_prepare_writes_gpt2_tokens_that_train_py_reads(tmp_path, gpt2_offline):
    text = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 20
    (tmp_path / "input.txt").write_text(text)
    r = subprocess.run([sys.executable, os.path.join(ROOT, "data/shakespeare/prepare.py"), "--input",
                        str(tmp_path / "input.txt"), "--out_dir", str(tmp_path / "d")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    split = int(len(text) * 0.9)
    train_ids = np.fromfile(tmp_path / "d" / "train.bin", dtype=np.uint16).tolist()
    val_ids = np.fromfile(tmp_path / "d" / "val.bin", dtype=np.uint16).tolist()
    assert gpt2_offline.decode(train_ids) == text[:split] and gpt2_offline.decode(val_ids) == text[split:]
    data = open_dataset(str(tmp_path / "d"), "shakespeare", 8, 2, 0, 1, 0, 1, 0, False)
    assert data.meta is None and data.vocab == {"tokenizer": "gpt2", "size": 50257}
