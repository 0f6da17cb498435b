"""The PixelCNN in a browser: watch digits being drawn pixel by pixel, finish a half-drawn
digit, and see how likely the model finds a digit, which digit a labelled model takes it
for, and which earlier pixels each pixel's probability depends on.

    python app.py                        # weights/pixelcnn/ on http://127.0.0.1:7860
    python app.py --model user/repo      # a Hub repo id (or a folder); PIXELCNN_MODEL=... also works
    python app.py --weights-dir DIR      # the picker lists DIR's models; PIXELCNN_WEIGHTS_DIR=... also works
    python app.py --mcp                  # also an MCP server at /gradio_api/mcp/; GRADIO_MCP_SERVER=True also works
    GRADIO_SERVER_NAME=0.0.0.0 GRADIO_SERVER_PORT=8080 python app.py
    PIXELCNN_APP_FPS=0 python app.py     # the normal pace: as fast as the model draws (tests, benchmarks)

The drawing-to-digit conversion is pixelcnn.from_drawing, the pictures pixelcnn.plotting's.
"""

import argparse
import contextlib
import functools
import json
import math
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Iterator, NamedTuple

import gradio as gr
import numpy as np
import torch

import pixelcnn
from pixelcnn import ModelLoadError
from pixelcnn.drawing import SIDE
from pixelcnn.plotting import CURSOR, PAD, VIRIDIS, beside, binary_rgb, colorize, gif, kept_view, mark_progress, tile
from pixelcnn.weights import DEFAULT_MODEL

MODEL = os.environ.get("PIXELCNN_MODEL", DEFAULT_MODEL)  # a folder in weights/, a folder, or a Hub repo id
WEIGHTS_DIR = Path(os.environ.get("PIXELCNN_WEIGHTS_DIR", pixelcnn.weights.WEIGHTS_DIR))  # the picker's models
FPS = float(os.environ.get("PIXELCNN_APP_FPS", "20"))  # the normal pace, frames a second; 0: no pacing
SLOW_FPS = 2.0  # slow motion: a row every half second, for teaching
MAX_DIGITS = 16
MAX_SEED = 2**63 - 1
ZOOM = 10  # one digit's pictures are upscaled this much
CANVAS = 400  # the sketchpad, in pixels
BRUSH = 20  # brush radius: strokes about a tenth of a digit's height, as in MNIST
SURPRISE_MAX = 4.6  # nats where the surprise colours saturate (p = 0.01)
ANY = "any"  # the digit choice of a labelled model that asks for no digit in particular
DIGITS = [ANY, *(str(d) for d in range(10))]
PIXEL = (20, 14)  # (row, column) whose receptive field Inspect shows first
EXAMPLES = sorted(str(p) for p in (Path(__file__).resolve().parent / "examples").glob("*.png"))
GIF_DIR = Path(tempfile.gettempdir()) / "pixelcnn-app"  # the runs' GIFs, each kept an hour
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

NOTHING_KEPT = ("Nothing to complete: the top {rows} rows of the digit, above the orange line, are blank. "
                "Move the slider to keep more rows, or use Generate to draw digits from scratch.")
NO_LABELS = "The model {name} has no labels: choose “any” digit, or a labelled model."
NO_READING = "The model {name} has no labels: it cannot tell which digit a drawing is."
PACES = ["slow", "normal", "fast"]
SAMPLER = {"concurrency_id": "sampler", "concurrency_limit": 4}  # at most 4 streams drawing at once


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


def reference_bits_per_pixel(name: str, marginal: bool) -> float | None:
    """The model's mean bits per pixel on MNIST's test digits, from its metrics.json if it has one.

    marginal: a labelled model's figure with p(x) the mean of p(x | label) over its labels
    (`train.py --evaluate` measures it), not its test loss, which is with the label dropped.
    """
    folder = local_folder(name)
    try:
        metrics = json.loads((folder / "metrics.json").read_text())
        nats = metrics["evaluation"]["test_loss_marginal"] if marginal else metrics["test_loss"]
        return float(nats) / math.log(2)
    except (OSError, ValueError, KeyError, TypeError):  # no folder (a Hub model), no file, no such figure
        return None


# --- what the page does ----------------------------------------------------------------------

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
    return whole("seed", seed, 0, MAX_SEED)


