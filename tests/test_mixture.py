"""label=None on a labelled model is the mixture p(x) = 1/10 sum_y p(x | y), sampled and scored exactly."""

import math

import pytest
import torch
import torch.nn.functional as F

import pixelcnn
from pixelcnn import DROPPED, GatedPixelCNN, GatedPixelCNNConfig, sample, sample_stream

# chi-square critical values at p = 0.001, by degrees of freedom
CHI2_999 = {9: 27.88}


@pytest.fixture(scope="module")
def model() -> GatedPixelCNN:
    """A small labelled model whose labels matter: embeddings drawn at random, not at 0."""
    torch.manual_seed(0)
    m = GatedPixelCNN(GatedPixelCNNConfig(hidden_channels=8, first_kernel_size=5, kernel_size=3, n_layers=3))
    with torch.no_grad():
        for layer in m.layers:
            layer.label.weight.normal_(std=0.5)
    return m.eval()


def bars(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """12x12 images a PixelCNN learns fast, whose label shows from the top rows: a bar in row label + 1."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(10, (n,), generator=g)
    x = torch.zeros(n, 1, 12, 12)
    for i in range(n):
        x[i, 0, y[i] + 1, 2:10] = 1
        x[i, 0, 2:10, (y[i] % 5) * 2 + 1] = 1
    flip = torch.rand(n, 1, 12, 12, generator=g) < 0.02
    return torch.where(flip, 1 - x, x), y


@pytest.fixture(scope="module")
def trained() -> GatedPixelCNN:
    """A labelled model (label embeddings starting at 0, as every new model's do) trained 200 steps on bars."""
    torch.manual_seed(0)
    m = GatedPixelCNN(GatedPixelCNNConfig(hidden_channels=16, first_kernel_size=5, kernel_size=3, n_layers=3))
    return train_steps(m, *bars(4096, seed=0), steps=200)


def train_steps(model: GatedPixelCNN, x: torch.Tensor, labels: torch.Tensor, steps: int) -> GatedPixelCNN:
    """Adam at 1e-2 on `steps` batches of 64 drawn with seed 0; the model, in eval mode."""
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(len(x), (64,), generator=g)
        loss = model.loss((x[idx], labels[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def chi_square(labels: torch.Tensor, p: torch.Tensor) -> float:
    """Pearson's statistic of the drawn labels against p (labels with p < 1e-3 must not be drawn at all)."""
    counts = torch.bincount(labels, minlength=len(p)).double()
    expected = p.double() * len(labels)
    rare = p < 1e-3
    if counts[rare].sum() > 0:
        return float("inf")
    return float(((counts - expected)[~rare] ** 2 / expected[~rare]).sum())


def test_a_new_model_starts_as_the_unconditional_one():
    m = GatedPixelCNN(GatedPixelCNNConfig(hidden_channels=8, n_layers=2))
    x = (torch.rand(2, 1, 28, 28) < 0.3).float()
    outputs = [m(x, label) for label in (0, 7, None)]
    assert torch.equal(outputs[0], outputs[1]) and torch.equal(outputs[0], outputs[2])


def test_after_a_short_training_the_true_label_helps(trained):
    x, labels = bars(500, seed=5)
    pixels = x[0].numel()
    given = float(pixelcnn.surprise(trained, x, label=labels).nats.mean()) / pixels
    dropped = float(pixelcnn.surprise(trained, x, label=DROPPED).nats.mean()) / pixels
    marginal = float(pixelcnn.marginal_nats(trained, x).mean()) / pixels
    assert given < dropped - 0.005, (given, dropped)
    assert given < marginal < given + math.log(10) / pixels  # p(x) >= p(x | y) / 10


def test_the_same_seed_gives_the_images_of_the_drawn_labels(model):
    last = list(sample_stream(model, 6, seed=11))[-1]
    assert last.labels.shape == (6,)
    assert torch.equal(sample(model, 6, seed=11, label=last.labels), last.images)
    assert torch.equal(sample(model, 6, seed=11), last.images)
    assert not torch.equal(sample(model, 6, seed=11, label=DROPPED), last.images)


def test_generation_draws_the_labels_uniformly(model):
    labels = list(sample_stream(model, 3000, seed=0, every=784, image_size=(2, 2)))[-1].labels
    stat = chi_square(labels, torch.full((10,), 0.1))
    assert stat < CHI2_999[9], stat


def test_completion_draws_the_label_from_its_posterior_given_the_kept_pixels(trained):
    x = bars(1, seed=5)[0]
    k = 36  # the top 3 rows
    # p(label | the first k pixels), from the model's likelihoods of those pixels under each label
    with torch.no_grad():
        logits = trained(x.expand(10, -1, -1, -1), torch.arange(10)).flatten(1)[:, :k]  # (10, k)
    log_lik = -F.binary_cross_entropy_with_logits(logits, x.flatten(1)[:, :k].expand(10, -1),
                                                  reduction="none").sum(1)
    posterior = torch.softmax(log_lik.double(), 0)
    assert posterior.max() < 0.9 and (posterior > 0.05).sum() >= 3  # informative, not degenerate
    drawn = list(sample_stream(trained, 1000, seed=1, prefix=x, pixels=k, every=144, image_size=(12, 12)))[-1].labels
    stat = chi_square(drawn, posterior)
    assert stat < CHI2_999[9], (stat, posterior.tolist())
    assert chi_square(drawn, torch.full((10,), 0.1)) > 10 * CHI2_999[9]  # a wrong (uniform) posterior fails


def test_the_mixture_probabilities_multiply_to_the_marginal_likelihood(model):
    images = sample(model, 5, seed=2, label=torch.tensor([0, 3, 5, 7, 9]))
    s = pixelcnn.surprise(model, images)
    marginal = pixelcnn.marginal_nats(model, images)
    torch.testing.assert_close(s.nats, marginal, atol=2e-3, rtol=1e-5)
    p1 = pixelcnn.probabilities(model, images)
    nats = -torch.where(images > 0, p1, 1 - p1).double().log().sum((1, 2, 3))
    torch.testing.assert_close(nats.float(), marginal, atol=2e-3, rtol=1e-5)
    # ... and the mixture is not the dropped label's model
    dropped = pixelcnn.surprise(model, images, label=DROPPED).nats
    assert (dropped - marginal).abs().max() > 0.1
    assert torch.allclose(dropped, F.binary_cross_entropy_with_logits(model(images), images, reduction="none")
                          .sum((1, 2, 3)))


def test_the_stream_shows_the_mixture_probabilities(model):
    last = list(sample_stream(model, 3, seed=5))[-1]
    p1 = pixelcnn.probabilities(model, last.images)
    shown = torch.where(last.images > 0, p1, 1 - p1)
    torch.testing.assert_close(last.probs, shown, atol=1e-5, rtol=1e-4)
    # the same for a completion, given pixels included
    x = last.images[:1]
    done = list(sample_stream(model, 2, seed=6, prefix=x, rows=10))[-1]
    p1 = pixelcnn.probabilities(model, done.images)
    torch.testing.assert_close(done.probs, torch.where(done.images > 0, p1, 1 - p1), atol=1e-5, rtol=1e-4)


def test_the_plain_sampler_draws_the_same_mixture(model):
    size = dict(image_size=(10, 10))
    assert torch.equal(pixelcnn.sample_plain(model, 2, seed=8, **size), sample(model, 2, seed=8, **size))


def test_labels_must_be_whole_numbers_or_dropped(model):
    with pytest.raises(ValueError, match="whole numbers"):
        sample(model, 1, label=3.7)
    with pytest.raises(ValueError, match="dropped"):
        sample(model, 1, label="none")
    unlabelled = GatedPixelCNN(GatedPixelCNNConfig(hidden_channels=4, n_layers=1, n_labels=0))
    with pytest.raises(ValueError, match="no labels"):
        pixelcnn.surprise(unlabelled, torch.zeros(1, 1, 28, 28), label=DROPPED)
    assert math.isfinite(float(pixelcnn.surprise(unlabelled, torch.zeros(1, 1, 28, 28)).nats))
