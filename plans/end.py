"""
At the end of training (docs/results.md): does mixed curvature's per-step lead survive a fine tuner, longer training,
a hypersphere (nGPT) control and a second corpus? Every arm at the end of fully decayed runs of 1×, 4× and 16× the
ladder's 600 iterations. Kept as it was made at commit 4e5fa9a (history): pycode's split and evaluation then, the
rate tuned at seed 1337 and that seed among the reported ones. `--rebuild=DIR` rebuilds its tables from the
committed summaries; to run it again, `git checkout 4e5fa9a && python study.py --out results/study --extra
--eval_iters=10` (≈ 6 h on 2 cores).

Blocks, in this order so that each finished one is a result: 1× shakespeare_char 4x128, pycode 2x64,
shakespeare_char 6x192; 4× pycode 2x64, shakespeare_char 4x128 (without κ ≡ 0: it gained nothing at 1× and the
ladder's 4× check found it within noise); 16× pycode 2x64 (without κ ≡ 0). A 1× block whose arm the size ladder had
run on the √10 grid starts from the √2 grid around that best (prior).
"""
kind = "end"
out = "results/study"
history = True
arms = ["euclid+smear", "ngpt", "zero-prev-tangent", "free-prev-tangent"]
blocks = ["shakespeare_char:4x128:1", "pycode:2x64:1", "shakespeare_char:6x192:1",
          "pycode:2x64:4", "shakespeare_char:4x128:4:euclid+smear,ngpt,free-prev-tangent",
          "pycode:2x64:16:euclid+smear,ngpt,free-prev-tangent"]
prior = {"shakespeare_char 4x128": {"euclid+smear": 0.01, "zero-prev-tangent": 0.003, "hyp-prev-tangent": 0.003,
                                    "free-prev-tangent": 0.003},
         "shakespeare_char 6x192": {"euclid+smear": 0.003, "zero-prev-tangent": 0.003, "hyp-prev-tangent": 0.003,
                                    "free-prev-tangent": 0.003}}
sampler = ""  # the windows were drawn at random then
max_extend = 4
tune_seed = 1337
seeds = [1337, 1, 2]
extra = ["--eval_iters=10"]