def pick_label(digit, model: torch.nn.Module, name: str) -> int | None:
    """The label to sample with: None for "any", else the digit, which the model must know."""
    if digit is None or digit == "" or digit == ANY:
        return None
    if not n_labels(model):
        raise InputError(NO_LABELS.format(name=name))
    if isinstance(digit, str) and digit.strip().isdigit():
        digit = int(digit)  # the page's choices are strings
    return whole("digit", digit, 0, n_labels(model) - 1)


def frames_per_second(pace: str) -> float:
    """A pace's frames a second: "slow" SLOW_FPS, "normal" FPS (PIXELCNN_APP_FPS), "fast" 0 (no pacing)."""
    if pace not in PACES:
        raise InputError(f"The pace must be one of {', '.join(PACES)}, got {pace!r}.")
    return {"slow": SLOW_FPS, "normal": FPS, "fast": 0.0}[pace]


def paced(frames: Iterator, fps: float) -> Iterator:
    """Pass frames on no faster than fps a second (0: as they come), at a pace a person can follow."""
    next_at = time.perf_counter()
    for frame in frames:
        if fps > 0:
            time.sleep(max(0.0, next_at - time.perf_counter()))
            next_at = max(next_at, time.perf_counter()) + 1 / fps
        yield frame


def save_gif(frames: list[np.ndarray], fps: float, name: str) -> str:
    """Write a run's frames as an animated GIF in GIF_DIR, where GIFs older than an hour are removed; its path."""
    GIF_DIR.mkdir(exist_ok=True)
    for old in GIF_DIR.glob("*.gif"):
        with contextlib.suppress(OSError):  # another process may remove it first
            if old.stat().st_mtime < time.time() - 3600:
                old.unlink()
    fd, path = tempfile.mkstemp(dir=GIF_DIR, prefix=f"{name}-", suffix=".gif")
    with os.fdopen(fd, "wb") as f:
        f.write(gif(frames, fps=fps or 20))
    return path


class Run(NamedTuple):
    """What a finished run leaves for its GIF: its last frame, each frame's position, how it was drawn."""

    last: pixelcnn.SampleStep
    positions: list[int]
    rows: int  # kept rows, under which a line is drawn
    fps: float
    name: str  # the GIF's name


def digits_of(step: pixelcnn.SampleStep, rows: int) -> np.ndarray:
    """A frame's digits: the pixels not drawn yet grey, the next one red, a line under the `rows` kept rows."""
    return tile(mark_progress(binary_rgb(step.images[:, 0].numpy()), step.position), cut=rows)


def heat_of(step: pixelcnn.SampleStep, rows: int) -> np.ndarray:
    """A frame's heatmap: the probability with which each pixel drawn so far got its value."""
    return tile(colorize(step.probs[:, 0].numpy()), cut=rows)


def run(steps: Iterator[pixelcnn.SampleStep], fps: float, rows: int, name: str, heat: bool) -> Iterator[tuple]:
    """A run's frames at its pace: (digits, heatmap if asked for, status, None), the last with its Run."""
    positions, t0, total = [], time.perf_counter(), SIDE * SIDE
    for step in paced(steps, fps):
        positions.append(step.position)
        pictures = digits_of(step, rows), heat_of(step, rows) if heat else None
        if step.position < total:
            row = step.position // SIDE + 1
            yield *pictures, f"Drawing row {row} of {SIDE} (pixel {step.position:,} of {total:,})", None
    status = f"Drew {total - rows * SIDE:,} pixels in {time.perf_counter() - t0:.1f} s."
    yield *pictures, status, Run(step, positions, rows, fps, name)


def take_home(kept: dict) -> str | None:
    """The GIF of the run that generate or complete left in `kept` (None if it was stopped or said why not).

    It is made after the stream, from the run's last frame: each frame is the last one with the
    pixels from its position on not drawn yet, since a drawn pixel never changes.
    """
    finished = kept.pop("run", None)
    if finished is None:
        return None
    frames = []
    for position in finished.positions:
        probs = finished.last.probs.clone()  # (n, 1, 28, 28)
        probs.view(len(probs), -1)[:, position:] = math.nan
        step = finished.last._replace(position=position, probs=probs)
        frames.append(beside(digits_of(step, finished.rows), heat_of(step, finished.rows)))
    return save_gif(frames, finished.fps, finished.name)


def as_digit(label: int | None, n: int) -> str:
    """What the status line says of the digit asked for."""
    return "" if label is None else f", {'each ' * (n > 1)}a {label}"


