"""Sampling: the cached sampler draws exactly what the plain one draws, for the recipe PixelCNN and
the gated one (with and without labels); completion, temperature, streaming, labels, per-pixel
probabilities and surprise; bad input.

The plain sampler runs the whole network once per pixel, so comparisons with it use small
models, or small images, or only the last few pixels of a 28 x 28 image. The cache's outputs
are compared with a full pass as logits: as probabilities, a logit off by 1 where P = 1e-6
would pass any absolute tolerance.
"""

import math

import numpy as np
import pytest
import torch

import pixelcnn
from pixelcnn import PixelCNN, PixelCNNConfig, probabilities, sample, sample_plain, sample_stream, surprise
from pixelcnn.gated import GatedPixelCNN, GatedPixelCNNConfig

SIZE = (9, 11)  # small and not square, so that rows and columns cannot be swapped unnoticed


def random_model(hidden=4, kernel_size=3, n_layers=1, seed=0) -> PixelCNN:
    """A randomly initialised PixelCNN whose logits take both signs and are far from 0."""
    torch.manual_seed(seed)
    model = PixelCNN(PixelCNNConfig(hidden_channels=hidden, kernel_size=kernel_size, n_layers=n_layers))
    with torch.no_grad():  # the default init gives logits near 0 everywhere
        for p in model.parameters():
            p.normal_(0, 2 / p[0].numel() ** 0.5 if p.dim() > 1 else 0.1)
        noise = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(seed)).round()
        model.head.bias -= model(noise).median() - 0.2  # about as many 1s as 0s, and no logit at 0
    return model.eval()


def random_gated(hidden=4, first_kernel_size=3, kernel_size=3, n_layers=2, n_labels=10, seed=0) -> GatedPixelCNN:
    """A randomly initialised GatedPixelCNN, its logits spread like random_model's, its labels weighty."""
    torch.manual_seed(seed)
    model = GatedPixelCNN(GatedPixelCNNConfig(hidden_channels=hidden, first_kernel_size=first_kernel_size,
                                              kernel_size=kernel_size, n_layers=n_layers, n_labels=n_labels))
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(0, 1.0 if ".label." in name else 2 / p[0].numel() ** 0.5 if p.dim() > 1 else 0.1)
        noise = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(seed)).round()
        model.head[-1].bias -= model(noise).median() - 0.2
    return model.eval()


RECIPES = [  # (hidden, kernel_size, n_layers)
    (4, 3, 1), (3, 1, 0), (3, 1, 2), (5, 5, 0), (6, 3, 3), (8, 7, 1), (2, 9, 2), (16, 5, 2),
]
GATED = [  # (hidden, first_kernel_size, kernel_size, n_layers, n_labels)
    (4, 3, 3, 1, 0), (3, 7, 3, 2, 10), (5, 5, 5, 3, 10), (6, 3, 7, 2, 0), (8, 7, 3, 8, 10), (2, 5, 3, 4, 3),
    (16, 7, 5, 2, 10), (6, 15, 3, 3, 10),
]
MODELS = [("recipe", c) for c in RECIPES] + [("gated", c) for c in GATED]


def model_id(case) -> str:
    kind, c = case
    if kind == "recipe":
        return f"recipe-C{c[0]}-k{c[1]}-L{c[2]}"
    return f"gated-C{c[0]}-k{c[1]}/{c[2]}-L{c[3]}-labels{c[4]}"


def make(case, seed=0):
    kind, config = case
    return (random_model if kind == "recipe" else random_gated)(*config, seed=seed)


def some_label(model):
    """A label for a labelled model (the tests then condition on it), else None."""
    return min(3, model.config.n_labels - 1) if getattr(model.config, "n_labels", 0) else None


def stream_end(*args, **kwargs) -> pixelcnn.SampleStep:
    *_, last = sample_stream(*args, **kwargs)
    return last


def drawn_probs(step: pixelcnn.SampleStep) -> torch.Tensor:
    """P(pixel = 1 | pixels before) from a stream's P(pixel = its value | pixels before)."""
    return torch.where(step.images == 1, step.probs, 1 - step.probs)


# A cache and a full pass round differently in float32: up to ~1.5e-5 apart where |logit| ~ 10.
LOGITS = dict(atol=1e-4, rtol=1e-4)


