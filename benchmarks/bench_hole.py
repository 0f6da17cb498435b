"""Time and peak memory of completing a central hole, for several numbers of candidates.

    python benchmarks/bench_hole.py                                   # the flagship, 128 / 512 / 1024
    python benchmarks/bench_hole.py --model pixelcnn --candidates 128 256 --n 8
    python benchmarks/bench_hole.py --picture docs/hole.png       # also a picture: 6 test digits, 7 completions each

Each row runs in a fresh Python process, so that its peak resident memory (ru_maxrss) is its
own: `complete(model, n, digit, known)` on MNIST's first test digit with everything known but
the central 14x14 square, one torch thread, the sampler's own choice of shards. Prints a
markdown table: seconds, peak RSS and what the process held before completing, the mean
effective sample size of the final weights.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ONE = """
import json, resource, sys, time
import torch
import pixelcnn
from pixelcnn.data import load_mnist

model_name, n, candidates, data = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
torch.set_num_threads(1)
model = pixelcnn.load_model(model_name)
digit = load_mnist(data, train=False)[0][:1]
known = torch.ones(28, 28, dtype=torch.bool)
known[7:21, 7:21] = False
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
before = rss()
t0 = time.perf_counter()
*_, last = pixelcnn.complete_stream(model, n, digit, known, seed=0, candidates=candidates, every=784)
seconds = time.perf_counter() - t0
assert torch.equal(last.images[:, :, known].float(), digit[:, :, known].expand(n, -1, -1).float())
print(json.dumps(dict(seconds=seconds, peak=rss(), before=before, ess=float(last.ess.mean()))))
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="gated-pixelcnn-5x5")
    p.add_argument("--n", type=int, default=8, help="completions (default: %(default)s)")
    p.add_argument("--candidates", type=int, nargs="+", default=[128, 512, 1024])
    p.add_argument("--data-dir", default="data", help="torchvision MNIST root (default: %(default)s)")
    p.add_argument("--picture", type=Path,
                   help="also save a picture here: for each of the first 6 test digits, the digit, the hole, and 7 "
                        "completions from 128 candidates")
    args = p.parse_args(argv)
    print(f"{args.n} completions of a central 14x14 hole in MNIST's first test digit, {args.model}\n")
    print("| candidates | seconds | peak RSS (MiB) | RSS before (MiB) | mean ESS |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for c in args.candidates:
        out = subprocess.run([sys.executable, "-c", ONE, args.model, str(args.n), str(c), args.data_dir],
                             cwd=ROOT, capture_output=True, text=True, env={"PYTHONPATH": str(ROOT),
                                                                          "OMP_NUM_THREADS": "1", "PATH": ""})
        if out.returncode:
            print(out.stderr, file=sys.stderr)
            return 1
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| {c} | {r['seconds']:.2f} | {r['peak']:,.0f} | {r['before']:,.0f} | {r['ess']:.1f} |", flush=True)
    if args.picture:
        picture(args)
    return 0


def picture(args) -> None:
    import torch

    import pixelcnn
    from pixelcnn.data import load_mnist
    from pixelcnn.plotting import save_grid

    model = pixelcnn.load_model(args.model)
    digits = load_mnist(args.data_dir, train=False)[0][:6]
    known = torch.ones(28, 28, dtype=torch.bool)
    known[7:21, 7:21] = False
    rows, ess = [], []
    for i, digit in enumerate(digits.split(1)):
        *_, last = pixelcnn.complete_stream(model, 7, digit, known, seed=i, candidates=128, every=784)
        hole = digit.clone()
        hole[:, :, ~known] = 0.5  # grey
        rows += [digit, hole, last.images.float()]
        ess.append(float(last.ess[0]))
    save_grid(torch.cat(rows), args.picture, nrow=9)
    print(f"\nwrote {args.picture}: ESS of the 128 candidates, digit by digit: "
          + ", ".join(f"{e:.1f}" for e in ess))


if __name__ == "__main__":
    sys.exit(main())
