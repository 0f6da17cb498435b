"""Rows of a benchmark table measured in processes of their own, a few at a time (ablate.py, distil.py, hybrid.py)."""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def add_row_arguments(p: argparse.ArgumentParser, out: str, test: int) -> None:
    """The options every such script takes: the test digits, the data, where rows go, and how they run."""
    p.add_argument("--test", type=int, default=test, help="score on the first N test digits (default: %(default)s)")
    p.add_argument("--data-dir", default="data", help="torchvision MNIST root (default: %(default)s)")
    p.add_argument("--out", default=out, help="one JSON per row (default: %(default)s)")
    p.add_argument("--jobs", type=int, default=2, help="rows trained at once, each in its own process")
    p.add_argument("--threads", type=int, default=1, help="torch threads per job")
    p.add_argument("--fresh", action="store_true", help="measure again even where the row's JSON exists")


def write_row(path: Path, row: dict) -> None:
    """One row's figures, as the next run of the script reuses them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(row, indent=2) + "\n")


def run_in_processes(todo: list, command, name, threads: int, jobs: int, doing: str = "training") -> int:
    """Run command(row), a list of arguments, for every row of todo, `jobs` at once with `threads` threads each.

    name(row) is how the progress lines on stderr call a row. Returns 0, or 1 once a row fails.
    """
    todo, running = list(todo), []
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    while todo or running:
        while todo and len(running) < jobs:
            row = todo.pop(0)
            print(f"{doing} {name(row)} ...", file=sys.stderr, flush=True)
            running.append((row, subprocess.Popen(command(row), env=env, stdout=subprocess.DEVNULL)))
        time.sleep(1)
        for row, proc in list(running):
            if proc.poll() is not None:
                running.remove((row, proc))
                if proc.returncode:
                    print(f"{name(row)} failed (exit {proc.returncode})", file=sys.stderr)
                    return 1
                print(f"{name(row)} done", file=sys.stderr, flush=True)
    return 0
