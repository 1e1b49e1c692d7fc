"""
Measure what curvature costs, on whatever device is here (no CUDA calls on a CPU).

    python bench.py                                   # CPU Shakespeare-char size: Euclidean vs curved, eager
    python bench.py --compile                         # the same, eager and torch.compile
    python bench.py --configs euclidean zero hyperbolic:prev_token:mobius --peak_flops 989e12
    python bench.py --ops                             # microbenchmarks of the geometry functions
    python bench.py --train 500                       # train curved and Euclidean, plot both loss curves
    python bench.py --generate                        # sampling tokens/s with and without the cache
    python bench.py --accuracy                        # float32 error of the geometry, values and ∂/∂κ

Timings are forward + backward + AdamW step on random tokens, after warm-up, with the configurations
alternating round by round so drift in the machine hits all of them alike; the table reports the median.
"""
import argparse
import ast
import math
import os
import statistics
import subprocess
import sys
import time

import torch
from tqdm import tqdm

import geometry as geo
from model import GPT, GPTConfig

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_spec(spec):
    """'curvature[:reference[:residual]][:key=value...]' → GPTConfig overrides, e.g. 'euclidean',
    'hyperbolic:prev_token:mobius', 'hyperbolic:prev_token:tangent:attention=distance:aggregate=midpoint'."""
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
    base = dict(block_size=args.block_size, vocab_size=args.vocab_size, n_layer=args.n_layer, n_head=args.n_head,
                n_embd=args.n_embd, bias=False, dropout=0.0, curvature_init=args.curvature_init)
    x = torch.randint(0, args.vocab_size, (args.batch_size, args.block_size), device=device)
    y = torch.randint(0, args.vocab_size, (args.batch_size, args.block_size), device=device)
    variants = []
    for spec in args.configs:
        over = parse_spec(spec)
        if over["curvature"] == "spherical":
            over["curvature_init"] = abs(args.curvature_init)
        for compiled in ([False, True] if args.compile else [False]):
            torch.manual_seed(0)
            model = GPT(GPTConfig(**{**base, **over})).to(device)
            opt = model.configure_optimizers(0.1, 1e-4, (0.9, 0.95), device.split(":")[0])
            fwd = torch.compile(model) if compiled else model

            def step(fwd=fwd, opt=opt):
                with autocast:
                    _, loss = fwd(x, y)
                loss.backward()
                opt.step()
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
            ref[key] = ms
        mem = peak_memory(device, v["step"]) / 2**20
        mfu = v["model"].estimate_mfu(args.batch_size, ms / 1000, args.peak_flops) if args.peak_flops else None
        rows.append((v["name"], ms, tokens / (ms / 1000), mem, mfu, key))
    print(f"\n{args.n_layer} layers, {args.n_head} heads, {args.n_embd} wide, batch {args.batch_size} × "
          f"block {args.block_size}, {args.dtype}, device {device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; median of {args.rounds} rounds × {args.steps} steps")
    header = f"| {'configuration':<44} | {'ms/iter':>8} | {'tokens/s':>9} | {'speed vs euclid':>15} | {'peak MiB':>8} | {'mem vs euclid':>13} |"
    if args.peak_flops:
        header += "   MFU |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    mem_ref = {r[5]: r[3] for r in rows if r[0].startswith("euclidean")}
    for name, ms, tps, mem, mfu, key in rows:
        speed = f"{ref[key] / ms:.2f}" if key in ref else "-"
        memr = f"{mem / mem_ref[key]:.2f}" if mem_ref.get(key) else "-"
        line = f"| {name:<44} | {ms:>8.1f} | {tps:>9,.0f} | {speed:>15} | {mem:>8.2f} | {memr:>13} |"
        if args.peak_flops:
            line += f" {mfu * 100:>4.1f}% |"
        print(line)
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
        "project": lambda: geo.project(x, k), "pairwise_dist [B,H,T,T]": lambda: geo.pairwise_dist(x.transpose(1, 2), y.transpose(1, 2), k.view(H, 1, 1)),
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
    """Tokens/s of GPT.generate with and without the KV/reference cache, for each configuration."""
    device = args.device
    base = dict(block_size=args.block_size, vocab_size=args.vocab_size, n_layer=args.n_layer, n_head=args.n_head,
                n_embd=args.n_embd, bias=False, dropout=0.0, curvature_init=args.curvature_init)
    n_new = args.block_size - 1  # stay within the context, where the cache applies
    print(f"\ngenerate {n_new} tokens after a 1-token prompt, batch 1, {args.n_layer} layers, {args.n_embd} wide, "
          f"block {args.block_size}, device {device}; median of {args.rounds} runs")
    print(f"| {'configuration':<44} | {'no cache tok/s':>14} | {'cache tok/s':>11} | {'speed-up':>8} |")
    print(f"|{'-' * 46}|{'-' * 16}|{'-' * 13}|{'-' * 10}|")
    for spec in args.configs:
        over = parse_spec(spec)
        if over["curvature"] == "spherical":
            over["curvature_init"] = abs(args.curvature_init)
        torch.manual_seed(0)
        model = GPT(GPTConfig(**{**base, **over})).to(device).eval()
        idx = torch.zeros(1, 1, dtype=torch.long, device=device)
        rate = {}
        for use_cache in (False, True):
            model.generate(idx, 8, use_cache=use_cache)  # warm-up
            times = []
            for _ in range(args.rounds):
                sync(device)
                t = time.perf_counter()
                model.generate(idx, n_new, use_cache=use_cache, generator=torch.Generator(device).manual_seed(0))
                sync(device)
                times.append(time.perf_counter() - t)
            rate[use_cache] = n_new / statistics.median(times)
        print(f"| {spec:<44} | {rate[False]:>14,.0f} | {rate[True]:>11,.0f} | {rate[True] / rate[False]:>7.1f}x |")


