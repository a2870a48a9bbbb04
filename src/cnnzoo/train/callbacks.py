"""What happens around the training loop, one callback each.

The standard set (:func:`standard_callbacks`), in the order they run:

* :class:`Signals`: SIGINT/SIGTERM set ``trainer.interrupt``; the loop stops after the
  current step (a second Ctrl-C raises ``KeyboardInterrupt`` at once);
* :class:`Checkpoints`: resume from ``last`` on start, ``last`` after every epoch and on a
  signal (mid-epoch, resumable at the next batch), ``best`` when validation top-1 improved;
* :class:`MetricsCSV`: one row per epoch in ``metrics.csv``;
* :class:`TensorBoard`: the same numbers as event files (``--tensorboard``);
* :class:`ProgressBar`: a tqdm bar on a terminal only; :class:`EpochLog`: one line per epoch;
* :class:`StopAfterEpochs` (``stop_after_epochs``) and :class:`EpochEndHook` (a function that
  may ask to stop);
* :class:`Plots`: ``curves.png``; :class:`FinalTest`: the test split with the best weights,
  ``confusion.png`` and ``results.json`` (written last: a run with it has finished).

Callbacks that write run on rank 0 only.
"""

from __future__ import annotations

import json
import math
import shlex
import signal
import sys
import threading
from typing import Any, Callable

from cnnzoo.train import checkpoint as ckpt
from cnnzoo.train.metrics import CSV_COLUMNS, write_metrics_csv
from cnnzoo.train.trainer import Callback, FitResult, Trainer


def _pct(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}%"


class Signals(Callback):
    def __init__(self) -> None:
        self._previous: dict[int, Any] = {}

    def on_fit_start(self, trainer: Trainer) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def handler(signum, frame):
            if trainer.interrupt is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt
            trainer.interrupt = signal.Signals(signum).name

        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, handler)

    def teardown(self, trainer: Trainer) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}


class Checkpoints(Callback):
    """``last`` / ``best`` checkpoints in the run directory (atomic; see :mod:`cnnzoo.train.checkpoint`)."""

    def __init__(self, record: Callable[[], dict[str, Any]], log: Callable[[str], None]) -> None:
        self.record = record  # the run's description, stored with every checkpoint
        self.log = log

    def on_fit_start(self, trainer: Trainer) -> None:
        run = trainer.run
        if not (run.resuming and run.has_checkpoint()):
            return
        tensors, state = ckpt.load_checkpoint(run.path, "last")
        ckpt.load_model_weights(trainer.model, tensors, f"checkpoint {run / 'last.safetensors'}")
        trainer.load_state_dict(state)
        where = f", batch {trainer.skip_batches + 1}" if trainer.skip_batches else ""
        self.log(f"resuming {run} at epoch {trainer.epoch + 1}{where}")

    def save(self, trainer: Trainer, tag: str, batch_in_epoch: int = 0, partial: dict | None = None) -> None:
        if trainer.is_main:
            state = {**trainer.state_dict(), "batch_in_epoch": batch_in_epoch, "partial": partial or {},
                     **self.record()}  # fmt: skip
            ckpt.save_checkpoint(trainer.run.path, tag, trainer.model, state)

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        self.save(trainer, "last")
        if trainer.improved:
            self.save(trainer, "best")

    def on_interrupt(self, trainer: Trainer, epoch: int, batch: int) -> None:
        # the step is complete: the checkpoint resumes at the next batch
        self.save(trainer, "last", batch, trainer.partial_state())
        from cnnzoo.train import distributed as dist_utils

        dist_utils.barrier(trainer.dist)
        name = trainer.interrupt or "a signal on another rank"
        self.log(f"{name}: stopped at epoch {epoch + 1}, batch {batch}; checkpoint saved to "
                 f"{trainer.run / 'last.safetensors'}; continue with the same command and: "
                 f"{resume_arguments(trainer)}")  # fmt: skip


