# The modern CPU model (train_shakespeare_char_modern.py) on Python source code at byte level (data/pycode: SymPy
# 1.14.0's .py files, 256 byte tokens). Everything but the data is the Shakespeare config's, so the two corpora
# compare like for like. The whole-split evaluation (eval_full) reads all of val and all of test (1.3 and 1.4 MB, about
# 20 s each at 2x64 on one CPU thread): the yardstick (docs/results.md) scores whole splits, never a slice.
import os

exec(open(os.path.join(os.path.dirname(__file__), "train_shakespeare_char_modern.py")).read())
out_dir = "out-pycode-modern"
wandb_run_name = "pycode-modern"
dataset = "pycode"
