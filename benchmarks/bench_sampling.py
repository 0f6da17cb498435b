"""Time the plain sampler (the full network once per pixel) and the cached one, side by side.

    python benchmarks/bench_sampling.py                      # weights/pixelcnn, or a random model like it
    python benchmarks/bench_sampling.py --repeats 5 --model weights/pixelcnn
    python benchmarks/bench_sampling.py --plain-pixels 112   # plain: time 112 pixels, scale to 784
    python benchmarks/bench_sampling.py --random gated_pixelcnn             # a random model of the default config
    python benchmarks/bench_sampling.py --model pixelcnn --random gated_pixelcnn   # side by side
    python benchmarks/bench_sampling.py --big 256            # also 256 digits on one thread and on two
    python benchmarks/bench_sampling.py --model gated-pixelcnn-5x5 --guidance 0 1   # unguided and guided, side by side
    python benchmarks/bench_sampling.py --model gated-pixelcnn-5x5 --against HEAD~1  # a commit's sampler, in turn
    python benchmarks/bench_sampling.py --model gated-pixelcnn-5x5 --sizes 1 4 --guesses   # rows guessed or not

Prints a markdown table: one digit, and 16 digits at once, in milliseconds, with the ratio,
for each model, and 256 digits drawn by one thread or split over two (--big). It also checks
that the samplers draw the same pixels. With --against REV, the cached sampler of git revision
REV (its pixelcnn package, with the same weights) and the working tree's are timed in turn, in
one run, so that a change is measured against the code before it on the same machine and load.
With --guesses, batches of up to GUESS_UP_TO digits (sampling.py) are also drawn pixel by pixel,
in turn with the rows guessed and checked a pass at a time (the default), with the passes a row takes.
"""

import argparse
import atexit
import importlib
import io
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import pixelcnn  # noqa: E402
from pixelcnn.weights import MODEL_TYPES, build_model  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", nargs="+", default=[],
                   help="folders, names in weights/, or Hub repo ids (default, without --random: the shipped "
                        "weights/pixelcnn if present, else a random PixelCNN of the default config)")
    p.add_argument("--random", nargs="+", default=[], choices=list(MODEL_TYPES), metavar="MODEL_TYPE",
                   help=f"randomly initialised models of the default config, by model_type ({', '.join(MODEL_TYPES)})")
    p.add_argument("--label", type=int, help="sample with this label (labelled models only)")
    p.add_argument("--guidance", type=float, nargs="+", default=[0.0], metavar="W",
                   help="classifier-free guidance of a labelled model's samples, a row for each (default: 0)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of the cached sampler; the median is shown")
    p.add_argument("--plain-repeats", type=int, default=1, help="timed runs of the plain sampler (slow)")
    p.add_argument("--plain-pixels", type=int, default=784,
                   help="time the plain sampler on the last N pixels only and scale to the whole image "
                        "(each pixel costs it one full pass, whatever the pixel)")
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 16], help="digits drawn at once (default: 1 16)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's own choice)")
    p.add_argument("--big", type=int, default=256,
                   help="digits of the two-core table: one shard against two, side by side (0: skip it)")
    p.add_argument("--guesses", action="store_true",
                   help="also time the small batches drawn pixel by pixel against their rows guessed, in turn")
    p.add_argument("--against", metavar="REV",
                   help="also time git revision REV's cached sampler against the working tree's, in turn")
    args = p.parse_args(argv)
    if args.against:
        try:
            args.against_package = package_at(args.against)
        except (subprocess.CalledProcessError, OSError) as e:
            p.error(f"--against {args.against}: could not read pixelcnn/ at that revision with git "
                    f"({getattr(e, 'stderr', b'').decode(errors='replace').strip() or e})")
    if args.repeats < 1 or args.plain_repeats < 1 or not 1 <= args.plain_pixels <= 784 or min(args.sizes) < 1:
        p.error("--repeats and --plain-repeats must be >= 1, --plain-pixels in 1..784, --sizes >= 1")
    return args


