"""Which gated PixelCNN do these cores train best? One variable changed at a time, at a fixed budget.

    python benchmarks/ablate.py                     # every row, 300 steps each, 2 jobs of 1 thread
    python benchmarks/ablate.py --rows base skip    # some rows
    python benchmarks/ablate.py --steps 600 --test 1000 --jobs 1 --threads 2

Every row trains the project's own GatedPixelCNN with the project's trainer (pixelcnn.fit)
for the same number of steps on the same batches (batch 64, seed 0: the first steps x 64
training digits, shuffled the same way), then scores the first --test test digits in nats
per pixel: with the label dropped, given the true label, and with p(x) marginalised over
the ten labels (p(label) = 1/10; the flagship's target figure). Each row differs from
`base` in one thing only, named in its description.

Each row's result is written to --out/ROW.json as soon as it is measured and reused on the
next run (delete it, or pass --fresh, to measure again), so a killed run loses one row at most.
Prints a markdown table.
"""

import argparse
import json
import math
import platform
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from jobs import add_row_arguments, run_in_processes, write_row  # noqa: E402  (benchmarks/jobs.py)

BASE = dict(hidden_channels=32, first_kernel_size=5, kernel_size=5, n_layers=12, n_labels=10, label_dropout=0.2)

# name -> (what differs from base, model config changes, train config changes)
ROWS = {
    "base": ("32 channels, 5x5, 12 layers, labels (embeddings at 0), dropout 0.2, Adam 1e-3 constant", {}, {}),
    "normal-init": ("label embeddings drawn from N(0, 1), as nn.Embedding does (the old default)",
                    {"_normal_init": True}, {}),
    "k3": ("3x3 kernels after a 5x5 first layer", {"kernel_size": 3}, {}),
    "k7": ("7x7 kernels throughout", {"first_kernel_size": 7, "kernel_size": 7}, {}),
    "wide-shallow": ("48 channels, 5 layers (about the same parameters)", {"hidden_channels": 48, "n_layers": 5}, {}),
    "narrow-deep": ("24 channels, 20 layers (about the same parameters)", {"hidden_channels": 24, "n_layers": 20}, {}),
    "wide": ("48 channels (2.3x the parameters)", {"hidden_channels": 48}, {}),
    "skip": ("skip connections from every layer to the head", {"skip": True}, {}),
    "dropout-0": ("the label never dropped", {"label_dropout": 0.0}, {}),
    "dropout-0.5": ("the label dropped half the time", {"label_dropout": 0.5}, {}),
    "cosine": ("learning rate cosine from 1e-3 to 0 over the budget", {}, {"lr_schedule": "cosine"}),
    "lr-2e-3": ("learning rate 2e-3", {}, {"lr": 2e-3}),
    "ema": ("evaluated on an exponential moving average of the weights (decay 0.99)", {}, {"ema": 0.99}),
    "orientations": ("4 orientations (orders.py): each digit read top, bottom, left or right first",
                     {"n_orientations": 4}, {}),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS), metavar="ROW",
                   help=f"rows to run (default: all): {', '.join(ROWS)}")
    p.add_argument("--steps", type=int, default=300, help="training steps of batch 64 per row")
    add_row_arguments(p, out="results/ablation", test=2000)
    p.add_argument("--one", help=argparse.SUPPRESS)  # run one row in this process (what the jobs do)
    return p.parse_args(argv)


def result_path(args, name: str) -> Path:
    return Path(args.out) / f"{name}-{args.steps}steps-{args.test}test.json"


def run_row(args, name: str) -> dict:
    """Train and score one row; returns its figures."""
    import torch

    import pixelcnn
    from pixelcnn.data import load_mnist
    from pixelcnn.trainer import TrainConfig, fit

    torch.set_num_threads(args.threads)
    _, model_changes, train_changes = ROWS[name]
    model_changes = dict(model_changes)
    normal_init = model_changes.pop("_normal_init", False)
    config = pixelcnn.GatedPixelCNNConfig(**{**BASE, **model_changes})
    train = load_mnist(args.data_dir, train=True)
    test = load_mnist(args.data_dir, train=False)
    train = tuple(t[:args.steps * 64] for t in train)  # one epoch of exactly `steps` batches
    test = tuple(t[:args.test] for t in test)

    torch.manual_seed(0)
    model = pixelcnn.GatedPixelCNN(config)
    if normal_init:
        for layer in model.layers:
            torch.nn.init.normal_(layer.label.weight)
    tc = replace(TrainConfig(epochs=1, batch_size=64, lr=1e-3, seed=0, checkpoint_every=1e9), **train_changes)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        state, evaluated = fit(model, train, tuple(t[:1] for t in test), tc, Path(tmp) / "ckpt.safetensors")
        seconds = time.perf_counter() - t0
    evaluated.eval()
    images, labels = test
    pixels = images[0].numel()
    with torch.no_grad():
        dropped = float(torch.cat([pixelcnn.surprise(evaluated, b, label=pixelcnn.DROPPED).nats
                                   for b in images.split(100)]).double().mean()) / pixels
        per_label = pixelcnn.label_nats(evaluated, images).double()  # (N, 10)
    given = float(per_label.gather(1, labels[:, None]).mean()) / pixels
    marginal = float((math.log(10) - torch.logsumexp(-per_label, dim=1)).mean()) / pixels
    return {"row": name, "what": ROWS[name][0], "model_config": asdict(config), "train_config": asdict(tc),
            "parameters": sum(p.numel() for p in model.parameters()), "steps": args.steps,
            "test_digits": args.test, "train_seconds": round(seconds, 1), "threads": args.threads,
            "jobs": args.jobs, "label_dropped": dropped, "given_label": given, "marginal": marginal,
            "train_loss": state.history[-1]["train_loss"], "platform": platform.platform()}


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.one:
        write_row(result_path(args, args.one), run_row(args, args.one))
        return 0
    todo = [r for r in args.rows if args.fresh or not result_path(args, r).is_file()]

    def command(name):
        return [sys.executable, __file__, "--one", name, "--steps", str(args.steps), "--test", str(args.test),
                "--data-dir", args.data_dir, "--out", args.out, "--threads", str(args.threads), "--jobs", str(args.jobs)]

    if run_in_processes(todo, command, str, args.threads, args.jobs):
        return 1
    print(table(args))
    return 0


def table(args) -> str:
    rows = [json.loads(result_path(args, r).read_text()) for r in args.rows if result_path(args, r).is_file()]
    base = next((r for r in rows if r["row"] == "base"), None)
    lines = [f"{args.steps} steps of batch 64 each, scored on the first {args.test:,} test digits, nats per pixel "
             f"(lower is better); delta: marginalised, against base.", "",
             "| row | what differs from base | parameters | s/step | label dropped | given label | marginalised "
             "| delta |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        delta = f"{r['marginal'] - base['marginal']:+.4f}" if base and r is not base else ""
        dropped = ("(never trained)" if r["model_config"]["label_dropout"] == 0 else "(not measured)"
                   if r["label_dropped"] is None else f"{r['label_dropped']:.4f}")
        lines.append(f"| {r['row']} | {r['what']} | {r['parameters']:,} | {r['train_seconds'] / r['steps']:.2f} "
                     f"| {dropped} | {r['given_label']:.4f} | {r['marginal']:.4f} | {delta} |")
    if rows:
        lines.append("")
        lines.append(f"s/step: wall-clock seconds per training step with {rows[0]['threads']} thread(s), "
                     f"{rows[0]['jobs']} rows training at once, on {rows[0]['platform']}.")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
