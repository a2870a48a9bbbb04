"""The training loop, and nothing else: everything around it is a callback.

:class:`Trainer` runs epochs of ``forward -> loss -> backward -> (clip) -> step -> schedule``
and measures the validation split after each.  What happens around that is a
:class:`~cnnzoo.train.callbacks.Callback`: checkpoints and resume, signals, ``metrics.csv``,
TensorBoard, the progress bar, the per-epoch line, plots and the final test.  A new way of
training plugs in as

* a **loss**: ``loss(outputs, labels, images) -> (loss, main_logits)`` (distillation reads a
  teacher's outputs for ``images``);
* a **callback**: any object with some of the ``on_*`` methods below (a pruning schedule, a
  quantization-aware step, a search trial that stops early);
* a **model transform**, applied before the trainer sees the model
  (:class:`~cnnzoo.modelspec.ModelSpec`).

A non-finite loss stops before it touches the weights (:class:`TrainingDiverged`).
"""

from __future__ import annotations

import math
import signal
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from cnnzoo.errors import CnnzooError
from cnnzoo.train import distributed as dist_utils
from cnnzoo.train.metrics import Meter


class TrainingDiverged(CnnzooError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""

    exit_code = 3

    def __init__(self, epoch: int, batch: int, step: int, loss: float, kept: str = "") -> None:
        self.epoch, self.batch, self.step, self.loss = epoch, batch, step, loss
        super().__init__(f"the loss became {loss} at epoch {epoch}, batch {batch} (step {step}): training stopped; "
                         f"{kept or 'no checkpoint had been written yet'} (try a lower --lr or grad_clip)")  # fmt: skip


@dataclass
class FitResult:
    """What a training returns."""

    run_dir: Path | None
    #: "completed", "stopped" (a callback or ``stop_after_epochs``) or "interrupted" (SIGINT/SIGTERM)
    status: str
    epochs_done: int
    steps: int
    best_epoch: int | None = None
    best_val_top1: float | None = None
    val_top1: float | None = None
    test_top1: float | None = None
    test_top5: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    config: Any = None
    #: the signal that interrupted the run, or came after its last step ("SIGINT" or "SIGTERM")
    signal: str | None = None

    @property
    def exit_code(self) -> int:
        """0 when completed or stopped as asked; 128 + the signal's number when a signal came."""
        if self.status != "interrupted" and self.signal is None:
            return 0
        try:
            return 128 + int(signal.Signals[self.signal])
        except (KeyError, TypeError):
            return 130


class Callback:
    """Hooks around the loop; each gets the :class:`Trainer`.  Override the ones you need."""

    def on_fit_start(self, trainer: "Trainer") -> None: ...

    def on_epoch_start(self, trainer: "Trainer", epoch: int) -> None: ...

    def on_step_end(self, trainer: "Trainer", batch: int, loss: float) -> None: ...

    def on_epoch_end(self, trainer: "Trainer", row: dict[str, Any]) -> None: ...

    def on_interrupt(self, trainer: "Trainer", epoch: int, batch: int) -> None: ...

    def on_fit_end(self, trainer: "Trainer", result: FitResult) -> None: ...

    def teardown(self, trainer: "Trainer") -> None:
        """Called last, also when the run fails."""


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


class CrossEntropy:
    """The default loss: cross-entropy with label smoothing, plus the weighted auxiliary losses."""

    def __init__(self, label_smoothing: float = 0.0, aux_weight: float = 0.3) -> None:
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.aux_weight = aux_weight

    def __call__(self, outputs, labels: torch.Tensor, images: torch.Tensor):
        return compute_loss(outputs, labels, self.criterion, self.aux_weight)


def autocast(device: torch.device, amp: str):
    if amp == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: torch.device, num_classes: int, *, label_smoothing: float = 0.0,
             tta_flip: bool = False, amp: str = "none", channels_last: bool = False,
             confusion: bool = False) -> Meter:  # fmt: skip
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
            meter.update(logits, labels, float(criterion(logits, labels)))
    finally:
        model.train(was_training)
    return meter


