"""Pictures with Pillow: sample grids, the app's coloured pictures, animated GIFs; the loss curve with matplotlib."""

import io
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

# matplotlib's viridis at 9 points, interpolated to 256 colours: 0 is dark purple, 1 yellow
VIRIDIS = np.array([[68, 1, 84], [71, 45, 123], [59, 82, 139], [44, 114, 142], [33, 145, 140],
                    [40, 174, 128], [94, 201, 98], [173, 220, 48], [253, 231, 37]], float)
COLORMAP = np.stack([np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(VIRIDIS)), VIRIDIS[:, c])
                     for c in range(3)], axis=1).round().astype(np.uint8)  # (256, 3)
NOT_YET = (40, 44, 60)  # pixels not drawn yet
CURSOR = (255, 64, 64)  # the next pixel to be drawn
CUT = (255, 150, 0)  # the line under the kept rows
BORDER = 200  # the grey around and between the pictures of a tile()
PAD = 4  # pixels of BORDER around and between them


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


# --- the app's pictures: (N, H, W, 3) uint8 digits, coloured, upscaled and tiled -------------

def colorize(values: np.ndarray, vmax: float = 1.0) -> np.ndarray:
    """Values in [0, vmax] -> viridis colours (..., 3) uint8; NaN (not reached yet) -> NOT_YET."""
    idx = np.clip(np.nan_to_num(values / vmax) * 255, 0, 255).round().astype(np.intp)
    rgb = COLORMAP[idx]
    rgb[np.isnan(values)] = NOT_YET
    return rgb


def binary_rgb(images: np.ndarray) -> np.ndarray:
    """(N, H, W) in {0, 1} -> (N, H, W, 3) uint8: white ink on black, as MNIST."""
    return np.repeat((images * 255).astype(np.uint8)[..., None], 3, axis=-1)


def mark_progress(tiles: np.ndarray, position: int, order: np.ndarray | None = None) -> np.ndarray:
    """Grey out the pixels not drawn yet and paint the next one red, in place.

    Args:
        tiles: (N, H, W, 3) uint8.
        position: how many pixels, in the drawing's order, are final.
        order: (H, W) ints, each pixel's place in the drawing's order (default: raster order);
            a pixel with a negative place is kept, never greyed.
    """
    n, h, w, _ = tiles.shape
    order = np.arange(h * w).reshape(h, w) if order is None else order
    pending = order >= position
    tiles[:, pending] = NOT_YET
    if pending.any():
        r, c = divmod(int(np.where(pending, order, h * w).argmin()), w)  # the first pixel still to draw
        tiles[:, r, c] = CURSOR
    return tiles


def outline(kept: np.ndarray, scale: int) -> np.ndarray:
    """(H * scale, W * scale) bool: a line 2 pixels wide between each kept pixel and a neighbour that is not."""
    h, w = kept.shape
    line = np.zeros((h * scale, w * scale), bool)
    for i, j in np.argwhere(kept[1:] != kept[:-1]):  # between rows i and i + 1
        r = (i + 1) * scale
        line[r - 1:r + 1, max(j * scale - 1, 0):(j + 1) * scale + 1] = True  # one more each side: closed corners
    for i, j in np.argwhere(kept[:, 1:] != kept[:, :-1]):  # between columns j and j + 1
        c = (j + 1) * scale
        line[max(i * scale - 1, 0):(i + 1) * scale + 1, c - 1:c + 1] = True
    return line


