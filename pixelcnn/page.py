"""The app's work that is not wiring: what a completion keeps, a run's frames and GIF, the texts, the page's look.

app.py wires these to a page. They take and return arrays and strings, so that they are tested
without one (tests/test_app.py, tests/test_browser.py).

    kept = page.kept_pixels("bottom", 14)   # (28, 28) bool: the bottom 14 rows
    why = page.cannot_complete(digit, kept, "bottom", 14)  # a message, or None
    for digits, heat, status, run in page.frames(steps, kept, digit, "completions", fps=0, heat=False): ...
"""

import contextlib
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np
import torch

from .drawing import SIDE, from_marked_drawing
from .orders import unorient
from .plotting import CURSOR, VIRIDIS, beside, binary_rgb, colorize, gif, mark_progress, tile
from .sampling import SampleStep, label_nats

# What a completion keeps: the sides keep `lines` rows or columns; "marked" redraws the marked region.
KEEPS = {"top": "the top rows", "bottom": "the bottom rows", "left": "the left columns", "right": "the right columns",
         "marked": "redraw what I mark"}
SIDES = {"top": ("top", "rows", "above"), "bottom": ("bottom", "rows", "below"),
         "left": ("left", "columns", "left of"), "right": ("right", "columns", "right of")}
# The order each orientation draws in (pixelcnn.orders), as the status line says it
LINES = {0: "row {k} of 28", 1: "row {k} of 28 from the bottom", 2: "column {k} of 28 from the left",
         3: "column {k} of 28 from the right"}
FEW = 0.1  # below this share of the candidates, the page says why so few counted

NOTHING_KEPT = ("Nothing to complete: the {part} of the digit, {where} the orange line, are blank. "
                "Move the slider to keep more {lines}, or use Generate to draw digits from scratch.")
NOTHING_LEFT = ("Nothing to complete: everything outside the mark is blank (it covers all of the digit's ink). "
                "Mark only the part to redraw, or use Generate to draw digits from scratch.")
NOTHING_MARKED = ("Nothing is marked: paint the part to redraw with the orange marker (the brush's second colour), "
                  "or choose a side to keep.")
EVERYTHING_MARKED = ("Everything is marked: nothing of the drawing would be kept. Mark only the part to redraw, "
                     "or use Generate to draw digits from scratch.")
PROPOSED = (" They were drawn from the kept side by {name}, which reads it first, and weighed by how likely this "
            "model finds them.")
FEW_PROPOSED = " Few did: the two models disagree on most of them. More candidates help."
FEW_COUNTED = (" Few did: each candidate is drawn from the pixels before it alone, and the kept pixels after the "
               "hole then make most of them unlikely, so the weight goes to the few that fit them{repeat}. "
               "More candidates help{orientations}.")


# --- the page's checks --------------------------------------------------------------------------

class InputError(ValueError):
    """What a visitor gave cannot be used; the message is shown in the page."""


def whole(name: str, value, lo: int, hi: int) -> int:
    """value as an int, or an InputError that says what was expected."""
    try:
        ok = value == int(value) and lo <= value <= hi
    except (TypeError, ValueError, OverflowError):  # None, NaN, infinity, text
        ok = False
    if not ok:
        raise InputError(f"The {name} must be a whole number from {lo} to {hi}, got {value}.")
    return int(value)


# --- what a completion keeps -----------------------------------------------------------------------

def kept_pixels(keep: str, lines: int, marked: np.ndarray | None = None) -> np.ndarray:
    """(28, 28) bool, True where a completion keeps the drawing's pixel.

    Args:
        keep: one of KEEPS: a side, whose `lines` rows or columns are kept, or "marked".
        marked: for "marked", (28, 28) bool, True where the visitor marked the drawing to redraw.
    """
    kept = np.zeros((SIDE, SIDE), bool)
    if keep == "top":
        kept[:lines] = True
    elif keep == "bottom":
        kept[SIDE - lines:] = True
    elif keep == "left":
        kept[:, :lines] = True
    elif keep == "right":
        kept[:, SIDE - lines:] = True
    elif keep == "marked":
        kept = ~np.asarray(marked, bool)
    else:
        raise ValueError(f"keep must be one of {', '.join(KEEPS)}, got {keep!r}")
    return kept


