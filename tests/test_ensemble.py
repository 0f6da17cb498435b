"""An ensemble (pixelcnn/ensemble.py) is one model: the mean of its members' densities, pixel by pixel, exactly."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import pixelcnn
import train
from pixelcnn import DROPPED, GatedPixelCNN, GatedPixelCNNConfig, PixelCNN, PixelCNNConfig, sample, sample_plain
from pixelcnn.ensemble import Ensemble, EnsembleConfig
from pixelcnn.weights import ModelLoadError, load_model, save_model

SIZE = (7, 6)


def member(seed: int, **kw) -> GatedPixelCNN:
    """A small labelled gated model with every weight drawn at random: members that disagree."""
    torch.manual_seed(seed)
    config = dict(hidden_channels=8, first_kernel_size=3, kernel_size=3, n_layers=2, n_labels=3)
    m = GatedPixelCNN(GatedPixelCNNConfig(**{**config, **kw}))
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.4)
    return m.eval()


def ensemble_of(*members) -> Ensemble:
    e = Ensemble(EnsembleConfig(members=[m.config for m in members]))
    for mine, theirs in zip(e.members, members):
        mine.load_state_dict(theirs.state_dict())
    return e.eval()


@pytest.fixture(scope="module")
def pair() -> tuple[Ensemble, list[GatedPixelCNN]]:
    members = [member(1), member(2)]
    return ensemble_of(*members), members


def images(n: int, seed: int = 0) -> torch.Tensor:
    return (torch.rand(n, 1, *SIZE, generator=torch.Generator().manual_seed(seed)) < 0.4).float()


def log_lik(model, x, label) -> torch.Tensor:
    """(B,) log p(x | label) from the model's logits, float64."""
    with torch.no_grad():
        z = model(x, label).double()
    return -F.binary_cross_entropy_with_logits(z, x.double(), reduction="none").flatten(1).sum(1)


@pytest.mark.parametrize("label", [None, 2, "per image"])
def test_the_pixels_probabilities_multiply_to_the_mean_of_the_members_likelihoods(pair, label):
    ensemble, members = pair
    x = images(5)
    if label == "per image":
        label = torch.tensor([0, 1, 2, 1, 0])
    each = torch.stack([log_lik(m, x, label) for m in members])  # (M, B)
    assert (each[0] - each[1]).abs().max() > 1, "the members must disagree for the test to mean something"
    mean = torch.logsumexp(each, 0) - math.log(len(members))
    torch.testing.assert_close(log_lik(ensemble, x, label), mean, atol=1e-4, rtol=1e-5)


def test_it_is_causal(pair):
    """Each pixel's logit depends on the pixels before it only: the members' weights too."""
    ensemble, _ = pair
    x = images(1, seed=3)
    with torch.no_grad():
        base = ensemble(x, 1).flatten()
        for k in range(0, x[0].numel(), 5):
            flipped = x.clone()
            flipped.view(-1)[k] = 1 - flipped.view(-1)[k]
            after = ensemble(flipped, 1).flatten()
            assert torch.equal(after[:k + 1], base[:k + 1]), k
            if k + 1 < len(base):
                assert not torch.equal(after[k + 1:], base[k + 1:])


def test_it_is_no_single_member(pair):
    """The mixture's conditionals are neither member's, nor their mean logit."""
    ensemble, members = pair
    x = images(2, seed=4)
    with torch.no_grad():
        z = ensemble(x, 0)
        zs = [m(x, 0) for m in members]
    for other in zs + [sum(zs) / 2]:
        assert (z - other).abs().max() > 0.1


@pytest.mark.parametrize("kw", [dict(label=None), dict(label=1), dict(label=DROPPED), dict(label=2, guidance=1.0),
                                dict(label=None, temperature=0.5)])
def test_the_cached_sampler_draws_what_the_plain_one_draws(pair, kw):
    ensemble, _ = pair
    cached = sample(ensemble, 4, seed=3, image_size=SIZE, **kw)
    assert torch.equal(cached, sample_plain(ensemble, 4, seed=3, image_size=SIZE, **kw))



@pytest.mark.parametrize("kw", [dict(label=1), dict(label=2, guidance=1.0)])
def test_sample_draws_each_image_from_one_member_at_that_members_cost(pair, kw):
    """With no pixels given, each image's member is drawn uniformly; the image is the one that member
    alone draws with the same seed (the same uniform per pixel), guided by that member too."""
    ensemble, members = pair
    n, seed = 8, 5
    drawn = pixelcnn.sampling._member_uniforms(seed, n) * len(members) // 1  # inverse CDF of the uniform prior
    assert set(drawn.tolist()) == {0, 1}, "both members must draw some of the images for the test to mean something"
    images = sample(ensemble, n, seed=seed, image_size=SIZE, **kw)
    alone = [sample(m, n, seed=seed, image_size=SIZE, **kw) for m in members]
    assert not torch.equal(alone[0], alone[1])
    for i, m in enumerate(drawn.astype(int)):
        assert torch.equal(images[i], alone[m][i]), i


