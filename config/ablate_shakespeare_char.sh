#!/usr/bin/env bash
# The ablation grid on Shakespeare-char (the CPU config, 2000 iterations each, one seed): which ingredient
# moves the val loss — curvature, or the previous-token reference / token shift that comes with it? The curved runs
# are the hyperbolic block the grid was recorded with (κ₀ = −0.05; the CPU config is now mixed curvature, from 0).
#   bash config/ablate_shakespeare_char.sh            # all runs, then out-ablate/ablation_*.png
#   ITERS=500 OUT=out-quick bash config/ablate_shakespeare_char.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out-ablate}
ITERS=${ITERS:-2000}
PY=${PYTHON:-python}
run() {
  local name=$1; shift
  echo "=== $name"
  "$PY" train.py config/train_shakespeare_char_cpu.py --out_dir="$OUT/$name" --wandb_run_name="ablate-$name" \
    --max_iters="$ITERS" --lr_decay_iters="$ITERS" --overwrite=True "$@"  # a rerun replaces the earlier grid
}
run euclid             --curvature=euclidean
run zero-prev-mobius   --curvature=zero --reference=prev_token --residual=mobius
run zero-prev-tangent  --curvature=zero --reference=prev_token --residual=tangent
run hyp-prev-mobius    --curvature=hyperbolic --curvature_init=-0.05 --reference=prev_token --residual=mobius
run hyp-prev-tangent   --curvature=hyperbolic --curvature_init=-0.05 --reference=prev_token --residual=tangent
run hyp-origin-mobius  --curvature=hyperbolic --curvature_init=-0.05 --reference=origin --residual=mobius
"$PY" plot.py "$OUT"/euclid "$OUT"/zero-* "$OUT"/hyp-* --out "$OUT"/ablation --xaxis iter
