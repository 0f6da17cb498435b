"""Sampling from a model one pixel at a time in raster order, and per-pixel probabilities.

One loop (`_draw`) serves generation, completion (the given pixels are kept) and streaming.
Where the logits come from is a StepCache (cached.py): the model's own fast cache if it has
one (`model.step_cache`), else the full network once per pixel. `sample_plain` always takes
the full network: it is the reference the fast path is tested against.
"""

import math
from typing import Iterator, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from .cached import FullPasses, StepCache, one_blas_thread


class SampleStep(NamedTuple):
    """One frame of sample_stream."""

    images: torch.Tensor  # (n, 1, H, W) in {0, 1}; pixels not drawn yet are 0
    position: int  # how many pixels (raster order) are final, the given ones included
    probs: torch.Tensor  # (n, 1, H, W) P(pixel = its value | pixels before it); NaN where not reached


class Surprise(NamedTuple):
    """How unexpected each pixel of an image is to the model."""

    map: torch.Tensor  # (B, 1, H, W) -log P(pixel = its value | pixels before it), in nats
    nats: torch.Tensor  # (B,) the sum over the image: -log P(image)
    bits_per_pixel: torch.Tensor  # (B,) nats / ln 2 / (H * W)


def _whole(name: str, value, lo: int, hi: int | None = None) -> int:
    """value as an int, or a ValueError that says what was expected."""
    try:
        ok = int(value) == value and value >= lo and (hi is None or value <= hi)
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be a whole number in {lo}..{'' if hi is None else hi}, got {value!r}")
    return int(value)


def _binary_images(images, name: str, shape: str) -> torch.Tensor:
    """images as a float CPU tensor, checked to be (B, 1, H, W) with values in {0, 1}."""
    x = torch.as_tensor(images).detach().cpu()
    if x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(x.shape)}")
    if not torch.all((x == 0) | (x == 1)):
        raise ValueError(f"{name} values must be 0 or 1")
    return x.float()


def _start(n, prefix, rows, pixels, image_size) -> tuple[torch.Tensor, int]:
    """The starting images (n, 1, H, W), the given pixels set and the rest 0, and how many are given."""
    h, w = image_size
    rows = _whole("rows", rows, 0, h)
    if pixels is not None and rows:
        raise ValueError(f"give rows or pixels, not both (got rows={rows}, pixels={pixels})")
    k = rows * w if pixels is None else _whole("pixels", pixels, 0, h * w)
    x = torch.zeros(n, 1, h, w)
    if prefix is None:
        if k:
            raise ValueError("rows or pixels > 0 needs a prefix image to take the pixels from")
        return x, 0
    shape = f"(1, 1, {h}, {w}) or ({n}, 1, {h}, {w})"
    prefix = _binary_images(prefix, "prefix", shape)
    if prefix.shape[0] not in (1, n) or prefix.shape[2:] != (h, w):
        raise ValueError(f"prefix must have shape {shape}, got {tuple(prefix.shape)}")
    x.view(n, -1)[:, :k] = prefix.expand(n, 1, h, w).reshape(n, -1)[:, :k]
    return x, k


def _thresholds(n: int, h: int, w: int, seed: int, temperature: float) -> np.ndarray:
    """(H * W, n) float64: pixel p becomes 1 exactly when its logit is above thresholds[p]."""
    gen = torch.Generator().manual_seed(seed)
    # All the randomness is drawn up front, one uniform per pixel, so that any sampler that
    # walks the same pixels with the same probabilities draws the same image.
    u = torch.rand(n, 1, h, w, generator=gen).flatten(1).T.double().numpy()  # (H * W, n)
    if temperature == 0:
        return np.zeros_like(u)  # always the more likely value
    # u < sigmoid(logit / T)  <=>  logit > T * log(u / (1 - u)): one comparison per pixel.
    with np.errstate(divide="ignore"):  # u = 0 gives -inf: always 1
        return temperature * np.log(u / (1 - u))


