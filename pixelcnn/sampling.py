"""Sampling from a model one pixel at a time, completing any part of an image, and per-pixel probabilities.

One loop (`_Drawing`) serves generation, completion and streaming: it walks the pixels in
raster order, draws the unknown ones and keeps the known ones. Where the logits come from is a
StepCache (cached.py): the model's own fast cache if it has one (`model.step_cache`), else the
full network once per pixel. `sample_plain` always takes the full network: it is the reference
the fast path is tested against.

A labelled model's `label=None` means "any digit": the mixture p(x) = sum_y p(y) p(x | y) with
p(y) = 1/10, sampled exactly. Generation draws each image's label uniformly, then the image
given it; a completion draws the label from its posterior given the kept pixels. The
probabilities shown are the mixture's, P(x_i = 1 | x_<i) = sum_y p(y | x_<i) P(x_i = 1 | x_<i, y),
whose product over the pixels is p(x). `label=DROPPED` takes the model's own "no label" instead.
An ensemble (ensemble.py), the mean of its members' densities, is sampled the same way: each
image's member drawn from its posterior, then the image from that member alone (MemberSteps).

`complete` keeps any set of known pixels [1]. When they all come before the unknown ones (in
raster order, or in another orientation of a model trained on several, see orders.py) it samples
exactly from p(unknown | known). Otherwise it draws `candidates` completions in the order that
puts the most known pixels first, weights each by the probability of the known pixels that come
after its first unknown one (the proposal times that weight is p(x)), and resamples n of them:
sampling-importance-resampling, exact as the candidates grow [2]. Weighed only at the end, a few
candidates take nearly all the weight (for a central hole, 1 or 2 of 128); so the candidates are
also resampled as they are drawn, after each row where their weights have grown too uneven and
pixels remain to be drawn, the likely ones copied and the unlikely dropped: sequential Monte
Carlo, a particle filter [3], also exact as the candidates grow. With `proposal`, another model
that completes the known pixels exactly (they come first in one of its orientations) draws the
candidates, and the model weighs each by the ratio of their densities: a model that reads top
first then completes the bottom or a side from candidates that already fit it.

With `guidance` w > 0 (a labelled model), each pixel is drawn from classifier-free guidance [4],
P(x_i | x_<i, y)^(1 + w) P(x_i | x_<i)^(-w), normalised: for a binary pixel, the logit
(1 + w) z_y - w z_none, z_none the model's own "no label" logit. It is a model of its own, pixel
by pixel, so completion weighs the known pixels by it too: guided completions are exact samples
of it, as unguided ones are of p.

[1] EugenHotaj/pytorch-generative's `sample(conditioned_on=...)` fills the unknown pixels in
    raster order and ignores the known pixels after them; here they count.
[2] Rubin, "Using the SIR algorithm to simulate posterior distributions", 1988.
[3] Doucet and Johansen, "A tutorial on particle filtering and smoothing: fifteen years later", 2009;
    systematic resampling from Kitagawa, "Monte Carlo filter and smoother for non-Gaussian
    nonlinear state space models", 1996.
[4] Ho and Salimans, "Classifier-free diffusion guidance", 2022.
[5] Wiggers and Hoogeboom, "Predictive Sampling with Forecasting Autoregressive Models", 2020,
    https://arxiv.org/abs/2002.09928; Song et al., "Accelerating Feedforward Computation via
    Parallel Nonlinear Equation Solving", 2021, https://arxiv.org/abs/2002.03629: with its
    uniforms fixed, a sample is the fixed point of x_i = [u_i < P(x_i = 1 | x_<i)], so pixels
    can be guessed, checked in one pass, and kept up to the first wrong guess.
"""

import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from .cached import FullPasses, StepCache, _distinct, _take_label, single_threaded_blas
from .ensemble import Ensemble, draw_from as _draw_from, log_sigmoid as _log_sigmoid, mixed_logit
from .ensemble import mixture_logits as _mixture_logits, pixel_log_lik as _pixel_log_lik
from .orders import orient, unorient

DROPPED = "dropped"  # label= for a labelled model's own unconditional p(x), its "no label" embedding
RESAMPLE_BELOW = 0.5  # complete resamples a block of candidates when its ESS falls below this share of them
SHARD_MIN = 32  # images per batch from which the sampler splits the batch over two cores
GUESS_UP_TO = 4  # images per shard up to which a StepCache with row_logits draws a row by guesses (_Drawing._run_row)
_pool: ThreadPoolExecutor | None = None


class SampleStep(NamedTuple):
    """One frame of sample_stream and complete_stream."""

    images: torch.Tensor  # (n, 1, H, W) in {0, 1}; pixels not drawn yet are 0
    position: int  # how many pixels (in the drawing's order) are final, the given ones included
    probs: torch.Tensor  # (n, 1, H, W) P(pixel = its value | pixels before it); NaN where not reached
    labels: torch.Tensor | None = None  # (n,) the labels drawn for label=None on a labelled model
    # complete, where it weighs candidates: (groups,) the effective sample size (sum w)^2 / sum w^2 over all of
    # each group's candidates, of the weights the outputs are picked by. A block's weights restart equal (at its
    # mean) when it is resampled (_Drawing.resample_blocks), so this counts the candidates that carry weight
    # since their block's last resampling, copies of one ancestor as several.
    ess: torch.Tensor | None = None
    orientation: int = 0  # the order the pixels were drawn in (orders.py)
    resamplings: torch.Tensor | None = None  # complete: (groups,) how many times a block of each group was resampled


class Surprise(NamedTuple):
    """How unexpected each pixel of an image is to the model."""

    map: torch.Tensor  # (B, 1, H, W) -log P(pixel = its value | pixels before it), in nats
    nats: torch.Tensor  # (B,) the sum over the image: -log P(image)
    bits_per_pixel: torch.Tensor  # (B,) nats / ln 2 / (H * W)


# ---- checks ----

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


