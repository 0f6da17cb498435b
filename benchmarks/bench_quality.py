"""Do the samples look like digits? A digit classifier reads what each shipped model draws.

    python benchmarks/bench_quality.py                          # every model in weights/
    python benchmarks/bench_quality.py --models gated-pixelcnn --digits 100 --candidates 32
    python benchmarks/bench_quality.py --json results/quality.json
    python benchmarks/bench_quality.py --table results/quality/*.json   # one table of runs measured alike

Likelihood alone does not say whether samples look like digits. This script trains a small
CNN classifier on the binarized training digits (or loads it from --classifier, where it is
cached; it must reach 99% on the binarized test digits), then reports for every model:

- unconditional samples (label=None: for a labelled model, the mixture over its labels): the
  share the classifier reads with confidence > 0.9, and the entropy (bits) of the classes read;
- class-conditional samples (labelled models): the share read as the digit asked for;
- completions of test digits when only part is known, the share read as the true digit, and
  the mean effective sample size where completion resampled (pixelcnn.complete): the top 14
  rows, the bottom 14 rows, the left 14 columns, the right 14 columns, everything but a
  central 14x14 hole;
- with --guidance w (labelled models), all of the above but Bayes classification drawn with
  classifier-free guidance (pixelcnn.sample's guidance), a row for each w; beside the class-conditional
  share, their spread: the mean share of pixels in which two samples of one digit differ (the test
  digits' own spread is printed under the table), since guidance buys fidelity with variety;
- Bayes classification of the test digits (labelled models): argmax_y p(x | y), its accuracy (taken
  from the model's metrics.json where `train.py --evaluate` measured it for the same weights on the
  whole test set: the same ten passes over it).

Prints a markdown table; --json also writes the figures.
"""

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import pixelcnn  # noqa: E402
from pixelcnn.data import load_mnist  # noqa: E402
from pixelcnn.plotting import beside, grid  # noqa: E402
from pixelcnn.sampling import n_labels  # noqa: E402

SIDE = 28
rows = torch.arange(SIDE)[:, None].expand(SIDE, SIDE)
cols = torch.arange(SIDE)[None, :].expand(SIDE, SIDE)
hole = (rows >= 7) & (rows < 21) & (cols >= 7) & (cols < 21)
KNOWN = {  # what a completion keeps: True where a pixel is known
    "top 14 rows": rows < 14,
    "bottom 14 rows": rows >= 14,
    "left 14 columns": cols < 14,
    "right 14 columns": cols >= 14,
    "all but a central 14x14 hole": ~hole,
}
SHORT = dict(zip(("top", "bottom", "left", "right", "hole"), KNOWN))  # --known's names for them


