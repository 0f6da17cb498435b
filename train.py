"""Train a PixelCNN on binarized MNIST, save it to weights/NAME/, optionally push it to the Hub.

    python train.py                        # the recipe: 10 epochs, Adam 1e-3, batch 64
    python train.py --resume               # continue a killed run where it stopped
    python train.py --restart              # start afresh, overwriting the checkpoint of an earlier run
    python train.py --push-to-hub user/repo
    python train.py --push-only --push-to-hub user/repo   # upload weights/pixelcnn as it is
    python train.py --model gated_pixelcnn --name gated-pixelcnn --hidden-channels 48 --n-layers 10 \\
        --first-kernel-size 15 --lr-schedule cosine
    python train.py --name pixelcnn --evaluate   # remeasure the saved model's test loss
    python train.py --ensemble gated-pixelcnn-5x5-48 gated-pixelcnn-5x5-48-dropout --name pair
                                           # no training: trained models as one (pixelcnn/ensemble.py)
    python train.py --model gated_pixelcnn --n-orientations 4 --init-from weights/gated-pixelcnn ...
                                           # start from a trained model's weights (fine-tune it)
    python train.py --model gated_pixelcnn ... --init-from gated-pixelcnn-5x5 --classify-weight 30
                                           # fine-tune with a hybrid loss: also -log p(label | image)
    python train.py --model gated_pixelcnn ... --teacher gated-pixelcnn-5x5-48x2
                                           # learn a trained model's probabilities (distillation)
    torchrun --nproc_per_node 2 train.py   # data-parallel

Ctrl-C or SIGTERM (`kill PID`) stops a run after the step at hand, with a checkpoint of every
step done (exit status 130 or 143); --resume continues it. A second one stops it at once.
"""

import argparse
import functools
import hashlib
import json
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from pixelcnn import (ORIENTATIONS, label_nats, label_scores, load_model, marginal_nats, mean_nats, orientation_nats,
                      sample, save_model)
from pixelcnn.card import RECIPE_TEST_LOSS, model_card
from pixelcnn.data import load_mnist
from pixelcnn.plotting import save_grid, save_loss_curve
from pixelcnn.trainer import (TrainConfig, TrainingDiverged, TrainingError, TrainingStopped, distributed_setup,
                              distributed_teardown, evaluate, exit_worker, fit)