ACCURACY_KAPPAS = (0.0, 1e-8, -1e-8, 1e-6, -1e-6, 1e-4, -1e-4, 1e-2, -1e-2, 1.0, -1.0, 4.0, -4.0)


def bench_accuracy(args):
    """Worst float32 error of each geometry function against its float64 evaluation (values, and ∂/∂κ of a
    random weighted sum by autograd), over κ from 0 to ±4 on fixed random points; and tan_κ, artan_κ
    against 40-digit mpmath."""
    import mpmath

    mpmath.mp.dps = 40
    gen = torch.Generator().manual_seed(0)

    def points(scale, kp):  # radii up to `scale` of the safe region, the same points for all |κ| ≤ 1
        x = torch.randn(8, 16, generator=gen, dtype=torch.float64)
        return x / x.norm(dim=-1, keepdim=True) * torch.rand(8, 1, generator=gen, dtype=torch.float64) * scale / kp

    rows = {}
    for kv in ACCURACY_KAPPAS:
        kp = math.sqrt(max(abs(kv), 1.0))
        x, y, u = points(0.45, kp), points(0.45, kp), points(0.3, kp)
        w = torch.softmax(torch.randn(5, 8, generator=gen, dtype=torch.float64), -1)
        cases = {
            "mobius_add": lambda a, k: geo.mobius_add(a[0], a[1], k), "expmap0": lambda a, k: geo.expmap0(a[2], k),
            "logmap0": lambda a, k: geo.logmap0(a[1], k), "expmap": lambda a, k: geo.expmap(a[0], a[2], k),
            "logmap": lambda a, k: geo.logmap(a[0], a[1], k), "dist": lambda a, k: geo.dist(a[0], a[1], k),
            "pairwise_dist": lambda a, k: geo.pairwise_dist(a[0], a[1], k),
            "gyromidpoint": lambda a, k: geo.gyromidpoint(a[0], a[3], k),
            "mobius_scalar_mul": lambda a, k: geo.mobius_scalar_mul(0.7, a[0], k),
        }
        for name, fn in cases.items():
            errs = []
            for dtype in (torch.float32, torch.float64):
                k = torch.tensor(kv, dtype=dtype, requires_grad=True)
                out = fn([t.to(dtype) for t in (x, y, u, w)], k)
                wts = torch.ones_like(out).double().uniform_(-1, 1, generator=torch.Generator().manual_seed(1))
                (gk,) = torch.autograd.grad((out * wts.to(dtype)).sum(), [k])
                errs.append((out.double(), gk.double()))
            (o32, g32), (o64, g64) = errs
            value = ((o32 - o64).abs().max() / o64.abs().max()).item()
            dk = (abs(g32 - g64) / g64.abs().clamp_min(1e-30)).item()
            for key in (("|κ| ≤ 1e-4",) if abs(kv) <= 1e-4 else ()) + ("all κ",):
                r = rows.setdefault((name, key), [0.0, 0.0])
                r[0], r[1] = max(r[0], value), max(r[1], dk)
    for name, ref in (("tan_k", mpmath.tan), ("artan_k", mpmath.atan)):
        hyper = mpmath.tanh if name == "tan_k" else mpmath.atanh

        def exact(r, k):
            if k == 0:
                return r
            sk = mpmath.sqrt(abs(k))
            return (ref if k > 0 else hyper)(sk * r) / sk

        for kv in ACCURACY_KAPPAS:
            r = torch.tensor([1e-3, 0.05, 0.2, 0.45])
            k = torch.tensor(kv, requires_grad=True)
            out = getattr(geo, name)(r, k)
            for i, ri in enumerate(r.tolist()):
                (gk,) = torch.autograd.grad(out[i], [k], retain_graph=True)
                h, kk, rr = mpmath.mpf(10) ** -15, mpmath.mpf(kv), mpmath.mpf(ri)
                want = exact(rr, kk)
                want_dk = (exact(rr, kk + h) - exact(rr, kk - h)) / (2 * h)
                value = abs(out[i].item() - float(want)) / abs(float(want))
                dk = abs(gk.item() - float(want_dk)) / abs(float(want_dk))
                for key in (("|κ| ≤ 1e-4",) if abs(kv) <= 1e-4 else ()) + ("all κ",):
                    row = rows.setdefault((name + " (mpmath)", key), [0.0, 0.0])
                    row[0], row[1] = max(row[0], value), max(row[1], dk)
    print(f"\nworst float32 relative error against float64 (mpmath where marked), κ in {list(ACCURACY_KAPPAS)}; "
          f"'near 0' is |κ| ≤ 1e-4")
    print(f"| {'function':<26} | {'value, κ near 0':>17} | {'∂/∂κ, κ near 0':>17} | {'value, all κ':>12} | {'∂/∂κ, all κ':>11} |")
    print(f"|{'-' * 28}|{'-' * 19}|{'-' * 19}|{'-' * 14}|{'-' * 13}|")
    names = dict.fromkeys(n for n, _ in rows)
    for name in names:
        small, every = rows[(name, "|κ| ≤ 1e-4")], rows[(name, "all κ")]
        print(f"| {name:<26} | {small[0]:>17.1e} | {small[1]:>17.1e} | {every[0]:>12.1e} | {every[1]:>11.1e} |")
    return rows


