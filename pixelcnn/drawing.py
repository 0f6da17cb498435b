"""From a drawing or an uploaded picture to the 28x28 digit the model sees, prepared like MNIST.

    digit = pixelcnn.from_drawing("seven.png")  # (28, 28) float32 in {0, 1}
    digit, marked = pixelcnn.from_marked_drawing(sketch)  # and the (28, 28) bool region marked to redraw

Any picture works: dark ink on light paper or light on dark, strokes on a transparent canvas,
8 or 16 bits, any size (big ones are shrunk first, before any other work).

A region to redraw is painted over the drawing with the marker, MARK at MARK_OPACITY: the ink
under it still shows, and is read back, so that marking part of a digit does not move the rest.
The mark goes through the ink's own crop, scale and centring (a Frame), so it lands on the
28x28 pixels it covers in the model's frame.
"""

import math
from pathlib import Path
from typing import NamedTuple

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
MARK = (255, 96, 0)  # the marker's colour: an orange that grey ink and paper never are
MARK_HEX = "#ff6000"
MARK_OPACITY = 0.5  # a stroke of the marker covers half: the ink under it shows through
MARK_SIZE = "The mark must be a picture of the drawing's size ({drawing}) or 28x28, got {mark}."


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


def split_mark(rgba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Take the marker off a picture: (the picture as it was before marking, how marked each pixel is).

    A marked pixel is C = a * MARK + (1 - a) * g: the marker at opacity a (MARK_OPACITY, more
    where strokes overlap) over grey ink or paper g, the same in each channel. MARK has no blue
    and all the red, so a = C_red - C_blue and g = C_blue / (1 - a); its green must then agree.
    Any other colour (a red or blue pen) is left as it is.

    Args:
        rgba: (H, W, 4) float32 in [0, 1], as to_rgba gives.
    Returns:
        the (H, W, 4) picture with each marked pixel's grey put back (made transparent where
        the marker was painted over nothing); (H, W) float32 in [0, 1], 1 where fully marked.
    """
    rgb, alpha = rgba[..., :3], rgba[..., 3]
    m = np.array(MARK, np.float32) / 255
    a = np.clip(rgb[..., 0] - rgb[..., 2], 0, 1)  # (H, W)
    g = np.clip(rgb[..., 2] / np.maximum(1 - a, 1 / 255), 0, 1)  # the grey under the marker
    fits = np.abs(rgb[..., 1] - (a * m[1] + (1 - a) * g)) < 0.04  # 8-bit rounding; an orange pen is off by more
    marked = fits & (a > 0.1) & (alpha > 0)
    coverage = np.where(marked, np.clip(a * alpha / MARK_OPACITY, 0, 1), 0).astype(np.float32)
    clean = rgba.copy()
    clean[..., :3] = np.where(marked[..., None], g[..., None], rgb)
    clean[..., 3] = np.where(marked & (alpha < 0.99), 0, alpha)  # the marker alone on a clear canvas: nothing under it
    return clean, coverage


def _read(image, marker: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """A picture -> (its ink (H, W) in [0, 1], its marker coverage (H, W), or None if marker is False)."""
    if isinstance(image, dict):  # the Sketchpad: what it shows, read against its background
        background, image = image.get("background"), image.get("composite")
        if image is None:
            raise DrawingError(EMPTY)
        rgba = to_rgba(image)
        paper = paper_of(to_rgba(background)) if background is not None else None
    elif image is None:
        raise DrawingError(EMPTY)
    else:
        rgba, paper = to_rgba(image), None
    coverage = None
    if marker:
        rgba, coverage = split_mark(rgba)
    if paper is None:
        paper = paper_of(rgba)
    return ink_of(rgba, paper), coverage


class Frame(NamedTuple):
    """Where the model's 28x28 frame lies on a picture: its pixel (i, j) covers the picture's
    square from (top + i * scale, left + j * scale), `scale` picture pixels a side."""

    top: float
    left: float
    scale: float


def to_frame(values: np.ndarray, frame: Frame) -> np.ndarray:
    """(H, W) float values of a picture's pixels -> (28, 28) float32 in the model's frame.

    The same resampling as the digit's own (bilinear, antialiased); the frame may reach past the
    picture's edges, where the values are 0.
    """
    if frame == Frame(0, 0, 1) and values.shape == (SIDE, SIDE):
        return values.astype(np.float32)
    pad = math.ceil(SIDE * frame.scale) + 2  # room for a frame that reaches past the picture
    big = np.zeros((values.shape[0] + 2 * pad, values.shape[1] + 2 * pad), np.float32)
    big[pad:-pad, pad:-pad] = values
    top, left, side = frame.top + pad, frame.left + pad, SIDE * frame.scale
    box = (left, top, left + side, top + side)
    return np.asarray(Image.fromarray(big).resize((SIDE, SIDE), Image.Resampling.BILINEAR, box=box))


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
    return _digit(_read(image, marker=False)[0])[0]


def frame_of(image) -> Frame:
    """Where from_drawing's 28x28 frame lies on a picture: its crop, scale and centring, to map other things with."""
    return _digit(_read(image, marker=True)[0])[1]