def generate(n: int, seed: float, random_seed: bool, temperature: float, model_name: str, digit: str = ANY,
             pace: str = "normal", kept: dict | None = None) -> Iterator[tuple]:
    """Draw new handwritten digits with the PixelCNN, pixel by pixel, streaming a frame per row.

    Args:
        n: how many digits, 1 to 16.
        seed: a whole number from 0 to 2**63 - 1; the same seed and settings draw the same digits.
        random_seed: if true, a fresh seed is drawn (and returned) instead.
        temperature: 1 samples the model as it is; below 1 bolder, more typical digits; 0 always the likelier pixel.
        model_name: one of the page's models (the choices of its picker).
        digit: "any", or for a labelled model "0" to "9", the digit to draw.
        pace: "slow" (slow motion), "normal" (about 20 frames a second) or "fast" (as fast as the model draws).
        kept: the page's gr.State: the finished run is left in it for take_home (not an input of the API).
    Returns:
        the digits as a PNG; the probability with which each pixel got its value, as a heatmap PNG; the seed used;
        a status line.
    """
    kept = {} if kept is None else kept
    kept.pop("run", None)  # a run stopped before its end leaves no GIF
    try:
        n = whole("number of digits", n, 1, MAX_DIGITS)
        used = pick_seed(seed, random_seed)
        fps = frames_per_second(pace)
        model = get_model(model_name)
        label = pick_label(digit, model, model_name)
        steps = pixelcnn.sample_stream(model, n, seed=used, temperature=temperature, label=label)
    except ValueError as e:  # InputError, ModelLoadError, the sampler's checks
        yield None, None, gr.skip(), f"⚠️ {e}"  # gr.skip(): the seed box keeps what was typed
        return
    done = f" {n} digit{'s' * (n > 1)}{as_digit(label, n)}, seed {used}, temperature {temperature:g}."
    for digits, heat, status, finished in run(steps, fps, 0, f"digits-seed{used}", heat=True):
        if finished:
            kept["run"] = finished
        yield digits, heat, used, status + done * bool(finished)


def preview(drawing, rows: int) -> tuple[np.ndarray | None, str]:
    """The digit the model would see, with the cut under the kept rows; or why there is none."""
    try:
        digit = pixelcnn.from_drawing(drawing)
        rows = whole("number of kept rows", rows, 1, SIDE - 1)
    except ValueError as e:  # DrawingError, InputError
        return None, f"⚠️ {e}"
    if not digit[:rows].any():
        return kept_view(digit, rows, ZOOM), f"⚠️ {NOTHING_KEPT.format(rows=rows)}"
    return kept_view(digit, rows, ZOOM), f"The model keeps the top {rows} rows and redraws the rest."


def complete(drawing, rows: int, n: int, seed: float, random_seed: bool, temperature: float, model_name: str,
             digit: str = ANY, pace: str = "normal", kept: dict | None = None) -> Iterator[tuple]:
    """Finish a half-drawn digit: keep the top rows of a drawing and let the PixelCNN draw the rest, n ways.

    Args:
        drawing: a picture of one digit (dark on light or light on dark, any size); it is prepared like MNIST.
        rows: how many of the digit's 28 rows to keep, 1 to 27.
        n: how many completions, 1 to 16.
        seed: a whole number from 0 to 2**63 - 1; the same seed and settings draw the same completions.
        random_seed: if true, a fresh seed is drawn (and returned) instead.
        temperature: 1 samples the model as it is; below 1 bolder, more typical digits; 0 always the likelier pixel.
        model_name: one of the page's models (the choices of its picker).
        digit: "any", or for a labelled model "0" to "9", the digit to finish the drawing as.
        pace: "slow" (slow motion), "normal" (about 20 frames a second) or "fast" (as fast as the model draws).
        kept: the page's gr.State: the finished run is left in it for take_home (not an input of the API).
    Returns:
        the digit as the model sees it, the kept rows above an orange line; the completions as a PNG; the seed used;
        a status line.
    """
    kept = {} if kept is None else kept
    kept.pop("run", None)  # a run stopped before its end leaves no GIF
    try:
        image = pixelcnn.from_drawing(drawing)  # (28, 28)
        rows = whole("number of kept rows", rows, 1, SIDE - 1)
        view = kept_view(image, rows, ZOOM)
        if not image[:rows].any():
            yield view, None, gr.skip(), f"⚠️ {NOTHING_KEPT.format(rows=rows)}"
            return
        n = whole("number of completions", n, 1, MAX_DIGITS)
        used = pick_seed(seed, random_seed)
        fps = frames_per_second(pace)
        model = get_model(model_name)
        label = pick_label(digit, model, model_name)
        prefix = torch.from_numpy(image)[None, None]  # (1, 1, 28, 28)
        steps = pixelcnn.sample_stream(model, n, seed=used, prefix=prefix, rows=rows, temperature=temperature,
                                       label=label)
    except ValueError as e:  # DrawingError, InputError, ModelLoadError, the sampler's checks
        yield None, None, gr.skip(), f"⚠️ {e}"
        return
    done = f" {n} completion{'s' * (n > 1)} of the top {rows} rows{as_digit(label, n)}, seed {used}."
    for images, _, status, finished in run(steps, fps, rows, f"completions-seed{used}", heat=False):
        if finished:
            kept["run"] = finished
        yield view, images, used, status + done * bool(finished)


