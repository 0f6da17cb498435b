"""The PixelCNN in a browser: watch digits being drawn pixel by pixel, finish a digit from any
side or redraw a part you mark, and see how likely the model finds a digit, which digit a
labelled model takes it for, and which earlier pixels each pixel's probability depends on.

    python app.py                        # the best model, weights/gated-pixelcnn-5x5-48x2/, on http://127.0.0.1:7860
    python app.py --model user/repo      # a Hub repo id (or a folder); PIXELCNN_MODEL=... also works
    python app.py --weights-dir DIR      # the picker lists DIR's models; PIXELCNN_WEIGHTS_DIR=... also works
    python app.py --mcp                  # also an MCP server at /gradio_api/mcp/; GRADIO_MCP_SERVER=True also works
    GRADIO_SERVER_NAME=0.0.0.0 GRADIO_SERVER_PORT=8080 python app.py
    PIXELCNN_APP_FPS=0 python app.py     # the normal pace: as fast as the model draws (tests, benchmarks)

The drawing-to-digit conversion is pixelcnn.from_drawing (from_marked_drawing for a region marked
to redraw), the pictures pixelcnn.plotting's, the texts and the completion's choices pixelcnn.page's.
"""

import argparse
import functools
import json
import math
import os
import random
import tempfile
from pathlib import Path
from typing import Iterator

import gradio as gr
import numpy as np
import torch

import pixelcnn
from pixelcnn.sampling import n_labels  # 0 for an unlabelled model
from pixelcnn import ModelLoadError, page
from pixelcnn.page import KEEPS, InputError, digit_posterior, paced, whole
from pixelcnn.drawing import MARK_HEX, MARK_OPACITY, SIDE
from pixelcnn.plotting import PAD, binary_rgb, colorize, kept_view, tile
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
CANDIDATES = 128  # completions drawn to resample from, where the kept pixels do not all come first
MAX_CANDIDATES = 512
# A labelled model's classifier-free guidance: the app's model's digits asked for are read as asked 99.9%, not 96.2% (README).
# Completions: none by default, since it made them no more often the true digit and takes twice the time (README).
GUIDANCE = 1.0
COMPLETE_GUIDANCE = 0.0
MAX_GUIDANCE = 4.0
SURPRISE_MAX = 4.6  # nats where the surprise colours saturate (p = 0.01)
ANY = "any"  # the digit choice of a labelled model that asks for no digit in particular
DIGITS = [ANY, *(str(d) for d in range(10))]
PIXEL = (20, 14)  # (row, column) whose receptive field Inspect shows first
EXAMPLES = sorted(str(p) for p in (Path(__file__).resolve().parent / "examples").glob("*.png"))
GIF_DIR = Path(tempfile.gettempdir()) / "pixelcnn-app"  # the runs' GIFs, each kept an hour
CSS = page.CSS  # launch(css=CSS)

NO_LABELS = "The model {name} has no labels: choose “any” digit, or a labelled model."
NO_READING = "The model {name} has no labels: it cannot tell which digit a drawing is."
PACES = ["slow", "normal", "fast"]
SAMPLER = {"concurrency_id": "sampler", "concurrency_limit": 4}  # at most 4 streams drawing at once


# --- the model -------------------------------------------------------------------------------

def model_choices(default: str) -> list[str]:
    """The default model first (from WEIGHTS_DIR, a folder or a Hub repo id), then the others in WEIGHTS_DIR."""
    return [default, *(name for name in pixelcnn.list_models(WEIGHTS_DIR) if name != default)]


def reads_four_ways(name: str) -> bool:
    """Whether the local model `name` was trained on four orientations (from its config.json, nothing loaded)."""
    folder = pixelcnn.weights.local_folder(name, WEIGHTS_DIR)
    try:
        return folder is not None and json.loads((folder / "config.json").read_text()).get("n_orientations", 1) == 4
    except (OSError, ValueError):
        return False