from pixelcnn.ensemble import MEMBER_TYPES, Ensemble, EnsembleConfig
from pixelcnn.weights import ModelLoadError, atomic_write, local_folder, weights_sha256, write_json


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line on stderr (not the whole usage) and exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parse_args(argv=None):
    p = OneLineParser(prog="train.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", default="pixelcnn", help="model name: weights go to OUT/NAME (default: %(default)s)")
    p.add_argument("--out", default="weights", help="folder for model folders (default: %(default)s)")
    p.add_argument("--results", default="results", help="folder for the plots (default: %(default)s)")
    p.add_argument("--checkpoints", default="checkpoints", help="folder for resumable state (default: %(default)s)")
    p.add_argument("--data-dir", default="data", help="torchvision MNIST root (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", choices=sorted(MEMBER_TYPES), default="pixelcnn",
                   help="pixelcnn: the recipe's; gated_pixelcnn: two stacks, gates, labels (default: %(default)s)")
    p.add_argument("--hidden-channels", type=int, default=64)
    p.add_argument("--kernel-size", type=int, default=None,
                   help="kernel of the layers (pixelcnn: 7, the mask-B layers; gated_pixelcnn: 3, all but the first)")
    p.add_argument("--first-kernel-size", type=int, default=7, help="gated_pixelcnn: the first layer's kernel")
    p.add_argument("--n-layers", type=int, default=None,
                   help="pixelcnn: mask-B layers (6); gated_pixelcnn: gated layers (8)")
    p.add_argument("--n-labels", type=int, default=10, help="gated_pixelcnn: digit labels, 0 for none")
    p.add_argument("--label-dropout", type=float, default=0.2, help="gated_pixelcnn: how often a label is dropped")
    p.add_argument("--skip", action="store_true", help="gated_pixelcnn: skip connections from every layer to the head")
    p.add_argument("--dropout", type=float, default=0.0,
                   help="gated_pixelcnn: dropout on each layer's gated features in training (default: none)")
    p.add_argument("--n-orientations", type=int, default=1, choices=(1, 4),
                   help="gated_pixelcnn: 4 to see each digit top, bottom, left or right first (default: %(default)s)")
    p.add_argument("--classify-weight", type=float, default=0.0,
                   help="gated_pixelcnn: add w x -log p(label | image), by Bayes' rule over the labels, to the "
                        "training loss of --classify-batch images of each batch (a hybrid loss; default: none)")
    p.add_argument("--classify-batch", type=int, default=8,
                   help="gated_pixelcnn: images of each batch that --classify-weight scores under every label")
    p.add_argument("--ema", type=float, default=0.0,
                   help="evaluate and save an exponential moving average of the weights with this decay, e.g. "
                        "0.999 (default: none)")
    p.add_argument("--init-from", metavar="FOLDER",
                   help="start from the weights of the model saved in FOLDER (a weights folder) instead of "
                        "random ones: every weight of it must fit the new model; the new model's own extra "
                        "weights (e.g. a four-orientation model's orientation embedding) keep their start")
    p.add_argument("--teacher", metavar="MODEL",
                   help="gated_pixelcnn: learn the probabilities that this trained model (a name in OUT or a "
                        "folder) gives every pixel, instead of the pixels (knowledge distillation)")
    p.add_argument("--teacher-others", type=int, default=16, metavar="K",
                   help="with --teacher: images of each batch also shown under a wrong label, so that the model "
                        "learns the teacher's p(x | y) of the wrong labels too (default: %(default)s)")
    p.add_argument("--evaluate", action="store_true",
                   help="only measure the test loss of OUT/NAME (for a labelled model, also with p(x) marginalised "
                        "over the labels); print it and record it in its metrics.json")
    p.add_argument("--ensemble", nargs="+", metavar="MODEL",
                   help="do not train: save these trained models (names in OUT or folders) as one, the mean of "
                        "their densities, into OUT/NAME; then --evaluate measures it")
    p.add_argument("--samples", type=int, default=16, help="digits in results/samples.png (default: %(default)s)")
    p.add_argument("--checkpoint-every", type=float, default=300, help="seconds between mid-epoch checkpoints")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint of --name")
    p.add_argument("--restart", action="store_true",
                   help="start afresh even though --name has a checkpoint (it is overwritten)")
    p.add_argument("--push-to-hub", metavar="USER/REPO", help="upload the weights folder and plots to this Hub repo")
    p.add_argument("--push-only", action="store_true",
                   help="do not train: upload OUT/NAME and its plots to --push-to-hub")
    p.add_argument("--limit", type=int, default=0, help="use only the first N training and test digits (for a quick run)")
    args = p.parse_args(argv)
    defaults = {"pixelcnn": (7, 6), "gated_pixelcnn": (3, 8)}[args.model]
    args.kernel_size = defaults[0] if args.kernel_size is None else args.kernel_size
    args.n_layers = defaults[1] if args.n_layers is None else args.n_layers
    for k in ("epochs", "batch_size", "hidden_channels", "kernel_size", "samples"):
        if getattr(args, k) < 1:
            p.error(f"--{k.replace('_', '-')} must be at least 1")
    if args.kernel_size % 2 == 0:
        p.error("--kernel-size must be odd")
    if args.lr <= 0 or args.n_layers < 0 or args.limit < 0 or args.teacher_others < 0:
        p.error("--lr must be > 0, --n-layers, --limit and --teacher-others >= 0")
    if args.teacher and args.model != "gated_pixelcnn":
        p.error("--teacher needs --model gated_pixelcnn")
    if args.push_to_hub:
        from pixelcnn.hub import is_repo_id
        if not is_repo_id(args.push_to_hub):
            p.error(f"--push-to-hub wants a repo id like user/repo, got {args.push_to_hub!r}")
    if args.resume and args.restart:
        p.error("--resume and --restart exclude each other")
    if args.push_only and not args.push_to_hub:
        p.error("--push-only needs --push-to-hub USER/REPO")
    if args.ensemble and (args.evaluate or args.push_only or args.resume or len(args.ensemble) < 2):
        p.error("--ensemble takes two models or more, and neither --evaluate, --push-only nor --resume")
    return args


