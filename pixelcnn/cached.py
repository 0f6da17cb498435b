"""Logits one pixel at a time: the interface the sampling loop uses, the reference that runs
the full network for every pixel, and the fast caches [1] for PixelCNN and GatedPixelCNN.

The sampling loop in sampling.py asks a `StepCache` for the logit of pixel p (raster order),
draws the pixel, and hands it back with put(p, ...), for p = k, k + 1, ..., H * W - 1;
completion's resampling also copies whole rows of the batch onto others with reorder(index).
A model opts in to fast sampling with a method `step_cache(n, height, width, label)` that
returns one; `FullPasses` serves every other model. Both caches here also give the logits of the
rest of a row at once, given a guess of its pixels (`row_logits`), with which the loop draws a
small batch a row at a time (sampling.py, `_Drawing._run_row`); a StepCache without it is stepped
pixel by pixel.

The PixelCNN cache [1] keeps every layer's activations at the positions already computed.
A masked k x k convolution at (i, j) sees the rows i - k//2 .. i - 1, which are finished
once row i starts, and the pixels i, j - k//2 .. j of its own row (.. j - 1 for mask A):

    rows above: one small convolution per layer at the start of each row, for the whole row
    own row:    per pixel and per layer, one (n, (k//2 + 1) * C) @ ((k//2 + 1) * C, C) product

So each layer's output at each position is computed exactly once, as in one forward pass.
The gated cache does the same with the gated model's two stacks: the vertical stack a row at
a time, the horizontal one a position per layer (see GatedPixelCNNCache).
The inner loop is in numpy, not torch: at 784 pixels x (layers + head) steps a digit, the
cost is the call overhead, and a numpy call costs about a microsecond, a torch call several.

[1] Ramachandran et al., "Fast Generation for Convolutional Autoregressive Models", 2017.
    https://arxiv.org/abs/1704.06001
"""

import functools
import threading
from typing import NamedTuple, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from numpy.lib.stride_tricks import as_strided

from threadpoolctl import ThreadpoolController


# The per-pixel products: np.dot holds the GIL through its BLAS call, np.matmul releases it, so
# that the threads drawing parts of a big batch (sampling.py) multiply at once; but np.matmul
# costs more a call on a few rows (measured, 1 x 96 @ 96 x 64: 1.3 us against 1.7; 128 rows:
# 14.9 against 13.6). Each cache takes np.matmul from this many rows on. The products of a
# whole row, once a row, are np.matmul whatever the batch.
MATMUL_FROM = 16


def _products(n: int):
    return np.matmul if n >= MATMUL_FROM else np.dot


_blas_lock = threading.Lock()
_blas_limit = None  # threadpoolctl's limit, once set: kept for the life of the process


def single_threaded_blas() -> None:
    """Make numpy's BLAS (OpenBLAS) use one thread, for the rest of the process; idempotent and thread-safe.

    The products a step makes are small: spread over threads they wait on each other more
    than they compute, several times slower when the cores are busy (measured while training
    ran: 0.4-1.4 s a digit with two threads, 0.11 s with one). The sampler uses the cores by
    drawing parts of a big batch in threads of its own (sampling.py) instead.

    Set once and never undone: threadpoolctl's limits are process-wide, so a limit entered and
    left around each sampling run would leak between samplers running at once in threads (one
    would run with two threads inside another's one-thread block). torch has threads of its
    own (OpenMP), which this leaves alone.
    """
    global _blas_limit
    with _blas_lock:
        if _blas_limit is None:
            _blas_limit = ThreadpoolController().limit(limits=1, user_api="blas")


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

    def reorder(self, index: np.ndarray) -> None:
        """Make each row r a copy of row index[r] (n,), in place, between put(p) and logit(p + 1).

        Rows may be duplicated or dropped: complete's resampling (sampling.py) needs it, nothing else.
        """


