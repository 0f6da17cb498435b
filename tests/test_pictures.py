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
    out = tile(digits, cut=2, scale=3)
    side = PAD + 3 * (4 * 3 + PAD)
    assert out.shape == (2 * (4 * 3 + PAD) + PAD, side, 3)  # two rows hold the five
    assert (out[:PAD] == BORDER).all() and (out[PAD, PAD] == 255).all() and (out[PAD, PAD + 3] == 0).all()
    assert (out[PAD + 2 * 3 - 1:PAD + 2 * 3 + 1, PAD + 3:PAD + 12] == CUT).all()  # under the 2nd row, 2 pixels high
    view = kept_view(np.ones((28, 28)), rows=14, scale=10)
    assert (view[PAD + 5, PAD + 5] == 255).all() and (view[PAD + 200, PAD + 5] == 85).all()  # redrawn rows dimmed


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
