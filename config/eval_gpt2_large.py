# config/eval_gpt2.py for OpenAI's gpt2-large: its FineWeb val loss without training (python train.py config/eval_gpt2_large.py)
import os

exec(open(os.path.join(os.path.dirname(__file__), "eval_gpt2.py")).read())
init_from = "gpt2-large"
out_dir = "out-eval-gpt2-large"
