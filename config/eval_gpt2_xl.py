# The val loss of OpenAI's gpt2-xl on FineWeb (python data/fineweb/prepare.py), without training, as nanoGPT's
# eval_gpt2*.py: python train.py config/eval_gpt2_xl.py
init_from = "gpt2-xl"
out_dir = "out-eval-gpt2-xl"
wandb_log = False
eval_only = True
curvature = "euclidean"
dataset = "fineweb"
block_size = 1024
batch_size = 8
val_tokens = 10_485_760  # the speedrun's budget: 1,280 sequences of 8 × 1,024 tokens
device = "auto"
