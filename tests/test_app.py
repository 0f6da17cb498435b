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
        pixelcnn.save_model(model_type(config), folder / name)
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


def untile(picture: np.ndarray, n: int, scale: int = 0, h: int = 28, rgb: bool = False) -> np.ndarray:
    """The (n, h, h) pixels read back from app.tile()'s picture: the red channel at each pixel's
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


def test_a_sketch_becomes_an_mnist_digit():
    digit = app.to_mnist(sketch(seven()))
    assert digit.shape == (28, 28) and digit.dtype == np.float32 and set(np.unique(digit)) == {0.0, 1.0}
    rows, cols = np.nonzero(digit)
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 in (19, 20, 21)  # scaled into 20x20
    cy, cx = (np.indices(digit.shape) * digit).sum(axis=(1, 2)) / digit.sum()
    assert abs(cy - 13.5) <= 1 and abs(cx - 13.5) <= 1  # centred by mass
    assert digit[:14].sum() > digit[14:].sum()  # a 7: the bar is on top


def test_every_polarity_gives_the_same_digit():
    dark_on_light = app.to_mnist(seven())
    light_on_dark = app.to_mnist(seven(ink=(255, 255, 255, 255), paper=(0, 0, 0, 255)))
    black_on_clear = app.to_mnist(seven(ink=(0, 0, 0, 255), paper=(0, 0, 0, 0)))
    white_on_clear = app.to_mnist(seven(ink=(255, 255, 255, 255), paper=(255, 255, 255, 0)))
    blue_on_grey = app.to_mnist(seven(ink=(20, 40, 200, 255), paper=(200, 200, 200, 255)))
    for other in (light_on_dark, black_on_clear, white_on_clear):
        np.testing.assert_array_equal(other, dark_on_light)
    assert (blue_on_grey != dark_on_light).mean() < 0.02


def test_a_28x28_digit_is_taken_as_it_is():
    rng = np.random.default_rng(0)
    digit = np.zeros((28, 28), np.uint8)
    digit[6:22, 10:16] = 255
    digit[rng.random((28, 28)) < 0.05] = 255
    for image in (digit, digit > 0, digit / 255.0, Image.fromarray(digit), Image.fromarray(255 - digit).convert("RGB")):
        np.testing.assert_array_equal(app.to_mnist(image), digit > 127)


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
    digit = app.to_mnist(image)
    assert digit.shape == (28, 28) and 20 < digit.sum() < 300


@pytest.mark.parametrize("image, message", [
    (None, app.EMPTY),
    (sketch(None), app.EMPTY),
    (sketch(seven(ink=(255, 255, 255, 0))), app.EMPTY),  # nothing drawn
    (sketch(Image.new("RGBA", (400, 400), (0, 0, 0, 255))), "almost all ink"),  # painted over
    (np.zeros((64, 64, 3), np.uint8), app.EMPTY),
    (np.full((10, 10), 255, np.uint8), app.EMPTY),
    (seven(400, width=1), app.THIN),
    (np.zeros((4, 4, 5)), "Cannot read"),
    (np.zeros((0, 3)), "Cannot read"),
    (np.array("not an image"), "Cannot read"),
])
def test_unusable_drawings_say_why(image, message, model_dir):
    with pytest.raises(app.InputError, match=message.split(":")[0]):
        app.to_mnist(image)
    for frame in app.complete(image, 14, 2, 0, False, 1.0, model_dir):
        assert frame[3].startswith(WARN) and frame[1] is None
    assert app.inspect_digit(image, model_dir)[3].startswith(WARN)
    assert app.preview(image, 14)[1].startswith(WARN)


def test_nothing_above_the_cut_says_so(model_dir):
    digit = np.zeros((28, 28), np.uint8)
    digit[16:26, 8:20] = 255  # ink only in the bottom half
    frames = list(app.complete(digit, 14, 2, 0, False, 1.0, model_dir))
    assert len(frames) == 1
    view, completions, _, status = frames[0]
    assert view is not None and completions is None
    assert status.startswith(WARN) and "above the orange line" in status
    assert app.preview(digit, 14)[1].startswith(WARN)
    assert not app.preview(digit, 20)[1].startswith(WARN)


# --- generate, complete, inspect -------------------------------------------------------------

def test_generate_streams_a_frame_per_row(model_dir):
    frames = list(app.generate(3, 7, False, 1.0, model_dir))
    assert len(frames) == 1 + 28  # the empty start, then a frame per row
    assert "row 1 of 28" in frames[0][3] and "Drew 784 pixels" in frames[-1][3]
    assert all(seed == 7 for _, _, seed, _ in frames)
    digits, heat = frames[-1][:2]
    assert digits.shape == heat.shape and digits.dtype == np.uint8 and digits.shape[2] == 3
    assert set(np.unique(untile(digits, 3))) <= {0, 255}  # finished: only black and white pixels
    assert not (heat == app.NOT_YET).all(axis=2).any()  # every pixel has its probability
    middle = untile(frames[14][0], 3)  # 14 rows drawn
    assert (middle[:, 14, 0] == app.CURSOR[0]).all()  # the next pixel is shown in red
    assert (middle[:, 14:].reshape(3, -1)[:, 1:] == app.NOT_YET[0]).all()  # the rest is greyed out
    assert set(np.unique(middle[:, :14])) <= {0, 255}
    np.testing.assert_array_equal(list(app.generate(3, 7, False, 1.0, model_dir))[-1][0], digits)


def test_generate_random_seed_reports_the_seed(model_dir):
    *_, (digits, _, seed, status) = app.generate(1, 0, True, 1.0, model_dir)
    assert isinstance(seed, int) and f"seed {seed}" in status
    *_, (_, _, seed_of_empty_box, _) = app.generate(1, None, False, 1.0, model_dir)
    assert isinstance(seed_of_empty_box, int)
    np.testing.assert_array_equal(list(app.generate(1, seed, False, 1.0, model_dir))[-1][0], digits)


@pytest.mark.parametrize("n, seed, temperature", [(0, 0, 1.0), (17, 0, 1.0), (2.5, 0, 1.0), (1, -1, 1.0),
                                                  (1, 0.5, 1.0), (1, 0, -1.0)])
def test_generate_bad_controls_say_why(n, seed, temperature, model_dir):
    frames = list(app.generate(n, seed, False, temperature, model_dir))
    assert len(frames) == 1 and frames[0][3].startswith(WARN) and frames[0][0] is None


def test_completions_keep_the_kept_rows_exactly(model_dir):
    drawing = app.EXAMPLES[0]
    digit = app.to_mnist(Image.open(drawing))
    for rows in (9, 14):
        frames = list(app.complete(Image.open(drawing), rows, 4, 3, False, 1.0, model_dir))
        assert len(frames) == 1 + 28 - rows
        view, completions, seed, status = frames[-1]
        assert seed == 3 and "Drew" in status and f"top {rows} rows" in status
        got = untile(completions, 4)
        assert (got[:, :rows] == digit[:rows] * 255).all()
        assert set(np.unique(got)) <= {0, 255}
        assert (view == app.CUT).all(axis=2)[4 + rows * 10, 4:-4].all()  # the cut line under the kept rows


def test_inspect_reports_the_models_surprise(model_dir):
    drawing = Image.open(app.EXAMPLES[0])
    view, p_map, s_map, text, posterior = app.inspect_digit(drawing, model_dir)
    assert posterior is None and "reads the drawing" not in text  # no labels: no digit reading
    assert view.shape == p_map.shape == s_map.shape
    x = torch.from_numpy(app.to_mnist(drawing))[None, None]
    s = pixelcnn.surprise(app.get_model(model_dir), x)
    assert f"{float(s.nats[0]):.1f} nats" in text and f"{float(s.bits_per_pixel[0]):.3f} bits per pixel" in text
    np.testing.assert_array_equal(untile(view, 1, scale=10)[0], x[0, 0].numpy() * 255)


def test_pacing_holds_frames_per_second():
    t0 = time.perf_counter()
    assert list(app.paced(range(6), fps=20)) == list(range(6))
    assert time.perf_counter() - t0 >= 0.24  # 5 intervals of 1/20 s
    t0 = time.perf_counter()
    list(app.paced(range(100), fps=0))
    assert time.perf_counter() - t0 < 0.05


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
    g_digit, c_digit, reading = app.model_changed(gated_dir)
    assert g_digit["visible"] and c_digit["visible"] and reading["visible"]
    assert g_digit["value"] == c_digit["value"] == app.ANY  # a digit chosen for another model is not kept
    assert not any(update["visible"] for update in app.model_changed(model_dir))


@pytest.mark.parametrize("digit", ["7", 7])
def test_generate_draws_the_chosen_digit(gated_dir, digit):
    frames = list(app.generate(3, 5, False, 1.0, gated_dir, digit))
    assert len(frames) == 29 and ", each a 7, seed 5" in frames[-1][3]
    model = app.get_model(gated_dir)
    expected = pixelcnn.sample(model, 3, seed=5, label=7)[:, 0].numpy() * 255
    np.testing.assert_array_equal(untile(frames[-1][0], 3), expected)
    anything = untile(list(app.generate(3, 5, False, 1.0, gated_dir, "any"))[-1][0], 3)
    np.testing.assert_array_equal(anything, pixelcnn.sample(model, 3, seed=5, label=None)[:, 0].numpy() * 255)
    assert (anything != expected).any()  # the label changes what is drawn
    assert "a 3, seed" in list(app.generate(1, 5, False, 1.0, gated_dir, "3"))[-1][3]


def test_complete_finishes_as_the_chosen_digit(gated_dir):
    image = Image.open(app.EXAMPLES[0])
    digit = app.to_mnist(image)
    frames = list(app.complete(image, 12, 2, 4, False, 1.0, gated_dir, "2"))
    assert len(frames) == 1 + 28 - 12 and "top 12 rows, each a 2, seed 4" in frames[-1][3]
    prefix = torch.from_numpy(digit)[None, None]
    expected = pixelcnn.sample(app.get_model(gated_dir), 2, seed=4, prefix=prefix, rows=12, label=2)
    np.testing.assert_array_equal(untile(frames[-1][1], 2), expected[:, 0].numpy() * 255)
    assert (untile(frames[-1][1], 2)[:, :12] == digit[:12] * 255).all()


@pytest.mark.parametrize("digit, message", [("10", "digit must be a whole number from 0 to 9"), (7.5, "from 0 to 9"),
                                            (-1, "from 0 to 9"), ("seven", "from 0 to 9")])
def test_bad_digits_say_why(gated_dir, digit, message):
    for frames in (list(app.generate(1, 0, False, 1.0, gated_dir, digit)),
                   list(app.complete(Image.open(app.EXAMPLES[0]), 14, 1, 0, False, 1.0, gated_dir, digit))):
        assert len(frames) == 1 and frames[0][3].startswith(WARN) and message in frames[0][3]


def test_a_digit_for_an_unlabelled_model_says_so(model_dir):
    for frames in (list(app.generate(1, 0, False, 1.0, model_dir, "7")),
                   list(app.complete(Image.open(app.EXAMPLES[0]), 14, 1, 0, False, 1.0, model_dir, "7"))):
        assert len(frames) == 1 and frames[0][3] == f"{WARN} {app.NO_LABELS.format(name=model_dir)}"
    assert "Drew" in list(app.generate(1, 0, False, 1.0, model_dir, "any"))[-1][3]


def test_inspect_reads_the_digit_from_the_models_likelihoods(gated_dir):
    drawing = Image.open(app.EXAMPLES[0])
    *_, text, posterior = app.inspect_digit(drawing, gated_dir)
    model = app.get_model(gated_dir)
    x = torch.from_numpy(app.to_mnist(drawing))[None, None]
    # log p(x | d), one digit at a time; with p(d) = 1/10, p(d | x) is their softmax
    log_px = torch.stack([-pixelcnn.surprise(model, x, label=d).nats[0] for d in range(10)]).double()
    expected = torch.softmax(log_px, dim=0).numpy()
    assert list(posterior) == [str(d) for d in range(10)]
    np.testing.assert_allclose([posterior[str(d)] for d in range(10)], expected, rtol=1e-4, atol=1e-9)
    assert f"reads the drawing as a **{expected.argmax()}**" in text
    unconditional = pixelcnn.surprise(model, x)  # the totals: the model's p(x) with no label
    assert f"{float(unconditional.nats[0]):.1f} nats" in text


# --- receptive fields --------------------------------------------------------------------------

def field_colors(picture: np.ndarray) -> dict[str, np.ndarray]:
    """Which pixels of app.receptive()'s picture have each of its colours: (28, 28) bool each."""
    cells = untile(picture, 1, scale=app.ZOOM, rgb=True)[0]
    colors = {**app.FIELD, "the pixel": app.CURSOR}
    return {part: (cells == color).all(axis=2) for part, color in colors.items()}


