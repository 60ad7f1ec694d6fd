"""The scores of the paper's transfer tables, computed by torchmetrics.

- Caltech-101/256 (Tables 4, 5, 7, Fig. 9): the mean of per-class accuracies (recall of each class), so a class
  with many test images weighs no more than one with few; over splits, mean and standard deviation.
- PASCAL VOC (Table 6): per-class average precision and their mean (mAP). torchmetrics' AP is the area under
  the stepwise precision-recall curve (sklearn's definition); the VOC 2010+ development kit computes it on the
  precision envelope (monotone), which can only be higher, typically by well under a point.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torchmetrics.classification import MulticlassRecall, MultilabelAveragePrecision


def per_class_accuracy(preds: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Accuracy of each class ``[C]`` (NaN for a class with no test image); ``preds`` are class indices or scores."""
    if preds.ndim == 2:
        preds = preds.argmax(dim=1)
    acc = MulticlassRecall(num_classes=num_classes, average="none")(preds.long(), targets.long())
    present = torch.bincount(targets.long(), minlength=num_classes) > 0
    return torch.where(present, acc, torch.full_like(acc, float("nan")))


def mean_per_class_accuracy(preds: torch.Tensor, targets: torch.Tensor, num_classes: int) -> float:
    """The Caltech protocol's score: the mean over the classes that have test images of their accuracy."""
    return float(per_class_accuracy(preds, targets, num_classes).nanmean())


def average_precision(scores: torch.Tensor, targets: torch.Tensor, ignore_index: int | None = -1) -> torch.Tensor:
    """Per-class AP ``[C]`` of multi-label ``scores [N,C]`` against ``targets [N,C]`` in {0, 1} (entries equal to
    ``ignore_index`` are left out of their class, as VOC does with "difficult"-only images). NaN for a class
    without a positive example (AP is undefined there; torchmetrics would report 0)."""
    metric = MultilabelAveragePrecision(num_labels=scores.shape[1], average="none", ignore_index=ignore_index)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No positive samples")
        ap = metric(scores.float(), targets.long())
    return torch.where((targets == 1).any(0), ap, torch.full_like(ap, float("nan")))


def mean_and_std(values) -> tuple[float, float]:
    """Mean and standard deviation (population, numpy's default) of per-split scores."""
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std())
