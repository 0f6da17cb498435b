"""pixelcnn.plotting's coloured pictures and animated GIFs, as the app streams and exports them."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

import pixelcnn
from pixelcnn.plotting import (BORDER, COLORMAP, CURSOR, CUT, NOT_YET, PAD, beside, binary_rgb, colorize, gif,
                               kept_view, mark_progress, tile)


def test_colorize_maps_zero_to_one_onto_viridis_and_nan_to_not_yet():
    rgb = colorize(np.array([0.0, 0.5, 1.0, 2.0, np.nan]))
    np.testing.assert_array_equal(rgb, [COLORMAP[0], COLORMAP[128], COLORMAP[255], COLORMAP[255], NOT_YET])
    np.testing.assert_array_equal(colorize(np.array([2.3]), vmax=4.6), [COLORMAP[128]])


def test_mark_progress_greys_out_what_is_not_drawn_and_shows_the_next_pixel():
    rgb = mark_progress(binary_rgb(np.ones((2, 3, 3))), 4)  # 4 pixels drawn in raster order
    flat = rgb.reshape(2, 9, 3)
    assert (flat[:, :4] == 255).all() and (flat[:, 4] == CURSOR).all() and (flat[:, 5:] == NOT_YET).all()
    assert (mark_progress(binary_rgb(np.zeros((1, 3, 3))), 9) == 0).all()  # all drawn: no cursor


def test_tile_upscales_into_a_grid_with_a_cut_line():
    digits = binary_rgb(np.eye(4)[None].repeat(5, axis=0))  # 5 pictures of 4x4: a 3x3 grid
    top = np.zeros((4, 4), bool)
    top[:2] = True  # the top 2 rows kept
    out = tile(digits, kept=top, scale=3)
    side = PAD + 3 * (4 * 3 + PAD)
    assert out.shape == (2 * (4 * 3 + PAD) + PAD, side, 3)  # two rows hold the five
    assert (out[:PAD] == BORDER).all() and (out[PAD, PAD] == 255).all() and (out[PAD, PAD + 3] == 0).all()
    assert (out[PAD + 2 * 3 - 1:PAD + 2 * 3 + 1, PAD:PAD + 12] == CUT).all()  # under the 2nd row, 2 pixels high
    lines = (out[PAD:PAD + 12, PAD:PAD + 12] == CUT).all(axis=2)
    assert lines.sum() == 2 * 12  # that line only
    np.testing.assert_array_equal(tile(digits, scale=3), tile(digits, kept=np.ones((4, 4), bool), scale=3))
    view = kept_view(np.ones((28, 28)), np.arange(28)[:, None].repeat(28, 1) < 14, scale=10)
    assert (view[PAD + 5, PAD + 5] == 255).all() and (view[PAD + 200, PAD + 5] == 85).all()  # redrawn rows dimmed


def test_a_kept_region_is_outlined_all_round_and_the_rest_dimmed():
    """A hole: a closed orange outline on the pixel edges around it, corners included; inside dimmed."""
    kept = np.ones((6, 6), bool)
    kept[2:4, 1:5] = False  # a 2x4 hole
    view = kept_view(np.ones((6, 6)), kept, scale=4)[PAD:PAD + 24, PAD:PAD + 24]
    line = (view == CUT).all(axis=2)
    cells = view[2::4, 2::4, 0]  # each pixel's centre: white kept, dimmed hole
    np.testing.assert_array_equal(cells, np.where(kept, 255, 85))
    ring = np.zeros((24, 24), bool)
    ring[7:9, 3:21] = ring[15:17, 3:21] = True  # above and below the hole (rows 2-3 start at 8, end at 16)
    ring[7:17, 3:5] = ring[7:17, 19:21] = True  # left and right of it (columns 1-4: 4 to 20)
    np.testing.assert_array_equal(line, ring)


def test_mark_progress_follows_the_drawing_order_and_never_greys_kept_pixels():
    order = np.array([[-1, -1, -1], [3, 4, 5], [-1, 7, 8]])  # kept pixels are -1: the top row, bottom left
    rgb = mark_progress(binary_rgb(np.ones((1, 3, 3))), 4, order)[0]
    assert (rgb[0] == 255).all() and (rgb[2, 0] == 255).all() and (rgb[1, 0] == 255).all()  # kept, and drawn
    assert (rgb[1, 1] == CURSOR).all()  # the next pixel to draw
    assert (rgb[1, 2] == NOT_YET).all() and (rgb[2, 1:] == NOT_YET).all()
    bottom_first = np.arange(9).reshape(3, 3)[::-1]  # the bottom row first
    rgb = mark_progress(binary_rgb(np.ones((1, 3, 3))), 3, bottom_first)[0]
    assert (rgb[2] == 255).all() and (rgb[1, 0] == CURSOR).all() and (rgb[0] == NOT_YET).all()


def test_beside_puts_pictures_side_by_side_on_grey():
    a, b = np.zeros((4, 3, 3), np.uint8), np.full((2, 5, 3), 255, np.uint8)
    out = beside(a, b, gap=2)
    assert out.shape == (4, 10, 3)
    assert (out[:, :3] == 0).all() and (out[:, 3:5] == BORDER).all() and (out[:2, 5:] == 255).all()
    assert (out[2:, 5:] == BORDER).all()


def stream_frames(n: int = 4) -> list[np.ndarray]:
    """The frames of a run as the app makes them: digits beside their probability heatmap."""
    torch.manual_seed(0)
    model = pixelcnn.PixelCNN(pixelcnn.PixelCNNConfig(hidden_channels=8, kernel_size=3, n_layers=1))
    return [beside(tile(mark_progress(binary_rgb(step.images[:, 0].numpy()), step.position)),
                   tile(colorize(step.probs[:, 0].numpy())))
            for step in pixelcnn.sample_stream(model, n, seed=0)]


def read_gif(data: bytes) -> tuple[list[np.ndarray], list[int]]:
    """Every frame of a GIF as RGB, as a viewer shows it, and each frame's duration in ms."""
    im = Image.open(io.BytesIO(data))
    frames, durations = [], []
    for k in range(im.n_frames):
        im.seek(k)
        frames.append(np.asarray(im.convert("RGB")))
        durations.append(im.info["duration"])
    return frames, durations


def test_a_gif_has_every_frame_and_holds_the_last():
    frames = stream_frames()
    data = gif(frames, fps=20, hold=2.0)
    assert data[:6] == b"GIF89a"
    shown, durations = read_gif(data)
    assert len(shown) == len(frames) == 29 and durations == [50] * 28 + [2000]
    for got, want in zip(shown, frames):
        # the picture's own colours exactly, viridis to within 7 of each channel (48 levels of it)
        assert np.abs(got.astype(int) - want).max() <= 7
        exact = (want == NOT_YET).all(axis=2) | (want == CURSOR).all(axis=2) | (want == BORDER).all(axis=2)
        np.testing.assert_array_equal(got[exact], want[exact])
    assert Image.open(io.BytesIO(data)).info.get("loop") == 0  # it loops


@pytest.mark.parametrize("fps, step", [(2, 500), (0, 50), (100, 20)])
def test_a_gif_plays_at_the_pace_of_the_run(fps, step):
    _, durations = read_gif(gif(stream_frames(1)[:3], fps=fps, hold=1.5))
    assert durations == [step, step, 1500]
