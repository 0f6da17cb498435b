"""The gated PixelCNN [1]: vertical and horizontal stacks, no blind spot, optional labels.

The recipe's stacked masked convolutions leave a blind spot: a wedge of earlier pixels
above and to the right that no output can see. Here two stacks share the work [1]:

    vertical stack:    sees every pixel in the rows above, within its reach
    horizontal stack:  sees the pixels to the left in the current row, and the vertical
                       stack's features of the row above, through a 1x1 "link"

    x  . . . . . . .     v = vertical reach of a pixel "o" (rows above, k wide)
       v v v v v . .     h = horizontal reach (same row, to the left)
       v v v v v . .
       h h o . . . .

Each layer computes   out = tanh(W_f * x + V_f y) . sigmoid(W_g * x + V_g y)   (gated
activation), where y is a learned embedding of the digit label, or of "no label", plus one of
the orientation the image is seen in, for a model trained on several (see orders.py). The
embeddings start at zero, so that a new model starts as the unconditional one: drawn from
N(0, 1), as nn.Embedding draws them, they would add a random offset of standard deviation 1
to every pre-activation, and the labels would cost likelihood instead of adding it.
The horizontal stack adds a residual connection around each layer but the first; with
`skip`, every layer also sends its gated output through a 1x1 convolution of its own to the
head, which then reads their sum (as in WaveNet [2]) instead of the last layer's output.

[1] van den Oord et al., "Conditional Image Generation with PixelCNN Decoders", 2016.
    https://arxiv.org/abs/1606.05328
[2] van den Oord et al., "WaveNet: A Generative Model for Raw Audio", 2016.
    https://arxiv.org/abs/1609.03499
[3] Hinton et al., "Distilling the Knowledge in a Neural Network", 2015.
    https://arxiv.org/abs/1503.02531
"""

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .cached import FullPasses, GatedPixelCNNCache
from .orders import orient


@dataclass
class GatedPixelCNNConfig:
    """The shape of a gated PixelCNN; saved as config.json beside the weights."""

    model_type: str = "gated_pixelcnn"
    hidden_channels: int = 64
    first_kernel_size: int = 7  # the first layer, which sees the image
    kernel_size: int = 3  # every later layer
    n_layers: int = 8  # gated layers, the first included
    n_labels: int = 10  # 0 for an unlabelled model
    label_dropout: float = 0.2  # training only: how often the label is replaced by "no label"
    skip: bool = False  # every layer to the head through a 1x1 of its own
    n_orientations: int = 1  # 1: top first only; 4: also bottom, left and right first (orders.py)
    classify_weight: float = 0.0  # training only: weight of -log p(label | image), by Bayes' rule (see loss)
    classify_batch: int = 8  # training only: the images of each batch that the weight above scores
    dropout: float = 0.0  # training only: dropout on each layer's gated features, before its 1x1 out

    def __post_init__(self):
        if self.model_type != "gated_pixelcnn":
            raise ValueError(f"GatedPixelCNNConfig is for model_type 'gated_pixelcnn', got {self.model_type!r}")
        for k in (self.first_kernel_size, self.kernel_size):
            if k < 3 or k % 2 == 0:
                raise ValueError(f"kernel sizes must be odd and at least 3, got {k}")
        if self.hidden_channels < 1 or self.n_layers < 1 or self.n_labels < 0:
            raise ValueError(f"hidden_channels and n_layers must be >= 1, n_labels >= 0, got {self}")
        if not 0 <= self.label_dropout <= 1:
            raise ValueError(f"label_dropout must be in [0, 1], got {self.label_dropout}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.n_orientations not in (1, 4):
            raise ValueError(f"n_orientations must be 1 or 4, got {self.n_orientations!r}")
        if self.classify_weight < 0 or self.classify_batch < 1 or (self.classify_weight and not self.n_labels):
            raise ValueError(f"classify_weight must be >= 0 (and 0 without labels), classify_batch >= 1, got {self}")


def shift_down(x: torch.Tensor) -> torch.Tensor:
    """Move every row one down (row 0 becomes zeros): row i then holds row i - 1."""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1]


def shift_right(x: torch.Tensor) -> torch.Tensor:
    """Move every column one right: column j then holds column j - 1."""
    return F.pad(x, (1, 0, 0, 0))[:, :, :, :-1]


