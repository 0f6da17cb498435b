"""The gated PixelCNN, and receptive fields: the recipe's blind spot and the gated model without one."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.func import jacrev

from pixelcnn import PixelCNN, PixelCNNConfig, label_nats, load_model, marginal_nats, sample, save_model, surprise
from pixelcnn.gated import GatedPixelCNN, GatedPixelCNNConfig
from pixelcnn.receptive import blind_spot, receptive_field
from test_model import _reachable


def gated(seed=0, **kw) -> GatedPixelCNN:
    torch.manual_seed(seed)
    return GatedPixelCNN(GatedPixelCNNConfig(**{"hidden_channels": 8, "n_layers": 3, **kw})).eval()


def gated_reach(config: GatedPixelCNNConfig, i: int, j: int, size: int = 28) -> torch.Tensor:
    """Every earlier pixel the logit at (i, j) can reach, from the architecture's arithmetic.

    The vertical stack widens by first_kernel_size // 2, then kernel_size // 2 per layer, up
    and sideways; the horizontal stack sees it one row down, and the pixels to its left.
    """
    w = config.first_kernel_size // 2 + (config.n_layers - 1) * (config.kernel_size // 2)
    reach = torch.zeros(size, size, dtype=torch.bool)
    reach[max(i - w - 1, 0):i, max(j - w, 0):j + w + 1] = True  # the rows above
    reach[i, max(j - w - 1, 0):j] = True  # the row itself, left of the pixel
    return reach


# ---- causality at every pixel ----

# The shipped model's kernels, depth and labels, with 4 channels instead of its 48: the channels
# do not change which pixel reaches which, and at 48 one batch of 785 images takes ~35 s here.
SHIPPED = json.loads((Path(__file__).resolve().parent.parent / "weights" / "gated-pixelcnn" / "config.json")
                     .read_text())
SHIPPED_SHAPE = {k: v for k, v in SHIPPED.items() if k != "model_type"} | {"hidden_channels": 4}
SMALL = {"hidden_channels": 3, "first_kernel_size": 5, "kernel_size": 3, "n_layers": 3}


def weighty(model: GatedPixelCNN, seed=0) -> GatedPixelCNN:
    """Weights drawn wider than the default init, so that a pixel's effect survives ten layers in
    float32, and the label and orientation embeddings drawn too: they start at zero."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(0, 1.0 if ".label." in name or ".orientation." in name
                      else 2 / p[0].numel() ** 0.5 if p.dim() > 1 else 0.1)
    return model


def one_flip_each(x: torch.Tensor) -> torch.Tensor:
    """(H * W + 1, 1, H, W): x (1, 1, H, W), then x with pixel k flipped, for every k in raster order."""
    n = x.numel()
    batch = x.reshape(1, n).repeat(n + 1, 1)
    k = torch.arange(n)
    batch[k + 1, k] = 1 - batch[k + 1, k]
    return batch.view(n + 1, *x.shape[1:])


def assert_causal(model, label=None, orientation=0):
    """Flipping pixel k never changes the outputs at pixels <= k, and does change some later ones."""
    x = (torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(5)) > 0.5).float()
    with torch.no_grad():
        batch = one_flip_each(x)  # one batch: the same arithmetic per row
        out = (model(batch, label, orientation) if orientation else model(batch, label)).view(785, 784)
    base, out = out[0], out[1:]  # out[k]: the outputs with pixel k flipped
    upto = torch.ones(784, 784, dtype=torch.bool).tril()  # row k: the outputs at pixels <= k
    assert torch.equal(out[upto], base.expand(784, 784)[upto]), "an output depends on its own or a later pixel"
    seen = (out != base)[:27 * 28].any(dim=1)  # in the last row, few outputs come later, all maybe unmoved
    assert seen.all(), f"pixels {seen.logical_not().nonzero().flatten().tolist()} change no later output"


@pytest.mark.parametrize("kw", [SHIPPED_SHAPE, SMALL, {**SMALL, "n_labels": 0}, {**SMALL, "skip": True}],
                         ids=["shipped-shape", "small", "small-unlabelled", "small-skip"])
