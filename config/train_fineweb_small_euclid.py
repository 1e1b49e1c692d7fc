# The Euclidean baseline of train_fineweb_small.py.
import os

exec(open(os.path.join(os.path.dirname(__file__), "train_fineweb_small.py")).read())
curvature = "euclidean"
out_dir = "out-fineweb-small-euclid"
wandb_run_name = "fineweb-small-euclid"
