"""Ready for GPT-2 scale without a GPU: every FineWeb config's model at full size takes one real training step on
the CPU under bf16 autocast, and torch.compile captures the training forward as one graph in every mode, with no
recompilation while κ changes. Slow (about three minutes on 2 cores): `python -m pytest -m "not slow"` skips them."""
import math

import pytest
import torch
import torch._dynamo
import torch._dynamo.testing

import train
from conftest import ROOT, make, tokens
from configurator import configure
from model import GPT, GPTConfig
from runtime import MODEL_KEYS, configure_optimizers

pytestmark = pytest.mark.slow

FINEWEB_CONFIGS = ["train_fineweb.py", "train_fineweb_euclid.py", "train_fineweb_small.py",
                   "train_fineweb_small_euclid.py", "train_fineweb_speedrun.py", "train_fineweb_speedrun_euclid.py"]


@pytest.mark.parametrize("name", FINEWEB_CONFIGS)
def test_full_size_training_step_on_cpu(name):
    cfg = configure(train.DEFAULTS, [f"{ROOT}/config/{name}"])
    config = GPTConfig(**{k: cfg[k] for k in MODEL_KEYS}, vocab_size=50304)
    torch.manual_seed(0)
    model = GPT(config)
    T = config.block_size
    assert T == 1024 and (config.n_layer, config.n_embd) in ((12, 768), (6, 384))
    opt = configure_optimizers(model, cfg["weight_decay"], cfg["learning_rate"], (cfg["beta1"], cfg["beta2"]), "cpu",
                               cfg["curvature_lr_mult"], cfg["optimizer"])
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randint(0, 50257, (2, 1, T), generator=gen)  # micro-batch 1 at full context
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, loss = model(x, y)
    loss.backward()
    assert math.isfinite(loss.item())
    if config.norm == "layernorm":  # the GPT-2 block starts close to uniform over the 50304 outputs
        assert abs(loss.item() - math.log(50304)) < 0.5, loss.item()
    else:  # the speedrun's block (normalised tied embedding, zero-init blocks) starts by predicting the input token:
        assert 14 < loss.item() < 17, loss.item()  # its ModernArch record logs val_loss 16.0 at step 0
    for n, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), n
    if config.curvature != "euclidean":
        assert all(p.grad.abs().sum() > 0 for p in model.curvature.parameters())
    before = model.kappas().detach().clone()
    opt.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    if config.curvature != "euclidean":
        assert not torch.equal(model.kappas().detach(), before)  # κ took the step


COMPILE_MODES = [
    dict(curvature="euclidean"),
    dict(curvature="zero", reference="prev_token", residual="tangent"),
    dict(curvature="hyperbolic", reference="prev_token", residual="tangent"),
    dict(curvature="hyperbolic", reference="prev_token", residual="mobius", geometry_checkpoint=True),
    dict(curvature="spherical", reference="window", residual="mobius", attention="distance", aggregate="midpoint"),
    dict(curvature="free", reference="origin", residual="mobius", curvature_per_head=False),
    dict(curvature="fixed", reference="prev_token", residual="tangent", curvature_shared=True),
]


@pytest.mark.parametrize("mode", COMPILE_MODES, ids=["-".join(str(v) for v in m.values()) for m in COMPILE_MODES])
def test_training_step_compiles_to_one_graph_while_kappa_changes(mode):
    torch._dynamo.reset()
    mode = dict(mode)
    model = make(mode.pop("curvature"), mode.pop("reference", "prev_token"), mode.pop("residual", "mobius"), **mode)
    counter = torch._dynamo.testing.CompileCounterWithBackend("aot_eager")  # traces forward and backward
    compiled = torch.compile(model, backend=counter, fullgraph=True)  # fullgraph: a graph break is an error
    opt = configure_optimizers(model, 0.0, 1e-2, (0.9, 0.95), "cpu")
    kappas = []
    for step in range(3):
        _, loss = compiled(tokens(seed=step), tokens(seed=10 + step))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        kappas.append(model.kappas().detach().clone())
    assert counter.frame_count == 1, f"{counter.frame_count} graphs: recompiled"
    if model.curvature is not None and any(p.requires_grad for p in model.curvature.parameters()):
        assert not torch.equal(kappas[0], kappas[-1])  # κ moved, and the graph stayed
