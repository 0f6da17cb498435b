"""Receptive fields: which input pixels a model's output at one pixel depends on.

The recipe's stacked masked convolutions leave a blind spot, earlier pixels above and to
the right that no output sees [1]; the gated PixelCNN's two stacks do not. This measures
it from the model itself, by the gradient of one logit with respect to the whole input.

[1] van den Oord et al., "Conditional Image Generation with PixelCNN Decoders", 2016.
    https://arxiv.org/abs/1606.05328
"""

import torch


def receptive_field(model, row: int, col: int, label=None, size: int = 28, trials: int = 16,
                    seed: int = 0) -> torch.Tensor:
    """The pixels that the logit at (row, col) depends on.

    A pixel counts where the gradient of that logit with respect to it is non-zero for at
    least one of `trials` random inputs. The inputs are uniform in (0, 1) rather than binary,
    so that a ReLU is rarely off everywhere by chance; a masked-out weight gives an exact
    zero whatever the input.

    Args:
        model: a model mapping (B, 1, size, size) images to logits of the same shape.
        row, col: the output pixel, 0 <= row, col < size.
        label: passed to the model (None for unconditional).
    Returns:
        (size, size) bool tensor, True where the output depends on that input pixel.
    """
    if not (0 <= row < size and 0 <= col < size):
        raise ValueError(f"the pixel must be inside the {size}x{size} image, got ({row}, {col})")
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(trials, 1, size, size, generator=generator).to(device).requires_grad_(True)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            logits = model(x, label) if label is not None else model(x)
            # The images of the batch are independent: one backward pass gives every trial's gradient.
            (grad,) = torch.autograd.grad(logits[:, 0, row, col].sum(), x)
    finally:
        model.train(was_training)
    return (grad[:, 0] != 0).any(dim=0).cpu()  # (size, size)


def blind_spot(model, row: int, col: int, label=None, size: int = 28) -> torch.Tensor:
    """The earlier pixels (raster order) that the logit at (row, col) does not see: (size, size) bool."""
    index = torch.arange(size * size).reshape(size, size)
    earlier = index < row * size + col
    return earlier & ~receptive_field(model, row, col, label=label, size=size)


def field_parts(model, row: int, col: int, label=None, size: int = 28) -> dict[str, torch.Tensor]:
    """Each pixel's part in the receptive field of the logit at (row, col): (size, size) bool each.

    "seen": the earlier pixels the logit depends on. "blind spot": earlier pixels it does not
    see although it sees a pixel farther up in the same column, a hole in the field rather
    than its edge. "beyond reach": the other earlier pixels it does not see, too far for the
    network's depth (blind_spot counts both). "later": the pixel itself and those after it.
    """
    seen = receptive_field(model, row, col, label=label, size=size)
    earlier = torch.arange(size * size).reshape(size, size) < row * size + col
    above = torch.zeros_like(seen)  # a seen pixel somewhere above, in the same column
    above[1:] = seen.cummax(dim=0).values[:-1]
    return {"seen": seen & earlier, "blind spot": earlier & ~seen & above,
            "beyond reach": earlier & ~seen & ~above, "later": ~earlier}
