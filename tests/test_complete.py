"""Completion of any known pixels: exact for prefixes (in any orientation), SIR with resampling (SMC) otherwise;
the caches' reorder that the resampling needs; the orientations."""

import itertools

import numpy as np
import pytest
import torch
import torch.nn as nn

import pixelcnn
from pixelcnn import GatedPixelCNN, GatedPixelCNNConfig, PixelCNN, PixelCNNConfig, complete, complete_stream, sample
from pixelcnn.cached import FullPasses
from pixelcnn.ensemble import Ensemble, EnsembleConfig
from test_ensemble import ensemble_of

LOGITS = dict(atol=1e-4, rtol=1e-4)  # as in test_sampling.py: a cache and a full pass round differently


def gated(**kw) -> GatedPixelCNN:
    torch.manual_seed(0)
    config = dict(hidden_channels=8, first_kernel_size=5, kernel_size=3, n_layers=3, n_labels=0)
    return GatedPixelCNN(GatedPixelCNNConfig(**{**config, **kw})).eval()


def rough(model, std=0.5, seed=1):
    """model with every weight drawn from N(0, std^2): sharp, far-reaching logits, so that a hole's
    completions weigh very unequally (at gated()'s init they weigh nearly the same)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, std)
    return model.eval()


def a_digit(seed=0) -> torch.Tensor:
    """A (1, 1, 28, 28) binary image with a blob of ink."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(1, 1, 28, 28)
    x[..., 6:22, 9:19] = (torch.rand(16, 10, generator=g) < 0.7).float()
    return x


class Fixed(nn.Module):
    """A model read in one orientation, with no cache: the plain reference for that order."""

    def __init__(self, model, orientation):
        super().__init__()
        self.model, self.orientation = model, orientation

    def forward(self, x, label=None):
        return self.model(x, label, self.orientation)


def test_orientations_put_each_side_first():
    x = torch.arange(9.).reshape(1, 1, 3, 3)
    firsts = {o: pixelcnn.orient(x, o)[0, 0, 0].tolist() for o in range(4)}
    assert firsts == {0: [0, 1, 2], 1: [6, 7, 8], 2: [0, 3, 6], 3: [2, 5, 8]}  # top, bottom, left, right
    per_image = torch.tensor([0, 1, 2, 3])
    xs = torch.arange(4 * 9.).reshape(4, 1, 3, 3)
    for o in range(4):
        assert torch.equal(pixelcnn.unorient(pixelcnn.orient(x, o), o), x)
    assert torch.equal(pixelcnn.unorient(pixelcnn.orient(xs, per_image), per_image), xs)
    assert torch.equal(pixelcnn.orient(xs, per_image)[3], pixelcnn.orient(xs[3:], 3)[0])


@pytest.mark.parametrize("model", [gated(), gated(n_labels=10)], ids=["unlabelled", "labelled"])
def test_a_prefix_mask_is_plain_sampling(model):
    x = a_digit()
    known = torch.zeros(28, 28, dtype=torch.bool)
    known.view(-1)[:300] = True  # the first 300 pixels: 10 rows and 20 pixels
    label = 3 if pixelcnn.sampling.n_labels(model) else None
    ours = complete(model, 5, x, known, seed=4, label=label)
    assert torch.equal(ours, sample(model, 5, seed=4, prefix=x, pixels=300, label=label))
    assert torch.equal(ours.view(5, -1)[:, :300], x.view(1, -1)[:, :300].expand(5, -1))
    step = list(complete_stream(model, 5, x, known, seed=4, label=label))[-1]
    assert step.ess is None  # nothing was resampled


def test_completing_from_the_bottom_is_sampling_the_flipped_image_from_its_top():
    model = gated(n_orientations=4)
    with torch.no_grad():  # orientation embeddings that matter, so that a wrong orientation shows
        for layer in model.layers:
            layer.orientation.weight.normal_()
    x = a_digit(1)
    for o, known in [(1, torch.arange(28)[:, None].expand(28, 28) >= 14),  # the bottom 14 rows
                     (2, torch.arange(28)[None, :].expand(28, 28) < 14),  # the left 14 columns
                     (3, torch.arange(28)[None, :].expand(28, 28) >= 14)]:  # the right 14 columns
        assert pixelcnn.best_orientation(model, known) == o
        ours = complete(model, 3, x, known, seed=2)
        reference = pixelcnn.unorient(pixelcnn.sample_plain(Fixed(model, o), 3, seed=2,
                                                            prefix=pixelcnn.orient(x, o), rows=14), o)
        assert torch.equal(ours, reference), o
        assert torch.equal(ours[:, 0][:, known], x[0, 0][known].expand(3, -1))
        # a model that knows only raster order completes the bottom by SIR instead
    assert pixelcnn.best_orientation(gated(), torch.arange(28)[:, None].expand(28, 28) >= 14) == 0


