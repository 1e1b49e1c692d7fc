# The modern CPU model (train_shakespeare_char_modern.py) on Python source code at byte level (data/pycode: SymPy
# 1.14.0's .py files, 256 byte tokens). Everything but the data is the Shakespeare config's, so the two corpora
# compare like for like. The whole-split evaluation (eval_full) reads the first 262,144 validation bytes: the val
# split (3.0 MB) is too large to read at the end of every run, and a fixed text serves every arm and seed alike.
import os

exec(open(os.path.join(os.path.dirname(__file__), "train_shakespeare_char_modern.py")).read())
out_dir = "out-pycode-modern"
wandb_run_name = "pycode-modern"
dataset = "pycode"
eval_full_tokens = 262_144