def model_config(args):
    """The config dataclass of --model, from the command line."""
    config_cls, _ = MEMBER_TYPES[args.model]
    if args.model == "pixelcnn":
        return config_cls(hidden_channels=args.hidden_channels, kernel_size=args.kernel_size, n_layers=args.n_layers)
    return config_cls(hidden_channels=args.hidden_channels, first_kernel_size=args.first_kernel_size,
                      kernel_size=args.kernel_size, n_layers=args.n_layers, n_labels=args.n_labels,
                      label_dropout=args.label_dropout, skip=args.skip, n_orientations=args.n_orientations,
                      classify_weight=args.classify_weight, classify_batch=args.classify_batch, dropout=args.dropout)


def main(argv=None) -> int:
    args = parse_args(argv)
    rank, world, device = distributed_setup()
    try:
        return run(args, rank, world, device)
    finally:
        distributed_teardown()


def run(args, rank: int, world: int, device: torch.device) -> int:
    """train.py's work, once torch.distributed (under torchrun) is set up."""
    try:
        config = model_config(args)
        tc = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                         checkpoint_every=args.checkpoint_every, lr_schedule=args.lr_schedule,
                         ema=args.ema)
    except ValueError as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out) / args.name
    results = Path(args.results)
    if args.push_only:
        return push_outputs(args, out, results)
    if args.ensemble:
        code = build_ensemble(args, out, results) if rank == 0 else 0
        return push_outputs(args, out, results) if code == 0 and args.push_to_hub and rank == 0 else code
    checkpoint = Path(args.checkpoints) / f"{args.name}.safetensors"
    if checkpoint.is_file() and not (args.resume or args.restart or args.evaluate):
        # A killed run's progress is never thrown away by accident.
        print(f"train.py: error: {checkpoint} holds an earlier run of {args.name}: continue it with --resume, "
              f"or start over with --restart (which overwrites it)", file=sys.stderr)
        return 1

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

    if args.evaluate:
        kept = Path(args.checkpoints) / f"{args.name}-evaluation.safetensors"  # a killed evaluation continues
        return evaluate_saved(out, test, device, kept)

    torch.manual_seed(args.seed)
    model = MEMBER_TYPES[args.model][1](config)
    meta = {"model_config": asdict(config), "data": data_info}
    if args.init_from:
        try:
            meta["init_from"] = initialise_from(model, Path(args.init_from))
        except (ModelLoadError, TrainingError) as e:
            print(f"train.py: error: {e}", file=sys.stderr)
            return 1
    if args.teacher:
        try:
            meta["teacher"] = attach_teacher(model, args.teacher, args.teacher_others, device, args.out)
        except (ModelLoadError, ValueError) as e:
            print(f"train.py: error: --teacher {args.teacher}: {e}", file=sys.stderr)
            return 1
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
        for k in ("init_from", "teacher"):
            if k in meta:
                metrics[k] = meta[k]
        save_model(model, out)
        write_metrics(out, metrics)
        save_loss_curve(state.history, results / f"{args.name}_loss_curve.png", title=args.name,
                        reference={"label": f"recipe ({RECIPE_TEST_LOSS})", "test_loss": RECIPE_TEST_LOSS})
        model.eval()
        save_grid(sample(model, args.samples, seed=args.seed), results / f"{args.name}_samples.png")
        model.train()

    def on_epoch(model, state):
        h = state.history[-1]
        print(f"{h['epoch']:>5}  {h['train_loss']:>10.4f}  {h['test_loss']:>10.4f}  {h['elapsed_s'] / 60:>7.1f}",
              flush=True)
        write_outputs(model, state)

    try:
        state, model = fit(model, train, test, tc, checkpoint,
                    resume=args.resume, on_epoch=on_epoch, meta=meta)
    except (TrainingDiverged, TrainingError) as e:  # expected, and said in one line; anything else is a bug
        print(f"train.py: error: {e}", file=sys.stderr)
        return 1
    except TrainingStopped as e:
        print(f"train.py: {e}", file=sys.stderr)
        return 128 + e.signum  # as the shell reports a process the signal ended
    if rank != 0:
        return 0
    if state.runs[-1]["from_epoch"] == state.epoch:
        # Resumed a run whose last epoch was checkpointed but perhaps never written out (killed in between).
        write_outputs(model, state)

    print(f"wrote {out}/ and {results}/{args.name}_{{loss_curve,samples}}.png")
    return push_outputs(args, out, results) if args.push_to_hub else 0


