"""benchmarks/bench_quality.py: the figures it takes from elsewhere, and the tables it merges."""

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("bench_quality", ROOT / "benchmarks" / "bench_quality.py")
bench_quality = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench_quality)


def evaluated_folder(tmp_path: Path, weights: bytes, test_images: int = 10000) -> Path:
    folder = tmp_path / "labelled"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(weights)
    (folder / "metrics.json").write_text(json.dumps({"data": {"test_images": test_images}, "evaluation": {
        "bayes_accuracy": 0.987, "weights_sha256": hashlib.sha256(weights).hexdigest()}}))
    return folder


def test_bayes_accuracy_is_reused_only_for_the_weights_and_digits_it_was_measured_on(tmp_path):
    folder = evaluated_folder(tmp_path, b"the weights")
    assert bench_quality.evaluated_bayes(str(folder), 10000) == 0.987
    assert bench_quality.evaluated_bayes(str(folder), 500) is None  # fewer digits asked for: measured afresh
    (folder / "model.safetensors").write_bytes(b"retrained weights")
    assert bench_quality.evaluated_bayes(str(folder), 10000) is None
    assert bench_quality.evaluated_bayes(str(tmp_path / "nowhere"), 10000) is None
    (tmp_path / "labelled" / "metrics.json").write_text("{not json")
    assert bench_quality.evaluated_bayes(str(folder), 10000) is None


def result(model: str, **extra) -> dict:
    completions = {w: {"true_digit": 0.5, "mean_ess": None, "orientation": "top"} for w in bench_quality.KNOWN}
    return {"model": model, "labels": 0, "confident": 0.8, "entropy_bits": 3.2, "completions": completions, **extra}


def write_run(path: Path, results: list[dict], **settings) -> Path:
    base = {"samples": 100, "per_label": 20, "digits": 200, "candidates": 128, "bayes": 10000}
    path.write_text(json.dumps({"classifier_accuracy": 0.99, "settings": base | settings, "results": results}))
    return path


