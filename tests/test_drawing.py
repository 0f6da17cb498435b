"""pixelcnn.from_drawing: from a sketch or an uploaded picture to the 28x28 digit the model sees."""

import tracemalloc

import numpy as np
import pytest
from PIL import Image, ImageDraw

import pixelcnn
from pixelcnn import DrawingError, from_drawing
from pixelcnn.drawing import EMPTY, MARK, MARK_OPACITY, MAX_SIDE, THIN, frame_of, from_marked_drawing, shrink, to_rgba
from drawings import seven, sketch


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


# --- a region marked to redraw -----------------------------------------------------------------

def marked(image: Image.Image, box, opacity: float = MARK_OPACITY) -> Image.Image:
    """The picture with the marker painted over a rectangle, as the sketchpad's translucent brush paints it."""
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    ImageDraw.Draw(layer).rectangle(box, fill=(*MARK, round(255 * opacity)))
    return Image.alpha_composite(image, layer)


def frame_box(frame, top: int, left: int, bottom: int, right: int) -> tuple[float, float, float, float]:
    """The picture's rectangle (x0, y0, x1, y1, inclusive) under frame pixels top..bottom-1, left..right-1."""
    t, l, k = frame
    return (l + left * k, t + top * k, l + right * k - 1, t + bottom * k - 1)


def test_a_marked_region_lands_on_the_pixels_it_covers():
    """The marker over the picture's square under frame pixels 7..20 marks exactly the central 14x14 hole,
    and the ink under it still counts: the digit is the one drawn, wherever the frame lies."""
    for image in (seven(), seven(1000, width=90), seven(250, width=25)):
        digit, frame = from_drawing(image), frame_of(image)
        hole = np.zeros((28, 28), bool)
        hole[7:21, 7:21] = True
        got, region = from_marked_drawing(marked(image, frame_box(frame, 7, 7, 21, 21)))
        np.testing.assert_array_equal(got, digit)  # the mark moved nothing
        np.testing.assert_array_equal(region, hole)
        # a mark past the digit's 20x20 box, in the frame's margin: its bottom left corner
        _, region = from_marked_drawing(marked(image, frame_box(frame, 22, 0, 28, 6)))
        expected = np.zeros((28, 28), bool)
        expected[22:, :6] = True
        np.testing.assert_array_equal(region, expected)


def test_the_ink_under_the_marker_is_read_back_whatever_the_overlap():
    image = seven()
    digit, frame = from_drawing(image), frame_of(image)
    twice = marked(marked(image, frame_box(frame, 10, 0, 28, 28)), frame_box(frame, 14, 0, 28, 28))  # overlapping
    got, region = from_marked_drawing(twice)
    np.testing.assert_array_equal(got, digit)
    assert region[10:].all() and not region[:10].any()
    assert frame_of(twice) == frame


def test_a_mark_can_be_a_second_picture():
    """A mask, white where to redraw on black (or strokes on a clear picture), the drawing's size or 28x28."""
    image = seven()
    frame = frame_of(image)
    hole = np.zeros((28, 28), bool)
    hole[7:21, 7:21] = True
    white_on_black = Image.new("L", image.size, 0)
    ImageDraw.Draw(white_on_black).rectangle(frame_box(frame, 7, 7, 21, 21), fill=255)
    clear = Image.new("RGBA", image.size, (0, 0, 0, 0))
    ImageDraw.Draw(clear).rectangle(frame_box(frame, 7, 7, 21, 21), fill=(0, 128, 255, 255))
    for mark in (white_on_black, clear, hole, hole.astype(np.uint8) * 255):
        got, region = from_marked_drawing(image, mark)
        np.testing.assert_array_equal(got, from_drawing(image))
        np.testing.assert_array_equal(region, hole)
    with pytest.raises(DrawingError, match=r"size \(400x400\) or 28x28, got 300x200"):
        from_marked_drawing(image, Image.new("L", (300, 200)))


def test_only_the_markers_colour_is_a_mark():
    """A red or orange pen is ink, not a mark; a pixel of the marker over a clear canvas leaves nothing under it."""
    for pen in ((220, 30, 30, 255), (255, 140, 40, 255), (20, 40, 200, 255)):
        image = seven(ink=pen)
        digit, region = from_marked_drawing(image)
        np.testing.assert_array_equal(digit, from_drawing(image))
        assert not region.any()
    on_clear = seven(paper=(0, 0, 0, 0))
    layer = Image.new("RGBA", on_clear.size, (0, 0, 0, 0))
    ImageDraw.Draw(layer).rectangle((0, 200, 399, 399), fill=(*MARK, round(255 * MARK_OPACITY)))
    digit, region = from_marked_drawing(Image.alpha_composite(on_clear, layer))
    np.testing.assert_array_equal(digit, from_drawing(on_clear))
    assert region[20:].all()
    with pytest.raises(DrawingError, match="empty"):  # the marker alone is no drawing
        from_marked_drawing(marked(Image.new("RGBA", (400, 400), "white"), (100, 100, 300, 300)))