def saved_folder(name: str, out: str) -> Path:
    """The folder of a trained model named on the command line: a name in out/, or a folder; ModelLoadError if none."""
    folder = local_folder(name, out)
    if folder is None:
        raise ModelLoadError(f"no model folder {name!r} in {out}/ (or a folder with model.safetensors)")
    return folder


def attach_teacher(model, name: str, others: int, device, out: str) -> dict:
    """Have model learn the probabilities of the model saved as `name` in out/, or in that folder (distil_from).

    Returns what metrics.json and the checkpoint's settings record of it (the folder, the weights'
    SHA-256, `others`), so that --resume continues only a run taught by these very weights.
    """
    folder = saved_folder(name, out)
    model.distil_from(load_model(folder, device=device), others=others)
    return {"folder": str(folder), "sha256": weights_sha256(folder), "others": others}


def initialise_from(model, folder: Path) -> dict:
    """Copy into model the weights of the model saved in folder; what metrics.json records of it.

    Every weight of the saved model must have a place of the same name and shape in model. The
    weights only model has (a four-orientation model's orientation embedding, started from a
    one-orientation model) keep their initial values: an embedding starts at zero, so the new
    model starts as the saved one, in every orientation. A gated model may also start from the
    same model with fewer channels (GatedPixelCNN.widen_from: it starts with that model's logits).
    The record (the folder, the weights' SHA-256, how the saved model was trained) goes into the
    checkpoint's settings too, so that --resume continues only the run that started from these
    very weights.
    """
    from pixelcnn.weights import WEIGHTS_DIR

    if not folder.is_dir() and (WEIGHTS_DIR / folder).is_dir():
        folder = WEIGHTS_DIR / folder  # a model's name, as load_model takes it
    source = load_model(folder)
    ours, theirs = model.state_dict(), source.state_dict()
    misfits = [f"{k} {tuple(v.shape)}" + (f" (here {tuple(ours[k].shape)})" if k in ours else " (not here)")
               for k, v in theirs.items() if k not in ours or ours[k].shape != v.shape]
    record = {"folder": str(folder), "sha256": weights_sha256(folder)}
    misfit = TrainingError(f"--init-from {folder}: its weights do not fit this model: {', '.join(misfits[:4])}"
                           f"{' ...' if len(misfits) > 4 else ''}")
    if not misfits:
        model.load_state_dict({**ours, **theirs})
        record["kept_their_start"] = sorted(set(ours) - set(theirs))
    elif type(source) is not type(model) or not hasattr(model, "widen_from"):
        raise misfit
    else:  # fits only as the same gated model with fewer channels: it starts computing what that one does
        try:
            model.widen_from(source)
        except ValueError:
            raise misfit from None
        record["widened_from"] = source.config.hidden_channels
    metrics_path = folder / "metrics.json"
    if metrics_path.is_file():
        m = json.loads(metrics_path.read_text())
        record.update(model=m.get("model"), epochs=m.get("epochs"), test_loss=m.get("test_loss"),
                      wall_time_s=m.get("wall_time_s"), device=sorted({r["device"] for r in m.get("runs", [])}))
    return record