def cache_logits(model, images: torch.Tensor, k: int = 0, label=None) -> torch.Tensor:
    """The logits of the model's own step cache at every pixel of images (n, 1, H, W): the first
    k pixels given at the start, the others handed to it one at a time, as the sampler does."""
    n, _, h, w = images.shape
    steps = model.step_cache(n, h, w, label)
    given = images.clone()
    given.view(n, -1)[:, k:] = 0  # as the sampler starts: the pixels not drawn yet are 0
    z = np.empty((h * w, n), np.float32)
    z[:k] = steps.begin(given, k)
    bits = images.reshape(n, -1).T.numpy() > 0.5  # (H * W, n)
    for p in range(k, h * w):
        z[p] = steps.logit(p)
        steps.put(p, bits[p])
    return torch.from_numpy(z.T.copy()).view(n, 1, h, w)


def assert_frame_is_the_models(model, step: pixelcnn.SampleStep, label=None, k: int = 0):
    """At every pixel of a finished frame, the cache's logit is a full pass's, and the frame's
    probability is that logit's (of the value drawn, or given: the first k pixels)."""
    z = cache_logits(model, step.images, k, label)
    with torch.no_grad():
        torch.testing.assert_close(z, model(step.images, label), **LOGITS)
    torch.testing.assert_close(step.probs, torch.sigmoid(torch.where(step.images == 1, z, -z)), rtol=1e-6, atol=0)


def test_the_logit_tolerance_catches_a_wrong_logit_in_the_tails():
    """Why logits: at P = 1e-6, a logit off by 1 moves the probability by 2e-6, which atol=1e-5 misses."""
    z = torch.tensor([-13.8, 0.3, 9.0])  # P(1) = 1e-6, 0.57, 0.9999
    wrong = z + torch.tensor([1.0, 0.0, 0.0])
    torch.testing.assert_close(torch.sigmoid(wrong), torch.sigmoid(z), atol=1e-5, rtol=0)  # blind
    with pytest.raises(AssertionError):
        torch.testing.assert_close(wrong, z, **LOGITS)
    with pytest.raises(AssertionError):  # and a small error where the logit is large
        torch.testing.assert_close(z + torch.tensor([0.0, 0.0, 3e-3]), z, **LOGITS)


@pytest.mark.parametrize("case", [("recipe", (4, 3, 1)), ("gated", (3, 7, 3, 2, 10)), ("gated", (4, 3, 3, 1, 0))],
                         ids=model_id)
@pytest.mark.parametrize("pixels", [0, 40])
def test_sampling_takes_the_models_cache_not_a_full_pass_per_pixel(case, pixels):
    """The exactness tests pass just as well if sampling takes the plain path: this one does not.

    The cache runs the full network at most once, over the given rows; the plain path once per pixel.
    """
    model = make(case)
    label = some_label(model)
    prefix = sample(model, 2, seed=1, label=label, image_size=SIZE)
    passes = []
    hook = model.register_forward_hook(lambda module, args, out: passes.append(args[0].shape))
    try:
        kw = dict(seed=0, prefix=prefix, pixels=pixels, label=label, image_size=SIZE)
        sample(model, 2, **kw)
        drawn = SIZE[0] * SIZE[1] - pixels
        assert len(passes) <= 1, f"sample ran the full network {len(passes)} times for {drawn} pixels"
        list(sample_stream(model, 2, every=7, **kw))
        assert len(passes) <= 2, f"sample_stream ran the full network {len(passes) - 1} times"
        sample_plain(model, 2, **kw)  # the count does see the plain path
        assert len(passes) > drawn
    finally:
        hook.remove()


@pytest.mark.parametrize("case", MODELS, ids=model_id)
@pytest.mark.parametrize("temperature", [1.0, 0.5, 0.0, 3.0])
def test_cached_draws_what_plain_draws(case, temperature):
    model = make(case)
    assert hasattr(model, "step_cache")
    cached = sample(model, 3, seed=7, temperature=temperature, image_size=SIZE)
    plain = sample_plain(model, 3, seed=7, temperature=temperature, image_size=SIZE)
    assert torch.equal(cached, plain)
    if temperature:
        assert 0 < cached.mean() < 1  # an image of one colour would prove little


def pixel_by_pixel(monkeypatch):
    """Make every batch draw one pixel at a time (no StepCache.row_logits): the sampler before guessing rows."""
    monkeypatch.setattr(pixelcnn.sampling, "GUESS_UP_TO", 0)


