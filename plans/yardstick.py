"""
The yardstick's check (docs/results.md, The yardstick): the pycode 2x64 cell of the end-of-training study on the
fixed code corpus (a stated exclusion rule, a split stratified by package, all of val and test scored), the rate
tuned on val at seed 1337 and the losses reported on test at seeds 1, 2, 3 that played no part in tuning; nGPT on
both recipes (the baseline's Muon and its published AdamW), at 4× and 16× the 600-iteration length.

    python data/pycode/prepare.py && python study.py plans/yardstick.py     # ≈ 5 h on 2 cores; resumes
"""
kind = "end"
out = "results/yardstick"
blocks = ["pycode:2x64:4:euclid+smear,free-prev-tangent,ngpt,ngpt-adamw",
          "pycode:2x64:16:euclid+smear,ngpt,ngpt-adamw"]
arms = ["euclid+smear", "free-prev-tangent", "ngpt", "ngpt-adamw"]
max_extend = 4
tune_seed = 1337
seeds = [1, 2, 3]
extra = ["--eval_iters=10"]
