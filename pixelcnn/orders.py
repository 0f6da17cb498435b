"""The four orientations a gated PixelCNN can be trained to read a digit in.

A PixelCNN reads pixels in raster order: top row first, each row left to right. Reading the
image turned first is reading it in another order. With the orientation as an input, one model
learns all four, and the pixels a visitor keeps can come first whichever side they are on:

    0  as it is               top rows first
    1  flipped upside down    bottom rows first
    2  transposed             left columns first
    3  transposed, flipped    right columns first

`orient(x, o)` puts images into orientation o's frame, where raster order is o's order;
`unorient` puts them back. Averaging over orders gives a density of its own,
p(x) = 1/4 sum_o p_o(x) [1].

[1] Jain et al., "Locally Masked Convolution for Autoregressive Models", 2020.
    https://arxiv.org/abs/2006.12486
"""

import torch

ORIENTATIONS = ("top", "bottom", "left", "right")  # which side comes first, by index


def _one(x: torch.Tensor, o: int, inverse: bool) -> torch.Tensor:
    if o == 0:
        return x
    if o == 1:
        return x.flip(-2)
    if o == 2:
        return x.transpose(-2, -1)
    return x.flip(-2).transpose(-2, -1) if inverse else x.transpose(-2, -1).flip(-2)


def _apply(x: torch.Tensor, orientation, inverse: bool) -> torch.Tensor:
    o = torch.as_tensor(orientation)
    if o.dim() == 0:
        return _one(x, int(o), inverse).contiguous()
    out = torch.empty_like(x if int(o.max()) < 2 else x.transpose(-2, -1))
    for k in o.unique().tolist():  # one transform per orientation present, not one per image
        idx = (o == k).nonzero().flatten().to(x.device)
        out[idx] = _one(x[idx], k, inverse)
    return out


def orient(x: torch.Tensor, orientation) -> torch.Tensor:
    """Images (..., H, W) in the frame of orientation (an int, or one per image): raster order there is its order."""
    return _apply(x, orientation, inverse=False)


def unorient(x: torch.Tensor, orientation) -> torch.Tensor:
    """The inverse of orient: images from orientation's frame back to the upright one."""
    return _apply(x, orientation, inverse=True)
