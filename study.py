"""
The one driver for every experiment: a plan (plans/*.py) says what to run, this runs it in the plan's order,
resumes it, prints a dry run with its estimated hours, and writes its results folder.

    python study.py plans/yardstick.py                  # run or resume a plan: finished runs are reused
    python study.py plans/yardstick.py --dry_run        # what it would run, and the hours still to run
    python study.py plans/ladder.py --rebuild=/tmp/t    # a plan's tables again from its finished runs, into /tmp/t
    python study.py plans/sweep.py --arms="['euclid+smear']" --seeds="[1337]" --out=out-x --extra --eval_iters=10

A plan is a file of assignments that configurator reads as it reads a training config (every key known, every type
checked), then `--key=value` overrides; everything after --extra goes to every train.py run (after the plan's own
`extra`). `kind` says how its cells are built and reported (KINDS: each kind's keys with their defaults):
- sweep: one model, every arm on the same grid and budget; val at equal steps and at equal wall-clock;
- ladder: the arms over model sizes; Δ at equal steps, eager time and compiled cost, and one size run longer;
- end: blocks CORPUS:SIZE:MULT[:ARM,ARM] (MULT × iters), each arm tuned per block, a longer block starting from the
  √2 grid around the same arm's best at the previous length; Δ at equal steps (95% t-intervals) and compiled cost;
- graft: pretrain a Euclidean model, export it, fine-tune it per arm and seed (no tuning);
- multiplier: the baseline's frontier of fully decayed end points and each arm at its lengths, size by size; the
  steps the frontier needs to reach each arm's loss over the arm's steps, with 95% intervals (frontier.py).
Tuning (harness.tune) runs at tune_seed; then the reported `seeds` at the best rate. A plan reports its tuning seed
only where it says so (report_tune_seed: the ladder and the sweep, as they were made; the tables then say so) or is
`history`: a study kept as it was made, which a rebuild reads and nothing trains again (its runs' code or data are
gone; the plan names the commit that made them).

A run is harness.train_run's; a rebuild (--rebuild=DIR) reads every run's summary.json and bench JSON as they are,
without fingerprints, trains nothing, and writes the tables to DIR. A new study is a new plan, and a new analysis a
new report function in REPORTS.
"""
import math
import os
import statistics
import sys

import frontier as F
import harness as H
from configurator import ConfigError, configure

BASELINE = "euclid+smear"
COMMON = {"kind": "", "out": "", "device": "cpu", "on_code_change": "stop", "dry_run": False, "rebuild": "",
          "quick": False, "history": False, "arms": [BASELINE], "lrs": [3e-3, 1e-2, 3e-2], "max_extend": 2,
          "refine": True, "tune_seed": 1337, "seeds": [1, 2, 3], "report_tune_seed": False, "extra": [],
          "workers": 1, "threads": 0}
KINDS = {
    "sweep": {"base": "config/train_shakespeare_char_modern.py", "max_iters": 600, "eval_interval": 50,
              "full_eval": True, "flop_rate": 1.3e10},
    "ladder": {"base": "config/train_shakespeare_char_modern.py", "sizes": ["2x32", "2x64", "4x128", "6x192"],
               "iters": [600], "head_size": 32, "free_sizes": None, "full_eval": True, "evals": 12,
               "length_size": "4x128", "length_mult": 4, "length_arms": [BASELINE, "zero-prev-tangent",
                                                                          "hyp-prev-tangent"],
               "cost_ratios": None, "bench_rounds": 7, "flop_rate": 1.3e10},
    "end": {"corpora": {"shakespeare_char": "config/train_shakespeare_char_modern.py",
                        "pycode": "config/train_pycode_modern.py"},
            "blocks": [], "iters": 600, "evals": 12, "head_size": 32, "data_dirs": {}, "cost_ratios": None,
            "bench_rounds": 7, "bench_processes": 1, "prior": {}, "sampler": "epoch", "schedule": "cosine",
            "arm_schedule": {}, "flop_rate": 1.3e10},
    "multiplier": {"corpora": {"pycode": "config/train_pycode_modern.py"}, "corpus": "pycode", "sizes": ["2x64"],
                   "iters": 600, "frontier": [1, 2, 4, 8, 16, 32], "frontier_at": {}, "lengths": [1, 4, 16],
                   "arm_lengths": {}, "bracket_seeds": [1, 2, 3, 4, 5], "evals": 12, "head_size": 32, "data_dirs": {},
                   "cost_ratios": None, "bench_rounds": 7, "bench_processes": 1, "prior": {}, "sampler": "epoch",
                   "schedule": "cosine", "arm_schedule": {}, "draws": 2000, "replicates": 200, "flop_rate": 1.3e10},
    "graft": {"base": "", "init_from": "", "pretrain": "config/train_shakespeare_char_cpu_euclid.py",
              "pretrain_iters": 2000, "iters": 500, "lr": 2e-4, "graft_lr_mult": 10.0, "eval_interval": 50},
}
QUICK = {"sweep": {"max_iters": 8, "eval_interval": 4},
         "ladder": {"sizes": ["1x16", "2x32"], "iters": [8], "head_size": 16, "evals": 2, "length_size": "1x16",
                    "length_mult": 2, "bench_rounds": 2},
         "end": {"blocks": ["shakespeare_char:1x16:1", "pycode:1x16:1", "shakespeare_char:1x16:2"], "iters": 8,
                 "head_size": 16, "evals": 2, "bench_rounds": 2},
         "multiplier": {"sizes": ["1x16"], "iters": 8, "frontier": [1, 2], "lengths": [1], "bracket_seeds": [1, 2, 3],
                        "head_size": 16, "evals": 2, "bench_rounds": 2, "draws": 200, "replicates": 20},
         "graft": {"pretrain_iters": 20, "iters": 10, "eval_interval": 5}}
UNREAD = {"graft": ("lrs", "max_extend", "refine", "tune_seed", "report_tune_seed", "history")}
# bench.py's spec of each arm's block (curvature[:reference:residual], then overrides after the base config's own)
BENCH = {BASELINE: ("euclidean", "smear=True"), "curved": ("free:prev_token:tangent", "smear=False:curvature_init=0.0"),
         "ngpt": ("euclidean", "smear=False:block=ngpt:tie_embeddings=False:zero_init_proj=False:attn_scale=0.0:"
                               "logit_softcap=0.0"),
         "ngpt-adamw": ("euclidean", "smear=False:block=ngpt:tie_embeddings=False:zero_init_proj=False:attn_scale=0.0:"
                                     "logit_softcap=0.0:optimizer=adamw:grad_clip=1.0"),
         "hyp-prev-tangent": ("hyperbolic:prev_token:tangent", "smear=False")}  # the default block: its fused path
GRAFT_ARMS = {"euclid": ["--curvature=euclidean"],
              "graft": ["--curvature=free", "--curvature_init=0.0", "--reference=prev_token", "--residual=tangent",
                        "--reference_share=True"],
              "share": ["--curvature=zero", "--reference=prev_token", "--residual=tangent", "--reference_share=True"]}


# ----------------------------------------------------------------------------- the plan


def load(argv):
    """The plan's resolved settings: COMMON and its kind's keys, then the plan file, then the --key=value overrides (a
    bare --flag is --flag=True), then --extra's train.py options appended to `extra`. A key its kind does not read
    (UNREAD) is refused where the plan or the command line sets it."""
    extra = argv[argv.index("--extra") + 1:] if "--extra" in argv else []
    argv = argv[:argv.index("--extra")] if "--extra" in argv else argv
    files = [a for a in argv if not a.startswith("--")]
    if len(files) != 1 or not os.path.isfile(files[0]):
        sys.exit(f"error: name one plan file, e.g. plans/yardstick.py; got {files}")
    scope = {"__file__": files[0]}
    try:
        exec(open(files[0]).read(), scope)
    except Exception as e:
        sys.exit(f"error: plan {files[0]}: {type(e).__name__}: {e}")
    if scope.get("kind") not in KINDS:
        sys.exit(f"error: plan {files[0]} sets kind = {scope.get('kind')!r}: one of {sorted(KINDS)}")
    overrides = [a if "=" in a else f"{a}=True" for a in argv if a.startswith("--")]
    defaults = COMMON | KINDS[scope["kind"]]
    explicit = set()
    try:
        quick = configure(defaults, [*files, *overrides])["quick"]
        p = configure(defaults | (QUICK[scope["kind"]] if quick else {}), [*files, *overrides], explicit)
    except ConfigError as e:
        sys.exit(f"error: {e}")
    unread = explicit & set(UNREAD.get(p["kind"], ()))
    if unread:
        sys.exit(f"error: {', '.join(sorted(unread))} does nothing in a {p['kind']} plan (it does not tune): remove it")
    if quick:  # the plan's own sizes and lengths give way to the tiny ones, unless the command line names them
        p |= {k: v for k, v in QUICK[p["kind"]].items() if f"--{k}" not in {o.split("=")[0] for o in overrides}}
        p["seeds"] = p["seeds"][:2]
    p["extra"], p["command"] = p["extra"] + extra, " ".join(["python study.py", *argv, *(extra and ["--extra", *extra])])
    check(p)
    check_runs(p)
    return p