def _non_negative(name: str, value) -> float:
    """value as a finite float >= 0, or a ValueError that says what was expected."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not 0 <= number < math.inf:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    return number


def _temperature(temperature) -> float:
    return _non_negative("temperature", temperature)


def _guidance(model, guidance) -> float:
    guidance = _non_negative("guidance", guidance)
    if guidance and not n_labels(model):
        raise ValueError("guidance needs a labelled model (it pushes each pixel towards the label)")
    return guidance


def n_labels(model) -> int:
    """How many digit labels a model is conditioned on: 0 for an unlabelled one."""
    return getattr(getattr(model, "config", None), "n_labels", 0)


def _n_orientations(model) -> int:
    return getattr(getattr(model, "config", None), "n_orientations", 1)


def _label(model, label) -> tuple[bool, object]:
    """(whether label=None asks for the mixture over the labels, the label to give the model)."""
    if isinstance(label, str):
        if label != DROPPED:
            raise ValueError(f"label must be None, a digit, a tensor of digits or {DROPPED!r}, got {label!r}")
        if not n_labels(model):
            raise ValueError("the model has no labels to drop; call it with label=None")
        return False, None  # the model's own "no label"
    return label is None and n_labels(model) > 0, label


def _orientation(model, orientation) -> int:
    n = _n_orientations(model)
    if isinstance(orientation, bool) or not isinstance(orientation, (int, np.integer)) or not 0 <= orientation < n:
        raise ValueError(f"orientation must be a whole number in 0..{n - 1} for this model, got {orientation!r}")
    return int(orientation)


# ---- where the logits come from ----

def _forward(model, x: torch.Tensor, label, orientation: int) -> torch.Tensor:
    if orientation:
        return model(x, label, orientation)
    return model(x, label)  # also for models that know no orientation


def _step_cache(model, n, h, w, label, orientation, plain) -> StepCache:
    if plain or not hasattr(model, "step_cache"):
        return FullPasses(model, n, h, w, label, orientation)
    if orientation:
        return model.step_cache(n, h, w, label, orientation)
    return model.step_cache(n, h, w, label)  # raises here on a label the model cannot take


class MixtureSteps:
    """The StepCache of the mixture over a labelled model's labels: every image under every label.

    The images' labels are drawn from their posterior given the pixels `begin` is given (uniform
    when none are), and each pixel is drawn under its image's label; every label's copy sees the
    same pixels, so that the mixture's P(x_i = 1 | x_<i) is at hand for each pixel (`shown`).
    """

    def __init__(self, make_steps, n: int, n_labels: int, uniforms: np.ndarray):
        self.n, self.l = n, n_labels
        self.inner = make_steps(n * n_labels, torch.arange(n_labels).repeat(n))  # row i * L + y
        self.uniforms = uniforms  # (n,) in [0, 1): one per image, for its label
        self.loglik = np.zeros((n, n_labels))  # log p(the pixels so far | label)
        self.rows = np.arange(n) * n_labels
        self.z = np.zeros((n, n_labels), np.float32)
        self.labels = None

    def _draw_labels(self) -> None:
        self.labels = _draw_from(self.loglik, self.uniforms)
        self.select = self.rows + self.labels

    def begin(self, x: torch.Tensor, k: int) -> np.ndarray:
        z = self.inner.begin(x.repeat_interleave(self.l, dim=0), k)  # (k, n * L)
        z = torch.from_numpy(z).reshape(k, self.n, self.l).permute(1, 2, 0)  # (n, L, k)
        bits = x.reshape(self.n, -1)[:, :k]
        mixed = _mixture_logits(z, bits)  # (n, k)
        self.loglik = _pixel_log_lik(z, bits).sum(-1).numpy()  # as _prefix_log_lik, from the logits at hand
        self._draw_labels()
        return mixed.T.numpy()

    def logit(self, p: int) -> np.ndarray:
        drawn = self.inner.logit(p)
        # An ensemble's rows may each draw from one member (EnsembleCache): the labels are weighed by the mixture's
        self.z = getattr(self.inner, "mixed", drawn).reshape(self.n, self.l)
        return drawn[self.select]  # each image under its own label

    def put(self, p: int, bits: np.ndarray) -> None:
        self.inner.put(p, np.repeat(bits, self.l))
        self.last = mixed_logit(self.loglik, self.z)  # each label weighed by p(label | x_<p)
        self.loglik += _log_sigmoid(np.where(bits[:, None], self.z, -self.z).astype(np.float64))  # (n, L)

    def shown(self, p: int) -> np.ndarray:
        """The mixture's logit of P(pixel p = 1 | pixels before it), after put(p)."""
        return self.last

    def reorder(self, index: np.ndarray) -> None:
        raise NotImplementedError("MixtureSteps is not resampled: complete draws each candidate's label up front")


class GuidedSteps:
    """The StepCache of classifier-free guidance [4]: every image under its label and under "no label".

    Its logits are (1 + w) z_label - w z_none; both copies see the same pixels.
    """

    def __init__(self, make_steps, labels: torch.Tensor, n_labels: int, guidance: float):
        self.n, self.w = len(labels), guidance
        none = torch.full_like(labels, n_labels)  # the embedding row of "no label"
        self.inner = make_steps(2 * self.n, torch.cat([labels, none]))  # row i: image i under its label; n + i: none

    def _guided(self, z: np.ndarray) -> np.ndarray:
        return ((1 + self.w) * z[..., :self.n] - self.w * z[..., self.n:]).astype(np.float32)

    def begin(self, x: torch.Tensor, k: int) -> np.ndarray:
        return self._guided(self.inner.begin(x.repeat(2, 1, 1, 1), k))  # (k, n)

    def logit(self, p: int) -> np.ndarray:
        return self._guided(self.inner.logit(p))

    @property
    def row_logits(self):
        """StepCache.row_logits (cached.py), where the inner cache has it, else None."""
        inner = getattr(self.inner, "row_logits", None)
        if inner is None:
            return None
        return lambda p, stop, guess: self._guided(inner(p, stop, np.concatenate([guess, guess], 1)))

    def put(self, p: int, bits: np.ndarray) -> None:
        self.inner.put(p, np.concatenate([bits, bits]))

    def reorder(self, index: np.ndarray) -> None:
        self.inner.reorder(np.concatenate([index, index + self.n]))

    @property
    def prefix_weight(self) -> np.ndarray:
        """An ensemble's candidates' (MemberSteps.prefix_weight): those of the copies under the label."""
        return self.inner.prefix_weight[:self.n]


class MemberSteps:
    """The StepCache of an ensemble (ensemble.py) at one member's cost: each image drawn from one member.

    The ensemble's p(x | y) is the mean of its members', a mixture: an exact sample of it is a member
    drawn from its posterior given the pixels `begin` is given, p(m | x_<k, y) ∝ p_m(x_<k | y) (uniform
    when none are), then the image from that member alone. So each member's own StepCache steps its
    images only. The logits are the drawn member's, the given pixels' the mixture's.

    Or each row's member is given (`member`), as complete gives its candidates a share of them each:
    then its weight as a draw of the ensemble, p_m(x_<k | y) / p(x_<k | y), is `prefix_weight`
    (log), and the candidates are resampled among those of their member only (reorder).
    """

    def __init__(self, model: Ensemble, n: int, h: int, w: int, label, orientation: int, plain: bool,
                 uniforms: np.ndarray | None = None, tied: np.ndarray | None = None, member: np.ndarray | None = None):
        self.model, self.n, self.size = model, n, (h, w)
        self.label, self.orientation, self.plain = label, orientation, plain
        self.uniforms = uniforms  # (n,) in [0, 1): one per row, for its member
        self.tied = np.arange(n) if tied is None else tied  # row r's member is drawn from row tied[r]'s posterior
        self.member = member  # (n,) each row's member: given, or drawn at begin
        self.prefix_weight = np.zeros(n)  # (n,) log p_m(x_<k | y) / p(x_<k | y) of a given member, else 0
        self.parts = []  # (rows, StepCache) for each member that draws any

    def begin(self, x: torch.Tensor, k: int) -> np.ndarray:
        h, w = self.size
        members = self.model.members
        if k:  # one pass for each distinct row: completion's candidates share their given pixels
            once, copy_of = _distinct(x.reshape(self.n, -1)[:, :k], self.label, self.orientation)
            label, orientation = _take_label(self.label, once), _take_label(self.orientation, once)
            z = torch.stack([_given_logits(m, x[once], k, label, orientation) for m in members], 1)[copy_of]  # (n, M, k)
            bits = x.reshape(self.n, -1)[:, :k]
            log_lik = _pixel_log_lik(z, bits).sum(-1).numpy()
            given = _mixture_logits(z, bits).T.numpy()
        else:
            log_lik, given = np.zeros((self.n, len(members))), np.empty((0, self.n), np.float32)
        if self.uniforms is not None:
            self.member = _draw_from(log_lik[self.tied], self.uniforms)
        else:
            mean = np.logaddexp.reduce(log_lik, axis=1) - math.log(len(members))
            self.prefix_weight = log_lik[self.tied, self.member] - mean[self.tied]
        self.parts = []
        for m, model in enumerate(members):
            rows = np.flatnonzero(self.member == m)
            if len(rows):
                steps = _step_cache(model, len(rows), h, w, _take_label(self.label, rows),
                                    _take_label(self.orientation, rows), self.plain)
                steps.begin(x[torch.from_numpy(rows)], k)
                self.parts.append((rows, steps))
        return given

    def logit(self, p: int) -> np.ndarray:
        z = np.empty(self.n, np.float32)
        for rows, steps in self.parts:
            z[rows] = steps.logit(p)
        return z

    @property
    def row_logits(self):
        """StepCache.row_logits (cached.py), where every member's cache has it, else None."""
        if not all(getattr(steps, "row_logits", None) for _, steps in self.parts):
            return None

        def row_logits(p: int, stop: int, guess: np.ndarray) -> np.ndarray:
            z = np.empty((stop - p, self.n), np.float32)
            for rows, steps in self.parts:
                z[:, rows] = steps.row_logits(p, stop, guess[:, rows])
            return z
        return row_logits

    def put(self, p: int, bits: np.ndarray) -> None:
        for rows, steps in self.parts:
            steps.put(p, bits[rows])

    def reorder(self, index: np.ndarray) -> None:
        if not np.array_equal(self.member[index], self.member):
            raise ValueError("MemberSteps resamples each row from the rows of its own member only")
        place = np.empty(self.n, int)  # where each row is in its member's cache
        for rows, _ in self.parts:
            place[rows] = np.arange(len(rows))
        for rows, steps in self.parts:
            steps.reorder(place[index[rows]])
        self.prefix_weight = self.prefix_weight[index]


