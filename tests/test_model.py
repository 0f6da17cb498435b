"""The masks, the masked convolution and the PixelCNN: shapes, exact causality, config checks."""

import re

import pytest
import torch
import torch.nn.functional as F
from torch.func import jacrev

from pixelcnn import MaskedConv2d, PixelCNN, PixelCNNConfig, causal_mask
from pixelcnn.model import PixelCNNConfig as ConfigFromModule


def tiny(hidden=4, n_layers=1, kernel_size=7, seed=0) -> PixelCNN:
    torch.manual_seed(seed)
    return PixelCNN(PixelCNNConfig(hidden_channels=hidden, n_layers=n_layers, kernel_size=kernel_size))


# ---- the masks ----

def test_causal_mask_values_k3():
    assert causal_mask(3, "A").tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    assert causal_mask(3, "B").tolist() == [[1, 1, 1], [1, 1, 0], [0, 0, 0]]
    assert causal_mask(1, "A").tolist() == [[0]]
    assert causal_mask(1, "B").tolist() == [[1]]


@pytest.mark.parametrize("k", [1, 3, 5, 7, 9])
@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_causal_mask_is_raster_order(k, mask_type):
    """1 exactly at the positions before the centre in raster order (and the centre for B)."""
    c = k // 2
    m = causal_mask(k, mask_type)
    assert m.shape == (k, k)
    for r in range(k):
        for s in range(k):
            before = (r, s) < (c, c) or (mask_type == "B" and (r, s) == (c, c))
            assert m[r, s] == float(before), (r, s)


def test_causal_mask_docstring_drawing_matches_the_code():
    """The ASCII masks in causal_mask's docstring are what it returns for k = 5."""
    rows = [line.split() for line in causal_mask.__doc__.splitlines()
            if re.fullmatch(r"\s*([01] ){4}[01]\s+([01] ){4}[01]\s*", line)]
    assert len(rows) == 5, causal_mask.__doc__
    drawn_a = [[float(v) for v in r[:5]] for r in rows]
    drawn_b = [[float(v) for v in r[5:]] for r in rows]
    assert causal_mask(5, "A").tolist() == drawn_a
    assert causal_mask(5, "B").tolist() == drawn_b


@pytest.mark.parametrize("k, mask_type", [(4, "A"), (0, "B"), (-3, "A"), (3, "C"), (3, "a")])
def test_causal_mask_rejects_bad_arguments(k, mask_type):
    with pytest.raises(ValueError):
        causal_mask(k, mask_type)


# ---- the masked convolution ----

