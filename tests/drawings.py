"""Drawings as the app's sketchpad hands them over, for the drawing and app tests."""

import numpy as np
from PIL import Image, ImageDraw


def seven(size: int = 400, width: int = 40, ink=(0, 0, 0, 255), paper=(255, 255, 255, 255)) -> Image.Image:
    """A '7' drawn with a thick pen, as on the sketchpad."""
    im = Image.new("RGBA", (size, size), paper)
    d = ImageDraw.Draw(im)
    s = size / 400
    d.line([(110 * s, 90 * s), (290 * s, 90 * s), (170 * s, 330 * s)], fill=ink, width=max(1, round(width * s)))
    return im


def sketch(composite: Image.Image | None) -> dict:
    """What gr.Sketchpad hands over: a white background, the strokes, and what the visitor sees."""
    white = np.full((400, 400, 4), 255, np.uint8)
    if composite is None:
        return {"background": white, "layers": [], "composite": None}
    return {"background": white, "layers": [np.asarray(composite)], "composite": np.asarray(composite)}
