"""
The compute multiplier at GPT-2 small on FineWeb, for a GPU machine (not run here): plans/multiplier.py's design on
the speedrun's block and recipe, 124M parameters (12x768, heads of 128), each run `python train.py` on one GPU
(524,288 tokens per step by gradient accumulation), 1× = 300 steps (157M tokens) up to 32× (5.0B tokens).

    python data/fineweb/prepare.py
    python study.py plans/multiplier_fineweb.py --dry_run    # the plan; hours at flop_rate (one H100, ~40% MFU)
    python study.py plans/multiplier_fineweb.py              # run or resume it
"""
kind = "multiplier"
out = "results/multiplier-fineweb"
corpora = {"fineweb": "config/train_fineweb_speedrun.py"}
corpus = "fineweb"
sizes = ["12x768"]
head_size = 128
iters = 300
frontier = [1, 2, 4, 8, 16, 32]
lengths = [1, 4, 16]
arms = ["euclid+smear", "free-prev-tangent", "ngpt", "hyp-prev-tangent"]
arm_lengths = {"hyp-prev-tangent": [16]}
lrs = [1e-3, 3.6e-3, 1e-2]
max_extend = 4
schedule = "linear0"  # as on the code corpus: decay to zero measured lower than cosine to lr/10
arm_schedule = {"ngpt": "cosine"}  # nGPT on the recipe the yardstick chose
tune_seed = 1337
seeds = [1, 2]
bracket_seeds = [1, 2, 3, 4, 5]
sampler = ""  # shards are read in order; the val shards' first val_tokens are the evaluation text
device = "cuda"
flop_rate = 4e14
extra = ["--compile=True"]
