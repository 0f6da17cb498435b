"""Does a hybrid loss, -log p(x | y) - w log p(y | x), make a better labelled model? Fine-tunes, side by side.

    python benchmarks/hybrid.py                          # w = 0, 30, 300; 150 steps each from the flagship
    python benchmarks/hybrid.py --weights 0 100 --steps 300 --test 2000 --jobs 1 --threads 2

Every row starts from the same trained model (--init, default the flagship), and fine-tunes it
with the project's trainer (pixelcnn.fit) for the same --steps batches of 64 (the same digits,
shuffled the same way, the same learning rate) with GatedPixelCNNConfig.classify_weight = w:
w = 0 is plain maximum likelihood, the control. It then scores the first --test test digits:
-log p(x | true label) and -log p(x) marginalised over the labels, in nats per pixel; Bayes
classification argmax_y p(x | y), its accuracy; and -log p(true label | x), in nats per digit.

Each row is written to --out/w-W-STEPSsteps-TESTtest.json when measured and reused on the next
run (pass --fresh to measure again). Prints a markdown table.
"""

import argparse
import json
import platform
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from jobs import add_row_arguments, run_in_processes, write_row  # noqa: E402  (benchmarks/jobs.py)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--init", default="gated-pixelcnn-5x5", help="the labelled model every row starts from")
    p.add_argument("--weights", type=float, nargs="+", default=[0.0, 30.0, 300.0], metavar="W",
                   help="classify_weight of each row (default: %(default)s)")
    p.add_argument("--classify-batch", type=int, default=8, help="images of each batch scored under every label")
    p.add_argument("--steps", type=int, default=150, help="fine-tuning steps of batch 64 per row")
    p.add_argument("--lr", type=float, default=2e-4, help="constant learning rate (default: %(default)s)")
    add_row_arguments(p, out="results/hybrid", test=1000)
    p.add_argument("--one", type=float, help=argparse.SUPPRESS)  # run one row in this process (what the jobs do)
    return p.parse_args(argv)


def result_path(args, w: float) -> Path:
    return Path(args.out) / f"w-{w:g}-{args.steps}steps-{args.test}test.json"


def run_row(args, w: float) -> dict:
    import torch

    import pixelcnn
    from pixelcnn.weights import local_folder, weights_sha256

    torch.set_num_threads(args.threads)
    model = pixelcnn.load_model(args.init)
    model.config = replace(model.config, classify_weight=w, classify_batch=args.classify_batch)
    return {"classify_weight": w, "init": args.init, "init_sha256": weights_sha256(local_folder(args.init)),
            "classify_batch": args.classify_batch, **fine_tune(model, args)}


def fine_tune(model, args) -> dict:
    """Fine-tune model on the first --steps batches of 64 of the training digits (the same for every
    row, in the same order), then score it on the first --test test digits: a row's figures."""
    from pixelcnn.data import load_mnist
    from pixelcnn.trainer import TrainConfig, fit

    train = load_mnist(args.data_dir, train=True)
    test = load_mnist(args.data_dir, train=False)
    train = tuple(t[:args.steps * 64] for t in train)  # one epoch of exactly `steps` batches
    images, labels = (t[:args.test] for t in test)
    tc = TrainConfig(epochs=1, batch_size=64, lr=args.lr, seed=0, checkpoint_every=1e9)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        state, tuned = fit(model, train, (images[:1], labels[:1]), tc, Path(tmp) / "ckpt.safetensors")
        seconds = time.perf_counter() - t0
    return {"train_config": asdict(tc), "steps": args.steps, "test_digits": args.test,
            "train_seconds": round(seconds, 1), "threads": args.threads, "jobs": args.jobs,
            **scores(tuned, images, labels), "train_loss": state.history[-1]["train_loss"],
            "platform": platform.platform()}


def scores(model, images, labels) -> dict:
    """The table's figures of a labelled model on these test digits."""
    import torch

    import pixelcnn

    model.eval()
    with torch.no_grad():
        s = pixelcnn.label_scores(pixelcnn.label_nats(model, images), labels, images[0].numel())
    return {"given_label": s["test_loss_given"], "marginal": s["test_loss_marginal"],  # the names its cached rows use
            "bayes_accuracy": s["bayes_accuracy"], "label_nats": s["label_nats"]}


def before(args) -> dict:
    """The same figures of the model every row starts from, before any fine-tuning."""
    return model_scores(args, args.init, Path(args.out) / f"init-{args.test}test.json")


def model_scores(args, name: str, path: Path) -> dict:
    """The figures of the model `name` as it is, on the first --test test digits; kept in path and reused."""
    if path.is_file() and not args.fresh:
        return json.loads(path.read_text())
    import torch

    import pixelcnn
    from pixelcnn.data import load_mnist

    torch.set_num_threads(args.threads * args.jobs)
    images, labels = (t[:args.test] for t in load_mnist(args.data_dir, train=False))
    out = scores(pixelcnn.load_model(name), images, labels)
    write_row(path, out)
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.one is not None:
        write_row(result_path(args, args.one), run_row(args, args.one))
        return 0
    todo = [w for w in args.weights if args.fresh or not result_path(args, w).is_file()]

    def command(w):
        return [sys.executable, __file__, "--one", str(w), "--init", args.init, "--steps", str(args.steps),
                "--lr", str(args.lr), "--classify-batch", str(args.classify_batch), "--test", str(args.test),
                "--data-dir", args.data_dir, "--out", args.out, "--threads", str(args.threads),
                "--jobs", str(args.jobs)]

    if run_in_processes(todo, command, lambda w: f"w = {w:g}", args.threads, args.jobs, doing="fine-tuning"):
        return 1
    print(table(args, before(args)))
    return 0


def table(args, start: dict) -> str:
    rows = [json.loads(result_path(args, w).read_text()) for w in args.weights if result_path(args, w).is_file()]
    lines = [f"Each row: {args.init} fine-tuned {args.steps} steps of batch 64 (Adam, lr {args.lr:g} constant), "
             f"{args.classify_batch} images of each batch also scored under every label; first {args.test:,} test "
             f"digits. Nats per pixel for the likelihoods, nats per digit for -log p(label | x).", "",
             "| classify_weight | given label | marginalised | Bayes accuracy | -log p(label \\| x) | s/step |",
             "| ---: | ---: | ---: | ---: | ---: | ---: |",
             f"| (before fine-tuning) | {start['given_label']:.4f} | {start['marginal']:.4f} | "
             f"{start['bayes_accuracy']:.2%} | {start['label_nats']:.4f} | |"]
    for r in rows:
        lines.append(f"| {r['classify_weight']:g} | {r['given_label']:.4f} | {r['marginal']:.4f} | "
                     f"{r['bayes_accuracy']:.2%} | {r['label_nats']:.4f} | {r['train_seconds'] / r['steps']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
