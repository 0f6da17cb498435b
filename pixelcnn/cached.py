"""Logits one pixel at a time: the interface the sampling loop uses, the reference that runs
the full network for every pixel, and the fast cache for PixelCNN [1].

The sampling loop in sampling.py asks a `StepCache` for the logit of pixel p (raster order),
draws the pixel, and hands it back with put(p, ...), for p = k, k + 1, ..., H * W - 1.
A model opts in to fast sampling with a method `step_cache(n, height, width, label)` that
returns one; `FullPasses` serves every other model.

The PixelCNN cache [1] keeps every layer's activations at the positions already computed.
A masked k x k convolution at (i, j) sees the rows i - k//2 .. i - 1, which are finished
once row i starts, and the pixels i, j - k//2 .. j of its own row (.. j - 1 for mask A):

    rows above: one small convolution per layer at the start of each row, for the whole row
    own row:    per pixel and per layer, one (n, (k//2 + 1) * C) @ ((k//2 + 1) * C, C) product

So each layer's output at each position is computed exactly once, as in one forward pass.
The inner loop is in numpy, not torch: at 784 pixels x (layers + head) steps a digit, the
cost is the call overhead, and a numpy call costs about a microsecond, a torch call several.

[1] Ramachandran et al., "Fast Generation for Convolutional Autoregressive Models", 2017.
    https://arxiv.org/abs/1704.06001
"""

import contextlib
from typing import NamedTuple, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from numpy.lib.stride_tricks import as_strided

try:
    from threadpoolctl import ThreadpoolController
except ImportError:  # optional: without it sampling is as exact, only slower on busy cores
    ThreadpoolController = None


_blas = None  # the ThreadpoolController, made on first use


def one_blas_thread():
    """A context in which numpy's BLAS (OpenBLAS) uses one thread.

    The products a step makes are small: spread over threads they wait on each other more
    than they compute, several times slower when the cores are busy (measured while training
    ran: 0.4-1.4 s a digit with two threads, 0.11 s with one).
    """
    global _blas
    if ThreadpoolController is None:
        return contextlib.nullcontext()
    if _blas is None:
        _blas = ThreadpoolController()
    return _blas.limit(limits=1, user_api="blas")


class StepCache(Protocol):
    """What the sampling loop needs from a model to draw n images one pixel at a time."""

    def begin(self, x: torch.Tensor, k: int) -> np.ndarray:
        """Start from images x (n, 1, H, W) whose first k pixels are given (the rest are 0).

        Returns the logits of the given pixels, (k, n) float32.
        """

    def logit(self, p: int) -> np.ndarray:
        """The logits (n,) float32 of pixel p, given every pixel before it."""

    def put(self, p: int, bits: np.ndarray) -> None:
        """Set pixel p to bits (n,) bool; called before asking for pixel p + 1."""


class FullPasses:
    """The reference StepCache for any model: the full network once per pixel."""

    def __init__(self, model, n: int, height: int, width: int, label=None):
        self.model, self.label = model, label
        self.device = next(model.parameters()).device
        self.x = torch.zeros(n, 1, height, width, device=self.device)
        self.width = width

    @torch.no_grad()
    def _logits(self) -> torch.Tensor:
        return self.model(self.x, self.label).flatten(1)  # (n, H * W)

    @torch.no_grad()
    def begin(self, x: torch.Tensor, k: int) -> np.ndarray:
        self.x.copy_(x)
        return self._logits()[:, :k].T.float().cpu().numpy()  # also checks the label, even when k = 0

    def logit(self, p: int) -> np.ndarray:
        return self._logits()[:, p].float().cpu().numpy()

    @torch.no_grad()
    def put(self, p: int, bits: np.ndarray) -> None:
        i, j = divmod(p, self.width)
        self.x[:, 0, i, j] = torch.from_numpy(bits).to(self.device, torch.float32)


class _Layer(NamedTuple):
    """One masked convolution of a PixelCNNCache, with c = k // 2."""

    w_row: np.ndarray  # (taps * in, out): weights on the pixels of the output's own row
    w_top: np.ndarray  # (c * k * in, out): weights on the rows above
    bias: np.ndarray  # (out,)
    x: np.ndarray  # (n, H + c, W + 2c, in): the layer's input, zero-padded as the convolution pads it
    above: np.ndarray  # (n, W, out): bias + what the current row's outputs see in the rows above
    out: np.ndarray  # (n, out): scratch for one output position


