"""Image grids and the model card, from made-up inputs; the shipped cards are the card code's."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import pixelcnn
from pixelcnn.card import model_card, train_command
from pixelcnn.plotting import grid, save_grid, to_uint8

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"


def test_grid_layout_and_padding():
    images = torch.zeros(3, 1, 4, 5)
    images[1] = 1
    g = grid(images, nrow=2, scale=2, pad=1, pad_value=7)
    assert g.shape == (2 * (8 + 1) + 1, 2 * (10 + 1) + 1) and g.dtype == np.uint8
    assert (g[1:9, 1:11] == 0).all()  # image 0, top left, upscaled x2
    assert (g[1:9, 12:22] == 255).all()  # image 1, top right
    assert (g[10:18, 1:11] == 0).all()  # image 2, second row
    assert (g[10:18, 12:22] == 7).all()  # no image 3: padding
    assert (g[0] == 7).all() and (g[:, 11] == 7).all()


def test_to_uint8_accepts_the_usual_shapes():
    assert to_uint8(torch.ones(2, 1, 3, 3)).shape == (2, 3, 3)
    assert to_uint8(np.full((3, 3), 0.5)).tolist()[0] == [128, 128, 128]
    assert to_uint8(torch.tensor([[-1.0, 2.0]])).tolist() == [[0, 255]]  # clipped


def test_save_grid_writes_a_png(tmp_path):
    path = save_grid(torch.ones(4, 1, 28, 28), tmp_path / "a" / "grid.png", scale=1)
    assert Image.open(path).size == (2 * 30 + 2, 2 * 30 + 2)


def _metrics(epochs_done: int, epochs: int = 3, runs=None) -> dict:
    return {
        "model_config": {"model_type": "pixelcnn", "hidden_channels": 4, "kernel_size": 7, "n_layers": 1},
        "train_config": {"epochs": epochs, "batch_size": 64, "lr": 0.001, "seed": 0},
        "history": [{"epoch": e, "train_loss": 0.1 / e, "test_loss": 0.2 / e, "elapsed_s": 60.0 * e}
                    for e in range(1, epochs_done + 1)],
        "parameters": 993, "data": {"train_images": 60000, "test_images": 10000}, "wall_time_s": 7200.0,
        "runs": runs or [{"device": "cpu", "processes": 1}],
    }


def test_card_reports_the_measured_numbers():
    card = model_card("tiny", _metrics(3))
    assert card.startswith("---\n") and "\n# tiny\n" in card
    assert "**0.0667 nats per pixel**" in card and "(52.3 nats per image" in card
    assert "| 3 | 0.0333 | 0.0667 | 3 |" in card
    assert "2.00 hours" in card and "in progress" not in card
    assert 'pixelcnn.load_model("tiny")' in card
    assert "label" not in card  # an unlabelled model


def test_card_of_a_labelled_model_says_how_labels_were_used():
    m = _metrics(1, epochs=1)
    m["model_config"] = {"model_type": "gated_pixelcnn", "n_labels": 10, "label_dropout": 0.25}
    card = model_card("gated", m)
    assert "after 1 epoch:" in card and "with the label dropped" in card
    assert "label except the 25% dropped at random" in card
    assert "pixelcnn.sample(model, 16, seed=0, label=7)" in card
    assert "Remeasured" not in card
    m["evaluation"] = {"test_loss": 0.0812, "test_loss_marginal": 0.07891, "command": "python train.py --evaluate"}
    card = model_card("gated", m)
    assert "Remeasured with `python train.py --evaluate`: 0.0812 nats per pixel with the label dropped" in card
    assert "**0.0789** (61.9 nats per image) with p(x) marginalised over the 10 labels" in card


def test_card_says_when_training_is_unfinished_and_how_it_ran():
    runs = [{"device": "cuda:0", "processes": 2}, {"device": "cuda:0", "processes": 2}]
    card = model_card("tiny", _metrics(1, runs=runs))
    assert "Training in progress: 1 of 3 epochs done" in card
    assert "2 processes, data-parallel" in card and "in 2 runs" in card


def test_card_says_when_a_resumed_run_changed_the_number_of_epochs():
    runs = [{"device": "cpu", "processes": 1, "from_epoch": 0, "epochs": 6},
            {"device": "cpu", "processes": 1, "from_epoch": 2, "epochs": 6},
            {"device": "cpu", "processes": 1, "from_epoch": 6, "epochs": 8}]
    m = _metrics(8, epochs=8, runs=runs)
    m["train_config"]["lr_schedule"] = "cosine"
    assert ("in 3 runs: the first started afresh and each later one resumed with `--resume`; `--epochs` changed on "
            "resume (to 8 at epoch 6), which stretched the cosine schedule from there; ") in model_card("tiny", m)
    m["runs"] = runs[:2]
    assert "changed on resume" not in model_card("tiny", m)
    m["runs"] = [{"device": "cpu", "processes": 1}, runs[2]]  # runs from before the epochs were recorded
    assert "changed on resume" not in model_card("tiny", m)


@pytest.mark.parametrize("model_type, described", [
    ("pixelcnn", "the PixelCNN of van den Oord et al. 2016 (arXiv:1606.05328) as in the recipe"),
    ("gated_pixelcnn", "the gated PixelCNN of van den Oord et al. 2016 (arXiv:1606.05328): vertical and horizontal"),
    ("something_new", "something_new. Configuration"),  # unknown: named
])
def test_card_for_any_model_type(model_type, described):
    """The card describes the model it is for; its command names the type unless it is the default."""
    m = _metrics(1, epochs=1)
    m["model_config"]["model_type"] = model_type
    card = model_card("x", m)
    assert f"> 0.5):\n{described}" in card
    assert card.count("of van den Oord et al. 2016") == (model_type != "something_new")
    assert (f"--model {model_type} " in card) == (model_type != "pixelcnn")


def _runs(*plans) -> list[dict]:
    """Runs as metrics.json records them, from (from_epoch, from_step, epochs) each."""
    return [{"device": "cpu", "processes": 1, "from_epoch": e, "from_step": s, "epochs": n} for e, s, n in plans]


def _cosine(runs) -> dict:
    m = _metrics(runs[-1]["epochs"], epochs=runs[-1]["epochs"], runs=runs)
    m["train_config"]["lr_schedule"] = "cosine"
    return m


def test_card_says_what_its_command_reproduces_when_resumes_stretched_the_cosine():
    """The shipped gated model's runs: 6 epochs (killed once and resumed), then resumed to 8, 10 and 12."""
    m = _cosine(_runs((0, 0, 6), (2, 123, 6), (6, 0, 8), (8, 0, 10), (9, 689, 10), (10, 0, 12)))
    cfg, tc = m["model_config"], m["train_config"]
    card = model_card("tiny", m)
    assert "from scratch" not in card
    assert (f"`{train_command('tiny', cfg, tc, 6)}`, then with `--epochs 8 --resume`, then with `--epochs 10 "
            f"--resume`, then with `--epochs 12 --resume` (each once the one before has finished) takes the steps "
            f"that trained this model. A fresh `{train_command('tiny', cfg, tc)}` does not: its cosine schedule runs "
            f"once over all 12 epochs") in card
    assert "--epochs 6 --lr-schedule cosine" in train_command("tiny", cfg, tc, 6)