def test_the_recipe_models_blind_spot_is_shown(weights):
    model_name = str(weights / "recipe-shape")
    picture, text = app.receptive(model_name, 28, 15)  # row 28, column 15, counted from 1
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
    picture, text = app.receptive(gated_dir, 21, 15)
    parts = field_colors(picture)
    assert not parts["blind spot"].any() and "**No earlier pixel is blind**" in text
    field = pixelcnn.receptive_field(app.get_model(gated_dir), 20, 14).numpy()
    np.testing.assert_array_equal(parts["seen"], field)
    assert parts["seen"].sum() == 5 * 9 + 5  # reach 4: five rows above, nine wide, five to the left
    assert f"depends on **50** of the {20 * 28 + 14} earlier pixels" in text


@pytest.mark.parametrize("row, col", [(0, 5), (29, 1), (1.5, 3), (None, 3), ("x", 3)])
def test_a_pixel_outside_says_why(model_dir, row, col):
    picture, text = app.receptive(model_dir, row, col)
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
    from gradio_client import handle_file

    return {"background": handle_file(str(path)), "layers": [], "composite": handle_file(str(path))}


def test_client_streams_generation(server, model_dir):
    import httpx
    from gradio_client import Client

    job = Client(server, verbose=False, download_files=False).submit(4, 5, False, 1.0, model_dir, api_name="/generate")
    frames = list(job)
    assert len(frames) == 29 and "Drew 784 pixels" in frames[-1][3]
    png = httpx.get(frames[-1][0]["url"]).content  # the PNG the page offers for download
    direct = list(app.generate(4, 5, False, 1.0, model_dir))[-1][0]
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), direct)  # PNG keeps every value exactly


