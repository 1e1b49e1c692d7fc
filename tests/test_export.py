"""export.py: any kappaGPT model leaves the repo as a Hugging Face directory that transformers opens (plain GPT-2 where
GPT-2 can express it, the repo's own code otherwise), with its tokenizer; the same logits and greedy tokens; bad
input is one line and writes nothing."""
import json
import os

import pytest
import torch

import export
from generate import generate
from model import GPT, GPTConfig

transformers = pytest.importorskip("transformers")

CHARS = "\n !',.:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyzé"
MODELS = {  # every path of the model code: a curved block with the modern switches, nGPT, GPT-2's shape
    "curved": dict(curvature="hyperbolic", curvature_init=-0.5, reference="prev_token", residual="tangent",
                   pos_embedding="rope", norm="rmsnorm", qk_norm=True, mlp="relu2", smear=True, logit_softcap=15.0,
                   tie_embeddings=False),
    "mixed": dict(curvature="free", curvature_init=0.0, reference="prev_token", residual="mobius"),
    "ngpt": dict(block="ngpt", curvature="euclidean", bias=False, tie_embeddings=False, zero_init_proj=False,
                 pos_embedding="rope"),
    "gpt2": dict(curvature="euclidean", bias=True),
}


def checkpoint(kind, vocab=len(CHARS), encoding="chars"):
    """A checkpoint as train.py writes one (model_args, weights, vocabulary), of a small random model whose every
    parameter is away from its init (κ too), so that nothing lost in the export goes unnoticed."""
    args = dict(block_size=32, vocab_size=vocab, n_layer=2, n_head=2, n_embd=32, dropout=0.0) | MODELS[kind]
    torch.manual_seed(0)
    model = GPT(GPTConfig(**args))
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(torch.randn_like(p) * (0.05 if p.dim() > 1 else 0.2))
    model.after_step()  # nGPT's weights back on the sphere
    itos = {i: c for i, c in enumerate(CHARS)} if encoding == "chars" else {i: chr(i) for i in range(256)}
    meta = {"vocab_size": vocab, "itos": itos, "stoi": {c: i for i, c in itos.items()}, "encoding": encoding}
    return {"model_args": args, "model": model.state_dict(), "meta": meta,
            "vocab": {"tokenizer": "chars", "size": vocab}}, model.eval()


def load(path):
    model = transformers.AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True).eval()
    return model, transformers.AutoTokenizer.from_pretrained(path, trust_remote_code=True)


@pytest.mark.parametrize("kind", list(MODELS))
def test_an_export_computes_the_repos_logits_and_greedy_tokens(tmp_path, kind):
    ckpt, ours = checkpoint(kind)
    fmt = export.export(ckpt, str(tmp_path / "hf"))
    assert fmt == ("gpt2" if kind == "gpt2" else "kappagpt")
    theirs, tok = load(str(tmp_path / "hf"))
    idx = tok(["First Citizen:é", "ROMEO: hear me!"], return_tensors="pt").input_ids  # equal lengths: no padding
    assert idx.shape == (2, 15)
    with torch.no_grad():
        want = ours(idx, idx)[0]
        got = theirs(idx).logits
    if kind == "gpt2":  # transformers' own GPT-2 code: other kernels, float32 rounding of logits of size ~10
        torch.testing.assert_close(got, want, rtol=0, atol=64 * torch.finfo(torch.float32).eps * want.abs().max())
    else:  # the repo's code, the same weights: the same numbers
        assert torch.equal(got, want)
    prompt = idx[:1, :8]
    with torch.no_grad():
        greedy = generate(ours, prompt, 12, top_k=1)
        out = theirs.generate(prompt, max_new_tokens=12, do_sample=False)
    assert torch.equal(out, greedy)
    assert tok.decode(out[0][:8]) == "First Ci"


def test_a_byte_vocabulary_round_trips_utf8(tmp_path):
    ckpt, _ = checkpoint("mixed", vocab=256, encoding="bytes")
    export.export(ckpt, str(tmp_path / "hf"))
    _, tok = load(str(tmp_path / "hf"))
    text = "def f(x):\n    return 'λ' + x  # é\n"
    ids = tok(text).input_ids
    assert ids == list(text.encode("utf-8"))  # as data/pycode/prepare.py encodes
    assert tok.decode(ids) == text
    assert tok.decode(ids[:-3] + [0xCE]) == text[:-2] + "\ufffd"  # "é\n" (3 bytes) cut to half a λ: a replacement


def test_a_character_outside_the_vocabulary_is_an_error(tmp_path):
    ckpt, _ = checkpoint("mixed")
    export.export(ckpt, str(tmp_path / "hf"))
    _, tok = load(str(tmp_path / "hf"))
    with pytest.raises(ValueError, match="'λ' is not in this model's vocabulary"):
        tok("λ")