def bench_train(args):
    """Train the CPU config curved and Euclidean for N iterations with train.py, then plot both."""
    out = args.train_out
    common = ["config/train_shakespeare_char_cpu.py", f"--max_iters={args.train}", f"--lr_decay_iters={args.train}",
              f"--device={args.device}"]
    for name, extra in (("curved", []), ("euclid", ["--curvature=euclidean"])):
        cmd = [sys.executable, os.path.join(HERE, "train.py"), *common, f"--out_dir={out}/{name}", *extra]
        print(" ".join(cmd))
        subprocess.run(cmd, check=True, cwd=HERE)
    subprocess.run([sys.executable, os.path.join(HERE, "plot.py"), f"{out}/curved", f"{out}/euclid",
                    "--out", f"{out}/train"], check=True, cwd=HERE)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=["euclidean", "zero:prev_token:tangent",
                                                    "hyperbolic:prev_token:tangent", "hyperbolic:prev_token:mobius"],
                   help="curvature[:reference[:residual]] per model; 'euclidean' is the reference row")
    p.add_argument("--compile", action="store_true", help="also time each configuration under torch.compile")
    p.add_argument("--ops", action="store_true", help="microbenchmark the geometry functions instead")
    p.add_argument("--generate", action="store_true", help="time generation with and without the cache")
    p.add_argument("--accuracy", action="store_true", help="float32 error of the geometry against float64/mpmath")
    p.add_argument("--train", type=int, default=0, help="train curved and Euclidean N iterations and plot")
    p.add_argument("--train_out", default="out-bench-train")
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
    args = p.parse_args(argv)
    if args.train:
        return bench_train(args)
    if args.ops:
        return bench_ops(args)
    if args.generate:
        return bench_generate(args)
    if args.accuracy:
        return bench_accuracy(args)
    return bench_models(args)


if __name__ == "__main__":
    main()