def test_client_completes_and_inspects(client, model_dir):
    *_, (view, completions, seed, status) = client.submit(drawing_file(app.EXAMPLES[1]), 12, 4, 1, False, 1.0,
                                                        model_dir, api_name="/complete")
    assert "Drew" in status
    digit = app.to_mnist(Image.open(app.EXAMPLES[1]))
    assert (untile(np.asarray(Image.open(completions)), 4)[:, :12] == digit[:12] * 255).all()
    *maps, text, posterior = client.predict(drawing_file(app.EXAMPLES[1]), model_dir, api_name="/inspect")
    assert "bits per pixel" in text and all(Image.open(m).size == (288, 288) for m in maps)
    assert posterior is None or not posterior.get("confidences")  # no labels, no digit reading


def test_client_streams_the_chosen_digit(server, gated_dir):
    """A labelled model picked by name from the weights folder, a digit chosen, streamed to the client."""
    from gradio_client import Client

    client = Client(server, verbose=False)
    frames = list(client.submit(2, 5, False, 1.0, "tiny-gated", "7", api_name="/generate"))
    assert len(frames) == 29 and "each a 7, seed 5" in frames[-1][3]
    direct = list(app.generate(2, 5, False, 1.0, gated_dir, "7"))[-1][0]
    np.testing.assert_array_equal(np.asarray(Image.open(frames[-1][0])), direct)
    *_, (_, completions, _, status) = client.submit(drawing_file(app.EXAMPLES[1]), 12, 2, 1, False, 1.0,
                                                    "tiny-gated", "2", api_name="/complete")
    assert "each a 2, seed 1" in status
    direct = list(app.complete(Image.open(app.EXAMPLES[1]), 12, 2, 1, False, 1.0, gated_dir, "2"))[-1][1]
    np.testing.assert_array_equal(np.asarray(Image.open(completions)), direct)
    *_, status = client.predict(2, 5, False, 1.0, "tiny", "7", api_name="/generate")
    assert status == f"{WARN} {app.NO_LABELS.format(name='tiny')}"


def test_client_reads_the_digit_and_the_receptive_field(client, gated_dir):
    *_, text, posterior = client.predict(drawing_file(app.EXAMPLES[1]), "tiny-gated", api_name="/inspect")
    direct = app.inspect_digit(Image.open(app.EXAMPLES[1]), gated_dir)[4]
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
    *_, status = client.predict(drawing_file(blank), 14, 4, 0, False, 1.0, model_dir, api_name="/complete")
    assert status == f"{WARN} {app.EMPTY}"
    *_, status, _ = client.predict(drawing_file(blank), model_dir, api_name="/inspect")
    assert status == f"{WARN} {app.EMPTY}"


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
