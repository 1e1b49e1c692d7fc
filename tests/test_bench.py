"""bench.py runs end to end at a tiny size and prints honest tables (speed is measured there, not asserted)."""
import json
import re

import bench
from model import GPTConfig

TINY = ["--n_layer=1", "--n_head=2", "--n_embd=32", "--block_size=16", "--batch_size=4", "--warmup=1", "--rounds=2",
        "--steps=1"]


def table_rows(text):
    return [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()
            if line.startswith("|") and not line.startswith("|-")]


def test_parse_spec():
    assert bench.parse_spec("euclidean") == {"curvature": "euclidean"}
    assert bench.parse_spec("hyperbolic:window:mobius:attention=distance:reference_window=2") == {
        "curvature": "hyperbolic", "reference": "window", "residual": "mobius", "attention": "distance",
        "reference_window": 2}


def test_the_blocks_timed_by_default_are_the_baseline_then_the_default_model():
    default = GPTConfig()
    assert bench.parse_spec(bench.CONFIGS[0]) == {"curvature": "euclidean"}
    assert bench.parse_spec(bench.CONFIGS[1]) == {k: getattr(default, k) for k in
                                                  ("curvature", "reference", "residual", "curvature_init")}


def test_model_table_has_ratios_to_euclidean(capsys):
    rows = bench.main(TINY + ["--configs", "euclidean", "hyperbolic:prev_token:tangent", "--peak_flops=1e12"])
    assert [r[0] for r in rows] == ["euclidean", "hyperbolic:prev_token:tangent"]
    out = capsys.readouterr().out
    header, euclid, curved = table_rows(out)
    assert header[:4] == ["configuration", "ms/iter", "tokens/s", "speed vs euclid"] and header[-1] == "MFU"
    assert euclid[3] == "1.00" and euclid[5] == "1.00"
    ms, tps = float(curved[1]), float(curved[2].replace(",", ""))
    assert abs(ms / 1000 * tps - 4 * 16) < 0.05 * 64  # tokens/s is batch × block per step time
    assert float(curved[3]) > 0 and float(curved[4]) > 0 and re.fullmatch(r"\d+\.\d%", curved[6])


def test_ops_and_generate_tables(capsys):
    bench.main(TINY + ["--ops"])
    rows = table_rows(capsys.readouterr().out)
    names = [r[0] for r in rows[1:]]
    assert "mobius_add" in names and "pairwise_dist [B,H,T,T]" in names and "x + y (reference)" in names
    assert all(float(r[1]) > 0 and float(r[2]) > 0 for r in rows[1:])
    bench.main(TINY + ["--generate", "--configs", "euclidean", "hyperbolic"])
    rows = table_rows(capsys.readouterr().out)
    assert [r[0] for r in rows[1:]] == ["euclidean", "hyperbolic"]
    assert all(r[3].endswith("x") for r in rows[1:])


def test_memory_table_has_a_slope_and_batch_sizes_that_fit(capsys):
    rows = bench.main(TINY + ["--memory", "--batch_sizes", "1", "2", "4", "--configs", "euclidean", "hyperbolic"])
    assert [r["name"] for r in rows] == ["euclidean", "hyperbolic"]
    for r in rows:
        assert r["resident"] > 0 and r["peaks"][1] < r["peaks"][4] and r["slope"] > 0
        assert r["fits"][24] < r["fits"][40] < r["fits"][80]
    # the resident part is the parameters and AdamW's two moments: 3 × 4 bytes per parameter (+ Adam's step counts)
    n_params = sum(p.numel() for p in bench.GPT(bench.GPTConfig(
        n_layer=1, n_head=2, n_embd=32, block_size=16, vocab_size=65, bias=False)).parameters())
    assert abs(rows[0]["resident"] - 12 * n_params) < 1024
    header = table_rows(capsys.readouterr().out)[0]
    assert header[-1] == "batch in 24 / 40 / 80 GiB" and "step, batch 4" in header


def test_json_rows_with_muon_are_the_table_rows(tmp_path, capsys):
    path = tmp_path / "bench.json"
    rows = bench.main(TINY + ["--configs", "euclidean:qk_norm=True", "zero:prev_token:tangent:attn_scale=0.5",
                              "--optimizer", "muon", "--json", str(path)])
    saved = json.loads(path.read_text())
    assert [(r["name"], r["ms"]) for r in saved["rows"]] == [(r[0], r[1]) for r in rows]
    assert saved["settings"]["optimizer"] == "muon"


def test_each_configuration_steps_with_the_optimizer_its_spec_names(monkeypatch, capsys):
    built = []
    real = bench.configure_optimizers

    def spy(model, *args, optimizer="adamw", **kw):
        built.append((model.config.block, optimizer))
        return real(model, *args, optimizer=optimizer, **kw)

    clipped = []
    real_clip = bench.torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(bench, "configure_optimizers", spy)
    monkeypatch.setattr(bench.torch.nn.utils, "clip_grad_norm_",
                        lambda params, norm: clipped.append(norm) or real_clip(params, norm))
    ngpt = ("euclidean:block=ngpt:bias=False:tie_embeddings=False:zero_init_proj=False:optimizer=adamw:"
            "grad_clip=1.0")
    rows = bench.main(TINY + ["--configs", "euclidean", ngpt, "--optimizer", "muon"])
    assert built == [("gpt", "muon"), ("ngpt", "adamw")]  # --optimizer, unless the spec names one
    assert clipped and set(clipped) == {1.0}  # only the nGPT recipe clips
    assert [r[0] for r in rows] == ["euclidean", ngpt]
