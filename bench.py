"""
Measure what curvature costs, on whatever device is here (no CUDA calls on a CPU).

    python bench.py                                   # CPU Shakespeare-char size: Euclidean vs the curved blocks, eager
    python bench.py --compile                         # the same, eager and torch.compile
    python bench.py --configs euclidean zero hyperbolic:prev_token:mobius --peak_flops 989e12
    python bench.py --ops                             # microbenchmarks of the geometry functions
    python bench.py --generate                        # sampling tokens/s with and without the cache
    python bench.py --memory --batch_sizes 1 2 4      # peak memory of a training step per micro-batch size

Timings are forward + backward + AdamW step on random tokens, after warm-up, with the configurations
alternating round by round so drift in the machine hits all of them alike; the table reports the median.
"""
import argparse
import ast
import json
import os
import statistics
import sys
import time

import torch
from tqdm import tqdm

from generate import generate
import geometry as geo
from model import GPT, GPTConfig
from runtime import configure_optimizers



# the blocks timed unless --configs names others: the baseline, then GPTConfig's default block, then the ablations
CONFIGS = ["euclidean", "free:prev_token:tangent:curvature_init=0.0", "zero:prev_token:tangent",
           "hyperbolic:prev_token:tangent", "hyperbolic:prev_token:mobius"]
# keys of a spec that set how the step trains, not the model: each configuration is timed with its own recipe
STEP_KEYS = ("optimizer", "grad_clip")


def parse_spec(spec):
    """'curvature[:reference[:residual]][:key=value...]' → GPTConfig overrides (and STEP_KEYS), e.g. 'euclidean',
    'hyperbolic:prev_token:mobius', 'hyperbolic:prev_token:tangent:attention=distance:aggregate=midpoint',
    'euclidean:block=ngpt:optimizer=adamw:grad_clip=1.0'."""
    out = {}
    positional = ["curvature", "reference", "residual"]
    for part in spec.split(":"):
        if "=" in part:
            key, value = part.split("=", 1)
            try:
                out[key] = ast.literal_eval(value)  # numbers and True/False
            except (ValueError, SyntaxError):
                out[key] = value

        else:
            out[positional.pop(0)] = part
    return out


def make_model(args, spec):
    """The model of one configuration spec at the size in args, seeded (the same weights for every spec's shared
    parts), on args.device; spherical specs get κ₀ = |curvature_init|."""
    over = {k: v for k, v in parse_spec(spec).items() if k not in STEP_KEYS}
    if over["curvature"] == "spherical":
        over["curvature_init"] = abs(args.curvature_init)
    base = dict(block_size=args.block_size, vocab_size=args.vocab_size, n_layer=args.n_layer, n_head=args.n_head,
                n_embd=args.n_embd, bias=False, dropout=0.0, curvature_init=args.curvature_init)
    torch.manual_seed(0)
    return GPT(GPTConfig(**{**base, **over})).to(args.device)


def weight_decay(model):
    """GPT-2's 0.1, or none for nGPT, which trains without it."""
    return 0.0 if model.config.block == "ngpt" else 0.1


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_memory(device, fn):
    """Peak bytes allocated during one call, above what was allocated before it: CUDA's allocator statistics,
    or on the CPU the profiler's allocation and free events replayed in time order."""
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    from torch.profiler import ProfilerActivity, profile

    sys.stderr.flush()
    saved_stderr = os.dup(2)  # the profiler's C++ side prints start/stop lines to fd 2; keep the table clean
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
                fn()
    finally:
        os.dup2(saved_stderr, 2)
        os.close(saved_stderr)
    events = sorted((e.time_range.start, e.self_cpu_memory_usage) for e in prof.events() if e.self_cpu_memory_usage)
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