def read_completion(drawing, keep, lines, mark=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A drawing and the page's choice of what to keep -> (the digit, the pixels kept, the marked region), (28, 28).

    Raises:
        DrawingError: as from_marked_drawing. InputError: a choice that is not one of KEEPS, lines not in 1..27.
    """
    digit, marked = from_marked_drawing(drawing, mark)
    if keep not in KEEPS:
        raise InputError(f"What to keep must be one of {', '.join(KEEPS)}, got {keep!r}.")
    lines = whole("number of kept rows or columns", lines, 1, SIDE - 1)
    return digit, kept_pixels(keep, lines, marked), marked


def kept_part(keep: str, lines: int, kept: np.ndarray) -> str:
    """What a completion keeps, in words: "the top 14 rows", "the drawing outside its 52 marked pixels"."""
    if keep == "marked":
        return f"the drawing outside its {int((~kept).sum())} marked pixels"
    side, unit, _ = SIDES[keep]
    return f"the {side} {lines} {unit}"


def cannot_complete(digit: np.ndarray, kept: np.ndarray, keep: str, lines: int) -> str | None:
    """Why the drawing cannot be completed so (nothing marked, everything marked, nothing kept), or None."""
    if keep == "marked" and kept.all():
        return NOTHING_MARKED
    if not kept.any():
        return EVERYTHING_MARKED
    if not digit[kept].any():
        if keep == "marked":
            return NOTHING_LEFT
        side, unit, where = SIDES[keep]
        return NOTHING_KEPT.format(part=f"{side} {lines} {unit}", where=where, lines=unit)
    return None


def preview_text(keep: str, lines: int, kept: np.ndarray, marked: np.ndarray) -> str:
    """What the preview says the model will do with the drawing."""
    if keep == "marked":
        return f"The model redraws the {int((~kept).sum())} marked pixels (dimmed) and keeps the rest."
    text = f"The model keeps {kept_part(keep, lines, kept)} and redraws the rest."
    if marked.any():
        text += " The orange mark is not used: choose “redraw what I mark” to redraw the marked part."
    return text


# --- a run: its frames as they stream, and its GIF ------------------------------------------------

def drawing_order(orientation: int, kept: np.ndarray | None = None) -> np.ndarray:
    """(28, 28) ints: each pixel's place in the order the model draws in (pixelcnn.orders), -1 where kept."""
    rank = unorient(torch.arange(SIDE * SIDE).reshape(1, 1, SIDE, SIDE), orientation)[0, 0].numpy()
    return rank if kept is None else np.where(kept, -1, rank)


def digits_picture(step, order: np.ndarray, given: np.ndarray | None = None) -> np.ndarray:
    """A frame's digits: the kept pixels as given and outlined, those not drawn yet grey, the next one red.

    Args:
        step: a pixelcnn.SampleStep.
        order: drawing_order's; its kept pixels (-1) show `given`, (28, 28) in {0, 1}, in every frame
            (while resampling, the known pixels after the position are not in step.images yet).
    """
    kept = order < 0
    images = step.images[:, 0].numpy()  # (n, 28, 28)
    if given is not None:
        images = np.where(kept, given, images)
    return tile(mark_progress(binary_rgb(images), step.position, order), kept=kept)


def heat_picture(step, order: np.ndarray) -> np.ndarray:
    """A frame's heatmap: the probability with which each pixel drawn so far got its value, the kept ones outlined."""
    return tile(colorize(step.probs[:, 0].numpy()), kept=order < 0)


def progress(position: int, orientation: int, candidates: int | None = None) -> str:
    """The status line while drawing: which row or column, in the model's order."""
    line = LINES[orientation].format(k=position // SIDE + 1)
    text = f"Drawing {line} (pixel {position:,} of {SIDE * SIDE:,})"
    return text if candidates is None else f"{text} in each of {candidates} candidates"


def resampling(ess: float, candidates: int, n: int, keep: str, n_orientations: int, renewed: int = 0,
               exact: str | None = None, drawn_by: str | None = None) -> str:
    """What the status says where completion resampled: how many candidates counted, and why few did.

    Args:
        ess: the effective sample size of the final weights, (sum w)^2 / sum w^2: from 1 (one
            candidate took all the weight) to candidates (all weighed alike).
        renewed: how many times, on the way, the unlikely candidates were replaced by copies of
            likely ones (pixelcnn.complete's sequential resampling: SampleStep.resamplings).
        exact: the name of a model on the page that reads in four orientations, to suggest by name.
        drawn_by: the name of the model that drew the candidates from the kept side, the model
            asked for only weighing them (complete's proposal).
    """
    text = f" **{ess:.1f} of the {candidates} candidates counted** (the effective sample size of their weights)."
    if drawn_by:
        return text + PROPOSED.format(name=drawn_by) + (FEW_PROPOSED if ess < max(FEW * candidates, n) else "")
    if renewed:
        text = text[:-2] + (f"; on the way, the unlikely ones were replaced by copies of likely ones "
                            f"{renewed} time{'s' * (renewed > 1)}).")
    if ess < max(FEW * candidates, n):
        sides = keep in ("bottom", "left", "right") and n_orientations == 1
        which = f"{exact} (in the model picker)" if exact else "a model trained on four orientations"
        text += FEW_COUNTED.format(repeat=", and completions repeat" if ess < n else "",
                                   orientations=f", as does {which}, which completes from the kept side exactly"
                                   if sides else "")
    return text


def paced(frames: Iterator, fps: float) -> Iterator:
    """Pass frames on no faster than fps a second (0: as they come), at a pace a person can follow."""
    next_at = time.perf_counter()
    for frame in frames:
        if fps > 0:
            time.sleep(max(0.0, next_at - time.perf_counter()))
            next_at = max(next_at, time.perf_counter()) + 1 / fps
        yield frame


class Run(NamedTuple):
    """What a finished run leaves for its GIF: every frame it streamed, and how they are drawn."""

    steps: list[SampleStep]
    order: np.ndarray  # drawing_order's: when each pixel was drawn, -1 where kept
    given: np.ndarray | None  # (28, 28): the kept pixels' values
    fps: float
    name: str  # the GIF's name


def frames(steps: Iterator[SampleStep], known: np.ndarray | None, given: np.ndarray | None, name: str, fps: float,
           heat: bool, candidates: int | None = None) -> Iterator[tuple]:
    """A run's pictures as its frames come: (digits, heatmap if asked for, status, None), the last with its Run.

    Args:
        steps: sample_stream's or complete_stream's frames, paced as they are to be shown.
        known, given: (28, 28) the pixels a completion keeps and their values; None for generation.
        fps: the pace, for the GIF.
        candidates: how many completions are drawn to resample from, where the completion resamples.
    """
    shown, t0, total = [], time.perf_counter(), SIDE * SIDE
    for step in steps:
        if not shown:  # the model's order is known from the first frame on
            order = drawing_order(step.orientation, known)
            candidates = candidates if step.ess is not None else None
        shown.append(step)
        pictures = digits_picture(step, order, given), heat_picture(step, order) if heat else None
        if step.position < total:
            yield *pictures, progress(step.position, step.orientation, candidates), None
    each = f" in each of {candidates} candidates" if candidates else ""
    status = f"Drew {int((order >= 0).sum()):,} pixels{each} in {time.perf_counter() - t0:.1f} s."
    yield *pictures, status, Run(shown, order, given, fps, name)


def save_gif(run: Run, folder: Path) -> str:
    """A run as an animated GIF in folder, the digits beside their heatmap, a frame per streamed frame; its path.

    GIFs in folder older than an hour are removed.
    """
    folder.mkdir(exist_ok=True)
    for old in folder.glob("*.gif"):
        with contextlib.suppress(OSError):  # another process may remove it first
            if old.stat().st_mtime < time.time() - 3600:
                old.unlink()
    pictures = [beside(digits_picture(step, run.order, run.given), heat_picture(step, run.order)) for step in run.steps]
    fd, path = tempfile.mkstemp(dir=folder, prefix=f"{run.name}-", suffix=".gif")
    with os.fdopen(fd, "wb") as f:
        f.write(gif(pictures, fps=run.fps or 20))
    return path


# --- Inspect -----------------------------------------------------------------------------------

def digit_posterior(model, x: torch.Tensor) -> np.ndarray:
    """p(label | x) of a labelled model, from its own likelihoods: (n_labels,) probabilities.

    p(label | x) ∝ p(x | label) p(label), the labels equally likely: one forward pass for
    all the labels (pixelcnn.label_nats), log p(x | label) summed over the pixels, then a softmax.

    Args:
        x: (1, 1, 28, 28) in {0, 1}.
    """
    log_px = -label_nats(model, x)[0]  # (n_labels,)
    return torch.softmax(log_px.double(), dim=0).numpy()


def surprise_text(nats: float, smap: np.ndarray, labelled: bool, reference: float | None) -> str:
    """Inspect's text: the digit's nats and bits per pixel, its most surprising pixel, the model's own average.

    Args:
        smap: (28, 28) each pixel's surprise in nats.
        reference: the model's bits per pixel on MNIST's test digits, measured the same way, if known.
    """
    bpp = nats / math.log(2) / smap.size
    r, c = np.unravel_index(smap.argmax(), smap.shape)
    text = (f"**{nats:.1f} nats** for the whole digit, **{bpp:.3f} bits per pixel**"
            + (", p(drawing) averaged over the ten digits" if labelled else "")
            + f": the model gives it probability e<sup>-{nats:.1f}</sup> ≈ 10<sup>-{nats / math.log(10):.1f}</sup>. "
            f"The most surprising pixel is row {r + 1}, column {c + 1} ({smap[r, c]:.1f} nats).")
    if reference is not None:
        text += (f" On MNIST's test digits the model averages {reference:.3f} bits per pixel, measured the same "
                 "way: lower is more likely.")
    return text


def field_picture(parts: dict[str, np.ndarray], row: int, col: int, scale: int) -> np.ndarray:
    """The receptive field of pixel (row, col), from 0: each part (receptive.field_parts') in its FIELD colour."""
    rgb = np.zeros((SIDE, SIDE, 3), np.uint8)
    for part, color in FIELD.items():
        rgb[parts[part]] = color
    rgb[row, col] = CURSOR
    return tile(rgb[None], scale=scale)


def field_text(parts: dict[str, np.ndarray], row: int, col: int) -> str:
    """What the receptive field picture shows, counted: pixel (row, col) from 0, parts as receptive.field_parts'."""
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
    return text


# --- the page's look: its colours' legends, its style, its script ---------------------------------

# the receptive field: the pixel itself (CURSOR), and each earlier or later pixel
FIELD = {"seen": (33, 145, 140), "blind spot": (255, 150, 0), "beyond reach": (60, 60, 72), "later": (175, 175, 175)}
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
    // The marker paints on a layer of its own, over the digit's (a stroke replaces what is under it in its
    // layer): picking a colour picks its layer, the ink's first, the marker's second, then closes the colours
    // as a click beside them would (left open, the next strokes on the new layer keep only the last).
    document.addEventListener('click', event => {
        const swatch = event.target.closest('.marker menu.swatch button.color');
        if (!swatch) return;
        const pad = swatch.closest('.marker');
        const layer = `layer-${[...swatch.parentElement.children].indexOf(swatch) + 1}`;
        const close = () => setTimeout(() => document.body.dispatchEvent(new MouseEvent('mousedown', {bubbles: true})));
        const choose = () => { pad.querySelector(`button[aria-label="${layer}"]`)?.click(); close(); };
        setTimeout(() => {
            if (pad.querySelector(`button[aria-label="${layer}"]`)) return choose();
            pad.querySelector('button.layer-title-button')?.click();  // the list of layers opens first
            setTimeout(choose, 50);
        });
    }, true);
}"""


def legend(lo: str, hi: str) -> str:
    """HTML: the viridis colour bar of the heatmaps, from lo to hi."""
    stops = ",".join(f"rgb{tuple(int(v) for v in c)}" for c in VIRIDIS)
    return (f"<div style='display:flex;gap:.5em;align-items:center;font-size:.85em'>{lo}<div style='flex:1;"
            f"height:.8em;background:linear-gradient(to right,{stops})'></div>{hi}</div>")
