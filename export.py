"""
Write a trained Euclidean kappaGPT model as a Hugging Face GPT-2 checkpoint, which transformers opens with
GPT2LMHeadModel.from_pretrained and kappaGPT with init_from=<dir>.

    python export.py out-euclid                   # out-euclid/ckpt.pt → out-euclid/hf/
    python export.py out-euclid --to hf-shakespeare

Writes config.json and model.safetensors (and kappagpt_vocab.json for a character vocabulary, which GPT-2's
tokenizer cannot decode). A curved model has no GPT-2 equivalent: that is an error, and nothing is written.
"""
import argparse
import os
import sys

import pretrained
from runtime import RunError, load_checkpoint, model_from_checkpoint


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", help="a training run's directory, holding ckpt.pt")
    parser.add_argument("--to", help="the Hugging Face checkpoint's directory (default OUT_DIR/hf)")
    args = parser.parse_args(argv)
    to = args.to or os.path.join(args.out_dir, "hf")
    try:
        ckpt = load_checkpoint(os.path.join(args.out_dir, "ckpt.pt"))
        pretrained.export(model_from_checkpoint(ckpt), to, ckpt.get("meta"))
    except RunError as e:
        sys.exit(f"error: {e}")
    print(f"wrote {to} (config.json, model.safetensors): open it with GPT2LMHeadModel.from_pretrained({to!r}) or "
          f"train.py --init_from={to}")
    return to


if __name__ == "__main__":
    main()
