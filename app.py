"""The PixelCNN in a browser: watch digits being drawn pixel by pixel, finish a half-drawn
digit, and see how likely the model finds a digit, which digit a labelled model takes it
for, and which earlier pixels each pixel's probability depends on.

    python app.py                        # weights/pixelcnn/ on http://127.0.0.1:7860
    python app.py --model user/repo      # a Hub repo id (or a folder); PIXELCNN_MODEL=... also works
    python app.py --weights-dir DIR      # the picker lists DIR's models; PIXELCNN_WEIGHTS_DIR=... also works
    GRADIO_SERVER_NAME=0.0.0.0 GRADIO_SERVER_PORT=8080 python app.py
    PIXELCNN_APP_FPS=0 python app.py     # stream as fast as the model draws (tests, benchmarks)
"""

import argparse
import functools
import json
import math
import os
import random
import time
from pathlib import Path
from typing import Iterator

import gradio as gr
import numpy as np
import torch
from PIL import Image

import pixelcnn
from pixelcnn import ModelLoadError
from pixelcnn.weights import DEFAULT_MODEL

MODEL = os.environ.get("PIXELCNN_MODEL", DEFAULT_MODEL)  # a folder in weights/, a folder, or a Hub repo id
WEIGHTS_DIR = Path(os.environ.get("PIXELCNN_WEIGHTS_DIR", pixelcnn.weights.WEIGHTS_DIR))  # the picker's models
FPS = float(os.environ.get("PIXELCNN_APP_FPS", "20"))  # frames a second while streaming; 0: no pacing
SIDE = 28  # the model's images are SIDE x SIDE
BOX = 20  # MNIST scales each digit into a BOX x BOX box, then centres it by mass
MAX_DIGITS = 16
ZOOM = 10  # one digit's pictures are upscaled this much
PAD = 4  # pixels of grey around and between the digits of a picture
MAX_SIDE = 1024  # larger uploads are shrunk first
CANVAS = 400  # the sketchpad, in pixels
BRUSH = 20  # brush radius: strokes about a tenth of a digit's height, as in MNIST
SURPRISE_MAX = 4.6  # nats where the surprise colours saturate (p = 0.01)
ANY = "any"  # the digit choice of a labelled model that asks for no digit in particular
DIGITS = [ANY, *(str(d) for d in range(10))]
PIXEL = (20, 14)  # (row, column) whose receptive field Inspect shows first
EXAMPLES = sorted(str(p) for p in (Path(__file__).resolve().parent / "examples").glob("*.png"))

# matplotlib's viridis at 9 points, interpolated to 256 colours: 0 is dark purple, 1 yellow
VIRIDIS = np.array([[68, 1, 84], [71, 45, 123], [59, 82, 139], [44, 114, 142], [33, 145, 140],
                    [40, 174, 128], [94, 201, 98], [173, 220, 48], [253, 231, 37]], float)
COLORMAP = np.stack([np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(VIRIDIS)), VIRIDIS[:, c])
                     for c in range(3)], axis=1).round().astype(np.uint8)  # (256, 3)
NOT_YET = (40, 44, 60)  # pixels not drawn yet
CURSOR = (255, 64, 64)  # the next pixel to be drawn
CUT = (255, 150, 0)  # the line under the kept rows
# the receptive field: the pixel itself (CURSOR), and each earlier or later pixel
FIELD = {"seen": (33, 145, 140), "blind spot": (255, 150, 0), "beyond reach": (60, 60, 72), "later": (175, 175, 175)}
LEGEND = ("<div style='display:flex;gap:.5em;align-items:center;font-size:.85em'>{lo}<div style='flex:1;"
          "height:.8em;background:linear-gradient(to right," + ",".join(f"rgb{tuple(int(v) for v in c)}"
                                                                        for c in VIRIDIS) + ")'></div>{hi}</div>")
FIELD_LEGEND = ("<div style='display:flex;flex-wrap:wrap;gap:.2em 1em;font-size:.85em'>" + "".join(
    f"<span><span style='display:inline-block;width:.9em;height:.9em;vertical-align:-.1em;background:rgb{c}'>"
    f"</span> {name}</span>" for name, c in [("the pixel", CURSOR), *FIELD.items()]) + "</div>")