def tiny_data(n: int, seed: int) -> torch.Tensor:
    """3x3 images whose pixels mostly agree: one bit b, each pixel b with probability 0.9."""
    g = torch.Generator().manual_seed(seed)
    b = (torch.rand(n, 1, 1, 1, generator=g) < 0.5).float()
    flip = (torch.rand(n, 1, 3, 3, generator=g) < 0.1).float()
    return (b + flip) % 2


def fitted(data: torch.Tensor) -> GatedPixelCNN:
    """A small gated model trained 150 steps on 3x3 images."""
    model = gated(hidden_channels=16, n_layers=2, first_kernel_size=3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for step in range(150):
        batch = data[torch.randint(len(data), (256,), generator=torch.Generator().manual_seed(step))]
        loss = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def tiny_model() -> GatedPixelCNN:
    return fitted(tiny_data(4096, seed=0))


def all_states() -> torch.Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=9))).reshape(512, 1, 3, 3)


@pytest.mark.parametrize("hole, below", [([(0, 0), (0, 1)], None), ([(0, 0), (1, 0), (2, 0)], 1.0)],
                         ids=["first-two", "first-column-resampled"])
def test_sir_converges_to_the_exact_conditional(tiny_model, hole, below, monkeypatch):
    """A hole with known pixels after it: the completions against p(hole | known) by enumeration.

    The first two pixels are all drawn in row 0, so nothing is resampled (plain SIR). The first
    column is drawn a pixel a row; its weights here never fall to half (ESS >= m / 2), so
    RESAMPLE_BELOW = 1 resamples each half of the candidates after rows 0 and 1, between draws.
    """
    if below is not None:
        monkeypatch.setattr(pixelcnn.sampling, "RESAMPLE_BELOW", below)
    states = all_states()
    log_p = -pixelcnn.surprise(tiny_model, states).nats.double()  # (512,)
    assert abs(torch.logsumexp(log_p, 0).item()) < 1e-4  # a density over the 512 states
    image = torch.ones(1, 1, 3, 3)
    known = torch.ones(3, 3, dtype=torch.bool)
    for i, j in hole:
        known[i, j] = False
    keep = (states[:, 0][:, known] == 1).all(1)

    def codes(images):  # the hole's pixels as a binary number
        return sum(images[:, 0, i, j].long() << (len(hole) - 1 - b) for b, (i, j) in enumerate(hole))

    exact = torch.zeros(2 ** len(hole), dtype=torch.float64).index_add_(0, codes(states[keep]), log_p[keep].exp())
    exact /= exact.sum()

    def histogram(images):
        return torch.bincount(codes(images), minlength=2 ** len(hole)).double() / len(images)

    n = 4000
    step = list(complete_stream(tiny_model, n, image, known, seed=0, candidates=20000, image_size=(3, 3)))[-1]
    assert torch.equal(step.images[:, 0][:, known], torch.ones(n, 9 - len(hole)))
    tv = 0.5 * (histogram(step.images) - exact).abs().sum().item()
    # The proposal alone (raster order, the later known pixels ignored, as pytorch-generative does):
    proposal = sample(tiny_model, n, seed=0, image_size=(3, 3))
    tv_proposal = 0.5 * (histogram(proposal) - exact).abs().sum().item()
    assert tv < 0.03, (tv, exact.tolist())
    assert tv_proposal > 0.2, (tv_proposal, exact.tolist())  # the test can tell them apart
    assert 1 <= step.ess.item() <= 20000
    assert step.resamplings.item() == (0 if below is None else 4), step.resamplings  # 2 halves x 2 rows


@pytest.mark.parametrize("hole, below", [([(2, 0), (2, 1)], None), ([(1, 0), (2, 0)], 1.0)],
                         ids=["last-row", "first-column-resampled"])