def tile(tiles: np.ndarray, kept: np.ndarray | None = None, scale: int = 0, pad: int = PAD) -> np.ndarray:
    """(N, H, W, 3) uint8 -> one RGB picture: upscaled (nearest), the kept pixels outlined, in a grid.

    Args:
        kept: (H, W) bool, the pixels a completion keeps: an orange line (CUT) runs between them
            and the redrawn ones (under the kept rows, for the top rows).
        scale: pixels a pixel; 0 fits the grid in about 448 pixels, at least 4 a pixel.
    """
    n, h, w, _ = tiles.shape
    ncol = math.ceil(math.sqrt(n))
    s = scale or max(4, 448 // (ncol * w))
    big = tiles.repeat(s, axis=1).repeat(s, axis=2)  # (N, H*s, W*s, 3)
    if kept is not None:
        big[:, outline(kept, s)] = CUT
    th, tw = h * s + pad, w * s + pad
    out = np.full((math.ceil(n / ncol) * th + pad, ncol * tw + pad, 3), BORDER, np.uint8)
    for k in range(n):
        r, c = divmod(k, ncol)
        out[pad + r * th:(r + 1) * th, pad + c * tw:(c + 1) * tw] = big[k]
    return out


def kept_view(digit: np.ndarray, kept: np.ndarray, scale: int = 10) -> np.ndarray:
    """A (H, W) digit as a completion sees it: the pixels it will redraw dimmed, the kept ones outlined in orange.

    Args:
        kept: (H, W) bool, True where the completion keeps the pixel.
    """
    rgb = binary_rgb(digit[None])
    rgb[:, ~kept] //= 3
    return tile(rgb, kept=kept, scale=scale)


def beside(*pictures: np.ndarray, gap: int = 2 * PAD) -> np.ndarray:
    """RGB pictures side by side, their tops aligned, on BORDER grey."""
    height = max(p.shape[0] for p in pictures)
    out = np.full((height, sum(p.shape[1] for p in pictures) + gap * (len(pictures) - 1), 3), BORDER, np.uint8)
    left = 0
    for p in pictures:
        out[:p.shape[0], left:left + p.shape[1]] = p
        left += p.shape[1] + gap
    return out


# Every colour the app's pictures use, and viridis at 48 levels (within 7 of COLORMAP's 256 on each
# channel): with a fixed palette, each frame's colours map to it at once, no palette is searched for.
_GIF_PALETTE = np.concatenate([[[0, 0, 0], [255, 255, 255], [85, 85, 85], [BORDER] * 3, NOT_YET, CURSOR, CUT],
                               COLORMAP[np.linspace(0, 255, 48).round().astype(int)]]).astype(np.uint8)
_UNCHANGED = len(_GIF_PALETTE)  # the transparent index: the pixel shows the previous frame's


def gif(frames: list[np.ndarray], fps: float = 20, hold: float = 2.0) -> bytes:
    """An animated GIF of RGB frames of one size, one GIF frame each, the last held `hold` seconds.

    Args:
        frames: (H, W, 3) uint8 pictures, such as tile()'s.
        fps: frames a second, at most 50 (GIF viewers play no faster); 0: 20.
        hold: how long the last frame shows before the loop starts again, in seconds.
    Returns:
        The GIF file's bytes; it loops.
    """
    palette = Image.new("P", (1, 1))
    palette.putpalette([*_GIF_PALETTE.flatten(), 255, 0, 255])  # the last entry: transparent
    indices = [np.asarray(Image.fromarray(f).quantize(palette=palette, dither=Image.Dither.NONE)) for f in frames]
    # Each frame only draws the pixels that changed: a small file, written fast, with optimize off.
    deltas = indices[:1] + [np.where(now == before, np.uint8(_UNCHANGED), now)
                            for before, now in zip(indices, indices[1:])]
    images = []
    for d in deltas:
        image = Image.fromarray(d, "P")
        image.putpalette(palette.getpalette())
        images.append(image)
    step = max(20, round(1000 / fps)) if fps > 0 else 50  # ms; GIF counts in hundredths of a second
    out = io.BytesIO()
    images[0].save(out, format="GIF", save_all=True, append_images=images[1:], loop=0, optimize=False,
                   duration=[step] * (len(images) - 1) + [round(1000 * hold)], transparency=_UNCHANGED, disposal=1)
    return out.getvalue()