def resume_arguments(trainer: Trainer) -> str:
    """What continues the run after the command's name (train, finetune, distill ...): the model,
    its ``-o`` options (which ``--resume`` would also take from the run's config.yaml) and the run."""
    if getattr(trainer.run, "kind", "").startswith("deep-compress-"):  # a stage in DIR/prune or DIR/share: resume DIR
        return f"--resume --out {shlex.quote(str(trainer.run.path.parent))}"
    resume = f"--resume --out {shlex.quote(str(trainer.run))}"
    model = trainer.config.model
    if not isinstance(model, str):  # a module handed to fit(): no command line rebuilds it
        return resume
    # a string as it is, anything else as JSON (true, 3, [1, 2]), which -o reads back
    options = "".join(f" -o {shlex.quote(f'{key}={value if isinstance(value, str) else json.dumps(value)}')}"
                      for key, value in (trainer.config.model_kwargs or {}).items())
    return f"{model}{options} {resume}"


class MetricsCSV(Callback):
    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        if trainer.is_main:
            extra = ("test_top1", "test_top5") if trainer.config.test_every_epoch else ()
            write_metrics_csv(trainer.run / "metrics.csv", trainer.history, extra=extra)


class TestEveryEpoch(Callback):
    """``test_every_epoch``: the test split's top-1/top-5 in each row (time-to-accuracy curves only)."""

    def __init__(self, test_loader) -> None:
        self.test_loader = test_loader

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        if trainer.is_main and self.test_loader is not None:
            test = trainer.evaluate(self.test_loader)
            row.update(test_top1=test.top1_acc, test_top5=test.topk_acc)