def build_ensemble(args, out: Path, results: Path) -> int:
    """Save the models args.ensemble as one Ensemble in out, with a metrics.json and card from theirs; 1 on a bad one."""
    models, records = [], []
    for name in args.ensemble:
        try:
            folder = saved_folder(name, args.out)
            model = load_model(folder)  # which kinds may be members, EnsembleConfig says below
        except ModelLoadError as e:
            print(f"train.py: error: {e}", file=sys.stderr)
            return 1
        m = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").is_file() else {}
        models.append(model)
        records.append({"name": folder.name, "weights_sha256": weights_sha256(folder),
                        "parameters": sum(p.numel() for p in model.parameters()), "test_loss": m.get("test_loss"),
                        "evaluation": m.get("evaluation"), "wall_time_s": m.get("wall_time_s", 0.0),
                        "devices": sorted({r["device"] for r in m.get("runs", [])}), "data": m.get("data")})
    try:
        config = EnsembleConfig(members=[asdict(m.config) for m in models])
    except ValueError as e:
        print(f"train.py: error: these models cannot be one ensemble: {e}", file=sys.stderr)
        return 1
    ensemble = Ensemble(config)
    for mine, theirs in zip(ensemble.members, models):
        mine.load_state_dict(theirs.state_dict(), strict=True)
    ensemble.eval()
    data = [r.pop("data") for r in records]
    metrics = {"model": args.name, "model_config": asdict(config), "members": records,
               "parameters": sum(r["parameters"] for r in records),
               "data": data[0] if all(d == data[0] for d in data) else None,  # None: --evaluate records nothing
               "wall_time_s": round(sum(r["wall_time_s"] for r in records), 1),
               "command": "python train.py --ensemble " + " ".join(args.ensemble) + f" --name {args.name}",
               "torch": torch.__version__, "platform": platform.platform()}
    save_model(ensemble, out)
    write_metrics(out, metrics)
    save_grid(sample(ensemble, args.samples, seed=args.seed), results / f"{args.name}_samples.png")
    print(f"wrote {out}/ ({len(models)} members, {metrics['parameters']:,} parameters) and "
          f"{results}/{args.name}_samples.png; measure it with: python train.py --name {args.name} --evaluate")
    return 0


def push_outputs(args, out: Path, results: Path) -> int:
    """Upload the weights folder and its plots to args.push_to_hub; 1 with a one-line error if that fails."""
    from pixelcnn.hub import push

    if not (out / "model.safetensors").is_file():
        print(f"train.py: error: nothing to push: {out}/model.safetensors does not exist", file=sys.stderr)
        return 1
    plots = [results / f"{args.name}_loss_curve.png", results / f"{args.name}_samples.png"]
    try:
        url = push(args.push_to_hub, out, extra_files={f"results/{p.name}": p for p in plots if p.is_file()})
    except Exception as e:  # no token, no network, no rights: the weights are saved all the same
        reason = " ".join(str(e).split())[:300]
        print(f"train.py: error: could not push to {args.push_to_hub} ({type(e).__name__}: {reason}); "
              f"the weights are in {out}/", file=sys.stderr)
        return 1
    print(f"pushed to {url}")
    return 0


def write_metrics(folder: Path, metrics: dict) -> None:
    """metrics.json and the model card written from it, each atomically."""
    write_json(folder / "metrics.json", metrics)
    card = model_card(folder.name, metrics)
    atomic_write(folder / "README.md", lambda tmp: Path(tmp).write_text(card))


class Measured:
    """Per-digit figures of a whole-test-set evaluation, kept in a file as they are measured.

    An evaluation of a labelled four-orientation model takes hours on a CPU: this keeps each
    figure's rows in `path` every CHUNK digits, so a killed `--evaluate` continues where it
    stopped. The rows are those of the weights whose SHA-256 is `sha` on the same test digits;
    a file of other weights or digits is started afresh. The file goes once the evaluation is recorded.
    """

    CHUNK = 500  # digits measured between saves: a few minutes of a labelled model's ten passes

    def __init__(self, path: Path, sha: str, images: torch.Tensor):
        self.path, self.sha, self.images = path, sha, images
        self.digits = hashlib.sha256(images.numpy().tobytes()).hexdigest()
        self.rows = {}
        if path.is_file():
            try:
                with safe_open(path, "pt") as f:
                    meta = f.metadata() or {}
                    if meta.get("weights_sha256") == sha and meta.get("digits_sha256") == self.digits:
                        self.rows = {k: f.get_tensor(k) for k in f.keys()}
            except (SafetensorError, OSError, ValueError):
                pass  # a file that cannot be read is measured again

    def nats(self, what: str, measure) -> torch.Tensor:
        """measure(images) for every test digit: the rows kept in the file, then the rest, chunk by chunk."""
        done = self.rows.get(what)
        parts = [] if done is None else [done]
        start = 0 if done is None else len(done)
        for i in range(start, len(self.images), self.CHUNK):
            parts.append(measure(self.images[i:i + self.CHUNK]).double())
            self.rows[what] = torch.cat(parts)
            rows = {k: v.contiguous() for k, v in self.rows.items()}
            meta = {"weights_sha256": self.sha, "digits_sha256": self.digits}
            atomic_write(self.path, lambda tmp: save_file(rows, tmp, metadata=meta))
        return torch.cat(parts)

    def forget(self) -> None:
        self.path.unlink(missing_ok=True)