def proposal_for(model, name: str, known: np.ndarray, guidance: float) -> tuple[str, torch.nn.Module] | None:
    """A model of the page trained on four orientations, with the same labels, that completes `known` exactly where
    the model asked for would draw all of its candidates' pixels before any kept one (the bottom rows kept, for a
    model that reads top first): it draws the candidates from the kept side and the model weighs them
    (pixelcnn.complete's proposal). (name, model) or None.

    Where kept pixels come between the ones to draw in the model's order (a side's columns, a hole), the model's
    own candidates are weighed by them row by row and resampled on the way, and most of them count (on the left
    or right 14 columns, about 100 of 128): the model draws its own.
    """
    known = torch.from_numpy(known)
    if guidance or pixelcnn.exact_orientation(model, known) is not None:
        return None
    flat = pixelcnn.orient(known[None, None], pixelcnn.best_orientation(model, known)).reshape(-1)
    unknown = torch.nonzero(~flat)[:, 0]
    if flat[int(unknown[0]):int(unknown[-1]) + 1].any():
        return None  # kept pixels among the ones to draw: the model's own candidates fit them as they go
    for other in pixelcnn.list_models(WEIGHTS_DIR):
        if other != name and reads_four_ways(other):
            four = get_model(other)
            if n_labels(four) == n_labels(model) and pixelcnn.exact_orientation(four, known) is not None:
                return other, four
    return None


@functools.lru_cache(maxsize=4)
def _load(name: str, version: tuple) -> torch.nn.Module:
    return pixelcnn.load_model(name)


def get_model(name: str | None) -> torch.nn.Module:
    """The model `name`, loaded once; a local one again when its weights change (each epoch of training)."""
    if not name:
        raise ModelLoadError(f"no model: train one with `python train.py` (it goes to {WEIGHTS_DIR}/)")
    folder = pixelcnn.weights.local_folder(name, WEIGHTS_DIR)
    if folder is not None:
        stat = (folder / "model.safetensors").stat()
        return _load(str(folder), (stat.st_mtime_ns, stat.st_size))
    if name == DEFAULT_MODEL:
        raise ModelLoadError(f"no model yet: {WEIGHTS_DIR / name}/ is missing. Train one with `python train.py`, "
                             "or start the app with `--model user/repo`.")
    return _load(name, ())  # a Hub repo id, downloaded once into the Hugging Face cache


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
    folder = pixelcnn.weights.local_folder(name, WEIGHTS_DIR)
    try:
        metrics = json.loads((folder / "metrics.json").read_text())
        nats = metrics["evaluation"]["test_loss_marginal"] if marginal else metrics["test_loss"]
        return float(nats) / math.log(2)
    except (OSError, ValueError, KeyError, TypeError):  # no folder (a Hub model), no file, no such figure
        return None


# --- what the page does ----------------------------------------------------------------------

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


def take_home(kept: dict) -> str | None:
    """The GIF of the run that generate or complete left in `kept` (None if it was stopped or said why not).

    It is made after the stream, from the frames it streamed: the digits beside their heatmap.
    """
    finished = kept.pop("run", None)
    return None if finished is None else page.save_gif(finished, GIF_DIR)


def as_digit(label: int | None, n: int) -> str:
    """What the status line says of the digit asked for."""
    return "" if label is None else f", {'each ' * (n > 1)}a {label}"


def pick_guidance(guidance, model: torch.nn.Module, default: float = GUIDANCE) -> float:
    """The guidance to sample with: the one asked for (default if none) on a labelled model, 0 on an unlabelled one."""
    if guidance is None:
        guidance = default
    try:
        value = float(guidance)
    except (TypeError, ValueError):
        value = math.nan
    if not 0 <= value <= MAX_GUIDANCE:
        raise InputError(f"The guidance must be a number from 0 to {MAX_GUIDANCE:g}, got {guidance!r}.")
    return value if n_labels(model) else 0.0


def as_guidance(guidance: float) -> str:
    return f", guidance {guidance:g}" if guidance else ""