def test_the_exported_code_is_the_repos_with_relative_imports(tmp_path):
    ckpt, _ = checkpoint("curved")
    export.export(ckpt, str(tmp_path / "hf"))
    for name in ("model.py", "geometry.py", "fused_maps.py", "modeling_kappagpt.py"):
        text = (tmp_path / "hf" / name).read_text()
        source = open(os.path.join(os.path.dirname(export.__file__),
                                   "hf_model.py" if name.startswith("modeling") else name)).read()
        assert len(text.splitlines()) == len(source.splitlines())  # line for line: only imports differ
        for line in text.splitlines():
            for mod in ("model", "geometry", "fused_maps"):
                assert not line.startswith((f"import {mod}", f"from {mod} import")), (name, line)
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["model_type"] == "kappagpt" and config["kappagpt"]["curvature"] == "hyperbolic"
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_kappagpt.KappaGPTForCausalLM"


def test_padding_is_refused_and_labels_give_the_mean_next_token_loss(tmp_path):
    ckpt, ours = checkpoint("mixed")
    export.export(ckpt, str(tmp_path / "hf"))
    theirs, _ = load(str(tmp_path / "hf"))
    idx = torch.randint(0, len(CHARS), (2, 10), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        loss = theirs(idx, labels=idx).loss
        _, want = ours(idx[:, :-1].contiguous(), idx[:, 1:].contiguous())
    torch.testing.assert_close(loss, want, rtol=4 * torch.finfo(torch.float32).eps, atol=0)
    with pytest.raises(ValueError, match="does not support padding"):
        theirs(idx, attention_mask=torch.tensor([[1] * 10, [1] * 8 + [0] * 2]))


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, char_data):
    import train
    from conftest import tiny_args

    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(SystemExit, match=r"no checkpoint at .*ckpt.pt: is .* the out_dir of a training run\?"):
        export.main([str(run)])
    assert not (run / "hf").exists()
    train.main(tiny_args(char_data, run, max_iters=2, eval_interval=2, overwrite=True))
    (run / "hf").mkdir()
    (run / "hf" / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit, match="already exists: pass --overwrite"):
        export.main([str(run)])
    assert os.listdir(run / "hf") == ["keep.txt"]
    export.main([str(run), "--overwrite"])
    assert not (run / "hf" / "keep.txt").exists() and (run / "hf" / "model.safetensors").exists()
    ckpt = torch.load(run / "ckpt.pt", weights_only=False)
    ckpt["model_args"]["block"] = "transformer-xl"
    torch.save(ckpt, run / "ckpt.pt")
    with pytest.raises(SystemExit, match=r"^error: .*block='transformer-xl'"):
        export.main([str(run), "--to", str(tmp_path / "other")])
    assert not (tmp_path / "other").exists()
    assert [p for p in os.listdir(tmp_path) if p.startswith(".")] == []  # no temporary directory left behind


def test_a_gpt2_bpe_model_takes_gpt2s_tokenizer(tmp_path, gpt2_offline):
    import loader

    ckpt, ours = checkpoint("mixed", vocab=50257)
    ckpt["meta"], ckpt["vocab"] = None, {"tokenizer": "gpt2", "size": 50257}
    export.export(ckpt, str(tmp_path / "hf"))
    theirs, tok = load(str(tmp_path / "hf"))
    text = "Hello world, how are you?"
    ids = tok(text).input_ids
    assert ids == loader.gpt2_encoding().encode_ordinary(text)  # the tokens train.py's data were made of
    assert tok.decode(ids) == text
    idx = torch.tensor([ids])
    with torch.no_grad():
        assert torch.equal(theirs(idx).logits, ours(idx, idx)[0])


def test_an_export_trains_on_with_init_from_as_it_was_saved(tmp_path, char_data):
    """init_from=<a kappaGPT export> is the exported model itself (the same evaluation loss), trains on, and a model
    option set to another value than the export's is one line."""
    import train
    from conftest import run_error, tiny_args

    curved = dict(curvature="free", curvature_init=0.0, dropout=0.0, reference="prev_token", residual="tangent")
    run = tmp_path / "run"
    trained = train.main(tiny_args(char_data, run, max_iters=10, **curved))
    export.main([str(run), "--to", str(tmp_path / "hf")])
    same = train.main(tiny_args(char_data, tmp_path / "eval", init_from=tmp_path / "hf", eval_only=True, **curved))
    assert same["val_loss"] == pytest.approx(trained["val_loss"], rel=16 * torch.finfo(torch.float32).eps)
    on = train.main(tiny_args(char_data, tmp_path / "on", init_from=tmp_path / "hf", max_iters=4, **curved))
    assert on["iter_num"] == 4 and on["val_loss"] < same["val_loss"] + 0.5
    msg = run_error(tiny_args(char_data, tmp_path / "bad", init_from=tmp_path / "hf", **(curved | {"n_layer": 3})))
    assert msg.startswith("error: n_layer=3 but the exported model has n_layer=2: a kappaGPT export is trained as it "
                          "was saved") and "\n" not in msg
    assert not (tmp_path / "bad").exists()