def evaluate_saved(folder: Path, test: tuple[torch.Tensor, ...], device, kept: Path) -> int:
    """Print the test loss of the model saved in folder, as train.py measures it each epoch.

    For a labelled model, also -log p(x) with p(x) marginalised over its labels (each equally
    likely). Measured on the whole test set, both are recorded in the folder's metrics.json
    ("evaluation") and model card.
    """
    try:
        model = load_model(folder, device=device)
    except ModelLoadError as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        return 1
    images, n = test[0], len(test[0])
    pixels = images[0].numel()
    sha = weights_sha256(folder)  # of the weights measured
    measured = Measured(kept, sha, images)
    if measured.rows:
        print(f"continuing the evaluation kept in {measured.path}: " + ", ".join(
            f"{what} for {len(v):,} digits" for what, v in measured.rows.items()))
    t0 = time.time()
    loss = evaluate(model, test, TrainConfig.eval_batch_size, device)
    result = {"test_loss": loss, "seconds": round(time.time() - t0, 1)}
    labelled = getattr(model.config, "n_labels", 0)
    print(f"{folder}: test loss {loss:.4f} nats per pixel ({loss * pixels:.2f} nats per image) "
          f"on {n:,} digits{', with the label dropped' if labelled else ''}, in {result['seconds']:.0f} s")
    if labelled:
        t0 = time.time()
        per_label = measured.nats("top first, each label", lambda x: label_nats(model, x))  # (n, labels)
        scores = label_scores(per_label, test[1], pixels)  # its Bayes accuracy is what bench_quality reuses
        marginal, given, bayes = scores["test_loss_marginal"], scores["test_loss_given"], scores["bayes_accuracy"]
        result.update(test_loss_marginal=marginal, test_loss_given=given, bayes_accuracy=bayes,
                      marginal_seconds=round(time.time() - t0, 1))
        print(f"{folder}: test loss {marginal:.4f} nats per pixel ({marginal * pixels:.2f} nats per image) "
              f"with p(x) marginalised over the {labelled} labels (p(label) = 1/{labelled}), and {given:.4f} "
              f"given each digit's true label, in {result['marginal_seconds']:.0f} s; classified by argmax_label "
              f"p(x | label), {bayes:.2%} of the digits are read as their true label")
    orientations = getattr(model.config, "n_orientations", 1)
    if orientations > 1:
        t0 = time.time()
        if labelled:  # top first is measured above: the other orientations, each marginalised over the labels
            per = torch.stack([mean_nats(per_label)] + [measured.nats(f"{ORIENTATIONS[o]} first", functools.partial(
                marginal_nats, model, orientation=o)) for o in range(1, orientations)], dim=1)  # (n, O): -log p_o(x)
        else:
            per = measured.nats("each orientation", lambda x: orientation_nats(model, x))
        orders = float(mean_nats(per).mean()) / pixels
        each = (per.sum(0) / (n * pixels)).tolist()
        result.update(test_loss_orders=orders, test_loss_each_orientation=dict(zip(ORIENTATIONS, each)),
                      orders_seconds=round(time.time() - t0, 1))
        print(f"{folder}: test loss {orders:.4f} nats per pixel ({orders * pixels:.2f} nats per image) with p(x) "
              f"the mean over its {orientations} orientations (" + ", ".join(
                  f"{o} first {v:.4f}" for o, v in zip(ORIENTATIONS, each)) + f"), in {result['orders_seconds']:.0f} s")
    metrics_path = folder / "metrics.json"
    if metrics_path.is_file():
        metrics = json.loads(metrics_path.read_text())
        if (metrics.get("data") or {}).get("test_images") == n:
            metrics["evaluation"] = dict(result, command=f"python train.py --name {folder.name} --evaluate",
                                         weights_sha256=sha)
            write_metrics(folder, metrics)
            print(f"recorded in {metrics_path} and the model card")
    measured.forget()
    return 0


if __name__ == "__main__":
    exit_worker(main())
