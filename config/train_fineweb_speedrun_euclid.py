# The Euclidean baseline of train_fineweb_speedrun.py: the speedrun's ModernArch model with no geometry.
import os

exec(open(os.path.join(os.path.dirname(__file__), "train_fineweb_speedrun.py")).read())
curvature = "euclidean"
out_dir = "out-fineweb-speedrun-euclid"
wandb_run_name = "fineweb-speedrun-124m-euclid"