@torch.no_grad()
def _given_logits(model, x: torch.Tensor, k: int, label, orientation) -> torch.Tensor:
    """(B, k) float32 on the CPU: the model's logits of the first k pixels of x, from one pass over the rows that hold them."""
    rows = (k - 1) // x.shape[-1] + 1  # a causal model's logits there see only these rows
    device = next(model.parameters()).device
    label = label.to(device) if torch.is_tensor(label) else label
    return _forward(model, x[:, :, :rows].to(device), label, orientation).float().cpu().flatten(1)[:, :k]


@torch.no_grad()
def _prefix_log_lik(model, x: torch.Tensor, k: int, orientation: int) -> np.ndarray:
    """(B, L) log p(the first k pixels of each image | label), for every label in one pass."""
    b = x.shape[0]
    n = n_labels(model)
    if k == 0:
        return np.zeros((b, n))
    once, copy_of = _distinct(x.reshape(b, -1)[:, :k])  # candidates share their prefix: one pass for each
    x = x[once]
    z = _given_logits(model, x.repeat_interleave(n, dim=0), k, torch.arange(n).repeat(len(x)), orientation)
    return _pixel_log_lik(z.reshape(len(x), n, k), x.reshape(len(x), -1)[:, :k]).sum(-1).numpy()[copy_of.numpy()]


# ---- the loop ----

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


def _label_uniforms(seed: int, n: int) -> np.ndarray:
    """(n,) uniforms for drawing labels (and resampling), apart from the pixels' own randomness."""
    return np.random.default_rng([seed, 1]).random(n)


def _member_uniforms(seed: int, n: int) -> np.ndarray:
    """(n,) uniforms for drawing an ensemble's members, apart from the pixels' and the labels'."""
    return np.random.default_rng([seed, 3]).random(n)


