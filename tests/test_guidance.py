"""Classifier-free guidance: each pixel from P(x_i | x_<i, y)^(1 + w) P(x_i | x_<i)^(-w), normalised."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import pixelcnn
from pixelcnn import DROPPED, GatedPixelCNN, GatedPixelCNNConfig, complete_stream, sample, sample_stream
from test_complete import all_states, tiny_labelled  # noqa: F401 (a fixture)
from test_mixture import model, trained  # noqa: F401 (fixtures)


def guided_logits(model, images: torch.Tensor, label, w: float) -> torch.Tensor:
    """(1 + w) z_label - w z_none, from two full passes: the reference the sampler is held to."""
    with torch.no_grad():
        return (1 + w) * model(images, label) - w * model(images, None)


def log_q(model, images: torch.Tensor, label, w: float) -> torch.Tensor:
    """(B,) log q_w(x | label), the guided model's own probability of each image, pixel by pixel."""
    z = guided_logits(model, images, label, w)
    return -F.binary_cross_entropy_with_logits(z, images, reduction="none").double().sum((1, 2, 3))


def test_guidance_zero_is_the_model_itself(model):
    labels = torch.tensor([0, 3, 5, 9])
    assert torch.equal(sample(model, 4, seed=3, label=labels, guidance=0), sample(model, 4, seed=3, label=labels))
    assert not torch.equal(sample(model, 4, seed=3, label=labels, guidance=2), sample(model, 4, seed=3, label=labels))


def test_the_stream_draws_and_shows_the_guided_probabilities(model):
    labels = torch.tensor([1, 4, 7])
    last = list(sample_stream(model, 3, seed=5, label=labels, guidance=1.5))[-1]
    p1 = torch.sigmoid(guided_logits(model, last.images, labels, 1.5))
    torch.testing.assert_close(last.probs, torch.where(last.images > 0, p1, 1 - p1), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("n, shards", [(3, 1), (40, 2)])
def test_the_fast_guided_sampler_draws_what_the_full_passes_draw(model, n, shards):
    labels = torch.arange(n) % 10
    size = dict(image_size=(9, 9), label=labels, guidance=2.0)
    plain = pixelcnn.sample_plain(model, n, seed=8, **size)
    assert torch.equal(sample(model, n, seed=8, shards=shards, **size), plain)
    assert torch.equal(sample(model, n, seed=8, shards=1, **size), plain)


def test_any_digit_draws_the_labels_as_unguided_then_guides_towards_them(model):
    unguided = list(sample_stream(model, 6, seed=11))[-1].labels
    last = list(sample_stream(model, 6, seed=11, guidance=1.0))[-1]
    assert torch.equal(last.labels, unguided)
    assert torch.equal(last.images, sample(model, 6, seed=11, label=unguided, guidance=1.0))


def test_guidance_makes_the_samples_more_surely_of_their_label(trained):  # noqa: F811
    """p(asked label | sample), by Bayes' rule under the model, grows with w (it samples ~ p(x | y) p(y | x)^w).

    On the bars (test_mixture), after 200 steps: 0.40 at w = 0, 0.53 at 1, 0.59 at 3 on 500 samples.
    """
    asked = torch.arange(10).repeat(30)
    posterior = []
    for w in (0.0, 2.0):
        x = sample(trained, len(asked), seed=0, label=asked, guidance=w, image_size=(12, 12))
        log_post = torch.log_softmax(-pixelcnn.label_nats(trained, x).double(), dim=1)
        posterior.append(float(log_post.gather(1, asked[:, None]).exp().mean()))
    assert posterior[1] > posterior[0] + 0.05, posterior


def test_guided_completion_samples_the_guided_models_exact_conditional(tiny_labelled):  # noqa: F811
    """A hole before known pixels, resampled: the completions against q_w(hole | known, label) by enumeration."""
    model, w, label = tiny_labelled, 2.0, 1
    states = all_states()
    log_p = log_q(model, states, label, w)
    assert abs(torch.logsumexp(log_p, 0).item()) < 1e-4  # q_w is a density over the 512 states
    hole = [(0, 0), (1, 0), (2, 0)]
    image = torch.tensor([[0, 1, 0], [0, 1, 0], [0, 1, 0]], dtype=torch.float32)[None, None]
    known = torch.ones(3, 3, dtype=torch.bool)
    for i, j in hole:
        known[i, j] = False
    keep = (states[:, 0][:, known] == image[0, 0][known]).all(1)

    def codes(images):
        return sum(images[:, 0, i, j].long() << (len(hole) - 1 - b) for b, (i, j) in enumerate(hole))

    def exact(log_p):
        e = torch.zeros(8, dtype=torch.float64).index_add_(0, codes(states[keep]), log_p[keep].exp())
        return e / e.sum()

    guided, unguided = exact(log_p), exact(log_q(model, states, label, 0.0))
    assert 0.5 * (guided - unguided).abs().sum() > 0.1  # the test can tell them apart
    n = 4000
    step = list(complete_stream(model, n, image, known, seed=0, candidates=20000, image_size=(3, 3), label=label,
                                guidance=w))[-1]
    assert torch.equal(step.images[:, 0][:, known], image[0, 0][known].expand(n, -1))
    drawn = torch.bincount(codes(step.images), minlength=8).double() / n
    tv = 0.5 * (drawn - guided).abs().sum().item()
    assert tv < 0.03, (tv, guided.tolist(), drawn.tolist())


def test_a_guided_completion_of_the_first_rows_is_the_guided_stream(model):
    x = sample(model, 1, seed=1, label=2)
    known = torch.zeros(28, 28, dtype=torch.bool)
    known[:10] = True
    done = pixelcnn.complete(model, 3, x, known, seed=4, label=2, guidance=1.0)
    assert torch.equal(done, sample(model, 3, seed=4, prefix=x, rows=10, label=2, guidance=1.0))


def test_bad_guidance_is_refused(model):
    for bad in (-0.5, float("nan"), float("inf"), "much"):
        with pytest.raises(ValueError, match="guidance must be a number >= 0"):
            sample(model, 1, label=3, guidance=bad)
    with pytest.raises(ValueError, match="give one, or None"):
        sample(model, 1, label=DROPPED, guidance=1.0)
    unlabelled = GatedPixelCNN(GatedPixelCNNConfig(hidden_channels=4, n_layers=1, n_labels=0))
    with pytest.raises(ValueError, match="labelled model"):
        sample(unlabelled, 1, guidance=1.0)
    with pytest.raises(ValueError, match="labelled model"):
        pixelcnn.complete(unlabelled, 1, torch.zeros(1, 1, 28, 28), torch.ones(28, 28, dtype=torch.bool).tril(),
                          guidance=1.0)
    assert np.isfinite(float(sample(unlabelled, 1, guidance=0, image_size=(4, 4)).sum()))
