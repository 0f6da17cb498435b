"""Binarized MNIST read from IDX files (plain or .gz); clear errors when they are missing. No network."""

import gzip

import pytest
import torch

from pixelcnn.data import RAW_FILES, binarize, load_mnist
from conftest import write_idx, write_mnist


def _images(values: list[int]) -> torch.Tensor:
    """One 28x28 image per value, every pixel that value."""
    return torch.tensor(values, dtype=torch.uint8).view(-1, 1, 1).expand(-1, 28, 28).contiguous()


@pytest.fixture
def mnist(tmp_path):
    train = _images([0, 127, 128, 255, 200])
    test = _images([127, 128, 1])
    # one pixel per image set apart, to catch a transposed or shifted read
    train[:, 3, 5] = 255 - train[:, 3, 5]
    return write_mnist(tmp_path, train, torch.tensor([0, 1, 2, 3, 4]), test, torch.tensor([7, 8, 9]))


def test_reads_idx_files_and_binarizes_above_one_half(mnist):
    x, y = load_mnist(mnist, train=True, download=False)
    assert x.shape == (5, 1, 28, 28) and x.dtype == torch.float32
    assert y.tolist() == [0, 1, 2, 3, 4] and y.dtype == torch.int64
    # 128/255 > 0.5 -> 1; 127/255 < 0.5 -> 0
    assert [x[k, 0, 0, 0].item() for k in range(5)] == [0.0, 0.0, 1.0, 1.0, 1.0]
    assert [x[k, 0, 3, 5].item() for k in range(5)] == [1.0, 1.0, 0.0, 0.0, 0.0]  # the flipped pixel
    assert set(x.unique().tolist()) == {0.0, 1.0}


def test_test_split_reads_the_t10k_files(mnist):
    x, y = load_mnist(mnist, train=False, download=False)
    assert x.shape == (3, 1, 28, 28)
    assert y.tolist() == [7, 8, 9]
    assert x[:, 0, 0, 0].tolist() == [0.0, 1.0, 0.0]


def test_binarize_floats_and_uint8_agree():
    v = torch.arange(256, dtype=torch.uint8)
    assert torch.equal(binarize(v), binarize(v.float() / 255))
    assert binarize(v).sum().item() == 128  # 128..255
    assert binarize(torch.tensor([0.5, 0.5001])).tolist() == [0.0, 1.0]


def test_reads_gz_files_only(tmp_path, no_download):
    write_mnist(tmp_path, _images([128, 10]), torch.tensor([1, 2]), _images([255]), torch.tensor([3]), gz=True)
    raw = tmp_path / "MNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(f"{n}.gz" for n in RAW_FILES)
    x, y = load_mnist(tmp_path, train=True, download=False)
    assert x[:, 0, 0, 0].tolist() == [1.0, 0.0] and y.tolist() == [1, 2]
    x, y = load_mnist(tmp_path, train=False, download=True)  # present: nothing to download
    assert x[:, 0, 0, 0].tolist() == [1.0] and y.tolist() == [3]
    assert not list(raw.glob("*.tmp"))


def _assert_names_the_folder(err: str, tmp_path):
    assert "\n" not in err
    assert str((tmp_path / "MNIST" / "raw").resolve()) in err
    for name in RAW_FILES:
        assert name in err


def test_missing_files_without_download_names_the_folder(tmp_path):
    with pytest.raises(RuntimeError) as e:
        load_mnist(tmp_path, download=False)
    _assert_names_the_folder(str(e.value), tmp_path)


def test_one_missing_file_names_the_folder(tmp_path):
    write_mnist(tmp_path, _images([1]), torch.tensor([1]), _images([1]), torch.tensor([1]))
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(RuntimeError) as e:
        load_mnist(tmp_path, train=True, download=False)
    _assert_names_the_folder(str(e.value), tmp_path)


def test_failed_download_names_the_folder(tmp_path, no_download):
    """The mirrors are a closed local port: the download fails, and the error says where to put the files."""
    with pytest.raises(RuntimeError) as e:
        load_mnist(tmp_path, download=True)
    _assert_names_the_folder(str(e.value), tmp_path)
    assert "127.0.0.1:9" in str(e.value)  # the cause, on the same line


def test_corrupt_gz_names_the_folder(tmp_path, no_download):
    write_mnist(tmp_path, _images([1]), torch.tensor([1]), _images([1]), torch.tensor([1]), gz=True)
    raw = tmp_path / "MNIST" / "raw"
    (raw / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(RuntimeError) as e:
        load_mnist(tmp_path, download=False)
    _assert_names_the_folder(str(e.value), tmp_path)
    assert not list(raw.glob("*.tmp"))


def test_truncated_idx_file_is_an_error_not_garbage(tmp_path):
    write_mnist(tmp_path, _images([1, 2]), torch.tensor([1, 2]), _images([1]), torch.tensor([1]))
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(RuntimeError) as e:
        load_mnist(tmp_path, download=False)
    _assert_names_the_folder(str(e.value), tmp_path)


def test_write_idx_matches_the_format(tmp_path):
    """The helper itself: magic numbers and sizes as in the IDX spec."""
    p = write_idx(tmp_path / "x", torch.zeros(2, 28, 28, dtype=torch.uint8))
    assert p.read_bytes()[:16] == bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 28, 0, 0, 0, 28])
    q = write_idx(tmp_path / "y", torch.tensor([4, 2]), gz=True)
    assert gzip.decompress(q.read_bytes()) == bytes([0, 0, 8, 1, 0, 0, 0, 2, 4, 2])
