"""The training engine: :func:`fit` trains any registered model on any data set.

One epoch is: shuffle (``loader.set_epoch``), forward, the loss (cross-entropy with
optional label smoothing, plus ``aux_weight`` times the auxiliary classifiers' losses
for GoogLeNet-style nets, Szegedy et al. 2015 Section 5), backward, optional gradient
clipping, the optimizer step and the schedule's step; then the validation split, a row
of ``metrics.csv``, the ``last`` checkpoint and, when validation top-1 improved, the
``best`` one.  At the end the test split is measured with the best weights (the
validation split chose them; the test split never influences training) and
``curves.png`` and ``confusion.png`` are drawn.

Nothing is lost: the output directory is checked before any work, checkpoints are
atomic, SIGINT/SIGTERM finish the current step and write ``last``, a NaN or infinite
loss stops before it touches the weights, and ``resume=True`` continues exactly.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import sys
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from cnnzoo.errors import CnnzooError, ConfigError
from cnnzoo.train import checkpoint as ckpt
from cnnzoo.train import distributed as dist_utils
from cnnzoo.train.config import (
    TrainConfig,
    differing_keys,
    read_config,
    resolve,
    save_config,
    to_dict,
    validate,
)
from cnnzoo.train.metrics import CSV_COLUMNS, Meter, write_metrics_csv
from cnnzoo.train.optim import LRSchedule, build_optimizer


class TrainingDiverged(CnnzooError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""

    exit_code = 3


class OutputDirError(CnnzooError):
    """The run directory cannot be written (or already holds another run)."""


@dataclass
class FitResult:
    """What :func:`fit` returns."""

    run_dir: Path
    #: "completed", "stopped" (``stop_after_epochs``) or "interrupted" (SIGINT/SIGTERM)
    status: str
    epochs_done: int
    steps: int
    best_epoch: int | None = None
    best_val_top1: float | None = None
    val_top1: float | None = None
    test_top1: float | None = None
    test_top5: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    config: TrainConfig | None = None
    #: the signal that interrupted the run ("SIGINT" or "SIGTERM")
    signal: str | None = None

    @property
    def exit_code(self) -> int:
        """0 when completed or stopped as asked; 128 + the signal's number when interrupted."""
        if self.status != "interrupted":
            return 0
        try:
            return 128 + int(signal.Signals[self.signal])
        except (KeyError, TypeError):
            return 130


# ------------------------------------------------------------------------------------------
# data access (module attributes, so tests can stand in for cnnzoo.data)
# ------------------------------------------------------------------------------------------


def load_dataset(*args, **kwargs):
    from cnnzoo.data import load_dataset as _load

    return _load(*args, **kwargs)


def make_loader(*args, **kwargs):
    from cnnzoo.data import make_loader as _make

    return _make(*args, **kwargs)


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA GPU is available (use --device cpu)")
    return torch.device(name)


def choose_input_size(info, data_size: tuple[int, int] | None, requested: list[int] | None) -> tuple[int, int]:
    """The (H, W) fed to the network.

    An explicit size is checked against the model; otherwise fixed-size nets get their
    ``input_size``, and data smaller than a net's ``min_size`` is enlarged to it
    (keeping the aspect ratio); data the net can take keeps its stored size.
    """
    if requested:
        height, width = requested
        info.check_input_size(height, width)
        return int(height), int(width)
    if info.fixed_size or data_size is None:
        return int(info.input_size[1]), int(info.input_size[2])
    height, width = data_size
    if info.min_size and min(height, width) < info.min_size:
        scale = info.min_size / min(height, width)
        return int(math.ceil(height * scale)), int(math.ceil(width * scale))
    return int(height), int(width)


def default_run_dir(model: str, data: str) -> Path:
    data_part = data.split(":", 1)[0]
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{model}-{data_part}-{stamp}"