def test_an_ensembles_candidates_come_from_each_member_and_converge_to_its_exact_conditional(tiny_model, hole, below,
                                                                                              monkeypatch):
    """An ensemble of tiny_model and a model of noise (every pixel 1 half the time): half of the candidates
    drawn by each member, weighed by what the ensemble says of the known pixels, those before the hole
    among them (MemberSteps.prefix_weight: here the noise finds the first six 17 times less likely),
    resampled among their member's own (RESAMPLE_BELOW = 1: after every row). Against p(hole | known) of
    the mixture by enumeration."""
    if below is not None:
        monkeypatch.setattr(pixelcnn.sampling, "RESAMPLE_BELOW", below)
    ensemble = with_noise(tiny_model)
    states = all_states()
    log_p = -pixelcnn.surprise(ensemble, states).nats.double()
    image = torch.ones(1, 1, 3, 3)
    known = torch.ones(3, 3, dtype=torch.bool)
    for i, j in hole:
        known[i, j] = False
    keep = (states[:, 0][:, known] == 1).all(1)

    def codes(images):
        return images[:, 0, hole[0][0], hole[0][1]].long() * 2 + images[:, 0, hole[1][0], hole[1][1]].long()

    exact = torch.zeros(4, dtype=torch.float64).index_add_(0, codes(states[keep]), log_p[keep].exp())
    exact /= exact.sum()
    n = 4000
    step = list(complete_stream(ensemble, n, image, known, seed=0, candidates=20000, image_size=(3, 3)))[-1]
    assert torch.equal(step.images[:, 0][:, known], torch.ones(n, 7))
    drawn = torch.bincount(codes(step.images), minlength=4).double() / n
    tv = 0.5 * (drawn - exact).abs().sum().item()
    assert tv < 0.03, (tv, exact.tolist(), drawn.tolist())
    assert step.resamplings.item() == (0 if below is None else 2), step.resamplings  # a block a member, after row 1


def test_a_member_steps_rows_are_resampled_among_their_members_only():
    ensemble = Ensemble(EnsembleConfig(members=[gated(n_layers=1).config, gated(n_layers=1).config]))
    steps = pixelcnn.sampling.MemberSteps(ensemble.eval(), 4, 5, 5, None, 0, False, member=np.array([0, 0, 1, 1]))
    steps.begin(torch.zeros(4, 1, 5, 5), 0)
    steps.reorder(np.array([1, 1, 3, 2]))  # within each member: fine
    with pytest.raises(ValueError, match="its own member"):
        steps.reorder(np.array([2, 1, 3, 2]))


def with_noise(model) -> Ensemble:
    """An ensemble of model and a model of noise (every pixel 1 half the time), which disagree."""
    noise = fitted((torch.rand(4096, 1, 3, 3, generator=torch.Generator().manual_seed(3)) < 0.5).float())
    return ensemble_of(model, noise)


