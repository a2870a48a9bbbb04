"""Knowledge distillation (Hinton, Vinyals and Dean 2015): a student learns its teachers' soft targets.

Distillation is a *loss* for the one trainer, not a second loop: :class:`DistillationLoss` is
``loss(outputs, labels, images) -> (loss, main_logits)`` and :func:`distill` hands it to
:func:`cnnzoo.train.fit`, so the student's run directory is an ordinary run (``load_run``,
``cnnzoo eval``, ``summary``, ``bench``, ``export``, ``--resume`` all work on it).

The loss, for a batch of student logits ``z``, labels ``y`` and temperature ``T``::

    p      = mean over teachers of softmax(v_k / T)          the soft targets (below)
    soft   = T^2 * KL(p || softmax(z / T))                   Sec. 2: the soft gradients scale as 1/T^2
    hard   = cross_entropy(z, y)                             at T = 1, with the run's label smoothing
    loss   = alpha * soft + (1 - alpha) * hard

* **The T^2 factor** (Sec. 2): the gradient of the soft cross-entropy with respect to a student
  logit is ``(q_i - p_i) / T`` (Sec. 2.1, eq. 2), and for high T about ``(z_i - v_i) / (N T^2)``
  (eq. 4), so multiplying by T^2 keeps the soft and hard terms' relative weight when T changes.
  KL and the soft cross-entropy differ by the teachers' entropy, a constant for the student: the
  gradients are the same, and KL is 0 when the student matches, which makes the logged loss
  readable.
* **An ensemble** (Sec. 1: "an arithmetic or geometric mean of their individual predictive
  distributions"): the *arithmetic* mean of the teachers' softened distributions, each taken at
  temperature T before averaging.  It is the distribution the ensemble predicts (the abstract's
  "average their predictions"; Sec. 4 distils exactly such an averaged ensemble of 10 acoustic
  models), and it keeps probability on a class that any one teacher finds plausible, where a
  geometric mean lets the most confident teacher veto it: those small probabilities of wrong
  classes are the "dark knowledge" distillation transfers.
* **Teachers** run in eval mode (batch norm with its running statistics, no dropout) under
  ``torch.no_grad``, their parameters frozen; they follow the student's device, memory layout
  and autocast precision.  Auxiliary heads of the student (GoogLeNet, Inception v3) learn from
  the labels only, as in plain training; the soft term reads the main logits.
* **Another input format**: a teacher trained at another input size or normalisation (its
  ``run.json`` records ``input_size``, ``mean``, ``std``) gets the student's batch brought back
  to pixels at the stored image size and made again the way its own run made its inputs, by the
  data pipeline's :class:`~cnnzoo.data.transform.BatchTransform`: a ResNet-56 trained on 28x28
  Fashion-MNIST teaches a LeNet-5 whose 32x32 input is the padded image, and both see the same
  augmented image.

"Few labels" (Sec. 6, soft targets as regularisers: 3% of the speech data, hard targets overfit
and soft targets keep most of the accuracy) is a small training subset, ``--limit-train``, used by
both terms.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cnnzoo.errors import CnnzooError, ConfigError
from cnnzoo.train.trainer import CrossEntropy, split_outputs

__all__ = ["DistillationLoss", "InputFormat", "Teacher", "check_distill_settings", "distill", "distill_command"]


# ------------------------------------------------------------------------------------------
# how a net's input batches are made
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputFormat:
    """How a net's input batches were made from the stored images (a run's ``run.json`` records it).

    ``data_size`` is the stored image size ``(H, W)`` (None when unknown, e.g. image folders):
    the batch pipeline padded or resized it to ``input_size`` and normalised with ``mean``/``std``
    (per channel, in [0, 1] units).
    """

    input_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    data_size: tuple[int, int] | None = None

    @classmethod
    def of_record(cls, meta: dict[str, Any]) -> "InputFormat":
        data_size = meta.get("data_size")
        return cls(input_size=tuple(int(v) for v in meta["input_size"]), mean=tuple(float(v) for v in meta["mean"]),
                   std=tuple(float(v) for v in meta["std"]),
                   data_size=tuple(int(v) for v in data_size) if data_size else None)  # fmt: skip

    def same_normalisation(self, other: "InputFormat") -> bool:
        mine, theirs = (*self.mean, *self.std), (*other.mean, *other.std)
        return len(self.mean) == len(other.mean) and all(
            math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-7) for a, b in zip(mine, theirs))

    def same_input(self, other: "InputFormat") -> bool:
        """The same tensors come out of both (size and normalisation agree)."""
        return tuple(self.input_size) == tuple(other.input_size) and self.same_normalisation(other)


def _fit_transform(src_size, fmt: InputFormat, in_chans: int, device):
    """The pipeline's un-augmented transform from stored pixels at ``src_size`` to ``fmt``'s input."""
    from cnnzoo.data.pipeline import resolve_augment
    from cnnzoo.data.transform import BatchTransform

    return BatchTransform(tuple(src_size), tuple(fmt.input_size), fmt.mean, fmt.std, resolve_augment(None, train=False),
                          in_chans=in_chans, device=device)  # fmt: skip


class _BatchAdapter:
    """The student's batch as the teacher's own run would have made it (see the module docstring).

    The student's normalisation is undone (back to 0..255 pixels), then its size fitting: a
    padded batch is cropped back to the stored size, a resized one resized back (the pipeline's
    own rule, :class:`BatchTransform`, says which it was).  The teacher's transform then pads or
    resizes and normalises from there.  Without a stored size the student's input is the source.
    """

    def __init__(self, student: InputFormat, teacher: InputFormat, in_chans: int, device) -> None:
        self.student, self.teacher = student, teacher
        self.identity = student.same_input(teacher)
        if self.identity:
            return
        self.in_chans = in_chans
        shape = (1, in_chans, 1, 1)
        self.std = torch.tensor(student.std, dtype=torch.float32, device=device).view(shape) * 255.0
        self.mean = torch.tensor(student.mean, dtype=torch.float32, device=device).view(shape) * 255.0
        source = student.data_size or student.input_size
        self.undo = "none"
        if student.data_size and tuple(student.data_size) != tuple(student.input_size):
            self.undo = _fit_transform(student.data_size, student, in_chans, "cpu").mode  # "pad" or "bilinear"
        self.source = tuple(source)
        self.fit = _fit_transform(self.source, teacher, in_chans, device)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self.identity:
            return images
        # the stored images are uint8: rounding gives back exactly what was padded (erased areas, at the
        # data's mean, move by less than half a level)
        pixels = torch.addcmul(self.mean, images.float(), self.std).round_().clamp_(0, 255)
        (sh, sw), (ih, iw) = self.source, tuple(pixels.shape[2:])
        if self.undo == "pad":  # the pipeline centres the stored image: top/left get the smaller half
            top, left = (ih - sh) // 2, (iw - sw) // 2
            pixels = pixels[:, :, top:top + sh, left:left + sw]
        elif self.undo == "bilinear":
            # no antialiasing: an image enlarged from the stored size holds nothing finer than that size to
            # alias, and point sampling undoes a bilinear enlargement more closely than a wider filter
            pixels = F.interpolate(pixels, size=(sh, sw), mode="bilinear", align_corners=False)
        return self.fit(pixels)


# ------------------------------------------------------------------------------------------
# the loss
# ------------------------------------------------------------------------------------------


@dataclass
class Teacher:
    """A trained net that gives soft targets, and how its inputs were made (None: like the student's)."""

    model: nn.Module
    input_format: InputFormat | None = None
    name: str = "teacher"

    @classmethod
    def of_run(cls, run) -> "Teacher":
        """A :class:`~cnnzoo.train.runs.LoadedRun`'s model with the input format its ``run.json`` records."""
        return cls(run.model, InputFormat.of_record(run.meta), str(run.run_dir))


def check_distill_settings(temperature: float, alpha: float) -> None:
    """A one-line :class:`ConfigError` for a temperature <= 0 or an alpha outside [0, 1]."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not math.isfinite(temperature) \
            or temperature <= 0:  # fmt: skip
        raise ConfigError(f"--temperature must be a number > 0, got {temperature}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"--alpha must be in [0, 1] (the soft term's weight), got {alpha}")


class DistillationLoss:
    """``alpha * T^2 * KL(p_teachers^T || p_student^T) + (1 - alpha) * CE(student, labels)``; see the module docstring.

    ``teachers``: nets (``nn.Module``), :class:`Teacher` objects or ``LoadedRun`` s.
    ``student_format`` says how the student's batches are made; a teacher whose
    ``input_format`` differs gets the batch adapted (both must be known for that; otherwise
    the teacher sees the student's batch as it is).  ``label_smoothing`` and ``aux_weight``
    shape the hard term as in plain training.
    """

    def __init__(self, teachers: Sequence[nn.Module | Teacher | Any], temperature: float = 4.0, alpha: float = 0.9, *,
                 label_smoothing: float = 0.0, aux_weight: float = 0.3,
                 student_format: InputFormat | None = None) -> None:  # fmt: skip
        check_distill_settings(temperature, alpha)
        self.teachers = [_as_teacher(t) for t in teachers]
        if not self.teachers:
            raise ConfigError("distillation needs at least one teacher")
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self.hard_loss = CrossEntropy(label_smoothing, aux_weight)
        self.student_format = student_format
        for teacher in self.teachers:
            teacher.model.eval()
            teacher.model.requires_grad_(False)
        self._adapters: dict[tuple[int, str], Callable[[torch.Tensor], torch.Tensor]] = {}

    def __call__(self, outputs, labels: torch.Tensor, images: torch.Tensor):
        hard, main = self.hard_loss(outputs, labels, images)
        if self.alpha == 0.0:
            return hard, main
        T = self.temperature
        targets = self.soft_targets(images)
        if targets.shape != main.shape:
            raise ConfigError(f"the teachers give {targets.shape[1]} classes, the student {main.shape[1]}")
        log_student = F.log_softmax(main.float() / T, dim=1)
        soft = F.kl_div(log_student, targets, reduction="batchmean") * (T * T)
        return self.alpha * soft + (1.0 - self.alpha) * hard, main

    @torch.no_grad()
    def soft_targets(self, images: torch.Tensor) -> torch.Tensor:
        """The arithmetic mean of the teachers' ``softmax(logits / T)`` for ``images`` (float32)."""
        total = None
        for index, teacher in enumerate(self.teachers):
            logits = split_outputs(teacher.model(self._teacher_input(index, teacher, images)))[0]
            probs = F.softmax(logits.float() / self.temperature, dim=1)
            total = probs if total is None else total + probs
        return total / len(self.teachers)

    def _teacher_input(self, index: int, teacher: Teacher, images: torch.Tensor) -> torch.Tensor:
        model = teacher.model
        if model.training:  # the trainer sets the student to train mode each epoch, never a teacher
            model.eval()
        # (a one-channel batch is both layouts at once: it counts as the default one)
        channels_last = images.dim() == 4 and not images.is_contiguous() \
            and images.is_contiguous(memory_format=torch.channels_last)  # fmt: skip
        key = (index, f"{images.device}{'/cl' if channels_last else ''}")
        adapter = self._adapters.get(key)
        if adapter is None:  # first batch on this device and layout: the teacher follows the student
            model.to(images.device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
            adapter = _identity
            if teacher.input_format is not None and self.student_format is not None:
                remade = _BatchAdapter(self.student_format, teacher.input_format, images.shape[1], images.device)
                adapter = _identity if remade.identity else remade
            self._adapters[key] = adapter
        if adapter is _identity:
            return images
        with torch.autocast(images.device.type, enabled=False):  # pixels in float32, whatever the run's precision
            batch = adapter(images)
        return batch.contiguous(memory_format=torch.channels_last) if channels_last else batch


def _identity(images: torch.Tensor) -> torch.Tensor:
    return images


def _as_teacher(teacher) -> Teacher:
    if isinstance(teacher, Teacher):
        return teacher
    if isinstance(teacher, nn.Module):
        return Teacher(teacher, None, getattr(teacher, "model_name", type(teacher).__name__))
    if hasattr(teacher, "model") and hasattr(teacher, "meta"):  # a LoadedRun
        return Teacher.of_run(teacher)
    raise TypeError(f"a teacher is an nn.Module, a Teacher or a LoadedRun, not {type(teacher).__name__}")


# ------------------------------------------------------------------------------------------
# distill(): load the teachers, check them against the data, train the student with fit
# ------------------------------------------------------------------------------------------

#: what ``run.json`` must hold for a run to teach (the model record and its input format)
_TEACHER_KEYS = ("classes", "in_chans", "input_size", "mean", "std")
#: the configuration keys that choose the data (a resumed run keeps its own)
_DATA_KEYS = ("data", "data_dir", "download", "val_fraction", "seed", "limit_train", "limit_val", "skip_bad_images")


def load_teacher(path, checkpoint: str = "best"):
    """A teacher run, loaded on the CPU; a folder that is not a trained run is a one-line error."""
    from cnnzoo.rundir import read_record
    from cnnzoo.train.runs import load_run

    from cnnzoo.pretrained.table import looks_like_tag

    folder = Path(path)
    try:
        if looks_like_tag(path):  # a shipped weight (lenet5.fashion_mnist): its record has every teacher key
            return load_run(str(path), checkpoint, device="cpu")
        if not folder.is_dir():
            raise CnnzooError(f"{folder} is not a directory")
        meta = read_record(folder)
        if meta is None:
            raise CnnzooError(f"{folder} is not a cnnzoo run directory (no run.json)")
        missing = [key for key in ("model", *_TEACHER_KEYS) if key not in meta]
        if missing:
            raise CnnzooError(f"{folder} holds a run of kind {meta.get('kind')} without a trained model "
                              f"({', '.join(missing)} missing in run.json)")  # fmt: skip
        return load_run(folder, checkpoint, device="cpu")
    except CnnzooError as exc:
        raise ConfigError(f"--teacher {path}: {exc}") from None


def _classes_text(classes: Sequence[str], limit: int = 4) -> str:
    shown = ", ".join(map(str, classes[:limit]))
    return f"{len(classes)} classes ({shown}{', ...' if len(classes) > limit else ''})"


def _check_teacher_fits(run, bundle) -> None:
    meta = run.meta
    if list(meta["classes"]) != list(bundle.classes):
        raise ConfigError(f"--teacher {run.run_dir} was trained on {meta.get('data')}'s "
                          f"{_classes_text(meta['classes'])}, but {bundle.name} has "
                          f"{_classes_text(list(bundle.classes))}: a teacher must know the data's classes")  # fmt: skip
    if int(meta["in_chans"]) != int(bundle.in_chans):
        raise ConfigError(f"--teacher {run.run_dir} takes {meta['in_chans']}-channel images, {bundle.name} has "
                          f"{bundle.in_chans}")  # fmt: skip


def _remade(teacher: InputFormat, student: InputFormat) -> str:
    """What the log says about a teacher whose inputs are made otherwise than the student's."""
    if teacher.same_input(student):
        return ""
    size = lambda fmt: f"{fmt.input_size[0]}x{fmt.input_size[1]}"  # noqa: E731
    what = [f"at {size(teacher)} (the student's: {size(student)})"] if teacher.input_size != student.input_size else []
    if not teacher.same_normalisation(student):
        what.append("with its own mean and std")
    return "; its batches are remade " + " ".join(what)


def distill(
    teachers: Sequence[str | Path],
    student,
    data: str | None = None,
    *,
    temperature: float = 4.0,
    alpha: float = 0.9,
    teacher_checkpoint: str = "best",
    recipe: str | None = None,
    bundle=None,
    verbose: bool = True,
    log: Callable[[str], None] | None = None,
    callbacks=(),
    **overrides,
):
    """Train ``student`` on the soft targets of the teacher runs ``teachers``; returns a ``FitResult``.

    ``student`` is a registered model name, a :class:`~cnnzoo.modelspec.ModelSpec` or an
    ``nn.Module`` (as for :func:`cnnzoo.train.fit`).  ``data`` defaults to the first teacher's
    data set (and its ``data_dir``); every teacher must have been trained on the data's classes
    and channels.  Every other keyword is a training configuration key (``epochs``,
    ``limit_train``, ``out``, ...); ``label_smoothing`` and ``aux_weight`` shape the hard term.
    The run directory's ``run.json`` records ``distill``: the teachers, ``temperature``, ``alpha``.
    """
    from cnnzoo.modelspec import ModelSpec
    from cnnzoo.rundir import check_same_settings, default_path, read_record
    from cnnzoo.train.config import read_config, resolve, to_dict
    from cnnzoo.train.engine import choose_input_size, fit, load_config_data

    check_distill_settings(temperature, alpha)
    teachers = [teachers] if isinstance(teachers, (str, Path)) else list(teachers)
    if not teachers:
        raise ConfigError("distill needs at least one --teacher RUN")
    if "model" in overrides:
        raise ConfigError("the student is given as --student (or distill's student argument), not as model")
    say = (log or (lambda text: print(text, flush=True))) if verbose else (lambda text: None)
    if isinstance(student, ModelSpec):
        student_name = student.name
    elif isinstance(student, nn.Module):
        student_name = getattr(student, "model_name", None) or type(student).__name__
    else:
        student_name = str(student)

    runs = [load_teacher(path, teacher_checkpoint) for path in teachers]
    data = data or overrides.pop("data", None)
    if data is None:  # the first teacher's data set, where its files were
        data = runs[0].config.data
        if overrides.get("data_dir") is None and runs[0].config.data_dir:
            overrides["data_dir"] = runs[0].config.data_dir
    given = {k: v for k, v in overrides.items() if v is not None and k != "model_kwargs"}
    config, _ = resolve(recipe, {**given, "model": student_name, "data": data})

    record = {"distill": {
        "teachers": [{"run": str(path), "model": run.meta["model"], "checkpoint": run.checkpoint}
                     for path, run in zip(teachers, runs)],
        "temperature": float(temperature), "alpha": float(alpha),
    }}  # fmt: skip
    if config.resume:
        if not config.out:
            raise ConfigError("distill --resume needs --out RUN: the distillation run to continue")
        saved = read_record(Path(config.out)) if Path(config.out).is_dir() else None
        if saved is not None and "distill" in saved:
            check_same_settings(saved["distill"], record["distill"], f"--resume: the distillation in {config.out}",
                                advice="start a new run instead")  # fmt: skip
        if (Path(config.out) / "config.yaml").is_file():  # the data the run was started on, unless given again
            kept = to_dict(read_config(Path(config.out) / "config.yaml"))
            for key in _DATA_KEYS:
                if key not in given:
                    setattr(config, key, kept[key])

    if bundle is None:
        bundle = load_config_data(config)
    for run in runs:
        _check_teacher_fits(run, bundle)

    data_size = tuple(bundle.image_size) if bundle.image_size else None
    if isinstance(student, nn.Module):
        input_size = tuple(config.input_size or data_size)
    else:
        from cnnzoo.registry import model_info

        input_size = choose_input_size(model_info(student_name), data_size, config.input_size)
    student_format = InputFormat(tuple(input_size), tuple(map(float, bundle.mean)), tuple(map(float, bundle.std)),
                                 data_size)  # fmt: skip
    loss = DistillationLoss(runs, temperature, alpha, label_smoothing=config.label_smoothing,
                            aux_weight=config.aux_weight, student_format=student_format)  # fmt: skip

    for path, run in zip(teachers, runs):
        say(f"teacher {path}: {run.meta['model']} ({run.checkpoint} checkpoint, eval mode)"
            f"{_remade(InputFormat.of_record(run.meta), student_format)}")  # fmt: skip
    say(f"distilling into {student_name}: temperature {temperature:g}, alpha {alpha:g} (soft term x T^2 = "
        f"{temperature * temperature:g}), hard term {1 - alpha:g}")  # fmt: skip

    fit_overrides = {k: v for k, v in overrides.items() if k != "data"}
    fit_overrides["input_size"] = list(input_size)
    if not config.out and not config.resume:
        fit_overrides["out"] = str(default_path(student_name, "distill", config.data))
    return fit(student, config.data, recipe=recipe, verbose=verbose, log=log, bundle=bundle, loss=loss,
               kind="distill", record=record, callbacks=list(callbacks), **fit_overrides)  # fmt: skip


# ------------------------------------------------------------------------------------------
# command line (the parser is in cnnzoo.compress.commands)
# ------------------------------------------------------------------------------------------


def distill_command(args: argparse.Namespace) -> int:
    """``cnnzoo distill --teacher RUN [--teacher RUN ...] --student MODEL [--temperature T] [--alpha A] ...``."""
    from cnnzoo.train.commands import train_overrides

    check_distill_settings(args.temperature, args.alpha)  # before the teachers are loaded
    result = distill(args.teacher, args.student, temperature=args.temperature, alpha=args.alpha,
                     recipe=args.recipe, **train_overrides(args))  # fmt: skip
    return result.exit_code
