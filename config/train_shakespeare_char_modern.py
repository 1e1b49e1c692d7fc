# The CPU Shakespeare-char model (train_shakespeare_char_cpu.py) on the GPT-2 speedrun's modern block
# (modded-nanogpt): rotary positions, RMSNorm, QK-norm, ReLU² MLP, untied head, logit soft-cap, zero-initialised
# output projections and the smear of the previous token's embedding, with Muon for the blocks' matrices.
# Curved (hyperbolic, per-head κ, prev_token reference, tangent residual); _euclid is its Euclidean twin.
# The learning rate is the best of the Muon sweep in docs/results.md on the GPT-2 block, not tuned for this one.
import os

exec(open(os.path.join(os.path.dirname(__file__), "train_shakespeare_char_cpu.py")).read())
out_dir = "out-shakespeare-char-modern"
wandb_run_name = "shakespeare-char-modern"
pos_embedding = "rope"
norm = "rmsnorm"
qk_norm = True
mlp = "relu2"
tie_embeddings = False
logit_softcap = 15.0
zero_init_proj = True
smear = True
optimizer = "muon"
learning_rate = 1e-2
min_lr = 1e-3