def check_writable(run_dir: Path) -> None:
    """Create ``run_dir`` and write a probe file in it, or raise a one-line error."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"
        with open(probe, "wb") as handle:
            handle.write(b"ok")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise OutputDirError(f"cannot write to output directory {run_dir}: {reason}") from None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextmanager
def deterministic_mode(enabled: bool):
    """Deterministic kernels for the duration of the run (restored afterwards)."""
    if not enabled:
        yield
        return
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
    )
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.benchmark = previous[2]
        torch.backends.cudnn.deterministic = previous[3]


class StopSignal:
    """SIGINT / SIGTERM set a flag; training stops at the next step boundary.

    A second Ctrl-C raises ``KeyboardInterrupt`` at once (for a stuck run).
    """

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def _handler(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = name

    def __enter__(self) -> "StopSignal":
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def split_outputs(outputs) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """``(main, aux...)`` of a model with auxiliary classifiers, else ``(logits, ())``."""
    if isinstance(outputs, (tuple, list)):
        return outputs[0], tuple(outputs[1:])
    return outputs, ()


def compute_loss(outputs, labels: torch.Tensor, criterion: nn.Module, aux_weight: float):
    """``loss(main) + aux_weight * sum(loss(aux))`` and the main logits.

    Nets with auxiliary classifiers return ``(main, aux, ...)`` in training mode
    (GoogLeNet Section 5 weights each auxiliary loss by 0.3).
    """
    main, aux = split_outputs(outputs)
    loss = criterion(main.float(), labels)
    for extra in aux:
        loss = loss + aux_weight * criterion(extra.float(), labels)
    return loss, main


def autocast(device: torch.device, amp: str):
    if amp == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader,
    device: torch.device,
    num_classes: int,
    *,
    label_smoothing: float = 0.0,
    tta_flip: bool = False,
    amp: str = "none",
    channels_last: bool = False,
    confusion: bool = False,
) -> Meter:
    """Loss, top-1, top-5 (and optionally the confusion matrix) of ``model`` in eval mode.

    With ``tta_flip`` the softmax of each image and of its mirror image are averaged.
    """
    was_training = model.training
    model.eval()
    meter = Meter(num_classes, confusion=confusion)
    criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    try:
        for images, labels in loader:
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with autocast(device, amp):
                logits = split_outputs(model(images))[0].float()
                if tta_flip:
                    flipped = split_outputs(model(images.flip(3)))[0].float()
                    probs = (logits.softmax(1) + flipped.softmax(1)) / 2
                    logits = probs.clamp_min(1e-12).log()
            loss = criterion(logits, labels)
            meter.update(logits, labels, float(loss))
    finally:
        model.train(was_training)
    return meter


def _fmt_pct(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}%"


# ------------------------------------------------------------------------------------------
# fit
# ------------------------------------------------------------------------------------------


def fit(
    model: str | nn.Module,
    data: str | None = None,
    *,
    recipe: str | os.PathLike | None = None,
    verbose: bool = True,
    log: Callable[[str], None] | None = None,
    on_epoch_end: Callable[[dict[str, Any]], bool | None] | None = None,
    bundle=None,
    **overrides,
) -> FitResult:
    """Train ``model`` (a registered name, or a ready ``nn.Module``) on ``data``.

    ``recipe`` names a shipped recipe (``"fast"``, ``"resnet_cifar"``, ...) or a YAML file;
    every other keyword is a configuration key (see :class:`~cnnzoo.train.config.TrainConfig`)
    and wins over the recipe.  ``bundle`` is a data set already loaded (a
    :class:`~cnnzoo.data.DataBundle`, e.g. a class subset for transfer learning) to train on
    instead of loading ``data``, which then only names it in the run's configuration.
    ``on_epoch_end(row)`` is called on rank 0 with each epoch's
    metrics row; returning True stops the run there (resumably, status "stopped").  Returns a :class:`FitResult`; user mistakes raise
    :class:`~cnnzoo.errors.CnnzooError`, a diverging loss :class:`TrainingDiverged`.

    >>> result = fit("lenet5", data="fashion-mnist", epochs=1)     # doctest: +SKIP
    >>> result.test_top1, result.run_dir                             # doctest: +SKIP
    """
    module = model if isinstance(model, nn.Module) else None
    model_name = getattr(module, "model_name", type(module).__name__) if module is not None else str(model)
    explicit_overrides = dict(overrides)
    explicit_overrides["model"] = model_name
    if data is not None:
        explicit_overrides["data"] = data
    config, explicit = resolve(recipe, explicit_overrides)
    printer = log or (lambda text: print(text, flush=True))
    engine = _Engine(config, explicit, module, verbose, printer)
    engine.on_epoch_end = on_epoch_end
    engine.given_bundle = bundle
    return engine.run()


class _Engine:
    def __init__(self, config: TrainConfig, explicit: dict[str, Any], module: nn.Module | None,
                 verbose: bool, printer: Callable[[str], None]) -> None:
        self.config = config
        self.explicit = explicit
        self.given_module = module
        self.given_bundle = None  # a DataBundle handed to fit(), used instead of loading config.data
        self.verbose = verbose
        self._print = printer
        self.on_epoch_end: Callable[[dict[str, Any]], bool | None] | None = None

    def say(self, text: str) -> None:
        if self.verbose and self.dist.is_main:
            self._print(text)

    # -- setup ----------------------------------------------------------------------------
    def run(self) -> FitResult:
        config = self.config
        if self.given_module is None:  # an unknown name or a wrong --input-size fails before any work
            from cnnzoo.registry import model_info

            info = model_info(config.model)
            if config.input_size:
                info.check_input_size(*config.input_size)
        self.device = resolve_device(config.device)
        if config.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # noqa: F401
            except Exception:
                raise ConfigError("--tensorboard needs the tensorboard package (pip install tensorboard)") from None
        if config.compile and not hasattr(torch, "compile"):  # pragma: no cover - old torch
            raise ConfigError("--compile needs PyTorch 2")
        self.dist = dist_utils.setup(self.device.type)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        threads_before = torch.get_num_threads()
        if config.threads:
            torch.set_num_threads(config.threads)
        try:
            with deterministic_mode(config.deterministic), StopSignal() as stop:
                self.stop = stop
                return self._run()
        finally:
            torch.set_num_threads(threads_before)
            dist_utils.cleanup(self.dist)

    def _prepare_run_dir(self) -> None:
        config = self.config
        error = None
        run_dir = None
        if self.dist.is_main:
            try:
                run_dir = self._run_dir_checked()
            except CnnzooError as exc:
                error = (type(exc).__name__, str(exc))
        run_dir, error = dist_utils.broadcast_object(self.dist, (run_dir and str(run_dir), error))
        if error:
            raise OutputDirError(error[1]) if error[0] == "OutputDirError" else ConfigError(error[1])
        self.run_dir = Path(run_dir)
        config.out = str(self.run_dir)
        if config.resume:
            self._merge_saved_config()

    def _run_dir_checked(self) -> Path:
        config = self.config
        if config.resume:
            run_dir = Path(config.out) if config.out else self._latest_run()
            if not (run_dir / "last.state.pt").exists():
                raise ConfigError(f"--resume: no checkpoint in {run_dir} (looked for last.state.pt)")
        else:
            run_dir = Path(config.out) if config.out else default_run_dir(config.model, config.data)
            if (run_dir / "last.state.pt").exists() or (run_dir / "last.safetensors").exists():
                raise OutputDirError(
                    f"{run_dir} already holds a run: pass --resume to continue it, or choose another --out"
                )
        check_writable(run_dir)
        return run_dir

    def _latest_run(self) -> Path:
        data_part = self.config.data.split(":", 1)[0]
        candidates = sorted(Path("runs").glob(f"{self.config.model}-{data_part}-*"))
        candidates = [c for c in candidates if (c / "last.state.pt").exists()]
        if not candidates:
            raise ConfigError(
                f"--resume: no run of {self.config.model} on {data_part} under runs/; give its directory with --out"
            )
        return candidates[-1]

    def _merge_saved_config(self) -> None:
        saved = read_config(self.run_dir / "config.yaml")
        changed = differing_keys(saved, self.explicit)
        if saved.model != self.config.model:
            changed = sorted(set(changed) | {"model"})
        if changed:
            details = ", ".join(
                f"{k} ({getattr(saved, k)!r} -> {self.explicit.get(k, getattr(self.config, k))!r})" for k in changed
            )
            raise ConfigError(f"--resume with a changed configuration: {details}; start a new run instead")
        merged = to_dict(saved)
        # how this call runs (not what it trains) comes from this call, not the saved run
        merged.update(stop_after_epochs=None, progress=TrainConfig.progress, threads=None)
        for key, value in self.explicit.items():
            merged[key] = value
        merged.update(out=str(self.run_dir), resume=True)
        self.config = validate(TrainConfig(**merged))

    def _build(self) -> None:
        config = self.config
        from cnnzoo.registry import create_model, model_info

        self.bundle = self.given_bundle if self.given_bundle is not None else load_dataset(
            config.data, data_dir=config.data_dir, download=config.download, val_fraction=config.val_fraction,
            seed=config.seed, limit_train=config.limit_train, limit_val=config.limit_val,
            skip_bad_images=config.skip_bad_images,
        )
        bundle = self.bundle
        self.classes = list(bundle.classes)
        self.num_classes = len(self.classes)
        data_size = tuple(bundle.image_size) if bundle.image_size else None
        seed_everything(config.seed)
        if self.given_module is not None:
            self.input_size = tuple(config.input_size or data_size)
            model = self.given_module
        else:
            info = model_info(config.model)
            self.input_size = choose_input_size(info, data_size, config.input_size)
            model = create_model(config.model, num_classes=self.num_classes, in_chans=bundle.in_chans,
                                 **config.model_kwargs)  # fmt: skip
        model.to(self.device)
        if config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.raw_model = model
        self.optimizer = build_optimizer(model, config)

        augment = dict(getattr(bundle, "default_augment", {}) or {})
        if config.crop_padding is not None:
            augment["crop_padding"] = config.crop_padding
        if config.flip is not None:
            augment["flip"] = config.flip
        if config.random_erasing:
            augment["random_erasing"] = config.random_erasing
        self.augment = augment
        world = self.dist.world_size
        if config.batch_size % world:
            raise ConfigError(
                f"the batch size {config.batch_size} is global: it must divide evenly among {world} processes"
            )
        common = dict(device=self.device, input_size=self.input_size, mean=bundle.mean, std=bundle.std,
                      seed=config.seed)  # fmt: skip
        self.train_loader = make_loader(bundle.train, batch_size=config.batch_size // world, train=True,
                                        augment=augment, rank=self.dist.rank, world_size=world, **common)  # fmt: skip
        eval_batch = max(config.batch_size, 256)
        self.val_loader = (
            make_loader(bundle.val, batch_size=eval_batch, train=False, augment=None, **common)
            if bundle.val is not None and len(bundle.val) else None
        )
        self.test_loader = (
            make_loader(bundle.test, batch_size=eval_batch, train=False, augment=None, **common)
            if bundle.test is not None and len(bundle.test) else None
        )
        self.steps_per_epoch = len(self.train_loader)
        if self.steps_per_epoch == 0:
            raise ConfigError("the training split gives no batch: lower --batch-size or raise --limit-train")
        self.schedule = LRSchedule(self.optimizer, config, self.steps_per_epoch)
        train_model = model
        if config.compile:
            train_model = torch.compile(model)
        self.model = dist_utils.wrap_model(train_model, self.dist, self.device, config.sync_bn)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

    def _meta(self) -> dict[str, Any]:
        bundle = self.bundle
        return {
            "model": self.config.model,
            "data": bundle.name,
            "classes": self.classes,
            "num_classes": self.num_classes,
            "in_chans": int(bundle.in_chans),
            "data_size": list(bundle.image_size) if bundle.image_size else None,
            "input_size": list(self.input_size),
            "mean": [float(v) for v in bundle.mean],
            "std": [float(v) for v in bundle.std],
            "model_kwargs": self.config.model_kwargs,
        }

    # -- checkpoint state -----------------------------------------------------------------
    def _state(self, epoch: int, batch_in_epoch: int, partial: dict | None) -> dict[str, Any]:
        return {
            "epoch": epoch,
            "batch_in_epoch": batch_in_epoch,
            "step": self.step,
            "partial": partial or {},
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "rng": ckpt.rng_states(),
            "history": self.history,
            "best_val_top1": self.best_val_top1,
            "best_epoch": self.best_epoch,
            "config": to_dict(self.config),
            "meta": self._meta(),
        }

    def _save(self, tag: str, epoch: int, batch_in_epoch: int = 0, partial: dict | None = None) -> None:
        if self.dist.is_main:
            ckpt.save_checkpoint(self.run_dir, tag, self.raw_model, self._state(epoch, batch_in_epoch, partial))

    def _restore(self) -> None:
        tensors, state = ckpt.load_checkpoint(self.run_dir, "last")
        ckpt.load_model_weights(self.raw_model, tensors, f"checkpoint {self.run_dir / 'last.safetensors'}")
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.schedule.load_state_dict(state["schedule"])
        except (KeyError, ValueError) as exc:
            raise ckpt.CheckpointError(f"checkpoint state in {self.run_dir} does not fit this run: {exc}") from None
        self.history = list(state["history"])
        self.best_val_top1 = state["best_val_top1"]
        self.best_epoch = state["best_epoch"]
        self.step = int(state["step"])
        self.start_epoch = int(state["epoch"])
        self.skip_batches = int(state.get("batch_in_epoch", 0))
        self.partial = dict(state.get("partial") or {})
        ckpt.set_rng_states(state["rng"])

    # -- the loop -------------------------------------------------------------------------
    def _run(self) -> FitResult:
        self._prepare_run_dir()
        config = self.config
        self._build()
        config = self.config
        self.history: list[dict[str, Any]] = []
        self.best_val_top1: float | None = None
        self.best_epoch: int | None = None
        self.step = 0
        self.start_epoch = 0
        self.skip_batches = 0
        self.partial: dict[str, Any] = {}
        if config.resume:
            self._restore()
            self.say(f"resuming {self.run_dir} at epoch {self.start_epoch + 1}"
                     + (f", batch {self.skip_batches + 1}" if self.skip_batches else ""))  # fmt: skip
        if self.dist.is_main:
            save_config(config, self.run_dir / "config.yaml")
            ckpt.atomic_write_bytes(self.run_dir / "run.json", json.dumps(self._meta(), indent=2).encode())
        dist_utils.barrier(self.dist)
        self.writer = None
        if config.tensorboard and self.dist.is_main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / "tensorboard"))

        world = f" on {self.dist.world_size} processes ({self.dist.backend})" if self.dist.enabled else ""
        self.say(
            f"training {config.model} on {self.bundle.name} ({len(self.bundle.train)} train, "
            f"{len(self.bundle.val) if self.bundle.val is not None else 0} val, "
            f"{len(self.bundle.test) if self.bundle.test is not None else 0} test images, "
            f"input {self.input_size[0]}x{self.input_size[1]}x{self.bundle.in_chans}) on {self.device}{world}"
        )
        self.say(f"run directory: {self.run_dir}")
        status = "completed"
        epochs_this_call = 0
        try:
            for epoch in range(self.start_epoch, config.epochs):
                if config.max_steps and self.step >= config.max_steps:
                    break
                outcome = self._train_epoch(epoch)
                if outcome == "interrupted":
                    status = "interrupted"
                    break
                self._end_epoch(epoch)
                epochs_this_call += 1
                wants_stop = bool(self.on_epoch_end(self.history[-1])) if (
                    self.on_epoch_end is not None and self.dist.is_main) else False
                if dist_utils.broadcast_object(self.dist, wants_stop) and epoch + 1 < config.epochs:
                    status = "stopped"
                    self.say(f"stopped after epoch {epoch + 1} by on_epoch_end; continue with --resume")
                    break
                if config.stop_after_epochs and epochs_this_call >= config.stop_after_epochs \
                        and epoch + 1 < config.epochs and not (config.max_steps and self.step >= config.max_steps):
                    status = "stopped"
                    self.say(f"stopped after {epochs_this_call} epoch(s) as asked; continue with --resume "
                             f"--out {self.run_dir}")  # fmt: skip
                    break
        finally:
            if self.writer is not None:
                self.writer.close()
        result = FitResult(
            run_dir=self.run_dir, status=status, epochs_done=len(self.history), steps=self.step,
            best_epoch=self.best_epoch, best_val_top1=self.best_val_top1,
            val_top1=self.history[-1].get("val_top1") if self.history else None,
            history=self.history, config=self.config,
            signal=self.stop.received if status == "interrupted" else None,
        )  # fmt: skip
        if self.dist.is_main and self.history:
            from cnnzoo.train.plots import plot_curves

            plot_curves(self.history, self.run_dir / "curves.png", title=f"{config.model} on {self.bundle.name}")
        if status == "completed":
            self._finish(result)
        dist_utils.barrier(self.dist)
        return result

    def _train_epoch(self, epoch: int) -> str:
        config = self.config
        model = self.model
        model.train()
        loader = self.train_loader
        loader.set_epoch(epoch)
        skip = self.skip_batches
        self.skip_batches = 0
        part = self.partial
        self.partial = {}
        meter = Meter(self.num_classes)
        meter.loss_sum = part.get("loss_sum", 0.0)
        meter.top1 = part.get("top1", 0)
        meter.topk_hits = part.get("topk_hits", 0)
        meter.count = part.get("count", 0)
        seconds_before = part.get("seconds", 0.0)
        start = time.perf_counter()
        images_seen = 0
        bar = None
        if config.progress and self.verbose and self.dist.is_main:
            from tqdm import tqdm

            bar = tqdm(total=len(loader), initial=skip, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch",
                       dynamic_ncols=True, leave=False, file=sys.stderr)  # fmt: skip
        world = self.dist.world_size
        try:
            for index, (images, labels) in enumerate(loader):
                if index < skip:
                    continue
                if config.max_steps and self.step >= config.max_steps:
                    break
                images = images.to(self.device, non_blocking=True)
                labels = labels.to(self.device, non_blocking=True)
                if config.channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                with autocast(self.device, config.amp):
                    loss, main = compute_loss(model(images), labels, self.criterion, config.aux_weight)
                loss_value = float(loss.detach())
                stop_now = self.stop.received is not None
                nonfinite = not math.isfinite(loss_value)
                if self.dist.enabled:
                    flags = torch.tensor([float(stop_now), float(nonfinite)], device=self.device)
                    torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
                    stop_now, nonfinite = bool(flags[0] > 0), bool(flags[1] > 0)
                if nonfinite:
                    self._diverged(epoch, index, loss_value)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                self.optimizer.step()
                self.schedule.step()
                self.step += 1
                meter.update(main.detach().float(), labels, loss_value)
                images_seen += labels.shape[0] * world
                if stop_now:
                    # the step is complete: the checkpoint resumes at the next batch
                    partial = {"loss_sum": meter.loss_sum, "top1": meter.top1, "topk_hits": meter.topk_hits,
                               "count": meter.count, "seconds": seconds_before + time.perf_counter() - start}  # fmt: skip
                    self._save("last", epoch, index + 1, partial)
                    dist_utils.barrier(self.dist)
                    if bar is not None:
                        bar.close()
                        bar = None
                    signal_name = self.stop.received or "a signal on another rank"
                    self.say(f"{signal_name}: stopped at epoch {epoch + 1}, batch {index + 1}; checkpoint saved "
                             f"to {self.run_dir / 'last.safetensors'}; continue with --resume --out {self.run_dir}")
                    return "interrupted"
                if bar is not None:
                    bar.update(1)
                    if index % 5 == 0 or index == len(loader) - 1:
                        elapsed = max(time.perf_counter() - start, 1e-9)
                        bar.set_postfix_str(f"loss {meter.loss:.4f} acc {100 * meter.top1_acc:.1f}% "
                                            f"{images_seen / elapsed:.0f} img/s", refresh=False)  # fmt: skip
        finally:
            if bar is not None:
                bar.close()
        elapsed = time.perf_counter() - start
        self._epoch_train = {
            "train_loss": meter.loss,
            "train_top1": meter.top1_acc,
            "train_top5": meter.topk_acc,
            "images_per_s": images_seen / elapsed if elapsed > 0 else math.nan,
            "seconds": seconds_before + elapsed,
        }
        if self.dist.enabled:
            # every rank measured its own shard: average the training statistics
            keys = ("train_loss", "train_top1", "train_top5")
            values = torch.tensor([self._epoch_train[k] for k in keys], device=self.device, dtype=torch.float64)
            torch.distributed.all_reduce(values)
            for key, value in zip(keys, (values / world).tolist()):
                self._epoch_train[key] = value
        return "done"

    def _diverged(self, epoch: int, index: int, loss_value: float) -> None:
        where = f"epoch {epoch + 1}, batch {index + 1}"
        if (self.run_dir / "last.safetensors").exists():
            kept = f"the last good checkpoint {self.run_dir / 'last.safetensors'} (epoch {self.history[-1]['epoch']}) is kept" \
                if self.history else f"the last good checkpoint in {self.run_dir} is kept"
        else:
            kept = "no checkpoint had been written yet"
        raise TrainingDiverged(
            f"the loss became {loss_value} at {where}: training stopped; {kept} "
            f"(try a lower --lr or grad_clip)"
        )

    def _end_epoch(self, epoch: int) -> None:
        config = self.config
        row: dict[str, Any] = {"epoch": epoch + 1, "step": self.step, **self._epoch_train,
                               "lr": self.schedule.lr}  # fmt: skip
        val_top1 = None
        if self.dist.is_main:
            eval_model = ckpt.unwrap(self.model)
            if self.val_loader is not None:
                val = evaluate(eval_model, self.val_loader, self.device, self.num_classes,
                               tta_flip=config.tta_flip, amp=config.amp, channels_last=config.channels_last)  # fmt: skip
                row.update(val_loss=val.loss, val_top1=val.top1_acc, val_top5=val.topk_acc)
                val_top1 = val.top1_acc
            if config.test_every_epoch and self.test_loader is not None:
                test = evaluate(eval_model, self.test_loader, self.device, self.num_classes,
                                tta_flip=config.tta_flip, amp=config.amp, channels_last=config.channels_last)  # fmt: skip
                row.update(test_top1=test.top1_acc, test_top5=test.topk_acc)
        val_top1 = dist_utils.broadcast_object(self.dist, val_top1)
        self.schedule.epoch_end(val_top1)
        self.history.append(row)
        improved = val_top1 is not None and (self.best_val_top1 is None or val_top1 > self.best_val_top1)
        if val_top1 is None and self.val_loader is None:
            improved = True  # no validation split: the latest weights are the best we know
        if improved:
            self.best_val_top1 = val_top1
            self.best_epoch = epoch + 1
        if self.dist.is_main:
            write_metrics_csv(self.run_dir / "metrics.csv", self.history, extra=("test_top1", "test_top5")
                              if config.test_every_epoch else ())  # fmt: skip
            self._save("last", epoch + 1)
            if improved:
                self._save("best", epoch + 1)
            if self.writer is not None:
                for key in CSV_COLUMNS[2:]:
                    value = row.get(key)
                    if value is not None and not (isinstance(value, float) and math.isnan(value)):
                        self.writer.add_scalar(key, value, epoch + 1)
        dist_utils.barrier(self.dist)
        self.say(
            f"epoch {epoch + 1}/{config.epochs}  train loss {row['train_loss']:.4f} top-1 {_fmt_pct(row['train_top1'])}"
            f"  val loss {row.get('val_loss', math.nan):.4f} top-1 {_fmt_pct(row.get('val_top1'))}"
            + (f"  test top-1 {_fmt_pct(row.get('test_top1'))}" if "test_top1" in row else "")
            + f"  lr {row['lr']:.3g}  {row['images_per_s']:.0f} img/s  {row['seconds']:.1f} s"
        )

    def _finish(self, result: FitResult) -> None:
        config = self.config
        if not self.dist.is_main:
            return
        eval_model = ckpt.unwrap(self.model)
        if (self.run_dir / "best.safetensors").exists() and self.best_epoch is not None:
            tensors, _ = ckpt.load_checkpoint(self.run_dir, "best")
            ckpt.load_model_weights(eval_model, tensors, "best checkpoint")
        loader, split = (self.test_loader, "test") if self.test_loader is not None else (self.val_loader, "validation")
        if loader is None:
            return
        meter = evaluate(eval_model, loader, self.device, self.num_classes, tta_flip=config.tta_flip,
                         amp=config.amp, channels_last=config.channels_last, confusion=True)  # fmt: skip
        if split == "test":
            result.test_top1, result.test_top5 = meter.top1_acc, meter.topk_acc
        from cnnzoo.train.plots import plot_confusion

        plot_confusion(meter.confusion, self.classes, self.run_dir / "confusion.png",
                       title=f"{config.model} on {self.bundle.name}, {split} split")  # fmt: skip
        summary = {
            "split": split,
            "best_epoch": self.best_epoch,
            "best_val_top1": self.best_val_top1,
            "top1": meter.top1_acc,
            "top5": meter.topk_acc,
            "loss": meter.loss,
            "per_class_top1": dict(zip(self.classes, meter.per_class_accuracy())),
        }
        ckpt.atomic_write_bytes(self.run_dir / "results.json", json.dumps(summary, indent=2).encode())
        best = f" (epoch {self.best_epoch})" if self.best_epoch else ""
        self.say(f"best validation top-1: {_fmt_pct(self.best_val_top1)}{best}")
        self.say(f"{split} top-1: {_fmt_pct(meter.top1_acc)}  top-5: {_fmt_pct(meter.topk_acc)}  "
                 f"(weights of the best validation epoch)")  # fmt: skip
        self.say(f"run directory: {self.run_dir} (metrics.csv, curves.png, confusion.png, best/last checkpoints)")