@pytest.mark.parametrize("label", [1, None])
def test_a_stream_draws_the_images_sample_draws_and_shows_the_mixtures_probabilities(pair, label):
    """sample steps one member an image; the stream steps both, to show the ensemble's own P(x_i | x_<i)."""
    ensemble, _ = pair
    kw = dict(seed=2, label=label, image_size=SIZE)
    last = list(pixelcnn.sample_stream(ensemble, 6, **kw))[-1]
    assert torch.equal(last.images, sample(ensemble, 6, **kw))
    p = pixelcnn.probabilities(ensemble, last.images, label)  # the mixture over members (and labels, for None)
    torch.testing.assert_close(last.probs, p.where(last.images > 0.5, 1 - p), atol=1e-4, rtol=1e-4)  # of each value


def test_members_are_drawn_from_their_posterior_given_the_pixels_kept(pair):
    """Over many draws, each member is drawn as often as p(m | kept, y) ∝ p_m(kept | y) says: a prior
    that ignored the kept pixels (1/2 each) or a posterior of the wrong member would be far off."""
    ensemble, members = pair
    k, label, n = 14, 1, 4000  # the first 14 pixels kept: two rows and two pixels
    candidates = images(20, seed=7)
    log_liks = []
    for m in members:
        z = pixelcnn.sampling._given_logits(m, candidates, k, label, 0)
        log_liks.append(pixelcnn.ensemble.pixel_log_lik(z[:, None], candidates.flatten(1)[:, :k]).sum(-1)[:, 0])
    post = torch.softmax(torch.stack(log_liks, 1), 1)[:, 0]  # p(member 0 | kept), for each candidate
    x = candidates[int((post - 0.5).abs().argmax())][None]  # the one the members disagree on most
    p0 = float(post.max() if post.max() - 0.5 > 0.5 - post.min() else post.min())
    assert abs(p0 - 0.5) > 0.2, "the members must disagree on the kept pixels for the test to mean something"
    steps = pixelcnn.sampling.MemberSteps(ensemble, n, *SIZE, label, 0, False,
                                          np.random.default_rng(0).random(n))
    given = x.expand(n, -1, -1, -1).clone()
    given.flatten(1)[:, k:] = 0
    steps.begin(given, k)
    share = float((steps.member == 0).mean())
    assert abs(share - p0) < 4 * math.sqrt(p0 * (1 - p0) / n), (share, p0)

def test_label_none_probabilities_multiply_to_the_marginal_over_labels_and_members(pair):
    ensemble, members = pair
    x = images(3, seed=5)
    p = pixelcnn.probabilities(ensemble, x).double()  # label=None: the mixture over labels and members
    ll = torch.where(x > 0.5, p, 1 - p).log().flatten(1).sum(1)
    each = torch.stack([log_lik(m, x, torch.full((3,), y)) for m in members for y in range(3)])  # (M * L, B)
    torch.testing.assert_close(ll, torch.logsumexp(each, 0) - math.log(len(each)), atol=1e-3, rtol=1e-5)


@pytest.mark.parametrize("guidance", [0.0, 1.0])
def test_completions_keep_the_known_pixels(pair, guidance):
    """Weighted candidates, a share from each member (guided: each by its member), alike on one thread or two."""
    ensemble, _ = pair
    x = images(1, seed=6)
    known = torch.zeros(SIZE, dtype=torch.bool)
    known[:, :3] = True  # the left half: not a prefix, completed by weighted candidates
    kw = dict(seed=1, candidates=64, image_size=SIZE, label=1, guidance=guidance)
    out = pixelcnn.complete(ensemble, 3, x, known, shards=1, **kw)
    assert out.shape == (3, 1, *SIZE)
    assert torch.equal(out[:, 0, known], x[:, 0, known].expand(3, -1))
    assert torch.equal(out, pixelcnn.complete(ensemble, 3, x, known, shards=2, **kw))


