"""From a drawing or an uploaded picture to the 28x28 digit the model sees, prepared like MNIST.

    digit = pixelcnn.from_drawing("seven.png")  # (28, 28) float32 in {0, 1}

Any picture works: dark ink on light paper or light on dark, strokes on a transparent canvas,
8 or 16 bits, any size (big ones are shrunk first, before any other work).
"""

import math
from pathlib import Path

import numpy as np
from PIL import Image

SIDE = 28  # the model's images are SIDE x SIDE
BOX = 20  # MNIST scales each digit into a BOX x BOX box, then centres it by mass
MAX_SIDE = 1024  # pixels a side: larger pictures are shrunk to this first; a digit needs far fewer

EMPTY = "The canvas is empty: draw a digit (or pick an example) first."
FULL = ("The canvas is almost all ink ({:.0%} of it), but a digit is a few strokes on an empty background. "
        "Clear it and draw one digit.")
THIN = "Nothing is left of the drawing at 28x28 pixels: draw with thicker strokes."
UNREADABLE = "Cannot read {what}. Upload a PNG or JPEG of one digit."
LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # RGB -> luminance (ITU-R 601, as PIL's "L")


class DrawingError(ValueError):
    """A drawing or picture that cannot be made into a digit; the message says why and what to do."""


def shrink(image: Image.Image) -> Image.Image:
    """A PIL image in a mode that keeps its values (RGBA, 32-bit I or F), at most MAX_SIDE pixels a side.

    Shrinking averages whole blocks of pixels (Image.reduce), so a thin stroke fades rather
    than vanishing; it comes first so that nothing else ever sees a huge picture.
    """
    mode = "I" if image.mode.startswith("I") else "F" if image.mode == "F" else "RGBA"
    if image.mode not in ("L", "RGB", "RGBA", "I", "F"):
        image = image.convert(mode)  # palettes, 1-bit, 16-bit, CMYK...: their values cannot be averaged as they are
    factor = math.ceil(max(image.size) / MAX_SIDE)
    if factor > 1:
        image = image.reduce(factor)  # RGBA: the colours weighted by their alpha
    return image if image.mode == mode else image.convert(mode)


