"""A picture of completions from the bottom rows: a model's own candidates beside a proposal's.

    python benchmarks/bottom_picture.py --picture docs/bottom.png

For each of the first 6 MNIST test digits: the digit, its bottom 14 rows as kept (the rest grey),
6 completions by the model from 128 candidates that the proposal (a four-orientation model) draws
from the kept side, then 6 from 128 of the model's own, drawn top first (complete without a
proposal). Prints each digit's effective sample size both ways.
"""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import pixelcnn  # noqa: E402
from pixelcnn.data import load_mnist  # noqa: E402
from pixelcnn.plotting import save_grid  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="gated-pixelcnn-5x5")
    p.add_argument("--proposal", default="gated-pixelcnn-5x5-orientations")
    p.add_argument("--data-dir", default="data", help="torchvision MNIST root (default: %(default)s)")
    p.add_argument("--picture", type=Path, required=True, help="where to save the PNG")
    args = p.parse_args(argv)
    model, proposal = pixelcnn.load_model(args.model), pixelcnn.load_model(args.proposal)
    known = torch.arange(28)[:, None].expand(28, 28) >= 14  # the bottom 14 rows
    rows = []
    print("| test digit | its label | ESS of the 128, drawn by the proposal | ESS of the model's own 128 |")
    print("| ---: | ---: | ---: | ---: |")
    digits, labels = load_mnist(args.data_dir, train=False)[:2]
    for i, digit in enumerate(digits[:6].split(1)):
        *_, drawn = pixelcnn.complete_stream(model, 6, digit, known, seed=i, proposal=proposal, every=784)
        *_, own = pixelcnn.complete_stream(model, 6, digit, known, seed=i, every=784)
        kept = digit.clone()
        kept[:, :, ~known] = 0.5  # grey
        rows += [digit, kept, drawn.images, own.images]
        print(f"| {i} | {int(labels[i])} | {drawn.ess.item():.1f} | {own.ess.item():.1f} |",
              flush=True)
    save_grid(torch.cat(rows), args.picture, nrow=14)
    print(f"\nwrote {args.picture}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
