"""
The modern-block experiment (docs/results.md): every arm on Shakespeare-char at the same grid and budget, each
tuned to √2, then the other seeds at its best; val at equal steps and equal wall-clock.

    python study.py plans/sweep.py                    # 25 runs, ~25 min on 2 cores, one at a time
"""
kind = "sweep"
out = "out-sweep-modern"
arms = ["euclid", "euclid+smear", "zero-prev-tangent", "hyp-prev-tangent", "hyp-prev-tangent+smear"]
tune_seed = 1337
seeds = [1337, 1, 2]  # as the docs' tables were made: the tuning seed is reported too (the table says so)
report_tune_seed = True
extra = ["--eval_iters=10"]