def _frame(bits: np.ndarray, logits: np.ndarray, position: int, shape) -> SampleStep:
    n, h, w = shape
    images = torch.from_numpy(bits.T.astype(np.float32)).reshape(n, 1, h, w)
    # P(x = its value) = sigmoid(+logit) for a 1, sigmoid(-logit) for a 0; NaN logits stay NaN.
    probs = torch.sigmoid(torch.from_numpy(np.where(bits, logits, -logits).T.copy())).reshape(n, 1, h, w)
    return SampleStep(images, position, probs)


def _draw(steps: StepCache, x: torch.Tensor, k: int, thresholds: np.ndarray, every: int) -> Iterator[SampleStep]:
    """The sampling loop: draw pixels k .. H*W - 1 of x in raster order, yielding as it goes."""
    n, _, h, w = x.shape
    hw = h * w
    bits = np.zeros((hw, n), bool)  # (H * W, n): the images, one row per pixel
    bits[:k] = x.view(n, hw)[:, :k].T.numpy() > 0.5
    logits = np.full((hw, n), np.nan, np.float32)  # of P(pixel = 1 | pixels before it)
    logits[:k] = steps.begin(x, k)
    yield _frame(bits, logits, k, (n, h, w))
    for start in range(k, hw, every):
        stop = min(start + every, hw)
        with one_blas_thread():  # not held across a yield: the caller's own work keeps its threads
            for p in range(start, stop):
                logits[p] = z = steps.logit(p)  # (n,)
                bits[p] = z > thresholds[p]
                steps.put(p, bits[p])
        yield _frame(bits, logits, stop, (n, h, w))


def _stream(model, n, seed, prefix, rows, pixels, temperature, label, every, image_size, plain):
    n = _whole("n", n, 1)
    every = _whole("every", every, 1)
    try:
        temperature = float(temperature)
    except (TypeError, ValueError):
        temperature = math.nan
    if not 0 <= temperature < math.inf:
        raise ValueError(f"temperature must be a number >= 0, got {temperature!r}")
    h, w = image_size
    x, k = _start(n, prefix, rows, pixels, image_size)
    thresholds = _thresholds(n, h, w, seed, temperature)
    if plain or not hasattr(model, "step_cache"):
        steps = FullPasses(model, n, h, w, label)
    else:
        steps = model.step_cache(n, h, w, label)  # raises here on a label the model cannot take
    yield from _draw(steps, x, k, thresholds, every)


def sample_stream(model, n: int, seed: int = 0, prefix: torch.Tensor | None = None, rows: int = 0,
                  pixels: int | None = None, temperature: float = 1.0, label=None, every: int = 28,
                  image_size: tuple[int, int] = (28, 28)) -> Iterator[SampleStep]:
    """Draw n images, yielding the partial images as they grow.

    Args:
        model: maps (B, 1, H, W) images (and a label) to (B, 1, H, W) logits, causally.
            Sampling is fast if it has `step_cache` (cached.py), else it runs the full
            network once per pixel.
        n: how many images.
        seed: the same seed gives the same images.
        prefix: (1, 1, H, W) or (n, 1, H, W) images in {0, 1} to complete.
        rows: keep the first `rows` rows of prefix (0..H) ...
        pixels: ... or the first `pixels` pixels in raster order (0..H*W); give one of them.
        temperature: logits are divided by it; 0 always takes the more likely value.
        label: passed to the model. PixelCNN takes only None; GatedPixelCNN None (no label),
            a digit, or one digit per image as an (n,) tensor.
        every: yield after every `every` new pixels.
        image_size: (H, W).
    Yields:
        SampleStep(images, position, probs): first with the given pixels only, then after
        every `every` drawn pixels, and always at the end (position == H * W), once. probs
        are the model's own (temperature 1), for given and drawn pixels alike.
    Raises:
        ValueError, at the call, for a bad n, prefix, rows, pixels, temperature, every or label.
    """
    stream = _stream(model, n, seed, prefix, rows, pixels, temperature, label, every, image_size, plain=False)
    return _checked(stream)


def _checked(stream: Iterator[SampleStep]) -> Iterator[SampleStep]:
    """Run a generator to its first yield now, so that its checks raise at the call."""
    first = next(stream)

    def frames():
        yield first
        yield from stream

    return frames()