def test_it_saves_and_loads_as_one_folder(pair, tmp_path):
    ensemble, _ = pair
    save_model(ensemble, tmp_path / "pair")
    config = json.loads((tmp_path / "pair" / "config.json").read_text())
    assert config["model_type"] == "ensemble" and [m["hidden_channels"] for m in config["members"]] == [8, 8]
    loaded = load_model(tmp_path / "pair")
    assert isinstance(loaded, Ensemble) and pixelcnn.sampling.n_labels(loaded) == 3
    x = images(2)
    with torch.no_grad():
        assert torch.equal(loaded(x, 1), ensemble(x, 1))


@pytest.mark.parametrize("members, message", [
    ([], "at least two"),
    ([GatedPixelCNNConfig(n_labels=3)], "at least two"),
    ([GatedPixelCNNConfig(n_labels=3), GatedPixelCNNConfig(n_labels=10)], "agree on n_labels"),
    ([GatedPixelCNNConfig(), GatedPixelCNNConfig(n_orientations=4)], "agree on n_orientations"),
    ([{"model_type": "ensemble", "members": []}, GatedPixelCNNConfig()], "cannot be a member"),
    ([{"model_type": "gated_pixelcnn", "colour": 1}, GatedPixelCNNConfig()], "member 0"),
])
def test_a_bad_ensemble_is_refused_with_a_reason(members, message):
    with pytest.raises(ValueError, match=message):
        EnsembleConfig(members=members)


def test_a_bad_ensemble_folder_is_a_load_error(tmp_path):
    folder = tmp_path / "bad"
    save_model(ensemble_of(member(1), member(2)), folder)
    (folder / "config.json").write_text(json.dumps({"model_type": "ensemble", "members": [{"n_labels": 3}]}))
    with pytest.raises(ModelLoadError, match="at least two"):
        load_model(folder)


def test_unlabelled_members_of_either_kind(tmp_path):
    """The recipe's PixelCNN and an unlabelled gated model, as one: no labels, the cache still exact."""
    torch.manual_seed(0)
    recipe = PixelCNN(PixelCNNConfig(hidden_channels=4, kernel_size=3, n_layers=1)).eval()
    ensemble = ensemble_of(recipe, member(3, n_labels=0))
    assert pixelcnn.sampling.n_labels(ensemble) == 0
    assert torch.equal(sample(ensemble, 2, seed=0, image_size=SIZE), sample_plain(ensemble, 2, seed=0, image_size=SIZE))
    with pytest.raises(ValueError, match="no labels"):
        ensemble(images(1), 1)


def test_train_py_builds_an_ensemble_and_evaluate_measures_it(tiny_mnist, tmp_path, capsys):
    weights = tmp_path / "weights"
    for seed in (1, 2):
        save_model(member(seed, n_labels=10), weights / f"m{seed}")
        (weights / f"m{seed}" / "metrics.json").write_text(json.dumps({
            "test_loss": 0.1, "wall_time_s": 3600.0 * seed, "runs": [{"device": "cpu"}],
            "data": {"test_images": 20}}))
    common = ["--out", str(weights), "--results", str(tmp_path / "results"), "--checkpoints", str(tmp_path / "c"),
              "--data-dir", str(tiny_mnist), "--samples", "2"]
    assert train.main(["--ensemble", "m1", "m2", "--name", "pair", *common]) == 0
    metrics = json.loads((weights / "pair" / "metrics.json").read_text())
    assert [m["name"] for m in metrics["members"]] == ["m1", "m2"] and metrics["wall_time_s"] == 10800.0
    assert (tmp_path / "results" / "pair_samples.png").is_file()
    card = (weights / "pair" / "README.md").read_text()
    assert "Not measured yet" in card and "| `m1` |" in card
    assert isinstance(load_model(weights / "pair"), Ensemble)
    capsys.readouterr()
    assert train.main(["--name", "pair", "--evaluate", "--limit", "20", *common]) == 0
    out = capsys.readouterr().out
    assert "marginalised over the 10 labels" in out
    ev = json.loads((weights / "pair" / "metrics.json").read_text())["evaluation"]
    assert ev["test_loss_marginal"] < ev["test_loss"] + 1 and 0 <= ev["bayes_accuracy"] <= 1
    card = (weights / "pair" / "README.md").read_text()
    assert "Remeasured with `python train.py --name pair --evaluate`" in card and card.startswith("---\n")


def test_train_py_refuses_a_model_that_is_not_there(tiny_mnist, tmp_path, capsys):
    save_model(member(1, n_labels=10), tmp_path / "weights" / "m1")
    assert train.main(["--ensemble", "m1", "nowhere", "--name", "pair", "--out", str(tmp_path / "weights")]) == 1
    err = capsys.readouterr().err
    assert "nowhere" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "weights" / "pair").exists()
