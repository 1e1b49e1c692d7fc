# A 6-layer, 384-wide curved model on FineWeb for one GPU: 262,144 tokens per step (32 × 1024 × 8),
# 5,000 steps (~1.3B tokens).
import os

exec(open(os.path.join(os.path.dirname(__file__), "train_fineweb.py")).read())
out_dir = "out-fineweb-small"
wandb_run_name = "fineweb-small"
n_layer = 6
n_head = 6
n_embd = 384
batch_size = 32
gradient_accumulation_steps = 8
learning_rate = 1.5e-3
min_lr = 1.5e-4
warmup_iters = 250
max_iters = 5_000
lr_decay_iters = 5_000
