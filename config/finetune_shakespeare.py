# Fine-tune OpenAI's GPT-2 on Shakespeare in GPT-2 BPE tokens (python data/shakespeare/prepare.py), as nanoGPT's
# finetune_shakespeare.py: a small constant learning rate, few steps, a checkpoint only when val loss improves.
# One GPU; gpt2-xl (nanoGPT's choice) needs a large one. The curved twin: finetune_shakespeare_curved.py.
out_dir = "out-finetune-shakespeare"
wandb_run_name = "finetune-shakespeare"
init_from = "gpt2"  # or gpt2-medium, gpt2-large, gpt2-xl, or a Hugging Face GPT-2 directory
dataset = "shakespeare"
curvature = "euclidean"
dropout = 0.0
block_size = 1024
batch_size = 1
gradient_accumulation_steps = 32  # 32 sequences of 1,024 tokens per step
max_iters = 20
eval_interval = 5
eval_iters = 40
log_interval = 1
learning_rate = 3e-5
decay_lr = False
always_save_checkpoint = False
device = "auto"
