"""The training engine: fit() and `cnnzoo train`, recipes, schedules, losses, bad input.

Everything runs on tiny synthetic data (a few dozen 32x32 images) so the file stays fast.
"""

from __future__ import annotations

import csv
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import safetensors.torch
import torch
import yaml
from torch import nn

from cnnzoo import cli
from cnnzoo.errors import CnnzooError, ConfigError
from cnnzoo.models.base import ClassifierNet
from cnnzoo.train import engine
from cnnzoo.train.config import TrainConfig, load_recipe, recipe_names, resolve
from cnnzoo.train.engine import TrainingDiverged, compute_loss, fit
from cnnzoo.train.optim import LRSchedule

SYN = "synthetic:classes=4,channels=1,size=32,train=96,test=32"
QUICK = dict(batch_size=32, progress=False, verbose=False)


class TinyNet(ClassifierNet):
    """conv-BN-ReLU-dropout, global average pooling, linear: small and quick."""

    def __init__(self, num_classes: int = 4, in_chans: int = 1, width: int = 8) -> None:
        super().__init__(num_classes, in_chans)
        self.num_features = width
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Dropout(0.2),
        )  # fmt: skip
        self.fc = nn.Linear(width, num_classes)

    def forward_features(self, x):
        return self.features(x)

    def forward_head(self, x, pre_logits=False):
        x = x.mean(dim=(2, 3))
        return x if pre_logits else self.fc(x)

    def get_classifier(self):
        return self.fc

    def reset_classifier(self, n):
        self.fc = nn.Linear(self.num_features, n)


