# The hypersphere control: the CPU Shakespeare-char model (train_shakespeare_char_cpu.py) with nGPT's block
# (Loshchilov et al. 2024; model.NGPTBlock): every hidden state, embedding and weight vector on the unit sphere,
# Euclidean, rotary positions, no biases, separate input and output embeddings. Trained as the paper trains it:
# AdamW without weight decay (the weights are put back on the sphere after every step instead) and no warmup;
# cosine decay as every other run here. No curvature: it asks whether "a normalised stream" explains what the
# curved models gain.
import os

exec(open(os.path.join(os.path.dirname(__file__), "train_shakespeare_char_cpu.py")).read())
out_dir = "out-shakespeare-char-ngpt"
wandb_run_name = "shakespeare-char-ngpt"
block = "ngpt"
curvature = "euclidean"
pos_embedding = "rope"
tie_embeddings = False
weight_decay = 0.0
warmup_iters = 0
beta2 = 0.95
learning_rate = 1e-2
min_lr = 1e-3
