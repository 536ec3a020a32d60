"""Post-processing: a classifier's scores as its top-k labels and probabilities."""

from __future__ import annotations

import numpy as np


def class_labels(n: int) -> list[str]:
    """The labels of an n-way classifier whose classes have no names of their own."""
    return [f"class_{i:04d}" for i in range(n)]


def top_k(logits: np.ndarray, k: int, labels: list[str] | None = None
          ) -> tuple[np.ndarray, np.ndarray]:
    """For each row of `logits` [n, classes]: the k most likely labels (bytes, [n, k]) and
    their softmax probabilities (float32, [n, k]), most likely first. `labels` default to
    `class_labels` of the classes."""
    logits = np.asarray(logits, dtype=np.float64)
    if labels is None:
        labels = class_labels(logits.shape[1])
    k = min(k, logits.shape[1])
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities = shifted / shifted.sum(axis=1, keepdims=True)
    best = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    names = np.array([[labels[i].encode() for i in row] for row in best], dtype=object)
    return names, np.take_along_axis(probabilities, best, axis=1).astype(np.float32)
