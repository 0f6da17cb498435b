"""benchmarks/bayes.py: the mixture of labelled models it scores, and the figures pixelcnn.label_scores reads off
per-label nats (train.py --evaluate, bayes.py and hybrid.py all report them)."""

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

import pixelcnn

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("bayes", ROOT / "benchmarks" / "bayes.py")
bayes = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bayes)


def test_the_mixture_is_the_mean_of_the_models_probabilities():
    g = torch.Generator().manual_seed(0)
    a, b = 50 + 10 * torch.rand(6, 10, generator=g, dtype=torch.float64), 50 + 10 * torch.rand(6, 10, generator=g,
                                                                                                dtype=torch.float64)
    mixed = bayes.mixture([a, b])
    assert torch.allclose(mixed, -torch.log((torch.exp(-a) + torch.exp(-b)) / 2))
    assert torch.allclose(bayes.mixture([a, a]), a)
    # at 700 nats an image, exp underflows: the mixture is computed in the log domain
    far = bayes.mixture([a + 700, b + 700])
    assert torch.isfinite(far).all() and torch.allclose(far, mixed + 700)


def test_the_scores_of_per_label_nats():
    nats = torch.tensor([[1.0, 3.0, 5.0], [2.0, 1.0, 9.0], [4.0, 2.0, 3.0], [0.5, 0.7, 0.2]], dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 0])
    s = pixelcnn.label_scores(nats, labels, pixels=784)
    assert s["bayes_accuracy"] == 0.5  # digits 0 and 1 are argmin at their label; 2 and 3 are not
    assert math.isclose(s["test_loss_given"], (1 + 1 + 3 + 0.5) / 4 / 784)
    marginal = [math.log(3) - math.log(sum(math.exp(-v) for v in row)) for row in nats.tolist()]
    assert math.isclose(s["test_loss_marginal"], sum(marginal) / 4 / 784)
    posterior = torch.softmax(-nats, dim=1)  # p(y | x), p(y) uniform
    assert math.isclose(s["label_nats"], float(-posterior[torch.arange(4), labels].log().mean()))
    torch.testing.assert_close(pixelcnn.mean_nats(nats), torch.tensor(marginal, dtype=torch.float64))


def test_a_part_of_a_set_is_kept_apart_from_the_whole_sets_rows(tiny_mnist, tmp_path, capsys):
    """--limit and --train measure other digits: they never replace the hour-long rows of the whole test set."""
    torch.manual_seed(0)
    config = pixelcnn.GatedPixelCNNConfig(hidden_channels=4, first_kernel_size=3, kernel_size=3, n_layers=2)
    folder = str(pixelcnn.save_model(pixelcnn.GatedPixelCNN(config).eval(), tmp_path / "tiny"))
    cache = tmp_path / "cache"
    run = ["--models", folder, "--data-dir", str(tiny_mnist), "--cache", str(cache), "--threads", "1"]
    assert bayes.main(run + ["--json", str(tmp_path / "test.json")]) == 0
    whole = (cache / "tiny.safetensors").read_bytes()
    assert bayes.main(run + ["--limit", "8"]) == 0
    assert bayes.main(run + ["--train", "--limit", "8", "--json", str(tmp_path / "train.json")]) == 0
    assert (cache / "tiny.safetensors").read_bytes() == whole  # the whole test set's rows, untouched
    assert all((cache / part / "tiny.safetensors").is_file() for part in ("test-first-8", "train-first-8"))
    test, train = (json.loads((tmp_path / f).read_text()) for f in ("test.json", "train.json"))
    assert (test["split"], test["digits"], train["split"], train["digits"]) == ("test", 64, "train", 8)
    assert train["rows"][0]["test_loss_marginal"] != test["rows"][0]["test_loss_marginal"]  # other digits
    assert "the first 8 train digits" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # the whole training set is not what --train is for
        bayes.main(run + ["--train"])
