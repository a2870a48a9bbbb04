"""Accuracy counters, the confusion matrix and ``metrics.csv``."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import torch

from cnnzoo.train.checkpoint import atomic_write_bytes

#: columns of ``metrics.csv``, one row per epoch
CSV_COLUMNS = (
    "epoch",
    "step",
    "train_loss",
    "train_top1",
    "train_top5",
    "val_loss",
    "val_top1",
    "val_top5",
    "lr",
    "images_per_s",
    "seconds",
)


class Meter:
    """Running sums of loss and top-1 / top-k hits over the samples seen."""

    def __init__(self, num_classes: int, topk: int = 5, confusion: bool = False) -> None:
        self.num_classes = num_classes
        self.topk = max(1, min(topk, num_classes))
        self.loss_sum = 0.0
        self.top1 = 0
        self.topk_hits = 0
        self.count = 0
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64) if confusion else None

    @torch.no_grad()
    def update(self, logits: torch.Tensor, labels: torch.Tensor, loss: float | None = None) -> None:
        n = labels.shape[0]
        if loss is not None:
            self.loss_sum += float(loss) * n
        top = logits.topk(self.topk, dim=1).indices
        hits = top.eq(labels.view(-1, 1))
        self.top1 += int(hits[:, 0].sum())
        self.topk_hits += int(hits.any(dim=1).sum())
        self.count += n
        if self.confusion is not None:
            index = labels.cpu() * self.num_classes + top[:, 0].cpu()
            self.confusion += torch.bincount(index, minlength=self.num_classes**2).view(
                self.num_classes, self.num_classes
            )

    @property
    def loss(self) -> float:
        return self.loss_sum / self.count if self.count else math.nan

    @property
    def top1_acc(self) -> float:
        return self.top1 / self.count if self.count else math.nan

    @property
    def topk_acc(self) -> float:
        return self.topk_hits / self.count if self.count else math.nan

    def per_class_accuracy(self) -> list[float]:
        if self.confusion is None:
            raise ValueError("this meter does not keep a confusion matrix")
        totals = self.confusion.sum(dim=1)
        return [
            float(self.confusion[i, i]) / float(totals[i]) if totals[i] else math.nan
            for i in range(self.num_classes)
        ]


def write_metrics_csv(path: Path, history: list[dict[str, Any]], extra: tuple[str, ...] = ()) -> None:
    """Rewrite ``metrics.csv`` from the whole history (atomic, so resume never duplicates rows).

    ``extra`` columns (e.g. ``test_top1`` when the test split is measured every epoch) go last.
    """
    columns = tuple(CSV_COLUMNS) + tuple(extra)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in history:
        writer.writerow({k: _fmt(row.get(k)) for k in columns})
    atomic_write_bytes(Path(path), buffer.getvalue().encode())


def _fmt(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def read_metrics_csv(path: Path) -> list[dict[str, float]]:
    rows = []
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            rows.append({k: (float(v) if v not in ("", None) else math.nan) for k, v in row.items()})
    return rows
