"""
Does decay to zero end lower (the multiplier study's first measurement, issue 36)? The pycode 2x64 baseline at 4× and
16× with cosine decay to lr/10 (the studies so far) and with linear decay to zero (euclid+smear+linear0; Bergsma et al.
2025), each schedule's rate tuned √2-interior on val at seed 1337 from the √2 grid around the yardstick's 4× best, the
losses on test at seeds 1, 2, 3, paired by seed. Two single-threaded runs side by side, as the multiplier study runs
(docs/results.md, How the studies use this machine), so the cosine arm doubles as the check that one thread per run
leaves the yardstick's 2-thread baseline within run-to-run noise. The better schedule is the baseline's and the
curved arms' in plans/multiplier.py.

    python study.py plans/schedule.py          # ≈ 1 h on 2 cores; resumes
"""
kind = "end"
out = "results/schedule"
arms = ["euclid+smear", "euclid+smear+linear0"]
blocks = ["pycode:2x64:4", "pycode:2x64:16"]
prior = {"pycode 2x64": {"euclid+smear": 0.00548, "euclid+smear+linear0": 0.00548}}  # results/yardstick's 4× best
max_extend = 4
tune_seed = 1337
seeds = [1, 2, 3]
workers = 2
threads = 1
extra = ["--eval_iters=10"]
