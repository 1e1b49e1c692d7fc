# A curved character model on one GPU, sized like nanoGPT's baby GPT (6 layers, 6 heads, 384 wide).
out_dir = "out-shakespeare-char"
wandb_run_name = "shakespeare-char"
dataset = "shakespeare_char"
eval_interval = 250
eval_iters = 200
log_interval = 10
always_save_checkpoint = False  # small data: it overfits, so keep the best val loss
batch_size = 64
block_size = 256
gradient_accumulation_steps = 1
n_layer = 6
n_head = 6
n_embd = 384
dropout = 0.2
bias = False
curvature = "hyperbolic"
curvature_init = -0.02  # √|κ|·‖x‖ = O(1) for head_size 64 (see docs/model.md, "Scale")
reference = "prev_token"
residual = "tangent"
learning_rate = 1e-3
max_iters = 5000
lr_decay_iters = 5000
min_lr = 1e-4
beta2 = 0.99
warmup_iters = 100
compile = True