def _last(stream: Iterator[SampleStep]) -> torch.Tensor:
    for step in stream:
        pass
    return step.images


def sample(model, n: int, seed: int = 0, prefix: torch.Tensor | None = None, rows: int = 0,
           pixels: int | None = None, temperature: float = 1.0, label=None,
           image_size: tuple[int, int] = (28, 28)) -> torch.Tensor:
    """Draw n images from the model: sample_stream run to the end (see it for the arguments).

    Returns:
        (n, 1, H, W) float images in {0, 1}, on the CPU.
    """
    h, w = image_size
    return _last(_stream(model, n, seed, prefix, rows, pixels, temperature, label, h * w, image_size, plain=False))


def sample_plain(model, n: int, seed: int = 0, prefix: torch.Tensor | None = None, rows: int = 0,
                 pixels: int | None = None, temperature: float = 1.0, label=None,
                 image_size: tuple[int, int] = (28, 28)) -> torch.Tensor:
    """sample(), but running the full network once per pixel: the slow reference."""
    h, w = image_size
    return _last(_stream(model, n, seed, prefix, rows, pixels, temperature, label, h * w, image_size, plain=True))


def _logits(model, images, label) -> tuple[torch.Tensor, torch.Tensor]:
    x = _binary_images(images, "images", "(B, 1, H, W)")
    device = next(model.parameters()).device
    with torch.no_grad():
        return x, model(x.to(device), label).float().cpu()  # (B, 1, H, W)


def probabilities(model, images: torch.Tensor, label=None) -> torch.Tensor:
    """P(pixel = 1 | the pixels before it) at every pixel of the images, in one forward pass.

    Args:
        images: (B, 1, H, W) values in {0, 1}.
    Returns:
        (B, 1, H, W) probabilities, on the CPU.
    """
    return torch.sigmoid(_logits(model, images, label)[1])


def surprise(model, images: torch.Tensor, label=None) -> Surprise:
    """-log P(pixel = its value | pixels before it) at every pixel, and the totals.

    Args:
        images: (B, 1, H, W) values in {0, 1}.
    Returns:
        Surprise(map (B, 1, H, W) in nats, nats (B,) summed over each image, bits_per_pixel (B,)).
    """
    x, logits = _logits(model, images, label)
    nats_map = F.binary_cross_entropy_with_logits(logits, x, reduction="none")  # (B, 1, H, W)
    nats = nats_map.sum(dim=(1, 2, 3))  # (B,)
    return Surprise(nats_map, nats, nats / math.log(2) / x[0].numel())


def label_nats(model, images: torch.Tensor, batch_size: int = 100) -> torch.Tensor:
    """-log p(image | label) under every label of a labelled model, in nats.

    Args:
        images: (B, 1, H, W) values in {0, 1}.
        batch_size: images x labels per forward pass.
    Returns:
        (B, n_labels), on the CPU.
    """
    n = getattr(model.config, "n_labels", 0)
    if not n:
        raise ValueError("the model has no labels")
    x = _binary_images(images, "images", "(B, 1, H, W)")
    out = []
    for chunk in x.split(max(1, batch_size // n)):  # each image once per label, in one pass
        labels = torch.arange(n).repeat(len(chunk))
        out.append(surprise(model, chunk.repeat_interleave(n, dim=0), label=labels).nats.view(len(chunk), n))
    return torch.cat(out)


def marginal_nats(model, images: torch.Tensor, batch_size: int = 100) -> torch.Tensor:
    """-log p(image) of a labelled model, p(image) = the mean over its labels of p(image | label).

    This is the unconditional likelihood with every label equally likely beforehand (p(label) =
    1 / n_labels), an alternative to the model's own unlabelled p(image) (`surprise` with no label).

    Returns:
        (B,) nats, on the CPU.
    """
    log_p = -label_nats(model, images, batch_size).double()  # (B, n_labels)
    return (math.log(log_p.shape[1]) - torch.logsumexp(log_p, dim=1)).float()
