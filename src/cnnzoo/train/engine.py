"""``fit()``: train any registered model (or a built one) on any data set.

``fit`` puts the pieces together and hands them to the :class:`~cnnzoo.train.trainer.Trainer`:

1. the configuration (defaults < recipe < keywords; :mod:`cnnzoo.train.config`) and the model
   record (:class:`~cnnzoo.modelspec.ModelSpec`, options checked against the builder);
2. the run directory (:class:`~cnnzoo.rundir.RunDir`): checked before any work, created only
   when training starts, removed again when the run fails before its first checkpoint;
   ``--resume`` refuses a changed configuration, naming the keys;
3. the data, the model, the optimizer and schedule, distributed wrapping;
4. the standard callbacks (:mod:`cnnzoo.train.callbacks`) plus the caller's.

The test split never influences training: the validation split chooses the ``best``
weights, and the test split is measured once, with them, at the end.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from cnnzoo.errors import CnnzooError, ConfigError
from cnnzoo.modelspec import ModelSpec, check_options, spec_of
from cnnzoo.rundir import OutputDirError, RunDir, check_same_settings
from cnnzoo.train import callbacks as cb
from cnnzoo.train import distributed as dist_utils
from cnnzoo.train.config import RESUME_FREE_KEYS, TrainConfig, read_config, resolve, save_config, to_dict, validate
from cnnzoo.train.optim import LRSchedule, build_optimizer
from cnnzoo.train.speed import CompiledWithFallback, resolve_amp, resolve_channels_last
from cnnzoo.train.trainer import (  # noqa: F401 - re-exported: the engine's public names
    Callback,
    CrossEntropy,
    FitResult,
    Trainer,
    TrainingDiverged,
    compute_loss,
    evaluate,
)

__all__ = ["FitResult", "OutputDirError", "TrainingDiverged", "choose_input_size", "evaluate", "fit"]


# data access (module attributes, so tests can stand in for cnnzoo.data)
def load_dataset(*args, **kwargs):
    from cnnzoo.data import load_dataset as _load

    return _load(*args, **kwargs)


def make_loader(*args, **kwargs):
    from cnnzoo.data import make_loader as _make

    return _make(*args, **kwargs)


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
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
                torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)  # fmt: skip
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = previous[2], previous[3]


@contextmanager
def torch_threads(threads: int | None):
    """``torch.set_num_threads(threads)`` for the duration, restored afterwards."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------------------------------
# fit
# ------------------------------------------------------------------------------------------


def load_config_data(config: TrainConfig, **changes):
    """The data set a training configuration names, split and limited as it says; ``changes`` override its keys.

    Every command that trains or tests from a configuration (train, finetune, prune, distill,
    the int8 calibration) loads its data through this, so they all see the same splits.
    """
    keys = dict(data=config.data, data_dir=config.data_dir, download=config.download, val_fraction=config.val_fraction,
                seed=config.seed, limit_train=config.limit_train, limit_val=config.limit_val,
                skip_bad_images=config.skip_bad_images)  # fmt: skip
    keys.update(changes)
    return load_dataset(keys.pop("data"), **keys)