class Classifier(nn.Module):
    """A small CNN digit classifier for 28x28 binary digits."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Dropout(0.3), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.3), nn.Linear(128, 10))

    def forward(self, x):
        return self.net(x)  # (B, 10) logits


@torch.no_grad()
def logits(clf: Classifier, images: torch.Tensor) -> torch.Tensor:
    """(B, 10) class logits, in eval mode, 500 images at a time."""
    clf.eval()
    return torch.cat([clf(b) for b in images.split(500)])


def predict(clf: Classifier, images: torch.Tensor) -> torch.Tensor:
    """(B, 10) class probabilities."""
    return F.softmax(logits(clf, images), dim=1)


def fit_classifier(train, test, epochs: int = 3, keep: torch.Tensor | None = None) -> Classifier:
    """A Classifier trained on train = (images, labels), each batch shifted by up to 2 pixels.

    keep: (28, 28) bool, or None for every pixel: the classifier then sees only these pixels of
    each (shifted) digit, the others 0, as it sees test digits through keep too.
    """
    clf = Classifier()  # initialised from torch's global generator, as the cached digit classifier was
    torch.manual_seed(0)
    opt = torch.optim.Adam(clf.parameters(), lr=1e-3)
    x, y = train
    for epoch in range(epochs):
        clf.train()
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch))
        for start in range(0, len(x), 128):
            b = perm[start:start + 128]
            shifted = torch.roll(x[b], shifts=tuple(torch.randint(-2, 3, (2,)).tolist()), dims=(2, 3))
            loss = F.cross_entropy(clf(shifted if keep is None else shifted * keep), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
        seen = test[0] if keep is None else test[0] * keep
        print(f"classifier epoch {epoch + 1}: test accuracy "
              f"{(predict(clf, seen).argmax(1) == test[1]).float().mean():.4f}", file=sys.stderr)
    return clf


def classifier(path: Path, train, test, epochs: int = 3) -> tuple[Classifier, float]:
    """The cached classifier at path, or one trained now (and cached); with its test accuracy."""
    from safetensors.torch import load_file, save_file

    if path.is_file():
        clf = Classifier()
        clf.load_state_dict(load_file(path), strict=True)
    else:
        clf = fit_classifier(train, test, epochs)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in clf.state_dict().items()}, str(path))
    accuracy = float((predict(clf, test[0]).argmax(1) == test[1]).float().mean())
    if accuracy < 0.99:
        raise SystemExit(f"the classifier reads only {accuracy:.2%} of the binarized test digits (needs 99%): "
                         f"delete {path} and train it again")
    return clf, accuracy


def entropy_bits(classes: torch.Tensor) -> float:
    p = torch.bincount(classes, minlength=10).double() / len(classes)
    p = p[p > 0]
    return float(-(p * p.log2()).sum())


def evaluated_bayes(name: str, digits: int) -> float | None:
    """The Bayes accuracy `train.py --evaluate` recorded for these very weights on all `digits` test digits.

    It has the ten likelihoods of every test digit at hand, so the ten passes need not be made twice.
    None where the model is not a local folder, was not evaluated on that many digits, or its
    weights have changed since.
    """
    folder = pixelcnn.weights.local_folder(name)
    if folder is None:
        return None
    try:
        metrics = json.loads((folder / "metrics.json").read_text())
        sha = pixelcnn.weights.weights_sha256(folder)
    except (OSError, ValueError):
        return None
    ev = metrics.get("evaluation") or {}
    if ev.get("weights_sha256") != sha or metrics.get("data", {}).get("test_images") != digits:
        return None
    return ev.get("bayes_accuracy")


def spread(images: torch.Tensor, labels: torch.Tensor) -> float:
    """The mean share of pixels in which two images of the same label differ, averaged over the labels."""
    shares = []
    for y in labels.unique():
        x = images[labels == y].flatten(1)
        m = len(x)
        if m > 1:
            differ = (x[:, None] != x[None]).float().mean(-1)  # (m, m)
            shares.append(float(differ.sum() / (m * (m - 1))))
    return sum(shares) / len(shares)


def measure(name: str, model, clf, test, args, guidance: float = 0.0, proposal=None) -> dict:
    """Every figure of one model (Bayes classification only without guidance).

    proposal: a model that draws the candidates of the completions that it completes exactly and
    the model measured does not (complete(proposal=)); not with guidance.
    """
    out = {"model": name, "labels": n_labels(model), "guidance": guidance}
    t0 = time.perf_counter()
    if args.samples:
        p = predict(clf, pixelcnn.sample(model, args.samples, seed=0, guidance=guidance))
        out["confident"] = float((p.max(1).values > 0.9).float().mean())
        out["entropy_bits"] = entropy_bits(p.argmax(1))
    if n_labels(model) and args.per_label:
        per = args.per_label
        asked = torch.arange(10).repeat_interleave(per)
        drawn = pixelcnn.sample(model, 10 * per, seed=1, label=asked, guidance=guidance)
        read = predict(clf, drawn).argmax(1)
        out["conditional"] = float((read == asked).float().mean())
        out["conditional_spread"] = spread(drawn, asked)
        rows = min(per, 8)  # for --picture: the first 8 of each digit, a digit a column
        out["_picture"] = drawn.reshape(10, per, 1, SIDE, SIDE)[:, :rows].transpose(0, 1).reshape(-1, 1, SIDE, SIDE)
        out["conditional_by_label"] = [float((read[asked == y] == y).float().mean()) for y in range(10)]
    images, labels = test[0][:args.digits], test[1][:args.digits]
    out["completions"] = {}
    for what in [SHORT[k] for k in args.known] if args.digits else ():  # --digits 0: the samples only
        known = KNOWN[what]
        proposed = (proposal is not None and not guidance and pixelcnn.exact_orientation(model, known) is None
                    and pixelcnn.exact_orientation(proposal[1], known) is not None)
        done, ess = [], []
        for chunk in images.split(args.chunk):  # the caches of digits x candidates rows stay in memory
            mask = known[None, None].expand(len(chunk), 1, SIDE, SIDE)
            *_, last = pixelcnn.complete_stream(model, len(chunk), chunk, mask, seed=2 + len(done),
                                                candidates=args.candidates * len(chunk), every=SIDE * SIDE,
                                                guidance=guidance, proposal=proposal[1] if proposed else None)
            done.append(last.images)
            ess += [] if last.ess is None else last.ess.tolist()
        read = predict(clf, torch.cat(done)).argmax(1)
        out["completions"][what] = {"true_digit": float((read == labels).float().mean()),
                                    "mean_ess": sum(ess) / len(ess) if ess else None,
                                    "orientation": pixelcnn.ORIENTATIONS[last.orientation]}
        if proposed:
            out["completions"][what]["proposal"] = proposal[0]
    if n_labels(model) and args.bayes > 0 and not guidance:
        out["bayes_digits"] = min(args.bayes, len(test[0]))
        measured = evaluated_bayes(name, out["bayes_digits"])
        if measured is not None:
            out["bayes_accuracy"], out["bayes_from"] = measured, "train.py --evaluate"
        else:
            nats = pixelcnn.label_nats(model, test[0][:args.bayes])
            out["bayes_accuracy"] = float((nats.argmin(1) == test[1][:args.bayes]).float().mean())
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def table(results: list[dict], args, accuracy: float, test_spread: float | None = None) -> str:
    guided = any(r.get("guidance") for r in results)
    head = ["| model |" + (" guidance | spread |" if guided else "") + " unconditional: confident | entropy (bits) |"
            " conditional: as asked |" + "".join(f" {w}: true digit (ESS) |" for w in KNOWN) + " Bayes accuracy |",
            "| --- |" + (" ---: | ---: |" if guided else "") + " ---: | ---: | ---: |" + " ---: |" * len(KNOWN) + " ---: |"]
    for r in results:
        proposals = sorted({c["proposal"] for c in r["completions"].values() if "proposal" in c})
        cells = [r["model"] + "".join(f" (*: candidates drawn by {p})" for p in proposals)]
        if guided:
            cells += [f"{r.get('guidance', 0):g}",
                      f"{r['conditional_spread']:.3f}" if "conditional_spread" in r else ""]
        cells += [f"{r['confident']:.0%}" if "confident" in r else "",
                  f"{r['entropy_bits']:.2f}" if "entropy_bits" in r else "",
                  f"{r['conditional']:.1%}" if "conditional" in r else ""]
        for w in KNOWN:
            c = r["completions"].get(w)
            ess = "" if c is None or c["mean_ess"] is None else f" ({c['mean_ess']:.1f})"
            cells.append("" if c is None else f"{c['true_digit']:.1%}{'*' * ('proposal' in c)}{ess}")
        cells.append(f"{r['bayes_accuracy']:.2%}" if "bayes_accuracy" in r else "")
        head.append("| " + " | ".join(cells) + " |")
    digits = max((r.get("bayes_digits", 0) for r in results), default=0)
    bayes = f"; Bayes classification (labelled models) of the first {digits:,} test digits" if digits else ""
    if any("bayes_from" in r for r in results):
        bayes += " (where `train.py --evaluate` has measured it for the same weights, its figure)"
    if guided:
        bayes += ("; guidance: classifier-free guidance w of every sample and completion; spread: the mean share of "
                  "pixels in which two class-conditional samples of one digit differ"
                  + (f" ({test_spread:.3f} for as many test digits of each class)" if test_spread is not None else ""))
    head += ["", f"{args.samples} unconditional samples (confident: the classifier's top class above 0.9; entropy of "
                 f"the classes read, at most 3.32 bits); {args.per_label} class-conditional samples per digit; "
                 + (f"completions of the first {args.digits} test digits, one each, from {args.candidates} candidates "
                    f"where the known pixels do not all come first (ESS: their mean effective sample size; none where "
                    f"the completion was exact)" if args.digits else "no completions")
                 + f"{bayes}. The classifier reads {accuracy:.2%} of the binarized test digits. "
                 f"On {platform.platform()}, torch {torch.__version__}."]
    return "\n".join(head)


SAME = ("samples", "per_label", "digits", "candidates", "bayes")  # settings the figures of one table share


def merged_table(paths: list[Path]) -> int:
    """Print one table of the models measured in several runs, if they were measured alike."""
    runs = []
    for path in paths:
        try:
            runs.append(json.loads(path.read_text()))
        except (OSError, ValueError) as e:
            print(f"bench_quality.py: error: {path}: {e}", file=sys.stderr)
            return 1
    first = runs[0]
    for path, run in zip(paths[1:], runs[1:]):
        differ = [k for k in SAME if run["settings"][k] != first["settings"][k]]
        if differ or run["classifier_accuracy"] != first["classifier_accuracy"]:
            print(f"bench_quality.py: error: {path} was measured otherwise than {paths[0]} "
                  f"({', '.join(differ) or 'another classifier'}): the figures do not go in one table", file=sys.stderr)
            return 1
    print(table([r for run in runs for r in run["results"]], argparse.Namespace(**first["settings"]),
                first["classifier_accuracy"], first.get("test_spread")))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", help="names in weights/, folders or Hub ids (default: all in weights/)")
    p.add_argument("--data-dir", default="data", help="torchvision MNIST root (default: %(default)s)")
    p.add_argument("--classifier", default="checkpoints/digit-classifier.safetensors", type=Path,
                   help="where the classifier is cached (default: %(default)s)")
    p.add_argument("--samples", type=int, default=100, help="unconditional samples (default: %(default)s; 0: none)")
    p.add_argument("--per-label", type=int, default=20, help="class-conditional samples per digit (0: none)")
    p.add_argument("--digits", type=int, default=200, help="test digits to complete, one completion each (0: none)")
    p.add_argument("--known", nargs="+", choices=list(SHORT), default=list(SHORT),
                   help="which completions: " + "; ".join(f"{k}: {v}" for k, v in SHORT.items()) + " (default: all)")
    p.add_argument("--candidates", type=int, default=128,
                   help="SIR candidates per completion (default: %(default)s; the app draws 128 for all its "
                        "completions of one digit)")
    p.add_argument("--proposal", metavar="NAME",
                   help="a model that completes from the kept side exactly (four orientations): where a model "
                        "measured cannot complete exactly and it can (the bottom, left or right kept, for a model "
                        "that reads top first), it draws the candidates and the model weighs them (marked *)")
    p.add_argument("--chunk", type=int, default=8, help="digits completed at once (memory: digits x candidates)")
    p.add_argument("--guidance", type=float, nargs="+", default=[0.0], metavar="W",
                   help="classifier-free guidance of the samples and completions of labelled models, a row for each "
                        "(default: 0, the models themselves)")
    p.add_argument("--picture", type=Path,
                   help="also save the first 8 class-conditional samples of each digit, of each row, side by side (PNG)")
    p.add_argument("--bayes", type=int, default=10000, help="test digits to classify by likelihood (0: none)")
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's); 1 beside a training run")
    p.add_argument("--table", nargs="+", type=Path, metavar="JSON",
                   help="measure nothing: print one table of the figures --json wrote in earlier runs")
    args = p.parse_args(argv)
    if args.table:
        return merged_table(args.table)
    if args.threads:
        torch.set_num_threads(args.threads)
    train, test = load_mnist(args.data_dir, train=True), load_mnist(args.data_dir, train=False)
    clf, accuracy = classifier(args.classifier, train, test)
    proposal = (args.proposal, pixelcnn.load_model(args.proposal)) if args.proposal else None
    results = []
    for name in args.models or pixelcnn.list_models():
        model = pixelcnn.load_model(name)
        for w in args.guidance if n_labels(model) else [0.0]:
            print(f"measuring {name}{f' with guidance {w:g}' if w else ''} ...", file=sys.stderr, flush=True)
            results.append(measure(name, model, clf, test, args, w, proposal))
    test_spread = None
    if args.per_label > 1 and any(r.get("guidance") for r in results):  # the test digits' own: per_label of each
        pick = torch.cat([torch.nonzero(test[1] == y)[:args.per_label, 0] for y in range(10)])
        test_spread = spread(test[0][pick], test[1][pick])
    print(table(results, args, accuracy, test_spread))
    pictures = [r.pop("_picture") for r in results if "_picture" in r]  # not for the JSON
    if args.picture and pictures:
        args.picture.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(beside(*(np.repeat(grid(p, nrow=10, scale=2)[..., None], 3, axis=2) for p in pictures),
                               gap=16)).save(args.picture)
        print(f"wrote {args.picture}: {len(pictures)} panels of each digit asked for, in the table's order",
              file=sys.stderr)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"classifier_accuracy": accuracy, "test_spread": test_spread, "settings": vars(args) | {
            "json": str(args.json), "classifier": str(args.classifier)}, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