def load(args) -> list[tuple[torch.nn.Module, str]]:
    """The models to time, with a name for the table."""
    names, kinds = args.model, args.random
    if not names and not kinds:
        names, kinds = (["pixelcnn"], []) if "pixelcnn" in pixelcnn.list_models() else ([], ["pixelcnn"])
    models = [(pixelcnn.load_model(name), name) for name in names]
    for kind in kinds:
        torch.manual_seed(0)
        models.append((build_model({"model_type": kind}).eval(), f"random {kind}"))
    return models


def package_at(rev: str):
    """The pixelcnn package as it is at git revision rev, imported under a name of its own."""
    archive = subprocess.run(["git", "archive", rev, "pixelcnn"], cwd=ROOT, capture_output=True, check=True).stdout
    folder = Path(tempfile.mkdtemp(prefix="pixelcnn-at-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    name = "pixelcnn_at_" + re.sub(r"\W", "_", rev)
    (folder / "pixelcnn").rename(folder / name)
    sys.path.insert(0, str(folder))
    return importlib.import_module(name)


def against(models, args) -> bool:
    """Print REV's cached sampler against the working tree's, timed in turn; True if they draw the same pixels."""
    old = args.against_package
    print(f"\nThe cached sampler at {args.against} and now, the same weights, timed in turn (median of {args.repeats})\n")
    print(f"| model | digits | {args.against} (ms) | now (ms) | speed-up | same pixels |")
    print("| :--- | ---: | ---: | ---: | ---: | :---: |")
    same = True
    for model, name, kw in runs(models, args):
        then = old.weights.build_model(asdict(model.config)).eval()
        then.load_state_dict(model.state_dict())
        for n in args.sizes:
            both = {"then": lambda: old.sample(then, n, **kw), "now": lambda: pixelcnn.sample(model, n, **kw)}
            for fn in both.values():
                fn()  # warm-up
            ms, out = in_turn(both, args.repeats)
            before, now = ms["then"], ms["now"]
            equal = torch.equal(out["then"], out["now"])
            same = same and equal
            print(f"| {name} | {n} | {before:,.1f} | {now:,.1f} | {before / now:.2f}x | {'yes' if equal else 'NO'} |")
    return same


def guesses(models, args) -> bool:
    """Print each small batch drawn pixel by pixel against its rows guessed (_Drawing._run_row), timed in
    turn, with the passes a row takes; True if both draw the same pixels."""
    sampling = pixelcnn.sampling
    print(f"\nBatches of up to {sampling.GUESS_UP_TO} digits: pixel by pixel, and a row guessed and checked a pass "
          f"at a time, timed in turn (median of {args.repeats})\n")
    print("| model | digits | pixel by pixel (ms) | rows guessed (ms) | speed-up | passes a row | same pixels |")
    print("| :--- | ---: | ---: | ---: | ---: | ---: | :---: |")
    same, guess_up_to, run_row = True, sampling.GUESS_UP_TO, sampling._Drawing._run_row
    passes = [0]

    def counted(drawing, steps, row_logits, cols, start, stop):  # counts the passes: one row_logits call each
        def logits(*a):
            passes[0] += 1
            return row_logits(*a)
        return run_row(drawing, steps, logits, cols, start, stop)

    def pixel_by_pixel(fn):
        sampling.GUESS_UP_TO = 0
        try:
            return fn()
        finally:
            sampling.GUESS_UP_TO = guess_up_to

    for model, name, kw in runs(models, args):
        for n in [n for n in args.sizes if n <= guess_up_to]:
            both = {"pixels": lambda: pixel_by_pixel(lambda: pixelcnn.sample(model, n, **kw)),
                    "rows": lambda: pixelcnn.sample(model, n, **kw)}
            for fn in both.values():
                fn()  # warm-up
            ms, out = in_turn(both, args.repeats)
            sampling._Drawing._run_row = counted
            try:
                pixelcnn.sample(model, n, **kw)
            finally:
                sampling._Drawing._run_row = run_row
            equal = torch.equal(out["pixels"], out["rows"])
            same = same and equal
            print(f"| {name} | {n} | {ms['pixels']:,.1f} | {ms['rows']:,.1f} | {ms['pixels'] / ms['rows']:.2f}x "
                  f"| {passes[0] / 28:.2f} | {'yes' if equal else 'NO'} |")
            passes[0] = 0
    return same


def in_turn(fns: dict, repeats: int) -> tuple[dict, dict]:
    """Run each of fns repeats times, taking turns, so that a change in the machine's load hits them all;
    the median wall time of each in ms, and its last result."""
    times, out = {key: [] for key in fns}, {}
    for _ in range(repeats):
        for key, fn in fns.items():
            t0 = time.perf_counter()
            out[key] = fn()
            times[key].append((time.perf_counter() - t0) * 1e3)
    return {key: statistics.median(t) for key, t in times.items()}, out


def timed(fn, repeats: int) -> tuple[float, float, torch.Tensor]:
    """Median wall time and median CPU time (all threads) of fn() in ms, and its last result."""
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    return statistics.median(wall), statistics.median(cpu), out


def runs(models, args):
    """(model, its row's name, the sampler's settings): a run for each guidance of a labelled model."""
    for model, name in models:
        for w in args.guidance if pixelcnn.sampling.n_labels(model) else [0.0]:
            yield model, name + (f" (guidance {w:g})" if w else ""), dict(seed=0, label=args.label, guidance=w)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    models = load(args)
    hw = 28 * 28
    given = hw - args.plain_pixels  # the plain sampler is timed on pixels given .. 783
    rows = []
    for model, name, kw in runs(models, args):
        for n in args.sizes:
            pixelcnn.sample(model, n, **kw)  # warm-up
            cached = timed(lambda: pixelcnn.sample(model, n, **kw), args.repeats)
            images = cached[-1]
            # Completing the cached images from `given` pixels with the same seed must give them back.
            *plain, plain_images = timed(lambda: pixelcnn.sample_plain(model, n, prefix=images, pixels=given, **kw),
                                         args.plain_repeats)
            scale = (hw + 1) / (args.plain_pixels + 1)  # one full pass per pixel, plus one at the start
            rows.append((name, n, plain[0] * scale, plain[1] * scale, *cached[:2], torch.equal(plain_images, images)))

    load_avg = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs "
          f"({platform.processor() or platform.machine()}), load average {load_avg:.1f}"
          + ("" if args.label is None else f"; label {args.label}"))
    scaled = "" if args.plain_pixels == hw else f", timed on the last {args.plain_pixels} pixels and scaled to {hw}"
    print(f"cached: median of {args.repeats}; plain: median of {args.plain_repeats}{scaled}\n")
    print("| model | digits | plain (ms) | cached (ms) | speed-up | plain CPU (ms) | cached CPU (ms) | same pixels |")
    print("| :--- | ---: | ---: | ---: | ---: | ---: | ---: | :---: |")
    for name, n, plain_ms, plain_cpu, cached_ms, cached_cpu, same in rows:
        print(f"| {name} | {n} | {plain_ms:,.0f} | {cached_ms:,.1f} | {plain_ms / cached_ms:,.0f}x | {plain_cpu:,.0f} "
              f"| {cached_cpu:,.1f} | {'yes' if same else 'NO'} |")
    print("\nms: wall-clock time for the whole batch; CPU: summed over all threads of this process")
    same = all(row[-1] for row in rows)
    if args.big:
        print(f"\n{args.big} digits at once, the batch drawn by one thread or split over two (median of "
              f"{args.repeats}, interleaved)\n")
        print("| model | one thread (ms) | two threads (ms) | speed-up | same pixels |")
        print("| :--- | ---: | ---: | ---: | :---: |")
        for model, name, kw in runs(models, args):
            ms, out = in_turn({shards: lambda shards=shards: pixelcnn.sample(model, args.big, shards=shards, **kw)
                               for shards in (1, 2)}, args.repeats)
            one, two = ms[1], ms[2]
            equal = torch.equal(out[1], out[2])
            same = same and equal
            print(f"| {name} | {one:,.0f} | {two:,.0f} | {one / two:.2f}x | {'yes' if equal else 'NO'} |")
    if args.guesses:
        same = guesses(models, args) and same
    if args.against:
        same = against(models, args) and same
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