class PixelCNNCache:
    """The StepCache of a PixelCNN (masked convolutions + ReLU, then a 1x1 head) [1].

    Every layer's input is kept whole, channels last (_Layer.x): position (i, j) is at
    x[:, i + c, j + c]. Channels last makes the pixels that an output sees in its own row
    one contiguous slice, ready for a matrix product without a copy.
    """

    def __init__(self, model, n: int, height: int, width: int):
        k = model.config.kernel_size
        c = self.c = k // 2
        self.model, self.n, self.width = model, n, width
        self.layers = []
        for conv in model.layers:
            w = conv.weight.detach().cpu().numpy() * conv.mask.cpu().numpy()  # (out, in, k, k)
            c_out, c_in = w.shape[:2]
            taps = c + (conv.mask_type == "B")  # own-row pixels seen: j - c .. j - 1, and j itself for mask B
            self.layers.append(_Layer(
                w_row=np.ascontiguousarray(w[:, :, c, :taps].transpose(2, 1, 0).reshape(taps * c_in, c_out),
                                           np.float32),
                w_top=np.ascontiguousarray(w[:, :, :c].transpose(2, 3, 1, 0).reshape(c * k * c_in, c_out),
                                           np.float32),
                bias=conv.bias.detach().cpu().numpy().astype(np.float32),
                x=np.zeros((n, height + c, width + 2 * c, c_in), np.float32),
                above=np.empty((n, width, c_out), np.float32),
                out=np.empty((n, c_out), np.float32)))
        hidden = model.head.in_channels
        self.top = np.zeros((n, height + c, width + 2 * c, hidden), np.float32)  # the last layer's output
        self.head_w = model.head.weight.detach().cpu().numpy().reshape(hidden).astype(np.float32)  # (C,)
        self.head_b = model.head.bias.item()
        self.row, self.now = -1, []  # the row being drawn, and views into it (see _start_row)
        self.zero = np.float32(0)  # for the ReLU: a float32 scalar is the cheapest to broadcast

    @torch.inference_mode()
    def begin(self, x: torch.Tensor, k: int) -> np.ndarray:
        inputs = [layer.x for layer in self.layers] + [self.top]
        for a in inputs:
            a.fill(0)
        self.row = -1
        if k == 0:
            return np.empty((0, self.n), np.float32)
        # One forward pass over the rows that hold given pixels fills the cache there:
        # a causal network's outputs at rows <= i do not depend on the rows below.
        c, rows = self.c, (k - 1) // self.width + 1
        weight = self.model.head.weight
        h = x[:, :, :rows].to(weight.device, weight.dtype)
        inputs[0][:, c:c + rows, c:c + self.width] = h.permute(0, 2, 3, 1).cpu().numpy()
        for conv, a in zip(self.model.layers, inputs[1:]):
            h = F.relu(conv(h))  # (n, C, rows, W)
            a[:, c:c + rows, c:c + self.width] = h.permute(0, 2, 3, 1).cpu().numpy()
        logits = self.model.head(h).flatten(1)[:, :k]  # (n, k)
        return logits.T.float().cpu().numpy()

    def _start_row(self, i: int) -> None:
        """Fill each layer's `above` for row i, and make the views that logit() uses."""
        n, c, width = self.n, self.c, self.width
        for layer in self.layers:
            rows = layer.x[:, i:i + c]  # (n, c, W + 2c, in): rows i - c .. i - 1
            # What the output at column j sees: in each row, columns j .. j + 2c (padded), all
            # channels, which lie side by side in memory. A read-only view, then one copy.
            s = rows.strides
            windows = as_strided(rows, (n, width, c, (2 * c + 1) * rows.shape[-1]), (s[0], s[2], s[1], s[3]),
                                 writeable=False)  # (n, W, c, k * in)
            np.dot(windows.reshape(n * width, -1), layer.w_top, out=layer.above.reshape(n * width, -1))
            np.add(layer.above, layer.bias, out=layer.above)  # (n, W, out)
        r = i + c
        outputs = [layer.x for layer in self.layers[1:]] + [self.top]
        self.now = [(layer.x[:, r].reshape(n, -1),  # (n, (W + 2c) * in): row i of the input, padded
                     y[:, r, c:].reshape(n, -1),  # (n, W * out): row i of the output
                     layer.x.shape[-1], y.shape[-1], layer.w_row, layer.above, layer.out)
                    for layer, y in zip(self.layers, outputs)]
        self.row = i

    def logit(self, p: int) -> np.ndarray:
        i, j = divmod(p, self.width)
        if i != self.row:
            self._start_row(i)
        zero = self.zero
        for x_row, y_row, c_in, c_out, w_row, above, out in self.now:
            a = j * c_in  # padded column j is column j - c: the first pixel of the window
            np.dot(x_row[:, a:a + len(w_row)], w_row, out=out)  # the own row's part: (n, taps * in) @ (taps * in, out)
            np.add(out, above[:, j], out=out)
            np.maximum(out, zero, out=y_row[:, j * c_out:(j + 1) * c_out])  # ReLU, into the next layer's input
        return np.dot(y_row[:, j * c_out:(j + 1) * c_out], self.head_w) + self.head_b  # (n,)

    def put(self, p: int, bits: np.ndarray) -> None:
        i, j = divmod(p, self.width)
        self.layers[0].x[:, i + self.c, j + self.c, 0] = bits
