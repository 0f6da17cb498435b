"""train.py under torchrun: two CPU processes (gloo) train as one, on disjoint halves of each batch."""

import json
import os
import subprocess
import sys
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