GATED_ROW = ("gated", (5, 5, 3, 3, 10))
RECIPE_ROW = ("recipe", (6, 5, 2))
UNLABELLED = [dict(label=None), dict(label=None, pixels=40), dict(label=None, temperature=0.0)]
LABELLED = [dict(label=3), dict(label=torch.tensor([1, 5])), dict(label=2, guidance=1.5), dict(label=4, pixels=13)]


@pytest.mark.parametrize("case, kw", [(GATED_ROW, kw) for kw in UNLABELLED + LABELLED]
                         + [(RECIPE_ROW, kw) for kw in UNLABELLED],
                         ids=lambda c: model_id(c) if isinstance(c, tuple) else str(c))
@pytest.mark.parametrize("n", [1, 2])
def test_a_row_drawn_by_guesses_is_the_row_drawn_pixel_by_pixel(case, kw, n, monkeypatch):
    """Small batches draw a row by guessing it and keeping what one pass confirms (_Drawing._run_row):
    the same images, and not a logit() a pixel, so that the path is taken."""
    model = make(case, seed=4)
    cache = pixelcnn.cached.PixelCNNCache if case[0] == "recipe" else pixelcnn.cached.GatedPixelCNNCache
    kw = {**kw, "label": kw["label"][:n] if torch.is_tensor(kw["label"]) else kw["label"]}
    prefix = sample(model, n, seed=1, image_size=SIZE, label=some_label(model))
    kw = dict(prefix=prefix, **kw) if "pixels" in kw else kw
    calls = {"logit": 0, "row_logits": 0}
    for name in calls:
        def counted(self, *args, _name=name, _fn=getattr(cache, name)):
            calls[_name] += 1
            return _fn(self, *args)
        monkeypatch.setattr(cache, name, counted)
    guessed = [sample(model, n, seed=seed, image_size=SIZE, **kw) for seed in range(4)]
    stepped = kw.get("pixels", 0) % SIZE[1] if case[0] == "gated" else 0  # the gated begin steps through a row begun
    assert calls["logit"] == stepped * 4
    assert calls["row_logits"] >= 4 * (SIZE[0] - kw.get("pixels", 0) // SIZE[1])
    pixel_by_pixel(monkeypatch)
    for seed, images in enumerate(guessed):
        assert torch.equal(images, sample(model, n, seed=seed, image_size=SIZE, **kw)), seed
    assert calls["logit"] > SIZE[0] * SIZE[1]


@pytest.mark.parametrize("case", MODELS, ids=model_id)
def test_cached_probabilities_are_the_full_networks(case):
    """The cache's logit at every position equals one full forward pass on the finished image."""
    model = make(case, seed=1)
    label = some_label(model)
    last = stream_end(model, 4, seed=3, label=label, image_size=SIZE)
    assert not last.probs.isnan().any()
    assert_frame_is_the_models(model, last, label)


@pytest.mark.parametrize("case", MODELS[:2] + MODELS[len(RECIPES):len(RECIPES) + 2], ids=model_id)
def test_the_cache_is_exact_on_either_side_of_matmul_from(case):
    """Batches from MATMUL_FROM rows on multiply with np.matmul, smaller ones with np.dot: both are the full pass."""
    from pixelcnn.cached import MATMUL_FROM

    model = make(case, seed=1)
    label = some_label(model)
    for n in (MATMUL_FROM - 1, MATMUL_FROM):
        last = stream_end(model, n, seed=3, label=label, image_size=SIZE, shards=1)
        assert_frame_is_the_models(model, last, label)


@pytest.mark.parametrize("case, label", [(("recipe", (3, 5, 1)), None), (("gated", (3, 5, 3, 2, 10)), 7),
                                         (("gated", (3, 7, 5, 1, 0)), None)],
                         ids=lambda c: model_id(c) if isinstance(c, tuple) else f"label{c}")
@pytest.mark.parametrize("size, all_rows", [((28, 6), range(29)), ((28, 28), (0, 1, 13, 26, 27, 28))])
def test_completion_from_every_number_of_rows(case, label, size, all_rows):
    model = make(case, seed=2)
    prefix = sample(model, 2, seed=100, label=label, image_size=size)
    for rows in all_rows:
        kw = dict(seed=rows, prefix=prefix, rows=rows, label=label, image_size=size)
        cached = sample(model, 2, **kw)
        assert torch.equal(cached[:, :, :rows], prefix[:, :, :rows]), rows
        assert torch.equal(cached, sample_plain(model, 2, **kw)), rows


@pytest.mark.parametrize("case", MODELS[:4] + MODELS[len(RECIPES):len(RECIPES) + 4], ids=model_id)
def test_completion_from_a_prefix_that_ends_inside_a_row(case):
    model = make(case, seed=3)
    label = some_label(model)
    h, w = SIZE
    prefix = sample(model, 2, seed=100, image_size=SIZE)
    for k in [0, 1, 2, w - 1, w, w + 1, 2 * w + 2, 3 * w + 5, h * w - 2, h * w - 1, h * w]:
        kw = dict(seed=k, prefix=prefix, pixels=k, temperature=[1.0, 0.0, 0.6][k % 3], label=label, image_size=SIZE)
        cached = sample(model, 2, **kw)
        assert torch.equal(cached.flatten(1)[:, :k], prefix.flatten(1)[:, :k]), k
        assert torch.equal(cached, sample_plain(model, 2, **kw)), k
        # the given pixels' probabilities are there too, and are the model's
        last = stream_end(model, 2, **kw)
        assert torch.equal(last.images, cached)
        assert_frame_is_the_models(model, last, label, k)


@pytest.mark.parametrize("case", [("recipe", (4, 3, 2)), ("gated", (3, 5, 3, 3, 10)), ("gated", (4, 3, 3, 2, 0))],
                         ids=model_id)
@pytest.mark.parametrize("k", [2 * SIZE[1], 2 * SIZE[1] + 4])
def test_rows_that_share_their_given_pixels_begin_once_and_stay_exact(case, k):
    """Completion's candidates share their given pixels: begin's pass runs once for each distinct
    row (and label), and every row then steps on exactly as if begun alone, whatever its copies."""
    model = make(case, seed=5)
    labelled = getattr(model.config, "n_labels", 0) > 0
    distinct = sample(model, 3, seed=2, image_size=SIZE)  # three different images
    order = torch.tensor([0, 1, 0, 2, 1, 0, 0])
    images = sample(model, 7, seed=3, prefix=distinct[order], pixels=k, image_size=SIZE)  # alike up to k, then not
    label = torch.tensor([4, 4, 4, 1, 4, 1, 4]) if labelled else None  # image 0 under two labels: 4 keys
    passes = []
    hook = model.layers[0].register_forward_hook(lambda module, args, out: passes.append(args[0].shape[0]))
    try:
        z = cache_logits(model, images, k, label)
    finally:
        hook.remove()
    assert passes == [4 if labelled else 3]
    with torch.no_grad():
        torch.testing.assert_close(z, model(images, label), **LOGITS)


def test_one_prefix_per_image_and_rows_equal_pixels():
    model = random_model(seed=4)
    prefix = sample(model, 3, seed=1, image_size=SIZE)
    out = sample(model, 3, seed=2, prefix=prefix, rows=4, image_size=SIZE)
    assert torch.equal(out[:, :, :4], prefix[:, :, :4])
    assert torch.equal(out, sample(model, 3, seed=2, prefix=prefix, pixels=4 * SIZE[1], image_size=SIZE))
    one = sample(model, 3, seed=2, prefix=prefix[:1], rows=4, image_size=SIZE)  # (1, 1, H, W): for every image
    assert torch.equal(one[:, :, :4], prefix[:1, :, :4].expand(3, -1, -1, -1))


@pytest.mark.parametrize("case", [("recipe", (6, 5, 2)), ("gated", (6, 7, 3, 3, 10))], ids=model_id)
def test_completing_a_sample_with_its_own_seed_gives_it_back(case):
    """The uniforms are drawn up front, one per pixel: the given pixels do not shift the others."""
    model = make(case, seed=5)
    label = some_label(model)
    x = sample(model, 2, seed=11, label=label)
    for k in (0, 1, 100, 28 * 13, 783, 784):
        assert torch.equal(sample(model, 2, seed=11, prefix=x, pixels=k, label=label), x), k


@pytest.mark.parametrize("name", pixelcnn.list_models())
def test_models_in_weights(name):
    """Shipped models: every position against a full pass, and the plain sampler on the last rows."""
    model = pixelcnn.load_model(name)
    label = some_label(model)
    last = stream_end(model, 2, seed=0, label=label)
    assert last.position == 784 and not last.probs.isnan().any()
    assert_frame_is_the_models(model, last, label)
    # The plain sampler costs a full pass per pixel: compare on the last few pixels only.
    for seed, temperature in [(1, 1.0), (2, 0.0)]:
        kw = dict(seed=seed, prefix=last.images[:1], pixels=784 - 12, temperature=temperature, label=label)
        assert torch.equal(sample(model, 1, **kw), sample_plain(model, 1, **kw))


def test_same_seed_same_images_and_different_seeds_differ():
    model = random_model(seed=6)
    a = sample(model, 4, seed=3, image_size=SIZE)
    assert a.shape == (4, 1, *SIZE) and a.dtype == torch.float32 and a.device.type == "cpu"
    assert set(a.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(a, sample(model, 4, seed=3, image_size=SIZE))
    assert not torch.equal(a, sample(model, 4, seed=4, image_size=SIZE))
    assert not torch.equal(a[0], a[1])  # the images of one call differ too


def test_temperature_zero_takes_the_more_likely_value():
    model = random_model(hidden=6, kernel_size=5, n_layers=2, seed=7)
    x = sample(model, 2, seed=0, temperature=0)
    assert torch.equal(x, sample(model, 2, seed=123, temperature=0))  # the seed plays no part
    assert torch.equal(x[0], x[1])
    assert torch.equal(x, (probabilities(model, x) > 0.5).float())  # every pixel, given those before it


def test_temperature_sharpens_and_flattens():
    """Lower temperatures draw the more likely value more often."""
    model = random_model(hidden=6, kernel_size=5, n_layers=2, seed=8)
    agree = {}
    for t in (0.25, 1.0, 4.0):
        x = sample(model, 8, seed=0, temperature=t, image_size=SIZE)
        agree[t] = ((probabilities(model, x) > 0.5).float() == x).float().mean().item()
    assert agree[0.25] > agree[1.0] > agree[4.0]


@pytest.mark.parametrize("k, every", [(0, 28), (0, 1), (0, 1000), (30, 7), (99, 5), (40, 59)])
def test_stream_schedule_and_frames(k, every):
    model = random_model(seed=9)
    h, w = SIZE
    prefix = sample(model, 2, seed=5, image_size=SIZE)
    kw = dict(seed=1, prefix=prefix, pixels=k, image_size=SIZE)
    steps = list(sample_stream(model, 2, every=every, **kw))
    expected = sorted({k, *range(k + every, h * w, every), h * w})
    assert [s.position for s in steps] == expected
    final = steps[-1].images
    assert torch.equal(final, sample(model, 2, **kw))
    for s in steps:
        assert s.images.shape == s.probs.shape == (2, 1, h, w)
        done = torch.arange(h * w) < s.position
        assert torch.equal(s.images.flatten(1)[:, done], final.flatten(1)[:, done])
        assert not s.images.flatten(1)[:, ~done].any()  # not drawn yet: 0
        assert not s.probs.flatten(1)[:, done].isnan().any() and s.probs.flatten(1)[:, ~done].isnan().all()
        assert ((s.probs.flatten(1)[:, done] > 0) & (s.probs.flatten(1)[:, done] <= 1)).all()


def test_stream_probs_are_the_probabilities_of_the_drawn_values():
    model = random_model(hidden=6, kernel_size=5, n_layers=2, seed=10)
    for temperature in (1.0, 0.3):  # the model's own probabilities, whatever the temperature
        last = stream_end(model, 3, seed=2, temperature=temperature)
        assert_frame_is_the_models(model, last)


def test_probabilities_is_one_forward_pass():
    model = random_model(seed=11)
    x = sample(model, 3, seed=0, image_size=SIZE)
    torch.testing.assert_close(probabilities(model, x), torch.sigmoid(model(x)).detach())
    assert probabilities(model, x.bool()).shape == (3, 1, *SIZE)  # any dtype with values 0 and 1


def test_surprise_totals():
    model = random_model(hidden=6, kernel_size=5, n_layers=2, seed=12)
    x = sample(model, 3, seed=0)
    s = surprise(model, x)
    p1 = probabilities(model, x)
    torch.testing.assert_close(s.map, -torch.log(torch.where(x == 1, p1, 1 - p1)), atol=1e-4, rtol=1e-4)
    assert s.map.shape == (3, 1, 28, 28) and (s.map >= 0).all()
    torch.testing.assert_close(s.nats, s.map.sum(dim=(1, 2, 3)))
    torch.testing.assert_close(s.bits_per_pixel, s.nats / math.log(2) / 784)
    # nats per pixel is the training loss
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), x).item()
    assert s.nats.mean().item() / 784 == pytest.approx(loss, rel=1e-5)


