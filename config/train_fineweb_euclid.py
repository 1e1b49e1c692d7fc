# The Euclidean baseline of train_fineweb.py: the same run with the plain nanoGPT block.
import os

exec(open(os.path.join(os.path.dirname(__file__), "train_fineweb.py")).read())
curvature = "euclidean"
out_dir = "out-fineweb-euclid"
wandb_run_name = "fineweb-124m-euclid"
