"""An ensemble: several independently trained models as one, p(x | y) = mean_m p_m(x | y).

Models trained alike from other starts err on different digits (docs/ablation.md, "Dropout"):
averaging their densities classifies and scores better than either. The ensemble is a model
like the others, so that sampling, completion, the heatmaps and the app take it as it is. For
each pixel it gives the mixture's own conditional, each member weighed by its posterior given
the pixels before it [1]:

    P(x_i = 1 | x_<i, y) = sum_m p(m | x_<i, y) P_m(x_i = 1 | x_<i, y),   p(m | x_<i, y) ∝ p_m(x_<i | y)

so that the product over the pixels is exactly the mean of the members' p(x | y). One forward
pass gives every pixel's: each member's logits, then the members' running log-likelihoods along
the raster order. The fast cache steps every member's own cache and mixes their logits the same
way, pixel by pixel. A labelled ensemble (its members share their labels) is a labelled model:
label=None is the mixture over labels and members alike.

Sampling needs less: the mixture is sampled exactly by drawing a member from its posterior given
the pixels kept, p(m | x_<k, y) ∝ p_m(x_<k | y) (uniform when none are), then the image from that
member alone, as the labels of one model are drawn (sampling.py). So pixelcnn.sample steps one
member's cache an image (sampling.MemberSteps); a stream, which shows the mixture's probabilities,
steps every member's and draws each pixel from the image's member (EnsembleCache with uniforms):
the same images.

Saved as any model is: config.json holds each member's config, model.safetensors every member's
weights (prefixed "members.0.", "members.1.", ...).

[1] The mixture of autoregressive models is autoregressive, with these weights; as for the labels
    of one model in sampling.py.
"""

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .cached import FullPasses
from .gated import GatedPixelCNN, GatedPixelCNNConfig
from .model import PixelCNN, PixelCNNConfig

MEMBER_TYPES = {  # model_type in a member's config -> (config class, model class)
    "pixelcnn": (PixelCNNConfig, PixelCNN),
    "gated_pixelcnn": (GatedPixelCNNConfig, GatedPixelCNN),
}


