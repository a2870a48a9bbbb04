"""``cnnzoo eval`` and ``cnnzoo predict``: use a trained run directory.

A run directory holds ``config.yaml`` (the resolved configuration), ``run.json`` (the class
names, channels, input size and normalisation the net was trained with) and the ``best`` /
``last`` checkpoints; that is all these commands need besides the data or the images.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnzoo.errors import CnnzooError, ConfigError
from cnnzoo.modelspec import ModelSpec
from cnnzoo.rundir import read_record, writable_file
from cnnzoo.train import checkpoint as ckpt
from cnnzoo.train.config import read_config


@dataclass
class LoadedRun:
    run_dir: Path
    model: nn.Module
    meta: dict[str, Any]
    config: Any
    device: torch.device
    #: the checkpoint whose weights were loaded ("best" or "last"; "pretrained" for shipped weights)
    checkpoint: str = "best"
    #: the pretrained tag (``lenet5.fashion_mnist``) when the weights are cnnzoo's shipped ones
    tag: str | None = None


def model_spec(record: dict[str, Any]) -> ModelSpec:
    """The model record of ``run.json`` (runs written before records had a spec: name and options)."""
    if record.get("spec"):
        return ModelSpec.from_dict(record["spec"])
    return ModelSpec(record["model"], dict(record.get("model_kwargs") or {}), num_classes=record["num_classes"],
                     in_chans=record["in_chans"])  # fmt: skip


def load_run(run_dir, checkpoint: str = "best", device: str = "auto") -> LoadedRun:
    """The trained model of a run directory, rebuilt from what the run recorded, in eval mode.

    The architecture comes from ``run.json``'s model record (builder, options, transforms such
    as a transfer run's new layer), the weights from checkpoint ``checkpoint``; ``best`` falls
    back to ``last`` when the run has no best checkpoint, and ``LoadedRun.checkpoint`` says
    which was loaded.  An int8 run (``cnnzoo quantize --scheme int8``) gives an
    :class:`~cnnzoo.quantization.int8.Int8Model` that runs ``model.int8.onnx`` on the CPU
    (``checkpoint`` is then ``"int8"``, whatever was asked).

    ``run_dir`` may also be a pretrained tag (``"lenet5.fashion_mnist"``, see
    ``cnnzoo.list_pretrained()``): the shipped weights, hash-checked, with the record of the run
    that trained them (:func:`cnnzoo.pretrained.load.load_pretrained_run`; ``checkpoint`` is
    then ``"pretrained"``).
    """
    from cnnzoo.pretrained.table import looks_like_tag
    from cnnzoo.train.engine import resolve_device

    if looks_like_tag(run_dir):
        from cnnzoo.pretrained.load import load_pretrained_run

        return load_pretrained_run(str(run_dir), device)
    run_dir = best_trial_of_search(Path(run_dir))
    if not run_dir.is_dir():
        raise CnnzooError(f"run directory {run_dir} not found")
    meta = read_record(run_dir)
    if meta is None:
        raise CnnzooError(f"{run_dir / 'run.json'} not found: is {run_dir} a cnnzoo run directory?")
    config = read_config(run_dir / "config.yaml")
    if isinstance(meta.get("int8"), dict):  # an int8 run: its model is an ONNX Runtime graph, not a checkpoint
        from cnnzoo.quantization.int8 import load_int8_model

        return LoadedRun(run_dir, load_int8_model(run_dir, meta), meta, config, torch.device("cpu"), "int8")
    tag = checkpoint
    if tag == "best" and not ckpt.paths(run_dir, "best")[0].exists():
        tag = "last"
    tensors, _ = ckpt.load_checkpoint(run_dir, tag)
    model = model_spec(meta).build()
    ckpt.load_model_weights(model, tensors, f"checkpoint {ckpt.paths(run_dir, tag)[0]}")
    dev = resolve_device(device)
    model.to(dev).eval()
    return LoadedRun(run_dir, model, meta, config, dev, tag)


def best_trial_of_search(path: Path) -> Path:
    """``path`` itself, or for a search directory (``cnnzoo search``) its best trial's run directory.

    A search directory stands for its best architecture, so ``load_run``, ``eval``, ``summary``
    and ``train`` take it as they take a run.
    """
    if not (path / "search.json").is_file() or (path / "run.json").is_file():
        return path
    from cnnzoo.search.runner import best_run_dir

    return best_run_dir(path)  # a search without a successful trial yet is a one-line error there


def run_architecture(text: str) -> ModelSpec:
    """The model record of a run directory, a search directory or a pretrained tag: what ``cnnzoo train RUN``
    trains again from new weights (the data set decides the classes and channels)."""
    run = load_run(text, device="cpu")
    spec = model_spec(run.meta)
    if run.checkpoint == "int8":
        raise ConfigError(f"{text} is an int8 run: train its fp32 source run instead")
    return spec


def names_a_run(text: str) -> bool:
    """Whether a command's MODEL|RUN argument is a run directory or a pretrained tag, not a model name.

    Model names have no slash (so a missing run directory is named as such) and no dot (a tag
    is ``name.tag``).
    """
    from cnnzoo.pretrained.table import looks_like_tag

    return Path(text).is_dir() or os.sep in text or looks_like_tag(text)


def model_or_run(text: str, options: list[str] | None = None, *, int8_model: bool = False):
    """A command's model argument: a registered name (with checked ``-o`` options), a run directory or a
    pretrained tag (``lenet5.fashion_mnist``: the shipped trained model, like a run).

    Returns ``(model, default_input_size, options)``: the name or the run's rebuilt model, the
    input ``(C, H, W)`` to analyse it at, and the builder options for a name.  For an int8 run
    the model is its fp32 architecture (what ``summary`` and ``compare`` analyse: the layers,
    parameters and multiply-adds are the same), or with ``int8_model`` the
    :class:`~cnnzoo.quantization.int8.Int8Model` itself (what ``bench`` times).
    """
    from cnnzoo.modelspec import check_options, parse_option_pairs
    from cnnzoo.pretrained.table import looks_like_tag
    from cnnzoo.registry import model_info

    if names_a_run(text):
        if options:
            what = "a pretrained tag" if looks_like_tag(text) else "a run directory"
            raise ConfigError(f"-o applies to a model name; {text} is {what}, rebuilt as it was trained")
        run = load_run(text, device="cpu")
        model = run.model
        if run.checkpoint == "int8" and not int8_model:
            model = model.fp32_architecture()
        return model, (int(run.meta["in_chans"]), *map(int, run.meta["input_size"])), {}
    info = model_info(text)
    return text, tuple(info.input_size), check_options(text, parse_option_pairs(options or []))


@dataclass
class EvalReport:
    split: str
    data: str
    checkpoint: str
    count: int
    loss: float
    top1: float
    top5: float
    classes: list[str]
    per_class: list[float]
    confusion: torch.Tensor
    confusion_png: Path | None = None
    tta_flip: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def format(self) -> str:
        lines = [
            f"{self.data} {self.split} split, {self.count} images, {self.checkpoint} checkpoint"
            + (", flip TTA" if self.tta_flip else ""),
            f"top-1 {100 * self.top1:.2f}%  top-5 {100 * self.top5:.2f}%  loss {self.loss:.4f}",
            "per-class top-1:",
        ]
        width = max(len(c) for c in self.classes) if self.classes else 5
        for name, acc in zip(self.classes, self.per_class):
            lines.append(f"  {name:{width}s}  {'-' if math.isnan(acc) else f'{100 * acc:6.2f}%'}")
        n = len(self.classes)
        if n <= 20:
            lines.append("confusion matrix (rows: true, columns: predicted):")
            cell = max(4, len(str(int(self.confusion.max()))) + 1) if self.confusion.numel() else 4
            lines.append(" " * (width + 2) + "".join(f"{i:>{cell}d}" for i in range(n)))
            for i, name in enumerate(self.classes):
                lines.append(f"  {name:{width}s}" + "".join(f"{int(v):>{cell}d}" for v in self.confusion[i]))
        if self.confusion_png:
            lines.append(f"confusion matrix plot: {self.confusion_png}")
        return "\n".join(lines)


def evaluate_run(
    run_dir,
    data: str | None = None,
    data_dir: str | None = None,
    split: str = "test",
    checkpoint: str = "best",
    tta_flip: bool | None = None,
    limit: int | None = None,
    batch_size: int = 256,
    device: str = "auto",
    confusion_png: str | None = None,
) -> EvalReport:
    """Top-1, top-5, per-class accuracy and the confusion matrix of a trained run.

    ``tta_flip`` defaults to what the run was trained and tested with, so that ``eval`` of a
    finished run reports the number ``train`` printed.  ``run_dir`` may be a pretrained tag
    (:func:`load_run`); its confusion matrix is drawn only where ``confusion_png`` says (the
    package's folder is never written to).
    """
    from cnnzoo.pretrained.table import looks_like_tag

    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {limit}")
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    tag = looks_like_tag(run_dir)
    png = Path(confusion_png) if confusion_png else None if tag else Path(run_dir) / f"confusion-{split}.png"
    if png is not None and (tag or Path(run_dir).is_dir()):  # checked before the evaluation, not after it
        writable_file(png, "confusion matrix image")
    run = load_run(run_dir, checkpoint, device)
    return evaluate_loaded(run, data=data, data_dir=data_dir, split=split, tta_flip=tta_flip, limit=limit,
                           batch_size=batch_size, confusion_png=png)  # fmt: skip


def evaluate_loaded(
    run: LoadedRun,
    data: str | None = None,
    data_dir: str | None = None,
    split: str = "test",
    tta_flip: bool | None = None,
    limit: int | None = None,
    batch_size: int = 256,
    confusion_png: Path | None = None,
) -> EvalReport:
    """:func:`evaluate_run` of a model already loaded (the pretrained ship tool evaluates its fp16 copy so)."""
    from cnnzoo.train import engine
    from cnnzoo.train.plots import plot_confusion

    config, meta = run.config, run.meta
    if tta_flip is None:
        tta_flip = bool(config.tta_flip)
    data_name = data or config.data
    bundle = engine.load_dataset(
        data_name, data_dir=data_dir or config.data_dir, download=config.download,
        val_fraction=config.val_fraction, seed=config.seed, limit_train=None, limit_val=limit,
        skip_bad_images=config.skip_bad_images,
    )  # fmt: skip
    if len(bundle.classes) != meta["num_classes"]:
        raise ConfigError(f"{data_name} has {len(bundle.classes)} classes, the run's model {meta['num_classes']}")
    if bundle.in_chans != meta["in_chans"]:
        raise ConfigError(f"{data_name} has {bundle.in_chans}-channel images, the run's model takes {meta['in_chans']}")
    part = bundle.test if split == "test" else bundle.val
    if part is None or len(part) == 0:
        raise ConfigError(f"{data_name} has no {split} split")
    if limit is not None and len(part) > limit:
        part = part.subset(torch.arange(limit))
    loader = engine.make_loader(part, batch_size=batch_size, train=False, device=run.device,
                                input_size=tuple(meta["input_size"]), augment=None, mean=meta["mean"],
                                std=meta["std"], seed=config.seed)  # fmt: skip
    from cnnzoo.train.speed import resolve_amp

    # the precision and layout the run was tested with, where this machine has them
    amp, _ = resolve_amp("auto" if meta.get("amp") == "bf16" else "none", run.device, lambda text: None)
    channels_last = bool(meta.get("channels_last", False))
    if channels_last:
        run.model.to(memory_format=torch.channels_last)
    meter = engine.evaluate(run.model, loader, run.device, meta["num_classes"], tta_flip=tta_flip, confusion=True,
                            amp=amp, channels_last=channels_last)  # fmt: skip
    if confusion_png is not None:
        plot_confusion(meter.confusion, list(bundle.classes), confusion_png,
                       title=f"{meta['model']} on {bundle.name}, {split} split")  # fmt: skip
    return EvalReport(split=split, data=bundle.name, checkpoint=run.checkpoint, count=meter.count, loss=meter.loss,
                      top1=meter.top1_acc, top5=meter.topk_acc, classes=list(bundle.classes),
                      per_class=meter.per_class_accuracy(), confusion=meter.confusion, confusion_png=confusion_png,
                      tta_flip=tta_flip)  # fmt: skip


def read_image(path, in_chans: int, size: tuple[int, int] | None) -> torch.Tensor:
    """An image file as uint8 ``(C, H, W)``, converted to the run's channels and stored size."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with warnings.catch_warnings():
            # a decompression bomb (a tiny file that unpacks to gigapixels) is refused, not decoded
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
            img.load()
        with img:
            img = img.convert("L" if in_chans == 1 else "RGB")
            if size is not None and (img.height, img.width) != tuple(size):
                img = img.resize((int(size[1]), int(size[0])), Image.BILINEAR)
            data = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
            width, height = img.size
    except FileNotFoundError:
        raise CnnzooError(f"image {path} not found") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise CnnzooError(f"refusing image {path}: {' '.join(str(exc).split())}") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise CnnzooError(f"cannot read image {path}: {' '.join(str(exc).split()) or type(exc).__name__}") from None
    return data.view(height, width, in_chans).permute(2, 0, 1).contiguous()


def predict_run(run_dir, images, topk: int = 5, checkpoint: str = "best", cam_path: str | None = None,
                device: str = "auto") -> list[str]:
    """Top-k class names with probabilities for each image, optionally with its activation map."""
    from cnnzoo.data import BatchTransform
    from cnnzoo.data.pipeline import resolve_augment
    from cnnzoo.pretrained.table import looks_like_tag
    from cnnzoo.train.cam import class_activation_map, save_overlay

    if cam_path and (Path(run_dir).is_dir() or looks_like_tag(run_dir)):  # checked before any work
        writable_file(cam_path, "--cam image")
    run = load_run(run_dir, checkpoint, device)
    meta = run.meta
    classes = meta["classes"]
    in_chans = int(meta["in_chans"])
    stored = tuple(meta["data_size"]) if meta.get("data_size") else tuple(meta["input_size"])
    transform = BatchTransform(stored, tuple(meta["input_size"]), meta["mean"], meta["std"],
                               resolve_augment(None, train=False), in_chans=in_chans, device=run.device)  # fmt: skip
    k = min(topk, len(classes))
    lines: list[str] = []
    for number, image_path in enumerate(images, start=1):
        raw = read_image(image_path, in_chans, stored)
        batch = transform(raw[None].to(run.device))
        with torch.no_grad():
            logits = run.model(batch)
            if isinstance(logits, (tuple, list)):
                logits = logits[0]
            probs = logits.float().softmax(dim=1)[0]
        values, indices = probs.topk(k)
        lines.append(f"{image_path}:")
        width = max(len(classes[int(i)]) for i in indices)
        for rank, (p, i) in enumerate(zip(values.tolist(), indices.tolist()), start=1):
            lines.append(f"  {rank}. {classes[i]:{width}s}  {p:.4f}")
        if cam_path:
            out = Path(cam_path)
            if len(images) > 1:
                out = out.with_name(f"{out.stem}-{number}{out.suffix or '.png'}")
            amap = class_activation_map(run.model, batch)
            display = _display_image(batch[0], meta)
            save_overlay(display, amap.heatmap, out,
                         title=f"{amap.method}: {classes[amap.class_index]} ({probs[amap.class_index]:.1%})")  # fmt: skip
            lines.append(f"  {amap.method} of '{classes[amap.class_index]}' ({amap.layer}) -> {out}")
    return lines


def _display_image(normalised: torch.Tensor, meta: dict) -> torch.Tensor:
    """The network's input (after padding/resizing) brought back to [0, 1] for display."""
    mean = torch.tensor(meta["mean"], dtype=torch.float32, device=normalised.device).view(-1, 1, 1)
    std = torch.tensor(meta["std"], dtype=torch.float32, device=normalised.device).view(-1, 1, 1)
    return (normalised.float() * std + mean).clamp(0, 1)