def generate(n: int, seed: float, random_seed: bool, temperature: float, model_name: str, digit: str = ANY,
             pace: str = "normal", guidance: float = GUIDANCE, kept: dict | None = None) -> Iterator[tuple]:
    """Draw new handwritten digits with the PixelCNN, pixel by pixel, streaming a frame per row.

    Args:
        n: how many digits, 1 to 16.
        seed: a whole number from 0 to 2**63 - 1; the same seed and settings draw the same digits.
        random_seed: if true, a fresh seed is drawn (and returned) instead.
        temperature: 1 samples the model as it is; below 1 bolder, more typical digits; 0 always the likelier pixel.
        model_name: one of the page's models (the choices of its picker).
        digit: "any", or for a labelled model "0" to "9", the digit to draw.
        pace: "slow" (slow motion), "normal" (about 20 frames a second) or "fast" (as fast as the model draws).
        guidance: for a labelled model, 0 to 4: 0 samples the model as it is; more pushes each pixel towards the
            digit (classifier-free guidance; with "any", towards a digit drawn at random): clearer digits, less
            varied. Ignored by an unlabelled model.
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
        guidance = pick_guidance(guidance, model)
        steps = pixelcnn.sample_stream(model, n, seed=used, temperature=temperature, label=label, guidance=guidance)
    except ValueError as e:  # InputError, ModelLoadError, the sampler's checks
        yield None, None, gr.skip(), f"⚠️ {e}"  # gr.skip(): the seed box keeps what was typed
        return
    done = (f" {n} digit{'s' * (n > 1)}{as_digit(label, n)}, seed {used}, temperature {temperature:g}"
            f"{as_guidance(guidance)}.")
    for digits, heat, status, finished in page.frames(paced(steps, fps), None, None, f"digits-seed{used}", fps,
                                                      heat=True):
        if finished:
            kept["run"] = finished
        yield digits, heat, used, status + done * bool(finished)


def preview(drawing, keep: str, lines: int) -> tuple[np.ndarray | None, str]:
    """The digit the model would see, the part to redraw dimmed; or why there is none."""
    try:
        digit, kept, marked = page.read_completion(drawing, keep, lines)
    except ValueError as e:  # DrawingError, InputError
        return None, f"⚠️ {e}"
    why = page.cannot_complete(digit, kept, keep, lines)
    return kept_view(digit, kept, ZOOM), f"⚠️ {why}" if why else page.preview_text(keep, lines, kept, marked)


def complete(drawing, keep: str, lines: int, n: int, seed: float, random_seed: bool, temperature: float,
             model_name: str, digit: str = ANY, pace: str = "normal", candidates: int = CANDIDATES, mark=None,
             guidance: float = COMPLETE_GUIDANCE, kept: dict | None = None) -> Iterator[tuple]:
    """Finish a digit from any side, or redraw a marked part of it: the PixelCNN draws the rest, n ways.

    Args:
        drawing: a picture of one digit (dark on light or light on dark, any size); it is prepared like MNIST.
            For keep="marked", the part to redraw may be painted on it with the orange marker (#ff6000 at half
            opacity, so that the ink under it shows), or given as `mark`.
        keep: what to keep: "top", "bottom", "left" or "right" (that many rows or columns), or "marked" (all
            but the marked part).
        lines: how many rows (top, bottom) or columns (left, right) to keep, 1 to 27.
        n: how many completions, 1 to 16.
        seed: a whole number from 0 to 2**63 - 1; the same seed and settings draw the same completions.
        random_seed: if true, a fresh seed is drawn (and returned) instead.
        temperature: 1 samples the model as it is; below 1 bolder, more typical digits; 0 always the likelier pixel.
        model_name: one of the page's models (the choices of its picker).
        digit: "any", or for a labelled model "0" to "9", the digit to finish the drawing as.
        pace: "slow" (slow motion), "normal" (about 20 frames a second) or "fast" (as fast as the model draws).
        candidates: where kept pixels come after the part to redraw in the model's order, it draws this many
            completions (16 to 512) and resamples n of them by how well they fit; more fit better, and take longer.
            For the bottom rows kept, with a model that reads only top first, a model of the page trained on
            four orientations (with the same labels) draws them from the kept side, if there is one, and the
            model weighs them (not with guidance).
        mark: for keep="marked", optionally a mask of the part to redraw instead of the marker: white where to
            redraw on black, the size of the drawing or 28x28 (the model's frame).
        guidance: for a labelled model, 0 to 4: 0 (the default) completes with the model as it is; more pushes
            each pixel towards the digit (classifier-free guidance; with "any", towards the digit drawn from what the
            drawing shows). Ignored by an unlabelled model.
        kept: the page's gr.State: the finished run is left in it for take_home (not an input of the API).
    Returns:
        the digit as the model sees it, the part to redraw dimmed; the completions as a PNG; the seed used;
        a status line, which says how many candidates counted where it resampled.
    """
    kept = {} if kept is None else kept
    kept.pop("run", None)  # a run stopped before its end leaves no GIF
    try:
        image, known, _ = page.read_completion(drawing, keep, lines, mark)  # (28, 28) each
        view = kept_view(image, known, ZOOM)
        why = page.cannot_complete(image, known, keep, lines)
        if why:
            yield view, None, gr.skip(), f"⚠️ {why}"
            return
        n = whole("number of completions", n, 1, MAX_DIGITS)
        candidates = whole("number of candidates", candidates, MAX_DIGITS, MAX_CANDIDATES)  # at least n
        used = pick_seed(seed, random_seed)
        fps = frames_per_second(pace)
        model = get_model(model_name)
        label = pick_label(digit, model, model_name)
        guidance = pick_guidance(guidance, model, COMPLETE_GUIDANCE)
        drawn_by = proposal_for(model, model_name, known, guidance)
        steps = pixelcnn.complete_stream(model, n, torch.from_numpy(image)[None, None], torch.from_numpy(known),
                                         seed=used, temperature=temperature, label=label, candidates=candidates,
                                         guidance=guidance, proposal=drawn_by and drawn_by[1])
    except ValueError as e:  # DrawingError, InputError, ModelLoadError, the sampler's checks
        yield None, None, gr.skip(), f"⚠️ {e}"
        return
    part = page.kept_part(keep, lines, known)
    done = f" {n} completion{'s' * (n > 1)} of {part}{as_digit(label, n)}, seed {used}{as_guidance(guidance)}."
    name = f"completions-{keep}-seed{used}"
    for images, _, status, finished in page.frames(paced(steps, fps), known, image, name, fps, heat=False,
                                                   candidates=candidates):
        if finished:
            kept["run"] = finished
            last = finished.steps[-1]
            if last.ess is not None:  # it resampled
                exact = next((m for m in pixelcnn.list_models(WEIGHTS_DIR) if reads_four_ways(m)), None)
                done += page.resampling(float(last.ess[0]), candidates, n, keep,
                                        getattr(model.config, "n_orientations", 1), int(last.resamplings[0]), exact,
                                        drawn_by and drawn_by[0])
        yield view, images, used, status + done * bool(finished)


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
    reference = reference_bits_per_pixel(model_name, marginal=n_labels(model) > 0)
    text = page.surprise_text(nats, smap, n_labels(model) > 0, reference)
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
    return page.field_picture(parts, row, col, ZOOM), page.field_text(parts, row, col)


def pick_pixel(evt: gr.SelectData) -> tuple[int, int]:
    """The (row, column), counted from 1, of the pixel clicked in one of Inspect's pictures."""
    if not evt.index:  # a click beside the picture
        return gr.skip(), gr.skip()
    x, y = evt.index  # in the picture's own pixels
    return tuple(int(np.clip((v - PAD) // ZOOM, 0, SIDE - 1)) + 1 for v in (y, x))


def keep_changed(keep: str) -> dict:
    """The slider counts rows or columns, as the choice of what to keep does; "marked" needs none."""
    return gr.update(visible=keep != "marked", label=f"{'Rows' if keep in ('top', 'bottom') else 'Columns'} to keep")


def model_changed(name: str) -> tuple[dict, ...]:
    """Show the digit choices (reset to "any"), the guidance and the digit reading only for a labelled model."""
    show = labelled(name)
    digit, shown = gr.update(visible=show, value=ANY), gr.update(visible=show)
    return digit, digit, shown, shown, shown


# --- the page --------------------------------------------------------------------------------

def picture(label: str, caption: str) -> gr.Image:
    """An output picture under a caption (Gradio's own label would float over the picture's top rows)."""
    gr.Markdown(caption)
    return gr.Image(label=label, show_label=False, format="png", interactive=False, buttons=["download"],
                    elem_classes="pixels")


def sketchpad(marker: bool = False) -> gr.Sketchpad:
    """A canvas for one digit in black ink; with the marker, a second colour on a layer of its own (BRUSH_ON
    picks the layer with the colour), translucent so that the ink under it shows and is read back."""
    # type="pil": a big upload reaches pixelcnn.from_drawing as it was decoded, which shrinks it before anything else
    colors = ["#000000", (MARK_HEX, MARK_OPACITY)] if marker else ["#000000"]
    layers = gr.LayerOptions(layers=["Digit", "Mark"], allow_additional_layers=False) if marker else False
    return gr.Sketchpad(label="Draw a digit" + "; the brush's orange marker marks a part to redraw" * marker,
                        canvas_size=(CANVAS, CANVAS), fixed_canvas=True, sources=("upload",),
                        brush=gr.Brush(default_size=BRUSH, colors=colors, default_color="#000000", color_mode="fixed"),
                        layers=layers, transforms=(), type="pil", elem_classes=["sketch", "marker"][:1 + marker])


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


def guidance_slider(value: float, visible: bool) -> gr.Slider:
    """A labelled model's classifier-free guidance; hidden for an unlabelled one."""
    return gr.Slider(0, MAX_GUIDANCE, value, step=0.25, label="Guidance", visible=visible,
                     info="towards the digit: 0 is the model as it is; more, clearer digits and less varied ones")


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
                    g_guidance = guidance_slider(GUIDANCE, labels)
                    seed, random_seed, temperature, pace = sampling_options(random_default=True)
                    with gr.Row():
                        go = gr.Button("Generate", variant="primary")
                        stop = gr.Button("Stop", variant="stop")
                    g_gif, g_kept = gif_button(), gr.State({})
                with gr.Column(scale=2):
                    digits = picture("Digits", "**Digits**, the red pixel is drawn next")
                with gr.Column(scale=2):
                    heat = picture("Probabilities", "**Probability** with which each pixel got its value")
                    gr.HTML(page.legend("0", "1"))
            status = gr.Markdown()
            g_inputs = [n, seed, random_seed, temperature, picker, g_digit, pace, g_guidance]
            g_outputs = [digits, heat, seed, status]
            event = go.click(generate, [*g_inputs, g_kept], g_outputs, api_name="generate_page",
                             api_visibility="private", **SAMPLER)
            event.then(take_home, g_kept, g_gif, api_visibility="private")
            stop.click(None, cancels=[event])

        with gr.Tab("Complete"):
            with gr.Row():
                with gr.Column(scale=2, min_width=300):
                    pad = sketchpad(marker=True)
                    keep = gr.Radio([(label, value) for value, label in KEEPS.items()], value="top", label="Keep",
                                    info="or paint the part to redraw with the brush's orange marker")
                    lines = gr.Slider(1, SIDE - 1, 14, step=1, label="Rows to keep")
                    count = gr.Slider(1, MAX_DIGITS, 8, step=1, label="Completions")
                    c_digit = digit_choice("the model is labelled: finish the drawing as this digit", labels)
                    c_guidance = guidance_slider(COMPLETE_GUIDANCE, labels)
                    with gr.Accordion("Sampling", open=False):
                        c_seed, c_random, c_temperature, c_pace = sampling_options(random_default=False)
                        candidates = gr.Slider(MAX_DIGITS, MAX_CANDIDATES, CANDIDATES, step=16, label="Candidates",
                                               info="where kept pixels come after the part to redraw: completions "
                                                    "drawn to resample from; more fit better, and take longer")
                    with gr.Row():
                        c_go = gr.Button("Complete", variant="primary")
                        c_stop = gr.Button("Stop", variant="stop")
                    c_gif, c_kept = gif_button(), gr.State({})
                    gr.Examples(EXAMPLES, pad, label="MNIST test digits")
                with gr.Column(scale=1, min_width=200):
                    view = picture("Model view", "**What the model sees**: it redraws the dimmed part")
                with gr.Column(scale=2):
                    completions = picture("Completions", "**Completions**")
            c_status = gr.Markdown()
            keep.change(keep_changed, keep, lines, api_visibility="private")
            for change in (pad.change, keep.change, lines.release):
                change(preview, [pad, keep, lines], [view, c_status], show_progress="hidden",
                       trigger_mode="always_last", api_visibility="private")
            c_inputs = [keep, lines, count, c_seed, c_random, c_temperature, picker, c_digit, c_pace, candidates]
            c_outputs = [view, completions, c_seed, c_status]
            # the page's mark is on its sketchpad: no second picture (gr.State(None))
            c_event = c_go.click(complete, [pad, *c_inputs, gr.State(None), c_guidance, c_kept], c_outputs,
                                 api_name="complete_page", api_visibility="private", **SAMPLER)
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
                    gr.HTML(page.legend("0", "1"))
                with gr.Column(scale=1, min_width=180):
                    s_map = picture("Surprise", "**Surprise**: -log P(the pixel's value), in nats")
                    gr.HTML(page.legend("0", f"≥ {SURPRISE_MAX}"))
            i_text = gr.Markdown()
            with gr.Row():
                with gr.Column(scale=2, min_width=240, visible=labels) as reading:
                    gr.Markdown("**Which digit is it?** p(digit | drawing) ∝ p(drawing | digit): how likely the "
                                "model finds the drawing given each label, the ten equally likely beforehand")
                    posterior = gr.Label(num_top_classes=10, show_label=False)
                with gr.Column(scale=1, min_width=180):
                    field = picture("Receptive field", "**Receptive field** of the red pixel: the earlier pixels "
                                                       "its probability depends on")
                    gr.HTML(page.FIELD_LEGEND)
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
        picker.change(model_changed, picker, [g_digit, c_digit, g_guidance, c_guidance, reading],
                      api_visibility="private").then(
            receptive_field, f_inputs, f_outputs, api_visibility="private")
        demo.load(receptive_field, f_inputs, f_outputs, api_visibility="private")

        # The API and the MCP tools: the same functions on events of their own, with no trigger on the page.
        # Their drawing is a plain picture, not a sketchpad's layers (whose schema MCP cannot read), and they
        # keep no run for a GIF (MCP cannot take a gr.State).
        # image_mode=None: a picture keeps its mode, its transparency too (strokes on a clear canvas)
        drawing = gr.Image(type="pil", image_mode=None, label="Drawing", visible=False)
        mark = gr.Image(type="pil", image_mode=None, label="Mark", visible=False)  # complete's mask of what to redraw
        gr.on([], generate, g_inputs, g_outputs, api_name="generate", **SAMPLER)
        gr.on([], complete, [drawing, *c_inputs, mark, c_guidance], c_outputs, api_name="complete", **SAMPLER)
        gr.on([], inspect_digit, [drawing, picker], i_outputs, api_name="inspect")
        gr.on([], read_digit, [drawing, picker], posterior, api_name="read_digit")

        demo.load(None, js=page.BRUSH_ON)  # the sketchpads open with their brush selected: no extra click
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