def pixel_log_lik(z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log P(pixel = its value) under each component, float64: z (B, K, P) logits, x (B, P) pixels in {0, 1}."""
    z = z.double()
    return -F.binary_cross_entropy_with_logits(z, x[:, None].double().expand_as(z), reduction="none")


def mixture_logits(z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The logits of P(x_i = 1 | x_<i) of an equal-weight mixture of K autoregressive components.

    Args:
        z: (B, K, P) each component's logits, pixels in drawing order.
        x: (B, P) the pixels, in {0, 1}.
    Returns:
        (B, P) float32: log P_mix(x_i = 1 | x_<i) - log P_mix(x_i = 0 | x_<i).
    """
    z = z.double()
    ll = pixel_log_lik(z, x)
    w = torch.log_softmax(ll.cumsum(-1) - ll, dim=1)  # log p(component | x_<i): (B, K, P)
    return (torch.logsumexp(w + F.logsigmoid(z), dim=1) - torch.logsumexp(w + F.logsigmoid(-z), dim=1)).float()


def draw_from(log_lik: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """(n,) indices drawn from the distributions softmax(log_lik) (n, K), by inverse CDF at the uniforms (n,).

    The labels or members from their posteriors, or a group's candidate from its weights.
    """
    post = np.exp(log_lik - log_lik.max(1, keepdims=True))
    cdf = np.cumsum(post / post.sum(1, keepdims=True), axis=1)
    return np.minimum((cdf < uniforms[:, None]).sum(1), log_lik.shape[1] - 1)


def log_sigmoid(z: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0, -z)


def mixed_logit(log_weight: np.ndarray, z: np.ndarray) -> np.ndarray:
    """One pixel's mixture_logits, in numpy: log P_mix(1) - log P_mix(0), float64 (n,).

    Args:
        log_weight: (n, K) each component's log-likelihood of the pixels before (unnormalised: it cancels).
        z: (n, K) each component's logit of the pixel.
    """
    z = z.astype(np.float64)
    return (np.logaddexp.reduce(log_weight + log_sigmoid(z), axis=1)
            - np.logaddexp.reduce(log_weight + log_sigmoid(-z), axis=1))


@dataclass
class EnsembleConfig:
    """An ensemble's members, each as its own config.json holds it; saved as config.json beside the weights."""

    model_type: str = "ensemble"
    members: list = field(default_factory=list)

    def __post_init__(self):
        if self.model_type != "ensemble":
            raise ValueError(f"EnsembleConfig is for model_type 'ensemble', got {self.model_type!r}")
        if not isinstance(self.members, list) or len(self.members) < 2:
            raise ValueError(f"an ensemble needs a list of at least two members' configs, got {self.members!r}")
        built = []
        for i, member in enumerate(self.members):
            if not isinstance(member, dict):  # a config object: as a dict, to be checked alike
                member = vars(member)
            kind = member.get("model_type", "pixelcnn")
            if kind not in MEMBER_TYPES:
                raise ValueError(f"member {i}: model_type {kind!r} cannot be a member; known: {', '.join(MEMBER_TYPES)}")
            try:
                built.append(MEMBER_TYPES[kind][0](**member))
            except TypeError as e:  # an unknown key
                raise ValueError(f"member {i}: {e}") from None
        self.members = built
        for what in ("n_labels", "n_orientations"):
            values = {getattr(c, what, 0 if what == "n_labels" else 1) for c in built}
            if len(values) > 1:
                raise ValueError(f"the members must agree on {what}, got {sorted(values)}")

    @property
    def n_labels(self) -> int:
        return getattr(self.members[0], "n_labels", 0)

    @property
    def n_orientations(self) -> int:
        return getattr(self.members[0], "n_orientations", 1)


class Ensemble(nn.Module):
    """Models trained apart, as one: the equal-weight mixture of their densities, pixel by pixel."""

    def __init__(self, config: EnsembleConfig):
        super().__init__()
        self.config = config
        self.members = nn.ModuleList(MEMBER_TYPES[c.model_type][1](c) for c in config.members)

    def forward(self, x: torch.Tensor, label=None, orientation=0) -> torch.Tensor:
        """Logits of P(pixel = 1 | pixels before it [, label]) of the mixture of the members.

        Args:
            x: (B, 1, H, W) binary images as floats in {0, 1}.
            label, orientation: as the members take them (gated.py); the same for every member.
        Returns:
            (B, 1, H, W) logits.
        """
        if x.dim() != 4 or x.shape[1] != 1:
            raise ValueError(f"expected images of shape (B, 1, H, W), got {tuple(x.shape)}")
        z = torch.stack([_call(m, x, label, orientation).flatten(1) for m in self.members], 1)  # (B, M, H * W)
        return mixture_logits(z, x.flatten(1)).view_as(x)

    def step_cache(self, n: int, height: int, width: int, label=None, orientation=0, uniforms=None,
                   tied=None) -> "EnsembleCache":
        """The logits one pixel at a time, for fast sampling: every member's own cache, mixed (cached.py).

        With uniforms (n,) in [0, 1), each row draws from one member, drawn at begin from its posterior
        given the pixels given (row tied[r]'s posterior for row r, default its own), by inverse CDF at
        its uniform: logit gives that member's logits, `mixed` and shown() the mixture's.
        """
        return EnsembleCache([_member_cache(m, n, height, width, label, orientation) for m in self.members],
                             uniforms, tied)

    def loss(self, batch) -> torch.Tensor:
        """Mean binary cross-entropy per pixel, in nats: -log of the mixture of the members' p(x).

        As a labelled member's eval loss, the label is dropped (each member's own "no label").
        """
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return F.binary_cross_entropy_with_logits(self(x), x)


def _top_first(orientation) -> bool:
    return not torch.is_tensor(orientation) and orientation == 0


def _call(model, x, label, orientation):
    if _top_first(orientation):
        return model(x, label)  # a PixelCNN knows no orientation
    return model(x, label, orientation)


def _member_cache(model, n, height, width, label, orientation):
    if not hasattr(model, "step_cache"):
        return FullPasses(model, n, height, width, label, orientation)
    if _top_first(orientation):
        return model.step_cache(n, height, width, label)
    return model.step_cache(n, height, width, label, orientation)


class EnsembleCache:
    """The StepCache of an ensemble: each member's, and the log-likelihood of the pixels so far under each."""

    def __init__(self, inner: list, uniforms: np.ndarray | None = None, tied: np.ndarray | None = None):
        self.inner = inner
        self.uniforms, self.tied = uniforms, tied  # see Ensemble.step_cache
        self.member = None  # (n,) the member each row draws from, if drawn (begin)
        self.loglik = None  # (n, M) float64: log p_m(the pixels so far)
        self.z = None  # (n, M): the members' logits of the pixel being drawn
        self.mixed = None  # (n,) float32: the mixture's logit of it

    def begin(self, x: torch.Tensor, k: int) -> np.ndarray:
        z = torch.from_numpy(np.stack([c.begin(x, k) for c in self.inner], axis=-1))  # (k, n, M)
        z = z.permute(1, 2, 0)  # (n, M, k)
        bits = x.reshape(len(x), -1)[:, :k].cpu()
        self.loglik = pixel_log_lik(z, bits).sum(-1).numpy()
        if self.uniforms is not None:
            self.member = draw_from(self.loglik if self.tied is None else self.loglik[self.tied], self.uniforms)
        return mixture_logits(z, bits).T.numpy()  # (k, n)

    def logit(self, p: int) -> np.ndarray:
        self.z = np.stack([c.logit(p) for c in self.inner], axis=1).astype(np.float64)  # (n, M)
        self.mixed = mixed_logit(self.loglik, self.z).astype(np.float32)  # each member weighed by p_m(x_<p)
        if self.member is None:
            return self.mixed
        return self.z[np.arange(len(self.z)), self.member].astype(np.float32)

    def shown(self, p: int) -> np.ndarray:
        """The mixture's logit of pixel p, whichever member drew it."""
        return self.mixed

    def put(self, p: int, bits: np.ndarray) -> None:
        for c in self.inner:
            c.put(p, bits)
        self.loglik += log_sigmoid(np.where(bits[:, None], self.z, -self.z))

    def reorder(self, index: np.ndarray) -> None:
        for c in self.inner:
            c.reorder(index)
        self.loglik = self.loglik[index]
        if self.member is not None:
            self.member = self.member[index]
