"""Time app.py as visitors see it, through gradio_client against `python app.py` on 127.0.0.1.

    python benchmarks/bench_app.py                     # the shipped model if weights/pixelcnn exists
    python benchmarks/bench_app.py --model user/repo --runs 10 --requests 200

Prints a table of:
  - time from the request to the first streamed frame and to the last, for 1 and 16 digits,
    with pacing off (PIXELCNN_APP_FPS=0): the model's speed plus Gradio's, not the 20 frames/s pace;
  - 8 completions of an example digit with a central 14x14 hole (Complete, "redraw what I mark",
    the hole as the API's mask), resampled from the app's 128 candidates and from 64, pacing off,
    with the mean effective sample size (for a labelled model also guided, w = 1, from 128: two
    passes a pixel); and 8 of its bottom 14 rows (for a model that reads top
    first, from candidates that a four-orientation model of the page draws, if there is one);
  - 8 clients streaming 16 digits each at once, with pacing off and on: all must finish;
  - the server's resident memory over N requests in a row (Generate, 4 digits, pacing off).
Without weights/pixelcnn it times an untrained model of the recipe's size: the speed does not
depend on the weights' values.
"""

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import pixelcnn  # noqa: E402
from pixelcnn.sampling import n_labels  # noqa: E402

TARGETS = {"first frame": 0.5, "16 digits done": 3.0, "8 hole completions done": 3.0}  # seconds, on 2 cores
EXAMPLE = sorted((ROOT / "examples").glob("*.png"))[0]  # MNIST's first test digit, a 7


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