@pytest.mark.parametrize("k", [1, 3, 5, 7])
@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_masked_conv_equals_conv2d_with_the_full_masked_kernel(k, mask_type):
    torch.manual_seed(k)
    conv = MaskedConv2d(3, 5, k, mask_type)
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(2, 3, 11, 9)  # not square, to catch a swapped pad
    expected = F.conv2d(x, conv.weight * causal_mask(k, mask_type), conv.bias, padding=k // 2)
    out = conv(x)
    assert out.shape == (2, 5, 11, 9)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_masked_conv_mask_is_a_buffer_not_saved_and_weights_not_mutated():
    conv = MaskedConv2d(2, 2, 5, "A")
    before = conv.weight.detach().clone()
    conv(torch.randn(1, 2, 6, 6)).sum().backward()
    assert torch.equal(conv.weight.detach(), before)  # the mask is applied in forward, not to the weights
    assert set(conv.state_dict()) == {"weight", "bias"}
    assert torch.equal(conv.mask, causal_mask(5, "A"))
    # masked-out weights get no gradient
    assert torch.all(conv.weight.grad[:, :, causal_mask(5, "A") == 0] == 0)


# ---- the model ----

@pytest.mark.parametrize("shape", [(3, 1, 28, 28), (1, 1, 28, 28), (2, 1, 7, 5)])
def test_output_shape(shape):
    model = tiny()
    assert model(torch.randint(0, 2, shape).float()).shape == shape


def test_loss_is_mean_bce_and_accepts_a_batch_tuple():
    model = tiny()
    x = torch.randint(0, 2, (4, 1, 28, 28)).float()
    expected = F.binary_cross_entropy_with_logits(model(x), x)
    assert model.loss((x, torch.zeros(4, dtype=torch.long))).shape == ()
    torch.testing.assert_close(model.loss((x, torch.zeros(4, dtype=torch.long))), expected)
    torch.testing.assert_close(model.loss(x), expected)


def test_forward_rejects_bad_inputs():
    model = tiny()
    with pytest.raises(ValueError, match="shape"):
        model(torch.zeros(2, 28, 28))
    with pytest.raises(ValueError, match="shape"):
        model(torch.zeros(2, 3, 28, 28))
    with pytest.raises(ValueError, match="label"):
        model(torch.zeros(1, 1, 28, 28), label=torch.tensor([3]))


def _jacobian(model: PixelCNN, x: torch.Tensor) -> torch.Tensor:
    """d logit[p] / d x[q] for every pair of the H*W positions, rows p, columns q, raster order."""
    h, w = x.shape[-2:]
    f = lambda flat: model(flat.view(1, 1, h, w)).reshape(h * w)  # noqa: E731
    return jacrev(f)(x.reshape(h * w))  # (HW, HW)


def _reachable(config: PixelCNNConfig, h: int, w: int) -> torch.Tensor:
    """Which inputs each output can depend on, from the masks alone (no convolution code).

    M[p, q] = 1 when q lies under the mask of a layer centred on p; the stack composes them.
    """
    k, c = config.kernel_size, config.kernel_size // 2

    def layer(mask):
        m = torch.zeros(h * w, h * w, dtype=torch.float64)
        for i in range(h):
            for j in range(w):
                for r, s in mask.nonzero().tolist():
                    a, b = i + r - c, j + s - c
                    if 0 <= a < h and 0 <= b < w:  # zero padding outside the image
                        m[i * w + j, a * w + b] = 1
        return m

    reach = layer(causal_mask(k, "A"))
    mb = layer(causal_mask(k, "B"))
    for _ in range(config.n_layers):
        reach = ((mb @ reach) > 0).double()
    return reach > 0


@pytest.mark.parametrize("n_layers, kernel_size", [(2, 7), (1, 3), (0, 5)])
def test_autoregressive_exactly_for_every_pixel(n_layers, kernel_size):
    """For all 784 positions p: logit[p] does not depend on x[q] for any q >= p in raster order.

    With all weights and biases positive and inputs in {0, 1}, every ReLU is active and every
    path through the network adds a positive term to d logit[p] / d x[q]: the Jacobian is
    non-zero exactly where some path exists, whatever the weights. So its pattern is the
    receptive field of the architecture, which must equal the one composed from the masks and
    lie strictly below the diagonal.
    """
    model = tiny(hidden=4, n_layers=n_layers, kernel_size=kernel_size).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.abs() + 0.01)
    x = torch.randint(0, 2, (1, 1, 28, 28), generator=torch.Generator().manual_seed(0)).double()
    jac = _jacobian(model, x)
    depends = jac != 0

    future = torch.ones(784, 784, dtype=torch.bool).triu()  # q >= p, the pixel itself included
    assert not depends[future].any(), "an output depends on its own or a later pixel"
    assert torch.equal(depends, _reachable(model.config, 28, 28))

    c = kernel_size // 2
    for p in range(784):
        i, j = divmod(p, 28)
        if j > 0:
            assert depends[p, p - 1], f"pixel {(i, j)} does not see the pixel on its left"
        if i > 0 and c > 0:
            assert depends[p, p - 28], f"pixel {(i, j)} does not see the pixel above"


def test_autoregressive_with_random_weights_and_inputs():
    """The everyday case: the initial random weights, a random binary image."""
    model = tiny(hidden=8, n_layers=2).double()
    future = torch.ones(784, 784, dtype=torch.bool).triu()
    x = torch.randint(0, 2, (1, 1, 28, 28), generator=torch.Generator().manual_seed(0)).double()
    jac = _jacobian(model, x)
    assert torch.all(jac[future] == 0)
    assert (jac[~future] != 0).sum() > 784  # and it does depend on the past


def test_changing_a_pixel_never_changes_earlier_outputs():
    """The style guide's causality check, by perturbation, for every pixel of one image, in a batch."""
    model = tiny(hidden=4, n_layers=1)
    torch.manual_seed(1)
    x = torch.randint(0, 2, (1, 1, 28, 28)).float()
    batch = x.repeat(785, 1, 1, 1).view(785, 784)  # row 0: x; row k + 1: x with pixel k flipped
    k = torch.arange(784)
    batch[k + 1, k] = 1 - batch[k + 1, k]
    with torch.no_grad():
        out = model(batch.view(785, 1, 28, 28)).view(785, 784)  # one batch: the same arithmetic per row
    base, out = out[0], out[1:]
    upto = torch.ones(784, 784, dtype=torch.bool).tril()  # outputs at pixels <= k
    assert torch.equal(out[upto], base.expand(784, 784)[upto])


# ---- config ----

@pytest.mark.parametrize("kwargs", [
    {"hidden_channels": 0}, {"n_layers": -1}, {"kernel_size": 4}, {"kernel_size": 0},
    {"model_type": "gated"}, {"hidden_channels": 2.5}, {"kernel_size": "7"},
])
def test_config_validation(kwargs):
    with pytest.raises(ValueError):
        PixelCNNConfig(**kwargs)


def test_config_defaults_are_the_recipe():
    assert ConfigFromModule is PixelCNNConfig
    cfg = PixelCNNConfig()
    assert (cfg.hidden_channels, cfg.kernel_size, cfg.n_layers) == (64, 7, 6)
    model = PixelCNN(cfg)
    assert [layer.mask_type for layer in model.layers] == ["A"] + ["B"] * 6