class Trainer:
    """Trains ``model``; see the module docstring.  ``train_model`` is what runs the steps
    (the model itself, or its DistributedDataParallel / torch.compile wrapper)."""

    def __init__(self, *, model: nn.Module, optimizer, schedule, train_loader, val_loader=None, config,
                 device: torch.device, num_classes: int, loss: Callable | None = None,
                 callbacks: Sequence[Callback] = (), train_model: nn.Module | None = None,
                 dist=None, run=None) -> None:  # fmt: skip
        self.model = model
        self.train_model = train_model or model
        self.optimizer = optimizer
        self.schedule = schedule
        self.train_loader = train_loader
        self.val_loader = val_loader
        self.config = config
        self.device = device
        self.num_classes = num_classes
        self.loss = loss or CrossEntropy(config.label_smoothing, config.aux_weight)
        self.callbacks = list(callbacks)
        self.dist = dist or dist_utils.DistInfo()
        #: the :class:`~cnnzoo.rundir.RunDir` (None: nothing is written)
        self.run = run
        # progress, saved in checkpoints (state_dict)
        self.epoch = 0
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.best_val_top1: float | None = None
        self.best_epoch: int | None = None
        #: set by a resumed checkpoint taken mid-epoch: batches to skip, the epoch's partial sums
        self.skip_batches = 0
        self.partial: dict[str, Any] = {}
        # set during the run
        self.meter: Meter | None = None
        self.improved = False
        #: the signal's name once SIGINT/SIGTERM arrived (the Signals callback sets it)
        self.interrupt: str | None = None
        self._stop_reason: str | None = None
        self._stop_now = False  # a signal reached every rank during the last step

    @property
    def is_main(self) -> bool:
        return self.dist.is_main

    def request_stop(self, reason: str) -> None:
        """End the run (resumably) after the current epoch."""
        self._stop_reason = reason

    def _call(self, hook: str, *args) -> None:
        for callback in self.callbacks:
            method = getattr(callback, hook, None)
            if method is not None:
                method(self, *args)

    # -- the run --------------------------------------------------------------------------
    def fit(self) -> FitResult:
        status = "completed"
        try:
            self._call("on_fit_start")
            for epoch in range(self.epoch, self.config.epochs):
                if self._steps_done():
                    break
                self.epoch = epoch
                if not self.train_epoch(epoch):
                    status = "interrupted"
                    break
                self._end_epoch(epoch)
                stop = dist_utils.broadcast_object(self.dist, self._stop_reason)
                if stop and epoch + 1 < self.config.epochs and not self._steps_done():
                    status = "stopped"
                    self._stop_reason = stop
                    break
            result = self.result(status)
            self._call("on_fit_end", result)
            result.signal = self.interrupt  # also one that came after the last step (during the final test)
            return result
        finally:
            self._call("teardown")

    def result(self, status: str) -> FitResult:
        return FitResult(
            run_dir=self.run.path if self.run is not None else None, status=status, epochs_done=len(self.history),
            steps=self.step, best_epoch=self.best_epoch, best_val_top1=self.best_val_top1,
            val_top1=self.history[-1].get("val_top1") if self.history else None, history=self.history,
            config=self.config, signal=self.interrupt,
        )  # fmt: skip

    @property
    def stop_reason(self) -> str | None:
        return self._stop_reason

    def _steps_done(self) -> bool:
        return bool(self.config.max_steps and self.step >= self.config.max_steps)

    def train_epoch(self, epoch: int) -> bool:
        """One pass over the training split; False when a signal stopped it (after a complete step)."""
        self.train_model.train()
        self.train_loader.set_epoch(epoch)
        skip, part = self.skip_batches, self.partial
        self.skip_batches, self.partial = 0, {}
        self.first_batch = skip
        meter = self.meter = Meter(self.num_classes)
        meter.loss_sum, meter.top1 = part.get("loss_sum", 0.0), part.get("top1", 0)
        meter.topk_hits, meter.count = part.get("topk_hits", 0), part.get("count", 0)
        self.epoch_seconds_before = part.get("seconds", 0.0)
        self.epoch_start = time.perf_counter()
        self.images_seen = 0
        self._call("on_epoch_start", epoch)
        for index, (images, labels) in enumerate(self.train_loader):
            if index < skip:
                continue
            if self._steps_done():
                break
            loss_value = self.train_step(epoch, index, images, labels)
            self._call("on_step_end", index, loss_value)
            if self._stop_now:
                self._call("on_interrupt", epoch, index + 1)
                return False
        self.epoch_train = self._epoch_statistics()
        return True

    def train_step(self, epoch: int, index: int, images: torch.Tensor, labels: torch.Tensor) -> float:
        config = self.config
        images = images.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        if config.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, config.amp):
            loss, main = self.loss(self.train_model(images), labels, images)
        loss_value = float(loss.detach())
        stop_now, nonfinite = self.interrupt is not None, not math.isfinite(loss_value)
        if self.dist.enabled:  # every rank stops, or diverges, together
            flags = torch.tensor([float(stop_now), float(nonfinite)], device=self.device)
            torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
            stop_now, nonfinite = bool(flags[0] > 0), bool(flags[1] > 0)
        if nonfinite:
            raise TrainingDiverged(epoch + 1, index + 1, self.step + 1, loss_value, self._kept())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.train_model.parameters(), config.grad_clip)
        self.optimizer.step()
        self.schedule.step()
        self.step += 1
        self.meter.update(main.detach().float(), labels, loss_value)
        self.images_seen += labels.shape[0] * self.dist.world_size
        self._stop_now = stop_now
        return loss_value

    def _kept(self) -> str:
        if self.run is not None and self.run.has_checkpoint():
            epoch = f" (epoch {self.history[-1]['epoch']})" if self.history else ""
            return f"the last good checkpoint {self.run / 'last.safetensors'}{epoch} is kept"
        return ""

    def partial_state(self) -> dict[str, Any]:
        """The running epoch's sums, for a checkpoint taken mid-epoch."""
        m = self.meter
        return {"loss_sum": m.loss_sum, "top1": m.top1, "topk_hits": m.topk_hits, "count": m.count,
                "seconds": self.epoch_seconds_before + time.perf_counter() - self.epoch_start}  # fmt: skip

    def _epoch_statistics(self) -> dict[str, float]:
        elapsed = time.perf_counter() - self.epoch_start
        meter = self.meter
        stats = {"train_loss": meter.loss, "train_top1": meter.top1_acc, "train_top5": meter.topk_acc,
                 "images_per_s": self.images_seen / elapsed if elapsed > 0 else math.nan,
                 "seconds": self.epoch_seconds_before + elapsed}  # fmt: skip
        if self.dist.enabled:  # every rank measured its own shard: average the training statistics
            keys = ("train_loss", "train_top1", "train_top5")
            values = torch.tensor([stats[k] for k in keys], device=self.device, dtype=torch.float64)
            torch.distributed.all_reduce(values)
            stats.update(zip(keys, (values / self.dist.world_size).tolist()))
        return stats

    def evaluate(self, loader, confusion: bool = False) -> Meter:
        """``loader`` through the plain model in eval mode, with the run's TTA and precision."""
        from cnnzoo.train.checkpoint import unwrap

        c = self.config
        return evaluate(unwrap(self.model), loader, self.device, self.num_classes, tta_flip=c.tta_flip, amp=c.amp,
                        channels_last=c.channels_last, confusion=confusion)  # fmt: skip

    def _end_epoch(self, epoch: int) -> None:
        row: dict[str, Any] = {"epoch": epoch + 1, "step": self.step, **self.epoch_train, "lr": self.schedule.lr}
        val_top1 = None
        if self.is_main and self.val_loader is not None:
            val = self.evaluate(self.val_loader)
            row.update(val_loss=val.loss, val_top1=val.top1_acc, val_top5=val.topk_acc)
            val_top1 = val.top1_acc
        val_top1 = dist_utils.broadcast_object(self.dist, val_top1)
        self.schedule.epoch_end(val_top1)
        self.history.append(row)
        if self.val_loader is None:
            self.improved = True  # no validation split: the latest weights are the best we know
        else:
            self.improved = val_top1 is not None and (self.best_val_top1 is None or val_top1 > self.best_val_top1)
        if self.improved:
            self.best_val_top1, self.best_epoch = val_top1, epoch + 1
        self.epoch = epoch + 1  # a checkpoint taken now resumes at the next epoch
        self._call("on_epoch_end", row)
        dist_utils.barrier(self.dist)

    # -- checkpoint state -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything but the weights needed to continue exactly (plain values and tensors only)."""
        from cnnzoo.train import checkpoint as ckpt

        return {"epoch": self.epoch, "step": self.step, "optimizer": self.optimizer.state_dict(),
                "schedule": self.schedule.state_dict(), "rng": ckpt.rng_states(), "history": self.history,
                "best_val_top1": self.best_val_top1, "best_epoch": self.best_epoch}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from cnnzoo.train import checkpoint as ckpt

        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.schedule.load_state_dict(state["schedule"])
        except (KeyError, ValueError) as exc:
            raise ckpt.CheckpointError(f"checkpoint state does not fit this run: {exc}") from None
        self.history = list(state["history"])
        self.best_val_top1, self.best_epoch = state["best_val_top1"], state["best_epoch"]
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.skip_batches = int(state.get("batch_in_epoch", 0))
        self.partial = dict(state.get("partial") or {})
        ckpt.set_rng_states(state["rng"])