def from_marked_drawing(image, mark=None) -> tuple[np.ndarray, np.ndarray]:
    """A drawing with a region marked to redraw -> (the digit, the marked region), in the model's frame.

    The region is painted over the drawing with the marker (MARK at MARK_OPACITY, as the app's
    sketchpad does), or given as a second picture. Either way it goes through the digit's own
    crop, scale and centring, and a pixel of the 28x28 frame is marked when the mark covers at
    least half of it. The marker's strokes are never ink.

    Args:
        image: as from_drawing's.
        mark: None (the marker's strokes on `image`), or a mask of the region to redraw: white
            where to redraw on black (as inpainting masks are), or strokes on a clear picture;
            the size of `image`, or 28x28 (in the model's frame, such as a bool array).
    Returns:
        the (28, 28) float32 digit in {0, 1}; a (28, 28) bool mask, True where marked.
    Raises:
        DrawingError: as from_drawing; a mark of another size.
    """
    ink, coverage = _read(image, marker=True)
    digit, frame = _digit(ink)
    if mark is not None:
        rgba = to_rgba(mark)
        clear = (rgba[..., 3] > 0.5).mean() < 0.5  # strokes on a clear picture, or a mask on black
        coverage = rgba[..., 3] if clear else (rgba[..., :3] @ LUMA) * rgba[..., 3]
        if rgba.shape[:2] == (SIDE, SIDE):
            frame = Frame(0, 0, 1)  # already the model's frame
        elif rgba.shape[:2] != ink.shape:
            raise DrawingError(MARK_SIZE.format(drawing="x".join(map(str, ink.shape[::-1])),
                                                mark="x".join(map(str, rgba.shape[1::-1]))))
    return digit, to_frame(coverage, frame) >= 0.5


def _digit(ink: np.ndarray) -> tuple[np.ndarray, Frame]:
    """A picture's ink (H, W) -> the (28, 28) digit, and the Frame it was cut from."""
    seen = ink > 0.25
    if not seen.any():
        raise DrawingError(EMPTY)
    if seen.mean() > 0.6:
        raise DrawingError(FULL.format(seen.mean()))
    ink = np.clip(ink / np.percentile(ink[seen], 90), 0, 1)  # a pale pen on grey paper counts as black on white
    if ink.shape == (SIDE, SIDE):  # already the model's frame (an MNIST digit): taken as it is
        return (ink > 0.5).astype(np.float32), Frame(0, 0, 1)
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
    k = side / BOX  # picture pixels a frame pixel
    return digit, Frame(rows.min() - top - y * k, cols.min() - left - x * k, k)
