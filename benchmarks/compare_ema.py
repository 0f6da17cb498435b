"""Does the average of the weights beat the weights themselves? Both, from one training run.

    python benchmarks/compare_ema.py --name gated-pixelcnn-5x5 --test 1000

A run trained with `train.py --ema DECAY` keeps, in its checkpoint, the weights the optimiser
reached (`model.*`) and their exponential moving average (`ema.module.*`, what it evaluates and
ships). This scores both on the same first --test test digits, nats per pixel: with the label
dropped, and for a labelled model with p(x) marginalised over its labels. One variable differs:
which weights. Prints a markdown table.
"""

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import pixelcnn  # noqa: E402
from pixelcnn.data import load_mnist  # noqa: E402
from pixelcnn.sampling import n_labels  # noqa: E402
from pixelcnn.weights import build_model  # noqa: E402


def weights_of(tensors: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def score(model, images: torch.Tensor) -> dict:
    """Nats per pixel on images: label dropped (or the model's only p(x)), and marginalised."""
    pixels = images.numel()
    dropped = pixelcnn.DROPPED if n_labels(model) else None
    out = {"label dropped": float(torch.cat([pixelcnn.surprise(model, c, label=dropped).nats
                                             for c in images.split(100)]).double().sum()) / pixels}
    if n_labels(model):
        out["marginalised"] = float(pixelcnn.marginal_nats(model, images).double().sum()) / pixels
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", required=True, help="the run: checkpoints/NAME.safetensors (and weights/NAME)")
    p.add_argument("--weights", default=ROOT / "weights", type=Path)
    p.add_argument("--checkpoints", default=ROOT / "checkpoints", type=Path)
    p.add_argument("--data-dir", default="data", help="torchvision MNIST root (default: %(default)s)")
    p.add_argument("--test", type=int, default=1000, help="test digits scored (default: %(default)s)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's); 1 beside a training run")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    path = args.checkpoints / f"{args.name}.safetensors"
    tensors = load_file(path)
    with safe_open(path, "pt") as f:
        meta, state = (json.loads(f.metadata()[k]) for k in ("meta", "state"))
    if not weights_of(tensors, "ema.module."):
        print(f"compare_ema.py: error: {path} holds no average of the weights (trained without --ema)",
              file=sys.stderr)
        return 1
    config = meta["model_config"]
    images = load_mnist(args.data_dir, train=False)[0][:args.test]
    rows = {}
    for which, prefix in (("the weights", "model."), ("their average", "ema.module.")):
        model = build_model(config)
        model.load_state_dict(weights_of(tensors, prefix), strict=True)
        t0 = time.perf_counter()
        rows[which] = score(model.eval(), images)
        print(f"{which}: {rows[which]} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    shipped = load_file(args.weights / args.name / "model.safetensors")
    average = weights_of(tensors, "ema.module.")
    same = shipped.keys() == average.keys() and all(torch.equal(shipped[k], average[k]) for k in shipped)
    print(f"{args.name}: its checkpoint after {state['epoch']} epochs and {state['step']} steps (decay "
          f"{meta['train_config']['ema']}); the first {len(images):,} test digits, nats per pixel; weights/{args.name} "
          f"holds {'this average' if same else 'other weights than this average'}.\n")
    columns = list(rows["the weights"])
    print("| weights | " + " | ".join(columns) + " |")
    print("| --- |" + " ---: |" * len(columns))
    for which, figures in rows.items():
        print(f"| {which} | " + " | ".join(f"{figures[c]:.4f}" for c in columns) + " |")
    print("| average minus weights | " + " | ".join(
        f"{rows['their average'][c] - rows['the weights'][c]:+.4f}" for c in columns) + " |")
    print(f"\nOn {platform.platform()}, torch {torch.__version__}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