def digit_posterior(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    """p(label | x) of a labelled model, from its own likelihoods: (n_labels,) probabilities.

    p(label | x) ∝ p(x | label) p(label), the labels equally likely: one forward pass for
    all the labels (pixelcnn.label_nats), log p(x | label) summed over the pixels, then a softmax.

    Args:
        x: (1, 1, 28, 28) in {0, 1}.
    """
    log_px = -pixelcnn.label_nats(model, x)[0]  # (n_labels,)
    return torch.softmax(log_px.double(), dim=0).numpy()


def inspect_digit(drawing, model_name: str) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None, str]:
    """Score a drawing of a digit: how likely the PixelCNN finds it, -log p(digit), pixel by pixel and in total.

    Args:
        drawing: a picture of one digit (dark on light or light on dark, any size); it is prepared like MNIST.
        model_name: one of the page's models (the choices of its picker).
    Returns:
        the digit as the model sees it; P(pixel = 1 | the pixels before it) and each pixel's surprise as heatmaps;
        a text with the total in nats and bits per pixel (for a labelled model p(digit) averaged over the labels)
        beside the model's own average on MNIST's test digits, measured the same way.
    """
    try:
        digit = pixelcnn.from_drawing(drawing)
        model = get_model(model_name)
    except ValueError as e:  # DrawingError, ModelLoadError
        return None, None, None, f"⚠️ {e}"
    x = torch.from_numpy(digit)[None, None]  # (1, 1, 28, 28)
    p1 = pixelcnn.probabilities(model, x)[0, 0].numpy()  # (28, 28)
    s = pixelcnn.surprise(model, x)
    smap = s.map[0, 0].numpy()  # (28, 28) nats
    # The total: a labelled model's -log p(x) with p(x) the mean of p(x | label), as its reference figure
    nats = float(pixelcnn.marginal_nats(model, x)[0] if n_labels(model) else s.nats[0])
    bpp = nats / math.log(2) / digit.size
    r, c = np.unravel_index(smap.argmax(), smap.shape)
    text = (f"**{nats:.1f} nats** for the whole digit, **{bpp:.3f} bits per pixel**"
            + (", p(drawing) averaged over the ten digits" if n_labels(model) else "")
            + f": the model gives it probability e<sup>-{nats:.1f}</sup> ≈ 10<sup>-{nats / math.log(10):.1f}</sup>. "
            f"The most surprising pixel is row {r + 1}, column {c + 1} ({smap[r, c]:.1f} nats).")
    reference = reference_bits_per_pixel(model_name, marginal=n_labels(model) > 0)
    if reference is not None:
        text += (f" On MNIST's test digits the model averages {reference:.3f} bits per pixel, measured the same "
                 "way: lower is more likely.")
    if n_labels(model):
        p = digit_posterior(model, x)
        text += f" It reads the drawing as a **{p.argmax()}**, with probability {p.max():.2f}."
    return (tile(binary_rgb(digit[None]), scale=ZOOM), tile(colorize(p1)[None], scale=ZOOM),
            tile(colorize(smap, SURPRISE_MAX)[None], scale=ZOOM), text)


