"""Optimizers and learning-rate schedules of the papers' recipes.

Optimizers: SGD with momentum (optionally Nesterov's), RMSProp, AdamW.  Schedules, as
the factor f(s) of ``lr`` at optimizer step s (``spe`` = steps per epoch; "units" are
epochs, or steps with ``schedule_unit: step``; ``T`` = the run's total steps):

* ``constant``: f = 1;
* ``step``: f = gamma ** floor(units(s) / step_size) (Inception v3: 0.94 every two
  epochs, Section 8);
* ``multistep``: f = gamma ** #{milestones m : units(s) >= m} (ResNet on CIFAR: /10 at
  32k and 48k iterations, He et al. 2015 Section 4.2);
* ``plateau``: f is multiplied by ``gamma`` at the end of an epoch once the validation
  top-1 has not beaten the best so far by more than ``plateau_threshold`` (absolute)
  for more than ``plateau_patience`` epochs; the count restarts after each reduction
  (AlexNet: "divide the learning rate by 10 when the validation error rate stopped
  improving", Krizhevsky et al. 2012 Section 5);
* ``cosine``: f = r + (1 - r) (1 + cos(pi p)) / 2, p = (s - W) / (T - W) clamped to
  [0, 1], r = ``min_lr_ratio`` (Loshchilov & Hutter 2017, without restarts);
* ``onecycle``: with U = max(1, int(pct_start T)), a = 1/div_factor and
  z = a/final_div_factor: f rises as a + (1 - a)(1 - cos(pi s/U))/2 to 1 at step U,
  then falls as z + (1 - z)(1 + cos(pi (s - U)/(T - U)))/2 to z at step T; momentum
  goes high -> low -> high of ``onecycle_momentum`` by the same cosines (Smith & Topin
  2017; SGD and RMSProp with momentum > 0 only, AdamW's betas are left alone).

Any schedule but one-cycle can start with a linear warm-up over W =
round(warmup_epochs spe) steps: f is multiplied by w + (1 - w) s/W for s < W,
w = ``warmup_start_ratio`` (Goyal et al. 2017).  The cosine starts after the warm-up;
step, multistep and plateau count from step 0, the warm-up overlapping them.

What torch.optim.lr_scheduler does: every formula above.  ``StepLR`` and
``MultiStepLR`` (epoch values converted to the first step at or past them), the warm-up
``LinearLR`` (joined to the cosine by ``SequentialLR``, to step/multistep by
``ChainedScheduler`` since they overlap), ``CosineAnnealingLR`` (eta_min = lr
min_lr_ratio), ``OneCycleLR`` (also the momentum) and ``ReduceLROnPlateau`` (mode max,
threshold_mode abs, eps 0), all stepped once per optimizer step except the plateau one,
stepped by :meth:`LRSchedule.epoch_end`.  OneCycleLR's own phases end one step earlier
(max at step pct_start T - 1, the end value at T - 1); it is given total_steps T + 1 and
pct_start (U + 1)/(T + 1) to keep the values above.  Its end value,
lr/(div_factor final_div_factor), is ours.

What is kept by hand, because torch's schedulers lack it: the conversion of epochs to
steps; holding cosine and one-cycle at their final value past T (CosineAnnealingLR
would rise again, OneCycleLR raise); a ``state_dict`` that also holds the groups'
current lr and momentum (torch's recursive schedulers read them from the optimizer) with
plain containers only; :meth:`LRSchedule.factor`, the schedule at any step, by
replaying the schedulers on a scratch optimizer (torch's step forwards only); and the
reading of states written before this module used torch's schedulers.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections import Counter
from typing import Any

import torch
from torch import nn
from torch.optim import lr_scheduler

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
    validation accuracy after each epoch.  ``state_dict`` holds plain numbers, strings,
    lists and dicts only (``torch.load(..., weights_only=True)`` reads it).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int) -> None:
        self.optimizer = optimizer
        self.config = config
        self.steps_per_epoch = max(1, steps_per_epoch)
        full = config.epochs * self.steps_per_epoch
        self.total_steps = min(full, config.max_steps) if config.max_steps else full
        self.warmup_steps = int(round(config.warmup_epochs * self.steps_per_epoch))
        if config.schedule == "onecycle":
            self.warmup_steps = 0  # the cycle has its own ramp
        self.step_count = 0
        #: product of the plateau reductions so far (1.0 for the other schedules)
        self.plateau_scale = 1.0
        self._cycle_momentum = (
            config.schedule == "onecycle" and config.optimizer in ("sgd", "rmsprop") and config.momentum > 0
        )
        # cosine and one-cycle hold their final value after this step (torch's would go on)
        self._hold_after: int | None = None
        if config.schedule == "cosine":
            self._hold_after = self.warmup_steps + max(1, self.total_steps - self.warmup_steps)
        elif config.schedule == "onecycle":
            up = self._onecycle_up()
            self._hold_after = up + max(1, self.total_steps - up)
        self._base_lrs = [group.setdefault("initial_lr", config.lr) for group in optimizer.param_groups]
        for group, base in zip(optimizer.param_groups, self._base_lrs):
            group["lr"] = base
        self._scheduler = self._per_step_scheduler(optimizer)
        self._plateau = self._plateau_scheduler(optimizer) if config.schedule == "plateau" else None
        self._replay: list[tuple[float, float | None]] | None = None  # factor() cache

    # -- building the torch schedulers -----------------------------------------------
    def _first_step_at(self, position: float) -> int:
        """The first optimizer step whose position (in ``schedule_unit``) is >= ``position``."""
        if self.config.schedule_unit == "step":
            return max(0, math.ceil(position))
        spe = self.steps_per_epoch
        step = max(0, math.ceil(position * spe))
        while step > 0 and (step - 1) / spe >= position:  # guard against rounding either way
            step -= 1
        while step / spe < position:
            step += 1
        return step

    def _per_step_scheduler(self, optimizer: torch.optim.Optimizer) -> lr_scheduler.LRScheduler | None:
        c = self.config
        try:
            if c.schedule == "onecycle":
                return self._onecycle(optimizer)
            warm = self.warmup_steps
            warmup = None
            if warm:
                if not 0 < c.warmup_start_ratio <= 1:
                    raise ConfigError(f"warmup_start_ratio must be in (0, 1], got {c.warmup_start_ratio}")
                warmup = lr_scheduler.LinearLR(
                    optimizer, start_factor=c.warmup_start_ratio, end_factor=1.0, total_iters=warm
                )
            main: lr_scheduler.LRScheduler | None = None
            if c.schedule == "step":
                main = self._step_lr(optimizer)
            elif c.schedule == "multistep":
                milestones = [self._first_step_at(m) for m in c.milestones]
                main = lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=c.gamma)
            elif c.schedule == "cosine":
                main = lr_scheduler.CosineAnnealingLR(
                    optimizer, T_max=max(1, self.total_steps - warm), eta_min=c.lr * c.min_lr_ratio
                )
            elif c.schedule not in ("constant", "plateau"):  # pragma: no cover - validated earlier
                raise ConfigError(f"unknown schedule {c.schedule!r}")
        except ValueError as exc:  # torch's checks of the arguments
            raise ConfigError(f"schedule {c.schedule}: {exc}") from None
        if warmup is None or main is None:
            return warmup or main
        if c.schedule == "cosine":  # the cosine starts after the warm-up
            return lr_scheduler.SequentialLR(optimizer, [warmup, main], milestones=[warm])
        # step/multistep count their epochs from the start of training, warm-up included
        return lr_scheduler.ChainedScheduler([warmup, main], optimizer)

    def _step_lr(self, optimizer: torch.optim.Optimizer) -> lr_scheduler.LRScheduler:
        c = self.config
        if c.step_size <= 0:
            raise ConfigError(f"step_size must be > 0, got {c.step_size}")
        size = c.step_size * (self.steps_per_epoch if c.schedule_unit == "epoch" else 1)
        if abs(size - round(size)) < 1e-9 and round(size) >= 1:
            return lr_scheduler.StepLR(optimizer, step_size=int(round(size)), gamma=c.gamma)
        # a period of a fractional number of steps: StepLR's ``last_epoch % step_size``
        # would miss the decays, so list them (to the end of training)
        end = self.total_steps / (self.steps_per_epoch if c.schedule_unit == "epoch" else 1)
        count = int(end // c.step_size) + 1
        milestones = [self._first_step_at(k * c.step_size) for k in range(1, count + 1)]
        return lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=c.gamma)

    def _onecycle_up(self) -> int:
        return max(1, int(self.config.onecycle_pct_start * self.total_steps))

    def _onecycle(self, optimizer: torch.optim.Optimizer) -> lr_scheduler.OneCycleLR:
        c = self.config
        # Ours: the ramp ends (lr = max) at step ``up``, the cosine reaches the end value
        # at step ``end`` (= total_steps unless the ramp takes them all).  OneCycleLR's
        # phases end at steps pct_start * total_steps - 1 and total_steps - 1, so these
        # arguments give the same values at every step.
        up = self._onecycle_up()
        end = up + max(1, self.total_steps - up)
        low_m, high_m = c.onecycle_momentum
        return lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=[group["lr"] for group in optimizer.param_groups],
            total_steps=end + 1,
            pct_start=(up + 1) / (end + 1),
            anneal_strategy="cos",
            cycle_momentum=self._cycle_momentum,
            base_momentum=low_m,
            max_momentum=high_m,
            div_factor=c.onecycle_div_factor,
            final_div_factor=c.onecycle_final_div_factor,
            three_phase=False,
        )

    def _plateau_scheduler(self, optimizer: torch.optim.Optimizer) -> lr_scheduler.ReduceLROnPlateau:
        c = self.config
        try:
            return lr_scheduler.ReduceLROnPlateau(
                optimizer,
                mode="max",
                factor=c.gamma,
                patience=c.plateau_patience,
                threshold=c.plateau_threshold,
                threshold_mode="abs",
                cooldown=0,
                min_lr=0.0,
                eps=0.0,  # always apply the reduction (torch's default skips tiny ones)
            )
        except ValueError as exc:
            raise ConfigError(f"schedule plateau: {exc} (gamma is the factor)") from None

    def _held(self, step: int) -> int:
        return step if self._hold_after is None else min(step, self._hold_after)

    @staticmethod
    def _advance(scheduler: lr_scheduler.LRScheduler, steps: int) -> None:
        """Step ``scheduler`` ``steps`` times without optimizer steps in between (a replay)."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
            for _ in range(steps):
                scheduler.step()

    # -- the schedule as a function of the step ----------------------------------------
    def _values(self, step: int) -> tuple[float, float | None]:
        """(lr / ``lr``, momentum) at ``step`` of the per-step schedulers, replayed on a
        scratch optimizer (plateau reductions not included)."""
        if self._replay is None:
            scratch = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=self.config.lr,
                                      momentum=max(0.0, self.config.momentum))  # fmt: skip
            self._replay_optimizer = scratch
            self._replay_scheduler = self._per_step_scheduler(scratch)
            self._replay = []
        group = self._replay_optimizer.param_groups[0]
        step = self._held(max(0, step))
        while len(self._replay) <= step:
            if self._replay and self._replay_scheduler is not None:
                self._advance(self._replay_scheduler, 1)
            momentum = group["momentum"] if self._cycle_momentum else None
            self._replay.append((group["lr"] / self.config.lr, momentum))
        return self._replay[step]

    def factor(self, step: int | None = None) -> float:
        """The learning rate at ``step`` (default: now) as a fraction of ``lr``.

        Plateau: the warm-up at ``step`` times the reductions made so far.
        """
        step = self.step_count if step is None else step
        return self._values(step)[0] * self.plateau_scale

    def _apply(self) -> None:
        """Put the optimizer at step :attr:`step_count`: rebuild the per-step schedulers,
        replay them from step 0 and re-apply the plateau reductions made so far."""
        for group, base in zip(self.optimizer.param_groups, self._base_lrs):
            group["initial_lr"] = base
            group["lr"] = base
        self._scheduler = self._per_step_scheduler(self.optimizer)
        if self._scheduler is not None:
            self._advance(self._scheduler, self._held(self.step_count))
        for group in self.optimizer.param_groups:
            group["lr"] *= self.plateau_scale

    # -- events -------------------------------------------------------------------
    def step(self) -> None:
        self.step_count += 1
        if self._scheduler is not None and (self._hold_after is None or self.step_count <= self._hold_after):
            self._scheduler.step()

    def epoch_end(self, metric: float | None) -> None:
        """Plateau schedule: count the epochs without improvement of ``metric`` (higher is better)."""
        if self._plateau is None or metric is None:
            return
        before = float(self.optimizer.param_groups[0]["lr"])
        self._plateau.step(metric)
        if float(self.optimizer.param_groups[0]["lr"]) < before:
            self.plateau_scale *= self.config.gamma

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    # -- checkpoints --------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        groups = self.optimizer.param_groups
        return {
            "step_count": self.step_count,
            "plateau_scale": self.plateau_scale,
            "lrs": [float(group["lr"]) for group in groups],
            "momenta": [float(group["momentum"]) for group in groups] if self._cycle_momentum else None,
            "scheduler": _plain(self._scheduler.state_dict()) if self._scheduler is not None else None,
            "plateau": _plain(self._plateau.state_dict()) if self._plateau is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "scheduler" not in state and "plateau_factor" in state:
            self._load_legacy(state)
            return
        state = copy.deepcopy(state)
        groups = self.optimizer.param_groups
        if (state["scheduler"] is None) != (self._scheduler is None) or (state["plateau"] is None) != (
            self._plateau is None
        ):
            raise ValueError("the learning-rate schedule state is for another schedule")
        if len(state["lrs"]) != len(groups):
            raise ValueError(f"schedule state for {len(state['lrs'])} parameter groups, optimizer has {len(groups)}")
        self.step_count = int(state["step_count"])
        self.plateau_scale = float(state["plateau_scale"])
        if self._scheduler is not None:
            self._scheduler.load_state_dict(state["scheduler"])
            _restore_counters(self._scheduler)
        if self._plateau is not None:
            self._plateau.load_state_dict(state["plateau"])
        for i, group in enumerate(groups):
            group["lr"] = state["lrs"][i]
            if state["momenta"] is not None:
                group["momentum"] = state["momenta"][i]

    def _load_legacy(self, state: dict[str, Any]) -> None:
        """A state written before the schedules were built on torch.optim.lr_scheduler."""
        self.step_count = int(state["step_count"])
        self.plateau_scale = float(state["plateau_factor"])
        if self._plateau is not None:
            best = state["best_metric"]
            self._plateau.best = self._plateau.mode_worse if best is None else float(best)
            self._plateau.num_bad_epochs = int(state["bad_epochs"])
        self._apply()


def _plain(value: Any) -> Any:
    """A scheduler state with plain containers only (MultiStepLR keeps a Counter)."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(item) for item in value)
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    raise TypeError(f"learning-rate scheduler state holds a {type(value).__name__}")  # pragma: no cover


def _restore_counters(scheduler: lr_scheduler.LRScheduler) -> None:
    for child in getattr(scheduler, "_schedulers", [scheduler]):
        if isinstance(child, lr_scheduler.MultiStepLR):
            child.milestones = Counter(child.milestones)
