"""Image classification with a Vision Transformer: Fashion-MNIST, or real MNIST digits when it is absent.

Batches: ``image`` float32[B, H, W, 1] (standardised with training-split statistics) and ``label`` int32[B].
Splits: the data set's own test set is ``test``; ``val`` is ``n_val`` random rows held out of the training
set (seeded, disjoint). ``evaluate`` reports test accuracy beside a nearest-class-mean baseline (pixels,
fitted on the training split) and names the data set used.

Config fields (``config.data``): ``n_val``; ``max_train`` / ``max_test`` (0 = all; smoke uses few);
``directory`` (default the Debian package's folder). ``config.model``: see models/transformers.py ``vit``.
"""
from __future__ import annotations

import json
import os

import jax
import numpy as np

from seqjax import losses
from seqjax.data import images
from seqjax.models import transformers


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
    def __init__(self, config):
        self.config = config
        d = config.data
        directory = d.get("directory", images.FASHION_MNIST_DIR)
        self.dataset, raw, self.class_names = images.load_image_dataset(directory)
        train, val = images.split_validation(raw["train"], int(d.n_val), seed=config.seed)
        test = raw["test"]
        if d.get("max_train", 0):
            train = {k: v[: d.max_train] for k, v in train.items()}
        if d.get("max_test", 0):
            test = {k: v[: d.max_test] for k, v in test.items()}
        self.normalizer = images.fit_normalizer(train["image"])
        self.splits = {name: {"image": self.normalizer(s["image"]), "label": s["label"].astype(np.int32)}
                       for name, s in (("train", train), ("val", val), ("test", test))}
        self.image_shape = self.splits["train"]["image"].shape[1:]  # (H, W, C)

    def data(self):
        return self.splits

    def model(self, rngs):
        return transformers.vit(self.config.model, num_classes=len(self.class_names),
                                image_shape=self.image_shape, rngs=rngs)

    def loss(self, model, batch, key):
        logits = model(batch["image"], key=key)  # [B, C]
        loss = losses.softmax_cross_entropy(logits, batch["label"])
        return loss, {"loss": loss, "accuracy": losses.accuracy(logits, batch["label"])}

    def evaluate(self, model, splits, workdir):
        predict = jax.jit(lambda x: model(x).argmax(-1))
        out = {}
        for name in ("val", "test"):
            x, y = splits[name]["image"], splits[name]["label"]
            B = 250
            preds = []
            for i in range(0, len(x), B):
                chunk = x[i:i + B]
                pad = B - len(chunk)
                if pad:  # fixed batch shape: one compile
                    chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), chunk.dtype)])
                preds.append(np.asarray(predict(chunk))[: B - pad])
            out[f"{name}_accuracy"] = float((np.concatenate(preds) == y).mean())
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


def build(config) -> ImageClassificationTask:
    return ImageClassificationTask(config)
