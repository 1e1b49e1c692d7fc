# GPT-2 small (124M) on FineWeb sample-10BT, curved. 524,288 tokens per step (16 × 1024 × 32 micro-steps);
# under torchrun the 32 micro-steps are shared by the processes (8 GPUs: 4 each). One pass of ~10B tokens.
out_dir = "out-fineweb"
wandb_log = True
wandb_run_name = "fineweb-124m"
dataset = "fineweb"
batch_size = 16
block_size = 1024
gradient_accumulation_steps = 32
val_tokens = 10_485_760
eval_interval = 250
log_interval = 10
n_layer = 12
n_head = 12
n_embd = 768
dropout = 0.0
bias = False
curvature = "hyperbolic"
curvature_init = -0.02  # √|κ|·‖x‖ = O(1) for head_size 64
reference = "prev_token"
residual = "tangent"
learning_rate = 6e-4
min_lr = 6e-5
weight_decay = 0.1
beta1 = 0.9
beta2 = 0.95
grad_clip = 1.0
warmup_iters = 715
max_iters = 19_073
lr_decay_iters = 19_073
compile = True
peak_flops = 989e12  # H100 SXM dense bf16; set your accelerator's for a meaningful MFU