def to_rgba(image) -> np.ndarray:
    """Any picture -> (H, W, 4) float32 in [0, 1], at most MAX_SIDE pixels a side.

    Args:
        image: an image file's path, a PIL image in any mode, or an array (H, W) or (H, W, 1..4)
            of bools, integers (8 or 16 bits) or floats (0..1 or 0..255).
    Raises:
        DrawingError: the picture cannot be read.
    """
    if isinstance(image, (str, Path, Image.Image)):
        try:
            image = np.asarray(shrink(image if isinstance(image, Image.Image) else Image.open(image)))
        except (OSError, ValueError) as e:  # no such file, not an image, truncated, a mode PIL cannot convert
            raise DrawingError(UNREADABLE.format(what=f"this image ({e})")) from None
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4) or 0 in a.shape or a.dtype.kind not in "buif":
        raise DrawingError(UNREADABLE.format(what=f"an image of shape {a.shape} and type {a.dtype}"))
    f = math.ceil(max(a.shape[:2]) / MAX_SIDE)
    if f > 1:  # shrink first, averaging f x f blocks (numpy casts block by block, not the whole array)
        h, w = a.shape[0] // f * f, a.shape[1] // f * f
        a = a[:h, :w].reshape(h // f, f, w // f, f, -1).mean(axis=(1, 3), dtype=np.float32)
    a = np.nan_to_num(a.astype(np.float32, copy=False))
    top = a.max()
    a /= 1 if top <= 1 else 255 if top <= 255 else 65535 if top <= 65535 else top
    np.clip(a, 0, 1, out=a)
    c = a.shape[2]  # 1: gray, 2: gray + alpha, 3: RGB, 4: RGBA
    rgb = a[..., :3] if c >= 3 else np.repeat(a[..., :1], 3, axis=2)
    alpha = a[..., c - 1:] if c in (2, 4) else np.ones_like(a[..., :1])
    return np.concatenate([rgb, alpha], axis=2)


def paper_of(rgba: np.ndarray) -> float | None:
    """The luminance of the background a digit is drawn on (the border's), None if transparent."""
    opaque = rgba[..., 3] > 0.5
    if opaque.mean() < 0.5:  # strokes on a transparent canvas: no paper
        return None
    border = np.zeros(opaque.shape, bool)
    border[[0, -1], :] = border[:, [0, -1]] = True
    lum = rgba[..., :3] @ LUMA
    on = lum[opaque & border] if (opaque & border).any() else lum[opaque]
    return float(np.median(on))


def ink_of(rgba: np.ndarray, paper: float | None) -> np.ndarray:
    """(H, W) float in [0, 1]: how much each pixel differs from the paper, toward the ink."""
    if paper is None:
        return rgba[..., 3]  # every stroke is ink, whatever its colour
    lum = rgba[..., :3] @ LUMA
    lum = rgba[..., 3] * lum + (1 - rgba[..., 3]) * paper  # transparent parts are paper
    ink = (paper - lum) / paper if paper >= 0.5 else (lum - paper) / (1 - paper)  # dark on light, or light on dark
    return np.clip(ink, 0, 1)


def from_drawing(image) -> np.ndarray:
    """A drawing or an uploaded picture -> the (28, 28) float32 digit in {0, 1} the model sees.

    Prepared like MNIST: ink is 1 on a 0 background, the digit is cropped, scaled into a
    20x20 box keeping its aspect, put in 28x28 with its centre of mass in the middle, and
    binarized at 0.5. A 28x28 picture is already in the model's frame: it is only binarized.

    Args:
        image: an image file's path, a PIL image or an array (see to_rgba), or gr.Sketchpad's
            dict (background, layers, composite), whose composite is read against its background.
    Returns:
        (28, 28) float32, 1 where there is ink.
    Raises:
        DrawingError: an empty or full canvas, strokes too thin, a picture that cannot be read.
    """
    if isinstance(image, dict):  # the Sketchpad: what it shows, read against its background
        background, image = image.get("background"), image.get("composite")
        if image is None:
            raise DrawingError(EMPTY)
        rgba = to_rgba(image)
        paper = paper_of(to_rgba(background)) if background is not None else None
        if paper is None:
            paper = paper_of(rgba)
    elif image is None:
        raise DrawingError(EMPTY)
    else:
        rgba = to_rgba(image)
        paper = paper_of(rgba)
    ink = ink_of(rgba, paper)  # (H, W)
    seen = ink > 0.25
    if not seen.any():
        raise DrawingError(EMPTY)
    if seen.mean() > 0.6:
        raise DrawingError(FULL.format(seen.mean()))
    ink = np.clip(ink / np.percentile(ink[seen], 90), 0, 1)  # a pale pen on grey paper counts as black on white
    if ink.shape == (SIDE, SIDE):  # already the model's frame (an MNIST digit): taken as it is
        return (ink > 0.5).astype(np.float32)
    rows, cols = np.nonzero(seen)
    crop = ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    side = max(crop.shape)
    square = np.zeros((side, side), np.float32)
    top, left = (side - crop.shape[0]) // 2, (side - crop.shape[1]) // 2
    square[top:top + crop.shape[0], left:left + crop.shape[1]] = crop
    box = np.asarray(Image.fromarray(square).resize((BOX, BOX), Image.Resampling.BILINEAR))  # antialiased
    if box.sum() == 0:
        raise DrawingError(THIN)
    cy, cx = (np.indices(box.shape) * box).sum(axis=(1, 2)) / box.sum()  # centre of mass
    y, x = (int(np.clip(round((SIDE - 1) / 2 - c), 0, SIDE - BOX)) for c in (cy, cx))
    digit = np.zeros((SIDE, SIDE), np.float32)
    digit[y:y + BOX, x:x + BOX] = box
    digit = (digit > 0.5).astype(np.float32)
    if not digit.any():
        raise DrawingError(THIN)
    return digit