class NoCache(torch.nn.Module):
    """A model without step_cache: sampling falls back to the full network per pixel."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, label=None):
        return self.model(x, label)


def test_models_without_a_cache_are_sampled_the_plain_way():
    model = random_model(seed=13)
    wrapped = NoCache(model)
    assert not hasattr(wrapped, "step_cache")
    kw = dict(seed=4, temperature=0.8, image_size=SIZE)
    assert torch.equal(sample(wrapped, 2, **kw), sample(model, 2, **kw))


def test_label_reaches_a_labelled_model():
    model = random_gated(hidden=4, first_kernel_size=3, kernel_size=3, n_layers=2)  # its labels weigh
    kw = dict(seed=0, label=3, image_size=(4, 5))
    last = stream_end(model, 2, **kw)
    assert torch.equal(last.images, sample_plain(model, 2, **kw))
    assert_frame_is_the_models(model, last, label=3)
    assert (drawn_probs(last) - probabilities(model, last.images, label=7)).abs().max() > 0.01


LABELS = [None, *range(10), 10, torch.tensor([0, 4, 9]), torch.tensor([10, 2, 2])]


@pytest.mark.parametrize("label", LABELS, ids=lambda y: f"label{y.tolist() if torch.is_tensor(y) else y}")
def test_cached_draws_what_plain_draws_for_every_label(label):
    model = random_gated(hidden=5, first_kernel_size=5, kernel_size=3, n_layers=3, seed=14)
    kw = dict(seed=1, label=label, image_size=SIZE)
    last = stream_end(model, 3, **kw)
    assert torch.equal(last.images, sample_plain(model, 3, **kw))
    if label is None:  # any digit: the mixture over the labels, whose probabilities the frame shows
        z = torch.logit(probabilities(model, last.images).double())
        shown = torch.logit(last.probs.double())
        torch.testing.assert_close(shown, torch.where(last.images == 1, z, -z), **LOGITS)
    else:
        assert_frame_is_the_models(model, last, label)
    assert 0 < last.images.mean() < 1


def test_labels_change_the_images_and_label_n_means_none():
    model = random_gated(hidden=5, first_kernel_size=5, kernel_size=3, n_layers=3, seed=14)
    draws = {y: sample(model, 2, seed=0, label=y, image_size=SIZE) for y in [pixelcnn.DROPPED, 0, 9, 10]}
    assert torch.equal(draws[10], draws[pixelcnn.DROPPED])  # row n_labels of the embedding is "no label"
    assert not torch.equal(draws[0], draws[9]) and not torch.equal(draws[0], draws[pixelcnn.DROPPED])
    per_image = sample(model, 2, seed=0, label=torch.tensor([0, 9]), image_size=SIZE)
    assert torch.equal(per_image[0], draws[0][0]) and torch.equal(per_image[1], draws[9][1])


def test_completion_and_stream_with_a_label():
    model = random_gated(hidden=4, first_kernel_size=7, kernel_size=3, n_layers=2, seed=15)
    prefix = sample(model, 1, seed=9, label=5)
    kw = dict(seed=2, prefix=prefix, rows=12, label=3)
    x = pixelcnn.sample(model, 2, **kw)
    assert torch.equal(x[:, :, :12], prefix[:, :, :12].expand(2, -1, -1, -1))
    assert torch.equal(x, pixelcnn.sample_plain(model, 2, **kw))
    steps = list(pixelcnn.sample_stream(model, 2, every=100, **kw))
    assert [s.position for s in steps] == [12 * 28, *range(12 * 28 + 100, 784, 100), 784]
    assert torch.equal(steps[-1].images, x)
    assert_frame_is_the_models(model, steps[-1], label=3, k=12 * 28)


@pytest.mark.parametrize("fn", [sample, sample_plain, sample_stream], ids=lambda f: f.__name__)
def test_bad_labels_raise_a_value_error(fn):
    labelled = random_gated(n_labels=10)
    for label, message in [(11, r"labels must be in 0\.\.9"), (-1, "labels must be in"),
                           (torch.tensor([1, 2]), r"label must be an int or a \(3,\) tensor"),
                           (torch.tensor([[1, 2, 3]]), "label must be an int or a")]:
        with pytest.raises(ValueError, match=message):
            fn(labelled, 3, label=label, image_size=SIZE)
    with pytest.raises(ValueError, match="this model has no labels"):
        fn(random_gated(n_labels=0), 3, label=3, image_size=SIZE)
    with pytest.raises(ValueError, match="this PixelCNN has no labels"):
        fn(random_model(), 3, label=torch.tensor([1, 2, 3]), image_size=SIZE)


def bad_calls():
    ok = torch.zeros(1, 1, 28, 28)
    return {
        "n=0": (dict(n=0), "n must be a whole number in 1"),
        "n=-2": (dict(n=-2), "n must be"),
        "n=1.5": (dict(n=1.5), "n must be"),
        "n='2'": (dict(n="2"), "n must be"),
        "prefix 3-d": (dict(prefix=torch.zeros(1, 28, 28), rows=1), r"prefix must have shape \(1, 1, 28, 28\)"),
        "prefix wrong size": (dict(prefix=torch.zeros(1, 1, 27, 28), rows=1), "prefix must have shape"),
        "prefix wrong batch": (dict(n=3, prefix=torch.zeros(2, 1, 28, 28), rows=1),
                               r"\(1, 1, 28, 28\) or \(3, 1, 28, 28\)"),
        "prefix 2 channels": (dict(prefix=torch.zeros(1, 2, 28, 28), rows=1), "prefix must have shape"),
        "prefix 0.5": (dict(prefix=torch.full((1, 1, 28, 28), 0.5), rows=1), "prefix values must be 0 or 1"),
        "prefix 255": (dict(prefix=ok + 255, rows=1), "0 or 1"),
        "prefix nan": (dict(prefix=ok + math.nan, rows=1), "0 or 1"),
        "rows -1": (dict(prefix=ok, rows=-1), r"rows must be a whole number in 0..28"),
        "rows 29": (dict(prefix=ok, rows=29), "rows must be"),
        "pixels -1": (dict(prefix=ok, pixels=-1), r"pixels must be a whole number in 0..784"),
        "pixels 785": (dict(prefix=ok, pixels=785), "pixels must be"),
        "rows and pixels": (dict(prefix=ok, rows=2, pixels=3), "rows or pixels, not both"),
        "rows without prefix": (dict(rows=2), "needs a prefix"),
        "pixels without prefix": (dict(pixels=2), "needs a prefix"),
        "temperature -0.1": (dict(temperature=-0.1), "temperature must be a number >= 0"),
        "temperature nan": (dict(temperature=math.nan), "temperature must be"),
        "temperature inf": (dict(temperature=math.inf), "temperature must be"),
        "temperature str": (dict(temperature="hot"), "temperature must be"),
        "label": (dict(label=3), "no labels"),
    }


@pytest.mark.parametrize("case", list(bad_calls()))
@pytest.mark.parametrize("fn", [sample, sample_plain, sample_stream], ids=lambda f: f.__name__)
def test_bad_input_raises_a_value_error_that_says_what_was_expected(fn, case):
    model = random_model()
    kwargs, message = bad_calls()[case]
    kwargs = {"n": 1, **kwargs}
    with pytest.raises(ValueError, match=message):
        fn(model, **kwargs)  # sample_stream raises at the call, not at the first frame


def test_stream_every_must_be_positive():
    for every in (0, -1, 2.5):
        with pytest.raises(ValueError, match="every must be a whole number in 1"):
            sample_stream(random_model(), 1, every=every)


@pytest.mark.parametrize("fn", [probabilities, surprise], ids=lambda f: f.__name__)
def test_heatmaps_reject_bad_images(fn):
    model = random_model()
    for images, message in [(torch.zeros(28, 28), r"images must have shape \(B, 1, H, W\)"),
                            (torch.zeros(1, 3, 28, 28), "images must have shape"),
                            (torch.full((1, 1, 28, 28), 0.3), "images values must be 0 or 1")]:
        with pytest.raises(ValueError, match=message):
            fn(model, images)
    with pytest.raises(ValueError, match="no labels"):
        fn(model, torch.zeros(1, 1, 28, 28), label=1)
