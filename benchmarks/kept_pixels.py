"""What do the kept pixels alone say about the digit? A yardstick for bench_quality's completion rows.

    python benchmarks/kept_pixels.py                       # every region, 3 epochs each
    python benchmarks/kept_pixels.py --known hole bottom --json results/quality/kept-pixels.json

bench_quality.py completes test digits from part of their pixels and counts the completions its
digit classifier reads as the true digit. A completion whose digit is drawn from a posterior
q(digit | kept pixels) is the true digit with probability q(true digit | kept). This script
trains bench_quality's CNN on the kept pixels alone (the others blanked), calibrates its
probabilities by one temperature fitted on 5,000 training digits held out from its training,
and reports for each region:

- read: its argmax's share of the test digits: how often these kept pixels decide the digit,
  read by this classifier;
- match: the mean over the test digits of its q(true digit | kept): the share of completions
  that would be the true digit if their digits were drawn from this classifier's posterior.

A model whose completions are the true digit more often than `match` reads the kept pixels
better than this classifier does (measured: the flagship does, on a central hole). Neither
figure bounds what a completion can reach: a better classifier could read more.

With --model NAME, the model reads the kept pixels too, through its completions:

    python benchmarks/kept_pixels.py --known hole --model gated-pixelcnn-5x5 --digits 200 --votes 16

For each of the first --digits test digits, --votes completions from one pool of --candidates
(pixelcnn.complete), read by bench_quality's digit classifier: "match" is the share of the
completions read as the true digit (bench_quality's figure, from more completions a digit), "read"
the share of digits whose completions are read most often as the true digit: the model's own
reading of the kept pixels. Where read is high and match is not, the model knows the digit
and its completions are spread as its posterior p(digit | kept pixels) is: a completion sampled
faithfully is the true digit only as often as that posterior gives it.
"""

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_quality import KNOWN, SHORT, classifier, fit_classifier, logits, predict  # noqa: E402
import pixelcnn  # noqa: E402
from pixelcnn.data import load_mnist  # noqa: E402

HELD_OUT = 5000  # training digits kept apart, to fit the temperature on


