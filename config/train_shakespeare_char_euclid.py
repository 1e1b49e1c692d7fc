# The Euclidean baseline of train_shakespeare_char.py: the same run with the plain nanoGPT block.
import os

exec(open(os.path.join(os.path.dirname(__file__), "train_shakespeare_char.py")).read())
curvature = "euclidean"
out_dir = "out-shakespeare-char-euclid"
wandb_run_name = "shakespeare-char-euclid"