@pytest.fixture(scope="module")
def tiny_labelled() -> GatedPixelCNN:
    """tiny_data with its bit b as the label (2 labels): p(x | b) is sharp, p(x) a mixture of two."""
    model = gated(hidden_channels=16, n_layers=2, first_kernel_size=3, n_labels=2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    data = tiny_data(4096, seed=0)
    labels = (data.flatten(1).mean(1) > 0.5).long()  # b, but for the rare images with 5 or more flips
    for step in range(200):
        b = torch.randint(len(data), (256,), generator=torch.Generator().manual_seed(step))
        loss = model.loss((data[b], labels[b]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def test_sir_draws_a_labelled_models_label_and_hole_from_their_exact_joint_posterior(tiny_labelled):
    """label=None: (label, hole) against p(label, hole | known) by enumeration, p(x) the mixture.

    The hole (the first column) comes first, so each candidate's label is drawn before any
    known pixel (uniformly), and only the weights can bring in what the known pixels say of it.
    """
    model = tiny_labelled
    states = all_states()
    log_p = -pixelcnn.label_nats(model, states).double() - np.log(2)  # (512, 2): log p(x, label)
    hole = [(0, 0), (1, 0), (2, 0)]
    image = torch.tensor([[0, 1, 0], [0, 1, 0], [0, 1, 0]], dtype=torch.float32)[None, None]  # three 1s, three 0s
    known = torch.ones(3, 3, dtype=torch.bool)
    for i, j in hole:
        known[i, j] = False
    keep = (states[:, 0][:, known] == image[0, 0][known]).all(1)

    def codes(images, labels):  # (hole's pixels as a binary number) * 2 + label
        return sum(images[:, 0, i, j].long() << (len(hole) - b) for b, (i, j) in enumerate(hole)) + labels

    both = torch.arange(2).repeat(int(keep.sum()))
    kept = states[keep].repeat_interleave(2, dim=0)
    exact = torch.zeros(2 ** (len(hole) + 1), dtype=torch.float64).index_add_(
        0, codes(kept, both), log_p[keep].reshape(-1).exp())
    exact /= exact.sum()
    posterior = exact.reshape(-1, 2).sum(0)  # p(label | known)
    assert 0.1 < posterior[1] < 0.9, posterior  # the label is in doubt: the test can see a skew

    n = 4000
    step = list(complete_stream(model, n, image, known, seed=0, candidates=20000, image_size=(3, 3)))[-1]
    assert torch.equal(step.images[:, 0][:, known], image[0, 0][known].expand(n, -1))
    drawn = torch.bincount(codes(step.images, step.labels), minlength=len(exact)).double() / n
    tv = 0.5 * (drawn - exact).abs().sum().item()
    assert tv < 0.03, (tv, exact.tolist(), drawn.tolist())
    # The proposal alone (each label uniform, the hole in raster order, the later known pixels ignored):
    proposal = list(pixelcnn.sample_stream(model, n, seed=0, image_size=(3, 3), every=9))[-1]
    alone = torch.bincount(codes(proposal.images, proposal.labels), minlength=len(exact)).double() / n
    assert 0.5 * (alone - exact).abs().sum().item() > 0.08  # the test can tell them apart (0.12)


@pytest.mark.parametrize("labelled, ensemble", [(False, False), (True, False), (False, True)],
                         ids=["unlabelled", "labelled", "ensemble"])
def test_sir_from_a_proposal_model_converges_to_the_models_exact_conditional(tiny_model, tiny_labelled, labelled,
                                                                             ensemble, monkeypatch):
    """complete(proposal=): the top row of a 3x3 image given the two rows below it, against the model's
    p(label, top row | rows below) by enumeration. The model reads top first, so the known rows come
    after the hole; the proposal (four orientations, untrained: far from the model) draws the hole
    after them, bottom first, and only the model's weights can bring the candidates to its conditional.
    An ensemble weighs each candidate by one member's density, half of them each: the mixture's
    conditional all the same (and each member is seen to score its half only)."""
    model = tiny_labelled if labelled else tiny_model
    labels = 2 if labelled else 0
    if ensemble:
        model = with_noise(model)
        scored = []
        density = pixelcnn.sampling._log_density
        monkeypatch.setattr(pixelcnn.sampling, "_log_density",
                            lambda m, images, label: scored.append((m, len(images))) or density(m, images, label))
    # sharp and far-reaching in every order, so that its density read in a wrong order would show
    proposal = rough(gated(hidden_channels=16, n_layers=2, first_kernel_size=3, n_orientations=4, n_labels=labels),
                     std=0.4)
    states = all_states()
    if labelled:
        log_p = -pixelcnn.label_nats(model, states).double() - np.log(2)  # (512, 2): log p(x, label)
    else:
        log_p = -pixelcnn.surprise(model, states).nats.double()[:, None]  # (512, 1)
    image = torch.tensor([[0, 0, 0], [1, 1, 0], [1, 1, 1]], dtype=torch.float32)[None, None]
    known = torch.ones(3, 3, dtype=torch.bool)
    known[0] = False
    keep = (states[:, 0][:, known] == image[0, 0][known]).all(1)

    def codes(images):  # the top row as a binary number
        top = images[:, 0, 0].long()
        return (top[:, 0] << 2) + (top[:, 1] << 1) + top[:, 2]

    n_cls = max(labels, 1)  # (top row, label) at code * n_cls + label
    exact = torch.zeros(8 * n_cls, dtype=torch.float64).index_add_(
        0, (codes(states[keep])[:, None] * n_cls + torch.arange(n_cls)).reshape(-1), log_p[keep].reshape(-1).exp())
    exact /= exact.sum()

    def histogram(step):
        c = codes(step.images) * n_cls + (step.labels if labelled else 0)
        return torch.bincount(c, minlength=len(exact)).double() / len(c)

    n = 4000
    step = list(complete_stream(model, n, image, known, seed=0, candidates=20000, image_size=(3, 3),
                                proposal=proposal))[-1]
    assert step.orientation == 1  # drawn bottom first
    assert torch.equal(step.images[:, 0][:, known], image[0, 0][known].expand(n, -1))
    tv = 0.5 * (histogram(step) - exact).abs().sum().item()
    assert tv < 0.03, (tv, exact.tolist())
    alone = list(complete_stream(proposal, n, image, known, seed=0, image_size=(3, 3), every=9))[-1]
    tv_alone = 0.5 * (histogram(alone) - exact).abs().sum().item()
    assert tv_alone > 0.2, tv_alone  # the proposal's own completions are far from the model's: the test can tell
    assert 1 <= step.ess.item() < 20000 and step.resamplings.tolist() == [0]
    if ensemble:
        assert scored == [(model.members[0], 10000), (model.members[1], 10000)]


def test_a_proposal_that_is_the_model_weighs_every_candidate_alike():
    model = gated(n_orientations=4, n_labels=10)
    x = a_digit()
    known = torch.arange(28)[:, None].expand(28, 28) < 10  # the top rows: the model's own first order
    step = list(complete_stream(model, 4, x, known, seed=2, candidates=32, proposal=model))[-1]
    assert step.ess.item() == pytest.approx(32) and step.orientation == 0
    assert torch.equal(step.images[:, 0][:, known], x[0, 0][known].expand(4, -1))
    assert step.labels.shape == (4,)


@pytest.mark.parametrize("proposal, kwargs, message", [
    (dict(n_orientations=4), dict(hole=True), "cannot complete these pixels exactly"),
    (dict(n_orientations=1), dict(), "cannot complete these pixels exactly"),  # top first only: the bottom is after
    (dict(n_orientations=4, n_labels=10), dict(), "the model's labels"),
    (dict(n_orientations=4), dict(guidance=1.0), "guidance"),
])
def test_a_proposal_that_cannot_serve_is_a_clear_error(proposal, kwargs, message):
    known = torch.arange(28)[:, None].expand(28, 28) >= 14  # the bottom half
    if kwargs.pop("hole", False):
        known = torch.ones(28, 28, dtype=torch.bool)
        known[10:20, 10:20] = False
    model = gated(n_labels=10) if "guidance" in kwargs else gated()
    with pytest.raises(ValueError, match=message):
        complete_stream(model, 2, a_digit(), known, proposal=gated(**proposal), **kwargs)


def cache_of(kind: str, n: int, h: int, w: int):
    """A model, its labels (n,) or None, and a StepCache of it for n images of h x w."""
    if kind == "recipe":
        model = rough(PixelCNN(PixelCNNConfig(hidden_channels=8, kernel_size=5, n_layers=3)), std=0.3)
        return model, None, model.step_cache(n, h, w)
    labels = torch.tensor([3, 1, 4, 1, 5, 9])[:n]
    if kind == "ensemble":  # two members: the cache mixes their logits by their running likelihoods
        model = Ensemble(EnsembleConfig(members=[gated(n_labels=10).config] * 2))
        for member, seed in zip(model.members, (1, 2)):
            rough(member, std=0.3, seed=seed)
        return model.eval(), labels, model.step_cache(n, h, w, labels)
    model = rough(gated(n_labels=10), std=0.3)
    return model, labels, (model.step_cache(n, h, w, labels) if kind == "gated" else FullPasses(model, n, h, w, labels))


@pytest.mark.parametrize("kind", ["recipe", "gated", "full-passes", "ensemble"])
@pytest.mark.parametrize("at", [3 * 6, 3 * 6 + 4], ids=["row-end", "mid-row"])
def test_reorder_copies_every_row_of_a_cache_exactly(kind, at):
    """Draw part of a batch, reorder its rows (with duplicates), go on: every later logit is that of
    the reordered images (and labels) from scratch, in one full pass. A row missed shows up here."""
    n, h, w, k = 6, 7, 6, 8  # k pixels given at the start, part of a row
    model, labels, steps = cache_of(kind, n, h, w)
    x = (torch.rand(n, 1, h, w, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    index = np.array([4, 4, 0, 5, 1, 4])  # duplicates, and rows 2, 3 dropped
    given = x.clone()
    given.view(n, -1)[:, k:] = 0
    steps.begin(given, k)
    bits = x.reshape(n, -1).T.numpy() > 0.5  # (H * W, n)
    z = np.full((h * w, n), np.nan, np.float32)
    for p in range(k, at):
        z[p] = steps.logit(p)
        steps.put(p, bits[p])
    steps.reorder(index)
    bits = bits[:, index]
    for p in range(at, h * w):
        z[p] = steps.logit(p)
        steps.put(p, bits[p])
    with torch.no_grad():
        before = model(x, labels).reshape(n, -1).T  # (H * W, n)
        after = model(x[index], None if labels is None else labels[index]).reshape(n, -1).T
    torch.testing.assert_close(torch.from_numpy(z[k:at]), before[k:at], **LOGITS)
    torch.testing.assert_close(torch.from_numpy(z[at:]), after[at:], **LOGITS)


def test_resampling_keeps_more_candidates_alive():
    """A central 14x14 hole: weighed only at the end (SIR), 128 candidates count as 2.3 on average
    (ESS) and 8 completions hold 3.2 distinct ones; resampled after each row (SMC), 9.0 and 6.3
    (seeds 0..5, measured when SMC came)."""
    model = rough(gated())
    x = a_digit()
    known = torch.ones(28, 28, dtype=torch.bool)
    known[7:21, 7:21] = False
    ess, distinct = {}, {}
    for resample in (False, True):
        steps = [list(complete_stream(model, 8, x, known, seed=s, candidates=128, resample=resample))[-1]
                 for s in range(4)]
        ess[resample] = sum(step.ess.item() for step in steps)
        distinct[resample] = sum(len(set(map(tuple, step.images.flatten(1).tolist()))) for step in steps)
        for step in steps:
            assert torch.equal(step.images[:, 0][:, known], x[0, 0][known].expand(8, -1))
            assert (step.resamplings is not None) == resample and (not resample or step.resamplings.item() > 0)
    assert ess[True] > 2 * ess[False], ess
    assert distinct[True] > distinct[False] + 4, distinct


@pytest.mark.parametrize("n_labels", [0, 10], ids=["unlabelled", "labels-drawn"])
def test_one_and_two_shards_resample_alike_and_copy_whole_candidates(n_labels):
    """The blocks are the halves of the batch whatever the shards: each thread resamples its own.
    A resampled candidate's pixels, probabilities and label travel together: the probabilities
    shown are the model's for the completion shown, under the label shown."""
    model = rough(gated(n_labels=n_labels))
    x = a_digit(2)
    known = torch.ones(28, 28, dtype=torch.bool)
    known[0:19, 4:24] = False  # 4 pixels before the hole: the candidates' labels, drawn given them, differ
    one, two = (list(complete_stream(model, 6, x, known, seed=5, candidates=48, shards=s))[-1] for s in (1, 2))
    assert one.resamplings.item() > 0
    assert torch.equal(one.images, two.images) and torch.equal(one.ess, two.ess)
    assert torch.equal(one.resamplings, two.resamplings)
    assert (one.labels is None) == (n_labels == 0) and (one.labels is None or torch.equal(one.labels, two.labels))
    p1 = pixelcnn.probabilities(model, one.images, label=one.labels)
    torch.testing.assert_close(one.probs, torch.where(one.images == 1, p1, 1 - p1), atol=1e-4, rtol=1e-4)


def test_resampling_keeps_each_blocks_weight(monkeypatch):
    """A resampled block's candidates share its mean weight: its total is kept, so blocks resampled
    at different times stay comparable and the final resampling over both halves stays exact."""
    seen = []
    resample = pixelcnn.sampling._Drawing._resample

    def noting(drawing, steps, cols, row):  # in the shard's thread: the other shard's blocks change meanwhile
        blocks = [b for b in drawing.blocks if cols.start <= b.start < cols.stop]
        before = [np.logaddexp.reduce(drawing.log_weight[b]) for b in blocks]
        resample(drawing, steps, cols, row)
        seen.append(np.allclose(before, [np.logaddexp.reduce(drawing.log_weight[b]) for b in blocks]))

    monkeypatch.setattr(pixelcnn.sampling._Drawing, "_resample", noting)
    known = torch.ones(28, 28, dtype=torch.bool)
    known[9:19, 4:24] = False
    step = list(complete_stream(rough(gated()), 2, a_digit(2), known, seed=5, candidates=48))[-1]
    assert step.resamplings.item() > 0 and seen and all(seen)


def test_orders_average_is_a_density():
    model = gated(n_orientations=4, n_labels=3, hidden_channels=8, n_layers=2, first_kernel_size=3)
    with torch.no_grad():
        for layer in model.layers:
            layer.orientation.weight.normal_()
            layer.label.weight.normal_()
    nats = pixelcnn.orders_nats(model, all_states())
    assert abs(torch.logsumexp(-nats.double(), 0).item()) < 1e-4
    per_order = torch.stack([pixelcnn.marginal_nats(model, all_states(), orientation=o) for o in range(4)])
    assert not torch.allclose(per_order[0], per_order[1])  # the orders are distinct densities
    assert torch.allclose(pixelcnn.orientation_nats(model, all_states()), per_order.T)
    for o in range(4):  # each a density of its own
        assert abs(torch.logsumexp(-per_order[o].double(), 0).item()) < 1e-4


def test_an_all_unknown_mask_is_plain_generation():
    model = gated()
    nothing = torch.zeros(28, 28, dtype=torch.bool)
    assert torch.equal(complete(model, 3, a_digit(), nothing, seed=7), sample(model, 3, seed=7))


@pytest.mark.parametrize("kwargs, message", [
    (dict(known=torch.ones(28, 28, dtype=torch.bool)), "nothing to complete"),
    (dict(known=torch.ones(28, 28)), "bool mask"),
    (dict(known=torch.ones(27, 28, dtype=torch.bool)), r"\(28, 28\) or \(4, 1, 28, 28\)"),
    (dict(image=torch.full((1, 1, 28, 28), 0.5)), "values must be 0 or 1"),
    (dict(image=torch.zeros(2, 1, 28, 28)), "image must have shape"),
    (dict(candidates=3), "candidates must be at least n"),
    (dict(temperature=-1), "temperature"),
])
def test_bad_input_is_a_clear_error(kwargs, message):
    known = torch.ones(28, 28, dtype=torch.bool)
    known[10:20, 10:20] = False
    args = {"image": a_digit(), "known": known, **kwargs}
    with pytest.raises(ValueError, match=message):
        complete(gated(), 4, **args)
    with pytest.raises(ValueError, match=message):
        complete_stream(gated(), 4, **args)  # at the call, not at the first frame


def test_distinct_images_each_get_their_own_candidates():
    model = gated(n_labels=10)
    images = torch.cat([a_digit(0), a_digit(1)])
    known = torch.ones(2, 1, 28, 28, dtype=torch.bool)
    known[:, :, 8:20, 8:20] = False
    step = list(complete_stream(model, 2, images, known, seed=0, candidates=32))[-1]
    assert step.ess.shape == (2,)
    for i in range(2):
        assert torch.equal(step.images[i, 0][known[i, 0]], images[i, 0][known[i, 0]])
    assert step.labels.shape == (2,)


def test_the_stream_sweeps_in_from_the_kept_side_and_ends_on_complete():
    model = gated(n_orientations=4)
    x = a_digit()
    known = torch.arange(28)[:, None].expand(28, 28) >= 14  # the bottom half: drawn bottom up
    frames = list(complete_stream(model, 2, x, known, seed=0))
    assert frames[-1].orientation == 1 and frames[-1].position == 784
    assert torch.equal(frames[-1].images, complete(model, 2, x, known, seed=0))
    middle = frames[len(frames) // 2 + 3]  # a few rows above the kept half are drawn, the top not yet
    assert torch.isnan(middle.probs[:, 0, 0]).all() and not torch.isnan(middle.probs[:, 0, 12]).any()


def test_the_recipe_model_completes_a_hole_by_sir():
    torch.manual_seed(0)
    model = PixelCNN(PixelCNNConfig(hidden_channels=8, kernel_size=5, n_layers=2)).eval()
    x = a_digit()
    known = torch.ones(28, 28, dtype=torch.bool)
    known[7:21, 7:21] = False
    step = list(complete_stream(model, 4, x, known, seed=1, candidates=16))[-1]
    assert torch.equal(step.images[:, 0][:, known], x[0, 0][known].expand(4, -1))
    assert 1 <= step.ess.item() <= 16 and step.labels is None
    with pytest.raises(ValueError, match="no labels"):
        complete(model, 4, x, known, label=pixelcnn.DROPPED)


@pytest.mark.parametrize("model", [gated(n_labels=10), PixelCNN(PixelCNNConfig(hidden_channels=8, n_layers=2))],
                         ids=["gated", "recipe"])
def test_two_shards_draw_the_same_images_as_one(model):
    model.eval()
    label = 4 if pixelcnn.sampling.n_labels(model) else None
    one = sample(model, 40, seed=3, label=label, shards=1)
    assert torch.equal(sample(model, 40, seed=3, label=label, shards=2), one)
    assert torch.equal(sample(model, 40, seed=3, label=label), one)  # the default splits 40 images in two


CONCURRENT = """
import sys, threading
from concurrent.futures import ThreadPoolExecutor
import torch
from threadpoolctl import threadpool_info
sys.path.insert(0, sys.argv[1])
import pixelcnn

torch.manual_seed(0)
model = pixelcnn.GatedPixelCNN(pixelcnn.GatedPixelCNNConfig(hidden_channels=8, n_layers=3, n_labels=10)).eval()
blas = lambda: [d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas"]
assert blas() == [2], blas()  # numpy's BLAS starts with two threads here
seen, make = [], model.step_cache


def noting(n, h, w, label=None):  # the model's cache, noting the BLAS threads now and then while it draws
    steps = make(n, h, w, label)
    logit = steps.logit
    steps.logit = lambda p: (p % 97 or seen.append(blas()), logit(p))[1]
    return steps


alone = [pixelcnn.sample(model, 8, seed=s, label=s % 10) for s in range(8)]
model.step_cache = noting
with ThreadPoolExecutor(4) as pool:
    together = list(pool.map(lambda s: pixelcnn.sample(model, 8, seed=s, label=s % 10), range(8)))
print(all(torch.equal(a, b) for a, b in zip(alone, together)), len(seen), sorted(set(map(tuple, seen))))
"""


@pytest.mark.slow
def test_concurrent_samplers_run_with_one_blas_thread_and_draw_what_they_draw_alone():
    """threadpoolctl's limits are process-wide: a limit entered and left around each run leaks between
    samplers in threads (one draws with two threads inside another's one-thread block, as the old
    one_blas_thread did). In a process whose BLAS starts with two threads, every step runs with one."""
    import subprocess
    import sys
    from pathlib import Path

    env = {**__import__("os").environ, "OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", CONCURRENT, str(Path(__file__).resolve().parent.parent)],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    same, count, threads = out.stdout.split(" ", 2)
    assert same == "True" and int(count) >= 8 * 8 and threads.strip() == "[(1,)]", out.stdout


@pytest.mark.parametrize("label, guidance", [(None, 0.0), (3, 0.0), (3, 1.0)])
@pytest.mark.parametrize("members", [1, 2])
def test_a_hole_completed_by_guessed_rows_is_the_one_completed_pixel_by_pixel(members, label, guidance, monkeypatch):
    """A few candidates a shard draw their rows by guesses (sampling._Drawing._run_row): the known pixels
    after the hole weigh them, and the candidates are resampled, exactly as pixel by pixel."""
    parts = [rough(gated(n_labels=10), std=0.3, seed=s) for s in range(members)]
    model = parts[0] if members == 1 else ensemble_of(*parts)
    known = torch.ones(28, 28, dtype=torch.bool)
    known[8:20, 8:20] = False
    kw = dict(seed=3, candidates=4, label=label, guidance=guidance, shards=1)
    guessed = list(complete_stream(model, 2, a_digit(1), known, **kw))
    monkeypatch.setattr(pixelcnn.sampling, "GUESS_UP_TO", 0)
    stepped = list(complete_stream(model, 2, a_digit(1), known, **kw))
    assert len(guessed) == len(stepped)
    for a, b in zip(guessed, stepped):
        assert torch.equal(a.images, b.images)
        torch.testing.assert_close(a.probs, b.probs, equal_nan=True, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(a.ess, b.ess, rtol=1e-4, atol=0)  # float32 logits, summed in another order
