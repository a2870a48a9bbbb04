"""One trial of an architecture search: train one child network with the engine and report its reward.

A trial is a :class:`TrialJob` (plain data, so that it travels to a worker process or a Ray
node by pickling) handed to :func:`run_trial`, which trains the child
``ModelSpec("nas_child", {"arch": ...})`` with :func:`cnnzoo.train.engine.fit` into the trial's
own run directory (``SEARCH/trials/NNNN``) and returns a plain dict: the reward (the best
validation top-1 of the run, Zoph & Le 2017, Sec. 3.2: the controller is rewarded with the
child's accuracy on a held-out validation set), the seconds it took and the worker that ran it.

The test split never takes part in a search: the trial trains on a copy of the data whose test
split is removed, so the engine's final evaluation measures the validation split with the best
weights (``results.json`` says ``"split": "validation"``).  The test split stays untouched for the
architecture finally chosen (``cnnzoo eval``, or ``cnnzoo train SEARCH`` retrained from scratch).

The child recipe (:data:`CHILD_RECIPE`) is a short version of the paper's (Sec. 4.1: Nesterov
momentum 0.9, weight decay 1e-4, learning rate 0.1, 50 epochs): the same optimizer and weight
decay, a cosine schedule from a lower peak (0.05 by default) because a child gets only a few
epochs here, and a batch of 64 so that a limited training set still gives several steps per
epoch.  Every child of a search gets the same recipe, data split and seed: rewards are compared
between architectures, so nothing else may differ.

This module imports torch only inside :func:`run_trial`'s helpers (a worker sets its thread
budget before torch is first imported).
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

#: the child's training configuration besides the data and the settings the search passes
#: (epochs, batch size, learning rate, seed, threads); see the module docstring
CHILD_RECIPE: dict[str, Any] = {
    "optimizer": "sgd",
    "momentum": 0.9,
    "nesterov": True,
    "weight_decay": 1e-4,
    "schedule": "cosine",
    "warmup_epochs": 0.0,
    "label_smoothing": 0.0,
    "plots": False,  # curves.png and confusion.png would take most of a small child's time
}

#: the name of the child model (helper module cnnzoo.models.nas)
CHILD_MODEL = "nas_child"


@dataclass(frozen=True)
class TrialJob:
    """Everything a worker needs to train one child (picklable plain data)."""

    number: int
    architecture: str
    out: str  # the trial's run directory, an absolute path
    data: str
    data_dir: str | None
    download: bool
    epochs: int
    limit_train: int | None
    val_fraction: float
    batch_size: int
    lr: float
    seed: int
    threads: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def worker_name() -> str:
    """``host:pid`` of the process running a trial (the ``worker`` column of trials.csv)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def child_spec(architecture: str):
    """The child's :class:`~cnnzoo.modelspec.ModelSpec`: ``load_run`` rebuilds it from ``run.json``."""
    from cnnzoo.modelspec import ModelSpec

    return ModelSpec(CHILD_MODEL, {"arch": str(architecture)})


@lru_cache(maxsize=2)
def search_data(data: str, data_dir: str | None, download: bool, val_fraction: float, seed: int,
                limit_train: int | None):  # fmt: skip
    """The data set a search trains its children on, without its test split (loaded once per process).

    It is loaded through :func:`cnnzoo.train.engine.load_config_data`, the loader every
    training uses, so a trial's split is the one ``cnnzoo eval`` / ``train`` of its run
    directory sees again.
    """
    import dataclasses

    from cnnzoo.train.config import TrainConfig
    from cnnzoo.train.engine import load_config_data

    config = TrainConfig(data=data, data_dir=data_dir, download=download, val_fraction=val_fraction, seed=seed,
                         limit_train=limit_train)  # fmt: skip
    bundle = load_config_data(config)
    return dataclasses.replace(bundle, test=None)


def run_trial(job: TrialJob) -> dict[str, Any]:
    """Train the child of ``job`` and return its record.

    The record: ``trial``, ``status`` (``"ok"``, ``"failed"``: the training raised, e.g. a
    diverging loss; ``"interrupted"``: a signal stopped it, the search re-runs it), ``val_top1``
    (the reward), ``seconds``, ``worker``, ``error`` (one line).  A worker process that dies
    returns nothing: the search's worker pool notices (:mod:`cnnzoo.search.workers`).
    """
    record: dict[str, Any] = {"trial": job.number, "worker": worker_name(), "val_top1": None, "error": ""}
    started = time.monotonic()
    try:
        from cnnzoo.train.engine import fit

        bundle = search_data(job.data, job.data_dir, job.download, job.val_fraction, job.seed, job.limit_train)
        # the seconds are the child's training: a fresh worker's imports and data loading are not its cost
        started = time.monotonic()
        result = fit(child_spec(job.architecture), data=job.data, bundle=bundle, data_dir=job.data_dir,
                     download=job.download, epochs=job.epochs, limit_train=job.limit_train,
                     val_fraction=job.val_fraction, batch_size=job.batch_size, lr=job.lr, seed=job.seed,
                     threads=job.threads, out=job.out, verbose=False, progress=False,
                     record={"search": {"trial": job.number, "architecture": job.architecture}},
                     **CHILD_RECIPE)  # fmt: skip
    except Exception as exc:  # the architecture or its training failed: recorded, the search goes on
        record.update(status="failed", error=one_line(exc))
    else:
        if result.status != "completed":
            record.update(status="interrupted", error=f"stopped by {result.signal or result.status}")
        elif result.best_val_top1 is None:
            record.update(status="failed", error="the run measured no validation top-1")
        else:
            record.update(status="ok", val_top1=float(result.best_val_top1))
    record["seconds"] = round(time.monotonic() - started, 3)
    return record


def one_line(exc: BaseException) -> str:
    """An exception as one line of text (for the ``error`` column)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