def test_runs_measured_alike_merge_into_one_table(tmp_path, capsys):
    a = write_run(tmp_path / "a.json", [result("recipe")])
    b = write_run(tmp_path / "b.json", [result("labelled", labels=10, conditional=0.96, bayes_accuracy=0.987,
                                               bayes_digits=10000, bayes_from="train.py --evaluate")])
    assert bench_quality.main(["--table", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| recipe") or line.startswith("| labelled")]
    assert [r.split(" | ")[0] for r in rows] == ["| recipe", "| labelled"]
    assert "96.0%" in rows[1] and "98.70%" in rows[1] and "98.70%" not in rows[0]
    assert "from 128 candidates" in out and "`train.py --evaluate`" in out


def test_runs_measured_otherwise_do_not_merge(tmp_path, capsys):
    a = write_run(tmp_path / "a.json", [result("recipe")])
    b = write_run(tmp_path / "b.json", [result("other")], candidates=32)
    assert bench_quality.main(["--table", str(a), str(b)]) == 1
    assert "candidates" in capsys.readouterr().err
    assert bench_quality.main(["--table", str(tmp_path / "missing.json")]) == 1


@pytest.mark.parametrize("field", ["samples", "digits"])
def test_every_shared_setting_is_compared(tmp_path, field):
    a = write_run(tmp_path / "a.json", [result("recipe")])
    b = write_run(tmp_path / "b.json", [result("other")], **{field: 7})
    assert bench_quality.main(["--table", str(a), str(b)]) == 1


def test_digits_0_measures_the_samples_only_and_the_table_leaves_the_completions_blank():
    torch = pytest.importorskip("torch")
    import argparse

    import pixelcnn
    torch.manual_seed(0)
    model = pixelcnn.GatedPixelCNN(pixelcnn.GatedPixelCNNConfig(hidden_channels=4, n_layers=2, n_labels=10))
    args = argparse.Namespace(samples=4, per_label=2, digits=0, candidates=8, chunk=8, bayes=0, known=["top"])
    test = (torch.zeros(3, 1, 28, 28), torch.zeros(3, dtype=torch.long))
    out = bench_quality.measure("tiny", model, bench_quality.Classifier(), test, args)
    assert out["completions"] == {} and len(out["conditional_by_label"]) == 10 and "bayes_accuracy" not in out
    text = bench_quality.table([out, result("recipe")], args, 0.99)
    tiny, recipe = (line for line in text.splitlines() if line.startswith(("| tiny", "| recipe")))
    assert tiny.count("%") == 2 and recipe.count("50.0%") == len(bench_quality.KNOWN)  # blank, not 0
    assert "no completions" in text


def test_known_measures_only_the_completions_asked_for():
    torch = pytest.importorskip("torch")
    import argparse

    import pixelcnn
    torch.manual_seed(0)
    model = pixelcnn.PixelCNN(pixelcnn.PixelCNNConfig(hidden_channels=4, kernel_size=3, n_layers=1))
    args = argparse.Namespace(samples=2, per_label=1, digits=2, candidates=2, chunk=8, bayes=0, known=["bottom", "top"])
    test = ((torch.rand(2, 1, 28, 28) < 0.3).float(), torch.zeros(2, dtype=torch.long))
    out = bench_quality.measure("tiny", model, bench_quality.Classifier(), test, args)
    assert list(out["completions"]) == ["bottom 14 rows", "top 14 rows"]
    assert out["completions"]["top 14 rows"]["mean_ess"] is None  # a prefix: exact, nothing resampled
    assert out["completions"]["bottom 14 rows"]["mean_ess"] is not None  # the recipe completes it by SIR


def test_a_proposal_draws_only_the_completions_it_makes_exact_and_the_model_does_not():
    torch = pytest.importorskip("torch")
    import argparse

    import pixelcnn
    torch.manual_seed(0)
    model = pixelcnn.GatedPixelCNN(pixelcnn.GatedPixelCNNConfig(hidden_channels=4, n_layers=2))  # top first
    four = pixelcnn.GatedPixelCNN(pixelcnn.GatedPixelCNNConfig(hidden_channels=4, n_layers=2, n_orientations=4))
    args = argparse.Namespace(samples=0, per_label=0, digits=2, candidates=4, chunk=8, bayes=0,
                              known=["top", "bottom", "hole"])
    test = ((torch.rand(2, 1, 28, 28) < 0.3).float(), torch.zeros(2, dtype=torch.long))
    out = bench_quality.measure("tiny", model, bench_quality.Classifier(), test, args, proposal=("four", four))
    c = out["completions"]
    assert c["bottom 14 rows"]["proposal"] == "four" and c["bottom 14 rows"]["orientation"] == "bottom"
    assert c["bottom 14 rows"]["mean_ess"] is not None  # weighed by the model
    assert "proposal" not in c["top 14 rows"] and c["top 14 rows"]["mean_ess"] is None  # the model's own, exact
    assert "proposal" not in c["all but a central 14x14 hole"]  # the proposal cannot make it exact
    line = next(x for x in bench_quality.table([out], args, 0.99).splitlines() if x.startswith("| tiny"))
    assert "(*: candidates drawn by four)" in line and line.count("%*") == 1  # one cell marked


def test_spread_is_the_mean_share_of_pixels_two_images_of_a_label_differ_in():
    torch = pytest.importorskip("torch")
    a, b = torch.zeros(1, 1, 2, 2), torch.tensor([[[[1.0, 0], [0, 0]]]])
    images = torch.cat([a, b, a, a])  # label 0: a and b differ in 1 of 4 pixels; label 1: two copies of a
    assert bench_quality.spread(images, torch.tensor([0, 0, 1, 1])) == pytest.approx((0.25 + 0.0) / 2)


def test_guidance_adds_a_row_for_each_w_with_its_spread():
    torch = pytest.importorskip("torch")
    import argparse

    import pixelcnn
    torch.manual_seed(0)
    model = pixelcnn.GatedPixelCNN(pixelcnn.GatedPixelCNNConfig(hidden_channels=4, n_layers=2, n_labels=10))
    with torch.no_grad():
        for layer in model.layers:
            layer.label.weight.normal_()  # labels that matter, so that guidance changes what is drawn
    args = argparse.Namespace(samples=4, per_label=3, digits=0, candidates=8, chunk=8, bayes=10, known=["top"])
    test = ((torch.rand(10, 1, 28, 28) < 0.3).float(), torch.arange(10))
    rows = [bench_quality.measure("tiny", model, bench_quality.Classifier(), test, args, w) for w in (0.0, 2.0)]
    assert [r["guidance"] for r in rows] == [0.0, 2.0]
    assert "bayes_accuracy" in rows[0] and "bayes_accuracy" not in rows[1]  # the model's own, measured once
    assert rows[0]["conditional_spread"] != rows[1]["conditional_spread"]
    text = bench_quality.table(rows, args, 0.99, test_spread=0.125)
    assert "| guidance | spread |" in text and "(0.125 for as many test digits" in text
    assert [line.split(" | ")[1] for line in text.splitlines() if line.startswith("| tiny")] == ["0", "2"]
    assert "| guidance |" not in bench_quality.table(rows[:1], args, 0.99)  # unguided alone: the table as before