def bench_models(args):
    device = args.device
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
    autocast = torch.autocast(device.split(":")[0], dtype=dtype, enabled=dtype != torch.float32)
    x = torch.randint(0, args.vocab_size, (args.batch_size, args.block_size), device=device)
    y = torch.randint(0, args.vocab_size, (args.batch_size, args.block_size), device=device)
    variants = []
    for spec in args.configs:
        for compiled in ([False, True] if args.compile else [False]):
            model = make_model(args, spec)
            recipe = {"optimizer": args.optimizer, "grad_clip": 0.0} | {k: v for k, v in parse_spec(spec).items()
                                                                        if k in STEP_KEYS}
            opt = configure_optimizers(model, weight_decay(model), 1e-4, (0.9, 0.95), device.split(":")[0],
                                       optimizer=recipe["optimizer"])
            fwd = torch.compile(model) if compiled else model

            def step(fwd=fwd, opt=opt, model=model, clip=recipe["grad_clip"]):
                with autocast:
                    _, loss = fwd(x, y)
                loss.backward()
                if clip > 0:  # the run's clipping, as train.py does it
                    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
                opt.step()
                model.after_step()  # a block's own step, as train.py runs it (nGPT's re-normalisation)
                opt.zero_grad(set_to_none=True)

            variants.append({"name": spec + (" +compile" if compiled else ""), "step": step, "model": model,
                             "times": []})
    for v in tqdm(variants, desc="warm-up (and compile)", leave=False):
        for _ in range(args.warmup):
            v["step"]()
        sync(device)
    for _ in tqdm(range(args.rounds), desc="timing rounds", leave=False):
        for v in variants:  # alternate, so slow drift in the machine hits every variant alike
            sync(device)
            t = time.perf_counter()
            for _ in range(args.steps):
                v["step"]()
            sync(device)
            v["times"].append((time.perf_counter() - t) / args.steps)
    tokens = args.batch_size * args.block_size
    ref = {}
    rows = []
    for v in variants:
        ms = statistics.median(v["times"]) * 1000
        key = "+compile" in v["name"]
        if v["name"].startswith("euclidean"):
            ref.setdefault(key, ms)  # the first Euclidean configuration is the reference
        mem = peak_memory(device, v["step"]) / 2**20
        mfu = v["model"].estimate_mfu(args.batch_size, ms / 1000, args.peak_flops) if args.peak_flops else None
        rows.append((v["name"], ms, tokens / (ms / 1000), mem, mfu, key))
    print(f"\n{args.n_layer} layers, {args.n_head} heads, {args.n_embd} wide, batch {args.batch_size} × "
          f"block {args.block_size}, {args.dtype}, device {device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; median of {args.rounds} rounds × {args.steps} steps")
    header = (f"| {'configuration':<44} | {'ms/iter':>8} | {'tokens/s':>9} | {'speed vs euclid':>15} | "
              f"{'peak MiB':>8} | {'mem vs euclid':>13} |")
    if args.peak_flops:
        header += "   MFU |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    mem_ref = {r[5]: r[3] for r in reversed(rows) if r[0].startswith("euclidean")}  # the first wins
    for name, ms, tps, mem, mfu, key in rows:
        speed = f"{ref[key] / ms:.2f}" if key in ref else "-"
        memr = f"{mem / mem_ref[key]:.2f}" if mem_ref.get(key) else "-"
        line = f"| {name:<44} | {ms:>8.1f} | {tps:>9,.0f} | {speed:>15} | {mem:>8.2f} | {memr:>13} |"
        if args.peak_flops:
            line += f" {mfu * 100:>4.1f}% |"
        print(line)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"settings": {k: v for k, v in vars(args).items() if k != "json"},
                       "rows": [dict(name=name, ms=ms, tokens_per_s=tps, peak_mib=mem)
                                for name, ms, tps, mem, *_ in rows]},
                      f, indent=1)
    return rows


