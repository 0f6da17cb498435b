"""Train a PixelCNN on binarized MNIST, save it to weights/NAME/, optionally push it to the Hub.

    python train.py                        # the recipe: 10 epochs, Adam 1e-3, batch 64
    python train.py --resume               # continue a killed run where it stopped
    python train.py --push-to-hub user/repo
    torchrun --nproc_per_node 2 train.py   # data-parallel
"""

import argparse
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from pixelcnn import PixelCNN, PixelCNNConfig, sample, save_model
from pixelcnn.card import RECIPE_TEST_LOSS, model_card
from pixelcnn.data import load_mnist
from pixelcnn.plotting import save_grid, save_loss_curve
from pixelcnn.trainer import TrainConfig, TrainingDiverged, distributed_setup, fit
from pixelcnn.weights import atomic_write, write_json


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="train.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", default="pixelcnn", help="model name: weights go to OUT/NAME (default: %(default)s)")
    p.add_argument("--out", default="weights", help="folder for model folders (default: %(default)s)")
    p.add_argument("--results", default="results", help="folder for the plots (default: %(default)s)")
    p.add_argument("--checkpoints", default="checkpoints", help="folder for resumable state (default: %(default)s)")
    p.add_argument("--data-dir", default="data", help="torchvision MNIST root (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hidden-channels", type=int, default=64)
    p.add_argument("--kernel-size", type=int, default=7)
    p.add_argument("--n-layers", type=int, default=6, help="mask-B layers (default: %(default)s)")
    p.add_argument("--samples", type=int, default=16, help="digits in results/samples.png (default: %(default)s)")
    p.add_argument("--checkpoint-every", type=float, default=300, help="seconds between mid-epoch checkpoints")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint of --name")
    p.add_argument("--push-to-hub", metavar="USER/REPO", help="upload the weights folder and plots to this Hub repo")
    p.add_argument("--limit", type=int, default=0, help="use only the first N training and test digits (for a quick run)")
    args = p.parse_args(argv)
    for k in ("epochs", "batch_size", "hidden_channels", "kernel_size", "samples"):
        if getattr(args, k) < 1:
            p.error(f"--{k.replace('_', '-')} must be at least 1")
    if args.kernel_size % 2 == 0:
        p.error("--kernel-size must be odd")
    if args.lr <= 0 or args.n_layers < 0 or args.limit < 0:
        p.error("--lr must be > 0, --n-layers and --limit >= 0")
    if args.push_to_hub:
        from pixelcnn.hub import is_repo_id
        if not is_repo_id(args.push_to_hub):
            p.error(f"--push-to-hub wants a repo id like user/repo, got {args.push_to_hub!r}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    rank, world, device = distributed_setup()
    config = PixelCNNConfig(hidden_channels=args.hidden_channels, kernel_size=args.kernel_size,
                            n_layers=args.n_layers)
    tc = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                     checkpoint_every=args.checkpoint_every)
    out = Path(args.out) / args.name
    results = Path(args.results)

    # Under torchrun, rank 0 fetches the files first, so that no two processes download or unpack at once.
    if world > 1 and rank != 0:
        torch.distributed.barrier()
    try:
        train = load_mnist(args.data_dir, train=True)
        test = load_mnist(args.data_dir, train=False)
    except RuntimeError as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        return 1
    if world > 1 and rank == 0:
        torch.distributed.barrier()
    if args.limit:
        train, test = tuple(t[:args.limit] for t in train), tuple(t[:args.limit] for t in test)
    data_info = {"dataset": "MNIST (torchvision), binarized: pixel = 1 where value in [0, 1] > 0.5",
                 "train_images": len(train[0]), "test_images": len(test[0])}

    torch.manual_seed(args.seed)
    model = PixelCNN(config)
    if rank == 0:
        n_params = sum(p.numel() for p in model.parameters())
        print(f"{args.name}: {config} ({n_params:,} parameters) on {device}"
              f"{f' x {world} processes' if world > 1 else ''}; {data_info['train_images']:,} train / "
              f"{data_info['test_images']:,} test digits")
        print(f"{'epoch':>5}  {'train loss':>10}  {'test loss':>10}  {'minutes':>7}", flush=True)

    def write_outputs(model, state):
        """The weights folder (weights, metrics.json, model card) and the loss curve, as of state."""
        h = state.history[-1]
        metrics = {
            "model": args.name, "model_config": asdict(config), "train_config": asdict(tc),
            "parameters": sum(p.numel() for p in model.parameters()), "data": data_info,
            "history": state.history, "epochs": len(state.history),
            "test_loss": h["test_loss"], "train_loss": h["train_loss"],
            "wall_time_s": round(state.elapsed, 1), "device": str(device), "processes": world,
            "runs": state.runs, "torch": torch.__version__, "platform": platform.platform(),
        }
        save_model(model, out)
        write_json(out / "metrics.json", metrics)
        card = model_card(args.name, metrics)
        atomic_write(out / "README.md", lambda tmp: Path(tmp).write_text(card))
        save_loss_curve(state.history, results / f"{args.name}_loss_curve.png", title=args.name,
                        reference={"label": f"recipe ({RECIPE_TEST_LOSS})", "test_loss": RECIPE_TEST_LOSS})

    def on_epoch(model, state):
        h = state.history[-1]
        print(f"{h['epoch']:>5}  {h['train_loss']:>10.4f}  {h['test_loss']:>10.4f}  {h['elapsed_s'] / 60:>7.1f}",
              flush=True)
        write_outputs(model, state)

    try:
        state = fit(model, train, test, tc, Path(args.checkpoints) / f"{args.name}.safetensors",
                    resume=args.resume, on_epoch=on_epoch, meta={"model_config": asdict(config), "data": data_info})
    except (TrainingDiverged, ValueError, FileNotFoundError) as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        return 1
    if rank != 0:
        return 0
    if state.runs[-1]["from_epoch"] == state.epoch:
        # Resumed a run whose last epoch was checkpointed but perhaps never written out (killed in between).
        write_outputs(model, state)

    model.eval()
    t0 = time.time()
    images = sample(model, args.samples, seed=args.seed)
    save_grid(images, results / f"{args.name}_samples.png")
    print(f"wrote {out}/ and {results}/{args.name}_{{loss_curve,samples}}.png "
          f"({args.samples} samples in {time.time() - t0:.1f} s)")
    if args.push_to_hub:
        from pixelcnn.hub import push

        try:
            url = push(args.push_to_hub, out, extra_files={f"results/{p.name}": p for p in (
                results / f"{args.name}_loss_curve.png", results / f"{args.name}_samples.png")})
        except Exception as e:  # no token, no network, no rights: the weights are saved all the same
            reason = " ".join(str(e).split())[:300]
            print(f"train.py: error: could not push to {args.push_to_hub} ({type(e).__name__}: {reason}); "
                  f"the weights are in {out}/", file=sys.stderr)
            return 1
        print(f"pushed to {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