def _take_rows(a: np.ndarray, index: np.ndarray) -> None:
    """a[r] = a[index[r]] along the batch axis, in place (views of a stay valid), copying the rows that change."""
    moved = np.flatnonzero(index != np.arange(len(index)))
    a[moved] = a[index[moved]]  # the right side is a copy: no row is overwritten before it is read


def _distinct(x: torch.Tensor, *per_row) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct rows of a batch: (once, copy_of), so that x[once] holds each once and row r is x[once][copy_of[r]].

    Completion's candidates share their given pixels, most of them their label too: begin's
    forward pass over the given rows is made once for each distinct one, not once a candidate.

    Args:
        x: (n, ...) the given pixels of each row.
        per_row: labels or orientations; those that are (n,) tensors tell rows apart too.
    """
    keys = [x.reshape(len(x), -1).float()]
    keys += [t.reshape(-1, 1).float().cpu() for t in per_row if torch.is_tensor(t) and t.dim() == 1]
    _, copy_of = torch.unique(torch.cat(keys, 1), dim=0, return_inverse=True)
    once = torch.full((int(copy_of.max()) + 1,), len(x)).scatter_reduce(0, copy_of, torch.arange(len(x)), "amin")
    return once, copy_of


def _take_label(label, index: np.ndarray):
    """A per-row label (or orientation) tensor reordered, as a new tensor (it may be a view of the caller's);
    anything else as it is."""
    if torch.is_tensor(label) and label.dim() == 1:
        return label[torch.as_tensor(index, device=label.device)]
    return label


class FullPasses:
    """The reference StepCache for any model: the full network once per pixel."""

    def __init__(self, model, n: int, height: int, width: int, label=None, orientation=0):
        self.model, self.label, self.orientation = model, label, orientation
        self.device = next(model.parameters()).device
        self.x = torch.zeros(n, 1, height, width, device=self.device)
        self.width = width

    @torch.no_grad()
    def _logits(self) -> torch.Tensor:
        if self.orientation == 0:  # also for models that know no orientation
            return self.model(self.x, self.label).flatten(1)  # (n, H * W)
        return self.model(self.x, self.label, self.orientation).flatten(1)

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

    @torch.no_grad()
    def reorder(self, index: np.ndarray) -> None:
        self.x[:] = self.x[torch.as_tensor(index, device=self.device)]
        self.label, self.orientation = _take_label(self.label, index), _take_label(self.orientation, index)


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
        self.mm = _products(n)
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
        # row_logits' views: what each output of a row sees in it, (n, H + c, W, taps * in) for
        # (padded row, column), and where the layer's output goes.
        self.row_plan = [(layer, as_strided(layer.x, (n, height + c, width, len(layer.w_row)), layer.x.strides,
                                            writeable=False), y)
                         for layer, y in zip(self.layers, [layer.x for layer in self.layers[1:]] + [self.top])]
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
        once, copy_of = _distinct(x[:, :, :rows])
        h = x[once, :, :rows].to(weight.device, weight.dtype)  # each distinct prefix once
        inputs[0][:, c:c + rows, c:c + self.width] = h.permute(0, 2, 3, 1).cpu().numpy()[copy_of]
        for conv, a in zip(self.model.layers, inputs[1:]):
            h = F.relu(conv(h))  # (distinct, C, rows, W)
            a[:, c:c + rows, c:c + self.width] = h.permute(0, 2, 3, 1).cpu().numpy()[copy_of]
        logits = self.model.head(h).flatten(1)[copy_of, :k]  # (n, k)
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
            np.matmul(windows.reshape(n * width, -1), layer.w_top, out=layer.above.reshape(n * width, -1))
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
        zero, mm = self.zero, self.mm
        for x_row, y_row, c_in, c_out, w_row, above, out in self.now:
            a = j * c_in  # padded column j is column j - c: the first pixel of the window
            mm(x_row[:, a:a + len(w_row)], w_row, out=out)  # the own row's part: (n, taps * in) @ (taps * in, out)
            np.add(out, above[:, j], out=out)
            np.maximum(out, zero, out=y_row[:, j * c_out:(j + 1) * c_out])  # ReLU, into the next layer's input
        return mm(y_row[:, j * c_out:(j + 1) * c_out], self.head_w) + self.head_b  # (n,)

    def row_logits(self, p: int, stop: int, guess: np.ndarray) -> np.ndarray:
        """The logits (stop - p, n) of pixels p .. stop - 1 of one row, given every pixel before p and,
        for the pixels after it, the guess (stop - p, n) bool: each layer over those columns at once,
        the products logit() makes one column at a time. Exact at p, and at q > p where the guess is
        right up to q - 1. Then put() the pixels drawn, as after logit()."""
        i, a = divmod(p, self.width)
        b, c = a + stop - p, self.c
        if i != self.row:
            self._start_row(i)
        self.layers[0].x[:, i + c, c + a:c + b, 0] = guess.T  # put() overwrites them with the pixels drawn
        for layer, windows, y in self.row_plan:
            out = np.matmul(windows[:, i + c, a:b], layer.w_row)  # (n, L, out)
            np.add(out, layer.above[:, a:b], out=out)
            np.maximum(out, self.zero, out=y[:, i + c, c + a:c + b])
        return (np.matmul(self.top[:, i + c, c + a:c + b], self.head_w) + self.head_b).T  # (L, n)

    def put(self, p: int, bits: np.ndarray) -> None:
        i, j = divmod(p, self.width)
        self.layers[0].x[:, i + self.c, j + self.c, 0] = bits

    def reorder(self, index: np.ndarray) -> None:
        for layer in self.layers:
            for a in (layer.x, layer.above, layer.out):
                _take_rows(a, index)
        _take_rows(self.top, index)


# The per-row arrays of a _GatedLayer (its other fields are weights, shared by every row).
_GATED_ROWS = ("y", "base", "v", "v_pre", "v_gate", "h", "pre", "out", "above")


class _GatedLayer(NamedTuple):
    """One gated layer of a GatedPixelCNNCache, with c = k // 2 and 2C pre-activation channels."""

    c: int
    w_v: np.ndarray  # ((c + 1) * k * in, 2C): the vertical convolution
    b_v: np.ndarray  # (2C,): its bias
    y: np.ndarray  # (n, 1, 2C): the label and orientation embeddings, gate half halved
    w_link: np.ndarray  # (2C, 2C): the 1x1 link; its gate outputs halved
    base: np.ndarray  # (n, 2C): constant part of the horizontal pre-activations, gate half halved
    v: np.ndarray  # the vertical input, zero-padded as the convolution pads it: the first layer's, the image,
    # (n, H + c, W + 2c, 1), row i at c + i; the other layers', only the rows i - c .. i that row i of the stack
    # sees, (n, c + 1, W + 2c, C): a tenth of the memory, for big batches of candidates
    v_pre: np.ndarray  # (n, W, 2C): vertical pre-activations of the last row computed (before the label), or 0
    v_gate: np.ndarray  # (n, W, 2C): scratch for the vertical gate
    h: np.ndarray  # (n, c + W + 1, in): the current row of the horizontal input after c padding columns
    # (the first layer's is x shifted right by one: x[i, j] at c + 1 + j)
    pre: np.ndarray  # (n, 2C): scratch for one position's horizontal pre-activations
    out: np.ndarray  # (n, C): scratch for one position's output
    above: np.ndarray  # (n, W, 2C): what the current row's horizontal pre-activations get from above


class GatedPixelCNNCache:
    """The StepCache of a GatedPixelCNN (gated.py) [1].

    The vertical stack's row i sees rows <= i of its input, and reaches the horizontal stack
    only at row i + 1, through the link (shifted down): so, once row i is drawn, it is computed
    for the whole row, every layer, and the link gives each layer's `above` for row i + 1.
    The horizontal stack sees only its own row, to the left: per pixel and per layer

        pre = h[j - c .. j] @ w_h + above[j]                (n, (c + 1) * in) @ ((c + 1) * in, 2C)
        out = gate(pre) @ w_out + b_out + h[j]              (residual: not in the first layer)

    then the head on the last layer's out. Six numpy calls a layer, thanks to two rewrites:

    - the gate: sigmoid(g) = (1 + tanh(g / 2)) / 2. With the gate half of w_h and above
      halved, one tanh gives [tanh(f) | tanh(g / 2)], one product [t | t * tanh(g / 2)], and
      w_out stacked twice and halved, [w_out; w_out] / 2, finishes the gate in the product.
    - the out biases: the horizontal input of layer l > 0 is kept less B = the sum of b_out
      of the layers 1 .. l - 1 before it (the residuals carry them along). The padding is then
      -B, not 0, so the window is exact up to the constant B @ w_h, which is in `base`; the
      head adds B back. So `out` goes to the next layer with one add, the residual's.
    """

    def __init__(self, model, n: int, height: int, width: int, label=None, orientation=0):
        if model.config.skip:
            raise ValueError("GatedPixelCNNCache does not take skip connections (GatedPixelCNN.step_cache falls back)")
        device = model.head[-1].weight.device
        conditions = model.conditions(label, orientation, n, device)  # raises on a label the model cannot take
        self.model, self.label, self.orientation, self.n, self.width = model, label, orientation, n, width
        self.height, self.mm = height, _products(n)

        def numpy(t: torch.Tensor) -> np.ndarray:
            return t.detach().float().cpu().numpy()

        def halved(a: np.ndarray) -> np.ndarray:  # the gate half (last C columns) times 1/2, as a copy
            return np.ascontiguousarray(np.concatenate([a[..., :a.shape[-1] // 2], a[..., a.shape[-1] // 2:] / 2],
                                                       axis=-1), np.float32)

        self.layers, steps = [], []
        hidden = model.head[1].in_channels  # C
        b_sum = np.zeros(hidden, np.float32)  # B: what the current layer's horizontal input is kept less
        for number, (layer, y) in enumerate(zip(model.layers, conditions)):
            c, c_in = layer.k // 2, layer.vertical.in_channels
            y = numpy(y) if y is not None else np.zeros((n, 2 * hidden), np.float32)  # (n, 2C)
            w_h = halved(numpy(layer.horizontal.weight)[:, :, 0].transpose(2, 1, 0).reshape(-1, 2 * hidden))
            w_link = halved(numpy(layer.link.weight)[:, :, 0, 0].T)  # (2C, 2C), in -> out
            b_v = numpy(layer.vertical.bias)
            base = halved(y + numpy(layer.horizontal.bias) + numpy(layer.link.bias))  # (n, 2C)
            if number > 0:
                base += b_sum @ w_h.reshape(c + 1, c_in, -1).sum(0)  # B @ w_h, summed over the taps
            g = _GatedLayer(
                c=c,
                w_v=np.ascontiguousarray(numpy(layer.vertical.weight).transpose(2, 3, 1, 0).reshape(-1, 2 * hidden)),
                b_v=b_v, y=halved(y)[:, None], w_link=w_link, base=base,
                v=np.zeros((n, height + c if number == 0 else c + 1, width + 2 * c, c_in), np.float32),
                v_pre=np.empty((n, width, 2 * hidden), np.float32),
                v_gate=np.empty((n, width, 2 * hidden), np.float32),
                h=np.zeros((n, c + width + 1, c_in), np.float32),
                above=np.empty((n, width, 2 * hidden), np.float32),
                pre=np.empty((n, 2 * hidden), np.float32),
                out=np.empty((n, hidden), np.float32))
            if number > 0:
                g.h[:, :c] = -b_sum  # the padding stands for 0
            self.layers.append(g)
            w_out = numpy(layer.out.weight)[:, :, 0, 0].T / 2  # (C, C), in -> out
            b_out = numpy(layer.out.bias)
            # What out is added to on its way to the next layer: b_out in the first layer, and
            # in the others the residual, with b_out left in B.
            steps.append((g, w_h, np.ascontiguousarray(np.concatenate([w_out, w_out]), np.float32),
                          b_out if number == 0 else None))
            if number > 0:
                b_sum = b_sum + b_out
        # The head's first ReLU, on the last layer's output + B: max(out, -B) + B, the + B in head_b1.
        self.relu_floor = -b_sum
        self.steps = steps  # (layer, w_h, w_out, b_out) of each layer
        _, conv1, _, conv2 = model.head  # ReLU, 1x1, ReLU, 1x1
        w1 = numpy(conv1.weight)[:, :, 0, 0].T  # (C, C), in -> out
        self.head_w1, self.head_b1 = np.ascontiguousarray(w1), (numpy(conv1.bias) + b_sum @ w1).astype(np.float32)
        self.head_w2, self.head_b2 = numpy(conv2.weight).reshape(hidden), conv2.bias.item()
        self.top = np.empty((n, hidden), np.float32)  # the last layer's output
        self.u = np.empty((n, hidden), np.float32)  # the head's hidden layer

        # Every view row_logits needs, made once, for all columns: it slices them.
        self.row_plan = []
        for (g, w_h, w_out, b_out), after in zip(steps, self.layers[1:] + [None]):
            st = g.h.strides
            windows = as_strided(g.h, (n, width, (g.c + 1) * g.h.shape[-1]), st, writeable=False)  # columns j - c .. j
            self.row_plan.append((windows, w_h, g.above, w_out, b_out if b_out is not None else g.h[:, g.c:g.c + width],
                                  None if after is None else after.h[:, after.c:after.c + width]))
        self.halve = halved(np.ones(2 * hidden, np.float32))  # [1 .. 1 | 1/2 .. 1/2]
        # And every view _vertical_row needs (views stay valid: the arrays are only ever written in place).
        # windows: what column j of a row sees, columns j .. j + 2c (padded) of each of its c + 1 input rows, side
        # by side, (n, W, c + 1, k * in); the first layer's for every row of the image at once, (n, H, ...).
        self.vertical_plan = []
        for number, (layer, after) in enumerate(zip(self.layers, self.layers[1:] + [None])):
            c, v = layer.c, layer.v
            s = v.strides
            if number == 0:
                windows = as_strided(v, (n, height, width, c + 1, (2 * c + 1) * v.shape[-1]),
                                     (s[0], s[1], s[2], s[1], s[3]), writeable=False)
            else:
                windows = as_strided(v, (n, width, c + 1, (2 * c + 1) * v.shape[-1]), (s[0], s[2], s[1], s[3]),
                                     writeable=False)
            f, g = np.split(layer.v_gate, 2, axis=-1)
            into = None if after is None else (  # the next layer's rows move up one, then row i goes in
                [(after.v[:, r], after.v[:, r + 1]) for r in range(after.c)],
                after.v[:, after.c, after.c:after.c + width])
            self.vertical_plan.append((layer, windows, layer.v_pre.reshape(n * width, -1), f, g, into))
        self.row, self.done = -1, 0  # the row being drawn; how many rows the vertical stack has done
        self.zero = np.float32(0)

    @functools.cached_property
    def plan(self) -> list:
        """Every view logit() needs, made once, when first needed: plan[j] holds one tuple per layer for column j."""
        n, hidden, plan = self.n, self.top.shape[-1], []
        for j in range(self.width):
            row = []
            for (g, w_h, w_out, b_out), after in zip(self.steps, self.layers[1:] + [None]):
                c_in = g.h.shape[-1]
                nxt = self.top if after is None else after.h[:, after.c + j]  # (n, C)
                window = g.h.reshape(n, -1)[:, j * c_in:(j + g.c + 1) * c_in]  # (n, (c + 1) * in): columns j - c .. j
                row.append((window,
                            w_h, g.above[:, j], g.pre, g.pre[:, :hidden], g.pre[:, hidden:], w_out, g.out,
                            b_out if b_out is not None else g.h[:, g.c + j],  # the bias, or the residual
                            nxt))
            plan.append(row)
        return plan

    @torch.inference_mode()
    def begin(self, x: torch.Tensor, k: int) -> np.ndarray:
        for layer in self.layers:
            layer.v.fill(0)
            layer.v_pre.fill(0)
            layer.h[:, layer.c:] = 0
        self.row, self.done = -1, 0
        if k == 0:
            return np.empty((0, self.n), np.float32)
        # The given pixels' logits from one forward pass over the rows that hold them ...
        rows, w = (k - 1) // self.width + 1, self.width
        weight = self.model.head[-1].weight
        once, copy_of = _distinct(x[:, :, :rows], self.label, self.orientation)
        if len(once) < self.n:  # rows alike (completion's candidates): begin once for each, then copy
            return self._begin_copies(x, k, once, copy_of)
        logits = self.model(x[:, :, :rows].to(weight.device, weight.dtype), self.label,
                            self.orientation).flatten(1)[:, :k]
        # ... and the cache from the same steps as sampling: the vertical stack of the given rows
        # is computed when the first pixel after them is asked for, the horizontal stack of a
        # row given in part here.
        first = self.layers[0]
        c = first.c
        first.v[:, c:c + rows, c:c + w, 0] = x[:, 0, :rows].cpu().numpy()
        single_threaded_blas()
        for p in range(k - k % w, k):
            self.logit(p)
            self.put(p, first.v[:, c + p // w, c + p % w, 0])
        return logits.T.float().cpu().numpy()  # (k, n)

    def _begin_copies(self, x: torch.Tensor, k: int, once: torch.Tensor, copy_of: torch.Tensor) -> np.ndarray:
        """begin(x, k) for rows of which x[once] are the distinct ones (_distinct): computed on those, then copied."""
        one = GatedPixelCNNCache(self.model, len(once), self.height, self.width, _take_label(self.label, once),
                                 _take_label(self.orientation, once))
        logits = one.begin(x[once], k)  # (k, distinct)
        index = copy_of.numpy()
        for mine, its in zip(self.layers, one.layers):
            for name in _GATED_ROWS:
                getattr(mine, name)[:] = getattr(its, name)[index]
        self.top[:], self.u[:] = one.top[index], one.u[index]
        self.row, self.done = one.row, one.done
        return logits[:, index]

    def _vertical_row(self, i: int) -> None:
        """Every layer's vertical stack at row i: pre-activations, and the gated output into the next layer."""
        rows = self.n * self.width
        for number, (layer, windows, v_pre, f, g, into) in enumerate(self.vertical_plan):
            if number == 0:  # it keeps the whole image: rows i - c .. i of it; the others keep just these rows
                windows = windows[:, i]
            np.matmul(windows.reshape(rows, -1), layer.w_v, out=v_pre)  # (n * W, (c + 1) * k * in) @ (.., 2C)
            np.add(layer.v_pre, layer.b_v, out=layer.v_pre)  # (n, W, 2C)
            if into is None:  # the last layer's vertical output goes nowhere
                break
            z = np.multiply(layer.v_pre, self.halve, out=layer.v_gate)
            np.add(z, layer.y, out=z)
            np.tanh(z, out=z)  # [tanh(f) | tanh(g / 2)]
            np.multiply(g, 0.5, out=g)
            np.add(g, 0.5, out=g)  # sigmoid(g)
            moves, new_row = into
            for to, source in moves:
                to[...] = source
            np.multiply(f, g, out=new_row)
        self.done = i + 1

    def _start_row(self, i: int) -> None:
        """Compute the vertical stack up to row i - 1, and from it each layer's `above` for row i."""
        n, width = self.n, self.width
        for r in range(self.done, i):
            self._vertical_row(r)
        for layer in self.layers:  # row 0: v_pre is zeros, as shifted in above row 0
            np.matmul(layer.v_pre.reshape(n * width, -1), layer.w_link, out=layer.above.reshape(n * width, -1))
            np.add(layer.above, layer.base[:, None], out=layer.above)
        self.row = i

    def logit(self, p: int) -> np.ndarray:
        i, j = divmod(p, self.width)
        if i != self.row:
            self._start_row(i)
        mm = self.mm
        for window, w_h, above, pre, f, g, w_out, out, add, nxt in self.plan[j]:
            mm(window, w_h, out=pre)  # (n, (c + 1) * in) @ ((c + 1) * in, 2C)
            np.add(pre, above, out=pre)
            np.tanh(pre, out=pre)  # [tanh(f) | tanh(g / 2)]
            np.multiply(f, g, out=g)  # [tanh(f) | tanh(f) * tanh(g / 2)]
            mm(pre, w_out, out=out)  # the gate, then the 1x1 out convolution: (n, 2C) @ (2C, C)
            np.add(out, add, out=nxt)  # + the residual (or the bias), into the next layer's input
        top, u = self.top, self.u  # the head: ReLU, 1x1, ReLU, 1x1, on out + B
        np.maximum(top, self.relu_floor, out=top)
        mm(top, self.head_w1, out=u)
        np.add(u, self.head_b1, out=u)
        np.maximum(u, self.zero, out=u)
        return mm(u, self.head_w2) + self.head_b2  # (n,)

    def row_logits(self, p: int, stop: int, guess: np.ndarray) -> np.ndarray:
        """The logits (stop - p, n) of pixels p .. stop - 1 of one row, given every pixel before p and,
        for the pixels after it, the guess (stop - p, n) bool: every layer's horizontal stack over those
        columns at once, the same products as logit() makes one column at a time. The logit of pixel p
        is exact; that of pixel q > p is, where the guess is right up to q - 1. A guessed pixel is not
        put: put() the pixels drawn, as after logit()."""
        i, a = divmod(p, self.width)
        b = a + stop - p
        if i != self.row:
            self._start_row(i)
        mm, first = np.matmul, self.layers[0]
        first.h[:, first.c + a + 1:first.c + b + 1, 0] = guess.T  # x shifted right by one, as put() does
        for windows, w_h, above, w_out, add, nxt in self.row_plan:
            pre = mm(windows[:, a:b], w_h)  # (n, L, 2C)
            np.add(pre, above[:, a:b], out=pre)
            np.tanh(pre, out=pre)
            half = pre.shape[-1] // 2
            np.multiply(pre[..., :half], pre[..., half:], out=pre[..., half:])
            out = mm(pre, w_out)  # (n, L, C)
            np.add(out, add if add.ndim == 1 else add[:, a:b], out=out)
            if nxt is not None:
                nxt[:, a:b] = out
        np.maximum(out, self.relu_floor, out=out)
        u = mm(out, self.head_w1)
        np.add(u, self.head_b1, out=u)
        np.maximum(u, self.zero, out=u)
        return (mm(u, self.head_w2) + self.head_b2).T  # (L, n)

    def put(self, p: int, bits: np.ndarray) -> None:
        i, j = divmod(p, self.width)
        first = self.layers[0]
        first.v[:, i + first.c, j + first.c, 0] = bits
        first.h[:, first.c + j + 1, 0] = bits  # the horizontal stack sees x shifted right by one

    def reorder(self, index: np.ndarray) -> None:
        for layer in self.layers:  # y and base hold each row's label and orientation
            for name in _GATED_ROWS:
                _take_rows(getattr(layer, name), index)
        _take_rows(self.top, index)
        _take_rows(self.u, index)
        self.label, self.orientation = _take_label(self.label, index), _take_label(self.orientation, index)  # begin's
