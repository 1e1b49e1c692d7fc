# The val loss of OpenAI's gpt2-medium on FineWeb (python data/fineweb/prepare.py), without training, as nanoGPT's
# eval_gpt2*.py: python train.py config/eval_gpt2_medium.py
init_from = "gpt2-medium"
out_dir = "out-eval-gpt2-medium"
wandb_log = False
eval_only = True
curvature = "euclidean"
dataset = "fineweb"
block_size = 1024
batch_size = 8
val_tokens = 10_485_760  # the speedrun's budget: 1,280 sequences of 8 × 1,024 tokens
device = "auto"
