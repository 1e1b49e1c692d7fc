# The Euclidean baseline of train_shakespeare_char_modern.py: the same modern block with no geometry.
import os

exec(open(os.path.join(os.path.dirname(__file__), "train_shakespeare_char_modern.py")).read())
curvature = "euclidean"
out_dir = "out-shakespeare-char-modern-euclid"
wandb_run_name = "shakespeare-char-modern-euclid"
