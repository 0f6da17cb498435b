"""benchmarks/kept_pixels.py: the temperature it fits, and that it reads only the kept pixels."""

import importlib.util
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
spec = importlib.util.spec_from_file_location("kept_pixels", ROOT / "benchmarks" / "kept_pixels.py")
kept_pixels = importlib.util.module_from_spec(spec)
spec.loader.exec_module(kept_pixels)


def test_the_fitted_temperature_undoes_an_overconfident_scale():
    g = torch.Generator().manual_seed(0)
    z = 2 * torch.randn(4000, 10, generator=g)
    labels = torch.multinomial(torch.softmax(z, 1), 1, generator=g)[:, 0]  # drawn from softmax(z): T = 1 is right
    assert abs(kept_pixels.calibrated(z, labels) - 1) < 0.1
    assert abs(kept_pixels.calibrated(2.5 * z, labels) - 2.5) < 0.25


def marked_digits(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise, and in the top half a horizontal bar (label 0) or a vertical one (label 1)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    x = (torch.rand(n, 1, 28, 28, generator=g) < 0.05).float()
    x[labels == 0, 0, 5:7, 6:22] = 1
    x[labels == 1, 0, 2:12, 13:15] = 1
    return x, labels


def test_the_reading_is_what_the_kept_pixels_tell():
    """Kept where the label is drawn, q is sure of it; kept elsewhere, q knows no more than chance (1/2)."""
    train, test = marked_digits(2000, seed=1), marked_digits(200, seed=2)
    top = kept_pixels.kept_reading("top 14 rows", train, test, epochs=2, held_out=400)
    bottom = kept_pixels.kept_reading("bottom 14 rows", train, test, epochs=2, held_out=400)
    assert top["read"] > 0.95 and top["match"] > 0.85, top
    assert bottom["read"] < 0.65 and bottom["match"] < 0.6, bottom


class BarReader(torch.nn.Module):
    """A stand-in digit classifier: reads label 0 where row 5 has a bar, 1 where it does not, 0 for flipped."""

    def __init__(self, flipped: bool = False):
        super().__init__()
        self.flipped = flipped

    def forward(self, x):
        bar = (x[:, 0, 5, 6:22].sum(1) > 8).long()  # (B,) 1 where the horizontal bar of label 0 is
        label = (1 - bar) if not self.flipped else bar
        return torch.nn.functional.one_hot(label, 10).float() * 10


def test_the_model_reads_the_kept_pixels_by_its_completions():
    """The bar that tells the label is kept, so every completion shows it: each is read as the true digit.

    Read the other way round, none is."""
    import pixelcnn
    torch.manual_seed(0)
    model = pixelcnn.GatedPixelCNN(pixelcnn.GatedPixelCNNConfig(hidden_channels=4, n_layers=2, n_labels=0)).eval()
    test = marked_digits(6, seed=3)
    right = kept_pixels.model_reading(model, "top 14 rows", test, BarReader(), votes=3, candidates=4)
    wrong = kept_pixels.model_reading(model, "top 14 rows", test, BarReader(flipped=True), votes=3, candidates=4)
    assert right["read"] == right["match"] == 1.0 and right["digits"] == 6, right
    assert wrong["read"] == wrong["match"] == 0.0, wrong
