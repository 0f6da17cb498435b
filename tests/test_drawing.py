"""pixelcnn.from_drawing: from a sketch or an uploaded picture to the 28x28 digit the model sees."""

import tracemalloc

import numpy as np
import pytest
from PIL import Image, ImageDraw

import pixelcnn
from pixelcnn import DrawingError, from_drawing
from pixelcnn.drawing import EMPTY, MAX_SIDE, THIN, shrink, to_rgba


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


def test_a_sketch_becomes_an_mnist_digit():
    digit = from_drawing(sketch(seven()))
    assert digit.shape == (28, 28) and digit.dtype == np.float32 and set(np.unique(digit)) == {0.0, 1.0}
    rows, cols = np.nonzero(digit)
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 in (19, 20, 21)  # scaled into 20x20
    cy, cx = (np.indices(digit.shape) * digit).sum(axis=(1, 2)) / digit.sum()
    assert abs(cy - 13.5) <= 1 and abs(cx - 13.5) <= 1  # centred by mass
    assert digit[:14].sum() > digit[14:].sum()  # a 7: the bar is on top
    as_pil = {"background": Image.new("RGBA", (400, 400), "white"), "layers": [], "composite": seven()}
    np.testing.assert_array_equal(from_drawing(as_pil), digit)  # the page hands over PIL images


def test_every_polarity_gives_the_same_digit():
    dark_on_light = from_drawing(seven())
    light_on_dark = from_drawing(seven(ink=(255, 255, 255, 255), paper=(0, 0, 0, 255)))
    black_on_clear = from_drawing(seven(ink=(0, 0, 0, 255), paper=(0, 0, 0, 0)))
    white_on_clear = from_drawing(seven(ink=(255, 255, 255, 255), paper=(255, 255, 255, 0)))
    blue_on_grey = from_drawing(seven(ink=(20, 40, 200, 255), paper=(200, 200, 200, 255)))
    for other in (light_on_dark, black_on_clear, white_on_clear):
        np.testing.assert_array_equal(other, dark_on_light)
    assert (blue_on_grey != dark_on_light).mean() < 0.02


def test_a_28x28_digit_is_taken_as_it_is():
    rng = np.random.default_rng(0)
    digit = np.zeros((28, 28), np.uint8)
    digit[6:22, 10:16] = 255
    digit[rng.random((28, 28)) < 0.05] = 255
    for image in (digit, digit > 0, digit / 255.0, Image.fromarray(digit), Image.fromarray(255 - digit).convert("RGB")):
        np.testing.assert_array_equal(from_drawing(image), digit > 127)


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F"])
@pytest.mark.parametrize("size", [(5, 7), (120, 80), (2000, 1300)])
def test_uploads_of_any_size_and_mode(mode, size):
    w, h = size
    gray = np.asarray(seven(max(w, h), width=60).convert("L").resize((w, h)))  # dark ink on white
    if mode == "I;16":
        image = Image.fromarray(gray.astype(np.uint16) * 257)
    elif mode == "I":
        image = Image.fromarray(gray.astype(np.int32) * 257)
    elif mode == "F":
        image = Image.fromarray(gray.astype(np.float32) / 255)
    else:
        image = Image.fromarray(gray).convert(mode)
    assert image.mode == mode
    digit = from_drawing(image)
    assert digit.shape == (28, 28) and 20 < digit.sum() < 300


@pytest.mark.parametrize("kind", ["PIL RGBA", "PIL P", "array"])
def test_a_huge_upload_is_shrunk_before_any_other_work(kind):
    """A 6000x6000 picture: nothing bigger than MAX_SIDE a side is ever made into an array.

    Unshrunk, its pixels alone would take 144 MB as an RGBA array, 576 MB as float32; tracemalloc
    sees every numpy allocation.
    """
    big = seven(6000)
    image = big.convert("P") if kind == "PIL P" else np.asarray(big) if kind == "array" else big
    tracemalloc.start()
    try:
        digit = from_drawing(image)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100 * 2**20, f"{peak / 2**20:.0f} MiB"
    assert digit[:14].sum() > digit[14:].sum() > 0  # still the 7
    assert max(shrink(big).size) <= MAX_SIDE and to_rgba(np.asarray(big)).shape == (1000, 1000, 4)


def test_shrinking_keeps_what_each_mode_means():
    for image in (seven(3000).convert("P"), seven(3000).convert("1"), seven(3000).convert("LA")):
        small = shrink(image)
        assert small.mode == "RGBA" and max(small.size) <= MAX_SIDE
        lum = np.asarray(small.convert("L"))
        assert lum.min() < 64 and np.median(lum) > 250  # the ink stays dark, the paper white
    sixteen = Image.fromarray(np.full((3000, 2000), 40000, np.uint16))
    assert shrink(sixteen).mode == "I" and np.asarray(shrink(sixteen)).max() == 40000


@pytest.mark.parametrize("image, message", [
    (None, EMPTY),
    (sketch(None), EMPTY),
    (sketch(seven(ink=(255, 255, 255, 0))), EMPTY),  # nothing drawn
    (sketch(Image.new("RGBA", (400, 400), (0, 0, 0, 255))), "almost all ink"),  # painted over
    (np.zeros((64, 64, 3), np.uint8), EMPTY),
    (np.full((10, 10), 255, np.uint8), EMPTY),
    (seven(400, width=1), THIN),
    (np.zeros((4, 4, 5)), "Cannot read"),
    (np.zeros((0, 3)), "Cannot read"),
    (np.array("not an image"), "Cannot read"),
])
def test_unusable_drawings_say_why(image, message):
    with pytest.raises(DrawingError, match=message.split(":")[0]):
        from_drawing(image)


def test_the_package_exports_it():
    assert pixelcnn.from_drawing is from_drawing and issubclass(pixelcnn.DrawingError, ValueError)