def read_digit(drawing, model_name: str) -> dict[str, float] | str:
    """Which digit a labelled PixelCNN takes a drawing for: p(digit | drawing) from its own likelihoods.

    Args:
        drawing: a picture of one digit (dark on light or light on dark, any size); it is prepared like MNIST.
        model_name: one of the page's models (the choices of its picker); a labelled one, such as gated-pixelcnn.
    Returns:
        the probability of each digit "0" to "9", the likeliest first; or a message saying why there is none.
    """
    try:
        digit = pixelcnn.from_drawing(drawing)
        model = get_model(model_name)
    except ValueError as e:  # DrawingError, ModelLoadError
        return f"⚠️ {e}"
    if not n_labels(model):
        return f"⚠️ {NO_READING.format(name=model_name)}"
    p = digit_posterior(model, torch.from_numpy(digit)[None, None])
    return {str(d): float(q) for d, q in enumerate(p)}


def receptive_field(model_name: str, row: int, col: int) -> tuple[np.ndarray | None, str]:
    """Which earlier pixels the PixelCNN's probability at one pixel depends on: its receptive field, and blind spot.

    Args:
        model_name: one of the page's models (the choices of its picker).
        row: the pixel's row, 1 (top) to 28.
        col: the pixel's column, 1 (left) to 28.
    Returns:
        the field as a picture (seen pixels teal, blind ones orange, the pixel red); a text that counts them.
    """
    try:
        row = whole("row", row, 1, SIDE) - 1
        col = whole("column", col, 1, SIDE) - 1
        model = get_model(model_name)
    except ValueError as e:  # InputError, ModelLoadError
        return None, f"⚠️ {e}"
    parts = {k: v.numpy() for k, v in pixelcnn.receptive.field_parts(model, row, col, size=SIDE).items()}
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
    # type="pil": a big upload reaches pixelcnn.from_drawing as it was decoded, which shrinks it before anything else
    return gr.Sketchpad(label="Draw a digit", canvas_size=(CANVAS, CANVAS), fixed_canvas=True, sources=("upload",),
                        brush=gr.Brush(default_size=BRUSH, colors=["#000000"], color_mode="fixed"),
                        layers=False, transforms=(), type="pil", elem_classes="sketch")


def sampling_options(random_default: bool) -> tuple[gr.Number, gr.Checkbox, gr.Slider, gr.Radio]:
    seed = gr.Number(0, label="Seed", precision=0, minimum=0, maximum=MAX_SEED)
    random_seed = gr.Checkbox(random_default, label="Random seed", info="a new seed each time, shown above")
    temperature = gr.Slider(0, 2, 1.0, step=0.05, label="Temperature",
                            info="below 1: bolder and more typical; 0: always the likelier pixel")
    normal = f"{FPS:g} frames a second" if FPS > 0 else "as fast as it draws (PIXELCNN_APP_FPS=0)"
    pace = gr.Radio([("slow motion", "slow"), (normal, "normal"), ("as fast as it draws", "fast")], value="normal",
                    label="Pace")
    return seed, random_seed, temperature, pace


def digit_choice(info: str, visible: bool) -> gr.Dropdown:
    """The digit a labelled model is to draw; hidden for an unlabelled one."""
    return gr.Dropdown(DIGITS, value=ANY, label="Digit", info=info, visible=visible)


