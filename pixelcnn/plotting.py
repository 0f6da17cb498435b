"""Drawing helpers: image grids and heatmaps with Pillow, the loss curve with matplotlib."""

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def to_uint8(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """(N, 1, H, W) or (N, H, W) or (H, W) values in [0, 1] -> uint8 array without the channel."""
    a = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if a.ndim == 4:
        a = a[:, 0]
    return (np.clip(a, 0, 1) * 255).round().astype(np.uint8)


def grid(images, nrow: int | None = None, scale: int = 1, pad: int = 2, pad_value: int = 128) -> np.ndarray:
    """Tile N images into one uint8 array, `nrow` per row, each upscaled by `scale` (nearest)."""
    a = to_uint8(images)
    if a.ndim == 2:
        a = a[None]
    n, h, w = a.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    ncol_rows = math.ceil(n / nrow)
    a = a.repeat(scale, axis=1).repeat(scale, axis=2)
    h, w = h * scale, w * scale
    out = np.full((ncol_rows * (h + pad) + pad, nrow * (w + pad) + pad), pad_value, np.uint8)
    for k in range(n):
        r, c = divmod(k, nrow)
        out[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = a[k]
    return out


def save_grid(images, path: str | Path, nrow: int | None = None, scale: int = 4) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid(images, nrow=nrow, scale=scale)).save(path)
    return path


def save_loss_curve(history: list[dict], path: str | Path, title: str = "",
                    reference: dict | None = None) -> Path:
    """Plot train and test loss per epoch; `reference` = {"label": str, "test_loss": float} adds a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
    ax.plot(epochs, [h["test_loss"] for h in history], "s-", label="test")
    if reference:
        ax.axhline(reference["test_loss"], color="gray", ls="--", lw=1, label=reference["label"])
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (nats per pixel)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
