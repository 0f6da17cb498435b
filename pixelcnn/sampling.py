"""Sampling from a PixelCNN, one pixel at a time in raster order."""

import torch


def _check_args(model, n, prefix, rows, temperature, image_size):
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    h, w = image_size
    if not 0 <= rows <= h:
        raise ValueError(f"rows must be in 0..{h}, got {rows}")
    if prefix is None:
        if rows:
            raise ValueError("rows > 0 needs a prefix image to copy the rows from")
        return None
    if prefix.dim() != 4 or prefix.shape[1:] != (1, h, w) or prefix.shape[0] not in (1, n):
        raise ValueError(f"prefix must have shape (1, 1, {h}, {w}) or ({n}, 1, {h}, {w}), got {tuple(prefix.shape)}")
    if not torch.all((prefix == 0) | (prefix == 1)):
        raise ValueError("prefix values must be 0 or 1")
    return prefix.float().expand(n, 1, h, w)


@torch.no_grad()
def sample(model, n: int, seed: int = 0, prefix: torch.Tensor | None = None, rows: int = 0,
           temperature: float = 1.0, image_size: tuple[int, int] = (28, 28)) -> torch.Tensor:
    """Draw n images from the model.

    Args:
        model: maps (B, 1, H, W) images to (B, 1, H, W) logits, causally.
        n: how many images.
        seed: the same seed gives the same images.
        prefix: (1, 1, H, W) or (n, 1, H, W) images whose first `rows` rows are kept.
        rows: how many top rows to copy from prefix (0..H).
        temperature: logits are divided by it; 0 always takes the more likely value.
    Returns:
        (n, 1, H, W) float images in {0, 1}.
    """
    prefix = _check_args(model, n, prefix, rows, temperature, image_size)
    h, w = image_size
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    # All the randomness is drawn up front, one uniform per pixel, so that any sampler
    # that walks the same pixels with the same probabilities draws the same image.
    u = torch.rand(n, 1, h, w, generator=gen).to(device)
    x = torch.zeros(n, 1, h, w, device=device)
    if prefix is not None:
        x[:, :, :rows] = prefix[:, :, :rows].to(device)
    for i in range(rows, h):
        for j in range(w):
            logits = model(x)[:, :, i, j]  # (n, 1)
            if temperature == 0:
                x[:, :, i, j] = (logits > 0).float()
            else:
                x[:, :, i, j] = (u[:, :, i, j] < torch.sigmoid(logits / temperature)).float()
    return x.cpu()