class _Drawing:
    """The state of N images being drawn, pixel by pixel in raster order of the drawing's frame.

    Pixels before `start` are given. From `start` on, a pixel is kept where `known` says so
    (its log-probability then adds to its image's log weight), else drawn: 1 where its logit is
    above its threshold. The batch may be split in shards, each with its own StepCache, drawn
    on two cores (the products release the GIL); every shard draws the same pixels it would alone.
    With resample_blocks, blocks of candidates are resampled as they are drawn (sequential Monte Carlo).
    """

    def __init__(self, shards: list[tuple[StepCache, slice]], x: torch.Tensor, start: int,
                 thresholds: np.ndarray, known: np.ndarray | None, labels: torch.Tensor | None = None):
        n, _, h, w = x.shape
        hw = h * w
        self.shards, self.start, self.hw = shards, start, hw
        self.labels = labels  # (N,) the labels drawn before the drawing began, if drawn so
        self.given = x.reshape(n, hw).T.numpy() > 0.5  # (HW, N)
        self.bits = np.zeros((hw, n), bool)
        self.bits[:start] = self.given[:start]
        self.logits = np.full((hw, n), np.nan, np.float32)  # of P(pixel = 1 | pixels before it), drawn with
        self.shown = np.full((hw, n), np.nan, np.float32)  # what the frames show: the mixture's, for one
        self.log_weight = np.zeros(n)
        self.thresholds, self.known = thresholds, known  # known: (HW, N) bool, or None for a prefix
        self.width, self.blocks = w, []  # blocks: see resample_blocks
        single_threaded_blas()
        for steps, cols in shards:
            self.shown[:start, cols] = self.logits[:start, cols] = steps.begin(x[cols], start)

    def _run(self, steps: StepCache, cols: slice, start: int, stop: int) -> None:
        row_logits = getattr(steps, "row_logits", None)
        if row_logits is not None and cols.stop - cols.start <= GUESS_UP_TO and not hasattr(steps, "shown"):
            p = start
            while p < stop:
                end = min(stop, (p // self.width + 1) * self.width)
                self._run_row(steps, row_logits, cols, p, end)
                p = end
                if self.blocks and p % self.width == 0 and p < self.hw:  # a row is done
                    self._resample(steps, cols, p // self.width - 1)
            return
        bits, logits, thresholds = self.bits[:, cols], self.logits[:, cols], self.thresholds[:, cols]
        known = None if self.known is None else self.known[:, cols]
        shown = getattr(steps, "shown", None)
        log_weight = self.log_weight[cols]
        for p in range(start, stop):
            logits[p] = z = steps.logit(p)  # (n,)
            drawn = z > thresholds[p]
            if known is not None and known[p].any():
                given = self.given[p, cols]
                drawn = np.where(known[p], given, drawn)
                log_weight += np.where(known[p], _log_sigmoid(np.where(given, z, -z)), 0)
            bits[p] = drawn
            steps.put(p, drawn)
            self.shown[p, cols] = z if shown is None else shown(p)
            if self.blocks and (p + 1) % self.width == 0 and p + 1 < self.hw:  # a row is done
                self._resample(steps, cols, p // self.width)

    def _run_row(self, steps: StepCache, row_logits, cols: slice, start: int, stop: int) -> None:
        """Draw pixels start .. stop - 1 of one row as _run does, by guessing them [5]: the same pixels.

        The row's logits come from one pass over its pixels at once (row_logits), given a guess of
        them: the row above at first, then what the last pass drew. A pixel's logit is exact where
        the guesses before it in the row were right, so each pass keeps the pixels up to and with
        the first one guessed wrong (in any image), at least one; a digit's rows take about two
        passes each instead of 28 steps.
        """
        bits, logits, thresholds = self.bits[:, cols], self.logits[:, cols], self.thresholds[:, cols]
        known = None if self.known is None else self.known[:, cols]
        given = self.given[:, cols]
        above = start - self.width
        guess = bits[above:stop - self.width] if above >= 0 else np.zeros((stop - start, bits.shape[1]), bool)
        p = start
        while p < stop:
            z = row_logits(p, stop, guess)  # (stop - p, n)
            drawn = z > thresholds[p:stop]
            if known is not None:
                drawn = np.where(known[p:stop], given[p:stop], drawn)
            wrong = np.flatnonzero((drawn[:-1] != guess[:-1]).any(1))
            q = p + (wrong[0] + 1 if len(wrong) else stop - p)  # logits[p:q] are exact
            logits[p:q] = self.shown[p:q, cols] = z[:q - p]
            bits[p:q] = drawn[:q - p]
            if known is not None:
                self.log_weight[cols] += np.where(known[p:q], _log_sigmoid(np.where(given[p:q], z[:q - p], -z[:q - p])),
                                                  0).sum(0)
            for r in range(p, q):
                steps.put(r, bits[r])
            guess, p = drawn[q - p:], q

    def resample_blocks(self, cuts, uniforms: np.ndarray) -> None:
        """Resample candidates as they are drawn: after each row, each block whose ESS is below RESAMPLE_BELOW.

        A block is the candidates between two consecutive cuts (N,) or shard bounds, so that each shard
        resamples its own rows, in its own thread, without moving rows between caches. Its candidates are
        chosen by systematic resampling on their weights [3] and their whole state copied: the pixels, the
        logits, the labels and the StepCache's rows (StepCache.reorder); not the thresholds, so that copies
        draw apart. Each then gets the log of the block's mean weight, which keeps the weights comparable
        between blocks: the final resampling over all of a group's candidates stays exact as they grow.

        Args:
            cuts: where blocks end, in 0..N (e.g. between groups); the shard bounds are added.
            uniforms: (H, blocks) in [0, 1): one per row and block.
        """
        bounds = {0, *cuts} | {b for _, cols in self.shards for b in (cols.start, cols.stop)}
        bounds = sorted(b for b in bounds if 0 <= b <= len(self.log_weight))
        self.blocks = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
        if uniforms.shape[1] < len(self.blocks):
            raise ValueError(f"{len(self.blocks)} blocks need as many uniforms a row, got {uniforms.shape[1]}")
        self.uniforms, self.resamplings = uniforms, np.zeros(len(self.blocks), int)
        # Once a block has no unknown pixel left to draw, resampling would only drop candidates: the
        # final resampling does it once. last[b]: the last position where block b draws a pixel.
        unknown = ~self.known
        last = np.where(unknown.any(0), self.hw - 1 - np.argmax(unknown[::-1], axis=0), -1)  # (N,)
        self.last = [int(last[block].max()) for block in self.blocks]

    def _resample(self, steps: StepCache, cols: slice, row: int) -> None:
        """Resample the blocks of one shard whose ESS has fallen below RESAMPLE_BELOW of their size."""
        index = np.arange(cols.stop - cols.start)  # row r of the shard becomes a copy of row index[r]
        for b, block in enumerate(self.blocks):
            if block.start < cols.start or block.stop > cols.stop or self.last[b] < (row + 1) * self.width:
                continue  # another shard's, or nothing left to draw
            lw = self.log_weight[block]
            wts = np.exp(lw - lw.max())
            m = len(wts)
            if wts.sum() ** 2 >= RESAMPLE_BELOW * m * (wts ** 2).sum():
                continue
            points = (self.uniforms[row, b] + np.arange(m)) / m  # systematic: m evenly spaced points, one uniform
            chosen = np.minimum(np.searchsorted(np.cumsum(wts / wts.sum()), points, side="right"), m - 1)
            index[block.start - cols.start:block.stop - cols.start] = chosen + (block.start - cols.start)
            self.log_weight[block] = lw.max() + np.log(wts.mean())
            self.resamplings[b] += 1
        moved = np.flatnonzero(index != np.arange(len(index)))
        if not len(moved):
            return
        steps.reorder(index)
        to, source = cols.start + moved, cols.start + index[moved]
        for a in (self.bits, self.logits, self.shown):
            a[:, to] = a[:, source]
        if self.labels is not None:
            self.labels[torch.from_numpy(to)] = self.labels[torch.from_numpy(source)]

    def frames(self, every: int) -> Iterator[int]:
        """Draw the pixels from start on, yielding how many are final after every `every` of them."""
        yield self.start
        for start in range(self.start, self.hw, every):
            stop = min(start + every, self.hw)
            if len(self.shards) == 1:
                self._run(*self.shards[0], start, stop)
            else:  # the last shard here, the others on the pool
                futures = [_workers().submit(self._run, s, c, start, stop) for s, c in self.shards[:-1]]
                self._run(*self.shards[-1], start, stop)
                for f in futures:
                    f.result()
            yield stop


def _workers() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=max(1, (os.cpu_count() or 1) - 1), thread_name_prefix="pixelcnn")
    return _pool


def _shards(n: int, shards: int | None, rows_per_image: int = 1) -> list[slice]:
    """How the batch is split: in two halves from SHARD_MIN rows on (images x rows each), where there are two cores."""
    if shards is None:
        shards = 2 if n * rows_per_image >= SHARD_MIN and (os.cpu_count() or 1) >= 2 else 1
    shards = max(1, min(_whole("shards", shards, 1), n))
    bounds = np.linspace(0, n, shards + 1).round().astype(int)
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def _make_drawing(model, x, start, thresholds, known, label, orientation, plain, uniforms, shards,
                  mixture_steps=False, guidance=0.0, members=None, member_of=None):
    """A _Drawing of x (N, 1, H, W) in the model's frame, one StepCache per shard.

    For label=None on a labelled model, each image's label is drawn from its posterior given the
    first `start` pixels; with mixture_steps (and no guidance), by MixtureSteps, which also gives
    the mixture's probabilities of every pixel (at the cost of every label's pass); else from one
    pass first. With guidance, by GuidedSteps, towards each image's label.

    With members, (N,) uniforms, an ensemble draws each image from one member, drawn from its
    posterior given the first `start` pixels (and the image's label): by MemberSteps, at one
    member's cost; with mixture_steps (and no guidance), by every member's cache, which also gives
    the mixture's probabilities. The same images either way. With member_of, (N,) ints, each image
    is drawn from that member, by MemberSteps, and starts with the log weight of its given pixels
    (MemberSteps.prefix_weight).
    """
    n, _, h, w = x.shape
    mixture, label = _label(model, label)
    if guidance and label is None and not mixture:
        raise ValueError(f"guidance pushes towards a label: give one, or None for any digit, not {DROPPED!r}")
    drawn = None
    if mixture and (guidance or not mixture_steps):
        drawn = label = torch.from_numpy(_draw_from(_prefix_log_lik(model, x, start, orientation), uniforms))
        mixture = False
    per_image = label is not None and not mixture and torch.as_tensor(label).dim() == 1
    if per_image and len(label) != n:
        raise ValueError(f"label must be an int or a ({n},) tensor, got shape {tuple(torch.as_tensor(label).shape)}")

    if not isinstance(model, Ensemble):
        members = member_of = None

    def maker(u=None, fixed=None, copies=1):
        """make(rows, label): a StepCache; for an ensemble with u, each of `copies` copies of an image (rows
        image, image + len(u), ...) drawn from the member its first copy draws, at its uniform in u; with
        fixed, from that member."""
        def make(rows, lab):
            if fixed is not None:
                return MemberSteps(model, rows, h, w, lab, orientation, plain, member=np.tile(fixed, copies))
            if u is None:
                return _step_cache(model, rows, h, w, lab, orientation, plain)
            tied = np.tile(np.arange(len(u)), copies) if copies > 1 else None
            if mixture_steps and not guidance and not plain:  # the mixture shown: every member steps
                return model.step_cache(rows, h, w, lab, orientation, np.tile(u, copies), tied)
            return MemberSteps(model, rows, h, w, lab, orientation, plain, np.tile(u, copies), tied)
        return make

    parts = []
    for cols in _shards(n, shards, n_labels(model) if mixture else 2 if guidance else 1):
        u = None if members is None else members[cols]
        fixed = None if member_of is None else member_of[cols]
        if mixture:  # every label's copy of an image: its member is drawn given each label
            make = maker(None if u is None or plain else np.repeat(u, n_labels(model)))
            steps = MixtureSteps(make, cols.stop - cols.start, n_labels(model), uniforms[cols])
        elif guidance:
            lab = torch.as_tensor(label)
            steps = GuidedSteps(maker(u, fixed, copies=2), lab[cols] if per_image else lab.expand(cols.stop - cols.start),
                                n_labels(model), guidance)
        else:
            steps = maker(u, fixed)(cols.stop - cols.start, torch.as_tensor(label)[cols] if per_image else label)
        parts.append((steps, cols))
    drawing = _Drawing(parts, x, start, thresholds, known, drawn)
    if member_of is not None:  # each image's weight as a draw of the ensemble, for its given pixels
        for steps, cols in parts:
            drawing.log_weight[cols] += steps.prefix_weight
    return drawing


def _drawn_labels(drawing: _Drawing) -> torch.Tensor | None:
    if drawing.labels is not None:
        return drawing.labels.long()
    labels = [getattr(s, "labels", None) for s, _ in drawing.shards]
    return None if labels[0] is None else torch.from_numpy(np.concatenate(labels)).long()


def _frame(drawing: _Drawing, position: int, shape, orientation: int, cols=None, ess=None) -> SampleStep:
    """SampleStep of the images (or of the columns `cols` of the drawing), upright."""
    n, h, w = shape
    bits, shown = drawing.bits, drawing.shown
    labels = _drawn_labels(drawing)
    if cols is not None:
        bits, shown = bits[:, cols], shown[:, cols]
        labels = None if labels is None else labels[cols]
    images = torch.from_numpy(bits.T.astype(np.float32)).reshape(n, 1, h, w)
    # P(x = its value) = sigmoid(+logit) for a 1, sigmoid(-logit) for a 0; NaN logits stay NaN.
    probs = torch.sigmoid(torch.from_numpy(np.where(bits, shown, -shown).T.copy())).reshape(n, 1, h, w)
    return SampleStep(unorient(images, orientation), position, unorient(probs, orientation), labels, ess,
                      orientation)


# ---- generation and completion of a prefix ----

def _start(n, prefix, rows, pixels, image_size) -> tuple[torch.Tensor, int]:
    """The starting images (n, 1, H, W), upright, the given pixels set and the rest 0, and how many are given."""
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
    return prefix.expand(n, 1, h, w).clone(), k


def _stream(model, n, seed, prefix, rows, pixels, temperature, label, every, image_size, plain, orientation=0,
            shards=None, mixture_steps=False, guidance=0.0):
    n = _whole("n", n, 1)
    every = _whole("every", every, 1)
    temperature = _temperature(temperature)
    guidance = _guidance(model, guidance)
    orientation = _orientation(model, orientation)
    h, w = image_size
    drawing = _prefix_drawing(model, n, seed, prefix, rows, pixels, temperature, label, image_size, plain,
                              orientation, shards, mixture_steps, guidance, members=True)
    for position in drawing.frames(every):
        yield _frame(drawing, position, (n, h, w), orientation)


def _prefix_drawing(model, n, seed, prefix, rows, pixels, temperature, label, image_size, plain, orientation,
                    shards, mixture_steps=False, guidance=0.0, members=False) -> _Drawing:
    """The _Drawing of n images from the first pixels of prefix (rows or pixels of them) in the orientation's order.

    members: an ensemble draws each image from one member (_make_drawing); not where the drawing's
    logits must be the ensemble's own, as a proposal's are.
    """
    h, w = image_size
    x, k = _start(n, prefix, rows, pixels, image_size)
    x = orient(x, orientation)
    x.view(n, -1)[:, k:] = 0  # only the given pixels, in the drawing's order
    thresholds = _thresholds(n, h, w, seed, temperature)
    return _make_drawing(model, x, k, thresholds, None, label, orientation, plain, _label_uniforms(seed, n),
                         shards, mixture_steps, guidance, _member_uniforms(seed, n) if members else None)


def sample_stream(model, n: int, seed: int = 0, prefix: torch.Tensor | None = None, rows: int = 0,
                  pixels: int | None = None, temperature: float = 1.0, label=None, every: int = 28,
                  image_size: tuple[int, int] = (28, 28), orientation: int = 0,
                  shards: int | None = None, guidance: float = 0.0) -> Iterator[SampleStep]:
    """Draw n images, yielding the partial images as they grow.

    Args:
        model: maps (B, 1, H, W) images (and a label) to (B, 1, H, W) logits, causally.
            Sampling is fast if it has `step_cache` (cached.py), else it runs the full
            network once per pixel.
        n: how many images.
        seed: the same seed gives the same images.
        prefix: (1, 1, H, W) or (n, 1, H, W) images in {0, 1} to complete.
        rows: keep the first `rows` rows of prefix (0..H) ...
        pixels: ... or the first `pixels` pixels in the drawing's order (0..H*W); give one of them.
        temperature: logits are divided by it; 0 always takes the more likely value.
        label: PixelCNN takes only None. A labelled GatedPixelCNN: None for any digit (the
            mixture over its labels: each image's label is drawn from its posterior given the
            prefix, uniform without one), a digit, one digit per image as an (n,) tensor, or
            DROPPED for its own "no label".
        every: yield after every `every` new pixels.
        image_size: (H, W).
        orientation: the order to draw in, for a model trained on several (orders.py): 0 is
            raster order, 1 bottom rows first, 2 left columns first, 3 right columns first.
            The prefix's rows (or pixels) are counted in that order; images stay upright.
        shards: split the batch over this many threads (default: two from SHARD_MIN images on,
            where there are two cores). The images do not depend on it.
        guidance: w >= 0, for a labelled model: draw each pixel from classifier-free guidance,
            P(x_i | x_<i, label)^(1 + w) P(x_i | x_<i, no label)^(-w), normalised; 0 (the
            default) samples the model itself. With label=None each image's label is drawn
            as without guidance, then guided towards. Costs two passes a pixel.
    Yields:
        SampleStep(images, position, probs, labels): first with the given pixels only, then
        after every `every` drawn pixels, and always at the end (position == H * W), once.
        probs are the model's own (temperature 1), for given and drawn pixels alike: for
        label=None on a labelled model, the mixture's, which costs every label's pass (sample,
        which shows no probabilities, draws the same images at the cost of one label's); for an
        ensemble, the mixture's over its members, which costs every member's steps (sample draws
        the same images at one member's: each image from one member, drawn from its posterior
        given the prefix); with guidance, the guided ones the pixels are drawn from (for an
        ensemble, its member's guided ones, at one member's cost).
        labels: the labels drawn, for label=None.
    Raises:
        ValueError, at the call, for a bad n, prefix, rows, pixels, temperature, every, label or guidance.
    """
    stream = _stream(model, n, seed, prefix, rows, pixels, temperature, label, every, image_size, False,
                     orientation, shards, mixture_steps=True, guidance=guidance)
    return _checked(stream)


def _checked(stream: Iterator[SampleStep]) -> Iterator[SampleStep]:
    """Run a generator to its first yield now, so that its checks raise at the call."""
    first = next(stream)

    def frames():
        yield first
        yield from stream

    return frames()


def _last(stream: Iterator[SampleStep]) -> SampleStep:
    for step in stream:
        pass
    return step


def sample(model, n: int, seed: int = 0, prefix: torch.Tensor | None = None, rows: int = 0,
           pixels: int | None = None, temperature: float = 1.0, label=None,
           image_size: tuple[int, int] = (28, 28), orientation: int = 0, shards: int | None = None,
           guidance: float = 0.0) -> torch.Tensor:
    """Draw n images from the model: sample_stream run to the end (see it for the arguments).

    Returns:
        (n, 1, H, W) float images in {0, 1}, on the CPU.
    """
    h, w = image_size
    return _last(_stream(model, n, seed, prefix, rows, pixels, temperature, label, h * w, image_size, False,
                         orientation, shards, guidance=guidance)).images


def sample_plain(model, n: int, seed: int = 0, prefix: torch.Tensor | None = None, rows: int = 0,
                 pixels: int | None = None, temperature: float = 1.0, label=None,
                 image_size: tuple[int, int] = (28, 28), orientation: int = 0,
                 guidance: float = 0.0) -> torch.Tensor:
    """sample(), but running the full network once per pixel: the slow reference."""
    h, w = image_size
    return _last(_stream(model, n, seed, prefix, rows, pixels, temperature, label, h * w, image_size, True,
                         orientation, shards=1, guidance=guidance)).images


# ---- completion of any known pixels ----

def _known_mask(known, n: int, h: int, w: int) -> torch.Tensor:
    """known as an (n or 1, H * W) bool tensor, upright, or a ValueError that says what was expected."""
    expected = f"a bool mask of shape ({h}, {w}) or ({n}, 1, {h}, {w})"
    k = torch.as_tensor(known)
    if k.dtype != torch.bool:
        raise ValueError(f"known must be {expected} (True where a pixel is kept), got dtype {k.dtype}")
    if tuple(k.shape) == (h, w):
        k = k[None, None]
    if k.dim() != 4 or k.shape[1] != 1 or k.shape[0] not in (1, n) or tuple(k.shape[2:]) != (h, w):
        raise ValueError(f"known must be {expected}, got shape {tuple(k.shape)}")
    return k.cpu()


def _known_prefix(known: torch.Tensor) -> torch.Tensor:
    """(B,) how many pixels in raster order are known before the first unknown one."""
    flat = known.reshape(len(known), -1)
    return (~flat).long().cumsum(1).eq(0).sum(1)


def best_orientation(model, known) -> int:
    """The orientation (orders.py) of a model that puts the most known pixels first, 0 on a tie."""
    known = torch.as_tensor(known)
    known = known[None, None] if known.dim() == 2 else known
    firsts = [int(_known_prefix(orient(known, o)).sum()) for o in range(_n_orientations(model))]
    return int(np.argmax(firsts))


def exact_orientation(model, known) -> int | None:
    """The orientation in which a model reads every known pixel before every unknown one, the
    same number of them in each mask (complete then samples p(unknown | known) exactly); None if none.

    Args:
        known: bool, (H, W) or (n, 1, H, W): True where a pixel is kept.
    """
    known = torch.as_tensor(known)
    known = known[None, None] if known.dim() == 2 else known
    o = best_orientation(model, known)
    kn = orient(known, o)
    k = int(_known_prefix(kn).min())
    return o if bool((kn.reshape(len(kn), -1).sum(1) == k).all()) else None


def _candidate_labels(label, n: int, groups: int, group_of: torch.Tensor):
    """A label given per image, (n,), as one per candidate; any other label as it is."""
    if label is None or isinstance(label, str) or torch.as_tensor(label).dim() == 0:
        return label
    label = torch.as_tensor(label)
    if len(label) != n or groups == 1 and not bool((label == label[0]).all()):
        raise ValueError(f"label must be an int, or one per image ({n},) for distinct images; got {label.tolist()}")
    return label[group_of] if groups > 1 else label[0]


def _picks(log_weight: np.ndarray, n: int, uniforms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which candidate each of n outputs shows, resampled by weight; and each group's effective sample size.

    Args:
        log_weight: (groups, per) each group's candidates, candidate c of group g at g * per + c.
        uniforms: (n,). One group: systematic resampling, n evenly spaced points from the first
            uniform; else (groups = n) one candidate from each group.
    """
    groups, per = log_weight.shape
    wts = np.exp(log_weight - log_weight.max(1, keepdims=True))
    ess = wts.sum(1) ** 2 / (wts ** 2).sum(1)
    if groups == 1:
        points = (uniforms[0] + np.arange(n)) / n
        chosen = np.minimum(np.searchsorted(np.cumsum(wts[0] / wts[0].sum()), points, side="right"), per - 1)
    else:
        chosen = _draw_from(log_weight, uniforms) + np.arange(n) * per
    return chosen, ess


def _log_density(model, images: torch.Tensor, label, batch: int = 256) -> torch.Tensor:
    """(B,) log p(image | label) read top first, float64, `batch` images a pass; label a digit, DROPPED, one
    per image, or None for an unlabelled model."""
    per_image = torch.is_tensor(label) and label.dim() == 1
    return torch.cat([-surprise(model, images[i:i + batch], label[i:i + batch] if per_image else label)
                      .nats.double() for i in range(0, len(images), batch)])


def _member_shares(model, total: int, per: int) -> np.ndarray | None:
    """For an ensemble, each candidate's member: an equal share of each group of `per` candidates for each
    member (groups of candidates are consecutive); None for any other model, or groups too small to share."""
    if not isinstance(model, Ensemble) or per < len(model.members):
        return None
    return np.arange(total) % per * len(model.members) // per


def _proposed(model, proposal, n, image, known, groups, per, seed, temperature, label, every, image_size, shards,
              guidance):
    """complete(proposal=...): candidates drawn exactly by the proposal, weighed by the model, n resampled.

    With q the proposal and p the model, a candidate (y, x) with label y (drawn from q's posterior
    given the known pixels, for label=None) has q(y, unknown | known) = p(y) q(x | y) / q(known):
    its weight p(y) p(x | y) / q(y, unknown | known) is p(x | y) / q(x | y) up to a constant. The
    drawing has every logit of q(x | y) (the known pixels' from its first pass); p(x | y) takes a pass.

    An ensemble's p(x | y) = mean_m p_m(x | y) is the marginal of p(m) p_m(x | y), p(m) uniform: so each
    candidate is also given a member m, an equal share of each group's candidates each, and weighed by
    p_m(x | y) / q(x | y), which takes one member's pass a candidate, not every member's (as complete
    does without a proposal, MemberSteps).
    """
    h, w = image_size
    if guidance:
        raise ValueError("guidance does not go with a proposal: the candidates are weighed by the model as it is")
    if n_labels(proposal) != n_labels(model):
        raise ValueError(f"the proposal must know the model's labels ({n_labels(model)} of them), it knows "
                         f"{n_labels(proposal)}")
    o = exact_orientation(proposal, known)
    if o is None:
        raise ValueError("the proposal cannot complete these pixels exactly: its known pixels must all come before "
                         "the unknown ones in an order it reads in (top first; with four orientations also bottom, "
                         "left or right first)")
    k = int(_known_prefix(orient(known[:1], o)))
    mixture, _ = _label(model, label)
    total = per * groups
    group_of = torch.arange(total) // per
    label = _candidate_labels(label, n, groups, group_of)
    drawing = _prefix_drawing(proposal, total, seed, image.expand(groups, 1, h, w)[group_of], 0, k, temperature,
                              label, image_size, False, o, shards)
    shown = np.arange(n) if groups == 1 else np.arange(n) * per  # while drawing: the first candidate of each group
    for position in drawing.frames(every):
        if position < h * w:
            yield _frame(drawing, position, (n, h, w), o, cols=shown)
    z = drawing.logits.astype(np.float64)
    log_q = _log_sigmoid(np.where(drawing.bits, z, -z)).sum(0)  # (total,) log q(x | y), at temperature 1
    images = unorient(torch.from_numpy(drawing.bits.T.astype(np.float32)).reshape(total, 1, h, w), o)
    label = _drawn_labels(drawing) if mixture else label
    member_of = _member_shares(model, total, per)
    if member_of is None:
        log_p = _log_density(model, images, label)
    else:
        log_p = torch.empty(total, dtype=torch.float64)
        for m, member in enumerate(model.members):
            rows = np.flatnonzero(member_of == m)
            log_p[rows] = _log_density(member, images[rows], _take_label(label, rows))
    log_weight = log_p.numpy() - log_q
    chosen, ess = _picks(log_weight.reshape(groups, per), n, _label_uniforms(seed, total + n)[total:])
    last = _frame(drawing, h * w, (n, h, w), o, cols=chosen, ess=torch.from_numpy(ess))
    yield last._replace(resamplings=torch.zeros(groups, dtype=torch.long))  # resampled once, at the end


def _complete(model, n, image, known, seed, temperature, label, candidates, every, image_size, shards, resample,
              guidance=0.0, proposal=None):
    h, w = image_size
    n = _whole("n", n, 1)
    every = _whole("every", every, 1)
    temperature = _temperature(temperature)
    guidance = _guidance(model, guidance)
    shape = f"(1, 1, {h}, {w}) or ({n}, 1, {h}, {w})"
    image = _binary_images(image, "image", shape)
    if image.shape[0] not in (1, n) or tuple(image.shape[2:]) != (h, w):
        raise ValueError(f"image must have shape {shape}, got {tuple(image.shape)}")
    known = _known_mask(known, n, h, w)
    if known.all():
        raise ValueError("nothing to complete: every pixel is known (mark some pixels unknown, False in known)")
    if candidates is None:
        candidates = max(n, 128)
    candidates = _whole("candidates", candidates, 1)
    if candidates < n:
        raise ValueError(f"candidates must be at least n ({n}), got {candidates}")
    groups = 1 if image.shape[0] == 1 and known.shape[0] == 1 else n  # a pool of candidates per distinct input
    per = candidates // groups  # candidates per group
    if proposal is not None:
        yield from _proposed(model, proposal, n, image, known, groups, per, seed, temperature, label, every,
                             image_size, shards, guidance)
        return
    o = best_orientation(model, known)
    x, kn = orient(image.expand(groups, 1, h, w), o), orient(known.expand(groups, 1, h, w), o)
    first = _known_prefix(kn)  # (groups,)
    k = int(first.min())
    if bool((kn.reshape(groups, -1).sum(1) == k).all()):
        # Every known pixel comes first, k of them in each image: sample p(unknown | known) exactly.
        yield from _stream(model, n, seed, unorient(x, o), 0, k, temperature, label, every, image_size, False, o,
                           shards, guidance=guidance)
        return

    total = per * groups
    group_of = torch.arange(total) // per  # candidate c draws for group c // per
    xc, kc = x[group_of], kn[group_of]  # (total, 1, H, W) in the drawing's frame
    xc = xc * kc  # the unknown pixels start at 0
    mixture, lab = _label(model, label)
    u = _label_uniforms(seed, total + n)
    if mixture:  # each candidate's label from its posterior given the known pixels before position k
        log_lik = _prefix_log_lik(model, x, k, o)  # (groups, L)
        lab = torch.from_numpy(_draw_from(log_lik[group_of.numpy()], u[:total]))
    else:
        lab = _candidate_labels(lab, n, groups, group_of)
    thresholds = _thresholds(total, h, w, seed, temperature)
    # An ensemble's candidates: an equal share of each group's from each member, weighed as draws of the
    # ensemble: one member's steps a candidate, not every member's
    member_of = _member_shares(model, total, per)
    drawing = _make_drawing(model, xc, k, thresholds, kc.reshape(total, -1).T.numpy(), lab, o, False, u[:total],
                            shards, guidance=guidance, member_of=member_of)
    if mixture:  # each candidate's label, copied with it when it is resampled
        drawing.labels = lab.clone()
    if resample:  # blocks: a group's candidates in each half of the batch, whatever the shards (1 or 2)
        cuts = [*range(0, total + 1, per), *np.linspace(0, total, 3).round().astype(int).tolist()]
        if member_of is not None:  # and of one member: each is resampled among its member's own
            cuts += (np.flatnonzero(np.diff(member_of)) + 1).tolist()
        shares = 1 if member_of is None else len(model.members)
        columns = groups * shares + 1 + max(len(drawing.shards), 2)  # enough for every block, the same for 1 and 2 shards
        drawing.resample_blocks(cuts, np.random.default_rng([seed, 2]).random((h, columns)))
        group_of_block = np.array([block.start // per for block in drawing.blocks])
    resample_u = u[total:]  # (n,): one uniform per output

    for position in drawing.frames(every):
        chosen, ess = _picks(drawing.log_weight.reshape(groups, per), n, resample_u)
        step = _frame(drawing, position, (n, h, w), o, cols=chosen, ess=torch.from_numpy(ess))
        if resample:
            step = step._replace(resamplings=torch.from_numpy(np.bincount(group_of_block, drawing.resamplings,
                                                                           groups)).long())
        yield step


def complete_stream(model, n: int, image: torch.Tensor, known, seed: int = 0, temperature: float = 1.0, label=None,
                    candidates: int | None = None, every: int = 28, image_size: tuple[int, int] = (28, 28),
                    shards: int | None = None, resample: bool = True, guidance: float = 0.0,
                    proposal=None) -> Iterator[SampleStep]:
    """Complete the unknown pixels of an image n ways, yielding frames as they grow (see complete).

    While candidates are drawn, each frame shows the n that the current weights would pick
    (they can change until the last frame), with each group's effective sample size in
    SampleStep.ess and how often it was resampled in SampleStep.resamplings; frames come in the
    order the model draws, from the kept side. Where the known pixels come first (no candidates),
    the probabilities shown are those the pixels are drawn with: for label=None the drawn
    label's, for an ensemble the drawn member's.
    """
    return _checked(_complete(model, n, image, known, seed, temperature, label, candidates, every, image_size,
                              shards, resample, guidance, proposal))


def complete(model, n: int, image: torch.Tensor, known, seed: int = 0, temperature: float = 1.0, label=None,
             candidates: int | None = None, image_size: tuple[int, int] = (28, 28),
             shards: int | None = None, resample: bool = True, guidance: float = 0.0, proposal=None) -> torch.Tensor:
    """Keep the known pixels of an image exactly and draw the others, n ways.

    When every known pixel comes before every unknown one (in raster order, or in one of the
    orientations of a model trained on several), the completions are exact samples of
    p(unknown | known). Otherwise `candidates` completions are drawn in the order that puts the
    most known pixels first, each weighted by the probability of the known pixels after its
    first unknown one, and n are resampled by weight (SIR): exact as candidates grows. At
    temperature 1 only; another temperature changes the proposal, not the weights. While they
    are drawn, after each row, the candidates of a block (those of one distinct image in one half
    of the batch) whose effective sample size is below RESAMPLE_BELOW of them are resampled
    (sequential Monte Carlo), while pixels remain to be drawn: more of them count, and the
    completions differ more.

    Args:
        model: a PixelCNN or GatedPixelCNN (with n_orientations 4, it may draw in another order).
        n: how many completions.
        image: (1, 1, H, W) or (n, 1, H, W) in {0, 1}; its unknown pixels' values are ignored.
        known: bool, (H, W) or (n, 1, H, W): True where a pixel is kept.
        seed: the same seed gives the same completions.
        temperature: as in sample.
        label: as in sample; None for a labelled model: the label is drawn from its posterior
            given the known pixels that come first.
        candidates: how many completions to draw and resample from (default max(n, 128));
            with distinct images, candidates // n for each.
        shards: as in sample; the completions are the same for 1 and 2.
        resample: False weighs the candidates only at the end (plain SIR), to compare.
        guidance: as in sample: the completions are of the guided model, the known pixels
            weighed by it too; with label=None, towards each candidate's label drawn from its posterior.
        proposal: another model, with the same labels, that completes these pixels exactly (they
            come first in one of its orientations): it draws the candidates, from the kept side,
            and the model weighs each by p(x | y) / q(x | y), its density (read top first) over the
            proposal's, y the candidate's label; n are resampled by weight (SIR; no resampling on
            the way). A model that reads only top first completes the bottom, left or right so,
            exact as candidates grows, with proposals that already fit the kept side. Not with guidance.
    Returns:
        (n, 1, H, W) float images in {0, 1}. complete_stream's last frame also carries each
        group's effective sample size (sum w)^2 / sum w^2 of the final weights (those since the
        last resampling of each block, see SampleStep.ess) and how many times it was resampled.
    Raises:
        ValueError: a mask with no unknown pixel, a mask or image of the wrong shape or type,
            an image that is not binary, candidates < n, a bad guidance, a proposal that cannot
            complete the mask exactly or knows other labels.
    """
    h, w = image_size
    return _last(_complete(model, n, image, known, seed, temperature, label, candidates, h * w, image_size,
                           shards, resample, guidance, proposal)).images


# ---- probabilities of given images ----

def _logits(model, images, label, orientation=0) -> tuple[torch.Tensor, torch.Tensor]:
    """The images (B, 1, H, W) and the logits of P(pixel = 1 | pixels before it), upright.

    For label=None on a labelled model, the mixture's, from one pass over every label.
    """
    x = _binary_images(images, "images", "(B, 1, H, W)")
    mixture, label = _label(model, label)
    orientation = _orientation(model, orientation)
    device = next(model.parameters()).device
    xo = orient(x, orientation)
    with torch.no_grad():
        if not mixture:
            logits = _forward(model, xo.to(device), label, orientation).float().cpu()
        else:
            n = n_labels(model)
            z = _forward(model, xo.repeat_interleave(n, dim=0).to(device), torch.arange(n).repeat(len(x)),
                         orientation).float().cpu()
            logits = _mixture_logits(z.reshape(len(x), n, -1), xo.reshape(len(x), -1)).reshape(xo.shape)
    return x, unorient(logits, orientation)  # (B, 1, H, W)


def probabilities(model, images: torch.Tensor, label=None, orientation: int = 0) -> torch.Tensor:
    """P(pixel = 1 | the pixels before it) at every pixel of the images, in one forward pass.

    Args:
        images: (B, 1, H, W) values in {0, 1}.
        label: as in sample: for a labelled model None is the mixture over its labels.
        orientation: the order the pixels are read in (orders.py).
    Returns:
        (B, 1, H, W) probabilities, on the CPU.
    """
    return torch.sigmoid(_logits(model, images, label, orientation)[1])


def surprise(model, images: torch.Tensor, label=None, orientation: int = 0) -> Surprise:
    """-log P(pixel = its value | pixels before it) at every pixel, and the totals.

    Args:
        images: (B, 1, H, W) values in {0, 1}.
        label: as in sample: for a labelled model None is the mixture over its labels, whose
            total is -log p(x) with p(x) the mean of p(x | label) (marginal_nats).
        orientation: the order the pixels are read in (orders.py).
    Returns:
        Surprise(map (B, 1, H, W) in nats, nats (B,) summed over each image, bits_per_pixel (B,)).
    """
    x, logits = _logits(model, images, label, orientation)
    nats_map = F.binary_cross_entropy_with_logits(logits, x, reduction="none")  # (B, 1, H, W)
    nats = nats_map.sum(dim=(1, 2, 3))  # (B,)
    return Surprise(nats_map, nats, nats / math.log(2) / x[0].numel())


def label_nats(model, images: torch.Tensor, batch_size: int = 100, orientation: int = 0) -> torch.Tensor:
    """-log p(image | label) under every label of a labelled model, in nats.

    Args:
        images: (B, 1, H, W) values in {0, 1}.
        batch_size: images x labels per forward pass.
        orientation: the order the pixels are read in (orders.py).
    Returns:
        (B, n_labels), on the CPU.
    """
    n = n_labels(model)
    if not n:
        raise ValueError("the model has no labels")
    x = _binary_images(images, "images", "(B, 1, H, W)")
    out = []
    for chunk in x.split(max(1, batch_size // n)):  # each image once per label, in one pass
        labels = torch.arange(n).repeat(len(chunk))
        nats = surprise(model, chunk.repeat_interleave(n, dim=0), label=labels, orientation=orientation).nats
        out.append(nats.view(len(chunk), n))
    return torch.cat(out)


def mean_nats(nats: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """-log of the mean of p over `dim`, given -log p: the nats of an equal mixture.

    The mixture may be over labels (p(x) = mean_y p(x | y)), orientations or models; each
    is a density of its own where every term is.

    Returns:
        `nats` without `dim`, in float64.
    """
    nats = nats.double()
    return math.log(nats.shape[dim]) - torch.logsumexp(-nats, dim=dim)


def label_scores(per_label: torch.Tensor, labels: torch.Tensor, pixels: int) -> dict:
    """What per-label nats (N, n_labels), -log p(x | y) of N digits, say of a labelled density.

    Returns:
        bayes_accuracy: the share of the digits argmax_y p(x | y) gives their true label.
        test_loss_marginal: -log p(x) with p(x) the mean of p(x | y), in nats per pixel.
        test_loss_given: -log p(x | the true label), in nats per pixel.
        label_nats: -log p(the true label | x) with p(y) uniform, in nats per digit.
    """
    per_label = per_label.double()
    given = per_label.gather(1, labels[:, None])[:, 0]
    marginal = mean_nats(per_label)
    return {"bayes_accuracy": float((per_label.argmin(1) == labels).double().mean()),
            "test_loss_marginal": float(marginal.mean()) / pixels,
            "test_loss_given": float(given.mean()) / pixels,
            "label_nats": float((given - marginal).mean()) + math.log(per_label.shape[1])}


def marginal_nats(model, images: torch.Tensor, batch_size: int = 100, orientation: int = 0) -> torch.Tensor:
    """-log p(image) of a labelled model, p(image) = the mean over its labels of p(image | label).

    This is the unconditional likelihood with every label equally likely beforehand (p(label) =
    1 / n_labels), an alternative to the model's own unlabelled p(image) (label=DROPPED).

    Returns:
        (B,) nats, on the CPU.
    """
    return mean_nats(label_nats(model, images, batch_size, orientation)).float()


def orientation_nats(model, images: torch.Tensor, batch_size: int = 100) -> torch.Tensor:
    """-log p_o(image) in each of the model's orientations o (orders.py), marginalised over its labels.

    Returns:
        (B, O) nats, on the CPU: column o is the model reading in orientation o.
    """
    per = []
    for o in range(_n_orientations(model)):
        if n_labels(model):
            per.append(marginal_nats(model, images, batch_size, orientation=o))
        else:
            x = _binary_images(images, "images", "(B, 1, H, W)")
            per.append(torch.cat([surprise(model, c, orientation=o).nats for c in x.split(batch_size)]))
    return torch.stack(per, dim=1)


def orders_nats(model, images: torch.Tensor, batch_size: int = 100) -> torch.Tensor:
    """-log p(image) with p the mean over the model's orientations (and labels) [Jain et al. 2020].

    p(x) = 1/O sum_o p_o(x), each p_o marginalised over the labels for a labelled model: a valid
    density of its own, usually better than any one order's.

    Returns:
        (B,) nats, on the CPU.
    """
    return mean_nats(orientation_nats(model, images, batch_size)).float()
