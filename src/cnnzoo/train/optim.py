"""Optimizers and learning-rate schedules of the papers' recipes.

Optimizers: SGD with momentum (optionally Nesterov's), RMSProp, AdamW.  Schedules,
all computed per optimizer step from the step count (so they resume exactly and work
in epochs or iterations alike):

* ``constant``;
* ``step``: multiply by ``gamma`` every ``step_size`` epochs/steps (Inception v3:
  0.94 every two epochs, Section 8);
* ``multistep``: multiply by ``gamma`` at each milestone (ResNet on CIFAR: /10 at 32k
  and 48k iterations, He et al. 2015 Section 4.2);
* ``plateau``: multiply by ``gamma`` when the validation accuracy stalls for
  ``plateau_patience`` epochs (AlexNet: "divide the learning rate by 10 when the
  validation error rate stopped improving", Krizhevsky et al. 2012 Section 5);
* ``cosine``: half a cosine from ``lr`` to ``lr * min_lr_ratio`` (Loshchilov & Hutter
  2017, without restarts);
* ``onecycle``: up from ``lr / div_factor`` to ``lr`` then down by a cosine to
  ``lr / (div_factor * final_div_factor)``, momentum cycled inversely (Smith & Topin
  2017).

Any schedule can start with a linear warm-up of ``warmup_epochs`` (Goyal et al. 2017).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from cnnzoo.errors import ConfigError
from cnnzoo.train.config import TrainConfig


def parameter_groups(model: nn.Module, weight_decay: float, no_decay_norm_bias: bool) -> list[dict]:
    """One group, or two when biases and normalisation weights get no weight decay."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not no_decay_norm_bias or weight_decay == 0:
        return [{"params": params, "weight_decay": weight_decay}]
    decay, no_decay = [], []
    for module in model.modules():
        is_norm = isinstance(module, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm))
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            (no_decay if is_norm or name == "bias" or param.ndim <= 1 else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    groups = parameter_groups(model, config.weight_decay, config.no_decay_norm_bias)
    name = config.optimizer
    if name == "sgd":
        if config.nesterov and config.momentum <= 0:
            raise ConfigError("Nesterov momentum needs momentum > 0")
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov)
    if name == "rmsprop":
        # PyTorch adds eps outside the square root, TensorFlow (the Inception v3 paper's
        # framework) inside; with eps = 1.0 both damp small second moments heavily.
        return torch.optim.RMSprop(
            groups, lr=config.lr, alpha=config.rmsprop_decay, eps=config.eps, momentum=config.momentum
        )
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, betas=tuple(config.betas), eps=config.eps)
    raise ConfigError(f"unknown optimizer {name!r}")  # pragma: no cover - validated earlier


class LRSchedule:
    """Sets every parameter group's learning rate (and one-cycle momentum) per step.

    Call :meth:`step` after each optimizer step and :meth:`epoch_end` with the
    validation accuracy after each epoch.  ``state_dict`` holds plain numbers only.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int) -> None:
        self.optimizer = optimizer
        self.config = config
        self.steps_per_epoch = max(1, steps_per_epoch)
        full = config.epochs * self.steps_per_epoch
        self.total_steps = min(full, config.max_steps) if config.max_steps else full
        self.warmup_steps = int(round(config.warmup_epochs * self.steps_per_epoch))
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", config.lr)
        self.step_count = 0
        # plateau bookkeeping
        self.plateau_factor = 1.0
        self.best_metric: float | None = None
        self.bad_epochs = 0
        self._apply()

    # -- schedule as a function of the step -----------------------------------------
    def _unit(self, step: int) -> float:
        return step / self.steps_per_epoch if self.config.schedule_unit == "epoch" else float(step)

    def factor(self, step: int | None = None) -> float:
        """The learning rate at ``step`` as a fraction of ``lr``."""
        step = self.step_count if step is None else step
        c = self.config
        if c.schedule == "onecycle":
            return self._onecycle(step)[0]
        if self.warmup_steps and step < self.warmup_steps:
            warm = c.warmup_start_ratio + (1 - c.warmup_start_ratio) * step / self.warmup_steps
        else:
            warm = 1.0
        if c.schedule == "constant":
            main = 1.0
        elif c.schedule == "step":
            main = c.gamma ** math.floor(self._unit(step) / c.step_size)
        elif c.schedule == "multistep":
            passed = sum(1 for m in c.milestones if self._unit(step) >= m)
            main = c.gamma**passed
        elif c.schedule == "plateau":
            main = self.plateau_factor
        elif c.schedule == "cosine":
            span = max(1, self.total_steps - self.warmup_steps)
            progress = min(1.0, max(0, step - self.warmup_steps) / span)
            main = c.min_lr_ratio + (1 - c.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        else:  # pragma: no cover - validated earlier
            raise ConfigError(f"unknown schedule {c.schedule!r}")
        return warm * main

    def _onecycle(self, step: int) -> tuple[float, float]:
        c = self.config
        up_steps = max(1, int(c.onecycle_pct_start * self.total_steps))
        down_steps = max(1, self.total_steps - up_steps)
        start = 1.0 / c.onecycle_div_factor
        end = start / c.onecycle_final_div_factor
        low_m, high_m = c.onecycle_momentum
        if step < up_steps:
            t = step / up_steps
            lr = start + (1 - start) * 0.5 * (1 - math.cos(math.pi * t))
            mom = high_m - (high_m - low_m) * 0.5 * (1 - math.cos(math.pi * t))
        else:
            t = min(1.0, (step - up_steps) / down_steps)
            lr = end + (1 - end) * 0.5 * (1 + math.cos(math.pi * t))
            mom = low_m + (high_m - low_m) * 0.5 * (1 - math.cos(math.pi * t))
        return lr, mom

    def _apply(self) -> None:
        factor = self.factor()
        momentum = None
        if self.config.schedule == "onecycle" and self.config.optimizer in ("sgd", "rmsprop"):
            if self.config.momentum > 0:
                momentum = self._onecycle(self.step_count)[1]
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor
            if momentum is not None:
                group["momentum"] = momentum

    # -- events -------------------------------------------------------------------
    def step(self) -> None:
        self.step_count += 1
        self._apply()

    def epoch_end(self, metric: float | None) -> None:
        """Plateau schedule: count the epochs without improvement of ``metric`` (higher is better)."""
        if self.config.schedule != "plateau" or metric is None:
            return
        if self.best_metric is None or metric > self.best_metric + self.config.plateau_threshold:
            self.best_metric = metric
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs > self.config.plateau_patience:
                self.plateau_factor *= self.config.gamma
                self.bad_epochs = 0
        self._apply()

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def state_dict(self) -> dict[str, Any]:
        return {
            "step_count": self.step_count,
            "plateau_factor": self.plateau_factor,
            "best_metric": self.best_metric,
            "bad_epochs": self.bad_epochs,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_count = int(state["step_count"])
        self.plateau_factor = float(state["plateau_factor"])
        self.best_metric = state["best_metric"]
        self.bad_epochs = int(state["bad_epochs"])
        self._apply()