@pytest.fixture
def tiny_name():
    """TinyNet registered under a private name for the duration of one test."""
    from cnnzoo.models.lenet import LENET_PAPER
    from cnnzoo.registry import _REGISTRY, register_model

    name = "_test_tiny_net"

    def builder(**kwargs):
        return TinyNet(**kwargs)

    builder.__name__ = name
    register_model(family="test", paper=LENET_PAPER, input_size=(1, 32, 32), num_classes=4, min_size=2)(builder)
    yield name
    _REGISTRY.pop(name, None)


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_fit_two_epochs_writes_metrics_weights_and_plots(tmp_path, tiny_name):
    out = tmp_path / "run"
    result = fit(tiny_name, data=SYN, epochs=2, out=str(out), **QUICK)
    assert result.status == "completed" and result.epochs_done == 2
    rows = _rows(out / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    for key in ("train_loss", "train_top1", "train_top5", "val_loss", "val_top1", "val_top5", "lr", "images_per_s",
                "seconds"):  # fmt: skip
        assert all(math.isfinite(float(r[key])) for r in rows), key
    for name in ("last.safetensors", "best.safetensors", "curves.png", "confusion.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    weights = safetensors.torch.load_file(str(out / "last.safetensors"))
    assert "features.0.weight" in weights
    state = torch.load(out / "last.state.pt", weights_only=True)
    assert state["epoch"] == 2 and state["step"] == result.steps
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["model"] == tiny_name and saved["epochs"] == 2 and saved["batch_size"] == 32
    assert 0.0 <= result.test_top1 <= 1.0 and result.test_top5 >= result.test_top1


def test_cli_train_reports_accuracy_and_run_dir(tmp_path, capsys):
    out = tmp_path / "cli-run"
    code = cli.main(["train", "lenet5", "--data", SYN, "--epochs", "1", "--batch-size", "32", "--out", str(out),
                     "--no-progress"])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    assert "test top-1" in printed and "best validation top-1" in printed
    assert str(out) in printed
    assert (out / "metrics.csv").exists()


def test_default_run_dir_is_model_data_timestamp(tmp_path, monkeypatch, tiny_name):
    monkeypatch.chdir(tmp_path)
    result = fit(tiny_name, data=SYN, epochs=1, max_steps=1, **QUICK)
    assert result.run_dir.parent.name == "runs"
    assert result.run_dir.name.startswith(f"{tiny_name}-synthetic-")


def test_flags_override_recipe_and_resolved_config_is_saved(tmp_path):
    parser = cli.build_parser()
    args = parser.parse_args(["train", "lenet5", "-c", "resnet_cifar", "--lr", "0.05", "--input-size", "32x32",
                              "--set", "milestones=[10, 20]", "--no-progress"])  # fmt: skip
    from cnnzoo.train.commands import train_overrides

    overrides = train_overrides(args)
    config, explicit = resolve(args.recipe, {"model": "lenet5", **overrides})
    assert config.lr == 0.05  # the flag wins over the recipe's 0.1
    assert config.milestones == [10, 20]
    assert config.weight_decay == 1e-4 and config.max_steps == 64000  # the recipe's
    assert config.input_size == [32, 32]
    assert config.progress is False
    assert "nesterov" not in explicit  # flags not given do not override anything


def test_recipe_files_are_faithful():
    """He et al. 2015 Sec. 4.2; Szegedy et al. 2015 (Inception v3) Sec. 7-8; GoogLeNet Sec. 5."""
    names = set(recipe_names())
    assert {"alexnet", "vgg", "googlenet", "inception_v3", "resnet_imagenet", "resnet_cifar", "wrn_cifar",
            "densenet_cifar", "mobilenet", "fast"} <= names  # fmt: skip
    rc = load_recipe("resnet_cifar")
    assert (rc["optimizer"], rc["lr"], rc["momentum"], rc["weight_decay"], rc["batch_size"]) == ("sgd", 0.1, 0.9, 1e-4, 128)
    assert rc["milestones"] == [32000, 48000] and rc["schedule_unit"] == "step" and rc["max_steps"] == 64000
    v3 = load_recipe("inception_v3")
    assert (v3["optimizer"], v3["rmsprop_decay"], v3["eps"], v3["label_smoothing"]) == ("rmsprop", 0.9, 1.0, 0.1)
    assert v3["grad_clip"] == 2.0 and v3["lr"] == 0.045 and v3["gamma"] == 0.94
    assert load_recipe("googlenet")["aux_weight"] == 0.3
    fast = load_recipe("fast")
    assert fast["schedule"] == "onecycle" and fast["label_smoothing"] > 0 and fast["tta_flip"] is True
    for name in names:  # every shipped recipe resolves into a valid configuration
        resolve(name, {"model": "lenet5"})


def test_recipe_errors_are_one_line(tmp_path):
    with pytest.raises(ConfigError, match="unknown recipe"):
        load_recipe("no_such_recipe")
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: 0.1\nlearning_rate: 3\n")
    with pytest.raises(ConfigError, match="unknown key 'learning_rate'"):
        load_recipe(bad)
    bad.write_text("lr: [oops\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_recipe(bad)
    with pytest.raises(ConfigError, match="optimizer"):
        resolve(None, {"model": "lenet5", "optimizer": "adagrad"})


def _schedule(**kwargs) -> LRSchedule:
    """A schedule over 100 steps per epoch."""
    config = TrainConfig(model="x", **kwargs)
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=config.lr, momentum=config.momentum)
    return LRSchedule(optimizer, config, steps_per_epoch=100)


def _lr_at(schedule: LRSchedule, step: int) -> float:
    return schedule.config.lr * schedule.factor(step)


def test_multistep_in_iterations_matches_resnet_cifar():
    """He et al. 2015 Sec. 4.2: lr 0.1, /10 at 32k and 48k iterations, stop at 64k."""
    s = _schedule(lr=0.1, schedule="multistep", schedule_unit="step", milestones=[32000, 48000], max_steps=64000,
                  epochs=1000)  # fmt: skip
    assert s.total_steps == 64000
    assert _lr_at(s, 31999) == pytest.approx(0.1)
    assert _lr_at(s, 32000) == pytest.approx(0.01)
    assert _lr_at(s, 48000) == pytest.approx(0.001)


def test_step_cosine_warmup_onecycle_plateau():
    s = _schedule(lr=1.0, schedule="step", step_size=2, gamma=0.94, epochs=10)  # per 2 epochs, 100 steps each
    assert s.factor(199) == pytest.approx(1.0) and s.factor(200) == pytest.approx(0.94)
    c = _schedule(lr=1.0, schedule="cosine", epochs=10, warmup_epochs=1, warmup_start_ratio=0.1)
    assert c.factor(0) == pytest.approx(0.1)
    assert c.factor(50) == pytest.approx(0.55)
    assert c.factor(100) == pytest.approx(1.0)
    assert c.factor(550) == pytest.approx(0.5)
    assert c.factor(1000) == pytest.approx(0.0, abs=1e-9)
    o = _schedule(lr=1.0, schedule="onecycle", epochs=10, onecycle_pct_start=0.3, onecycle_div_factor=25)
    peak = max(range(1000), key=o.factor)
    assert peak == 300 and o.factor(0) == pytest.approx(1 / 25)
    assert o.factor(999) < 1e-3
    o.step_count = 0
    o._apply()
    assert o.optimizer.param_groups[0]["momentum"] == pytest.approx(0.95)  # momentum cycles inversely
    p = _schedule(lr=1.0, schedule="plateau", plateau_patience=1, gamma=0.1, epochs=10)
    for metric in (0.5, 0.6, 0.6):
        p.epoch_end(metric)
    assert p.lr == pytest.approx(1.0)  # one stalled epoch is within the patience
    p.epoch_end(0.6)
    assert p.lr == pytest.approx(0.1)  # "divide by 10 when the validation error stops improving"
    restored = _schedule(lr=1.0, schedule="plateau", plateau_patience=1, gamma=0.1, epochs=10)
    restored.load_state_dict(p.state_dict())
    assert restored.lr == pytest.approx(0.1)


def test_aux_losses_weighted_and_label_smoothing():
    """GoogLeNet Sec. 5: total loss = main + 0.3 * each auxiliary loss."""
    torch.manual_seed(0)
    labels = torch.tensor([0, 1, 2])
    main, aux1, aux2 = (torch.randn(3, 4) for _ in range(3))
    ce = nn.CrossEntropyLoss()
    loss, logits = compute_loss((main, aux1, aux2), labels, ce, 0.3)
    assert logits is main
    assert loss.item() == pytest.approx((ce(main, labels) + 0.3 * ce(aux1, labels) + 0.3 * ce(aux2, labels)).item())
    plain, _ = compute_loss(main, labels, ce, 0.3)
    assert plain.item() == pytest.approx(ce(main, labels).item())


class AuxNet(TinyNet):
    """Returns (main, aux) in training mode and main logits in eval mode, like GoogLeNet."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.aux = nn.Linear(self.num_features, self.num_classes)
        self.seen_tuple = 0

    def forward(self, x):
        features = self.forward_features(x)
        main = self.forward_head(features)
        if self.training:
            self.seen_tuple += 1
            return main, self.aux(features.mean(dim=(2, 3)))
        return main


def test_models_with_aux_heads_train_with_them_and_evaluate_without(tmp_path):
    model = AuxNet()
    aux_before = model.aux.weight.detach().clone()
    result = fit(model, data=SYN, epochs=1, out=str(tmp_path / "aux"), **QUICK)
    assert result.status == "completed" and model.seen_tuple == result.steps
    assert not torch.equal(model.aux.weight.detach(), aux_before)  # the auxiliary head was trained
    assert result.test_top1 is not None


def test_unwritable_output_dir_fails_before_training(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setattr(engine, "load_dataset", lambda *a, **k: pytest.fail("data loaded before the check"))
    with pytest.raises(CnnzooError, match="cannot write to output directory"):
        fit(TinyNet(), data=SYN, epochs=1, out=str(blocker / "run"), **QUICK)
    proc = subprocess.run([sys.executable, "-m", "cnnzoo", "train", "lenet5", "--data", SYN, "--out",
                           str(blocker / "run")], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "cannot write to output directory" in proc.stderr


def test_existing_run_is_not_overwritten(tmp_path, tiny_name):
    out = tmp_path / "run"
    fit(tiny_name, data=SYN, epochs=1, max_steps=1, out=str(out), **QUICK)
    before = (out / "last.safetensors").read_bytes()
    with pytest.raises(CnnzooError, match="already holds a run"):
        fit(tiny_name, data=SYN, epochs=1, out=str(out), **QUICK)
    assert (out / "last.safetensors").read_bytes() == before


class NaNAfter(TinyNet):
    """Produces NaN logits from the ``after``-th training forward pass on."""

    def __init__(self, after: int, **kwargs):
        super().__init__(**kwargs)
        self.after = after
        self.calls = 0

    def forward(self, x):
        out = super().forward(x)
        if self.training:
            self.calls += 1
            if self.calls >= self.after:
                out = out * float("nan")
        return out


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    out = tmp_path / "nan"
    steps_per_epoch = 3  # 86 training images, batch 32
    model = NaNAfter(after=steps_per_epoch + 2)
    with pytest.raises(TrainingDiverged, match="loss became nan at epoch 2, batch 2") as info:
        fit(model, data=SYN, epochs=3, out=str(out), **QUICK)
    assert info.value.exit_code != 0
    assert "last good checkpoint" in str(info.value)
    state = torch.load(out / "last.state.pt", weights_only=True)
    assert state["epoch"] == 1 and state["step"] == steps_per_epoch
    weights = safetensors.torch.load_file(str(out / "last.safetensors"))
    assert all(torch.isfinite(t.float()).all() for t in weights.values())
    assert len(_rows(out / "metrics.csv")) == 1


def test_nan_loss_exit_code_from_the_cli(tmp_path, capsys):
    from cnnzoo.registry import _REGISTRY, register_model
    from cnnzoo.models.lenet import LENET_PAPER

    name = "_test_nan_net"

    def builder(**kwargs):
        return NaNAfter(after=1, **kwargs)

    builder.__name__ = name
    register_model(family="test", paper=LENET_PAPER, input_size=(1, 32, 32), num_classes=4, min_size=4)(builder)
    try:
        code = cli.main(["train", name, "--data", SYN, "--epochs", "1", "-b", "32", "--out", str(tmp_path / "r"),
                         "--no-progress"])  # fmt: skip
    finally:
        _REGISTRY.pop(name, None)
    err = capsys.readouterr().err
    assert code == 3
    assert "loss became nan" in err and "no checkpoint had been written yet" in err


class InterruptAt(TinyNet):
    """Sends this process a signal during its ``at``-th training forward pass (like Ctrl-C)."""

    def __init__(self, at: int, signum=signal.SIGINT, **kwargs):
        super().__init__(**kwargs)
        self.at, self.signum, self.calls = at, signum, 0

    def forward(self, x):
        if self.training:
            self.calls += 1
            if self.calls == self.at:
                os.kill(os.getpid(), self.signum)
        return super().forward(x)


def test_ctrl_c_mid_epoch_writes_checkpoint_and_resume_is_exact(tmp_path):
    common = dict(data=SYN, epochs=2, deterministic=True, **QUICK)
    torch.manual_seed(1)
    reference = fit(TinyNet(), out=str(tmp_path / "ref"), **common)
    torch.manual_seed(1)
    handler_before = signal.getsignal(signal.SIGINT)
    first = fit(InterruptAt(at=5), out=str(tmp_path / "cut"), **common)  # batch 2 of epoch 2
    assert first.status == "interrupted" and first.signal == "SIGINT" and first.exit_code == 130
    state = torch.load(tmp_path / "cut" / "last.state.pt", weights_only=True)
    assert (state["epoch"], state["batch_in_epoch"]) == (1, 2)  # the interrupted step was completed
    assert signal.getsignal(signal.SIGINT) is handler_before  # handlers restored
    resumed = fit(InterruptAt(at=-1), out=str(tmp_path / "cut"), resume=True, **common)
    assert resumed.status == "completed" and resumed.steps == reference.steps
    a = safetensors.torch.load_file(str(tmp_path / "ref" / "last.safetensors"))
    b = safetensors.torch.load_file(str(tmp_path / "cut" / "last.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_sigterm_writes_checkpoint_and_exits_cleanly(tmp_path):
    out = tmp_path / "term"
    cmd = [sys.executable, "-m", "cnnzoo", "train", "lenet5", "--data",
           "synthetic:classes=4,channels=1,size=32,train=4000,test=16", "--epochs", "20", "-b", "16",
           "--out", str(out), "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.startswith("run directory:"):
                break
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM
    assert "Traceback" not in stderr
    assert "SIGTERM: stopped at epoch 1" in stdout
    state = torch.load(out / "last.state.pt", weights_only=True)
    assert state["epoch"] == 0 and state["batch_in_epoch"] >= 1


def test_bf16_autocast_channels_last_and_early_stop_callback(tmp_path):
    rows = []

    def stop_after_first(row):
        rows.append(row)
        return True

    threads = torch.get_num_threads()
    result = fit(TinyNet(), data=SYN, epochs=3, amp="bf16", channels_last=True, label_smoothing=0.1,
                 grad_clip=1.0, optimizer="adamw", lr=1e-3, threads=1, out=str(tmp_path / "amp"),
                 on_epoch_end=stop_after_first, **QUICK)  # fmt: skip
    assert torch.get_num_threads() == threads  # restored after the run
    assert result.status == "stopped" and result.epochs_done == 1 and len(rows) == 1
    assert math.isfinite(rows[0]["train_loss"]) and math.isfinite(rows[0]["val_loss"])
    with pytest.raises(ConfigError, match="amp"):
        fit(TinyNet(), data=SYN, amp="fp8", out=str(tmp_path / "bad"), **QUICK)


def test_tensorboard_writes_event_files_with_the_metrics(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = fit(TinyNet(), data=SYN, epochs=2, tensorboard=True, out=str(tmp_path / "tb"), **QUICK)
    events = EventAccumulator(str(result.run_dir / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train_loss", "val_top1", "lr"} <= tags
    assert [e.step for e in events.Scalars("val_top1")] == [1, 2]
    assert events.Scalars("val_top1")[-1].value == pytest.approx(result.history[-1]["val_top1"])


def test_tensorboard_without_the_package_is_a_clear_error(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith(("torch.utils.tensorboard", "tensorboard")):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    monkeypatch.delitem(sys.modules, "torch.utils.tensorboard", raising=False)
    with pytest.raises(ConfigError, match="tensorboard package"):
        fit(TinyNet(), data=SYN, tensorboard=True, out=str(tmp_path / "tb"), **QUICK)
    assert not (tmp_path / "tb").exists()


def test_fit_takes_a_model_spec_and_load_run_replays_its_transforms(tmp_path):
    """fit(ModelSpec(...).then(...)) builds the spec with the data's classes and records it for load_run."""
    from cnnzoo.modelspec import ModelSpec
    from cnnzoo.train.runs import load_run
    from cnnzoo.transfer import NewFC

    spec = ModelSpec("lenet5").then("new_fc", num_classes=4)
    out = tmp_path / "spec-run"
    result = fit(spec, data=SYN, epochs=1, out=str(out), max_steps=1, **QUICK)
    assert result.exit_code == 0
    run = load_run(out, device="cpu")
    assert isinstance(run.model, NewFC) and run.model.num_classes == 4
    assert run.meta["spec"]["transforms"] == [{"name": "new_fc", "options": {"num_classes": 4}}]
    assert run.meta["spec"]["num_classes"] == 4 and run.meta["spec"]["in_chans"] == 1  # set from the data
    x = torch.randn(2, 1, 32, 32)
    assert run.model(x).shape == (2, 4)
    with pytest.raises(ConfigError, match="in the ModelSpec"):
        fit(spec, data=SYN, epochs=1, out=str(tmp_path / "other"), model_kwargs={"x": 1}, **QUICK)


def test_train_a_run_directory_trains_its_recorded_architecture_again(tmp_path, capsys):
    """`cnnzoo train RUN` rebuilds RUN's spec (options and transforms) with new weights; -o is refused."""
    from cnnzoo.train.runs import load_run

    source = tmp_path / "source"
    assert cli.main(["train", "lenet5", "-o", "sparse_c3=false", "--data", SYN, "--epochs", "1", "--max-steps", "1",
                     "--out", str(source), "--no-progress"]) == 0  # fmt: skip
    again = tmp_path / "again"
    assert cli.main(["train", str(source), "--data", SYN, "--epochs", "1", "--max-steps", "1", "--seed", "7",
                     "--out", str(again), "--no-progress"]) == 0  # fmt: skip
    first, second = load_run(source, device="cpu"), load_run(again, device="cpu")
    assert second.meta["spec"] == first.meta["spec"] and second.meta["spec"]["options"] == {"sparse_c3": False}
    assert second.meta["architecture_from"] == str(source)
    assert not torch.equal(first.model.state_dict()["features.0.weight"], second.model.state_dict()["features.0.weight"])
    capsys.readouterr()
    assert cli.main(["train", str(source), "-o", "sparse_c3=true", "--data", SYN, "--out", str(tmp_path / "x")]) == 2
    assert "-o applies to a model name" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