def check(p):
    """One-line errors for a plan that cannot run, before any run."""
    known = list(GRAFT_ARMS) if p["kind"] == "graft" else [a for a, _ in H.ARMS]
    unknown = set(p["arms"]) - set(known)
    if unknown:
        sys.exit(f"error: unknown arms {sorted(unknown)}; choose from {known}")
    if not p["out"]:
        sys.exit("error: the plan names no out folder (out = ...)")
    if p["tune_seed"] in p["seeds"] and not (p["history"] or p["report_tune_seed"]) and p["kind"] != "graft":
        sys.exit(f"error: the tuning seed {p['tune_seed']} is among the reported seeds {p['seeds']}: a seed that chose "
                 f"the rate flatters it; report other seeds")
    if p["history"] and not p["rebuild"] and not p["dry_run"]:
        sys.exit(f"error: {p['out']} is a study kept as it was made (history = True): --rebuild=DIR rebuilds its "
                 f"tables; to run it again, check out the commit its plan names")
    if p["kind"] in ("ladder", "end", "multiplier") and BASELINE not in p["arms"]:
        sys.exit(f"error: the arms must include the baseline {BASELINE}")
    if p["kind"] == "end" and not p["blocks"]:
        sys.exit("error: the plan names no blocks (blocks = ['CORPUS:SIZE:MULT', ...])")
    if p["kind"] == "ladder" and len(p["iters"]) not in (1, len(p["sizes"])):
        sys.exit(f"error: iters takes one value or one per size ({len(p['sizes'])})")
    if p["kind"] == "ladder" and p["length_size"] and p["length_size"] not in p["sizes"]:
        sys.exit(f"error: length_size {p['length_size']} is not one of sizes")


def check_runs(p):
    """One-line errors for how a plan's runs go: side by side (workers, threads) and their schedules (the whole plan's
    arms: a block may run fewer)."""
    if p["workers"] < 1 or p["threads"] < 0:
        sys.exit(f"error: workers must be ≥ 1 and threads ≥ 0 (0: torch's default); got {p['workers']}, "
                 f"{p['threads']}")
    shapes = {p["schedule"], *p["arm_schedule"].values()} if "schedule" in p else set()
    if shapes - {"cosine", "linear0"}:
        sys.exit(f"error: a schedule is 'cosine' (to lr/10) or 'linear0' (linear to zero); got {sorted(shapes)}")
    stray = set(p.get("arm_schedule", {})) - set(p["arms"])
    if stray:
        sys.exit(f"error: arm_schedule names arms the plan does not run: {sorted(stray)}")


def blocks(p):
    """The end kind's blocks as (corpus, size, mult, arms)."""
    out = []
    for text in p["blocks"]:
        corpus, size, mult, arms = (text.split(":", 3) + [None] * 3)[:4]
        if corpus not in p["corpora"] or size is None or mult is None or not mult.isdigit():
            sys.exit(f"error: a block is CORPUS:SIZE:MULT[:ARM,ARM] with CORPUS one of {sorted(p['corpora'])}, e.g. "
                     f"pycode:2x64:16:euclid+smear,free-prev-tangent; got {text!r}")
        arms = arms.split(",") if arms else p["arms"]
        check(p | {"arms": arms})
        out.append((corpus, size, int(mult), arms))
    return out


