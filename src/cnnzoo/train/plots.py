"""``curves.png``, ``confusion.png`` and the overlay of several runs (``cnnzoo plot``)."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Sequence

from cnnzoo.errors import CnnzooError
from cnnzoo.train.checkpoint import atomic_write_bytes
from cnnzoo.train.metrics import read_metrics_csv


def pyplot_agg():
    """matplotlib.pyplot on the Agg backend (no display needed); imported on first use."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: Path) -> None:
    """``fig`` as a PNG at ``path``, written atomically (a kill leaves the old file or the new one)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(Path(path), buffer.getvalue())


def _series(rows: list[dict[str, float]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for row in rows:
        value = row.get(key, math.nan)
        if value is not None and not math.isnan(value):
            xs.append(row["epoch"])
            ys.append(value)
    return xs, ys


def plot_curves(rows: list[dict[str, float]], path: Path, title: str = "") -> None:
    """Loss and top-1 accuracy of the training and validation sets against the epoch."""
    plt = pyplot_agg()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label, style in (("train_loss", "train", "-"), ("val_loss", "validation", "--")):
        xs, ys = _series(rows, key)
        if xs:
            ax_loss.plot(xs, ys, style, marker="o", label=label)
    for key, label, style in (("train_top1", "train", "-"), ("val_top1", "validation", "--")):
        xs, ys = _series(rows, key)
        if xs:
            ax_acc.plot(xs, [100 * y for y in ys], style, marker="o", label=label)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="top-1 accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    save_png(fig, path)
    plt.close(fig)


def plot_confusion(matrix, classes: Sequence[str], path: Path, title: str = "") -> None:
    """Row-normalised confusion matrix (rows: true class, columns: predicted)."""
    plt = pyplot_agg()
    counts = matrix.double()
    totals = counts.sum(dim=1, keepdim=True).clamp_min(1)
    normalised = (counts / totals).numpy()
    n = len(classes)
    size = max(4.0, min(16.0, 0.45 * n + 2))
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    if n <= 40:
        ax.set_xticks(range(n), labels=list(classes), rotation=90)
        ax.set_yticks(range(n), labels=list(classes))
        if n <= 20:
            for i in range(n):
                for j in range(n):
                    value = normalised[i, j]
                    if value >= 0.005:
                        ax.text(j, i, f"{100 * value:.0f}", ha="center", va="center",
                                color="white" if value > 0.5 else "black", fontsize=7)
    ax.set(xlabel="predicted", ylabel="true", title=title or "confusion matrix (% of true class)")
    save_png(fig, path)
    plt.close(fig)


def overlay_runs(run_dirs: Sequence[Path], path: Path, metrics: Sequence[str] = ("val_top1", "train_loss"),
                 labels: Sequence[str] | None = None) -> Path:
    """One figure, one panel per metric, one line per run (the experiments compare runs this way)."""
    if not run_dirs:
        raise CnnzooError("give at least one run directory")
    runs = []
    for index, run_dir in enumerate(run_dirs):
        csv_path = Path(run_dir) / "metrics.csv"
        if not csv_path.is_file():
            raise CnnzooError(f"{csv_path} not found: is {run_dir} a cnnzoo run directory?")
        rows = read_metrics_csv(csv_path)
        label = labels[index] if labels and index < len(labels) else Path(run_dir).name
        runs.append((label, rows))
    known = set(runs[0][1][0]) if runs[0][1] else set()
    for metric in metrics:
        if known and metric not in known:
            raise CnnzooError(f"unknown metric {metric!r}; metrics.csv has {', '.join(sorted(known))}")
    plt = pyplot_agg()
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        scale = 100 if metric.endswith(("top1", "top5")) else 1
        for label, rows in runs:
            xs, ys = _series(rows, metric)
            ax.plot(xs, [scale * y for y in ys], marker=".", label=label)
        unit = " (%)" if scale == 100 else ""
        ax.set(xlabel="epoch", ylabel=metric + unit, title=metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    save_png(fig, path)
    plt.close(fig)
    return Path(path)
