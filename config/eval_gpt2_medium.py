# config/eval_gpt2.py for OpenAI's gpt2-medium: its FineWeb val loss without training (python train.py config/eval_gpt2_medium.py)
import os

exec(open(os.path.join(os.path.dirname(__file__), "eval_gpt2.py")).read())
init_from = "gpt2-medium"
out_dir = "out-eval-gpt2-medium"
