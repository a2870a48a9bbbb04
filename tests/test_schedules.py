"""Learning-rate schedules (cnnzoo.train.optim.LRSchedule on torch.optim.lr_scheduler).

The expected values are written out from the formulas of optim.py's docstring, not
taken from the code under test; every schedule is also checked for exact resume.
"""

from __future__ import annotations

import io
import math
from collections import Counter

import pytest
import torch
from torch import nn

from cnnzoo.errors import ConfigError
from cnnzoo.train.config import TrainConfig
from cnnzoo.train.optim import LRSchedule

SPE = 10  # steps per epoch


def _make(optimizer: str = "sgd", steps_per_epoch: int = SPE, **kwargs) -> LRSchedule:
    kwargs.setdefault("epochs", 10)
    config = TrainConfig(model="x", optimizer=optimizer, **kwargs)
    params = [nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(1))]
    groups = [{"params": params[:1]}, {"params": params[1:], "weight_decay": 0.0}]
    if optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    elif optimizer == "rmsprop":
        opt = torch.optim.RMSprop(groups, lr=config.lr, momentum=config.momentum)
    else:
        opt = torch.optim.AdamW(groups, lr=config.lr)
    return LRSchedule(opt, config, steps_per_epoch)


def _run(schedule: LRSchedule, steps: int, metrics=None, start: int = 0) -> list[tuple]:
    """(lr of every group, momentum of group 0) at steps start..start+steps, the trainer's
    way: optimizer step, schedule step, and epoch_end after each epoch's last step."""
    out = [_values(schedule)]
    for step in range(start + 1, start + steps + 1):
        schedule.optimizer.step()
        schedule.step()
        if metrics is not None and step % schedule.steps_per_epoch == 0:
            schedule.epoch_end(metrics[step // schedule.steps_per_epoch - 1])
        out.append(_values(schedule))
    return out


def _values(schedule: LRSchedule) -> tuple:
    groups = schedule.optimizer.param_groups
    return tuple(g["lr"] for g in groups), groups[0].get("momentum"), groups[0].get("betas")


def _lrs(schedule: LRSchedule, steps: int, metrics=None) -> list[float]:
    return [v[0][0] for v in _run(schedule, steps, metrics)]


def _close(a, b):
    return a == pytest.approx(b, rel=1e-9, abs=1e-12)


def test_constant():
    s = _make(schedule="constant", lr=0.3)
    assert all(_close(lr, 0.3) for lr in _lrs(s, 100))


def test_step_every_two_epochs():
    s = _make(schedule="step", lr=0.5, step_size=2, gamma=0.94)  # Inception v3's decay
    for step, lr in enumerate(_lrs(s, 100)):
        assert _close(lr, 0.5 * 0.94 ** math.floor(step / SPE / 2)), step


def test_step_of_a_fractional_number_of_steps():
    s = _make(schedule="step", lr=1.0, step_size=2.5, gamma=0.5, steps_per_epoch=3)  # every 7.5 steps
    lrs = _lrs(s, 30)
    for step, lr in enumerate(lrs):
        assert _close(lr, 0.5 ** math.floor(step / 3 / 2.5)), step
    assert _close(lrs[7], 1.0) and _close(lrs[8], 0.5) and _close(lrs[15], 0.25)


def test_step_in_steps():
    s = _make(schedule="step", schedule_unit="step", lr=1.0, step_size=7, gamma=0.1)
    for step, lr in enumerate(_lrs(s, 50)):
        assert _close(lr, 0.1 ** (step // 7)), step


def test_multistep_in_epochs_and_steps():
    s = _make(schedule="multistep", lr=0.1, milestones=[1.5, 3.25, 8], gamma=0.1)
    lrs = _lrs(s, 100)
    for step, lr in enumerate(lrs):
        passed = sum(step / SPE >= m for m in (1.5, 3.25, 8))
        assert _close(lr, 0.1 * 0.1**passed), step
    assert _close(lrs[14], 0.1) and _close(lrs[15], 0.01) and _close(lrs[33], 0.001)
    s = _make(schedule="multistep", schedule_unit="step", lr=0.1, milestones=[32, 48], max_steps=64, epochs=100)
    assert s.total_steps == 64
    lrs = _lrs(s, 64)
    assert _close(lrs[31], 0.1) and _close(lrs[32], 0.01) and _close(lrs[47], 0.01) and _close(lrs[48], 0.001)


@pytest.mark.parametrize("warmup", [0, 2])
def test_cosine(warmup):
    lr, ratio, w0 = 0.2, 0.05, 0.1
    s = _make(schedule="cosine", lr=lr, min_lr_ratio=ratio, warmup_epochs=warmup, warmup_start_ratio=w0)
    total, warm = 10 * SPE, warmup * SPE
    lrs = _lrs(s, total + 5)  # past the end it stays at the floor
    for step, value in enumerate(lrs):
        if step < warm:
            expected = lr * (w0 + (1 - w0) * step / warm)
        else:
            p = min(1.0, (step - warm) / (total - warm))
            expected = lr * (ratio + (1 - ratio) * (1 + math.cos(math.pi * p)) / 2)
        assert _close(value, expected), step
    assert _close(lrs[warm], lr) and _close(lrs[total], lr * ratio) and _close(lrs[-1], lr * ratio)


@pytest.mark.parametrize("name", ["constant", "step", "multistep"])
def test_warmup_ramp_overlaps_the_schedule(name):
    lr, w0, warm = 0.4, 0.25, 15  # 1.5 epochs
    s = _make(schedule=name, lr=lr, warmup_epochs=1.5, warmup_start_ratio=w0, step_size=1, milestones=[1, 3],
              gamma=0.5)  # fmt: skip
    assert s.warmup_steps == warm
    for step, value in enumerate(_lrs(s, 50)):
        ramp = w0 + (1 - w0) * step / warm if step < warm else 1.0
        main = {
            "constant": 1.0,
            "step": 0.5 ** (step // SPE),
            "multistep": 0.5 ** sum(step / SPE >= m for m in (1, 3)),
        }[name]
        assert _close(value, lr * ramp * main), step


def _onecycle_expected(step, total, pct, div, final_div, low, high):
    up = max(1, int(pct * total))
    start, end = 1 / div, 1 / (div * final_div)
    if step < up:
        c = (1 - math.cos(math.pi * step / up)) / 2
        return start + (1 - start) * c, high - (high - low) * c
    t = min(1.0, (step - up) / (total - up))
    c = (1 + math.cos(math.pi * t)) / 2
    return end + (1 - end) * c, high - (high - low) * c


@pytest.mark.parametrize("optimizer", ["sgd", "rmsprop"])
def test_onecycle_lr_and_momentum(optimizer):
    kw = dict(lr=0.8, onecycle_pct_start=0.3, onecycle_div_factor=10, onecycle_final_div_factor=100,
              onecycle_momentum=[0.8, 0.9])  # fmt: skip
    s = _make(optimizer, schedule="onecycle", **kw)
    total = 10 * SPE
    run = _run(s, total + 3)
    for step, (lrs, momentum, _) in enumerate(run):
        f, m = _onecycle_expected(min(step, total), total, 0.3, 10, 100, 0.8, 0.9)
        assert _close(lrs[0], 0.8 * f) and _close(lrs[1], 0.8 * f), step
        assert _close(momentum, m), step
    peak = max(range(total + 1), key=lambda i: run[i][0][0])
    assert peak == 30 and _close(run[30][0][0], 0.8) and _close(run[30][1], 0.8)
    assert _close(run[0][0][0], 0.08) and _close(run[0][1], 0.9)
    assert _close(run[total][0][0], 0.8 / 1000) and _close(run[total][1], 0.9)
    assert _close(s.factor(30), 1.0) and _close(s.factor(0), 0.1)


def test_onecycle_leaves_adamw_betas_and_zero_momentum_alone():
    s = _make("adamw", schedule="onecycle", lr=0.01)
    run = _run(s, 20)
    assert all(betas == (0.9, 0.999) for _, _, betas in run)
    f, _ = _onecycle_expected(20, 100, 0.25, 25, 1e4, 0.85, 0.95)
    assert _close(run[20][0][0], 0.01 * f)
    s = _make("sgd", schedule="onecycle", momentum=0.0)
    assert all(momentum == 0.0 for _, momentum, _ in _run(s, 20))


def test_plateau_reduces_after_more_than_patience_bad_epochs():
    s = _make(schedule="plateau", lr=1.0, gamma=0.1, plateau_patience=1, plateau_threshold=0.01)
    # epoch: 1 best; 2 +0.005 is within the threshold: bad 1; 3 bad 2 > 1: reduce;
    # 4 improves; 5 bad 1; 6 bad 2: reduce; 7 improves
    metrics = [0.5, 0.505, 0.509, 0.6, 0.6, 0.55, 0.7]
    expected = [1.0, 1.0, 0.1, 0.1, 0.1, 0.01, 0.01]
    for metric, lr in zip(metrics, expected):
        s.epoch_end(metric)
        assert _close(s.lr, lr) and _close(s.optimizer.param_groups[1]["lr"], lr)
    s.epoch_end(None)  # no validation: nothing counted
    assert _close(s.lr, 0.01) and s.plateau_scale == pytest.approx(0.01)
    assert _close(s.factor(), 0.01)


def test_plateau_with_warmup_multiplies():
    s = _make(schedule="plateau", lr=1.0, gamma=0.5, plateau_patience=0, warmup_epochs=2, warmup_start_ratio=0.2)
    lrs = _lrs(s, 30, metrics=[0.5, 0.4, 0.3])  # reductions at the end of epochs 2 and 3
    for step, lr in enumerate(lrs):
        ramp = 0.2 + 0.8 * step / 20 if step < 20 else 1.0
        reductions = (step >= 20) + (step >= 30)
        assert _close(lr, ramp * 0.5**reductions), step


def _plain_only(value):
    if isinstance(value, dict):
        assert type(value) is dict, type(value)
        return all(_plain_only(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_plain_only(v) for v in value)
    assert value is None or type(value) in (bool, int, float, str), type(value)
    return True


RESUME_CASES = {
    "constant": dict(schedule="constant"),
    "constant-warmup": dict(schedule="constant", warmup_epochs=1.5),
    "step": dict(schedule="step", step_size=2, gamma=0.5),
    "step-fractional-warmup": dict(schedule="step", step_size=1.5, gamma=0.5, warmup_epochs=1),
    "multistep": dict(schedule="multistep", milestones=[2, 3.5, 7], gamma=0.1),
    "multistep-warmup": dict(schedule="multistep", milestones=[0.5, 3], gamma=0.1, warmup_epochs=1),
    "multistep-steps": dict(schedule="multistep", schedule_unit="step", milestones=[25, 61], max_steps=80),
    "cosine": dict(schedule="cosine", min_lr_ratio=0.01),
    "cosine-warmup": dict(schedule="cosine", warmup_epochs=2),
    "onecycle": dict(schedule="onecycle"),
    "onecycle-rmsprop": dict(schedule="onecycle", optimizer="rmsprop"),
    "onecycle-adamw": dict(schedule="onecycle", optimizer="adamw"),
    "plateau": dict(schedule="plateau", plateau_patience=0),
    "plateau-warmup": dict(schedule="plateau", plateau_patience=1, warmup_epochs=2.5),
}
METRICS = [0.3, 0.4, 0.4, 0.35, 0.5, 0.5, 0.5, 0.5, 0.6, 0.6]


@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_exact_resume(case):
    kwargs = dict(RESUME_CASES[case])
    optimizer = kwargs.pop("optimizer", "sgd")
    total = _make(optimizer, **kwargs).total_steps
    whole = _run(_make(optimizer, **kwargs), total, METRICS)
    for k in (0, 7, 20, 25, total - 1):
        first = _make(optimizer, **kwargs)
        head = _run(first, k, METRICS)
        assert head == whole[: k + 1]
        state = first.state_dict()
        assert _plain_only(state)
        buffer = io.BytesIO()
        torch.save({"schedule": state, "optimizer": first.optimizer.state_dict()}, buffer)
        buffer.seek(0)
        saved = torch.load(buffer, weights_only=True)
        # a fresh schedule, with and without the optimizer's state loaded first (the trainer's order)
        for with_optimizer in (False, True):
            resumed = _make(optimizer, **kwargs)
            if with_optimizer:
                resumed.optimizer.load_state_dict(saved["optimizer"])
            resumed.load_state_dict(saved["schedule"])
            assert resumed.step_count == k
            assert _run(resumed, total - k, METRICS, start=k) == whole[k:], (k, with_optimizer)


def test_state_loaded_twice_is_not_shared():
    s = _make(schedule="multistep", milestones=[1, 2])
    _run(s, 5)
    state = s.state_dict()
    a, b = _make(schedule="multistep", milestones=[1, 2]), _make(schedule="multistep", milestones=[1, 2])
    a.load_state_dict(state)
    b.load_state_dict(state)
    assert _run(a, 20, start=5) == _run(b, 20, start=5)
    assert isinstance(a._scheduler._schedulers[0].milestones if hasattr(a._scheduler, "_schedulers")
                      else a._scheduler.milestones, Counter)  # fmt: skip


def test_factor_matches_the_lrs_the_optimizer_gets():
    for kwargs in (dict(schedule="cosine", warmup_epochs=1), dict(schedule="onecycle"),
                   dict(schedule="step", step_size=3, warmup_epochs=0.5)):  # fmt: skip
        s = _make(lr=0.5, **kwargs)
        lrs = _lrs(s, 100)
        probe = _make(lr=0.5, **kwargs)
        assert [0.5 * probe.factor(i) for i in range(101)] == pytest.approx(lrs, rel=1e-12)
        assert s.factor() == pytest.approx(s.lr / 0.5)


def test_state_from_before_torch_schedulers_still_loads():
    s = _make(schedule="plateau", lr=1.0, gamma=0.1, plateau_patience=1, warmup_epochs=1)
    s.load_state_dict({"step_count": 5, "plateau_factor": 0.1, "best_metric": 0.6, "bad_epochs": 1})
    assert _close(s.lr, 0.1 * (0.1 + 0.9 * 5 / SPE))
    s.epoch_end(0.6)  # second bad epoch: reduce
    assert _close(s.lr, 0.01 * (0.1 + 0.9 * 5 / SPE))
    c = _make(schedule="cosine", lr=1.0)
    c.load_state_dict({"step_count": 50, "plateau_factor": 1.0, "best_metric": None, "bad_epochs": 0})
    assert _close(c.lr, 0.5)
    c.optimizer.step()
    c.step()
    assert _close(c.lr, (1 + math.cos(math.pi * 51 / 100)) / 2)


def test_bad_values_name_the_key():
    with pytest.raises(ConfigError, match="warmup_start_ratio"):
        _make(schedule="cosine", warmup_epochs=1, warmup_start_ratio=0.0)
    with pytest.raises(ConfigError, match="plateau"):
        _make(schedule="plateau", gamma=1.0)
    with pytest.raises(ConfigError, match="step_size"):
        _make(schedule="step", step_size=0)
    with pytest.raises(ValueError, match="another schedule"):
        _make(schedule="cosine").load_state_dict(_make(schedule="plateau").state_dict())
