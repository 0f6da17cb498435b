"""Bayes classification argmax_y p(x | y) of the test digits, by each labelled model and by their mixtures.

    python benchmarks/bayes.py --models gated-pixelcnn-5x5 gated-pixelcnn-5x5-48 --threads 1

For each model, -log p(x | y) of every test digit under every label (ten passes over the test
set, the figure train.py --evaluate reduces to its Bayes accuracy) is kept in --cache, chunk by
chunk, so a killed run continues and a second run only reads. The mixture of models
p(x | y) = mean_m p_m(x | y) is itself a labelled density; for every set of two or more models
the script reports its Bayes accuracy and its -log p(x) marginalised over the labels, beside
each model's own. Run one process per model (--models NAME) to use more cores, then once with
all of them to read the table.

--train scores the first --limit training digits instead: a model that classifies the digits it
was trained on much better than the test digits is held back by overfitting, not by its capacity.
A part of a set (--limit) is kept in a folder of its own in --cache, never over the whole set's rows.
"""

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from pixelcnn import label_nats, label_scores, load_model, mean_nats  # noqa: E402
from pixelcnn.data import load_mnist  # noqa: E402
from pixelcnn.weights import local_folder, weights_sha256  # noqa: E402
from train import Measured  # noqa: E402


def per_label_nats(name: str, images: torch.Tensor, cache: Path) -> torch.Tensor:
    """-log p(x | y) of every image under every label of the model `name`: (N, labels), kept in cache."""
    folder = local_folder(name)
    if folder is None:
        raise SystemExit(f"no model folder {name!r} (a name in weights/ or a folder with model.safetensors)")
    model = load_model(folder)
    measured = Measured(cache / f"{folder.name}.safetensors", weights_sha256(folder), images)
    done = len(measured.rows.get("each label", ()))
    t0 = time.perf_counter()
    nats = measured.nats("each label", lambda x: label_nats(model, x))
    if done < len(images):
        print(f"{name}: {len(images) - done:,} digits x {nats.shape[1]} labels in {time.perf_counter() - t0:.0f} s",
              flush=True)
    return nats


def mixture(per_model: list[torch.Tensor]) -> torch.Tensor:
    """-log of the mean over models of p_m(x | y): (N, labels)."""
    return mean_nats(torch.stack(per_model), dim=0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", required=True, help="labelled models (names in weights/ or folders)")
    p.add_argument("--data-dir", default="data", help="torchvision MNIST root (default: %(default)s)")
    p.add_argument("--cache", default="results/bayes", help="where each model's per-label nats are kept")
    p.add_argument("--limit", type=int, default=0, help="only the first N digits (a quick run)")
    p.add_argument("--train", action="store_true", help="the training digits, not the test digits (with --limit)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p.add_argument("--json", help="write the figures here too")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.train and not args.limit:
        p.error("--train scores the first --limit training digits: give --limit")
    images, labels = load_mnist(args.data_dir, train=args.train)
    if args.limit:
        images, labels = images[:args.limit], labels[:args.limit]
    split = "train" if args.train else "test"
    cache = Path(args.cache)
    if args.limit:
        cache = cache / f"{split}-first-{args.limit}"
    cache.mkdir(parents=True, exist_ok=True)
    pixels = images[0].numel()
    nats = {name: per_label_nats(name, images, cache) for name in args.models}
    rows = [dict(models=[name], **label_scores(v, labels, pixels)) for name, v in nats.items()]
    for k in range(2, len(nats) + 1):
        for names in itertools.combinations(nats, k):
            rows.append(dict(models=list(names), **label_scores(mixture([nats[n] for n in names]), labels, pixels)))
    print(f"\n{'the first ' if args.limit else ''}{len(images):,} {split} digits\n")
    print("| model | Bayes accuracy | -log p(x), marginalised | given the label |")
    print("| --- | ---: | ---: | ---: |")
    for r in rows:
        name = r["models"][0] if len(r["models"]) == 1 else "mixture of " + " + ".join(r["models"])
        print(f"| {name} | {r['bayes_accuracy']:.2%} | {r['test_loss_marginal']:.4f} | {r['test_loss_given']:.4f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"digits": len(images), "split": split, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