@pytest.mark.parametrize("runs, says", [
    (_runs((0, 0, 6), (3, 10, 8)), "`--epochs` changed before a run had finished, so no sequence"),  # mid-run
    (_runs((0, 0, 8)), "--lr-schedule cosine` trains this model from scratch, and takes the same steps when"),
    (_runs((0, 0, 8), (5, 17, 8)), "--lr-schedule cosine` trains this model from scratch, and takes the same steps"),
    ([{"device": "cpu", "processes": 1, "from_epoch": 0}, *_runs((4, 0, 8))], "from scratch if no run changed"),
])
def test_card_says_what_its_command_reproduces(runs, says):
    assert says in model_card("tiny", _cosine(runs))


def test_with_a_constant_learning_rate_changing_the_epochs_changes_no_step():
    m = _metrics(8, epochs=8, runs=_runs((0, 0, 6), (6, 0, 8)))
    assert ("`python train.py --name tiny --hidden-channels 4 --n-layers 1 --epochs 8` trains this model from "
            "scratch, and takes the same steps when stopped and continued with `--resume`, even with another "
            "`--epochs`") in model_card("tiny", m)


@pytest.mark.parametrize("name", pixelcnn.list_models())
def test_the_shipped_cards_are_what_the_card_code_writes_from_their_metrics(name):
    """Regenerate with train.write_metrics(Path("weights/NAME"), json.load(...metrics.json)), not by hand."""
    folder = WEIGHTS / name
    if not (folder / "metrics.json").is_file():
        pytest.skip(f"{folder} is not there")
    assert (folder / "README.md").read_text() == model_card(name, json.loads((folder / "metrics.json").read_text()))


@pytest.mark.parametrize("labelled", [False, True])
def test_the_card_carries_the_measured_test_figures_as_hub_model_index(labelled):
    from huggingface_hub import ModelCard

    metrics = json.loads((WEIGHTS / ("gated-pixelcnn" if labelled else "pixelcnn") / "metrics.json").read_text())
    metrics["evaluation"] = {"test_loss": 0.0805, "command": "python train.py --evaluate", **(
        {"test_loss_marginal": 0.0731, "test_loss_given": 0.0712} if labelled else {})}
    results = ModelCard(model_card("m", metrics)).data.eval_results  # parsed as the Hub parses it
    got = {(r.metric_name, r.metric_type): r.metric_value for r in results}
    figures = ({"p(x) marginalised over the labels": 0.0731, "the true label": 0.0712, "label dropped": 0.0805}
               if labelled else {"-log p(x)": 0.0805})
    assert len(got) == 3 * len(figures)
    for what, nats in figures.items():
        for unit, kind, value in (("nats per pixel", "nll", nats), ("nats per image", "nll", nats * 784),
                                  ("bits per pixel", "bpd", nats / math.log(2))):
            [v] = [v for (name, k), v in got.items() if what in name and unit in name and k == kind]
            assert v == pytest.approx(value, rel=1e-5)
    assert all(r.dataset_type == "mnist" and r.dataset_split.startswith("test") for r in results)