def bench_ops(args):
    device = args.device
    B, T, H, D = args.batch_size, args.block_size, args.n_head, args.n_embd // args.n_head
    k = torch.full((H, 1), args.curvature_init, device=device, requires_grad=True)
    x = geo.project(geo.expmap0(torch.randn(B, T, H, D, device=device) * 0.3, k.detach()), k.detach())
    y = geo.project(geo.expmap0(torch.randn(B, T, H, D, device=device) * 0.3, k.detach()), k.detach())
    w = torch.softmax(torch.randn(B, H, T, T, device=device), -1)
    ops = {
        "mobius_add": lambda: geo.mobius_add(x, y, k), "expmap0": lambda: geo.expmap0(x, k),
        "logmap0": lambda: geo.logmap0(x, k), "expmap": lambda: geo.expmap(x, y, k),
        "logmap": lambda: geo.logmap(x, y, k), "dist": lambda: geo.dist(x, y, k),
        "project": lambda: geo.project(x, k),
        "pairwise_dist [B,H,T,T]": lambda: geo.pairwise_dist(x.transpose(1, 2), y.transpose(1, 2), k.view(H, 1, 1)),
        "gyromidpoint [B,H,T,T]": lambda: geo.gyromidpoint(x.transpose(1, 2), w, k.view(H, 1, 1)),
        "x + y (reference)": lambda: x + y,
    }
    print(f"\ngeometry ops on [{B}, {T}, {H}, {D}] float32, device {device}: median µs, forward and forward+backward")
    print(f"| {'op':<24} | {'forward µs':>10} | {'fwd+bwd µs':>10} |")
    print(f"|{'-' * 26}|{'-' * 12}|{'-' * 12}|")
    xs = [x, y, k]
    for name, fn in ops.items():
        times = {}
        for mode in ("fwd", "bwd"):
            samples = []
            for i in range(args.warmup + args.rounds * args.steps):
                for t in xs:
                    t.requires_grad_(mode == "bwd")
                sync(device)
                t0 = time.perf_counter()
                out = fn()
                if mode == "bwd":
                    out.sum().backward()
                sync(device)
                if i >= args.warmup:
                    samples.append(time.perf_counter() - t0)
            times[mode] = statistics.median(samples) * 1e6
        print(f"| {name:<24} | {times['fwd']:>10.1f} | {times['bwd']:>10.1f} |")
        for t in xs:
            t.grad = None


def bench_generate(args):
    """Decode tokens/s of GPT.generate at a block_size-token context: without the cache (every step a forward over
    the context), with it (one token per step, after the prompt's forward), and with the decode step compiled.
    The prompt's forward is not counted: the rate is that of the steps after it."""
    device = args.device
    n_new = min(args.new_tokens, args.block_size - 1)
    prompt = torch.randint(0, args.vocab_size, (1, args.block_size - n_new), generator=torch.Generator().manual_seed(0))
    prompt = prompt.to(device)
    ways = {"no cache": dict(use_cache=False), "cache": dict(use_cache=True)}
    rows = []
    for spec in tqdm(args.configs, desc="configurations", leave=False):
        model = make_model(args, spec).eval()
        runs = dict(ways, **({"cache + compile": dict(decode=torch.compile(model))} if args.compile else {}))
        rate = {}
        for name, kw in runs.items():
            generate(model, prompt, n_new, **kw)  # warm-up (and compile: the same shapes as the timed runs)
            times = {1: [], n_new: []}
            for _ in range(args.rounds):
                for n in times:  # the prompt and one token, then all: the difference is n_new − 1 decode steps
                    sync(device)
                    t = time.perf_counter()
                    generate(model, prompt, n, generator=torch.Generator(device).manual_seed(0), **kw)
                    sync(device)
                    times[n].append(time.perf_counter() - t)
            rate[name] = (n_new - 1) / (statistics.median(times[n_new]) - statistics.median(times[1]))
        rows.append((spec, rate))
    print(f"\ngenerate {n_new} tokens after a {prompt.size(1)}-token prompt (context {prompt.size(1)}–"
          f"{args.block_size - 1}), batch 1, {args.n_layer} layers, {args.n_head} heads, {args.n_embd} wide, device "
          f"{device}, torch {torch.__version__}, {torch.get_num_threads()} threads; decode tokens/s (the prompt's "
          f"forward not counted), medians of {args.rounds} runs")
    names = list(rows[0][1])
    header = f"| {'configuration':<32} | " + " | ".join(f"{n:>15}" for n in names) + " | cache speed-up |"
    header += " compiled vs eager | cached vs euclid (eager / compiled) |" if args.compile else " cached vs euclid |"
    print(header)
    print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|")
    best = "cache + compile" if args.compile else "cache"
    ref = {n: r[n] for spec, r in reversed(rows) if spec.startswith("euclidean") for n in names}  # the first wins
    for spec, r in rows:
        line = f"| {spec:<32} | " + " | ".join(f"{r[n]:>15,.0f}" for n in names)
        line += f" | {r['cache'] / r['no cache']:>13.1f}x |"
        if args.compile:
            line += f" {r[best] / r['cache']:>16.1f}x |"
        vs = " / ".join(f"{r[n] / ref[n]:.2f}" for n in names[1:]) if ref else "-"
        line += f" {vs:>{36 if args.compile else 16}} |"
        print(line)
    return rows