def gate(x: torch.Tensor) -> torch.Tensor:
    """tanh(first half of the channels) * sigmoid(second half)."""
    a, b = x.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedLayer(nn.Module):
    """One gated layer: a vertical and a horizontal convolution joined by a 1x1 link [1].

    The vertical convolution at row i covers rows i - k//2 .. i (so its output at row i
    depends on rows <= i of its input); the horizontal one at column j covers columns
    j - k//2 .. j of the same row. Causality comes from the inputs: the image enters the
    horizontal stack shifted right by one, and the vertical features reach the horizontal
    stack shifted down by one.
    """

    def __init__(self, in_channels: int, channels: int, kernel_size: int, n_labels: int, residual: bool,
                 skip: bool = False, n_orientations: int = 1, dropout: float = 0.0):
        super().__init__()
        k = kernel_size
        self.k = k
        self.residual = residual
        self.vertical = nn.Conv2d(in_channels, 2 * channels, (k // 2 + 1, k))
        self.horizontal = nn.Conv2d(in_channels, 2 * channels, (1, k // 2 + 1))
        self.link = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)
        self.skip = nn.Conv2d(channels, channels, 1) if skip else None
        self.dropout = nn.Dropout(dropout) if dropout else None  # training only: nn.Dropout is the identity in eval
        self.label = nn.Embedding(n_labels + 1, 2 * channels) if n_labels else None  # the last row: "no label"
        self.orientation = nn.Embedding(n_orientations, 2 * channels) if n_orientations > 1 else None
        for embedding in (self.label, self.orientation):
            if embedding is not None:
                nn.init.zeros_(embedding.weight)  # start as the unconditional model (see the module's docstring)

    def condition(self, label: torch.Tensor | None, orientation: torch.Tensor | None) -> torch.Tensor | None:
        """What the label and the orientation add to the pre-activations: (B, 2C), or None."""
        y = self.label(label) if self.label is not None else None
        if self.orientation is not None:
            o = self.orientation(orientation)
            y = o if y is None else y + o
        return y

    def forward(self, v: torch.Tensor, h: torch.Tensor, y: torch.Tensor | None):
        """One layer; y is condition()'s (B, 2C). Returns (v, h, this layer's skip output or None)."""
        c = self.k // 2
        v_pre = self.vertical(F.pad(v, (c, c, c, 0)))  # (B, 2C, H, W): rows i-c..i
        h_pre = self.horizontal(F.pad(h, (c, 0, 0, 0))) + self.link(shift_down(v_pre))  # (B, 2C, H, W)
        if y is not None:
            y = y[:, :, None, None]  # (B, 2C, 1, 1)
            v_pre, h_pre = v_pre + y, h_pre + y
        h_gated = gate(h_pre)  # (B, C, H, W)
        if self.dropout is not None:
            h_gated = self.dropout(h_gated)
        h_out = self.out(h_gated)
        if self.residual:
            h_out = h_out + h
        return gate(v_pre), h_out, self.skip(h_gated) if self.skip is not None else None


class GatedPixelCNN(nn.Module):
    """A gated PixelCNN over binary images, optionally conditioned on a digit label."""

    def __init__(self, config: GatedPixelCNNConfig):
        super().__init__()
        self.config = config
        c = config.hidden_channels
        extra = dict(skip=config.skip, n_orientations=config.n_orientations, dropout=config.dropout)
        self.layers = nn.ModuleList(
            [GatedLayer(1, c, config.first_kernel_size, config.n_labels, residual=False, **extra)]
            + [GatedLayer(c, c, config.kernel_size, config.n_labels, residual=True, **extra)
               for _ in range(config.n_layers - 1)])
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(c, c, 1), nn.ReLU(), nn.Conv2d(c, 1, 1))
        self.teacher, self.teacher_others = None, 0  # training only: see distil_from

    def label_index(self, label, batch: int, device) -> torch.Tensor | None:
        """Labels as embedding rows: None -> "no label" for every image; an int -> for every image."""
        n = self.config.n_labels
        if not n:
            if label is not None:
                raise ValueError("this model has no labels; call it with label=None")
            return None
        if label is None:
            return torch.full((batch,), n, dtype=torch.long, device=device)
        label = torch.as_tensor(label, device=device)
        if label.is_floating_point() or label.is_complex() or label.dtype == torch.bool:
            if label.dtype == torch.bool or not torch.equal(label, label.round()):
                raise ValueError(f"labels must be whole numbers, got {label.tolist()!r}")
        label = label.long()
        if label.dim() == 0:
            label = label.expand(batch)
        if label.shape != (batch,):
            raise ValueError(f"label must be an int or a ({batch},) tensor, got shape {tuple(label.shape)}")
        if ((label < 0) | (label > n)).any():
            raise ValueError(f"labels must be in 0..{n - 1} (or {n} for no label)")
        return label

    def orientation_index(self, orientation, batch: int, device) -> torch.Tensor | None:
        """Orientations (orders.py) as embedding rows; None for a model that knows only the first."""
        n = self.config.n_orientations
        o = torch.as_tensor(orientation, device=device)
        if o.is_floating_point() or o.dtype == torch.bool or ((o < 0) | (o >= n)).any():
            raise ValueError(f"orientation must be a whole number in 0..{n - 1} for this model, got {o.tolist()!r}")
        if n == 1:
            return None
        o = o.long()
        if o.dim() == 0:
            o = o.expand(batch)
        if o.shape != (batch,):
            raise ValueError(f"orientation must be an int or a ({batch},) tensor, got shape {tuple(o.shape)}")
        return o

    def conditions(self, label, orientation, batch: int, device) -> list[torch.Tensor | None]:
        """Each layer's condition() for these labels and orientations: (B, 2C) each, or None."""
        y = self.label_index(label, batch, device)
        o = self.orientation_index(orientation, batch, device)
        return [layer.condition(y, o) for layer in self.layers]

    def forward(self, x: torch.Tensor, label=None, orientation=0) -> torch.Tensor:
        """Logits of P(pixel = 1 | pixels before it [, label]).

        Args:
            x: (B, 1, H, W) binary images as floats in {0, 1}, already in the orientation's
                frame (orders.orient): the pixels before a pixel are those before it in raster order.
            label: None (unconditional), an int, or a (B,) tensor of digits.
            orientation: the order the model reads in (orders.py): 0 (top first), or an int or
                (B,) tensor in 0..n_orientations - 1.
        Returns:
            (B, 1, H, W) logits.
        """
        if x.dim() != 4 or x.shape[1] != 1:
            raise ValueError(f"expected images of shape (B, 1, H, W), got {tuple(x.shape)}")
        v, h = x, shift_right(x)  # the horizontal stack must not see the pixel itself
        skips = 0
        for layer, y in zip(self.layers, self.conditions(label, orientation, x.shape[0], x.device)):
            v, h, s = layer(v, h, y)  # (B, C, H, W) each
            if s is not None:
                skips = skips + s
        return self.head(skips if self.config.skip else h)  # (B, 1, H, W)

    @torch.no_grad()
    def widen_from(self, source: "GatedPixelCNN") -> None:
        """Copy a narrower model into this one so that it computes the same logits.

        source must have this model's config but for fewer hidden_channels. Each weight of source
        goes to the first channels of each stack, and to the first channels of each half (tanh,
        sigmoid) of a gate's 2C; this model's extra channels keep their random start, except that
        their weights into the channels source had are zeroed: those then see nothing new, and the
        logits are source's. The zeroed weights still get gradients (the extra channels they read
        are not zero), so training goes on from source with the extra width to use (as Net2Net's
        wider networks, Chen et al. 2016, https://arxiv.org/abs/1511.05641).
        """
        cs, cb = source.config.hidden_channels, self.config.hidden_channels
        if asdict(source.config) != asdict(self.config) | {"hidden_channels": cs} or cs > cb:
            raise ValueError(f"can only widen a model of the same config but for fewer hidden_channels: "
                             f"{source.config} into {self.config}")

        def where(d_source: int, d_self: int) -> torch.Tensor:
            """The indices in this model of a dimension's entries in source."""
            if d_source == d_self:
                return torch.arange(d_self)
            if (d_source, d_self) == (2 * cs, 2 * cb):  # the two halves of a gate
                return torch.cat([torch.arange(cs), cb + torch.arange(cs)])
            if (d_source, d_self) == (cs, cb):
                return torch.arange(cs)
            raise ValueError(f"cannot place a dimension of {d_source} in one of {d_self}")

        ours = self.state_dict()
        for name, w in source.state_dict().items():
            target = ours[name]
            idx = [where(a, b) for a, b in zip(w.shape, target.shape)]
            if target.dim() == 4 and len(idx[1]) < target.shape[1]:  # a convolution that gains inputs
                new_in = torch.ones(target.shape[1], dtype=torch.bool)
                new_in[idx[1]] = False
                target[idx[0][:, None], new_in.nonzero()[:, 0]] = 0  # the old outputs read nothing new
            target[torch.meshgrid(*idx, indexing="ij")] = w

    def step_cache(self, n: int, height: int, width: int, label=None, orientation=0):
        """The logits one pixel at a time, for fast sampling (see cached.py).

        Raises:
            ValueError: for a label or orientation that forward() would refuse.
        """
        if self.config.skip:  # not cached: skip connections did not pay in benchmarks/ablate.py
            return FullPasses(self, n, height, width, label, orientation)
        return GatedPixelCNNCache(self, n, height, width, label, orientation)

    def distil_from(self, teacher: nn.Module | None, others: int = 0) -> None:
        """Train on a teacher's probabilities instead of the pixels (knowledge distillation [3]); None: stop.

        The training loss becomes the cross-entropy from the teacher's P(x_i = 1 | x_<i, y) to the
        model's, for the same images under the same labels (dropped as usual): its minimum is at the
        teacher's conditionals, which say more than the pixels drawn from them. With `others` > 0, the
        first `others` images of each batch are also scored under a label drawn from the nine wrong
        ones, so that the model learns the teacher's p(x | y) of the wrong labels too: what Bayes
        classification, argmax_y p(x | y), weighs. The teacher is no part of this module (not a
        submodule: not saved, not trained, not moved by .to()); it stays in eval mode.
        """
        if teacher is not None:
            taught = getattr(getattr(teacher, "config", None), "n_labels", 0)
            if taught != self.config.n_labels or self.config.n_orientations > 1 or self.config.classify_weight:
                raise ValueError(f"a teacher must have the model's labels ({self.config.n_labels}, it has {taught}); "
                                 f"distillation takes no orientations and no classify_weight")
            if others < 0 or (others and not self.config.n_labels):
                raise ValueError(f"others must be >= 0 (and 0 without labels), got {others}")
            teacher.eval()
        object.__setattr__(self, "teacher", teacher)  # not registered as a submodule
        self.teacher_others = others

    def loss(self, batch) -> torch.Tensor:
        """Mean binary cross-entropy per pixel, in nats, of a batch (images, labels).

        In training the label is replaced by "no label" at random (config.label_dropout), so one
        model learns both p(x | label) and p(x). In eval mode the label is always dropped: the
        loss is then the unconditional -log p(x) per pixel, comparable with unlabelled models.

        With config.classify_weight w > 0 the training loss is a hybrid one: it adds, for the
        first config.classify_batch images of the batch, w / pixels x the mean of
        -log p(label | x) = -log p(x | label) + log sum_y p(x | y)  (Bayes' rule, p(y) = 1/n_labels),
        which takes each of those images under every label, in the same forward pass. It pulls
        p(x | y) of the wrong labels down where the likelihood alone leaves them close, which is
        what classifying by argmax_y p(x | y), and sampling a chosen digit, need.

        With a teacher (distil_from), the targets are the teacher's probabilities of the pixels
        instead of the pixels themselves.
        """
        x, label = batch if isinstance(batch, (tuple, list)) else (batch, None)
        if not self.training:
            return F.binary_cross_entropy_with_logits(self(x), x)
        orientation = 0
        if self.config.n_orientations > 1:  # each digit seen in an orientation drawn at random
            orientation = torch.randint(self.config.n_orientations, (len(x),), device=x.device)
            x = orient(x, orientation)
        if not self.config.n_labels or label is None:
            if self.teacher is not None:
                return self._distilled(x, None, None)
            return F.binary_cross_entropy_with_logits(self(x, None, orientation), x)
        n = self.config.n_labels
        drop = torch.rand(label.shape, device=label.device) < self.config.label_dropout
        dropped = torch.where(drop, torch.full_like(label, n), label)
        if self.teacher is not None:
            return self._distilled(x, label, dropped)
        if not self.config.classify_weight:
            return F.binary_cross_entropy_with_logits(self(x, dropped, orientation), x)
        k = min(self.config.classify_batch, len(x))
        o = torch.as_tensor(orientation, device=x.device).expand(len(x))
        every = torch.arange(n, device=x.device).repeat_interleave(k)  # image i under label y: row y * k + i
        inputs = torch.cat([x, x[:k].repeat(n, 1, 1, 1)])
        logits = self(inputs, torch.cat([dropped, every]), torch.cat([o, o[:k].repeat(n)]))
        bce = F.binary_cross_entropy_with_logits(logits, inputs, reduction="none")
        nats = bce[len(x):].sum((1, 2, 3)).view(n, k).T  # (k, n): -log p(x | y)
        classify = F.cross_entropy(-nats, label[:k])  # log 1/n cancels
        return bce[:len(x)].mean() + self.config.classify_weight * classify / x[0].numel()

    def _distilled(self, x: torch.Tensor, label, dropped) -> torch.Tensor:
        """The distillation loss (distil_from): the images under their dropped labels, some also under a wrong one."""
        k = min(self.teacher_others, len(x)) if label is not None else 0
        if k:
            wrong = (label[:k] + torch.randint(1, self.config.n_labels, (k,), device=x.device)) % self.config.n_labels
            x, dropped = torch.cat([x, x[:k]]), torch.cat([dropped, wrong])
        with torch.no_grad():
            target = torch.sigmoid(self.teacher(x, dropped))  # (B + k, 1, H, W)
        return F.binary_cross_entropy_with_logits(self(x, dropped), target)