class Server:
    """`python app.py` in a subprocess, its files in a temporary folder."""

    def __init__(self, model: str, fps: float, timeout: float = 600):
        self.port = free_port()
        self.tmp = tempfile.TemporaryDirectory(prefix="bench-app-")
        env = dict(os.environ, PIXELCNN_MODEL=model, PIXELCNN_APP_FPS=str(fps), GRADIO_SERVER_NAME="127.0.0.1",
                   GRADIO_SERVER_PORT=str(self.port), GRADIO_ANALYTICS_ENABLED="False", GRADIO_TEMP_DIR=self.tmp.name,
                   HF_HUB_OFFLINE=os.environ.get("HF_HUB_OFFLINE", "1"))
        self.log = open(Path(self.tmp.name) / "server.log", "w")
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "app.py")], env=env, cwd=ROOT,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}/"
        deadline = time.time() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app.py exited: {(Path(self.tmp.name) / 'server.log').read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if time.time() > deadline:
                    raise TimeoutError(f"app.py did not answer within {timeout} s")
                time.sleep(0.5)

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        self.tmp.cleanup()


def stream(clients, n: int, model: str, seed0: int = 0) -> list[tuple[float, float, int, str]]:
    """Start a Generate stream on each client at once; (first frame s, last frame s, frames, status) per client.

    One thread watches every job, so that the watching costs the server little CPU.
    """
    t0 = time.perf_counter()
    jobs = [c.submit(n, seed0 + k, False, 1.0, model, "any", api_name="/generate") for k, c in enumerate(clients)]
    first = [None] * len(jobs)
    last = [None] * len(jobs)
    while any(t is None for t in last):
        now = time.perf_counter() - t0
        for k, job in enumerate(jobs):
            if first[k] is None and job.outputs():
                first[k] = now
            if last[k] is None and job.done():
                last[k] = now
        time.sleep(0.002)
    return [(f, l, len(j.outputs()), j.outputs()[-1][3] if j.outputs() else "") for f, l, j in zip(first, last, jobs)]


def complete_example(client, model: str, keep: str, candidates: int, seed: int,
                     mask: str | None = None, guidance: float = 0.0) -> tuple[float, float, str]:
    """8 completions of EXAMPLE, keep "marked" (the hole of `mask` redrawn) or a side's 14 rows or columns,
    guided by `guidance` (Complete's default, 0, draws from the model itself): (first frame s, last s, status)."""
    from gradio_client import handle_file

    t0 = time.perf_counter()
    job = client.submit(handle_file(str(EXAMPLE)), keep, 14, 8, seed, False, 1.0, model, "any", "fast",
                        candidates, mask and handle_file(mask), guidance, api_name="/complete")
    first = None
    while not job.done():
        if first is None and job.outputs():
            first = time.perf_counter() - t0
        time.sleep(0.002)
    last = time.perf_counter() - t0
    outputs = job.outputs()
    return first if first is not None else last, last, outputs[-1][3] if outputs else ""


def row(what: str, value: str, note: str = "") -> str:
    return f"| {what} | {value} | {note} |"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="a folder, a name in weights/, or a Hub repo id (default: the app's, "
                   f"{pixelcnn.weights.DEFAULT_MODEL}, if present)")
    p.add_argument("--runs", type=int, default=5, help="timed streams per size (default: %(default)s)")
    p.add_argument("--requests", type=int, default=200, help="requests in the memory run (default: %(default)s)")
    p.add_argument("--only-hole", action="store_true",
                   help="time only the completions, of the hole and the bottom (the rest takes minutes)")
    args = p.parse_args()
    from gradio_client import Client

    tmp = tempfile.TemporaryDirectory(prefix="bench-app-model-")
    default = pixelcnn.weights.DEFAULT_MODEL
    model = args.model or (default if default in pixelcnn.list_models() else None)
    if model is None:
        model = str(pixelcnn.save_model(pixelcnn.PixelCNN(pixelcnn.PixelCNNConfig()), Path(tmp.name) / "untrained"))
    print(f"model {model}; {os.cpu_count()} CPUs; {args.runs} runs per size; starting app.py ...", flush=True)

    lines = ["| what | measured | note |", "| --- | --- | --- |"]
    server = Server(model, fps=0)
    try:
        client = Client(server.url, verbose=False, download_files=False)
        stream([client], 16, model)  # warm up: the model loads, the threads start
        for n in () if args.only_hole else (1, 16):
            runs = [stream([client], n, model, seed0=k)[0] for k in range(args.runs)]
            firsts, lasts = [r[0] for r in runs], [r[1] for r in runs]
            assert all(r[2] == 29 and "Drew 784" in r[3] for r in runs), runs
            lines.append(row(f"{n} digit{'s' * (n > 1)}: first frame", f"{statistics.median(firsts):.3f} s",
                             f"median of {args.runs}, max {max(firsts):.3f} s; target < {TARGETS['first frame']} s"))
            lines.append(row(f"{n} digit{'s' * (n > 1)}: last frame (29 frames)", f"{statistics.median(lasts):.3f} s",
                             f"median of {args.runs}, max {max(lasts):.3f} s"
                             + (f"; target < {TARGETS['16 digits done']} s" if n == 16 else "")))
        print("\n".join(lines), flush=True)

        hole = np.zeros((28, 28), np.uint8)
        hole[7:21, 7:21] = 255  # white where to redraw
        mask = str(Path(tmp.name) / "hole.png")
        Image.fromarray(hole).save(mask)
        complete_example(client, model, "marked", 128, 0, mask)  # warm up
        labelled = n_labels(pixelcnn.load_model(model)) > 0
        for candidates, guidance in ((128, 0.0), (64, 0.0)) + (((128, 1.0),) if labelled else ()):
            runs = [complete_example(client, model, "marked", candidates, k, mask, guidance) for k in range(args.runs)]
            assert all("Drew 196 pixels" in r[2] and "candidates counted" in r[2] for r in runs), runs
            ess = [float(re.search(r"\*\*([\d.]+) of the", r[2])[1]) for r in runs]
            lasts = [r[1] for r in runs]
            firsts = [r[0] for r in runs]
            lines.append(row(f"8 completions of a central 14x14 hole, {candidates} candidates"
                             + (f", guided (w = {guidance:g})" if guidance else ""),
                             f"{statistics.median(lasts):.3f} s",
                             f"median of {args.runs}, max {max(lasts):.3f} s, first frame "
                             f"{statistics.median(firsts):.3f} s; mean ESS {statistics.mean(ess):.1f}"
                             + (f"; target < {TARGETS['8 hole completions done']} s"
                                if candidates == 128 and not guidance else "")))
            print(lines[-1], flush=True)
        runs = [complete_example(client, model, "bottom", 128, k) for k in range(args.runs)]
        assert all("Drew 392 pixels" in r[2] for r in runs), runs
        drawn_by = re.search(r"drawn from the kept side by ([\w.-]+)", runs[0][2])
        ess = [float(m[1]) for r in runs if (m := re.search(r"\*\*([\d.]+) of the", r[2]))]
        lines.append(row("8 completions of the bottom 14 rows, 128 candidates",
                         f"{statistics.median([r[1] for r in runs]):.3f} s",
                         f"median of {args.runs}, max {max(r[1] for r in runs):.3f} s, first frame "
                         f"{statistics.median([r[0] for r in runs]):.3f} s; "
                         + (f"candidates drawn by {drawn_by[1]}, mean ESS {statistics.mean(ess):.1f}" if drawn_by
                            else f"mean ESS {statistics.mean(ess):.1f}" if ess else "exact, no candidates")))
        print(lines[-1], flush=True)
        if args.only_hole:
            return 0

        clients = [Client(server.url, verbose=False, download_files=False) for _ in range(8)]
        t0 = time.perf_counter()
        results = stream(clients, 16, model)
        ok = sum(r[2] == 29 and "Drew 784" in r[3] for r in results)
        lines.append(row("8 clients x 16 digits at once, pacing off", f"{ok}/8 complete in {time.perf_counter() - t0:.2f} s",
                         f"first frames {min(r[0] for r in results):.2f}-{max(r[0] for r in results):.2f} s "
                         "(the queue runs 4 at a time)"))
        print(lines[-1], flush=True)

        # memory: after a warm-up, then every quarter of the requests
        checkpoints = {0: rss_mib(server.proc.pid)}
        t0 = time.perf_counter()
        for k in range(1, args.requests + 1):
            frames = list(client.submit(4, k, False, 1.0, model, "any", api_name="/generate"))
            assert "Drew 784" in frames[-1][3], frames[-1]
            if k % max(1, args.requests // 4) == 0:
                checkpoints[k] = rss_mib(server.proc.pid)
        spent = time.perf_counter() - t0
        trace = ", ".join(f"{k}: {v:.0f}" for k, v in checkpoints.items())
        growth = checkpoints[max(checkpoints)] - checkpoints[0]
        lines.append(row(f"server memory over {args.requests} requests in a row", f"{growth:+.1f} MiB",
                         f"RSS MiB after k requests: {trace}; {spent / args.requests:.2f} s a request"))
        print(lines[-1], flush=True)
    finally:
        server.close()

    server = Server(model, fps=20)
    try:
        clients = [Client(server.url, verbose=False, download_files=False) for _ in range(8)]
        stream(clients[:1], 1, model)  # warm up
        t0 = time.perf_counter()
        results = stream(clients, 16, model)
        ok = sum(r[2] == 29 and "Drew 784" in r[3] for r in results)
        lines.append(row("8 clients x 16 digits at once, paced at 20 frames/s", f"{ok}/8 complete in {time.perf_counter() - t0:.2f} s",
                         f"each stream {min(r[1] - r[0] for r in results):.2f}-{max(r[1] - r[0] for r in results):.2f} s "
                         "from its first frame (1.4 s at 20 frames/s)"))
    finally:
        server.close()
        tmp.cleanup()

    print("\n" + "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
