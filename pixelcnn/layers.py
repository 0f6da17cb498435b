"""Masked convolutions, the building block of PixelCNN.

[1] van den Oord et al., "Conditional Image Generation with PixelCNN Decoders", 2016.
    https://arxiv.org/abs/1606.05328
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


def causal_mask(kernel_size: int, mask_type: str) -> torch.Tensor:
    """The (k, k) mask of a masked convolution, 1 where a weight may be non-zero.

    For k = 5 ("x" is the current pixel, raster order runs left to right, top to bottom):

        type A           type B
        1 1 1 1 1        1 1 1 1 1
        1 1 1 1 1        1 1 1 1 1
        1 1 0 0 0        1 1 1 0 0
        0 0 0 0 0        0 0 0 0 0
        0 0 0 0 0        0 0 0 0 0

    Type A also hides the current pixel: it is for the first layer, which sees the image.
    Type B lets a position see its own features from the layer below, which already
    exclude the pixel itself.
    """
    if mask_type not in ("A", "B"):
        raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}")
    c = kernel_size // 2
    mask = torch.ones(kernel_size, kernel_size)
    mask[c, c + (mask_type == "B"):] = 0  # the current row, from the centre (A) or after it (B)
    mask[c + 1:] = 0  # every row below
    return mask


class MaskedConv2d(nn.Module):
    """A k x k convolution whose output at a pixel sees only pixels before it [1].

    The rows below the centre of the mask are all zero, so the convolution runs with the
    top (k // 2 + 1) rows of the kernel only, on an input padded at the top: the same
    result as the full masked kernel, for about 4/7 of the arithmetic at k = 7.

    Args:
        in_channels, out_channels: as for nn.Conv2d.
        kernel_size: odd kernel size k.
        mask_type: "A" (blocks the current and future pixels) or "B" (future pixels only).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, mask_type: str):
        super().__init__()
        self.mask_type = mask_type
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels))
        # Initialised as nn.Conv2d does.
        conv = nn.Conv2d(in_channels, out_channels, kernel_size)
        with torch.no_grad():
            self.weight.copy_(conv.weight)
            self.bias.copy_(conv.bias)
        # Derived from the config, so not saved with the weights.
        self.register_buffer("mask", causal_mask(kernel_size, mask_type), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.weight.shape[-1] // 2
        weight = (self.weight * self.mask)[:, :, : c + 1]  # (out, in, c+1, k): the rows that can be non-zero
        x = F.pad(x, (c, c, c, 0))  # left, right, top; nothing below
        return F.conv2d(x, weight, self.bias)

    def extra_repr(self) -> str:
        out_c, in_c, k, _ = self.weight.shape
        return f"{in_c}, {out_c}, kernel_size={k}, mask_type={self.mask_type!r}"