def gif_button() -> gr.DownloadButton:
    return gr.DownloadButton("Download the run as a GIF", size="sm", variant="secondary")


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
                    seed, random_seed, temperature, pace = sampling_options(random_default=True)
                    with gr.Row():
                        go = gr.Button("Generate", variant="primary")
                        stop = gr.Button("Stop", variant="stop")
                    g_gif, g_kept = gif_button(), gr.State({})
                with gr.Column(scale=2):
                    digits = picture("Digits", "**Digits**, the red pixel is drawn next")
                with gr.Column(scale=2):
                    heat = picture("Probabilities", "**Probability** with which each pixel got its value")
                    gr.HTML(LEGEND.format(lo="0", hi="1"))
            status = gr.Markdown()
            g_inputs = [n, seed, random_seed, temperature, picker, g_digit, pace]
            g_outputs = [digits, heat, seed, status]
            event = go.click(generate, [*g_inputs, g_kept], g_outputs, api_name="generate_page",
                             api_visibility="private", **SAMPLER)
            event.then(take_home, g_kept, g_gif, api_visibility="private")
            stop.click(None, cancels=[event])

        with gr.Tab("Complete"):
            with gr.Row():
                with gr.Column(scale=2, min_width=300):
                    pad = sketchpad()
                    rows = gr.Slider(1, SIDE - 1, 14, step=1, label="Rows to keep")
                    count = gr.Slider(1, MAX_DIGITS, 8, step=1, label="Completions")
                    c_digit = digit_choice("the model is labelled: finish the drawing as this digit", labels)
                    with gr.Accordion("Sampling", open=False):
                        c_seed, c_random, c_temperature, c_pace = sampling_options(random_default=False)
                    with gr.Row():
                        c_go = gr.Button("Complete", variant="primary")
                        c_stop = gr.Button("Stop", variant="stop")
                    c_gif, c_kept = gif_button(), gr.State({})
                    gr.Examples(EXAMPLES, pad, label="MNIST test digits")
                with gr.Column(scale=1, min_width=200):
                    view = picture("Model view", "**What the model sees**: it keeps the rows above the line")
                with gr.Column(scale=2):
                    completions = picture("Completions", "**Completions**")
            c_status = gr.Markdown()
            for change in (pad.change, rows.release):
                change(preview, [pad, rows], [view, c_status], show_progress="hidden", trigger_mode="always_last",
                       api_visibility="private")
            c_inputs = [rows, count, c_seed, c_random, c_temperature, picker, c_digit, c_pace]
            c_outputs = [view, completions, c_seed, c_status]
            c_event = c_go.click(complete, [pad, *c_inputs, c_kept], c_outputs, api_name="complete_page",
                                 api_visibility="private", **SAMPLER)
            c_event.then(take_home, c_kept, c_gif, api_visibility="private")
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
            i_outputs = [i_view, p_map, s_map, i_text]
            for trigger in (i_go.click, examples.load_input_event.then):
                trigger(inspect_digit, [i_pad, picker], i_outputs, api_name="inspect_page", api_visibility="private")
                trigger(read_digit, [i_pad, picker], posterior, api_name="read_page", api_visibility="private")
            f_inputs, f_outputs = [picker, f_row, f_col], [field, f_text]
            f_row.release(receptive_field, f_inputs, f_outputs, api_name="receptive_field")
            f_col.release(receptive_field, f_inputs, f_outputs, api_visibility="private")
            for image in (i_view, p_map, s_map, field):
                image.select(pick_pixel, None, [f_row, f_col], api_visibility="private").then(
                    receptive_field, f_inputs, f_outputs, api_visibility="private")

        for button, run_gif in ((go, g_gif), (c_go, c_gif)):  # the last run's GIF goes when a new run starts
            button.click(lambda: None, None, run_gif, queue=False, api_visibility="private")
        picker.change(model_changed, picker, [g_digit, c_digit, reading], api_visibility="private").then(
            receptive_field, f_inputs, f_outputs, api_visibility="private")
        demo.load(receptive_field, f_inputs, f_outputs, api_visibility="private")

        # The API and the MCP tools: the same functions on events of their own, with no trigger on the page.
        # Their drawing is a plain picture, not a sketchpad's layers (whose schema MCP cannot read), and they
        # keep no run for a GIF (MCP cannot take a gr.State).
        drawing = gr.Image(type="pil", label="Drawing", visible=False)
        gr.on([], generate, g_inputs, g_outputs, api_name="generate", **SAMPLER)
        gr.on([], complete, [drawing, *c_inputs], c_outputs, api_name="complete", **SAMPLER)
        gr.on([], inspect_digit, [drawing, picker], i_outputs, api_name="inspect")
        gr.on([], read_digit, [drawing, picker], posterior, api_name="read_digit")

        demo.load(None, js=BRUSH_ON)  # the sketchpads open with their brush selected: no extra click
    demo.queue(max_size=64)
    return demo


demo = build_demo()  # Gradio Spaces serve `demo`; nothing is launched on import

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=MODEL,
                        help="a folder in weights/, a folder, or a Hub repo id (default: PIXELCNN_MODEL or %(default)s)")
    parser.add_argument("--weights-dir", type=Path, default=WEIGHTS_DIR,
                        help="the folder of models the picker lists (default: PIXELCNN_WEIGHTS_DIR or %(default)s)")
    parser.add_argument("--mcp", action="store_true", default=None,
                        help="also serve the page's functions as MCP tools (default: GRADIO_MCP_SERVER)")
    args = parser.parse_args()
    if (args.model, args.weights_dir) != (MODEL, WEIGHTS_DIR):
        WEIGHTS_DIR = args.weights_dir
        demo = build_demo(args.model)
    demo.launch(css=CSS, mcp_server=args.mcp)
