"""Shared fixtures: tiny MNIST-format data written as IDX files, and an offline environment.

Nothing here touches the network or the repo's own data/, weights/, checkpoints/, results/.
"""

import atexit
import gzip
import os
import shutil
import signal
import struct
import sys
import tempfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # so that tests can `import train`

# No test may reach the Hugging Face Hub (tests that need one start tests/fake_hub.py), nor use
# the user's cache. Set before anything imports huggingface_hub, which reads them once.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
if "HF_HOME" not in os.environ:
    os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="pixelcnn-tests-hf-")
    atexit.register(shutil.rmtree, os.environ["HF_HOME"], ignore_errors=True)
# Tiny models on a shared CPU: one thread is fastest (more threads only spin-wait); subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: starts Python subprocesses (torchrun, the Hub client, a kill); "
                                       "-m 'not slow' skips them")


_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_FIRST_HANDLERS = {s: signal.getsignal(s) for s in _SIGNALS}  # as the session started
_LEFT_SIGNAL_HANDLERS = []  # (where, signal name): what was left installed, and restored


def _restore_handlers(where: str) -> None:
    for s, handler in _FIRST_HANDLERS.items():
        if signal.getsignal(s) is not handler:
            _LEFT_SIGNAL_HANDLERS.append((where, signal.Signals(s).name))
            signal.signal(s, handler)


@pytest.fixture(autouse=True)
def _restore_signal_handlers(request):
    """Run every test with the SIGINT/SIGTERM handlers the session started with, and note who changed them.

    A handler left behind (by a test, a fixture of a wider scope, or a library they started) changes
    what a signal does in every later test; train.py's second-signal test failed in the full suite
    for that reason."""
    _restore_handlers(f"before {request.node.nodeid} (a fixture)")
    yield
    _restore_handlers(request.node.nodeid)


def pytest_terminal_summary(terminalreporter):
    for where, name in _LEFT_SIGNAL_HANDLERS:
        terminalreporter.write_line(f"{where} left a {name} handler installed (restored)")


def write_idx(path: Path, array: torch.Tensor, gz: bool = False) -> Path:
    """Write a uint8 tensor as an IDX file: (N, 28, 28) -> IDX3 images, (N,) -> IDX1 labels."""
    array = array.to(torch.uint8).contiguous()
    header = struct.pack(">HBB", 0, 0x08, array.dim())  # zero, type ubyte, number of dimensions
    header += b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + array.numpy().tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def write_mnist(root: Path, train_images, train_labels, test_images, test_labels, gz: bool = False) -> Path:
    """Write the four MNIST files under root/MNIST/raw/ as torchvision expects; return root."""
    raw = Path(root) / "MNIST" / "raw"
    write_idx(raw / "train-images-idx3-ubyte", train_images, gz)
    write_idx(raw / "train-labels-idx1-ubyte", train_labels, gz)
    write_idx(raw / "t10k-images-idx3-ubyte", test_images, gz)
    write_idx(raw / "t10k-labels-idx1-ubyte", test_labels, gz)
    return Path(root)


def learnable_digits(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n 28x28 uint8 images with structure a PixelCNN learns fast: a filled box per class."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    images = torch.zeros(n, 28, 28, dtype=torch.uint8)
    for k in range(n):
        top = 4 + int(labels[k]) // 2
        left = 4 + 2 * (int(labels[k]) % 5)
        images[k, top:top + 12, left:left + 8] = 255
    noise = torch.rand(n, 28, 28, generator=g) < 0.02  # a few flipped pixels
    images[noise] = 255 - images[noise]
    return images, labels


@pytest.fixture(scope="session")
def tiny_mnist(tmp_path_factory) -> Path:
    """A data dir holding 256 train and 64 test learnable 'digits' in MNIST's IDX format."""
    root = tmp_path_factory.mktemp("mnist")
    return write_mnist(root, *learnable_digits(256, seed=1), *learnable_digits(64, seed=2))


@pytest.fixture
def no_download(monkeypatch):
    """torchvision's MNIST mirrors replaced by a closed local port: a download fails at once."""
    from torchvision.datasets import MNIST

    monkeypatch.setattr(MNIST, "mirrors", ["http://127.0.0.1:9/"])