@pytest.mark.parametrize("label", [None, 3], ids=["no-label", "label3"])
def test_changing_a_pixel_never_changes_earlier_outputs(kw, label):
    """The style guide's causality check at all 784 pixels, as for the recipe model (test_model.py)."""
    if label is not None and kw.get("n_labels", 10) == 0:
        pytest.skip("an unlabelled model takes no label")
    assert_causal(weighty(gated(**kw)), label)


@pytest.mark.parametrize("orientation", range(4))
def test_each_orientation_is_causal_in_its_own_frame(orientation):
    """A model of four orientations reads each in plain raster order, in that orientation's frame."""
    model = weighty(gated(**SMALL, n_orientations=4))
    assert_causal(model, 3, orientation)
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(6)).round()
    with torch.no_grad():  # and the orientation plays a part
        assert not torch.equal(model(x, 3, orientation), model(x, 3, (orientation + 1) % 4))


@pytest.mark.parametrize("kw", [SMALL, {**SMALL, "first_kernel_size": 15, "n_layers": 5}])
@pytest.mark.parametrize("label", [None, 3])
def test_every_output_sees_exactly_the_earlier_pixels_in_reach(kw, label):
    """The receptive field of all 784 outputs at once, from the Jacobian, equals gated_reach's.

    With every weight and bias positive and inputs in {0, 1}, every pre-activation is positive,
    so every gate, ReLU and residual passes a positive derivative: the Jacobian is non-zero
    exactly where a path exists, and its pattern is the architecture's receptive field.
    """
    model = gated(**kw).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.abs() + 0.01)
    x = torch.randint(0, 2, (784,), generator=torch.Generator().manual_seed(0)).double()
    jac = jacrev(lambda flat: model(flat.view(1, 1, 28, 28), label).reshape(784))(x)  # (784, 784): d out[p] / d x[q]
    expected = torch.stack([gated_reach(model.config, p // 28, p % 28).reshape(784) for p in range(784)])
    assert torch.equal(jac != 0, expected)
    assert not expected.triu().any()  # nothing at or after the pixel itself


# ---- receptive fields ----

PIXELS = [(0, 0), (0, 5), (1, 0), (5, 27), (13, 13), (27, 14), (27, 27)]


@pytest.mark.parametrize("kw", [{}, {"first_kernel_size": 5, "kernel_size": 5, "n_layers": 2},
                                {"first_kernel_size": 15, "n_layers": 4}, {"n_layers": 1}, {"n_labels": 0}])
@pytest.mark.parametrize("i, j", PIXELS)
def test_gated_model_sees_every_earlier_pixel_in_reach_and_nothing_later(kw, i, j):
    model = gated(**kw)
    field = receptive_field(model, i, j)
    assert torch.equal(field, gated_reach(model.config, i, j))
    assert not blind_spot(model, i, j)[gated_reach(model.config, i, j)].any()  # nothing in reach is blind


def test_gated_model_with_a_label_has_the_same_field():
    model = gated()
    assert torch.equal(receptive_field(model, 20, 9, label=3), gated_reach(model.config, 20, 9))


@pytest.mark.parametrize("i, j", PIXELS)
def test_recipe_model_field_is_what_its_masks_compose_to(i, j):
    torch.manual_seed(0)
    model = PixelCNN(PixelCNNConfig(hidden_channels=16, n_layers=2)).eval()
    expected = _reachable(model.config, 28, 28)[i * 28 + j].reshape(28, 28)
    assert torch.equal(receptive_field(model, i, j), expected)


def test_recipe_model_has_a_blind_spot_above_and_to_the_right():
    """The recipe's stack (7x7, six mask-B layers) cannot see a wedge of earlier pixels."""
    torch.manual_seed(0)
    model = PixelCNN(PixelCNNConfig()).eval()  # the recipe's shape
    blind = blind_spot(model, 27, 14)
    # Each layer reaches one row up and three columns right, and no further right within a row:
    # d rows up, nothing right of column 14 + 3d is seen, for d = 1..4.
    for d in range(1, 5):
        assert blind[27 - d, 14 + 3 * d + 1:].all() and not blind[27 - d, :14 + 3 * d + 1].any()
    assert not blind[6:23].any() and not blind[27].any()  # five rows up and more, and its own row: all seen
    assert blind[:6].all()  # beyond reach: 7 layers reach 3 rows up each, 21 in all
    # The wedge is there for a pixel in the middle too: the pixel just above and 4 right is blind.
    assert blind_spot(model, 10, 10)[9, 14:].all()
    # The gated model of the same depth sees every earlier pixel the recipe's misses, where in reach.
    g = gated(hidden_channels=16, n_layers=7, first_kernel_size=7, kernel_size=7)
    assert not (blind & receptive_field(g, 27, 14).logical_not() & gated_reach(g.config, 27, 14)).any()
    assert receptive_field(g, 27, 14)[26, 21:].all()


def test_receptive_field_rejects_a_pixel_outside():
    with pytest.raises(ValueError, match="inside the 28x28"):
        receptive_field(gated(), 28, 0)


# ---- the gated model ----

def test_labels_change_the_logits_and_none_is_its_own_label():
    model = gated()
    with torch.no_grad():  # as after training: a new model's label embeddings are 0
        for layer in model.layers:
            layer.label.weight.normal_()
    x = (torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    with torch.no_grad():
        base = model(x)
        assert not torch.equal(model(x, 3), base)
        assert torch.equal(model(x, torch.full((4,), 10)), base)  # label 10 is "no label"
        assert torch.equal(model(x, torch.tensor([3, 3, 3, 3])), model(x, 3))


@pytest.mark.parametrize("bad, match", [(11, "labels must be in"), (-1, "labels must be in"),
                                        (torch.zeros(3, dtype=torch.long), "shape")])
def test_bad_labels(bad, match):
    with pytest.raises(ValueError, match=match):
        gated()(torch.zeros(4, 1, 28, 28), bad)


@pytest.mark.parametrize("label", [3.7, -0.5, torch.tensor([1.0, 2.5, 3.0, 4.0]), True],
                         ids=["3.7", "-0.5", "tensor-2.5", "True"])
def test_a_label_that_is_not_a_whole_number_is_refused_not_truncated(label):
    model = gated()
    x = torch.zeros(4, 1, 4, 5)
    with pytest.raises(ValueError, match="whole numbers"):
        model(x, label)
    with pytest.raises(ValueError, match="whole numbers"):
        sample(model, 4, label=label, image_size=(4, 5))
    with pytest.raises(ValueError, match="whole numbers"):
        surprise(model, x, label=label)
    with torch.no_grad():  # a float that is a whole number is that number
        assert torch.equal(model(x, 3.0), model(x, 3)) and torch.equal(model(x, torch.full((4,), 3.0)), model(x, 3))


def test_unlabelled_model_refuses_a_label():
    with pytest.raises(ValueError, match="no labels"):
        gated(n_labels=0)(torch.zeros(1, 1, 28, 28), 3)


def test_eval_loss_is_the_unconditional_loss_whatever_the_labels():
    model = gated()
    x = (torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(2)) > 0.5).float()
    labels = torch.tensor([1, 2, 3, 4])
    with torch.no_grad():
        expected = F.binary_cross_entropy_with_logits(model(x), x)
        assert torch.equal(model.loss((x, labels)), expected)


def test_training_loss_drops_labels_at_the_configured_rate():
    seen = []
    model = gated(label_dropout=0.25).train()
    model.layers[0].label.register_forward_hook(lambda m, inp, out: seen.append(inp[0].clone()))
    torch.manual_seed(0)
    model.loss((torch.zeros(4000, 1, 4, 4), torch.full((4000,), 7)))
    dropped = (seen[0] == 10).float().mean().item()
    assert 0.2 < dropped < 0.3 and set(seen[0].tolist()) == {7, 10}


@pytest.mark.parametrize("batch_size", [1, 25, 1000])
def test_label_likelihoods_and_their_marginal(batch_size):
    model = gated(seed=3)
    x = (torch.rand(7, 1, 28, 28, generator=torch.Generator().manual_seed(4)) > 0.7).float()
    nats = label_nats(model, x, batch_size=batch_size)
    per_label = torch.stack([surprise(model, x, label=torch.full((7,), d)).nats for d in range(10)], dim=1)
    torch.testing.assert_close(nats, per_label)
    # -log of the mean of p(x | d) over the ten digits, computed here the plain way in float64
    expected = -torch.log(torch.exp(-per_label.double() + per_label.double().min()).mean(dim=1)) + per_label.min()
    marginal = marginal_nats(model, x, batch_size=batch_size)
    torch.testing.assert_close(marginal.double(), expected, rtol=0, atol=1e-3)
    best = per_label.min(dim=1).values  # the mean is at least the largest term over 10, at most it
    assert (marginal >= best - 1e-3).all() and (marginal <= best + torch.log(torch.tensor(10.0)) + 1e-3).all()


def test_an_unlabelled_model_has_no_label_likelihoods():
    with pytest.raises(ValueError, match="no labels"):
        label_nats(gated(n_labels=0), torch.zeros(1, 1, 28, 28))


@pytest.mark.parametrize("kw", [{"kernel_size": 4}, {"first_kernel_size": 1}, {"n_layers": 0},
                                {"label_dropout": 1.5}, {"n_labels": -1}, {"model_type": "pixelcnn"}, {"dropout": 1.0},
                                {"dropout": -0.1}])
def test_config_validation(kw):
    with pytest.raises(ValueError):
        GatedPixelCNNConfig(**kw)


def test_saves_and_loads_by_model_type(tmp_path):
    model = gated()
    save_model(model, tmp_path / "g")
    loaded = load_model(tmp_path / "g")
    assert isinstance(loaded, GatedPixelCNN) and loaded.config == model.config
    x = torch.zeros(1, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x, 5), model(x, 5))


def test_dropout_acts_in_training_only_and_keeps_the_weights_of_a_model_without_it(tmp_path):
    torch.manual_seed(0)
    shape = dict(hidden_channels=8, first_kernel_size=5, kernel_size=3, n_layers=3)
    plain = GatedPixelCNN(GatedPixelCNNConfig(**shape))
    dropped = GatedPixelCNN(GatedPixelCNNConfig(dropout=0.3, **shape))
    dropped.load_state_dict(plain.state_dict())  # the same weights: dropout has none of its own
    x, label = (torch.rand(4, 1, 12, 12) < 0.3).float(), torch.tensor([1, 2, 3, 4])
    with torch.no_grad():
        assert torch.equal(dropped.eval()(x, label), plain.eval()(x, label))  # in eval: the identity
        dropped.train()
        a, b = dropped(x, label), dropped(x, label)
        assert not torch.allclose(a, b) and not torch.allclose(a, plain(x, label))  # in training: random
        layer = dropped.layers[1]  # each layer's gated features are what it drops, a share of 0.3 of them
        features = []
        hook = layer.dropout.register_forward_hook(lambda m, i, o: features.append((o == 0) & (i[0] != 0)))
        dropped(x.repeat(16, 1, 1, 1), label.repeat(16))
        hook.remove()
        assert 0.27 < features[0].float().mean() < 0.33
    loaded = load_model(save_model(dropped, tmp_path / "d"))
    assert loaded.config.dropout == 0.3 and not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded(x, label), plain(x, label))


# ---- the hybrid loss: -log p(x | y) - w log p(y | x) ----

def test_the_hybrid_loss_adds_bayes_rules_cross_entropy_of_the_first_images():
    model = gated(seed=3, label_dropout=0.5)
    with torch.no_grad():
        for layer in model.layers:
            layer.label.weight.normal_(std=0.5)  # labels that matter
    x = (torch.rand(6, 1, 10, 10, generator=torch.Generator().manual_seed(4)) > 0.6).float()
    y = torch.tensor([3, 1, 4, 1, 5, 9])
    model.train()
    torch.manual_seed(0)  # the same labels dropped in both
    plain = model.loss((x, y))
    model.config = replace(model.config, classify_weight=7.0, classify_batch=4)
    torch.manual_seed(0)
    hybrid = model.loss((x, y))
    nats = label_nats(model.eval(), x[:4])  # (4, 10): -log p(x | label)
    expected = 7.0 * F.cross_entropy(-nats, y[:4]) / x[0].numel()  # -log p(y | x) with p(y) = 1/10
    assert expected > 1e-3
    torch.testing.assert_close(hybrid - plain, expected, rtol=1e-4, atol=1e-6)
    model.config = replace(model.config, classify_batch=100)  # more than the batch: every image, once
    torch.manual_seed(0)
    every = model.train().loss((x, y)) - plain
    torch.testing.assert_close(every, 7.0 * F.cross_entropy(-label_nats(model.eval(), x), y) / 100,
                               rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("bad", [dict(classify_weight=-1.0), dict(classify_batch=0),
                                 dict(classify_weight=1.0, n_labels=0)])
def test_bad_hybrid_settings(bad):
    with pytest.raises(ValueError, match="classify_weight"):
        GatedPixelCNNConfig(**bad)


def test_after_the_same_short_training_the_hybrid_loss_classifies_better():
    """The same 100 steps on the same batches of bars (test_mixture), with w = 0 and w = 30."""
    from test_mixture import bars, train_steps

    train_x, train_y = bars(4096, seed=0)
    test_x, test_y = bars(500, seed=5)
    label_loss, accuracy = {}, {}
    for w in (0.0, 30.0):
        model = gated(seed=0, hidden_channels=16, first_kernel_size=5, kernel_size=3, n_layers=3,
                      classify_weight=w, classify_batch=16)
        nats = label_nats(train_steps(model, train_x, train_y, steps=100), test_x)  # (500, 10): -log p(x | label)
        label_loss[w] = float(F.cross_entropy(-nats, test_y))  # -log p(true label | x), nats per image
        accuracy[w] = float((nats.argmin(1) == test_y).float().mean())  # argmax_y p(x | y)
    assert label_loss[30.0] < 0.6 * label_loss[0.0], label_loss  # measured: 0.76 against 2.12
    assert accuracy[30.0] > accuracy[0.0] + 0.2, accuracy  # measured: 77% against 42%


# ---- distillation: a teacher's probabilities as the targets ----

@pytest.mark.parametrize("kw", [dict(label_dropout=0.5), dict(n_labels=0)])
def test_a_copy_of_its_teacher_has_nothing_to_learn_from_it_but_much_from_the_pixels(kw):
    """The distillation loss's gradient vanishes where the model's conditionals are the teacher's,
    under every label it is shown (the dropped ones and the wrong ones alike)."""
    import copy

    model = weighty(gated(seed=3, **kw), seed=3).train()
    x = (torch.rand(6, 1, 10, 10, generator=torch.Generator().manual_seed(4)) > 0.6).float()
    y = torch.tensor([3, 1, 4, 1, 5, 9])

    def grad_norm():
        model.zero_grad()
        torch.manual_seed(0)
        model.loss((x, y)).backward()
        return torch.cat([p.grad.flatten() for p in model.parameters()]).norm()

    from_pixels = grad_norm()
    model.distil_from(copy.deepcopy(model), others=4 if model.config.n_labels else 0)
    assert grad_norm() < 1e-5 * from_pixels, (grad_norm(), from_pixels)
    plain = gated(**kw)
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in plain.named_parameters()]  # no teacher's
    assert set(model.state_dict()) == set(plain.state_dict())  # nor saved with it


def test_the_distillation_loss_is_the_cross_entropy_to_the_teachers_probabilities_under_the_shown_labels():
    model = weighty(gated(seed=1, label_dropout=0.5), seed=1).train()
    teacher = weighty(gated(seed=2), seed=2)
    shown = []

    class Recording(torch.nn.Module):
        config = teacher.config

        def forward(self, x, label):
            shown.append((x.clone(), label.clone()))
            return teacher(x, label)

    x = (torch.rand(6, 1, 10, 10, generator=torch.Generator().manual_seed(4)) > 0.6).float()
    y = torch.tensor([3, 1, 4, 1, 5, 9])
    torch.manual_seed(0)
    drop = torch.rand(6) < 0.5  # the loss's own draw, first in both
    model.distil_from(Recording(), others=4)
    torch.manual_seed(0)
    loss = model.loss((x, y))
    (inputs, labels), = shown
    assert torch.equal(inputs, torch.cat([x, x[:4]]))
    assert torch.equal(labels[:6], torch.where(drop, torch.full_like(y, 10), y))  # dropped as in plain training
    assert ((labels[6:] != y[:4]) & (labels[6:] >= 0) & (labels[6:] < 10)).all(), labels  # a wrong label each
    with torch.no_grad():
        target = torch.sigmoid(teacher(inputs, labels))
        expected = F.binary_cross_entropy_with_logits(model(inputs, labels), target)
    torch.testing.assert_close(loss, expected)
    torch.manual_seed(0)
    model.distil_from(None)
    torch.testing.assert_close(model.loss((x, y)), F.binary_cross_entropy_with_logits(model(x, labels[:6]), x))


@pytest.mark.parametrize("bad", [dict(n_labels=0), dict(n_orientations=4), dict(classify_weight=1.0)])
def test_a_teacher_must_be_a_model_of_the_same_labels_and_no_other_objective(bad):
    with pytest.raises(ValueError, match="teacher"):
        gated(**bad).distil_from(gated())
    with pytest.raises(ValueError, match="others"):
        gated().distil_from(gated(), others=-1)


@pytest.mark.parametrize("extra", [{}, {"skip": True}, {"n_orientations": 4}, {"n_labels": 0}])
def test_a_widened_model_starts_with_the_narrow_ones_logits_and_can_learn_with_its_new_channels(extra):
    torch.manual_seed(0)
    shape = dict(first_kernel_size=5, kernel_size=3, n_layers=3, **extra)
    narrow = GatedPixelCNN(GatedPixelCNNConfig(hidden_channels=4, **shape)).eval()
    with torch.no_grad():  # embeddings that matter, as a trained model's do
        for layer in narrow.layers:
            for e in (layer.label, layer.orientation):
                if e is not None:
                    e.weight.normal_(std=0.5)
    wide = GatedPixelCNN(GatedPixelCNNConfig(hidden_channels=7, **shape)).eval()
    x = (torch.rand(6, 1, 12, 12) < 0.3).float()
    label = torch.tensor([0, 3, 10, 5, 9, 1]) if narrow.config.n_labels else None
    o = torch.tensor([0, 1, 2, 3, 0, 1]) if "n_orientations" in extra else 0
    assert not torch.allclose(wide(x, label, o), narrow(x, label, o))
    wide.widen_from(narrow)
    assert torch.allclose(wide(x, label, o), narrow(x, label, o), atol=1e-6)
    # the weights zeroed, from the new channels into the old ones, get gradients: the new width is used
    F.binary_cross_entropy_with_logits(wide(x, label, o), x).backward()
    grad = wide.layers[1].horizontal.weight.grad  # (2 * 7, 7, 1, 2): outputs (tanh half) 0..3 from inputs 4..6
    assert not wide.layers[1].horizontal.weight[:4, 4:].any() and grad[:4, 4:].abs().sum() > 0


def test_only_the_same_model_with_fewer_channels_widens():
    small = GatedPixelCNN(GatedPixelCNNConfig(hidden_channels=4, n_layers=2))
    for other in (dict(hidden_channels=3, n_layers=2), dict(hidden_channels=6, n_layers=3),
                  dict(hidden_channels=6, n_layers=2, kernel_size=5)):
        with pytest.raises(ValueError, match="can only widen"):
            GatedPixelCNN(GatedPixelCNNConfig(**other)).widen_from(small)
