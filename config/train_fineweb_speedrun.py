# GPT-2 small on FineWeb following the speedrun's ModernArch record, curved. The record:
#   KellerJordan/modded-nanogpt, records/track_1_short/2024-10-14_ModernArch/train_gpt2.py (15.2 minutes to 3.28
#   val loss on 8×H100): 12 layers, 6 heads of 128, 768 wide, vocab 50304, tied embeddings; rotary positions,
#   RMSNorm without gains, QK-norm, ReLU², zero-initialised output projections; 8×64 sequences of 1024 tokens per
#   step (524,288) for 5,100 steps (2.67B tokens); AdamW (lr 0.0036, betas 0.9/0.95, no weight decay) for the
#   embedding/head and Muon (momentum 0.95, Nesterov, q, k and v orthogonalised as three matrices, no weight decay)
#   for the blocks' matrices; no gradient clipping; no warmup, linear warmdown over the last 1,450 steps;
#   10,485,760 validation tokens every 125 steps.
# Aligned here: Muon as the record's (runtime.Muon: the q, k, v split, no weight decay), no weight decay, no
# clipping, betas, attention scale (1/√128, the record's own at head_size 128), sizes, tokens, steps, evaluation.
# What still differs, and why:
# - One learning rate for both optimizers: runtime.Muon scales its update to AdamW's RMS (0.2·√max(rows, cols)),
#   where the record runs Muon at 0.02 with √max(1, rows/cols); so learning_rate is the record's AdamW rate.
# - The schedule is train.py's: cosine to min_lr = 0 over all steps, no warmup, instead of the trapezoid.
# - Soft-cap and smear (later records) are off; they are switches for the ablation.
# - The curved twin adds the geometry: hyperbolic, κ₀ = −0.008 ≈ −1/head_size for head_size 128 (see docs/model.md:
#   Scale), the block plans/multiplier_fineweb.py's hyperbolic arm reads; --curvature=free --curvature_init=0.0 is
#   mixed curvature, the default block.
#   torchrun --standalone --nproc_per_node=8 train.py config/train_fineweb_speedrun.py
import os

exec(open(os.path.join(os.path.dirname(__file__), "train_fineweb.py")).read())
out_dir = "out-fineweb-speedrun"
wandb_run_name = "fineweb-speedrun-124m"
n_layer = 12
n_head = 6
n_embd = 768
pos_embedding = "rope"
norm = "rmsnorm"
qk_norm = True
mlp = "relu2"
tie_embeddings = True
logit_softcap = 0.0
zero_init_proj = True
smear = False
curvature = "hyperbolic"
curvature_init = -0.008
optimizer = "muon"
batch_size = 32
gradient_accumulation_steps = 16  # 32 × 16 = 512 sequences = 524,288 tokens per step; 8 GPUs: 2 micro-steps each
learning_rate = 0.0036
min_lr = 0.0
weight_decay = 0.0
grad_clip = 0.0  # the record does not clip
beta1 = 0.9
beta2 = 0.95
warmup_iters = 0
max_iters = 5_100
lr_decay_iters = 5_100
eval_interval = 125
