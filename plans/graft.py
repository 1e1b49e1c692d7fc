"""
Grafting curvature onto a pretrained model, in miniature (docs/pretrained.md): pretrain the Euclidean CPU config,
export it as GPT-2, fine-tune it per arm (euclid; graft: learnable κ and reference share from 0; share: κ ≡ 0 with
the share alone) and seed, κ and α at graft_lr_mult × the rate.

    python study.py plans/graft.py --on_code_change=reuse          # ≈ 9 min on 2 cores
    python study.py plans/graft.py --init_from=gpt2 --base=config/finetune_shakespeare.py --iters=300 --lr=3e-5 \\
        --graft_lr_mult=100.0 --eval_interval=20 --device=cuda --out=results/graft-gpt2     # GPT-2, on a GPU
"""
kind = "graft"
out = "results/graft"
arms = ["euclid", "graft", "share"]
seeds = [1337, 1, 2]