def fit(
    model: str | nn.Module | ModelSpec,
    data: str | None = None,
    *,
    recipe: str | os.PathLike | None = None,
    verbose: bool = True,
    log: Callable[[str], None] | None = None,
    on_epoch_end: Callable[[dict[str, Any]], bool | None] | None = None,
    bundle=None,
    callbacks: Sequence[Callback] = (),
    loss: Callable | None = None,
    kind: str = "train",
    record: dict[str, Any] | None = None,
    allow_no_epochs: bool = False,
    **overrides,
) -> FitResult:
    """Train ``model`` (a registered name, a :class:`ModelSpec` or a built ``nn.Module``) on ``data``.

    A ``ModelSpec`` is built (with the data's classes and channels) and its transforms replayed
    at the start, and recorded so that ``load_run`` rebuilds it: ``cnnzoo train --quantize``
    passes its model this way.

    ``recipe`` names a shipped recipe (``"fast"``, ``"resnet_cifar"``, ...) or a YAML file;
    every other keyword is a configuration key (:class:`~cnnzoo.train.config.TrainConfig`)
    and wins over the recipe.  ``bundle`` is a data set already loaded (a
    :class:`~cnnzoo.data.DataBundle`, e.g. a class subset) to train on instead of loading
    ``data``, which then only names it.  ``on_epoch_end(row)`` is called on rank 0 after each
    epoch; True stops the run there (resumably, status "stopped").  ``callbacks`` and ``loss``
    plug into the :class:`~cnnzoo.train.trainer.Trainer`; ``kind`` and ``record`` go into the
    run directory's ``run.json`` (``finetune`` records its source there).  With
    ``allow_no_epochs`` (``cnnzoo prune --epochs 0``), ``epochs=0`` trains nothing: the model's
    weights as given become the run's ``last`` checkpoint and are tested.  User mistakes raise
    :class:`~cnnzoo.errors.CnnzooError`, a diverging loss :class:`TrainingDiverged`.

    >>> result = fit("lenet5", data="fashion-mnist", epochs=1)     # doctest: +SKIP
    >>> result.test_top1, result.run_dir                             # doctest: +SKIP
    """
    module = model if isinstance(model, nn.Module) else None
    given_spec = model.copy() if isinstance(model, ModelSpec) else None
    if module is not None:
        name = getattr(module, "model_name", None) or type(module).__name__
    else:
        name = given_spec.name if given_spec is not None else str(model)
    given = {**overrides, "model": name}
    if given_spec is not None:
        if given.get("model_kwargs"):
            raise ConfigError("give the model options in the ModelSpec, not as model_kwargs")
        given["model_kwargs"] = dict(given_spec.options)
    if data is not None:
        given["data"] = data
    min_epochs = 0 if allow_no_epochs else 1
    config, explicit = resolve(recipe, given, min_epochs)
    printer = log or (lambda text: print(text, flush=True))
    setup = _Setup(config, explicit, module, bundle, kind, record or {}, verbose, printer, given_spec, min_epochs)
    extra = list(callbacks)
    if on_epoch_end is not None:
        extra.append(cb.EpochEndHook(on_epoch_end, setup.say))
    return setup.run(extra, loss)