CSS = ".pixels img { image-rendering: pixelated; }"  # launch(css=CSS): keep upscaled pixels sharp
# Select the brush of each sketchpad once it is on the page (a tab draws its content when first opened)
BRUSH_ON = """() => {
    const pick = () => document.querySelectorAll('.sketch').forEach(pad => {
        const brush = pad.querySelector('button[aria-label="Brush"]');
        if (brush && !pad.dataset.brushOn) { pad.dataset.brushOn = '1'; brush.click(); }
    });
    pick();
    new MutationObserver(pick).observe(document.body, {childList: true, subtree: true});
}"""

EMPTY = "The canvas is empty: draw a digit (or pick an example) first."
FULL = ("The canvas is almost all ink ({:.0%} of it), but a digit is a few strokes on an empty background. "
        "Clear it and draw one digit.")
THIN = "Nothing is left of the drawing at 28x28 pixels: draw with thicker strokes."
NOTHING_KEPT = ("Nothing to complete: the top {rows} rows of the digit, above the orange line, are blank. "
                "Move the slider to keep more rows, or use Generate to draw digits from scratch.")
NO_LABELS = "The model {name} has no labels: choose “any” digit, or a labelled model."


class InputError(ValueError):
    """What a visitor gave cannot be used; the message is shown in the page."""


# --- the model -------------------------------------------------------------------------------

def model_choices(default: str) -> list[str]:
    """The default model first (from WEIGHTS_DIR, a folder or a Hub repo id), then the others in WEIGHTS_DIR."""
    return [default, *(name for name in pixelcnn.list_models(WEIGHTS_DIR) if name != default)]


def local_folder(name: str) -> Path | None:
    """The folder of a local model (a folder, a name in weights/, or "weights/NAME"); None for a Hub repo id."""
    for folder in (Path(name), WEIGHTS_DIR / name, WEIGHTS_DIR.parent / name):
        if (folder / "model.safetensors").is_file():
            return folder
    return None


@functools.lru_cache(maxsize=4)
def _load(name: str, version: tuple) -> torch.nn.Module:
    return pixelcnn.load_model(name)


def get_model(name: str | None) -> torch.nn.Module:
    """The model `name`, loaded once; a local one again when its weights change (each epoch of training)."""
    if not name:
        raise ModelLoadError(f"no model: train one with `python train.py` (it goes to {WEIGHTS_DIR}/)")
    folder = local_folder(name)
    if folder is not None:
        stat = (folder / "model.safetensors").stat()
        return _load(str(folder), (stat.st_mtime_ns, stat.st_size))
    if name == DEFAULT_MODEL:
        raise ModelLoadError(f"no model yet: {WEIGHTS_DIR / name}/ is missing. Train one with `python train.py`, "
                             "or start the app with `--model user/repo`.")
    return _load(name, ())  # a Hub repo id, downloaded once into the Hugging Face cache


def n_labels(model: torch.nn.Module) -> int:
    """How many digit labels the model is conditioned on: 0 for an unlabelled model."""
    return getattr(model.config, "n_labels", 0)


def labelled(name: str) -> bool:
    """Whether the model `name` takes a digit label; False if it cannot be loaded."""
    try:
        return n_labels(get_model(name)) > 0
    except ValueError:
        return False


def pick_label(digit, model: torch.nn.Module, name: str) -> int | None:
    """The label to sample with: None for "any", else the digit, which the model must know."""
    if digit is None or digit == "" or digit == ANY:
        return None
    if not n_labels(model):
        raise InputError(NO_LABELS.format(name=name))
    if isinstance(digit, str) and digit.strip().isdigit():
        digit = int(digit)  # the page's choices are strings
    return whole("digit", digit, 0, n_labels(model) - 1)


def reference_bits_per_pixel(name: str) -> float | None:
    """The model's mean bits per pixel on MNIST's test digits, from its metrics.json if it has one."""
    folder = local_folder(name)
    if folder is None:
        return None
    try:
        return float(json.loads((folder / "metrics.json").read_text())["test_loss"]) / math.log(2)
    except (OSError, ValueError, KeyError, TypeError):
        return None


# --- from a drawing to the model's 28x28 digit ------------------------------------------------

