"""
How much training does mixed curvature save (issue 36)? The compute multiplier at the end of fully decayed runs,
with a 95% interval over seeds, at two sizes on the code corpus: the tuned baseline's frontier at 1× to 32× of 600
iterations, each arm at 1×, 4× and 16×, every rate tuned √2-interior at seed 1337 on val, the losses on test at fresh
seeds (5 at each arm's 16× point and at the frontier points that bracket it, 2 elsewhere). 2x64 first, whole, then
4x128 (its frontier stops at 16×: a 32× run there is ~30 min). The baseline and the curved arms decay linearly to
zero (measured lower than cosine to lr/10 at 4× and 16×: docs/results.md, "Decay to zero"); nGPT keeps its yardstick
recipe.

    python study.py plans/multiplier.py --dry_run      # the plan and its hours
    python study.py plans/multiplier.py                # run or resume it
"""
kind = "multiplier"
out = "results/multiplier"
corpus = "pycode"
sizes = ["2x64", "4x128"]
frontier = [1, 2, 4, 8, 16, 32]
frontier_at = {"4x128": [1, 2, 4, 8, 16]}
lengths = [1, 4, 16]
arms = ["euclid+smear", "free-prev-tangent", "ngpt", "hyp-prev-tangent"]
arm_lengths = {"hyp-prev-tangent": [16]}  # the default block, at the longest length of each size
max_extend = 4
# 4x128 starts each arm from the √2 grid around its best at 2x64 at its first length (1×; the default block's: 16×),
# on val at seed 1337, not the coarse grid, which at 2x64 1× took 9 runs an arm: still tuned √2-interior, in fewer runs
# The default block's start was set later, when mixed curvature's 16x tuning at 4x128 was done and before the default
# block's began: its 2x64 16x best (0.00548) times the factor its curved sibling's 16x best fell by between the sizes
# (0.00354 to 0.00175, about 1/2), so that the √2 grid starts near where it will end
prior = {"pycode 4x128": {"euclid+smear": 0.0132, "free-prev-tangent": 0.01, "ngpt": 0.0132,
                          "hyp-prev-tangent": 0.00274}}
schedule = "linear0"
arm_schedule = {"ngpt": "cosine"}  # Muon, no warmup, cosine to lr/10: the recipe the yardstick chose
tune_seed = 1337
seeds = [1, 2]
bracket_seeds = [1, 2, 3, 4, 5]
# a compiled ratio moved 1.05 to 1.17 between bench.py processes at 2x64: the median of three, timed before runs start
bench_processes = 3
workers = 2  # two single-threaded runs side by side: measured sooner than one 2-thread run after another
threads = 1
extra = ["--eval_iters=10"]