def calibrated(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature T that minimises the cross-entropy of softmax(logits / T), from a grid of 0.5 .. 4."""
    grid = torch.arange(0.5, 4.0001, 0.01)
    nll = torch.stack([F.cross_entropy(logits / t, labels) for t in grid])
    return float(grid[nll.argmin()])


def kept_reading(region: str, train, test, epochs: int, held_out: int = HELD_OUT) -> dict:
    """The kept-pixel classifier of one region, and what it reads of the test digits.

    Args:
        region: a key of bench_quality.KNOWN.
        train, test: (images (N, 1, 28, 28) in {0, 1}, labels (N,)); the first held_out training
            digits fit the temperature, the others the classifier.
    """
    keep = KNOWN[region]  # (28, 28) bool
    x, y = train
    fit, held = (x[held_out:], y[held_out:]), (x[:held_out], y[:held_out])
    torch.manual_seed(0)  # the classifier's initial weights
    t0 = time.perf_counter()
    clf = fit_classifier(fit, test, epochs, keep=keep)
    t = calibrated(logits(clf, held[0] * keep), held[1])
    q = F.softmax(logits(clf, test[0] * keep) / t, dim=1)  # (N, 10)
    true = q[torch.arange(len(q)), test[1]]
    return {"region": region, "read": float((q.argmax(1) == test[1]).float().mean()),
            "match": float(true.mean()), "match_first_1000": float(true[:1000].mean()),
            "match_first_200": float(true[:200].mean()), "temperature": t,
            "test_nll": float(-true.clamp_min(1e-12).log().mean()), "seconds": round(time.perf_counter() - t0)}


def model_reading(model, region: str, test, clf, votes: int, candidates: int) -> dict:
    """What a model reads of the kept pixels through its completions: `votes` of each test digit.

    Args:
        test: (images (N, 1, 28, 28) in {0, 1}, labels (N,)): the digits completed, one pool each.
        clf: the digit classifier that reads the completions.
    """
    keep = KNOWN[region]
    t0 = time.perf_counter()
    shares, majority, ess = [], [], []
    for i, (digit, label) in enumerate(zip(*test)):
        *_, last = pixelcnn.complete_stream(model, votes, digit[None], keep, seed=i, candidates=candidates,
                                            every=keep.numel())
        read = predict(clf, last.images).argmax(1)  # (votes,)
        shares.append(float((read == label).float().mean()))
        majority.append(int(torch.bincount(read, minlength=10).argmax()) == int(label))
        ess += [] if last.ess is None else last.ess.tolist()
    return {"region": region, "read": sum(majority) / len(majority), "match": sum(shares) / len(shares),
            "digits": len(shares), "votes": votes, "candidates": candidates,
            "mean_ess": sum(ess) / len(ess) if ess else None, "seconds": round(time.perf_counter() - t0)}


def write(args, rows: list[dict]) -> None:
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"settings": vars(args) | {"json": str(args.json)}, "results": rows},
                                        indent=2) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--known", nargs="+", choices=list(SHORT), default=list(SHORT),
                   help="which regions: " + "; ".join(f"{k}: {v}" for k, v in SHORT.items()) + " (default: all)")
    p.add_argument("--data-dir", default="data", help="torchvision MNIST root (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=3, help="of each classifier (default: %(default)s, as the digit "
                                                         "classifier's)")
    p.add_argument("--limit", type=int, default=0, help="only the first N training and test digits (a quick run)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's); 1 beside a training run")
    p.add_argument("--model", help="also read the kept pixels by this model's completions (name in weights/)")
    p.add_argument("--digits", type=int, default=200, help="with --model: how many test digits (default: %(default)s)")
    p.add_argument("--votes", type=int, default=16, help="with --model: completions of each (default: %(default)s)")
    p.add_argument("--candidates", type=int, default=128, help="with --model: the pool they are resampled from "
                                                                "(default: %(default)s)")
    p.add_argument("--classifier", default="checkpoints/digit-classifier.safetensors",
                   help="with --model: bench_quality's digit classifier, cached here (default: %(default)s)")
    p.add_argument("--skip-classifiers", action="store_true", help="with --model: only the model's reading")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    train, test = load_mnist(args.data_dir, train=True), load_mnist(args.data_dir, train=False)
    if args.limit:
        train, test = tuple(t[:args.limit] for t in train), tuple(t[:args.limit] for t in test)
    if len(train[0]) <= HELD_OUT:
        raise SystemExit(f"kept_pixels.py: error: needs more than {HELD_OUT} training digits "
                         f"(--limit {args.limit})")
    clf = classifier(Path(args.classifier), train, test)[0] if args.model else None
    model = pixelcnn.load_model(args.model) if args.model else None
    print("| kept | reader | read: its reading = the true digit | match: mean q(true digit) | the same, first 1,000 "
          "| first 200 | temperature | test NLL (nats) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |", flush=True)
    rows = []
    for short in args.known:  # a row printed, and the JSON written, as each reader is done: each takes a while
        if not args.skip_classifiers:
            print(f"{SHORT[short]}: a classifier of the kept pixels ...", file=sys.stderr, flush=True)
            r = kept_reading(SHORT[short], train, test, args.epochs)
            rows.append(r)
            print(f"| {r['region']} | classifier, {args.epochs} epochs | {r['read']:.1%} | {r['match']:.1%} | "
                  f"{r['match_first_1000']:.1%} | {r['match_first_200']:.1%} | {r['temperature']:.2f} | "
                  f"{r['test_nll']:.3f} |", flush=True)
            write(args, rows)
        if model is not None:
            print(f"{SHORT[short]}: {args.model}'s completions ...", file=sys.stderr, flush=True)
            digits = tuple(t[:args.digits] for t in test)
            r = model_reading(model, SHORT[short], digits, clf, args.votes, args.candidates) | {"model": args.model}
            rows.append(r)
            ess = "" if r["mean_ess"] is None else f", mean ESS {r['mean_ess']:.1f}"
            print(f"| {r['region']} | {args.model}: {args.votes} completions of each of the first {r['digits']:,} "
                  f"(from {args.candidates} candidates{ess}) | {r['read']:.1%} | {r['match']:.1%} | | | | |",
                  flush=True)
            write(args, rows)
    if not args.skip_classifiers:
        print(f"\nq: a classifier of the kept pixels ({args.epochs} epochs on {len(train[0]) - HELD_OUT:,} training "
              f"digits, calibrated on {HELD_OUT:,} held out), on {len(test[0]):,} test digits.")
    print(f"On {platform.platform()}, torch {torch.__version__}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