def to_rgba(image) -> np.ndarray:
    """Any picture -> (H, W, 4) float32 in [0, 1], at most MAX_SIDE pixels a side.

    Args:
        image: a PIL image in any mode, or an array (H, W) or (H, W, 1..4) of bools, integers
            (8 or 16 bits) or floats (0..1 or 0..255).
    """
    if isinstance(image, Image.Image):
        try:
            # 8-bit modes to RGBA; 16-bit and float ones keep their values, scaled below
            image = image.convert("I" if image.mode.startswith("I") else "F" if image.mode == "F" else "RGBA")
            if max(image.size) > MAX_SIDE:
                image = image.resize((max(1, image.width * MAX_SIDE // max(image.size)),
                                      max(1, image.height * MAX_SIDE // max(image.size))), Image.Resampling.BOX)
            image = np.asarray(image)
        except (OSError, ValueError) as e:
            raise InputError(f"Cannot read this image ({e}). Upload a PNG or JPEG of one digit.") from None
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4) or 0 in a.shape or a.dtype.kind not in "buif":
        raise InputError(f"Cannot read an image of shape {a.shape} and type {a.dtype}. "
                         "Upload a PNG or JPEG of one digit.")
    a = np.nan_to_num(a.astype(np.float32))
    top = a.max()
    a = a / (1 if top <= 1 else 255 if top <= 255 else 65535 if top <= 65535 else top)
    a = np.clip(a, 0, 1)
    f = math.ceil(max(a.shape[:2]) / MAX_SIDE)
    if f > 1:  # shrink by averaging f x f blocks
        h, w = a.shape[0] // f * f, a.shape[1] // f * f
        a = a[:h, :w].reshape(h // f, f, w // f, f, -1).mean(axis=(1, 3))
    c = a.shape[2]  # 1: gray, 2: gray + alpha, 3: RGB, 4: RGBA
    rgb = a[..., :3] if c >= 3 else np.repeat(a[..., :1], 3, axis=2)
    alpha = a[..., c - 1:] if c in (2, 4) else np.ones_like(a[..., :1])
    return np.concatenate([rgb, alpha], axis=2)


def paper_of(rgba: np.ndarray) -> float | None:
    """The luminance of the background a digit is drawn on (the border's), None if transparent."""
    opaque = rgba[..., 3] > 0.5
    border = np.zeros(opaque.shape, bool)
    border[[0, -1], :] = border[:, [0, -1]] = True
    lum = rgba[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
    if opaque.mean() < 0.5:  # strokes on a transparent canvas: no paper
        return None
    on = lum[opaque & border] if (opaque & border).any() else lum[opaque]
    return float(np.median(on))


def ink_of(rgba: np.ndarray, paper: float | None) -> np.ndarray:
    """(H, W) float in [0, 1]: how much each pixel differs from the paper, toward the ink."""
    if paper is None:
        return rgba[..., 3]  # every stroke is ink, whatever its colour
    lum = rgba[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
    lum = rgba[..., 3] * lum + (1 - rgba[..., 3]) * paper  # transparent parts are paper
    ink = (paper - lum) / paper if paper >= 0.5 else (lum - paper) / (1 - paper)  # dark ink on light paper, or light on dark
    return np.clip(ink, 0, 1)


def to_mnist(image) -> np.ndarray:
    """A drawing or an uploaded picture -> the (28, 28) float32 digit in {0, 1} the model sees.

    Prepared like MNIST: ink is 1 on a 0 background, the digit is cropped, scaled into a
    20x20 box keeping its aspect, put in 28x28 with its centre of mass in the middle, and
    binarized at 0.5. A 28x28 picture is already in the model's frame: it is only binarized.

    Args:
        image: the Sketchpad's dict (background, layers, composite), or one picture (see to_rgba).
    Raises:
        InputError: an empty or full canvas, strokes too thin, a picture that cannot be read.
    """
    if isinstance(image, dict):  # the Sketchpad: what it shows, read against its background
        background, image = image.get("background"), image.get("composite")
        paper = paper_of(to_rgba(background)) if background is not None else None
        if image is None:
            raise InputError(EMPTY)
        rgba = to_rgba(image)
        if paper is None:
            paper = paper_of(rgba)
    elif image is None:
        raise InputError(EMPTY)
    else:
        rgba = to_rgba(image)
        paper = paper_of(rgba)
    ink = ink_of(rgba, paper)  # (H, W)
    seen = ink > 0.25
    if not seen.any():
        raise InputError(EMPTY)
    if seen.mean() > 0.6:
        raise InputError(FULL.format(seen.mean()))
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
        raise InputError(THIN)
    cy, cx = (np.indices(box.shape) * box).sum(axis=(1, 2)) / box.sum()  # centre of mass
    y, x = (int(np.clip(round((SIDE - 1) / 2 - c), 0, SIDE - BOX)) for c in (cy, cx))
    digit = np.zeros((SIDE, SIDE), np.float32)
    digit[y:y + BOX, x:x + BOX] = box
    digit = (digit > 0.5).astype(np.float32)
    if not digit.any():
        raise InputError(THIN)
    return digit


# --- pictures --------------------------------------------------------------------------------

def colorize(values: np.ndarray, vmax: float = 1.0) -> np.ndarray:
    """Values in [0, vmax] -> viridis colours (..., 3) uint8; NaN (not reached yet) -> NOT_YET."""
    idx = np.clip(np.nan_to_num(values / vmax) * 255, 0, 255).round().astype(np.intp)
    rgb = COLORMAP[idx]
    rgb[np.isnan(values)] = NOT_YET
    return rgb


def binary_rgb(images: np.ndarray) -> np.ndarray:
    """(N, H, W) in {0, 1} -> (N, H, W, 3) uint8: white ink on black, as MNIST."""
    return np.repeat((images * 255).astype(np.uint8)[..., None], 3, axis=-1)


def mark_progress(tiles: np.ndarray, position: int) -> np.ndarray:
    """Grey out the pixels from `position` on (raster order) and paint the next one red."""
    flat = tiles.reshape(len(tiles), -1, 3)  # a view
    flat[:, position:] = NOT_YET
    if position < flat.shape[1]:
        flat[:, position] = CURSOR
    return tiles


def tile(tiles: np.ndarray, cut: int = 0, scale: int = 0, pad: int = PAD) -> np.ndarray:
    """(N, H, W, 3) uint8 -> one RGB picture: upscaled (nearest), a line under the first `cut` rows, in a grid."""
    n, h, w, _ = tiles.shape
    ncol = math.ceil(math.sqrt(n))
    s = scale or max(4, 448 // (ncol * w))
    big = tiles.repeat(s, axis=1).repeat(s, axis=2)  # (N, H*s, W*s, 3)
    if cut:
        big[:, max(cut * s - 1, 0):cut * s + 1] = CUT  # 2 pixels high
    th, tw = h * s + pad, w * s + pad
    out = np.full((math.ceil(n / ncol) * th + pad, ncol * tw + pad, 3), 200, np.uint8)
    for k in range(n):
        r, c = divmod(k, ncol)
        out[pad + r * th:(r + 1) * th, pad + c * tw:(c + 1) * tw] = big[k]
    return out


def kept_view(digit: np.ndarray, rows: int) -> np.ndarray:
    """The digit as the model sees it, the rows it will redraw dimmed, the cut line in orange."""
    rgb = binary_rgb(digit[None])
    rgb[:, rows:] //= 3
    return tile(rgb, cut=rows, scale=ZOOM)


# --- what the page does ----------------------------------------------------------------------

def paced(frames: Iterator, fps: float) -> Iterator:
    """Pass frames on no faster than fps a second (0: as they come), at a pace a person can follow."""
    next_at = time.perf_counter()
    for frame in frames:
        if fps > 0:
            time.sleep(max(0.0, next_at - time.perf_counter()))
            next_at = max(next_at, time.perf_counter()) + 1 / fps
        yield frame


def whole(name: str, value, lo: int, hi: int) -> int:
    """value as an int, or an InputError that says what was expected."""
    try:
        ok = value == int(value) and lo <= value <= hi
    except (TypeError, ValueError, OverflowError):  # None, NaN, infinity, text
        ok = False
    if not ok:
        raise InputError(f"The {name} must be a whole number from {lo} to {hi}, got {value}.")
    return int(value)


def pick_seed(seed, random_seed: bool) -> int:
    """The seed to use: a fresh one if asked for, or if the box is empty."""
    if random_seed or seed is None:
        return random.randrange(2**31)
    return whole("seed", seed, 0, 2**63 - 1)


def progress(step: pixelcnn.SampleStep, start: int, seconds: float) -> str:
    total = SIDE * SIDE
    if step.position < total:
        return f"Drawing row {step.position // SIDE + 1} of {SIDE} (pixel {step.position:,} of {total:,})"
    return f"Drew {total - start:,} pixels in {seconds:.1f} s."


Frame = tuple[np.ndarray | None, np.ndarray | None, int, str]


def as_digit(label: int | None, n: int) -> str:
    """What the status line says of the digit asked for."""
    return "" if label is None else f", {'each ' * (n > 1)}a {label}"


def generate(n: int, seed: float, random_seed: bool, temperature: float, model_name: str,
             digit: str = ANY) -> Iterator[Frame]:
    """Stream n new digits, a frame per row: (digits, probability heatmap, seed, status).

    The digits fill in raster order, the next pixel red; the heatmap shows the probability
    with which each pixel got its value. A labelled model draws the chosen digit (ANY: any).
    """
    try:
        n = whole("number of digits", n, 1, MAX_DIGITS)
        used = pick_seed(seed, random_seed)
        model = get_model(model_name)
        label = pick_label(digit, model, model_name)
        steps = pixelcnn.sample_stream(model, n, seed=used, temperature=temperature, label=label)
    except ValueError as e:  # InputError, ModelLoadError, the sampler's checks
        yield None, None, seed, f"⚠️ {e}"
        return
    t0 = time.perf_counter()
    for step in paced(steps, FPS):
        digits = tile(mark_progress(binary_rgb(step.images[:, 0].numpy()), step.position))
        heat = tile(colorize(step.probs[:, 0].numpy()))
        status = progress(step, 0, time.perf_counter() - t0)
        if step.position == SIDE * SIDE:
            status += f" {n} digit{'s' * (n > 1)}{as_digit(label, n)}, seed {used}, temperature {temperature:g}."
        yield digits, heat, used, status


def preview(drawing, rows: int) -> tuple[np.ndarray | None, str]:
    """The digit the model would see, with the cut under the kept rows; or why there is none."""
    try:
        digit = to_mnist(drawing)
        rows = whole("number of kept rows", rows, 1, SIDE - 1)
    except InputError as e:
        return None, f"⚠️ {e}"
    if not digit[:rows].any():
        return kept_view(digit, rows), f"⚠️ {NOTHING_KEPT.format(rows=rows)}"
    return kept_view(digit, rows), f"The model keeps the top {rows} rows and redraws the rest."


def complete(drawing, rows: int, n: int, seed: float, random_seed: bool, temperature: float,
             model_name: str, digit: str = ANY) -> Iterator[Frame]:
    """Stream n completions of a drawing's top `rows` rows: (the model's view, completions, seed, status).

    A labelled model finishes the drawing as the chosen digit (ANY: whichever it likes).
    """
    try:
        image = to_mnist(drawing)  # (28, 28)
        rows = whole("number of kept rows", rows, 1, SIDE - 1)
        view = kept_view(image, rows)
        if not image[:rows].any():
            yield view, None, seed, f"⚠️ {NOTHING_KEPT.format(rows=rows)}"
            return
        n = whole("number of completions", n, 1, MAX_DIGITS)
        used = pick_seed(seed, random_seed)
        model = get_model(model_name)
        label = pick_label(digit, model, model_name)
        prefix = torch.from_numpy(image)[None, None]  # (1, 1, 28, 28)
        steps = pixelcnn.sample_stream(model, n, seed=used, prefix=prefix, rows=rows, temperature=temperature,
                                       label=label)
    except ValueError as e:  # InputError, ModelLoadError, the sampler's checks
        yield None, None, seed, f"⚠️ {e}"
        return
    t0 = time.perf_counter()
    for step in paced(steps, FPS):
        images = tile(mark_progress(binary_rgb(step.images[:, 0].numpy()), step.position), cut=rows)
        status = progress(step, rows * SIDE, time.perf_counter() - t0)
        if step.position == SIDE * SIDE:
            status += f" {n} completion{'s' * (n > 1)} of the top {rows} rows{as_digit(label, n)}, seed {used}."
        yield view, images, used, status


def digit_posterior(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    """p(label | x) of a labelled model, from its own likelihoods: (n_labels,) probabilities.

    p(label | x) ∝ p(x | label) p(label), the labels equally likely: one forward pass for
    all the labels (pixelcnn.label_nats), log p(x | label) summed over the pixels, then a softmax.

    Args:
        x: (1, 1, 28, 28) in {0, 1}.
    """
    log_px = -pixelcnn.label_nats(model, x)[0]  # (n_labels,)
    return torch.softmax(log_px.double(), dim=0).numpy()


Reading = tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None, str, dict[str, float] | None]


def inspect_digit(drawing, model_name: str) -> Reading:
    """How the model reads a digit: (the digit, P(pixel = 1 | pixels before it), surprise map, totals, digit).

    The maps and totals are the unconditional ones (for a labelled model, with no label); the
    last is p(label | digit) for each label of a labelled model, else None.
    """
    try:
        digit = to_mnist(drawing)
        model = get_model(model_name)
    except (InputError, ModelLoadError) as e:
        return None, None, None, f"⚠️ {e}", None
    x = torch.from_numpy(digit)[None, None]  # (1, 1, 28, 28)
    p1 = pixelcnn.probabilities(model, x)[0, 0].numpy()  # (28, 28)
    s = pixelcnn.surprise(model, x)
    smap = s.map[0, 0].numpy()  # (28, 28) nats
    nats, bpp = float(s.nats[0]), float(s.bits_per_pixel[0])
    r, c = np.unravel_index(smap.argmax(), smap.shape)
    text = (f"**{nats:.1f} nats** for the whole digit, **{bpp:.3f} bits per pixel**: the model gives it "
            f"probability e<sup>-{nats:.1f}</sup> ≈ 10<sup>-{nats / math.log(10):.1f}</sup>. "
            f"The most surprising pixel is row {r + 1}, column {c + 1} ({smap[r, c]:.1f} nats).")
    reference = reference_bits_per_pixel(model_name)
    if reference is not None:
        text += f" On MNIST's test digits the model averages {reference:.3f} bits per pixel: lower is more likely."
    posterior = None
    if n_labels(model):
        p = digit_posterior(model, x)
        posterior = {str(d): float(q) for d, q in enumerate(p)}
        text += f" It reads the drawing as a **{p.argmax()}**, with probability {p.max():.2f}."
    return (tile(binary_rgb(digit[None]), scale=ZOOM), tile(colorize(p1)[None], scale=ZOOM),
            tile(colorize(smap, SURPRISE_MAX)[None], scale=ZOOM), text, posterior)


def field_parts(model: torch.nn.Module, row: int, col: int) -> dict[str, np.ndarray]:
    """Each pixel's part in the receptive field of the logit at (row, col): FIELD's keys -> (28, 28) bool.

    "seen": the earlier pixels the logit depends on. "blind spot": earlier pixels it does not
    see although it sees a pixel farther up in the same column, a hole in the field rather
    than its edge. "beyond reach": the other earlier pixels it does not see, too far for the
    network's depth (pixelcnn.blind_spot counts these too). "later": the pixel and those after.
    """
    seen = pixelcnn.receptive_field(model, row, col, size=SIDE).numpy()  # (28, 28) bool
    earlier = np.arange(SIDE * SIDE).reshape(SIDE, SIDE) < row * SIDE + col
    above = np.zeros_like(seen)  # a seen pixel somewhere above, in the same column
    above[1:] = np.logical_or.accumulate(seen, axis=0)[:-1]
    return {"seen": seen & earlier, "blind spot": earlier & ~seen & above,
            "beyond reach": earlier & ~seen & ~above, "later": ~earlier}


def receptive(model_name: str, row: int, col: int) -> tuple[np.ndarray | None, str]:
    """The receptive field of pixel (row, col), counted from 1, as a picture; and what it shows."""
    try:
        row = whole("row", row, 1, SIDE) - 1
        col = whole("column", col, 1, SIDE) - 1
        model = get_model(model_name)
    except ValueError as e:  # InputError, ModelLoadError
        return None, f"⚠️ {e}"
    parts = field_parts(model, row, col)
    rgb = np.zeros((SIDE, SIDE, 3), np.uint8)
    for part, color in FIELD.items():
        rgb[parts[part]] = color
    rgb[row, col] = CURSOR
    seen, blind, beyond = (int(parts[k].sum()) for k in ("seen", "blind spot", "beyond reach"))
    text = (f"P(pixel = 1) at row {row + 1}, column {col + 1} depends on **{seen}** of the {row * SIDE + col} "
            "earlier pixels. ")
    if blind:
        text += (f"**{blind} earlier pixel{'s are' if blind > 1 else ' is'} blind** (orange): the model sees pixels "
                 "farther up but not these, the blind spot of stacked masked convolutions, above and to the right.")
    else:
        text += "**No earlier pixel is blind**: the model sees every earlier pixel within its reach."
    if beyond:
        text += f" {beyond} earlier pixel{'s are' if beyond > 1 else ' is'} beyond its reach."
    return tile(rgb[None], scale=ZOOM), text


def pick_pixel(evt: gr.SelectData) -> tuple[int, int]:
    """The (row, column), counted from 1, of the pixel clicked in one of Inspect's pictures."""
    if not evt.index:  # a click beside the picture
        return gr.skip(), gr.skip()
    x, y = evt.index  # in the picture's own pixels
    return tuple(int(np.clip((v - PAD) // ZOOM, 0, SIDE - 1)) + 1 for v in (y, x))


def model_changed(name: str) -> tuple[dict, dict, dict]:
    """Show the digit choices, reset to "any", and the digit reading only for a labelled model."""
    show = labelled(name)
    return gr.update(visible=show, value=ANY), gr.update(visible=show, value=ANY), gr.update(visible=show)


# --- the page --------------------------------------------------------------------------------

def picture(label: str, caption: str) -> gr.Image:
    """An output picture under a caption (Gradio's own label would float over the picture's top rows)."""
    gr.Markdown(caption)
    return gr.Image(label=label, show_label=False, format="png", interactive=False, buttons=["download"],
                    elem_classes="pixels")


def sketchpad() -> gr.Sketchpad:
    return gr.Sketchpad(label="Draw a digit", canvas_size=(CANVAS, CANVAS), fixed_canvas=True, sources=("upload",),
                        brush=gr.Brush(default_size=BRUSH, colors=["#000000"], color_mode="fixed"),
                        layers=False, transforms=(), elem_classes="sketch")


def sampling_options(random_default: bool) -> tuple[gr.Number, gr.Checkbox, gr.Slider]:
    seed = gr.Number(0, label="Seed", precision=0, minimum=0)
    random_seed = gr.Checkbox(random_default, label="Random seed", info="a new seed each time, shown above")
    temperature = gr.Slider(0, 2, 1.0, step=0.05, label="Temperature", info="below 1: bolder and more typical; 0: always the likelier pixel")
    return seed, random_seed, temperature


def digit_choice(info: str, visible: bool) -> gr.Dropdown:
    """The digit a labelled model is to draw; hidden for an unlabelled one."""
    return gr.Dropdown(DIGITS, value=ANY, label="Digit", info=info, visible=visible)


def build_demo(model: str = MODEL) -> gr.Blocks:
    """The page: Generate, Complete and Inspect tabs over one model picker."""
    with gr.Blocks(title="PixelCNN digits", delete_cache=(600, 3600)) as demo:
        gr.Markdown("# PixelCNN: digits one pixel at a time\nA PixelCNN trained on binarized MNIST draws each "
                    "pixel from P(pixel = 1 | every pixel before it), left to right, top to bottom.")
        picker = gr.Dropdown(model_choices(model), value=model, label="Model",
                             info=f"the models in {WEIGHTS_DIR.name}/")
        labels = labelled(model)

        with gr.Tab("Generate"):
            with gr.Row():
                with gr.Column(scale=1, min_width=240):
                    n = gr.Slider(1, MAX_DIGITS, 16, step=1, label="Digits")
                    g_digit = digit_choice("the model is labelled: draw this digit, or any", labels)
                    seed, random_seed, temperature = sampling_options(random_default=True)
                    with gr.Row():
                        go = gr.Button("Generate", variant="primary")
                        stop = gr.Button("Stop", variant="stop")
                with gr.Column(scale=2):
                    digits = picture("Digits", "**Digits**, the red pixel is drawn next")
                with gr.Column(scale=2):
                    heat = picture("Probabilities", "**Probability** with which each pixel got its value")
                    gr.HTML(LEGEND.format(lo="0", hi="1"))
            status = gr.Markdown()
            event = go.click(generate, [n, seed, random_seed, temperature, picker, g_digit],
                             [digits, heat, seed, status], api_name="generate", concurrency_id="sampler",
                             concurrency_limit=4)
            stop.click(None, cancels=[event])

        with gr.Tab("Complete"):
            with gr.Row():
                with gr.Column(scale=2, min_width=300):
                    pad = sketchpad()
                    rows = gr.Slider(1, SIDE - 1, 14, step=1, label="Rows to keep")
                    count = gr.Slider(1, MAX_DIGITS, 8, step=1, label="Completions")
                    c_digit = digit_choice("the model is labelled: finish the drawing as this digit", labels)
                    with gr.Accordion("Sampling", open=False):
                        c_seed, c_random, c_temperature = sampling_options(random_default=False)
                    with gr.Row():
                        c_go = gr.Button("Complete", variant="primary")
                        c_stop = gr.Button("Stop", variant="stop")
                    gr.Examples(EXAMPLES, pad, label="MNIST test digits")
                with gr.Column(scale=1, min_width=200):
                    view = picture("Model view", "**What the model sees**: it keeps the rows above the line")
                with gr.Column(scale=2):
                    completions = picture("Completions", "**Completions**")
            c_status = gr.Markdown()
            pad.change(preview, [pad, rows], [view, c_status], show_progress="hidden", trigger_mode="always_last",
                       api_name="preview")
            rows.release(preview, [pad, rows], [view, c_status], show_progress="hidden", api_visibility="private")
            c_event = c_go.click(complete, [pad, rows, count, c_seed, c_random, c_temperature, picker, c_digit],
                                 [view, completions, c_seed, c_status], api_name="complete",
                                 concurrency_id="sampler", concurrency_limit=4)
            c_stop.click(None, cancels=[c_event])

        with gr.Tab("Inspect"):
            with gr.Row():
                with gr.Column(scale=2, min_width=300):
                    i_pad = sketchpad()
                    i_go = gr.Button("Inspect", variant="primary")
                    examples = gr.Examples(EXAMPLES, i_pad, label="MNIST test digits")
                with gr.Column(scale=1, min_width=180):
                    i_view = picture("Model view", "**What the model sees**")
                with gr.Column(scale=1, min_width=180):
                    p_map = picture("P(pixel = 1)", "**P(pixel = 1 | the pixels before it)**")
                    gr.HTML(LEGEND.format(lo="0", hi="1"))
                with gr.Column(scale=1, min_width=180):
                    s_map = picture("Surprise", "**Surprise**: -log P(the pixel's value), in nats")
                    gr.HTML(LEGEND.format(lo="0", hi=f"≥ {SURPRISE_MAX}"))
            i_text = gr.Markdown()
            with gr.Row():
                with gr.Column(scale=2, min_width=240, visible=labels) as reading:
                    gr.Markdown("**Which digit is it?** p(digit | drawing) ∝ p(drawing | digit): how likely the "
                                "model finds the drawing given each label, the ten equally likely beforehand")
                    posterior = gr.Label(num_top_classes=10, show_label=False)
                with gr.Column(scale=1, min_width=180):
                    field = picture("Receptive field", "**Receptive field** of the red pixel: the earlier pixels "
                                                       "its probability depends on")
                    gr.HTML(FIELD_LEGEND)
                with gr.Column(scale=2, min_width=240):
                    gr.Markdown("Click a pixel in any picture above, or pick it here:")
                    f_row = gr.Slider(1, SIDE, PIXEL[0] + 1, step=1, label="Row")
                    f_col = gr.Slider(1, SIDE, PIXEL[1] + 1, step=1, label="Column")
                    f_text = gr.Markdown()
            i_outputs = [i_view, p_map, s_map, i_text, posterior]
            i_go.click(inspect_digit, [i_pad, picker], i_outputs, api_name="inspect")
            examples.load_input_event.then(inspect_digit, [i_pad, picker], i_outputs, api_visibility="private")
            f_inputs, f_outputs = [picker, f_row, f_col], [field, f_text]
            f_row.release(receptive, f_inputs, f_outputs, api_name="receptive_field")
            f_col.release(receptive, f_inputs, f_outputs, api_visibility="private")
            for image in (i_view, p_map, s_map, field):
                image.select(pick_pixel, None, [f_row, f_col], api_visibility="private").then(
                    receptive, f_inputs, f_outputs, api_visibility="private")

        picker.change(model_changed, picker, [g_digit, c_digit, reading], api_visibility="private").then(
            receptive, f_inputs, f_outputs, api_visibility="private")
        demo.load(receptive, f_inputs, f_outputs, api_visibility="private")

        demo.load(None, js=BRUSH_ON)  # the sketchpads open with their brush selected: no extra click
    demo.queue(max_size=64)
    return demo


demo = build_demo()

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=MODEL,
                        help="a folder in weights/, a folder, or a Hub repo id (default: PIXELCNN_MODEL or %(default)s)")
    parser.add_argument("--weights-dir", type=Path, default=WEIGHTS_DIR,
                        help="the folder of models the picker lists (default: PIXELCNN_WEIGHTS_DIR or %(default)s)")
    args = parser.parse_args()
    if (args.model, args.weights_dir) != (MODEL, WEIGHTS_DIR):
        WEIGHTS_DIR = args.weights_dir
        demo = build_demo(args.model)
    demo.launch(css=CSS)