@dataclass
class _Setup:
    """The steps of :func:`fit` before and around the trainer."""

    config: TrainConfig
    explicit: dict[str, Any]
    module: nn.Module | None
    bundle: Any
    kind: str
    extra_record: dict[str, Any]
    verbose: bool
    printer: Callable[[str], None]
    given_spec: ModelSpec | None = None
    min_epochs: int = 1

    def say(self, text: str) -> None:
        if self.verbose and self.dist.is_main:
            self.printer(text)

    def warn(self, text: str) -> None:
        """A warning: on standard error, also when the run is quiet."""
        if self.dist.is_main:
            print(f"cnnzoo: warning: {text}", file=sys.stderr, flush=True)

    def run(self, extra_callbacks: list[Callback], loss) -> FitResult:
        config = self.config
        self.spec = self._model_spec()  # an unknown model, option or input size fails before any work
        self.device = resolve_device(config.device)
        if config.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # noqa: F401
            except Exception:
                raise ConfigError("--tensorboard needs the tensorboard package (pip install tensorboard)") from None
        self.dist = dist_utils.setup(self.device.type)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        try:
            with torch_threads(config.threads), deterministic_mode(config.deterministic):
                self._open_run_dir()
                trainer = self._build(extra_callbacks, loss)
                return self._train(trainer)
        finally:
            dist_utils.cleanup(self.dist)

    def _model_spec(self) -> ModelSpec | None:
        config = self.config
        if self.module is not None:
            return spec_of(self.module)
        from cnnzoo.registry import model_info

        info = model_info(config.model)
        if config.input_size:
            info.check_input_size(*config.input_size)
        spec = ModelSpec(config.model, check_options(config.model, config.model_kwargs))
        if self.given_spec is not None:
            spec.transforms = [dict(step) for step in self.given_spec.transforms]
        return spec

    # -- the run directory ----------------------------------------------------------------
    def _open_run_dir(self) -> None:
        config = self.config
        path, error = None, None
        if self.dist.is_main:
            try:
                data_part = config.data.split(":", 1)[0]
                run = RunDir.open(config.out, self.kind, resume=config.resume, default_parts=(config.model, data_part),
                                  latest=f"{config.model}-{data_part}-*")  # fmt: skip
                path = str(run.path)
            except CnnzooError as exc:
                error = (type(exc).__name__, str(exc))
        path, error = dist_utils.broadcast_object(self.dist, (path, error))
        if error:
            raise OutputDirError(error[1]) if error[0] == "OutputDirError" else ConfigError(error[1])
        self.run_dir = RunDir(path, self.kind, resuming=bool(config.resume))
        config.out = path
        if config.resume and (self.run_dir / "config.yaml").is_file():
            self._merge_saved_config()
            # the model's options (-o) come from the run too when the command gives none
            self.spec = self._model_spec()

    def _merge_saved_config(self) -> None:
        saved = to_dict(read_config(self.run_dir / "config.yaml"))
        wanted = {k: v for k, v in self.explicit.items() if k not in RESUME_FREE_KEYS and k != "recipe"}
        check_same_settings(saved, wanted, f"--resume: the run in {self.run_dir}", advice="start a new run instead")
        merged = dict(saved)
        # how this call runs (not what it trains) comes from this call, not the saved run
        merged.update(stop_after_epochs=None, progress=TrainConfig.progress, threads=None)
        merged.update(self.explicit)
        merged.update(out=str(self.run_dir), resume=True)
        self.config = validate(TrainConfig(**merged), self.min_epochs)

    # -- data, model, optimizer -------------------------------------------------------------
    def _build(self, extra_callbacks: list[Callback], loss) -> Trainer:
        config = self.config
        from cnnzoo.registry import model_info

        # config.yaml keeps what was asked for ("auto"); the run uses what this machine resolves it to
        self.asked = dataclasses.replace(config)
        config.amp, self.precision = resolve_amp(config.amp, self.device, self.warn)
        config.channels_last = resolve_channels_last(config.channels_last, self.device)

        bundle = self.bundle if self.bundle is not None else load_config_data(config)
        self.bundle = bundle
        self.classes = list(bundle.classes)
        data_size = tuple(bundle.image_size) if bundle.image_size else None
        seed_everything(config.seed)
        if self.module is not None:
            self.input_size = tuple(config.input_size or data_size)
            model = self.module
        else:
            self.input_size = choose_input_size(model_info(config.model), data_size, config.input_size)
            self.spec.num_classes, self.spec.in_chans = len(self.classes), int(bundle.in_chans)
            model = self.spec.build()
        model.to(self.device)
        if self.module is None and hasattr(model, "init_from_data"):
            self._init_from_data(model, bundle)
        if config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        optimizer = build_optimizer(model, config)

        world = self.dist.world_size
        if config.batch_size % world:
            raise ConfigError(f"the batch size {config.batch_size} is global: it must divide evenly among {world} "
                              "processes")  # fmt: skip
        augment = dict(getattr(bundle, "default_augment", {}) or {})
        for key in ("crop_padding", "flip"):
            if getattr(config, key) is not None:
                augment[key] = getattr(config, key)
        if config.random_erasing:
            augment["random_erasing"] = config.random_erasing
        common = dict(device=self.device, input_size=self.input_size, mean=bundle.mean, std=bundle.std,
                      seed=config.seed)  # fmt: skip
        train_loader = make_loader(bundle.train, batch_size=config.batch_size // world, train=True, augment=augment,
                                   rank=self.dist.rank, world_size=world, **common)  # fmt: skip
        eval_batch = max(config.batch_size, 256)
        val_loader, test_loader = (
            make_loader(split, batch_size=eval_batch, train=False, augment=None, **common)
            if split is not None and len(split) else None
            for split in (bundle.val, bundle.test)
        )  # fmt: skip
        if len(train_loader) == 0:
            raise ConfigError("the training split gives no batch: lower --batch-size or raise --limit-train")
        schedule = LRSchedule(optimizer, config, len(train_loader))
        if config.bn_sparsity:
            from cnnzoo.compress.slimming import BNSparsityLoss

            loss = BNSparsityLoss(loss or CrossEntropy(config.label_smoothing, config.aux_weight), model,
                                  config.bn_sparsity)  # fmt: skip
        train_model = CompiledWithFallback(model, self.warn) if config.compile else model
        train_model = dist_utils.wrap_model(train_model, self.dist, self.device, config.sync_bn)

        title = f"{config.model} on {bundle.name}"
        callbacks: list[Callback] = [cb.Signals(), cb.Checkpoints(self._checkpoint_record, self.say)]
        if config.test_every_epoch:
            callbacks.append(cb.TestEveryEpoch(test_loader))
        callbacks += [cb.MetricsCSV()]
        if config.tensorboard:
            callbacks.append(cb.TensorBoard())
        if config.progress and self.verbose:
            callbacks.append(cb.ProgressBar())
        if self.verbose:
            callbacks.append(cb.EpochLog(self.say))
        if config.stop_after_epochs:
            callbacks.append(cb.StopAfterEpochs(config.stop_after_epochs, self.say))
        callbacks += extra_callbacks
        callbacks += [cb.Plots(title)] if config.plots else []
        callbacks += [cb.FinalTest(test_loader, self.classes, title, self.say)]
        return Trainer(model=model, train_model=train_model, optimizer=optimizer, schedule=schedule,
                       train_loader=train_loader, val_loader=val_loader, config=config, device=self.device,
                       num_classes=len(self.classes), loss=loss, callbacks=callbacks, dist=self.dist,
                       run=self.run_dir)  # fmt: skip

    def record(self) -> dict[str, Any]:
        """``run.json``: what the model is and what it was trained on (enough to rebuild and use it)."""
        bundle = self.bundle
        spec = self.spec.to_dict() if self.spec is not None else None
        return {
            "model": self.config.model, "spec": spec, "data": bundle.name, "classes": self.classes,
            "num_classes": len(self.classes), "in_chans": int(bundle.in_chans),
            "data_size": list(bundle.image_size) if bundle.image_size else None, "input_size": list(self.input_size),
            "mean": [float(v) for v in bundle.mean], "std": [float(v) for v in bundle.std],
            "model_kwargs": self.config.model_kwargs, "amp": self.config.amp,
            "channels_last": bool(self.config.channels_last), **self.extra_record,
        }  # fmt: skip

    def _checkpoint_record(self) -> dict[str, Any]:
        return {"config": to_dict(self.asked), "meta": self.record()}

    def _init_from_data(self, model: nn.Module, bundle, count: int = 10_000) -> None:
        """A data-dependent initialisation (fastnet's whitening layer): up to ``count`` training images.

        They are normalised like the training batches but not augmented; a resumed run loads
        its checkpoint over the result.
        """
        loader = make_loader(bundle.train, batch_size=1000, train=False, augment=None, device=self.device,
                             input_size=self.input_size, mean=bundle.mean, std=bundle.std, seed=self.config.seed)
        images, seen = [], 0
        for batch, _ in loader:
            images.append(batch)
            seen += batch.shape[0]
            if seen >= count:
                break
        model.init_from_data(torch.cat(images)[:count])

    # -- training ---------------------------------------------------------------------------
    def _train(self, trainer: Trainer) -> FitResult:
        config, bundle, run = self.config, self.bundle, self.run_dir
        if self.dist.is_main:
            run.start(self.record())
        dist_utils.barrier(self.dist)
        try:
            if self.dist.is_main:
                save_config(self.asked, run / "config.yaml")
            world = f" on {self.dist.world_size} processes ({self.dist.backend})" if self.dist.enabled else ""
            sizes = ", ".join(f"{len(s) if s is not None else 0} {n}" for s, n in
                              ((bundle.train, "train"), (bundle.val, "val"), (bundle.test, "test")))  # fmt: skip
            self.say(f"training {config.model} on {bundle.name} ({sizes} images, input {self.input_size[0]}x"
                     f"{self.input_size[1]}x{bundle.in_chans}) on {self.device}{world}")  # fmt: skip
            layout = ", channels-last" if config.channels_last else ""
            compiled = ", torch.compile" if config.compile else ""
            self.say(f"precision: {self.precision}{layout}{compiled}")
            self.say(f"run directory: {run}")
            if config.epochs == 0 and not run.has_checkpoint():
                # nothing to train: the weights as given are the run's, saved the way every checkpoint is
                next(c for c in trainer.callbacks if isinstance(c, cb.Checkpoints)).save(trainer, "last")
            result = trainer.fit()
        except BaseException:
            if self.dist.is_main:
                run.abandon()  # a run that failed before its first checkpoint leaves nothing behind
            raise
        dist_utils.barrier(self.dist)
        return result