def cells(p):
    """The plan's cells, in order: {name, dir, config, size, iters, eval_interval, flags, arms, start}, where start
    is how an arm's rate is found: ('grid', None) (tune from lrs), ('after', name) (tune from the √2 grid around that
    cell's best for the arm), ('best', name) (no tuning: that cell's best), or ('prior', lr)."""
    if p["kind"] == "sweep":
        return [{"name": "", "dir": "", "config": p["base"], "size": None, "iters": p["max_iters"],
                 "eval_interval": p["eval_interval"], "flags": ["--eval_full=True"] * p["full_eval"],
                 "arms": p["arms"], "start": {}}]
    if p["kind"] == "ladder":
        iters = dict(zip(p["sizes"], p["iters"] * len(p["sizes"]) if len(p["iters"]) == 1 else p["iters"]))
        free = p["free_sizes"] if p["free_sizes"] is not None else sorted(
            p["sizes"], key=lambda s: H.non_embedding_params(*H.parse_size(s)))[1 if len(p["sizes"]) > 1 else 0:]
        out = [{"name": s, "dir": s, "config": p["base"], "size": s, "iters": iters[s], "flags": [],
                "arms": p["arms"] + (["free-prev-tangent"] if s in free and "free-prev-tangent" not in p["arms"]
                                     else []), "start": {}} for s in p["sizes"]]
        if p["length_size"]:
            s = p["length_size"]
            out.append({"name": f"{s}-long", "dir": f"{s}-long", "config": p["base"], "size": s, "flags": [],
                        "iters": iters[s] * p["length_mult"], "arms": [a for a in p["length_arms"] if a in out[
                            p["sizes"].index(s)]["arms"]], "start": {a: ("best", s) for a in p["length_arms"]}})
        for c in out:
            c["flags"] = ["--eval_full=True"] * p["full_eval"]
            c["eval_interval"] = max(1, c["iters"] // p["evals"])
            H.size_options(c["size"], p["head_size"])
        return out
    if p["kind"] == "multiplier":
        return multiplier_cells(p)
    out, seen = [], {}
    for corpus, size, mult, arms in blocks(p):
        name = f"{corpus} {size} {mult}"
        start = {}
        for arm in arms:
            shorter = [(m, n) for (c, s, a), pts in seen.items() if (c, s, a) == (corpus, size, arm)
                       for m, n in pts if m < mult]
            prior = p["prior"].get(f"{corpus} {size}", {}).get(arm)
            start[arm] = ("after", max(shorter)[1]) if shorter else ("prior", prior) if prior else ("grid", None)
            seen.setdefault((corpus, size, arm), []).append((mult, name))
        iters = p["iters"] * mult
        H.size_options(size, p["head_size"])
        data = [f"--data_dir={p['data_dirs'][corpus]}"] if corpus in p["data_dirs"] else []
        out.append({"name": name, "dir": f"{corpus}/{size}-x{mult}", "config": p["corpora"][corpus], "size": size,
                    "iters": iters, "eval_interval": max(1, iters // p["evals"]), "corpus": corpus, "mult": mult,
                    "flags": ["--eval_full=True", *([f"--sampler={p['sampler']}"] if p["sampler"] else []), *data],
                    "arms": arms, "start": start, "seeds": {}})
    return out


def multiplier_cells(p):
    """The multiplier kind's cells, size by size: the baseline at every frontier length (frontier_at[size], else
    frontier), each arm at its lengths (arm_lengths[arm], else lengths), a longer cell starting from the √2 grid
    around the same arm's best at the previous one; at an arm's longest length it runs bracket_seeds."""
    out = []
    for size in p["sizes"]:
        frontier = p["frontier_at"].get(size, p["frontier"])
        lengths = {a: p["arm_lengths"].get(a, p["lengths"]) for a in p["arms"] if a != BASELINE}
        blocks_ = []
        for mult in sorted(set(frontier) | {m for ls in lengths.values() for m in ls}):
            arms = [BASELINE] * (mult in frontier) + [a for a, ls in lengths.items() if mult in ls]
            if BASELINE not in arms:
                sys.exit(f"error: {size} at {mult}× runs arms without the baseline: every length must be on the "
                         f"frontier (frontier_at / frontier)")
            blocks_.append(f"{p['corpus']}:{size}:{mult}:{','.join(arms)}")
        # the dry run's guess at where the bracket seeds go: the frontier points at and next above the longest length
        longest = max((m for ls in lengths.values() for m in ls), default=0)
        guess = [m for m in sorted(frontier) if m >= longest][:2]
        for c in cells(p | {"kind": "end", "blocks": blocks_}):
            c["seeds"] = {a: p["bracket_seeds"] for a, ls in lengths.items() if c["mult"] == max(ls)}
            c["guess"] = {BASELINE: p["bracket_seeds"]} if c["mult"] in guess else {}
            out.append(c)
    return out


# ----------------------------------------------------------------------------- running


def run(p, cell, arm, lr, seed):
    """One training run of a cell (harness.train_run), or its summary as it is in a rebuild."""
    out_dir = os.path.join(p["out"], cell["dir"], arm, f"lr{lr:g}-s{seed}")
    if p["rebuild"]:
        return H.read_summary(out_dir)
    options = [cell["config"], *(H.size_options(cell["size"], p["head_size"]) if cell["size"] else []),
               *H.schedule(lr, cell["iters"], cell["eval_interval"], shape(p, arm)), f"--seed={seed}",
               f"--device={p['device']}", *([f"--threads={p['threads']}"] if p["threads"] else []),
               *cell["flags"], *dict(H.ARMS)[arm], *p["extra"]]
    label = f"{cell['name'] or p['kind']} {arm} lr={lr:g} seed={seed}".strip()
    return H.train_run(out_dir, options, label, keep_checkpoint=p["kind"] == "sweep",
                       on_code_change=p["on_code_change"])


def shape(p, arm):
    """The arm's schedule shape: its own in arm_schedule (a control kept on its published recipe), else the plan's."""
    return p.get("arm_schedule", {}).get(arm, p.get("schedule", "cosine"))


def tune_cell(p, cell, arm, results):
    """{grid, best_lr, interior, runs: {seed: summary}}: the arm's rate found as cell['start'] says, then the
    reported seeds at it."""
    start = cell["start"].get(arm, ("grid", None))
    if start[0] == "best":
        best, grid, interior = results[start[1]][arm]["best_lr"], {}, True
    else:
        first = start_lrs(p, cell, arm, results)
        grid = H.tune(lambda lr: H.final_loss(run(p, cell, arm, lr, p["tune_seed"])), first, p["max_extend"],
                      p["refine"])
        best, interior = H.best_rate(grid)
    return {"grid": grid, "best_lr": best, "interior": interior,
            "runs": {seed: run(p, cell, arm, best, seed) for seed in cell.get("seeds", {}).get(arm, p["seeds"])}}


def start_lrs(p, cell, arm, results):
    start = cell["start"].get(arm, ("grid", None))
    previous = results[start[1]][arm]["best_lr"] if start[0] == "after" else start[1] if start[0] == "prior" else None
    return H.start_grid(previous, p["lrs"])


def dry_run(p):
    """Each cell's runs: finished, and those still to run with their estimated hours (tuning counted as its start
    grid plus two refinements; seconds per run: run_seconds, once per cell)."""
    total, rows = 0.0, []
    for cell in (cells(p) if p["kind"] != "graft" else []):
        seconds = run_seconds(p, cell)
        for arm in cell["arms"]:
            folder = os.path.join(p["out"], cell["dir"], arm)
            finished = [d for d in (os.listdir(folder) if os.path.isdir(folder) else [])
                        if os.path.exists(os.path.join(folder, d, "summary.json"))]
            start = cell["start"].get(arm, ("grid", None))
            seeds = {**cell.get("guess", {}), **cell.get("seeds", {})}.get(arm, p["seeds"])
            planned = len(seeds) + (0 if start[0] == "best" else (len(p["lrs"]) if start[0] == "grid" else 3) + 2)
            complete = all(any(d.endswith(f"-s{sd}") for d in finished) for sd in seeds)  # its seeds ran: done
            done, left = len(finished), 0 if complete else max(1, planned - len(finished))
            hours = left * seconds / 3600
            total += hours
            tag = "  (with bracket seeds: a guess)" * (arm in cell.get("guess", {}))
            rows.append(f"  {cell['name'] or p['kind']:<24} {arm:<20} {cell['iters']:>6} iters  {done:>3} done  "
                        f"~{left:>2} to run  ~{hours:.2f} h{tag}")
    workers = p["workers"]
    print(f"plan {p['out']} ({p['kind']}): tuning seed {p['tune_seed']}, reported seeds {p['seeds']}")
    print("\n".join(rows) + f"\nestimated: {total / workers:.1f} h still to run on this machine ("
          + ("one run at a time" if workers == 1 else f"{total:.1f} h of runs, {workers} at a time, "
             f"{p['threads'] or 'default'} thread(s) each") + ")")
    return total / workers


def run_seconds(p, cell):
    """Estimated seconds of one run of the cell: its steps at the median ms/iter of finished runs of the same size
    and thread count (the plan's `threads`: runs side by side step slower each) in the plan's out, else in any study
    under results/, else at any thread count, plus the median of those runs' seconds besides their steps (start-up,
    the evaluations along the way and the whole-split ones at the end: per size, not per length, as every run
    evaluates `evals` times); with no run of the size, 6·params·tokens at the plan's flop_rate (1.3e10 FLOP/s is the
    eager rate of 2x64 on this 2-core CPU, pessimistic for larger models) plus 10% and 30 s."""
    import glob
    import json
    want = f"--threads={p['threads']}" if p["threads"] else None

    def found(where, any_threads=False):  # (ms/iter, seconds besides the steps) of finished runs of the size
        runs = [json.load(open(f)) for f in glob.glob(os.path.join(where, "**", "summary.json"), recursive=True)
                if f"/{cell['size']}" in f]
        return [(r["ms_per_iter"], r["evals"][-1][1] - r["evals"][-1][0] * r["ms_per_iter"] / 1000) for r in runs
                if r["evals"] and (any_threads or want == next((o for o in r["options"] if o.startswith("--threads=")),
                                                                None))]
    studies = os.path.join(H.HERE, "results")
    got = found(p["out"]) or found(studies) or found(studies, any_threads=True)
    if got:
        return cell["iters"] * statistics.median(m for m, _ in got) / 1000 + statistics.median(e for _, e in got)
    cfg = H.options_config([cell["config"], *p["extra"]])
    layers, width = H.parse_size(cell["size"]) if cell["size"] else (cfg["n_layer"], cfg["n_embd"])
    tokens = cfg["batch_size"] * cfg["block_size"] * cfg["gradient_accumulation_steps"]
    vocab = H.bench_setup(cell["config"])[1]["vocab_size"]
    ms = 6 * (H.non_embedding_params(layers, width) + 2 * vocab * width) * tokens / p["flop_rate"] * 1000
    return cell["iters"] * ms / 1000 * 1.1 + 30


def main(argv=None):
    p = load(sys.argv[1:] if argv is None else argv)
    todo = cells(p) if p["kind"] != "graft" else []  # a bad size or block fails here, before any folder or run
    if p["dry_run"]:
        return dry_run(p)
    out = p["rebuild"] or p["out"]
    os.makedirs(out, exist_ok=True)
    if p["kind"] == "graft":
        return REPORTS["graft"](p, graft(p), out)
    for c in todo if p["kind"] in ("end", "multiplier") and not p["rebuild"] else []:  # timed while nothing trains
        cost_ratios(p, c["config"], c["corpus"], c["size"])
    progressive, tables = p["kind"] in ("end", "multiplier"), []  # each finished block (or size): the tables so far
    results = execute(p, todo, (lambda done: tables.append(REPORTS[p["kind"]](p, done, out))) if progressive else None)
    return tables[-1] if progressive else REPORTS[p["kind"]](p, results, out)


def execute(p, todo, report=None):
    """{cell name: {arm: tune_cell's result}} for every cell, `workers` units at a time, earlier ones in the plan
    first. A unit is an arm's tuning and seeds in a cell (it starts once the cell it starts from has that arm's best
    rate) or, in a multiplier plan, one bracket seed (bracket: once every cell of its size is done). Runs are
    subprocesses, so a thread waits for each. report(the finished cells, in the plan's order) follows each unit that
    completes a prefix of the plan: a cell, or in a multiplier plan a size with its bracket seeds."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
    results = {c["name"]: {} for c in todo}
    waiting = [("tune", c, arm) for c in todo for arm in c["arms"]]
    size_of = lambda u: u[1] if u[0] == "bracket" else u[1]["size"]  # noqa: E731
    for size in dict.fromkeys(c["size"] for c in todo) if p["kind"] == "multiplier" else []:
        waiting.insert(max(i for i, w in enumerate(waiting) if size_of(w) == size) + 1, ("bracket", size, None))
    running, reported = {}, 0

    def in_order(cs):  # each cell's arms in the plan's order: side by side, the order units finish in varies
        return {c["name"]: {a: results[c["name"]][a] for a in c["arms"] if a in results[c["name"]]} for c in cs}

    def ready(unit):
        kind, c, arm = unit
        if kind == "tune":
            start = c["start"].get(arm, ("grid", None))
            return start[0] not in ("after", "best") or arm in results[start[1]]
        return kind == "seed" or not any(u[0] == "tune" and u[1]["size"] == c for u in [*waiting, *running.values()])
    pool = ThreadPoolExecutor(p["workers"])
    while waiting or running:
        unit = next((u for u in waiting if ready(u)), None)
        if unit and unit[0] == "bracket":  # becomes its seeds' units, in its place
            i = waiting.index(unit)
            waiting[i:i + 1] = [("seed", c, sd) for c, sd in bracket(p, [c for c in todo if c["size"] == unit[1]],
                                                                     results)]
            continue
        if unit and len(running) < p["workers"]:
            waiting.remove(unit)
            kind, c, x = unit
            job = (tune_cell, p, c, x, results) if kind == "tune" else (
                run, p, c, BASELINE, results[c["name"]][BASELINE]["best_lr"], x)
            running[pool.submit(*job)] = unit
            continue
        if not running:
            sys.exit(f"error: no unit of the plan can start: {[(u[0], u[1]['name'], u[2]) for u in waiting]}")
        for future in wait(running, return_when=FIRST_COMPLETED)[0]:
            kind, c, x = running.pop(future)
            try:
                value = future.result()
            except BaseException as e:
                if running:
                    print(f"{e}\n(waiting for the {len(running)} run(s) in progress to finish: they are kept)",
                          flush=True)
                pool.shutdown(wait=True, cancel_futures=True)
                raise
            if kind == "tune":
                results[c["name"]][x] = value
            else:
                results[c["name"]][BASELINE]["runs"][x] = value
        pending = {size_of(u) for u in [*waiting, *running.values()]} if p["kind"] == "multiplier" else set()
        done = 0
        while done < len(todo) and set(results[todo[done]["name"]]) == set(todo[done]["arms"]) and \
                todo[done]["size"] not in pending:
            done += 1
        if report and done > reported:
            reported = done
            report(in_order(todo[:done]))
    pool.shutdown()
    return in_order(todo)


def bracket(p, size_cells, results):
    """[(cell, seed)]: the runs that give the baseline's frontier points bracketing each arm's loss at its longest
    length the arm's seeds too (bracket_seeds, at the rate each point was tuned to), so that the interval there is
    paired seed by seed."""
    base, todo = [c for c in size_cells if BASELINE in c["arms"]], []
    for c in size_cells:
        for arm, seeds in c["seeds"].items():
            loss = statistics.mean(H.reported(results[c["name"]][arm]["runs"][sd]) for sd in seeds)
            points = [(b, statistics.mean(H.reported(s) for s in results[b["name"]][BASELINE]["runs"].values()))
                      for b in base]
            near = next(([x, y] for x, y in zip(points, points[1:]) if x[1] >= loss >= y[1]), None)
            for b, _ in near or [min(points, key=lambda pt: abs(pt[1] - loss))]:
                todo += [(b, sd) for sd in seeds if sd not in results[b["name"]][BASELINE]["runs"]
                         and (b, sd) not in todo]
    return todo


# ----------------------------------------------------------------------------- the graft


def graft(p):
    """Pretrain (unless init_from names a pretrained model), export it as GPT-2, fine-tune every arm per seed."""
    hf, pre, inputs = p["init_from"], None, {"init_from": p["init_from"]}
    pre_dir = os.path.join(p["out"], "pretrain")
    pre_options = [p["pretrain"], f"--max_iters={p['pretrain_iters']}", f"--lr_decay_iters={p['pretrain_iters']}",
                   f"--eval_interval={p['eval_interval']}", f"--device={p['device']}", *p["extra"]]
    if not hf:
        hf, inputs = os.path.join(pre_dir, "hf"), {"pretrain": " ".join(pre_options)}
        pre = H.read_summary(pre_dir) if p["rebuild"] else H.train_run(pre_dir, pre_options, "pretrain (euclid)",
                                                                       on_code_change=p["on_code_change"])
    results = {}
    for arm in p["arms"]:
        results[arm] = []
        for seed in p["seeds"]:
            out = os.path.join(p["out"], arm, f"s{seed}")
            options = [*([p["base"]] if p["base"] else []), f"--init_from={hf}", f"--learning_rate={p['lr']}",
                       "--decay_lr=False", f"--max_iters={p['iters']}", f"--eval_interval={p['eval_interval']}",
                       f"--curvature_lr_mult={p['graft_lr_mult']}", f"--seed={seed}", f"--device={p['device']}",
                       *GRAFT_ARMS[arm], *p["extra"]]
            if p["rebuild"]:
                results[arm].append(H.read_summary(out))
                continue
            if not p["init_from"] and H.finished(out, options, inputs, p["on_code_change"]) is None:
                ensure_export(p, pre_dir, pre_options, inputs)
            results[arm].append(H.train_run(out, options, f"{arm} seed={seed}", keep_checkpoint=False, inputs=inputs,
                                            on_code_change=p["on_code_change"]))
    return {"pretrain": pre, "runs": results}


def ensure_export(p, pre_dir, pre_options, identity):
    """Export the pretrain run in GPT-2's format before the first fine-tune that needs it, unless the export there is
    of this pretrain (its options, stamped beside it). Only summaries are committed, so a fresh clone whose
    fine-tunes are all finished retrains nothing; one that is not needs the weights, and the pretrain is trained
    again (the same command gives the same run)."""
    import json

    import export
    from runtime import load_checkpoint
    stamp = os.path.join(pre_dir, "hf", "kappagpt_source.json")
    if os.path.exists(os.path.join(pre_dir, "hf", "model.safetensors")) and os.path.exists(stamp):
        if json.load(open(stamp)) == identity:
            return
    if not os.path.exists(os.path.join(pre_dir, "ckpt.pt")):
        os.remove(os.path.join(pre_dir, "summary.json"))
        H.train_run(pre_dir, pre_options, "pretrain (euclid), again for its weights",
                    on_code_change=p["on_code_change"])
    export.export(load_checkpoint(os.path.join(pre_dir, "ckpt.pt")), os.path.join(pre_dir, "hf"), overwrite=True)
    H.write_json(stamp, identity)


# ----------------------------------------------------------------------------- reports: tables, figures, JSON


def fmt(d, interval=True):
    """mean ± std (t …; 95% […]) of harness.paired's tuple; without the interval where `interval` is False."""
    mean, std, t, half = d
    if not interval:
        return f"{mean:+.4f} ± {std:.4f}"
    return f"{mean:+.4f} ± {std:.4f} (t {t:+.1f}; 95% [{mean - half:+.4f}, {mean + half:+.4f}])"


def grid_lines(p, results, title):
    lines = ["", f"Learning-rate grids, tuning seed {p['tune_seed']}: {title}", ""]
    for name, arms in results.items():
        for arm, r in arms.items():
            if r["grid"]:
                lines.append(f"- {(name + ' ') if name else ''}{arm}: " + ", ".join(
                    f"{lr:g} → {v:.4f}" for lr, v in sorted(r["grid"].items())))
    return lines


def seeds_note(p):
    n = len(p["seeds"])
    among = (f"the tuning seed {p['tune_seed']} is among them, as this study was made" if p["tune_seed"] in p["seeds"]
             else f"the tuning seed {p['tune_seed']} is not among them")
    return (f"±: the sample standard deviation over the n = {n} reported seeds {p['seeds']} ({among}); t: the paired t "
            f"(df {n - 1}); 95%: the paired t-interval, mean ± t(0.975, {n - 1})·std/√{n}.")


def report_sweep(p, results, out):
    """Val at equal steps and at equal wall-clock (the fastest run's time from steady stepping), per arm at its best
    rate, and Δ against the baseline (the first arm when it is absent) paired by seed."""
    arms = results[""]
    budget = min(H.steady(s)[-1][1] for r in arms.values() for s in r["runs"].values())
    ref = BASELINE if BASELINE in arms else next(iter(arms))
    rows = []
    for arm, r in arms.items():
        runs = r["runs"]
        steps = {sd: H.final_loss(s) for sd, s in runs.items()}
        wall = {sd: H.at_wall(H.steady(s), budget, H.final_loss(s)) for sd, s in runs.items()}
        base = arms[ref]["runs"]
        rows.append({"arm": arm, "best_lr": r["best_lr"], "interior": r["interior"], "seeds": list(runs),
                     "val_at_steps": H.mean_std(list(steps.values())), "val_at_wall": H.mean_std(list(wall.values())),
                     "ms_per_iter": statistics.median(s["ms_per_iter"] for s in runs.values()),
                     "diff_at_steps": H.paired([steps[sd] - H.final_loss(base[sd]) for sd in runs]),
                     "diff_at_wall": H.paired([wall[sd] - H.at_wall(H.steady(base[sd]), budget,
                                                                    H.final_loss(base[sd])) for sd in runs])})
    where = "the whole validation split" if p["full_eval"] else "the last evaluation's batches"
    lines = [f"val loss after {p['max_iters']} iterations (equal steps, on {where}) and after {budget:.0f} s (equal "
             f"wall-clock from steady stepping: the fastest run's time, batch estimates interpolated), mean ± std at "
             f"each arm's best learning rate (`*`: the best is at the grid's edge); Δ: the difference to {ref} within "
             f"each seed; bits = nats / ln 2 per token", "",
             "| arm | best lr | val loss, equal steps | bits | Δ, equal steps | val loss, equal wall-clock | Δ, equal "
             "wall-clock | ms/iter |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        (s, sd), (w, wd) = r["val_at_steps"], r["val_at_wall"]
        lines.append(f"| {r['arm']} | {r['best_lr']:g}{'' if r['interior'] else '*'} | {s:.4f} ± {sd:.4f} | "
                     f"{s / math.log(2):.4f} | {fmt(r['diff_at_steps'], False)} | {w:.4f} ± {wd:.4f} | "
                     f"{fmt(r['diff_at_wall'], False)} | {r['ms_per_iter']:.1f} |")
    lines += ["", seeds_note(p)] + grid_lines(p, results, f"val loss after {p['max_iters']} iterations")
    H.write_text(os.path.join(out, "sweep.md"), lines)
    fig, axes = H.figure(2, 6, 4.5)
    for arm, r in arms.items():
        runs = [H.steady(s) for s in r["runs"].values()]
        n = min(len(e) for e in runs)
        for ax, col in zip(axes, (0, 1)):
            ax.plot([statistics.mean(e[i][col] for e in runs) for i in range(n)],
                    [statistics.mean(e[i][2] for e in runs) for i in range(n)], marker=".",
                    label=f"{arm} (lr {r['best_lr']:g})")
    low = min(r["val_at_steps"][0] for r in rows)
    for ax, label in zip(axes, ("iteration", "wall-clock seconds")):
        ax.set(ylim=(low - 0.05, low + 0.5), xlabel=label, ylabel="val loss (mean over seeds)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[1].axvline(budget, color="gray", ls=":")
    H.save_figure(fig, os.path.join(out, "sweep.png"))
    H.write_json(os.path.join(out, "sweep.json"), {"settings": p, "budget_s": budget, "rows": rows,
                                                   "runs": jsonable(results)})
    return rows


VIEWS = {"steps": "equal steps", "eager": "equal eager time", "compiled": "equal compiled cost"}


def report_ladder(p, results, out):
    """Per size and arm: best rate, val at equal steps, Δ ± std paired by seed in the three views; heads with κ > 0;
    the longer size's Δ at every evaluation; the grids."""
    ratios = {}
    for i, size in enumerate(p["sizes"]):
        if p["cost_ratios"]:
            ratios[size] = p["cost_ratios"][i]
            continue
        spec, context = H.bench_setup(p["base"])
        ms = H.compiled_ms(os.path.abspath(os.path.join(p["out"], "bench", f"{size}.json")),
                           [f"euclidean:smear=True:{spec}", f"hyperbolic:prev_token:tangent:smear=False:{spec}"],
                           size, p["head_size"], context, p["device"], p["bench_rounds"], bool(p["rebuild"]))
        ratios[size] = ms[0][1] / ms[0][0]  # one process, as the ladder was made
    rows = []
    for size in p["sizes"]:
        base = results[size][BASELINE]["runs"]
        for arm, r in results[size].items():
            row = {"size": size, "params": H.non_embedding_params(*H.parse_size(size)), "arm": arm,
                   "iters": next(c["iters"] for c in cells(p) if c["name"] == size), "best_lr": r["best_lr"],
                   "interior": r["interior"], "val": H.mean_std([H.final_loss(s) for s in r["runs"].values()]),
                   "ratio": ratios[size], "ms_per_iter": statistics.median(s["ms_per_iter"] for s in r["runs"].values())}
            row.update({v: H.mean_std([H.delta(r["runs"][sd], base[sd], v, ratios[size]) for sd in p["seeds"]])
                        for v in VIEWS})
            if arm.startswith("free"):
                row["positive_heads"] = [H.positive_heads(s["kappa"]) for s in r["runs"].values()]
            rows.append(row)
    length = {}
    if p["length_size"]:
        runs = results[f"{p['length_size']}-long"]
        first = runs[BASELINE]["runs"][p["seeds"][0]]["evals"]
        length = {arm: [(it, *H.mean_std([r["runs"][sd]["evals"][i][2] - runs[BASELINE]["runs"][sd]["evals"][i][2]
                                          for sd in p["seeds"]])) for i, (it, _, _) in enumerate(first)]
                  for arm, r in runs.items() if arm != BASELINE}
    f2 = lambda ms: f"{ms[0]:+.4f} ± {ms[1]:.4f}"  # noqa: E731
    lines = [f"Δ = val loss(arm) − val loss({BASELINE}), paired by seed over seeds {p['seeds']}, mean ± std; "
             f"each arm at its best learning rate of the grid (`*`: the best stayed at the grid's edge after "
             f"{p['max_extend']} extensions); compiled ratio = compiled ms/iter curved ÷ baseline at that size.", "",
             "| size | non-emb. params | iters | arm | best lr | val loss, equal steps | Δ equal steps | "
             "Δ equal eager time | compiled ratio | Δ equal compiled cost | ms/iter (eager) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['size']} | {r['params']:,} | {r['iters']} | {r['arm']} | {r['best_lr']:g}"
                     f"{'' if r['interior'] else '*'} | {r['val'][0]:.4f} ± {r['val'][1]:.4f} | "
                     + ("– | – | – | – |" if r["arm"] == BASELINE else
                        f"{f2(r['steps'])} | {f2(r['eager'])} | {r['ratio']:.2f} | {f2(r['compiled'])} |")
                     + f" {r['ms_per_iter']:.1f} |")
    free = [r for r in rows if "positive_heads" in r]
    if free:
        lines += ["", "free-prev-tangent: heads with κ > 0 at the end, per block (one list per seed)", ""]
        lines += [f"- {r['size']}: {r['positive_heads']} of {H.parse_size(r['size'])[1] // p['head_size']} heads "
                  f"per block" for r in free]
    if length:
        lines += ["", f"Length: {p['length_size']} at {p['length_mult']}× its iterations, Δ at each evaluation", "",
                  "| iter | " + " | ".join(length) + " |", "|---|" + "---|" * len(length)]
        for i, point in enumerate(next(iter(length.values()))):
            lines.append(f"| {point[0]} | " + " | ".join(f2(c[i][1:]) for c in length.values()) + " |")
    lines += grid_lines(p, {k: v for k, v in results.items() if not k.endswith("-long")}, "val loss after the run")
    H.write_text(os.path.join(out, "ladder.md"), lines)
    arms = [a for a in dict.fromkeys(r["arm"] for r in rows) if a != BASELINE]
    fig, axes = H.figure(len(arms), 4.5, 4, sharey=True)
    for ax, arm in zip(axes, arms):
        mine = [r for r in rows if r["arm"] == arm]
        for view, label in VIEWS.items():
            ax.errorbar([r["params"] for r in mine], [r[view][0] for r in mine], yerr=[r[view][1] for r in mine],
                        marker="o", capsize=3, label=label)
        ax.axhline(0, color="gray", lw=0.8)
        ax.set_xscale("log")
        ax.minorticks_off()  # the sizes label the axis; log minor labels would overlap them
        ax.set_xticks([r["params"] for r in mine], [f"{r['size']}\n{r['params']:,}" for r in mine], fontsize=8)
        ax.set(title=f"{arm} − {BASELINE}", xlabel="non-embedding parameters")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("Δ val loss (< 0: the arm is ahead)")
    axes[0].legend(fontsize=8)
    H.save_figure(fig, os.path.join(out, "ladder.png"))
    if length:
        fig, (ax,) = H.figure(1, 6, 4)
        for arm, curve in length.items():
            xs, ys, sd = zip(*curve)
            ax.plot(xs, ys, marker=".", label=f"{arm} − {BASELINE}")
            ax.fill_between(xs, [y - s for y, s in zip(ys, sd)], [y + s for y, s in zip(ys, sd)], alpha=0.2)
        ax.axhline(0, color="gray", lw=0.8)
        ax.set(xlabel=f"iteration ({p['length_size']}, {p['length_mult']}× budget)",
               ylabel="Δ val loss, mean ± std over seeds")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        H.save_figure(fig, os.path.join(out, "ladder_length.png"))
    H.write_json(os.path.join(out, "ladder.json"), {"settings": p, "rows": rows, "length": length,
                                                    "runs": jsonable(results)})
    return rows


def report_end(p, results, out):
    """Per block and arm: best rate, the reported loss, Δ at equal steps and at equal compiled cost paired by seed
    with its 95% t-interval; epochs, recipes, what is evaluated; heads with κ > 0; the grids; the figure."""
    done = [c for c in cells(p) if c["name"] in results]
    ratios, rows = {}, []
    for c in done:
        key = (c["corpus"], c["size"])
        if key not in ratios:
            ratios[key] = cost_ratios(p, c["config"], c["corpus"], c["size"])
        arms = results[c["name"]]
        base = arms[BASELINE]["runs"]
        for arm, r in arms.items():
            row = {"corpus": c["corpus"], "size": c["size"], "mult": c["mult"], "iters": c["iters"], "arm": arm,
                   "best_lr": r["best_lr"], "interior": r["interior"],
                   "loss": H.mean_std([H.reported(r["runs"][sd]) for sd in p["seeds"]]),
                   "ratio": ratios[key][bench_key(arm, ratios[key])]}
            if arm != BASELINE:
                row["steps"] = H.paired([H.reported(r["runs"][sd]) - H.reported(base[sd]) for sd in p["seeds"]])
                # the curves' change at equal compiled cost (read anchored at val), moved to the reported split's level
                row["compiled"] = H.paired([H.delta(r["runs"][sd], base[sd], "compiled", row["ratio"])
                                            - H.delta(r["runs"][sd], base[sd], "steps")
                                            + H.reported(r["runs"][sd]) - H.reported(base[sd]) for sd in p["seeds"]])
            if arm.startswith(("free", "hyp")):
                row["positive_heads"] = [H.positive_heads(r["runs"][sd]["kappa"]) for sd in p["seeds"]]
            rows.append(row)
    corpora = list(dict.fromkeys(r["corpus"] for r in rows))
    lines = [f"Δ = loss(arm) − loss({BASELINE}) at the end of fully decayed runs, paired by seed. Each arm at its own "
             f"best rate, chosen on val at the tuning seed (`*`: at the grid's edge). Evaluated: "
             + "; ".join(evaluated(p, c) for c in corpora) + ". bits = nats / ln 2 per character (Shakespeare) or "
             "byte (pycode). Epochs: passes over the training split" + (" (windows read in a shuffled order, none "
             "twice before the epoch is through)" if p["sampler"] == "epoch" else "") + ". Compiled ratio: the arm's "
             "block's compiled ms/iter ÷ the baseline's at that size.", "",
             "| corpus | size | length | iters | epochs | arm | best lr | loss | bits | Δ equal steps | compiled ratio | "
             "Δ equal compiled cost |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ep = epochs(p, r["corpus"], r["iters"])
        lines.append(f"| {r['corpus']} | {r['size']} | {r['mult']}× | {r['iters']} | "
                     f"{'–' if ep is None else f'{ep:.2f}'} | {r['arm']} | "
                     f"{r['best_lr']:g}{'' if r['interior'] else '*'} | {r['loss'][0]:.4f} ± {r['loss'][1]:.4f} | "
                     f"{r['loss'][0] / math.log(2):.4f} | "
                     + ("– | – | – |" if r["arm"] == BASELINE else
                        f"{fmt(r['steps'])} | {r['ratio']:.2f} | {fmt(r['compiled'])} |"))
    lines += ["", seeds_note(p), "", "Recipes (schedules stretched to each run's length):", ""]
    lines += [f"- {arm}: {recipe(p, done[0], arm)}" for arm in dict.fromkeys(r["arm"] for r in rows)]
    curved = [r for r in rows if "positive_heads" in r]
    if curved:
        lines += ["", "Heads with κ > 0 at the end, per block (one list per reported seed)", ""]
        lines += [f"- {r['corpus']} {r['size']} {r['mult']}× {r['arm']}: {r['positive_heads']} of "
                  f"{H.parse_size(r['size'])[1] // p['head_size']}" for r in curved]
    lines += grid_lines(p, {f"{c['corpus']} {c['size']} {c['mult']}×": results[c["name"]] for c in done},
                        "final loss on the whole validation split")
    H.write_text(os.path.join(out, "study.md"), lines)
    fig, axes = H.figure(len(corpora), sharey=True)
    arms = list(dict.fromkeys(r["arm"] for r in rows if r["arm"] != BASELINE))
    for ax, corpus in zip(axes, corpora):
        mine = [r for r in rows if r["corpus"] == corpus and r["arm"] != BASELINE]
        for i, size in enumerate(dict.fromkeys(r["size"] for r in mine)):
            for arm in dict.fromkeys(r["arm"] for r in mine):
                pts = sorted((r["iters"], r["steps"][0], r["steps"][1]) for r in mine
                             if r["size"] == size and r["arm"] == arm)
                xs, ys, sd = zip(*pts)
                ax.errorbar(xs, ys, yerr=sd, marker="os^D"[i % 4], capsize=3, color=f"C{arms.index(arm)}",
                            ls=("-", "--", ":")[i % 3], label=f"{arm} ({size})")
        ax.axhline(0, color="gray", lw=0.8)
        ax.set_xscale("log")
        ax.set(title=f"{corpus}: arm − {BASELINE}, equal steps", xlabel="training iterations (each run fully decayed)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("Δ final loss, whole split (< 0: ahead)")
    H.save_figure(fig, os.path.join(out, "study.png"))
    H.write_json(os.path.join(out, "study.json"), {"settings": p, "rows": rows, "runs": jsonable(results)})
    return rows


def cost_ratios(p, config, corpus, size):
    """{BENCH key: that block's compiled ms/iter ÷ the baseline's} at this size: process_ratios' median."""
    return {k: statistics.median(v) for k, v in process_ratios(p, config, corpus, size).items()}


def process_ratios(p, config, corpus, size):
    """{BENCH key: [that block's compiled ms/iter ÷ the baseline's, per bench.py process]} at this size:
    harness.compiled_ms (BENCH's blocks alternating in one process, `bench_processes` processes,
    OUT/bench/CORPUS-SIZE.json reused when it timed the same), or the plan's cost_ratios (curved, nGPT: both of nGPT's
    recipes share its block's, the default block the curved one's)."""
    if p["cost_ratios"]:
        ms = [[1.0, p["cost_ratios"][0], p["cost_ratios"][1], p["cost_ratios"][1], p["cost_ratios"][0]]]
    else:
        spec, context = H.bench_setup(config)
        ms = H.compiled_ms(os.path.abspath(os.path.join(p["out"], "bench", f"{corpus}-{size}.json")),
                           [f"{BENCH[k][0]}:{spec}:{BENCH[k][1]}" for k in BENCH], size, p["head_size"], context,
                           p["device"], p["bench_rounds"], bool(p["rebuild"]), p["bench_processes"])
    base = list(BENCH).index(BASELINE)  # a timing made before BENCH grew has its first blocks only
    return {k: [run[i] / run[base] for run in ms] for i, k in zip(range(len(ms[0])), BENCH)}


def bench_key(arm, ratios):
    """The BENCH block that times an arm: its own (a schedule variant's: its block's) where `ratios` timed it (a
    timing made before BENCH timed the default block on its own has it as the curved block), else the curved one."""
    arm = arm.removesuffix("+linear0")
    return arm if arm in ratios else "curved"


def epochs(p, corpus, iters):
    """Passes over the training split that a run of this length reads, or None where train.bin is not here."""
    path = os.path.join(p["data_dirs"].get(corpus, os.path.join(H.HERE, "data", corpus)), "train.bin")
    if not os.path.exists(path):
        return None
    cfg = H.options_config([p["corpora"][corpus], *p["extra"]])
    return iters * cfg["batch_size"] * cfg["block_size"] / (os.path.getsize(path) // 2)


def evaluated(p, corpus):
    """What a corpus's reported numbers evaluate: its test split where it has one, else val; with files and bytes."""
    from loader import read_meta
    folder = p["data_dirs"].get(corpus, os.path.join(H.HERE, "data", corpus))
    split = "test" if os.path.exists(os.path.join(folder, "test.bin")) else "val"
    path = os.path.join(folder, f"{split}.bin")
    if not os.path.exists(path):
        return f"{corpus}: {split} split (not prepared here)"
    meta = read_meta(os.path.join(folder, "meta.pkl"), f"python data/{corpus}/prepare.py")
    files = f", {meta['files'][split]:,} files" if isinstance(meta.get("files"), dict) else ""
    return f"{corpus}: the whole {split} split, {os.path.getsize(path) // 2:,} tokens{files}"


def recipe(p, cell, arm):
    """How an arm trains, read off the options its runs resolve to: optimizer, warmup, decay, clipping."""
    cfg = H.options_config([cell["config"], *H.schedule(1.0, 1000, 100, shape(p, arm)),
                            *dict(H.ARMS)[arm]])
    optimizer = "Muon (matrices) + AdamW" if cfg["optimizer"] == "muon" else "AdamW"
    clip = f"{cfg['grad_clip']:g}" if cfg["grad_clip"] > 0 else "none"
    return (f"{optimizer} β ({cfg['beta1']:g}, {cfg['beta2']:g}), wd {cfg['weight_decay']:g}, warmup "
            f"{cfg['warmup_iters'] / 1000:.0%}, {cfg['decay_shape']} to {cfg['min_lr'] / cfg['learning_rate']:g}·lr, "
            f"clip {clip}")


def report_graft(p, done, out):
    """Val loss at step 0 and after fine-tuning, Δ against euclid paired by seed, κ and α per block and head."""
    results, pre = done["runs"], done["pretrain"]
    ref = {s: r["evals"][-1][2] for s, r in zip(p["seeds"], results["euclid"])}
    rows = []
    for name, runs in results.items():
        finals = [r["evals"][-1][2] for r in runs]
        rows.append({"arm": name, "val": H.mean_std(finals),
                     "delta": H.mean_std([f - ref[s] for f, s in zip(finals, p["seeds"])]),
                     "start": H.mean_std([r["evals"][0][2] for r in runs]),
                     "kappa": H.per_head(runs, "curvature"), "share": H.per_head(runs, "share")})
    what = (p["init_from"] if pre is None else f"the exported Euclidean CPU model (val loss {pre['evals'][-1][2]:.4f} "
            f"after {p['pretrain_iters']} iterations)")
    lines = [f"Fine-tuning {what} for {p['iters']} iterations at lr {p['lr']:g} (κ and α at × {p['graft_lr_mult']:g}), "
             f"seeds {p['seeds']}; Δ: the difference to euclid within each seed, mean ± std. At step 0 every arm is "
             f"the loaded model (the spread is the seeds' evaluation batches)", "",
             "| arm | val loss at step 0 | val loss after fine-tuning | Δ vs euclid |", "|---|---|---|---|"]
    lines += [f"| {r['arm']} | {r['start'][0]:.4f} ± {r['start'][1]:.4f} | {r['val'][0]:.4f} ± {r['val'][1]:.4f} | "
              f"{r['delta'][0]:+.4f} ± {r['delta'][1]:.4f} |" for r in rows]
    for r in rows:
        for key, name in (("kappa", "κ"), ("share", "α")):
            if r[key]:
                n = len(next(iter(r[key].values())))
                lines += ["", f"{r['arm']}: {name} per block (rows) and head (columns) after fine-tuning, mean over "
                              f"seeds", "", "| block | " + " | ".join(f"head {h}" for h in range(n)) + " |",
                          "|---|" + "---|" * n]
                lines += [f"| {b} | " + " | ".join(f"{v:+.4f}" for v in vals) + " |" for b, vals in r[key].items()]
    H.write_text(os.path.join(out, "graft.md"), lines)
    fig, axes = H.figure(2, 6, 4.5)
    base = results["euclid"]
    for name, runs in results.items():
        n = min(len(r["evals"]) for r in runs + base)
        xs = [runs[0]["evals"][i][0] for i in range(n)]
        axes[0].plot(xs, [statistics.mean(r["evals"][i][2] for r in runs) for i in range(n)], marker=".", label=name)
        stats = [H.mean_std([r["evals"][i][2] - b["evals"][i][2] for r, b in zip(runs, base)]) for i in range(n)]
        axes[1].plot(xs, [m for m, _ in stats], marker=".", label=f"{name} − euclid")
        axes[1].fill_between(xs, [m - s for m, s in stats], [m + s for m, s in stats], alpha=0.2)
    axes[0].set_ylabel(f"val loss (mean over seeds {p['seeds']})")
    axes[1].set_ylabel("Δ val loss, paired by seed (mean ± std)")
    for ax in axes:
        ax.set_xlabel("fine-tuning iteration")
        ax.grid(alpha=0.3)
        ax.legend()
    H.save_figure(fig, os.path.join(out, "graft.png"))
    H.write_json(os.path.join(out, "graft.json"), {"settings": p, "pretrain": pre, "rows": rows, "runs": results})
    return rows


def report_multiplier(p, results, out):
    """Per size, arm and length: the steps the baseline's frontier needs to reach the arm's loss, over the arm's steps
    (frontier.py), per step and per compiled cost, with the paired bootstrap's and the log-t 95% intervals and their
    coverage on synthetic studies at the measured seed noise; the power-law fit's multiplier beside it."""
    todo, rows = [c for c in cells(p) if c["name"] in results], []
    for size in dict.fromkeys(c["size"] for c in todo):
        mine = [c for c in todo if c["size"] == size]
        timed = process_ratios(p, mine[0]["config"], p["corpus"], size)
        ratios = {k: statistics.median(v) for k, v in timed.items()}
        front = {c["iters"]: {sd: H.reported(s) for sd, s in results[c["name"]][BASELINE]["runs"].items()}
                 for c in mine if BASELINE in results[c["name"]]}
        means = sorted((n, statistics.mean(v.values())) for n, v in front.items())
        fitted = F.fit(means) if len(means) >= 3 else None
        layers, width = H.parse_size(size)
        cfg = H.options_config([mine[0]["config"], *p["extra"]])
        flops = 6 * H.non_embedding_params(layers, width) + 6 * layers * cfg["block_size"] * width
        for c in mine:
            for arm, r in results[c["name"]].items():
                arm_loss = {sd: H.reported(s) for sd, s in r["runs"].items()}
                m, flag = F.estimate(front, arm_loss, c["iters"])
                ratio = ratios[bench_key(arm, ratios)]
                row = {"size": size, "mult": c["mult"], "iters": c["iters"], "arm": arm, "best_lr": r["best_lr"],
                       "interior": r["interior"], "seeds": sorted(arm_loss), "loss": H.mean_std(list(arm_loss.values())),
                       "multiplier": m, "flag": flag, "ratio": ratio, "per_cost": m / ratio, "flops_per_token": flops,
                       "ratio_processes": timed[bench_key(arm, timed)]}
                if fitted and F.fit_steps(fitted, row["loss"][0]) is not None:
                    row["fit_multiplier"] = F.fit_steps(fitted, row["loss"][0]) / c["iters"]
                if arm != BASELINE and len(arm_loss) > 1:
                    # paired by seed with the frontier point at the arm's length; past the frontier (a bound) with the
                    # point it passes, which ran the arm's seeds (bracket)
                    at = front[(max if flag == ">" else min)(front)] if flag else front.get(c["iters"], {})
                    paired_ = [arm_loss[sd] - at[sd] for sd in arm_loss if sd in at]
                    if flag and len(paired_) > 1:  # a bound: no interval (its resamples pile up at it), the gap
                        mean, _, _, half = H.paired(paired_)
                        row["gap"] = (mean - half, mean + half)
                    elif not flag:
                        row["percentile"] = F.percentile(F.bootstrap(front, arm_loss, c["iters"], p["draws"]))
                        row["log_t"] = F.log_t(front, arm_loss, c["iters"])
                        if fitted and len(paired_) > 1:  # the seed noise the intervals face: a seed's shared offset
                            own = statistics.stdev(paired_) / math.sqrt(2)  # plus each run's own
                            shared = math.sqrt(max(0.0, statistics.variance(arm_loss.values()) - own ** 2))
                            row["coverage"] = F.coverage(fitted, sorted(front), c["iters"], m, row["seeds"], shared,
                                                         own, p["replicates"], min(400, p["draws"]))
                    row |= stated_multiplier_interval(row)
                rows.append(row)
    write_multiplier(p, rows, out, grid_lines(p, {f"{c['size']} {c['mult']}×": results[c["name"]] for c in todo},
                                              "final loss on the whole validation split"))
    H.write_json(os.path.join(out, "multiplier.json"), {"settings": p, "rows": rows, "runs": jsonable(results)})
    return rows


def stated_multiplier_interval(row):
    """{interval, excludes_1}: of the row's two intervals the one whose synthetic coverage is nearer 95% (log-t where
    nothing checked it), and whether it excludes m = 1; nothing for fewer than 3 seeds, where the intervals and their
    coverage check rest on a seed noise estimated with one degree of freedom (at 2x64 1× two seeds whose paired
    differences agreed gave a zero-width bootstrap interval whose check covered 0% of the time). Past the frontier
    (a bound, flag '>' or '<') the resampled multipliers pile up at the bound, so no interval is stated: 1 is excluded
    there where the bound is itself on 1's far side or at 1 and the 95% t-interval of the paired test-loss gap (`gap`,
    arm − the frontier point it passes) excludes 0."""
    if len(row["seeds"]) < 3:
        return {}
    if row.get("flag"):
        side = row["multiplier"] >= 1 if row["flag"] == ">" else row["multiplier"] <= 1
        return {"excludes_1": side and not row["gap"][0] <= 0 <= row["gap"][1]} if "gap" in row else {}
    cov = row.get("coverage")
    stated = "percentile" if cov and abs(cov["percentile"] - .95) < abs(cov["log_t"] - .95) else "log_t"
    return {"interval": stated, "excludes_1": not row[stated][0] <= 1 <= row[stated][1]}


def write_multiplier(p, rows, out, grids):
    """multiplier.md (its rate grids: `grids`, grid_lines') and the two figures: loss against training compute with
    the frontier, and m against length."""
    lines = [f"m = the steps the tuned baseline needs to reach an arm's loss ÷ the arm's steps, at the end of fully "
             f"decayed runs (frontier: the baseline's end points, inverted in log loss against log steps; `>`: below "
             f"the frontier's lowest point, a lower bound). Per compiled cost: m ÷ the arm's compiled ms/iter ratio. "
             f"Losses on {evaluated(p, p['corpus'])}; rates tuned on val at seed {p['tune_seed']}; seeds per row as "
             f"listed. 95%: the paired bootstrap's percentile interval ({p['draws']} draws, seeded) and the t-interval "
             f"on per-seed log multipliers; coverage: how often each covered a known multiplier in {p['replicates']} "
             f"synthetic studies with this row's seed noise. FLOPs/token: 6·(12·L·W²) + 6·L·T·W (matmuls; the geometry's "
             f"elementwise work is not counted).", "",
             "| size | length | iters | arm | best lr | seeds | loss | m per step | 95% bootstrap | 95% log-t | coverage "
             "(bootstrap, log-t) | fit m | compiled ratio | m per compiled cost | FLOPs/token | 1 excluded |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    iv = lambda r, k: f"[{r[k][0]:.2f}, {r[k][1]:.2f}]" if k in r else "–"  # noqa: E731
    for r in rows:
        cov = r.get("coverage")
        lines.append(f"| {r['size']} | {r['mult']}× | {r['iters']} | {r['arm']} | {r['best_lr']:g}"
                     f"{'' if r['interior'] else '*'} | {len(r['seeds'])} | {r['loss'][0]:.4f} ± {r['loss'][1]:.4f} | "
                     f"{r['flag']}{r['multiplier']:.2f} | {iv(r, 'percentile')} | {iv(r, 'log_t')} | "
                     + (f"{cov['percentile']:.2f}, {cov['log_t']:.2f}" if cov else "–") + " | "
                     + (f"{r['fit_multiplier']:.2f}" if "fit_multiplier" in r else "–")
                     + f" | {r['ratio']:.2f}" + (f" ({min(r['ratio_processes']):.2f}–{max(r['ratio_processes']):.2f})"
                                                if max(r["ratio_processes"]) > min(r["ratio_processes"]) else "")
                     + f" | {r['flag']}{r['per_cost']:.2f}"
                     + (f" [{r[r['interval']][0] / r['ratio']:.2f}, {r[r['interval']][1] / r['ratio']:.2f}]"
                        if "interval" in r else "") + f" | {r['flops_per_token']:,} | "
                     + (("yes" if r["excludes_1"] else "no") + (f" ({r['interval'].replace('_', '-')})"
                        if "interval" in r else f" (paired gap [{r['gap'][0]:+.4f}, {r['gap'][1]:+.4f}])")
                        if "excludes_1" in r else "–") + " |")
    lines += ["", "±: the sample std over the row's seeds. 1 excluded: whether the stated interval (of the two, the one "
              "whose synthetic coverage is nearer 95%) excludes m = 1; rows with 2 seeds state none (their intervals "
              "and coverage rest on a noise estimate with one degree of freedom); past the frontier (`>`, `<`) m is a "
              "bound with no interval, and 1 is excluded where the 95% t-interval of the paired test-loss gap (arm − "
              "the frontier point it passes) excludes 0. Per compiled cost: the stated interval ÷ the compiled ratio "
              "(the timing's own spread not included). Compiled ratio: the median over bench.py processes (their range "
              "in parentheses), " + "; ".join(
                  f"{s_}: {n} process{'es' if n > 1 else ''}" for s_, n in
                  {r["size"]: len(r["ratio_processes"]) for r in rows}.items()) + ". Frontier lengths: "
              + "; ".join(f"{s_} at {', '.join(map(str, p['frontier_at'].get(s_, p['frontier'])))}×"
                          for s_ in dict.fromkeys(r["size"] for r in rows)) + f". Made by: `{p['command']}`.", "",
              "Recipes:", ""]
    lines += [f"- {arm}: {recipe(p, cells(p)[0], arm)}" for arm in dict.fromkeys(r["arm"] for r in rows)]
    lines += grids
    H.write_text(os.path.join(out, "multiplier.md"), lines)
    sizes = list(dict.fromkeys(r["size"] for r in rows))
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    fig, axes = H.figure(2 * len(sizes), sharey=False)
    for k, (ax, size) in enumerate(zip(axes, [s_ for s_ in sizes for _ in (0, 1)])):
        for i, arm in enumerate(arms):  # by steps, then by compiled cost: steps × the arm's compiled ms/iter ratio
            pts = sorted((r["iters"] * (r["ratio"] if k % 2 else 1), r["loss"][0], r["loss"][1]) for r in rows
                         if r["size"] == size and r["arm"] == arm)
            if pts:
                xs, ys, sd = zip(*pts)
                ax.errorbar(xs, ys, yerr=sd, marker="o", capsize=3, color=f"C{i}", ls="-" if arm == BASELINE else "",
                            label=arm + (" (frontier)" if arm == BASELINE else ""))
        ax.set_xscale("log")
        ax.set(title=f"{size}: loss at the end of each run", ylabel="test loss, mean ± std over seeds",
               xlabel="compiled cost (the baseline's compiled steps)" if k % 2 else "training steps (fully decayed)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    H.save_figure(fig, os.path.join(out, "multiplier_frontier.png"))
    fig, (ax,) = H.figure(1, 6, 4)
    for i, (size, arm) in enumerate((s_, a) for s_ in sizes for a in arms if a != BASELINE):
        pts = sorted((r["iters"], r["multiplier"], *r.get(r.get("interval"), (r["multiplier"],) * 2)) for r in rows
                     if r["size"] == size and r["arm"] == arm)  # the interval the table states
        if pts:
            xs, ys, lo, hi = zip(*pts)
            ax.errorbar(xs, ys, yerr=[[y - a for y, a in zip(ys, lo)], [b - y for y, b in zip(ys, hi)]], marker="o",
                        capsize=3, label=f"{arm} ({size})")
            for r in (r for r in rows if r["size"] == size and r["arm"] == arm and r["flag"]):  # past the frontier
                ax.annotate(f"{r['flag']}{r['multiplier']:.2f} (a bound)", (r["iters"], r["multiplier"]),
                            textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.axhline(1, color="gray", lw=0.8)
    ax.set_xscale("log")
    ax.set(xlabel="the arm's training steps", ylabel="compute multiplier m (the stated 95% interval)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    H.save_figure(fig, os.path.join(out, "multiplier.png"))


def jsonable(results):
    """results with string keys (JSON's): {cell: {arm: {grid: {lr: loss}, best_lr, interior, runs: {seed: …}}}}."""
    return {c: {a: {"grid": {str(lr): v for lr, v in r["grid"].items()}, "best_lr": r["best_lr"],
                    "interior": r["interior"], "runs": {str(sd): s for sd, s in r["runs"].items()}}
                for a, r in arms.items()} for c, arms in results.items()}


REPORTS = {"sweep": report_sweep, "ladder": report_ladder, "end": report_end, "graft": report_graft,
           "multiplier": report_multiplier}

if __name__ == "__main__":
    main()
