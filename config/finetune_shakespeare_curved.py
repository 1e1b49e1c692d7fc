# finetune_shakespeare.py with curvature grafted on (model.py's docstring): a learnable κ per block and head from
# 0, of either sign, and a learnable per-head share α of the previous token's point from 0, so the model starts
# as GPT-2 (equal logits at step 0) and learns its way out. κ and α learn at 100 × the weights' small rate.
import os

exec(open(os.path.join(os.path.dirname(__file__), "finetune_shakespeare.py")).read())
out_dir = "out-finetune-shakespeare-curved"
wandb_run_name = "finetune-shakespeare-curved"
curvature = "free"
curvature_init = 0.0
reference = "prev_token"
residual = "tangent"
reference_share = True
curvature_lr_mult = 100.0  # κ and α at 3e-3, the rate at which κ learns from scratch
