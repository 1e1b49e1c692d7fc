# The Euclidean baseline of train_shakespeare_char_cpu.py: the same run with the plain nanoGPT block.
import os

exec(open(os.path.join(os.path.dirname(__file__), "train_shakespeare_char_cpu.py")).read())
curvature = "euclidean"
out_dir = "out-shakespeare-char-cpu-euclid"
wandb_run_name = "shakespeare-char-cpu-euclid"
