"""Binarized MNIST: torchvision's MNIST, a pixel 1 where its value in [0, 1] is > 0.5."""

import gzip
import shutil
from pathlib import Path

import torch

RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def binarize(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (0..255) or floats in [0, 1] -> float32 in {0, 1}, 1 where value > 0.5."""
    if images.dtype == torch.uint8:
        images = images.float() / 255
    return (images > 0.5).float()


def _gunzip_raw_files(raw: Path) -> None:
    """Unpack any NAME.gz whose NAME is missing: torchvision reads only uncompressed files."""
    for name in RAW_FILES:
        src, dst = raw / f"{name}.gz", raw / name
        if src.exists() and not dst.exists():
            tmp = dst.with_suffix(".tmp")
            try:
                with gzip.open(src, "rb") as f_in, open(tmp, "wb") as f_out:
                    shutil.copyfileobj(f_in, f_out)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            tmp.replace(dst)


def load_mnist(data_dir: str | Path = "data", train: bool = True, download: bool = True):
    """Binarized MNIST as tensors.

    Args:
        data_dir: torchvision's root; the IDX files live in data_dir/MNIST/raw/.
        train: the 60,000 training digits, else the 10,000 test digits.
        download: fetch the files when they are missing.
    Returns:
        images (N, 1, 28, 28) float32 in {0, 1}, labels (N,) int64.
    """
    from torchvision.datasets import MNIST  # torchvision is only needed for data

    raw = Path(data_dir) / "MNIST" / "raw"
    try:
        if raw.is_dir():
            _gunzip_raw_files(raw)
        ds = MNIST(str(data_dir), train=train, download=download)
    except Exception as e:  # a bad .gz; torchvision raises RuntimeError, URLError, OSError, ...
        names = ", ".join(RAW_FILES)
        reason = " ".join(str(e).split())[:300] or repr(e)  # one line, with the cause torchvision lists last
        raise RuntimeError(
            f"could not load MNIST ({type(e).__name__}: {reason}). "
            f"To train offline, put the four IDX files ({names}; .gz is fine) in {raw.resolve()}/"
        ) from None
    return binarize(ds.data).unsqueeze(1), ds.targets.long()
