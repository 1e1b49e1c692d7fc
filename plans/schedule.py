"""
Does decay to zero end lower (the multiplier study's first measurement, issue 36)? The pycode 2x64 baseline at 4× and
16× with linear decay to zero, each length's rate tuned √2-interior on val at seed 1337, the losses on test at seeds
1, 2, 3: its cosine-to-lr/10 counterpart is plans/yardstick.py's baseline (the same seeds, tuning and text). The
better schedule is the baseline's and the curved arms' in plans/multiplier.py.

    python study.py plans/schedule.py          # ≈ 1.5 h on 2 cores; resumes
"""
kind = "end"
out = "results/schedule"
schedule = "linear0"
blocks = ["pycode:2x64:4:euclid+smear", "pycode:2x64:16:euclid+smear"]
max_extend = 4
tune_seed = 1337
seeds = [1, 2, 3]
extra = ["--eval_iters=10"]
