"""app.py: its functions called directly, then a launched app driven with gradio_client.

Tiny models keep it fast; the weights' values do not matter to what is tested here.
"""

import io
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

import app  # noqa: E402
import pixelcnn  # noqa: E402
from pixelcnn import page  # noqa: E402
from pixelcnn.drawing import EMPTY, MARK, MARK_OPACITY, frame_of  # noqa: E402
from pixelcnn.plotting import CURSOR, CUT, NOT_YET  # noqa: E402
from drawings import seven, sketch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WARN = "⚠️"
TINY = pixelcnn.PixelCNNConfig(hidden_channels=8, kernel_size=3, n_layers=1)
TINY_GATED = pixelcnn.GatedPixelCNNConfig(hidden_channels=4, n_layers=2)  # labelled: n_labels=10
RECIPE_SHAPE = pixelcnn.PixelCNNConfig(hidden_channels=8)  # the recipe's 7x7 masks and depth: its blind spot


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A weights folder: tiny (the recipe's model type), tiny-gated (labelled), recipe-shape."""
    folder = tmp_path_factory.mktemp("weights")
    for name, model_type, config in [("tiny", pixelcnn.PixelCNN, TINY), ("tiny-gated", pixelcnn.GatedPixelCNN, TINY_GATED),
                                     ("recipe-shape", pixelcnn.PixelCNN, RECIPE_SHAPE)]:
        torch.manual_seed(0)
        model = model_type(config)
        for layer in getattr(model, "layers", []):  # labels that change what is drawn, as a trained model's do
            if getattr(layer, "label", None) is not None:
                torch.nn.init.normal_(layer.label.weight)
        pixelcnn.save_model(model, folder / name)
    return folder


@pytest.fixture(scope="module")
def model_dir(weights) -> str:
    return str(weights / "tiny")


@pytest.fixture(scope="module")
def gated_dir(weights) -> str:
    return str(weights / "tiny-gated")


@pytest.fixture(autouse=True)
def no_pacing(monkeypatch):
    monkeypatch.setattr(app, "FPS", 0)


def untile(picture: np.ndarray, n: int, scale: int = 0, h: int = 28, rgb: bool = False) -> np.ndarray:
    """The (n, h, h) pixels read back from pixelcnn.plotting.tile()'s picture: the red channel at each pixel's
    centre, or the colour (n, h, h, 3) if rgb."""
    ncol = int(np.ceil(np.sqrt(n)))
    s, pad = scale or max(4, 448 // (ncol * h)), 4
    out = np.zeros((n, h, h, 3), np.uint8)
    centres = np.arange(h) * s + s // 2
    for k in range(n):
        r, c = divmod(k, ncol)
        top, left = pad + r * (h * s + pad), pad + c * (h * s + pad)
        out[k] = picture[top + centres][:, left + centres]
    return out if rgb else out[..., 0]


# --- the drawing the model sees --------------------------------------------------------------

def test_import_starts_no_server():
    assert not app.demo.is_running


@pytest.mark.parametrize("image", [None, sketch(None), sketch(Image.new("RGBA", (400, 400), (0, 0, 0, 255))),
                                   seven(400, width=1), np.zeros((4, 4, 5))])
def test_unusable_drawings_say_why(image, model_dir):
    """tests/test_drawing.py tests the messages; here every tab shows them instead of failing."""
    with pytest.raises(pixelcnn.DrawingError) as error:
        pixelcnn.from_drawing(image)
    kept = {"run": "the run before"}
    for frame in app.complete(image, "top", 14, 2, 0, False, 1.0, model_dir, kept=kept):
        assert frame[3] == f"{WARN} {error.value}" and frame[1] is None
    assert kept == {} and app.take_home(kept) is None  # no GIF, not even the run before's
    assert app.inspect_digit(image, model_dir)[3] == f"{WARN} {error.value}"
    assert app.read_digit(image, model_dir) == f"{WARN} {error.value}"
    assert app.preview(image, "top", 14)[1] == f"{WARN} {error.value}"


def test_nothing_above_the_cut_says_so(model_dir):
    digit = np.zeros((28, 28), np.uint8)
    digit[16:26, 8:20] = 255  # ink only in the bottom half
    frames = list(app.complete(digit, "top", 14, 2, 0, False, 1.0, model_dir))
    assert len(frames) == 1
    view, completions, _, status = frames[0]
    assert view is not None and completions is None
    assert status.startswith(WARN) and "above the orange line" in status
    assert app.preview(digit, "top", 14)[1].startswith(WARN)
    assert not app.preview(digit, "top", 20)[1].startswith(WARN)


# --- generate, complete, inspect -------------------------------------------------------------

def test_generate_streams_a_frame_per_row(model_dir):
    frames = list(app.generate(3, 7, False, 1.0, model_dir))
    assert len(frames) == 1 + 28  # the empty start, then a frame per row
    assert "row 1 of 28" in frames[0][3] and "Drew 784 pixels" in frames[-1][3]
    assert all(frame[2] == 7 for frame in frames)
    digits, heat = frames[-1][:2]
    assert digits.shape == heat.shape and digits.dtype == np.uint8 and digits.shape[2] == 3
    assert set(np.unique(untile(digits, 3))) <= {0, 255}  # finished: only black and white pixels
    assert not (heat == NOT_YET).all(axis=2).any()  # every pixel has its probability
    middle = untile(frames[14][0], 3)  # 14 rows drawn
    assert (middle[:, 14, 0] == CURSOR[0]).all()  # the next pixel is shown in red
    assert (middle[:, 14:].reshape(3, -1)[:, 1:] == NOT_YET[0]).all()  # the rest is greyed out
    assert set(np.unique(middle[:, :14])) <= {0, 255}
    np.testing.assert_array_equal(list(app.generate(3, 7, False, 1.0, model_dir))[-1][0], digits)


def test_generate_random_seed_reports_the_seed(model_dir):
    *_, (digits, _, seed, status) = app.generate(1, 0, True, 1.0, model_dir)
    assert isinstance(seed, int) and f"seed {seed}" in status
    *_, (_, _, seed_of_empty_box, _) = app.generate(1, None, False, 1.0, model_dir)
    assert isinstance(seed_of_empty_box, int)
    np.testing.assert_array_equal(list(app.generate(1, seed, False, 1.0, model_dir))[-1][0], digits)


@pytest.mark.parametrize("n, seed, temperature, pace", [(0, 0, 1.0, "normal"), (17, 0, 1.0, "normal"),
                                                        (2.5, 0, 1.0, "normal"), (1, -1, 1.0, "normal"),
                                                        (1, 0.5, 1.0, "normal"), (1, 0, -1.0, "normal"),
                                                        (1e30, 0, 1.0, "normal"), (1, 1e30, 1.0, "normal"),
                                                        (1, 2**64, 1.0, "normal"), (1, 0, 1.0, "warp")])
def test_generate_bad_controls_say_why(n, seed, temperature, pace, model_dir):
    frames = list(app.generate(n, seed, False, temperature, model_dir, app.ANY, pace))
    assert len(frames) == 1 and frames[0][3].startswith(WARN) and frames[0][0] is None
    assert frames[0][2] == gr.skip()  # the seed box keeps what was typed: nothing huge is sent back


def test_completions_keep_the_kept_rows_exactly(model_dir):
    drawing = app.EXAMPLES[0]
    digit = pixelcnn.from_drawing(Image.open(drawing))
    for rows in (9, 14):
        frames = list(app.complete(Image.open(drawing), "top", rows, 4, 3, False, 1.0, model_dir))
        assert len(frames) == 1 + 28 - rows
        view, completions, seed, status = frames[-1]
        assert seed == 3 and "Drew" in status and f"top {rows} rows" in status
        got = untile(completions, 4)
        assert (got[:, :rows] == digit[:rows] * 255).all()
        assert set(np.unique(got)) <= {0, 255}
        assert (view == CUT).all(axis=2)[4 + rows * 10, 4:-4].all()  # the cut line under the kept rows


def test_inspect_reports_the_models_surprise(model_dir):
    drawing = Image.open(app.EXAMPLES[0])
    view, p_map, s_map, text = app.inspect_digit(drawing, model_dir)
    assert "reads the drawing" not in text and "averaged over the ten digits" not in text  # no labels
    assert app.read_digit(drawing, model_dir) == f"{WARN} {app.NO_READING.format(name=model_dir)}"
    assert view.shape == p_map.shape == s_map.shape
    x = torch.from_numpy(pixelcnn.from_drawing(drawing))[None, None]
    s = pixelcnn.surprise(app.get_model(model_dir), x)
    assert f"{float(s.nats[0]):.1f} nats" in text and f"{float(s.bits_per_pixel[0]):.3f} bits per pixel" in text
    np.testing.assert_array_equal(untile(view, 1, scale=10)[0], x[0, 0].numpy() * 255)
    assert "On MNIST's test digits" not in text  # a folder without metrics.json: no reference figure


def test_inspect_compares_like_with_like(weights, tmp_path):
    """The page's figure and the reference it prints are the same kind: for a labelled model both are
    -log p(x) with p(x) the mean of p(x | label) over the labels, not the label-dropped test loss."""
    import json
    import math
    import shutil

    drawing = Image.open(app.EXAMPLES[0])
    x = torch.from_numpy(pixelcnn.from_drawing(drawing))[None, None]
    for name, labelled in (("tiny", False), ("tiny-gated", True)):
        folder = shutil.copytree(weights / name, tmp_path / name)
        metrics = {"test_loss": 0.0805, "evaluation": {"test_loss": 0.0805, "test_loss_marginal": 0.0763}}
        (folder / "metrics.json").write_text(json.dumps(metrics))
        text = app.inspect_digit(drawing, str(folder))[3]
        model = app.get_model(str(folder))
        nats = float(pixelcnn.marginal_nats(model, x)[0] if labelled else pixelcnn.surprise(model, x).nats[0])
        reference = (0.0763 if labelled else 0.0805) / math.log(2)
        assert f"**{nats:.1f} nats**" in text and f"**{nats / math.log(2) / 784:.3f} bits per pixel**" in text
        assert f"the model averages {reference:.3f} bits per pixel, measured the same way" in text
        assert ("averaged over the ten digits" in text) == labelled
        del metrics["evaluation"]  # a labelled model never evaluated with --evaluate: no figure to compare with
        (folder / "metrics.json").write_text(json.dumps(metrics))
        assert ("On MNIST's test digits" in app.inspect_digit(drawing, str(folder))[3]) != labelled


def test_pacing_holds_frames_per_second(monkeypatch):
    clock = [0.0]  # a clock that only sleeping moves: frames that come at once

    def sleep(seconds):
        clock[0] += seconds

    monkeypatch.setattr(page.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(page.time, "sleep", sleep)
    assert list(app.paced(range(6), fps=20)) == list(range(6))
    assert clock[0] == pytest.approx(0.25)  # 5 intervals of 1/20 s
    assert list(app.paced(range(100), fps=0)) == list(range(100)) and clock[0] == pytest.approx(0.25)


@pytest.mark.parametrize("pace, fps", [("slow", app.SLOW_FPS), ("normal", 12.5), ("fast", 0.0)])
def test_the_pace_control_sets_the_frames_per_second(model_dir, monkeypatch, pace, fps):
    paces = []

    def recorded(frames, fps):
        paces.append(fps)
        return frames

    monkeypatch.setattr(app, "FPS", 12.5)  # PIXELCNN_APP_FPS: the normal pace
    monkeypatch.setattr(app, "paced", recorded)
    assert "Drew" in list(app.generate(1, 0, False, 1.0, model_dir, app.ANY, pace))[-1][3]
    assert "Drew" in list(app.complete(app.EXAMPLES[0], "top", 14, 1, 0, False, 1.0, model_dir, app.ANY, pace))[-1][3]
    assert paces == [fps, fps]
    assert app.SLOW_FPS < 20


def gif_frames(path) -> list[np.ndarray]:
    gif = Image.open(path)
    frames = []
    for k in range(gif.n_frames):
        gif.seek(k)
        frames.append(np.asarray(gif.convert("RGB")))
    return frames


def test_every_run_can_be_taken_home_as_a_gif(model_dir):
    """A finished run is left in the page's gr.State; its GIF has every streamed frame as it was shown,
    the digits beside their heatmap, the last held longer."""
    kept = {}
    frames = []
    for frame in app.generate(4, 3, False, 1.0, model_dir, app.ANY, "fast", kept=kept):
        assert ("run" in kept) == ("Drew" in frame[3])  # left there with the last frame
        frames.append(frame)
    path = app.take_home(kept)
    assert path.endswith(".gif") and Path(path).parent == app.GIF_DIR and "seed3" in Path(path).name
    shown = gif_frames(path)
    assert len(shown) == len(frames) == 29
    width = frames[-1][0].shape[1]
    for got, (digits, heat, *_) in zip(shown, frames):
        np.testing.assert_array_equal(got[:, :width], digits)  # the digits' colours exactly
        assert np.abs(got[:, -width:].astype(int) - heat).max() <= 7  # viridis at 48 levels beside them
    durations = []
    for k in range(29):
        gif = Image.open(path)
        gif.seek(k)
        durations.append(gif.info["duration"])
    assert durations == [50] * 28 + [2000]  # "fast" plays at 20 frames a second
    assert kept == {} and app.take_home(kept) is None  # taken: the next GIF is of the next run
    completions = list(app.complete(app.EXAMPLES[0], "top", 14, 2, 0, False, 1.0, model_dir, app.ANY, "slow",
                                    kept=kept))
    path = app.take_home(kept)
    shown = gif_frames(path)
    assert len(shown) == len(completions) == 15
    for got, (_, images, *_) in zip(shown, completions):
        np.testing.assert_array_equal(got[:, :images.shape[1]], images)
    assert Image.open(path).info["duration"] == 1000 / app.SLOW_FPS


# --- what a completion keeps: a side, or all but a marked part ----------------------------------

SIDE_OF = {"top": np.s_[:10], "bottom": np.s_[18:], "left": np.s_[:, :10], "right": np.s_[:, 18:]}  # 10 kept


def marked(image: Image.Image, box) -> Image.Image:
    """The picture with the sketchpad's marker painted over a rectangle (x0, y0, x1, y1)."""
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    ImageDraw.Draw(layer).rectangle(box, fill=(*MARK, round(255 * MARK_OPACITY)))
    return Image.alpha_composite(image, layer)


def over_frame(image: Image.Image, top: int, left: int, bottom: int, right: int) -> tuple:
    """The picture's rectangle under the model's frame pixels top..bottom-1, left..right-1."""
    t, l, k = frame_of(image)
    return (l + left * k, t + top * k, l + right * k - 1, t + bottom * k - 1)


def central_hole() -> np.ndarray:
    hole = np.zeros((28, 28), bool)
    hole[7:21, 7:21] = True
    return hole


@pytest.mark.parametrize("keep", ["top", "bottom", "left", "right"])
def test_each_side_keeps_exactly_its_rows_or_columns(model_dir, keep):
    digit = pixelcnn.from_drawing(Image.open(app.EXAMPLES[0]))
    kept = np.zeros((28, 28), bool)
    kept[SIDE_OF[keep]] = True
    np.testing.assert_array_equal(page.kept_pixels(keep, 10), kept)
    frames = list(app.complete(app.EXAMPLES[0], keep, 10, 3, 5, False, 1.0, model_dir, candidates=32))
    view, completions, _, status = frames[-1]
    got = untile(completions, 3)
    assert (got[:, kept] == digit[kept] * 255).all() and set(np.unique(got)) <= {0, 255}
    model = app.get_model(model_dir)  # the library's completions of the mask the page shows, for the same seed
    direct = pixelcnn.complete(model, 3, torch.from_numpy(digit)[None, None], torch.from_numpy(kept), seed=5,
                               candidates=32)
    np.testing.assert_array_equal(got, direct[:, 0].numpy() * 255)
    np.testing.assert_array_equal(untile(view, 1, scale=app.ZOOM)[0], np.where(kept, 255, 85) * digit)  # dimmed
    lines = "rows" if keep in ("top", "bottom") else "columns"
    assert f"3 completions of the {keep} 10 {lines}, seed 5." in status
    # The tiny model draws from the top: exact there, the other sides resampled from candidates
    assert len(frames) == (1 + 18 if keep == "top" else 1 + 28)
    assert ("of the 32 candidates counted" in status) == (keep != "top")


def test_an_orientation_model_draws_from_the_kept_side(tmp_path):
    """With four orientations the bottom rows come first: exact, no candidates, the fill sweeps up."""
    torch.manual_seed(0)
    config = pixelcnn.GatedPixelCNNConfig(hidden_channels=4, n_layers=2, n_labels=0, n_orientations=4)
    folder = str(pixelcnn.save_model(pixelcnn.GatedPixelCNN(config), tmp_path / "oriented"))
    digit = pixelcnn.from_drawing(Image.open(app.EXAMPLES[0]))
    frames = list(app.complete(app.EXAMPLES[0], "bottom", 10, 2, 1, False, 1.0, folder))
    assert len(frames) == 1 + 18 and "candidates" not in frames[-1][3]
    assert frames[0][3].startswith("Drawing row 11 of 28 from the bottom (pixel 280 of 784)")
    middle = untile(frames[4][1], 2)  # the kept 10 rows and 4 more, rows 14 to 27
    assert (middle[:, :13] == NOT_YET[0]).all() and (middle[:, 13, 1:] == NOT_YET[0]).all()
    assert (middle[:, 13, 0] == CURSOR[0]).all() and set(np.unique(middle[:, 14:])) <= {0, 255}
    got = untile(frames[-1][1], 2)
    kept = page.kept_pixels("bottom", 10)
    direct = pixelcnn.complete(app.get_model(folder), 2, torch.from_numpy(digit)[None, None], torch.from_numpy(kept),
                               seed=1)
    np.testing.assert_array_equal(got, direct[:, 0].numpy() * 255)
    assert (got[:, 18:] == digit[18:] * 255).all()


def test_a_side_completion_that_few_candidates_fit_names_the_four_orientation_model(tmp_path, monkeypatch):
    """Where few candidates counted on a side, the page names the model in its picker that completes it exactly
    (here one with other labels, which cannot draw the candidates for it)."""
    torch.manual_seed(0)
    pixelcnn.save_model(pixelcnn.PixelCNN(TINY), tmp_path / "top-first")
    monkeypatch.setattr(app, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setattr(page, "FEW", 1.0)  # every ESS is few: the tiny model's weights may well be even
    status = list(app.complete(app.EXAMPLES[0], "bottom", 10, 2, 1, False, 1.0, "top-first", candidates=16))[-1][3]
    assert "as does a model trained on four orientations" in status  # none on the page
    config = pixelcnn.GatedPixelCNNConfig(hidden_channels=4, n_layers=2, n_labels=10, n_orientations=4)
    pixelcnn.save_model(pixelcnn.GatedPixelCNN(config), tmp_path / "four-ways")
    assert app.reads_four_ways("four-ways") and not app.reads_four_ways("top-first")
    status = list(app.complete(app.EXAMPLES[0], "bottom", 10, 2, 1, False, 1.0, "top-first", candidates=16))[-1][3]
    assert "as does four-ways (in the model picker), which completes from the kept side exactly" in status


@pytest.mark.parametrize("keep", ["bottom", "left", "right", "top", "marked"])
def test_a_four_orientation_model_on_the_page_draws_a_top_first_models_candidates_from_the_kept_side(
        tmp_path, monkeypatch, keep):
    """The bottom rows kept: a model that reads top first weighs candidates that a four-orientation model of the
    page draws from the kept side. The top is its own to complete exactly; the left or right columns, and a
    hole, its own to complete by SIR, the kept pixels among the drawn ones in its order."""
    torch.manual_seed(0)
    pixelcnn.save_model(pixelcnn.GatedPixelCNN(pixelcnn.GatedPixelCNNConfig(hidden_channels=4, n_layers=2)),
                        tmp_path / "top-first")
    config = pixelcnn.GatedPixelCNNConfig(hidden_channels=4, n_layers=2, n_orientations=4)
    pixelcnn.save_model(pixelcnn.GatedPixelCNN(config), tmp_path / "four-ways")
    monkeypatch.setattr(app, "WEIGHTS_DIR", tmp_path)
    mark = np.zeros((28, 28), np.uint8)
    mark[8:20, 8:20] = 255
    frames = list(app.complete(app.EXAMPLES[0], keep, 10, 2, 1, False, 1.0, "top-first", candidates=16,
                               mark=Image.fromarray(mark) if keep == "marked" else None))
    status = frames[-1][3]
    proposed = keep == "bottom"
    assert ("drawn from the kept side by four-ways" in status) == proposed, status
    assert frames[0][3].startswith("Drawing row 11 of 28 from the bottom" if proposed else "Drawing row"), frames[0][3]
    if proposed:
        digit = pixelcnn.from_drawing(Image.open(app.EXAMPLES[0]))
        kept = page.kept_pixels(keep, 10)
        direct = pixelcnn.complete(app.get_model("top-first"), 2, torch.from_numpy(digit)[None, None],
                                   torch.from_numpy(kept), seed=1, candidates=16, proposal=app.get_model("four-ways"))
        np.testing.assert_array_equal(untile(frames[-1][1], 2), direct[:, 0].numpy() * 255)
    assert app.proposal_for(app.get_model("top-first"), "top-first", page.kept_pixels("bottom", 10), 1.0) is None


def test_redraw_what_i_mark_keeps_everything_else(model_dir):
    image = seven()
    hole, digit = central_hole(), pixelcnn.from_drawing(image)
    drawing = sketch(marked(image, over_frame(image, 7, 7, 21, 21)))
    view, status = app.preview(drawing, "marked", 14)
    assert status == "The model redraws the 196 marked pixels (dimmed) and keeps the rest."
    np.testing.assert_array_equal(untile(view, 1, scale=app.ZOOM)[0], np.where(hole, 85, 255) * digit)
    assert "The orange mark is not used" in app.preview(drawing, "top", 14)[1]
    kept = {}
    frames = list(app.complete(drawing, "marked", 14, 4, 2, False, 1.0, model_dir, candidates=32, kept=kept))
    assert len(frames) == 1 + 21  # from the hole's first row on, a frame a row
    assert frames[0][3] == "Drawing row 8 of 28 (pixel 203 of 784) in each of 32 candidates"  # from (7, 7) on
    view, completions, _, status = frames[-1]
    got = untile(completions, 4)
    assert (got[:, ~hole] == digit[~hole] * 255).all()
    x, known = torch.from_numpy(digit)[None, None], torch.from_numpy(~hole)
    last = list(pixelcnn.complete_stream(app.get_model(model_dir), 4, x, known, seed=2, candidates=32))[-1]
    np.testing.assert_array_equal(got, last.images[:, 0].numpy() * 255)
    assert "Drew 196 pixels in each of 32 candidates" in status
    assert "4 completions of the drawing outside its 196 marked pixels, seed 2." in status
    assert f"**{float(last.ess[0]):.1f} of the 32 candidates counted**" in status
    middle = untile(frames[3][1], 4)  # while the hole is drawn, the kept pixels after it are shown as they are
    assert (middle[:, 21:] == digit[21:] * 255).all() and (middle[:, 12:21, 7:21] == NOT_YET[0]).all()
    shown = gif_frames(app.take_home(kept))  # the GIF shows each frame as streamed, the candidates shown then
    assert len(shown) == len(frames)
    for got, (_, images, *_) in zip(shown, frames):
        np.testing.assert_array_equal(got[:, :images.shape[1]], images)


def test_what_cannot_be_completed_says_why(model_dir, tmp_path):
    image = seven()
    top_only = np.zeros((28, 28), np.uint8)
    top_only[2:9, 4:24] = 255  # ink only in the top rows, on the left and the right
    left_only = top_only.T.copy()  # ink only in the left columns
    everything = np.full((28, 28), 255, np.uint8)  # a 28x28 mask: white where to redraw
    cases = [
        (sketch(image), "marked", None, page.NOTHING_MARKED),
        (sketch(marked(image, (0, 0, 399, 399))), "marked", None, page.NOTHING_LEFT),  # all of its ink marked
        (Image.open(app.EXAMPLES[0]), "marked", everything, page.EVERYTHING_MARKED),
        (top_only, "bottom", None, page.NOTHING_KEPT.format(part="bottom 10 rows", where="below", lines="rows")),
        (left_only, "right", None, page.NOTHING_KEPT.format(part="right 10 columns", where="right of",
                                                             lines="columns")),
    ]
    for drawing, keep, mark, message in cases:
        frames = list(app.complete(drawing, keep, 10, 2, 0, False, 1.0, model_dir, mark=mark))
        assert len(frames) == 1 and frames[0][3] == f"{WARN} {message}", frames[0][3]
        assert frames[0][0] is not None and frames[0][1] is None  # the model's view shows why
        if mark is None:
            assert app.preview(drawing, keep, 10)[1] == f"{WARN} {message}"
    assert "the right 10 columns of the digit, right of the orange line, are blank" in cases[-1][3]
    status = list(app.complete(image, "middle", 10, 2, 0, False, 1.0, model_dir))[0][3]
    assert status == f"{WARN} What to keep must be one of top, bottom, left, right, marked, got 'middle'."
    status = list(app.complete(image, "top", 10, 2, 0, False, 1.0, model_dir, candidates=8))[0][3]
    assert status == f"{WARN} The number of candidates must be a whole number from 16 to 512, got 8."


def test_the_page_says_how_many_candidates_counted_and_why_few_did():
    assert page.resampling(40.0, 128, 8, "marked", 1) == (
        " **40.0 of the 128 candidates counted** (the effective sample size of their weights).")
    few = page.resampling(10.2, 128, 8, "marked", 1)  # under a tenth of them
    assert few.startswith(" **10.2 of the 128 candidates counted**") and "Few did" in few
    assert few.endswith("More candidates help.") and "repeat" not in few and "orientations" not in few
    one = page.resampling(1.3, 128, 8, "bottom", 1)  # fewer than the completions: some are the same
    assert "completions repeat" in one and "as does a model trained on four orientations" in one
    assert "orientations" not in page.resampling(1.3, 128, 8, "bottom", 4)  # one that has them
    named = page.resampling(1.3, 128, 8, "left", 1, exact="four-ways")  # such a model is on the page
    assert "as does four-ways (in the model picker), which completes from the kept side exactly" in named
    assert "Few did" in page.resampling(6.0, 32, 8, "marked", 1)  # fewer than the completions asked for
    proposed = page.resampling(40.0, 128, 8, "bottom", 1, drawn_by="four-ways")
    assert proposed.endswith(" They were drawn from the kept side by four-ways, which reads it first, and weighed by "
                             "how likely this model finds them.")
    assert page.resampling(3.0, 128, 8, "bottom", 1, drawn_by="four-ways").endswith("More candidates help.")
    renewed = page.resampling(40.0, 128, 8, "marked", 1, renewed=3)
    assert renewed.startswith(" **40.0 of the 128 candidates counted** (the effective sample size of their weights; ")
    assert renewed.endswith("replaced by copies of likely ones 3 times).")


# --- models ----------------------------------------------------------------------------------

def test_a_local_model_is_reloaded_when_its_weights_change(tmp_path):
    folder = tmp_path / "m"
    pixelcnn.save_model(pixelcnn.PixelCNN(TINY), folder)
    first = app.get_model(str(folder))
    assert app.get_model(str(folder)) is first
    pixelcnn.save_model(pixelcnn.PixelCNN(TINY), folder)
    later = time.time() + 5
    os.utime(folder / "model.safetensors", (later, later))
    second = app.get_model(str(folder))
    assert second is not first
    assert not torch.equal(first.head.weight, second.head.weight)


def test_missing_models_say_what_to_do(tmp_path, monkeypatch, model_dir):
    monkeypatch.setattr(app, "WEIGHTS_DIR", tmp_path)
    status = list(app.generate(1, 0, False, 1.0, app.DEFAULT_MODEL))[-1][3]
    assert status.startswith(WARN) and "python train.py" in status
    status = list(app.generate(1, 0, False, 1.0, "nobody/no-such-model"))[-1][3]  # the Hub is offline in tests
    assert status.startswith(WARN) and "nobody/no-such-model" in status
    assert app.inspect_digit(app.EXAMPLES[0], None)[3].startswith(WARN)


def test_the_picker_lists_every_model_in_the_weights_folder(weights, monkeypatch):
    assert app.WEIGHTS_DIR == pixelcnn.weights.WEIGHTS_DIR  # the repo's weights/ unless told otherwise
    assert app.model_choices(app.DEFAULT_MODEL)[:1] == [app.DEFAULT_MODEL]
    monkeypatch.setattr(app, "WEIGHTS_DIR", weights)
    names = ["recipe-shape", "tiny", "tiny-gated"]
    assert app.model_choices("recipe-shape") == names
    assert app.model_choices("tiny") == ["tiny", "recipe-shape", "tiny-gated"]  # the one it opens with comes first
    assert app.model_choices("user/repo") == ["user/repo", *names]  # so does a Hub repo id given by --model
    assert isinstance(app.get_model("tiny"), pixelcnn.PixelCNN)  # a name in the folder is enough
    assert isinstance(app.get_model("tiny-gated"), pixelcnn.GatedPixelCNN)
    picker = next(c for c in app.build_demo("recipe-shape").config["components"]
                  if c["props"].get("label") == "Model")
    assert [value for _, value in picker["props"]["choices"]] == names


@pytest.mark.slow
def test_the_weights_folder_can_be_set_by_the_environment(weights):
    code = "import app; print(app.model_choices(app.MODEL))"
    env = dict(os.environ, PIXELCNN_WEIGHTS_DIR=str(weights), PIXELCNN_MODEL="tiny-gated")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "['tiny-gated', 'recipe-shape', 'tiny']", out.stderr[-2000:]


# --- labelled models: a digit to draw, and which digit a drawing is ---------------------------

def test_only_a_labelled_model_offers_digits(gated_dir, model_dir):
    assert app.DIGITS == ["any", *"0123456789"]
    assert app.labelled(gated_dir) and not app.labelled(model_dir) and not app.labelled("nobody/no-such-model")
    g_digit, c_digit, g_guidance, c_guidance, reading = app.model_changed(gated_dir)
    assert all(update["visible"] for update in (g_digit, c_digit, g_guidance, c_guidance, reading))
    assert g_digit["value"] == c_digit["value"] == app.ANY  # a digit chosen for another model is not kept
    assert not any(update["visible"] for update in app.model_changed(model_dir))


@pytest.mark.parametrize("digit", ["7", 7])
def test_generate_draws_the_chosen_digit(gated_dir, digit):
    frames = list(app.generate(3, 5, False, 1.0, gated_dir, digit))
    assert len(frames) == 29 and f", each a 7, seed 5, temperature 1, guidance {app.GUIDANCE:g}." in frames[-1][3]
    model = app.get_model(gated_dir)
    expected = pixelcnn.sample(model, 3, seed=5, label=7, guidance=app.GUIDANCE)[:, 0].numpy() * 255
    np.testing.assert_array_equal(untile(frames[-1][0], 3), expected)
    anything = untile(list(app.generate(3, 5, False, 1.0, gated_dir, "any"))[-1][0], 3)
    np.testing.assert_array_equal(anything, pixelcnn.sample(model, 3, seed=5, label=None, guidance=app.GUIDANCE)
                                  [:, 0].numpy() * 255)
    assert (anything != expected).any()  # the label changes what is drawn
    assert "a 3, seed" in list(app.generate(1, 5, False, 1.0, gated_dir, "3"))[-1][3]


def test_complete_finishes_as_the_chosen_digit(gated_dir):
    image = Image.open(app.EXAMPLES[0])
    digit = pixelcnn.from_drawing(image)
    frames = list(app.complete(image, "top", 12, 2, 4, False, 1.0, gated_dir, "2"))
    assert len(frames) == 1 + 28 - 12 and "top 12 rows, each a 2, seed 4" in frames[-1][3]
    prefix = torch.from_numpy(digit)[None, None]
    expected = pixelcnn.sample(app.get_model(gated_dir), 2, seed=4, prefix=prefix, rows=12, label=2,
                               guidance=app.COMPLETE_GUIDANCE)
    np.testing.assert_array_equal(untile(frames[-1][1], 2), expected[:, 0].numpy() * 255)
    assert (untile(frames[-1][1], 2)[:, :12] == digit[:12] * 255).all()


@pytest.mark.parametrize("digit, message", [("10", "digit must be a whole number from 0 to 9"), (7.5, "from 0 to 9"),
                                            (-1, "from 0 to 9"), ("seven", "from 0 to 9")])
def test_bad_digits_say_why(gated_dir, digit, message):
    for frames in (list(app.generate(1, 0, False, 1.0, gated_dir, digit)),
                   list(app.complete(Image.open(app.EXAMPLES[0]), "top", 14, 1, 0, False, 1.0, gated_dir, digit))):
        assert len(frames) == 1 and frames[0][3].startswith(WARN) and message in frames[0][3]


@pytest.mark.parametrize("guidance", [0, 2.5])
def test_guidance_is_the_samplers(gated_dir, guidance, tmp_path, monkeypatch):
    monkeypatch.setattr(app, "WEIGHTS_DIR", tmp_path)  # no four-orientation model on the page to draw candidates
    model = app.get_model(gated_dir)
    frames = list(app.generate(2, 6, False, 1.0, gated_dir, "4", "fast", guidance))
    expected = pixelcnn.sample(model, 2, seed=6, label=4, guidance=guidance)[:, 0].numpy() * 255
    np.testing.assert_array_equal(untile(frames[-1][0], 2), expected)
    assert ("guidance" in frames[-1][3]) == bool(guidance)
    image = Image.open(app.EXAMPLES[0])
    known = torch.from_numpy(page.kept_pixels("bottom", 10))
    done = list(app.complete(image, "bottom", 10, 2, 3, False, 1.0, gated_dir, "any", "fast", 32, guidance=guidance))
    direct = pixelcnn.complete(model, 2, torch.from_numpy(pixelcnn.from_drawing(image))[None, None], known, seed=3,
                               candidates=32, guidance=guidance)
    np.testing.assert_array_equal(untile(done[-1][1], 2), direct[:, 0].numpy() * 255)


def test_an_unlabelled_model_ignores_guidance_and_bad_guidance_says_why(model_dir, gated_dir):
    status = list(app.generate(1, 0, False, 1.0, model_dir, "any", "fast", 2.0))[-1][3]
    assert "Drew" in status and "guidance" not in status
    for bad in (-1, 4.5, "lots", float("nan")):
        for frames in (list(app.generate(1, 0, False, 1.0, gated_dir, "3", "fast", bad)),
                       list(app.complete(Image.open(app.EXAMPLES[0]), "top", 14, 1, 0, False, 1.0, gated_dir, "3",
                                         guidance=bad))):
            assert len(frames) == 1 and frames[0][3].startswith(WARN) and "guidance must be a number from 0 to 4" \
                in frames[0][3], frames[0][3]


def test_a_digit_for_an_unlabelled_model_says_so(model_dir):
    for frames in (list(app.generate(1, 0, False, 1.0, model_dir, "7")),
                   list(app.complete(Image.open(app.EXAMPLES[0]), "top", 14, 1, 0, False, 1.0, model_dir, "7"))):
        assert len(frames) == 1 and frames[0][3] == f"{WARN} {app.NO_LABELS.format(name=model_dir)}"
    assert "Drew" in list(app.generate(1, 0, False, 1.0, model_dir, "any"))[-1][3]


def test_inspect_reads_the_digit_from_the_models_likelihoods(gated_dir):
    drawing = Image.open(app.EXAMPLES[0])
    text = app.inspect_digit(drawing, gated_dir)[3]
    posterior = app.read_digit(drawing, gated_dir)
    model = app.get_model(gated_dir)
    x = torch.from_numpy(pixelcnn.from_drawing(drawing))[None, None]
    # log p(x | d), one digit at a time; with p(d) = 1/10, p(d | x) is their softmax
    log_px = torch.stack([-pixelcnn.surprise(model, x, label=d).nats[0] for d in range(10)]).double()
    expected = torch.softmax(log_px, dim=0).numpy()
    assert list(posterior) == [str(d) for d in range(10)]
    np.testing.assert_allclose([posterior[str(d)] for d in range(10)], expected, rtol=1e-4, atol=1e-9)
    assert f"reads the drawing as a **{expected.argmax()}**" in text
    marginal = -torch.logsumexp(log_px, dim=0) + np.log(10)  # the total: -log of the mean of p(x | d)
    assert f"**{float(marginal):.1f} nats**" in text and "averaged over the ten digits" in text


# --- receptive fields --------------------------------------------------------------------------

def field_colors(picture: np.ndarray) -> dict[str, np.ndarray]:
    """Which pixels of app.receptive_field()'s picture have each of its colours: (28, 28) bool each."""
    cells = untile(picture, 1, scale=app.ZOOM, rgb=True)[0]
    colors = {**page.FIELD, "the pixel": CURSOR}
    return {part: (cells == color).all(axis=2) for part, color in colors.items()}


def test_the_recipe_models_blind_spot_is_shown(weights):
    model_name = str(weights / "recipe-shape")
    picture, text = app.receptive_field(model_name, 28, 15)  # row 28, column 15, counted from 1
    parts = field_colors(picture)
    assert parts["the pixel"].sum() == 1 and parts["the pixel"][27, 14]
    # The wedge of tests/test_gated.py: d rows up, the columns right of 14 + 3d are blind, for d = 1..4.
    blind = np.zeros((28, 28), bool)
    for d in range(1, 5):
        blind[27 - d, 14 + 3 * d + 1:] = True
    np.testing.assert_array_equal(parts["blind spot"], blind)
    np.testing.assert_array_equal(parts["beyond reach"][:6], True)  # 7 layers reach 21 rows up
    assert not parts["beyond reach"][6:].any()
    model = app.get_model(model_name)
    field = pixelcnn.receptive_field(model, 27, 14).numpy()
    np.testing.assert_array_equal(parts["seen"], field)
    np.testing.assert_array_equal(parts["blind spot"] | parts["beyond reach"], pixelcnn.blind_spot(model, 27, 14))
    assert parts["later"][27, 15:].all() and not parts["later"][:27].any()
    assert "depends on **580** of the 770 earlier pixels" in text
    assert "**22 earlier pixels are blind**" in text and "168 earlier pixels are beyond its reach" in text


def test_the_gated_model_has_no_blind_spot(gated_dir):
    picture, text = app.receptive_field(gated_dir, 21, 15)
    parts = field_colors(picture)
    assert not parts["blind spot"].any() and "**No earlier pixel is blind**" in text
    field = pixelcnn.receptive_field(app.get_model(gated_dir), 20, 14).numpy()
    np.testing.assert_array_equal(parts["seen"], field)
    assert parts["seen"].sum() == 5 * 9 + 5  # reach 4: five rows above, nine wide, five to the left
    assert f"depends on **50** of the {20 * 28 + 14} earlier pixels" in text


@pytest.mark.parametrize("row, col", [(0, 5), (29, 1), (1.5, 3), (None, 3), ("x", 3)])
def test_a_pixel_outside_says_why(model_dir, row, col):
    picture, text = app.receptive_field(model_dir, row, col)
    assert picture is None and text.startswith(WARN) and "from 1 to 28" in text


def test_clicking_a_picture_picks_its_pixel():
    def click(x, y):
        return app.pick_pixel(gr.SelectData(None, {"index": [x, y], "value": None}))

    # app.tile: 4 pixels of border, then ZOOM pixels a pixel
    assert click(4 + 14 * app.ZOOM, 4 + 20 * app.ZOOM + app.ZOOM - 1) == (21, 15)
    assert click(0, 0) == (1, 1) and click(287, 287) == (28, 28)  # the border counts as the nearest pixel
    assert app.pick_pixel(gr.SelectData(None, {"index": None, "value": None})) == (gr.skip(), gr.skip())


# --- a launched app, through gradio_client ---------------------------------------------------

@pytest.fixture(scope="module")
def server(weights, model_dir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(app, "FPS", 0)
        mp.setattr(app, "WEIGHTS_DIR", weights)  # the picker's models: tiny, tiny-gated, recipe-shape
        demo = app.build_demo(model_dir)
        demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, css=app.CSS)
        yield f"http://127.0.0.1:{port}/"
        demo.close()


@pytest.fixture
def client(server):
    from gradio_client import Client

    return Client(server, verbose=False)


def drawing_file(path) -> dict:
    """A picture for the API's drawing (its sketchpads are the page's own)."""
    from gradio_client import handle_file

    return handle_file(str(path))


def test_client_streams_generation(server, model_dir):
    import httpx
    from gradio_client import Client

    job = Client(server, verbose=False, download_files=False).submit(4, 5, False, 1.0, model_dir, api_name="/generate")
    frames = list(job)
    assert len(frames) == 29 and "Drew 784 pixels" in frames[-1][3]
    png = httpx.get(frames[-1][0]["url"]).content  # the PNG the page offers for download
    direct = list(app.generate(4, 5, False, 1.0, model_dir))[-1][0]
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), direct)  # PNG keeps every value exactly
    assert len(frames[-1]) == 4  # the Run for the page's GIF is no output of the API


def test_client_completes_and_inspects(client, model_dir):
    *_, (view, completions, seed, status) = client.submit(drawing_file(app.EXAMPLES[1]), "top", 12, 4, 1, False, 1.0,
                                                        model_dir, api_name="/complete")
    assert "Drew" in status
    digit = pixelcnn.from_drawing(Image.open(app.EXAMPLES[1]))
    assert (untile(np.asarray(Image.open(completions)), 4)[:, :12] == digit[:12] * 255).all()
    *maps, text = client.predict(drawing_file(app.EXAMPLES[1]), model_dir, api_name="/inspect")
    assert "bits per pixel" in text and all(Image.open(m).size == (288, 288) for m in maps)
    reading = client.predict(drawing_file(app.EXAMPLES[1]), model_dir, api_name="/read_digit")
    assert reading["label"] == f"{WARN} {app.NO_READING.format(name=model_dir)}"  # no labels, no digit reading


def test_client_completes_a_side_or_a_marked_part(client, model_dir, tmp_path):
    """keep and candidates through the API; the part to redraw as a 28x28 mask, or marked on the drawing itself."""
    *_, (_, completions, _, status) = client.submit(drawing_file(app.EXAMPLES[1]), "left", 12, 2, 1, False, 1.0,
                                                    model_dir, "any", "fast", 32, api_name="/complete")
    direct = list(app.complete(Image.open(app.EXAMPLES[1]), "left", 12, 2, 1, False, 1.0, model_dir, candidates=32))
    np.testing.assert_array_equal(np.asarray(Image.open(completions)), direct[-1][1])
    assert "of the left 12 columns" in status and "of the 32 candidates counted" in status
    hole = central_hole()
    Image.fromarray(hole.astype(np.uint8) * 255).save(tmp_path / "mask.png")
    image = seven()
    marked(image, over_frame(image, 7, 7, 21, 21)).save(tmp_path / "marked.png")
    for drawing, mark in ((app.EXAMPLES[1], drawing_file(tmp_path / "mask.png")), (tmp_path / "marked.png", None)):
        *_, (view, completions, _, status) = client.submit(drawing_file(drawing), "marked", 14, 2, 3, False, 1.0,
                                                           model_dir, "any", "fast", 32, mark, api_name="/complete")
        digit = pixelcnn.from_marked_drawing(Image.open(drawing))[0]  # the marker's strokes are not ink
        assert "of the drawing outside its 196 marked pixels" in status and "candidates counted" in status
        got = untile(np.asarray(Image.open(completions)), 2)
        assert (got[:, ~hole] == digit[~hole] * 255).all()
        np.testing.assert_array_equal(untile(np.asarray(Image.open(view)), 1, scale=app.ZOOM)[0],
                                      np.where(hole, 85, 255) * digit)


def test_client_streams_the_chosen_digit(server, gated_dir):
    """A labelled model picked by name from the weights folder, a digit chosen, streamed to the client."""
    from gradio_client import Client

    client = Client(server, verbose=False)
    frames = list(client.submit(2, 5, False, 1.0, "tiny-gated", "7", api_name="/generate"))
    assert len(frames) == 29 and "each a 7, seed 5" in frames[-1][3]
    direct = list(app.generate(2, 5, False, 1.0, gated_dir, "7"))[-1][0]
    np.testing.assert_array_equal(np.asarray(Image.open(frames[-1][0])), direct)
    *_, (_, completions, _, status) = client.submit(drawing_file(app.EXAMPLES[1]), "top", 12, 2, 1, False, 1.0,
                                                    "tiny-gated", "2", api_name="/complete")
    assert "each a 2, seed 1" in status
    direct = list(app.complete(Image.open(app.EXAMPLES[1]), "top", 12, 2, 1, False, 1.0, gated_dir, "2"))[-1][1]
    np.testing.assert_array_equal(np.asarray(Image.open(completions)), direct)
    *_, status = client.predict(2, 5, False, 1.0, "tiny", "7", api_name="/generate")
    assert status == f"{WARN} {app.NO_LABELS.format(name='tiny')}"


def test_client_reads_the_digit_and_the_receptive_field(client, gated_dir):
    *_, text = client.predict(drawing_file(app.EXAMPLES[1]), "tiny-gated", api_name="/inspect")
    posterior = client.predict(drawing_file(app.EXAMPLES[1]), "tiny-gated", api_name="/read_digit")
    direct = app.read_digit(Image.open(app.EXAMPLES[1]), gated_dir)
    got = {c["label"]: c["confidence"] for c in posterior["confidences"]}
    assert got.keys() == direct.keys() and np.allclose([got[k] for k in direct], list(direct.values()))
    assert posterior["label"] == max(direct, key=direct.get) and "reads the drawing as a" in text
    picture, text = client.predict("recipe-shape", 28, 15, api_name="/receptive_field")
    assert "**22 earlier pixels are blind**" in text and Image.open(picture).size == (288, 288)
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="less than minimum value 1"):  # the slider's own check: a message
        client.predict("tiny", 0, 15, api_name="/receptive_field")


def test_client_gets_messages_not_errors(client, model_dir, tmp_path):
    blank = tmp_path / "blank.png"
    Image.new("RGB", (300, 200), "white").save(blank)
    *_, status = client.predict(drawing_file(blank), "top", 14, 4, 0, False, 1.0, model_dir, api_name="/complete")
    assert status == f"{WARN} {EMPTY}"
    *_, status = client.predict(drawing_file(blank), model_dir, api_name="/inspect")
    assert status == f"{WARN} {EMPTY}"


@pytest.mark.parametrize("api_name, args, message", [
    ("/generate", (1, 1e30, False, 1.0), "greater than maximum value 9223372036854775807"),  # the seed box's check
    ("/generate", (1, 2**64, False, 1.0), "greater than maximum value 9223372036854775807"),
    ("/generate", (1, -1e30, False, 1.0), "less than minimum value 0"),
    ("/generate", (1, 1e308, False, 1.0), "greater than maximum value"),
    ("/generate", (1e30, 0, False, 1.0), "greater than maximum value 16"),
    ("/generate", (1, 0, False, 1e30), "greater than maximum value 2"),
    ("/generate", (2.5, 0, False, 1.0), "number of digits must be a whole number from 1 to 16"),
    ("/complete", ("drawing", "top", 1e30, 1, 0, False, 1.0), "greater than maximum value 27"),
    ("/complete", ("drawing", "top", 14, -1e30, 0, False, 1.0), "less than minimum value 1"),
    ("/complete", ("drawing", "top", 14, 1, 1e30, False, 1.0), "greater than maximum value 9223372036854775807"),
    ("/receptive_field", (1e30, 3), "greater than maximum value 28"),
])
def test_every_number_of_the_api_gets_a_message_whatever_its_size(client, model_dir, api_name, args, message):
    """Not a cancelled request: numbers too big for 64 bits once ended in an ASGI exception."""
    from gradio_client.exceptions import AppError

    args = tuple(drawing_file(app.EXAMPLES[1]) if a == "drawing" else a for a in args)
    args = (model_dir, *args) if api_name == "/receptive_field" else (*args, model_dir)
    try:
        result = client.predict(*args, api_name=api_name)
    except AppError as e:
        said = str(e)
    else:
        said = result[3] if api_name != "/receptive_field" else result[1]
        assert said.startswith(WARN)
    assert message in said


def test_a_huge_upload_gets_an_answer(client, model_dir, tmp_path):
    """6000x6000 pixels: the sketchpads and the API hand PIL images to pixelcnn.from_drawing, which shrinks
    them first (tests/test_drawing.py measures that), not arrays of every pixel."""
    inputs = [b for b in app.demo.blocks.values() if isinstance(b, (gr.Sketchpad, gr.Image)) and b.interactive is not False]
    assert {type(b) for b in inputs} == {gr.Sketchpad, gr.Image} and all(b.type == "pil" for b in inputs)
    big = tmp_path / "big.png"
    seven(6000).save(big)
    *_, text = client.predict(drawing_file(big), model_dir, api_name="/inspect")
    assert "bits per pixel" in text


def test_eight_clients_streaming_at_once_all_finish(server, model_dir):
    from gradio_client import Client

    clients = [Client(server, verbose=False, download_files=False) for _ in range(8)]
    results = [None] * 8

    def visitor(k):
        frames = list(clients[k].submit(2, k, False, 1.0, model_dir, api_name="/generate"))
        results[k] = (len(frames), frames[-1][3])

    threads = [threading.Thread(target=visitor, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert all(r is not None and r[0] == 29 and "Drew 784 pixels" in r[1] for r in results), results


def test_a_cancelled_stream_stops(server, model_dir, monkeypatch):
    from gradio_client import Client

    drawn = []  # the frames the server made, counted where they are made: the client may lag behind

    def counted(frames, fps):
        for frame in paced(frames, fps):
            drawn.append(frame.position)
            yield frame

    paced = app.paced
    monkeypatch.setattr(app, "paced", counted)
    monkeypatch.setattr(app, "FPS", 5)  # 29 frames would take ~6 s
    client = Client(server, verbose=False, download_files=False)
    job = client.submit(1, 0, False, 1.0, model_dir, api_name="/generate")
    while len(job.outputs()) < 2:
        time.sleep(0.05)
    job.cancel()
    deadline = time.monotonic() + 10
    while not job.done() and time.monotonic() < deadline:
        time.sleep(0.1)
    made = len(drawn)
    time.sleep(1)  # a stream still running would make ~5 more frames meanwhile
    assert job.done() and len(drawn) == made < 29, drawn


# --- MCP: `python app.py --mcp` -----------------------------------------------------------------

@pytest.mark.slow
def test_mcp_serves_the_pages_functions_as_tools(weights, tmp_path):
    """`python app.py --mcp` on 127.0.0.1: the mcp client lists the tools and calls two of them."""
    import asyncio
    import base64

    pytest.importorskip("mcp", reason="the mcp client is in requirements-dev.txt")
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port), PIXELCNN_APP_FPS="0",
               GRADIO_TEMP_DIR=str(tmp_path), GRADIO_ANALYTICS_ENABLED="False")
    log = open(tmp_path / "app.log", "w")
    server = subprocess.Popen([sys.executable, "app.py", "--mcp", "--model", "tiny", "--weights-dir", str(weights)],
                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while True:
            assert server.poll() is None, (tmp_path / "app.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "app.py did not answer"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        seven = "data:image/png;base64," + base64.b64encode(Path(app.EXAMPLES[0]).read_bytes()).decode()

        async def use():
            async with streamable_http_client(f"http://127.0.0.1:{port}/gradio_api/mcp/") as (read, write, *_):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    tools = {tool.name: tool for tool in (await session.list_tools()).tools}
                    drawn = await session.call_tool("generate", {"n": 2, "seed": 5, "random_seed": False,
                                                                 "model_name": "tiny", "pace": "fast"})
                    read_as = await session.call_tool("read_digit", {"drawing": seven, "model_name": "tiny-gated"})
                    finished = await session.call_tool("complete", {"drawing": seven, "keep": "right", "lines": 12,
                                                                    "n": 2, "seed": 1, "random_seed": False,
                                                                    "model_name": "tiny", "pace": "fast",
                                                                    "candidates": 32})
                    return tools, drawn, read_as, finished

        tools, drawn, read_as, finished = asyncio.run(use())
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    assert {"generate", "complete", "inspect_digit", "read_digit", "receptive_field"} <= tools.keys()
    assert tools["generate"].description.startswith("Draw new handwritten digits")  # from the docstring
    assert "how many digits, 1 to 16" in tools["generate"].inputSchema["properties"]["n"]["description"]
    assert tools["read_digit"].inputSchema["properties"]["drawing"]["type"] == "string"  # a picture's URL
    text = " ".join(c.text for c in drawn.content if c.type == "text")
    assert not drawn.isError and "Drew 784 pixels" in text and "2 digits, seed 5" in text and ".png" in text
    keep = tools["complete"].inputSchema["properties"]["keep"]
    assert '"top", "bottom", "left" or "right"' in keep["description"] and '"marked"' in keep["description"]
    text = " ".join(c.text for c in finished.content if c.type == "text")
    assert not finished.isError and "2 completions of the right 12 columns" in text and "candidates counted" in text
    text = " ".join(c.text for c in read_as.content if c.type == "text")
    expected = app.read_digit(app.EXAMPLES[0], str(weights / "tiny-gated"))
    assert not read_as.isError and f"'label': '{max(expected, key=expected.get)}'" in text
