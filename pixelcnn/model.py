"""The PixelCNN of the recipe [1]: a stack of masked convolutions, one logit per pixel.

    input (B, 1, 28, 28)
      -> 7x7 mask-A conv -> ReLU
      -> n_layers x (7x7 mask-B conv -> ReLU)
      -> 1x1 conv -> logit of P(pixel = 1 | every pixel before it in raster order)

[1] van den Oord et al., "Conditional Image Generation with PixelCNN Decoders", 2016.
    https://arxiv.org/abs/1606.05328
"""

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .cached import PixelCNNCache
from .layers import MaskedConv2d


@dataclass
class PixelCNNConfig:
    """The shape of a PixelCNN; saved as config.json beside the weights."""

    model_type: str = "pixelcnn"
    hidden_channels: int = 64
    kernel_size: int = 7
    n_layers: int = 6  # mask-B layers after the mask-A one

    def __post_init__(self):
        if self.model_type != "pixelcnn":
            raise ValueError(f"PixelCNNConfig is for model_type 'pixelcnn', got {self.model_type!r}")
        # A config.json may hold 64.0 or "64": name the field rather than fail deep inside torch.
        for name in ("hidden_channels", "kernel_size", "n_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        if self.hidden_channels < 1 or self.n_layers < 0:
            raise ValueError(f"hidden_channels must be >= 1 and n_layers >= 0, got {self}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd number, got {self.kernel_size}")


class PixelCNN(nn.Module):
    """The recipe's PixelCNN over binary images."""

    def __init__(self, config: PixelCNNConfig):
        super().__init__()
        self.config = config
        c, k = config.hidden_channels, config.kernel_size
        self.layers = nn.ModuleList(
            [MaskedConv2d(1, c, k, "A")] + [MaskedConv2d(c, c, k, "B") for _ in range(config.n_layers)]
        )
        self.head = nn.Conv2d(c, 1, 1)

    def forward(self, x: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of P(pixel = 1 | pixels before it).

        Args:
            x: (B, 1, H, W) binary images as floats in {0, 1}.
            label: accepted for a common interface with labelled models; must be None.
        Returns:
            (B, 1, H, W) logits.
        """
        if x.dim() != 4 or x.shape[1] != 1:
            raise ValueError(f"expected images of shape (B, 1, H, W), got {tuple(x.shape)}")
        if label is not None:
            raise ValueError("this PixelCNN has no labels; call it with label=None")
        h = x
        for layer in self.layers:
            h = F.relu(layer(h))  # (B, C, H, W)
        return self.head(h)  # (B, 1, H, W)

    def step_cache(self, n: int, height: int, width: int, label=None) -> PixelCNNCache:
        """The logits one pixel at a time, for fast sampling (see cached.py)."""
        if label is not None:
            raise ValueError("this PixelCNN has no labels; call it with label=None")
        return PixelCNNCache(self, n, height, width)

    def loss(self, batch) -> torch.Tensor:
        """Mean binary cross-entropy per pixel, in nats, of a batch (images, labels)."""
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return F.binary_cross_entropy_with_logits(self(x), x)
