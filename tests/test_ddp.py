"""train.py under torchrun: two CPU processes (gloo) train as one, on disjoint halves of each batch."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file

import train

ROOT = Path(__file__).resolve().parent.parent


def _args(tiny_mnist, tmp: Path) -> list[str]:
    return ["--limit", "256", "--hidden-channels", "4", "--n-layers", "1", "--epochs", "1", "--batch-size", "32",
            "--lr", "0.01", "--samples", "1", "--data-dir", str(tiny_mnist), "--out", str(tmp / "weights"),
            "--results", str(tmp / "results"), "--checkpoints", str(tmp / "checkpoints")]


@pytest.mark.slow  # three Python processes start and import torch
@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed with gloo")
def test_torchrun_two_processes_match_one(tiny_mnist, tmp_path, monkeypatch):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")  # CPU and gloo, even on a GPU machine
    ddp = tmp_path / "ddp"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "train.py", *_args(tiny_mnist, ddp)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "x 2 processes" in proc.stdout
    assert proc.stdout.count("wrote ") == 1  # rank 0 alone writes and reports

    metrics = json.loads((ddp / "weights" / "pixelcnn" / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["runs"][0]["processes"] == 2
    assert "2 processes, data-parallel" in (ddp / "weights" / "pixelcnn" / "README.md").read_text()

    # One process over the same data: with 2 x 16 = 32 per step, each step of the pair sees the same 32
    # digits as the single process (the even and odd places of the same slice of the epoch's shuffle), so
    # the two runs agree up to the rounding of the gradient all-reduce. Had both processes read the same
    # shard, or all of it, they would not.
    monkeypatch.setattr(train, "save_loss_curve", lambda history, path, **kw: None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    single = tmp_path / "single"
    assert train.main(_args(tiny_mnist, single)) == 0
    one = json.loads((single / "weights" / "pixelcnn" / "metrics.json").read_text())
    for a, b in zip(metrics["history"], one["history"], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["test_loss"] == pytest.approx(b["test_loss"], rel=1e-4)
    w2, w1 = (load_file(d / "weights" / "pixelcnn" / "model.safetensors") for d in (ddp, single))
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], atol=1e-4, rtol=1e-4)


SLOWED = """
import os, sys, time
from pathlib import Path
import pixelcnn.model as m
loss, steps = m.PixelCNN.loss, [0]

def slowed(self, batch):  # each training step slowed down; rank 1 says how far it is, and its process id
    if self.training:
        steps[0] += 1
        if os.environ["RANK"] == "1":
            Path(os.environ["STEPS_FILE"]).write_text(f"{os.getpid()} {steps[0]}")
        time.sleep(0.2)
    return loss(self, batch)

m.PixelCNN.loss = slowed
import train
sys.exit(train.main(sys.argv[1:]))
"""


@pytest.mark.slow  # torchrun twice
@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed with gloo")
def test_sigterm_to_one_process_stops_both_at_the_same_step(tiny_mnist, tmp_path):
    """Only rank 1 is signalled: rank 0 learns it at the step's end, both checkpoint the same step and
    stop (alone, rank 0 would wait for rank 1 in its next all-reduce for ever); --resume goes on from there."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    steps_file = tmp_path / "steps"
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", PYTHONPATH=str(ROOT), STEPS_FILE=str(steps_file))
    (tmp_path / "slowed.py").write_text(SLOWED)
    run = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    args = [*_args(tiny_mnist, tmp_path), "--epochs", "2", "--checkpoint-every", "1e9"]
    proc = subprocess.Popen([*run, str(tmp_path / "slowed.py"), *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        said = steps_file.read_text().split() if steps_file.exists() else []
        if len(said) == 2 and int(said[1]) >= 3:
            os.kill(int(said[0]), signal.SIGTERM)  # rank 1 alone, during its third step (or later)
            break
        time.sleep(0.02)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0, "the run ended before it could be stopped"
    assert err.count("stopped by SIGTERM after 0 epochs and") == 2, err[-4000:]  # rank 0 and rank 1, alike
    stopped = {line.split("after 0 epochs and ")[1].split()[0] for line in err.splitlines() if "stopped by" in line}
    assert len(stopped) == 1 and int(stopped.pop()) >= 3  # the same step, in epoch 1, kept

    proc = subprocess.run([*run, "train.py", *args, "--resume"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    runs = json.loads((tmp_path / "weights" / "pixelcnn" / "metrics.json").read_text())["runs"]
    assert len(runs) == 2 and runs[1]["from_epoch"] == 0 and runs[1]["from_step"] >= 3


LINGER = """
import time
import torch
from pixelcnn.trainer import distributed_setup, distributed_teardown, exit_worker

rank, world, device = distributed_setup()
model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(10, 10))
for _ in range(5):
    model(torch.randn(4, 10)).sum().backward()
if rank == 0:
    time.sleep(0.5)  # as train.py's rank 0 writes the outputs after the others have finished
distributed_teardown()
exit_worker(0)  # as train.py ends
"""


@pytest.mark.slow  # torchrun eight times
@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed with gloo")
def test_processes_end_cleanly_when_one_lingers(tmp_path):
    """Ending without distributed_teardown, a process aborted as Python exited (SIGABRT) in about one
    run of five, and destroy_process_group alone in one of twelve; with the teardown but Python's own
    exit, in 1 of 30 with a loaded CPU (exit_worker skips it): eight runs in a row must all end well."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", PYTHONPATH=str(ROOT))
    (tmp_path / "linger.py").write_text(LINGER)
    for run in range(8):
        proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                               str(tmp_path / "linger.py")], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, f"run {run + 1} of 8: " + proc.stderr[-3000:]
