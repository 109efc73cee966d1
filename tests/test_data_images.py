"""Image loaders: IDX parsing on tiny gz files the test writes, MNIST CSV, splits, train-only statistics."""
import gzip
import struct

import numpy as np
import pytest

from seqjax.data import images


def _write_idx(folder, n=5, rows=28, cols=28, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, rows, cols), dtype=np.uint8)
    y = rng.integers(0, 10, size=(n,), dtype=np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        with gzip.open(folder / images.IDX_FILES[f"{split}_images"], "wb") as f:
            f.write(struct.pack(">iiii", 2051, n, rows, cols) + x.tobytes())
        with gzip.open(folder / images.IDX_FILES[f"{split}_labels"], "wb") as f:
            f.write(struct.pack(">ii", 2049, n) + y.tobytes())
    return x, y


def test_idx_round_trip(tmp_path):
    x, y = _write_idx(tmp_path)
    data = images.load_idx_dataset(tmp_path)
    for split in ("train", "test"):
        np.testing.assert_array_equal(data[split]["image"], x)
        np.testing.assert_array_equal(data[split]["label"], y.astype(np.int32))
    name, data2, classes = images.load_image_dataset(tmp_path)
    assert name == "fashion_mnist" and len(classes) == 10
    np.testing.assert_array_equal(data2["train"]["image"], x)


def test_idx_corrupt_and_missing(tmp_path):
    _write_idx(tmp_path)
    bad = tmp_path / images.IDX_FILES["train_images"]
    with gzip.open(bad, "wb") as f:
        f.write(struct.pack(">iiii", 2051, 5, 28, 28) + b"\x00" * 10)  # truncated pixels
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz.*header says"):
        images.load_idx_dataset(tmp_path)
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="Corrupt gzip file .*train-images"):
        images.load_idx_dataset(tmp_path)
    labels = tmp_path / images.IDX_FILES["test_labels"]
    with gzip.open(labels, "wb") as f:
        f.write(struct.pack(">ii", 1234, 0))
    with pytest.raises(ValueError, match="magic number 1234"):
        images.read_idx_labels(labels)
    with pytest.raises(FileNotFoundError, match="apt-get install -y dataset-fashion-mnist"):
        images.load_idx_dataset(tmp_path / "empty")


def test_download_from_file_url(tmp_path):
    x, y = _write_idx(tmp_path / "mirror", n=3)
    dest = images.download_idx_dataset(tmp_path / "dl", base_url=(tmp_path / "mirror").as_uri())
    data = images.load_idx_dataset(dest)
    np.testing.assert_array_equal(data["test"]["image"], x)
    np.testing.assert_array_equal(data["test"]["label"], y)
    assert not list(dest.glob("*.part"))


def test_mnist_csv(tmp_path):
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, size=(6, 784))
    labels = np.arange(6) % 10
    rows = "\n".join(",".join(str(v) for v in [*p, l]) for p, l in zip(pixels, labels, strict=True))
    path = tmp_path / "mnist_5k.csv.gz"
    with gzip.open(path, "wt") as f:
        f.write(rows + "\n")
    data = images.read_mnist_csv(path, n_test=2)
    np.testing.assert_array_equal(data["train"]["image"], pixels[:4].reshape(4, 28, 28))
    np.testing.assert_array_equal(data["test"]["label"], labels[4:])
    with gzip.open(path, "wt") as f:
        f.write("1,2,3\n")
    with pytest.raises(ValueError, match="mnist_5k.csv.gz: expected 785 columns"):
        images.read_mnist_csv(path)


def test_split_disjoint_and_normalizer_fitted_on_train():
    rng = np.random.default_rng(0)
    split = {"image": rng.integers(0, 256, size=(20, 4, 4), dtype=np.uint8), "label": np.arange(20)}
    train, val = images.split_validation(split, n_val=5, seed=3)
    assert len(val["label"]) == 5 and len(train["label"]) == 15
    assert set(train["label"]).isdisjoint(val["label"])
    assert sorted([*train["label"], *val["label"]]) == list(range(20))
    norm = images.fit_normalizer(train["image"])
    ref = train["image"].astype(np.float64) / 255.0
    assert norm.mean == pytest.approx(ref.mean()) and norm.std == pytest.approx(ref.std())
    out = norm(train["image"])
    assert out.shape == (15, 4, 4, 1) and out.dtype == np.float32
    assert out.mean() == pytest.approx(0.0, abs=1e-5) and out.std() == pytest.approx(1.0, abs=1e-4)
    # Validation statistics are not used: its standardised mean is not forced to zero.
    np.testing.assert_allclose(norm(val["image"])[..., 0], (val["image"] / 255.0 - ref.mean()) / ref.std(),
                               rtol=1e-5, atol=1e-5)