class TensorBoard(Callback):
    """Every ``metrics.csv`` number as a scalar in ``RUN_DIR/tensorboard``."""

    def __init__(self) -> None:
        self.writer = None

    def on_fit_start(self, trainer: Trainer) -> None:
        if trainer.is_main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(trainer.run / "tensorboard"))

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        if self.writer is None:
            return
        for key in (*CSV_COLUMNS[2:], "test_top1", "test_top5"):
            value = row.get(key)
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                self.writer.add_scalar(key, value, row["epoch"])
        self.writer.flush()

    def teardown(self, trainer: Trainer) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class ProgressBar(Callback):
    """A tqdm bar per epoch, only when standard error is a terminal (logs get one line per epoch)."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.bar = None

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        if not trainer.is_main or not _is_terminal(self.stream):
            return
        from tqdm import tqdm

        self.bar = tqdm(total=len(trainer.train_loader), initial=trainer.first_batch, unit="batch",
                        desc=f"epoch {epoch + 1}/{trainer.config.epochs}", dynamic_ncols=True, leave=False,
                        file=self.stream)  # fmt: skip

    def on_step_end(self, trainer: Trainer, batch: int, loss: float) -> None:
        if self.bar is None:
            return
        self.bar.update(1)
        if batch % 5 == 0:
            self.bar.set_postfix_str(f"loss {trainer.meter.loss:.4f} acc {100 * trainer.meter.top1_acc:.1f}%",
                                     refresh=False)  # fmt: skip

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        self.teardown(trainer)

    def on_interrupt(self, trainer: Trainer, epoch: int, batch: int) -> None:
        self.teardown(trainer)

    def teardown(self, trainer: Trainer) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class EpochLog(Callback):
    def __init__(self, log: Callable[[str], None]) -> None:
        self.log = log

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        if not trainer.is_main:
            return
        test = f"  test top-1 {_pct(row.get('test_top1'))}" if "test_top1" in row else ""
        self.log(f"epoch {row['epoch']}/{trainer.config.epochs}  train loss {row['train_loss']:.4f} top-1 "
                 f"{_pct(row['train_top1'])}  val loss {row.get('val_loss', math.nan):.4f} top-1 "
                 f"{_pct(row.get('val_top1'))}{test}  lr {row['lr']:.3g}  {row['images_per_s']:.0f} img/s  "
                 f"{row['seconds']:.1f} s")  # fmt: skip


class StopAfterEpochs(Callback):
    """``stop_after_epochs``: end this call (resumably) after N epochs."""

    def __init__(self, epochs: int, log: Callable[[str], None]) -> None:
        self.epochs, self.done, self.log = epochs, 0, log

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        self.done += 1
        if self.done >= self.epochs and row["epoch"] < trainer.config.epochs:
            trainer.request_stop(f"stopped after {self.done} epoch(s) as asked; continue with the same command "
                                 f"and: {resume_arguments(trainer)}")  # fmt: skip

    def on_fit_end(self, trainer: Trainer, result: FitResult) -> None:
        if result.status == "stopped" and trainer.stop_reason:
            self.log(trainer.stop_reason)


class EpochEndHook(Callback):
    """``fn(row) -> bool``: called on rank 0 after every epoch; True stops the run there (resumably)."""

    def __init__(self, fn: Callable[[dict[str, Any]], bool | None], log: Callable[[str], None]) -> None:
        self.fn, self.log = fn, log

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        if trainer.is_main and self.fn(row):
            trainer.request_stop("stopped by on_epoch_end; continue with --resume")

    def on_fit_end(self, trainer: Trainer, result: FitResult) -> None:
        if result.status == "stopped" and trainer.stop_reason and "on_epoch_end" in trainer.stop_reason:
            self.log(trainer.stop_reason)


class Plots(Callback):
    def __init__(self, title: str) -> None:
        self.title = title

    def on_fit_end(self, trainer: Trainer, result: FitResult) -> None:
        if trainer.is_main and trainer.history:
            from cnnzoo.train.plots import plot_curves

            plot_curves(trainer.history, trainer.run / "curves.png", title=self.title)


class FinalTest(Callback):
    """After a completed run: the test split (the validation split without one) with the best weights."""

    def __init__(self, test_loader, classes: list[str], title: str, log: Callable[[str], None]) -> None:
        self.test_loader, self.classes, self.title, self.log = test_loader, classes, title, log

    def on_fit_end(self, trainer: Trainer, result: FitResult) -> None:
        if result.status != "completed" or not trainer.is_main:
            return
        run = trainer.run
        if run.has_checkpoint("best") and trainer.best_epoch is not None:
            tensors, _ = ckpt.load_checkpoint(run.path, "best")
            ckpt.load_model_weights(trainer.model, tensors, "best checkpoint")
        loader, split = (self.test_loader, "test") if self.test_loader is not None else (trainer.val_loader, "validation")
        if loader is None:
            return
        meter = trainer.evaluate(loader, confusion=True)
        if split == "test":
            result.test_top1, result.test_top5 = meter.top1_acc, meter.topk_acc
        if trainer.config.plots:
            from cnnzoo.train.plots import plot_confusion

            plot_confusion(meter.confusion, self.classes, run / "confusion.png", title=f"{self.title}, {split} split")
        run.write_json("results.json", {
            "split": split, "best_epoch": trainer.best_epoch, "best_val_top1": trainer.best_val_top1,
            "top1": meter.top1_acc, "top5": meter.topk_acc, "loss": meter.loss, "tta_flip": trainer.config.tta_flip,
            "per_class_top1": dict(zip(self.classes, meter.per_class_accuracy())),
        })  # fmt: skip
        best = f" (epoch {trainer.best_epoch})" if trainer.best_epoch else ""
        self.log(f"best validation top-1: {_pct(trainer.best_val_top1)}{best}")
        self.log(f"{split} top-1: {_pct(meter.top1_acc)}  top-5: {_pct(meter.topk_acc)}  "
                 "(weights of the best validation epoch)")  # fmt: skip
        self.log(f"run directory: {run} (metrics.csv, curves.png, confusion.png, best/last checkpoints)")
