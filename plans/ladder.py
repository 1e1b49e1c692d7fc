"""
Does curvature's gain hold as the model grows? The size ladder (docs/results.md): the arms at four sizes on
Shakespeare-char, 600 iterations, the √10 grid without refinement, Δ at equal steps, eager time and compiled cost,
and 4x128 at 4× its length. As it was made (before the fine tuner): reruns reuse the committed runs.

    python study.py plans/ladder.py --on_code_change=reuse        # the CPU ladder; resumes
    python study.py plans/ladder.py --quick=True --out=out-ladder-quick    # two tiny sizes: the pipeline
    python study.py plans/ladder.py --base=config/train_fineweb_speedrun_euclid.py --sizes="['6x384','12x768']" \\
        --head_size=128 --iters="[1000,5100]" --lrs="[1e-3,3.6e-3,1e-2]" --device=cuda --extra --compile=True
"""
kind = "ladder"
out = "results/ladder"
report_tune_seed = True
arms = ["euclid+smear", "zero-prev-tangent", "hyp-prev-tangent"]
refine = False
full_eval = False
tune_seed = 1337
seeds = [1337, 1, 2]  # as it was made: the tuning seed is reported too (the table says so)
extra = ["--eval_iters=10"]