def bench_memory(args):
    """Peak memory of one training step (forward, backward, AdamW step) per micro-batch size: the resident part
    (parameters and AdamW's two moments, there after the first step) plus what the step itself allocates, which
    grows by a fixed amount per sequence. From the two, the largest micro-batch that fits a GPU's memory."""
    device = args.device
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
    autocast = torch.autocast(device.split(":")[0], dtype=dtype, enabled=dtype != torch.float32)
    sizes = sorted(set(args.batch_sizes))
    gen = torch.Generator().manual_seed(0)
    data = {B: torch.randint(0, args.vocab_size, (2, B, args.block_size), generator=gen).to(device) for B in sizes}
    rows = []
    for spec in tqdm(args.configs, desc="configurations", leave=False):
        model = make_model(args, spec)
        opt = configure_optimizers(model, weight_decay(model), 1e-4, (0.9, 0.95), device.split(":")[0])

        def step(B, model=model, opt=opt):
            with autocast:
                _, loss = model(*data[B])
            loss.backward()
            opt.step()
            model.after_step()
            opt.zero_grad(set_to_none=True)

        step(sizes[0])  # allocates AdamW's state, which then stays
        tensors = list(model.parameters()) + [t for s in opt.state_dict()["state"].values() for t in s.values()
                                              if torch.is_tensor(t)]
        resident = sum(t.numel() * t.element_size() for t in tensors)
        peaks = {B: peak_memory(device, lambda B=B: step(B)) for B in sizes}
        slope = (peaks[sizes[-1]] - peaks[sizes[0]]) / (sizes[-1] - sizes[0]) if len(sizes) > 1 else float("nan")
        fits = {}
        for gib in (24, 40, 80):
            room = gib * 2**30 - resident - (peaks[sizes[0]] - slope * sizes[0])
            fits[gib] = int(room // slope) if slope > 0 else None
        rows.append({"name": spec, "resident": resident, "peaks": peaks, "slope": slope, "fits": fits})
        del model, opt
    print(f"\none training step, {args.n_layer} layers, {args.n_head} heads, {args.n_embd} wide, "
          f"block {args.block_size}, vocab {args.vocab_size}, {args.dtype}, device {device}, "
          f"torch {torch.__version__}; MiB")
    header = (f"| {'configuration':<32} | params + AdamW | " + " | ".join(f"step, batch {B}" for B in sizes) +
              " | per sequence | batch in 24 / 40 / 80 GiB |")
    print(header)
    print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|")
    for r in rows:
        fits = " / ".join("-" if r["fits"][g] is None else str(r["fits"][g]) for g in (24, 40, 80))
        print(f"| {r['name']:<32} | {r['resident'] / 2**20:>13,.0f} | " +
              " | ".join(f"{r['peaks'][B] / 2**20:>{len(f'step, batch {B}')},.0f}" for B in sizes) +
              f" | {r['slope'] / 2**20:>12,.1f} | {fits:>25} |")
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=CONFIGS,
                   help="curvature[:reference[:residual]] per model; 'euclidean' is the reference row")
    p.add_argument("--compile", action="store_true", help="also time each configuration under torch.compile")
    p.add_argument("--ops", action="store_true", help="microbenchmark the geometry functions instead")
    p.add_argument("--generate", action="store_true", help="decode tokens/s with and without the cache (and compiled)")
    p.add_argument("--new_tokens", type=int, default=64, help="--generate: tokens generated after the prompt")
    p.add_argument("--memory", action="store_true", help="peak memory of a training step per micro-batch size")
    p.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 2], help="micro-batch sizes for --memory")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--n_layer", type=int, default=4)
    p.add_argument("--n_head", type=int, default=4)
    p.add_argument("--n_embd", type=int, default=128)
    p.add_argument("--block_size", type=int, default=64)
    p.add_argument("--batch_size", type=int, default=12)
    p.add_argument("--vocab_size", type=int, default=65)
    p.add_argument("--curvature_init", type=float, default=-0.05)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--peak_flops", type=float, default=0.0, help="the device's peak FLOP/s, for an MFU column")
    p.add_argument("--optimizer", default="adamw", choices=["adamw", "muon"],
                   help="the optimizer each step runs, unless its spec names one (optimizer=...)")
    p.add_argument("--json", default="", help="also write the training-step table's rows to this JSON file")
    args = p.parse_args(argv)
    if args.ops:
        return bench_ops(args)
    if args.generate:
        return bench_generate(args)
    if args.memory:
        return bench_memory(args)
    return bench_models(args)


if __name__ == "__main__":
    main()
