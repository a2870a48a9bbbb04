"""``cnnzoo.experiments._runs``: the experiment folder, its runs, its flags and its plot."""

from __future__ import annotations

import argparse
import json
import os
import signal
from types import SimpleNamespace

import pytest
import torch

from cnnzoo.errors import ConfigError
from cnnzoo.experiments._runs import (
    ExperimentDir,
    ExperimentInterrupted,
    add_training_flags,
    figure,
    markdown_table,
    train_once,
    training_values,
)
from cnnzoo.rundir import OutputDirError, RunDir, SettingsChanged
from cnnzoo.train.config import TrainConfig, save_config

COMPLETED = SimpleNamespace(status="completed", signal=None, exit_code=0)


class _CtrlC:
    """A trainer callback that sends this process SIGINT, as Ctrl-C would, once, at ``when``:
    ``"step 2"`` (in the middle of the training) or ``"end"`` (after the last step, before the final test)."""

    def __init__(self, when: str) -> None:
        self.when = when

    def _press(self) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        self.when = "done"

    def on_step_end(self, trainer, batch, loss) -> None:
        if self.when == "step 2" and trainer.step == 2:
            self._press()

    def on_fit_end(self, trainer, result) -> None:
        if self.when == "end":
            self._press()


def ctrl_c_in_the_first_training(monkeypatch, when: str, kind: str = "train") -> None:
    """Ctrl-C during the first ``fit`` of run kind ``kind`` (``finetune`` calls the engine's fit itself)."""
    import cnnzoo.train
    from cnnzoo.train import engine

    real_fit, pressed = engine.fit, []

    def fit(model, *args, **kwargs):
        if not pressed and kwargs.get("kind", "train") == kind:
            pressed.append(model)
            kwargs["callbacks"] = [*kwargs.get("callbacks", ()), _CtrlC(when)]
        return real_fit(model, *args, **kwargs)

    monkeypatch.setattr(cnnzoo.train, "fit", fit)
    monkeypatch.setattr(engine, "fit", fit)


def _quiet(_):
    pass


def _run(folder, kind="train", checkpoint=False, finished=False, config=None):
    """A run directory as the engine leaves it: run.json, maybe a checkpoint, config.yaml, results.json."""
    RunDir(folder, kind).start({"model": "tiny"})
    if checkpoint:
        (folder / "last.state.pt").write_bytes(b"")
    if config is not None:
        save_config(TrainConfig(**config), folder / "config.yaml")
    if finished:
        (folder / "results.json").write_text("{}")
    return folder


# ------------------------------------------------------------------------------------------
# train_once
# ------------------------------------------------------------------------------------------


def test_a_finished_run_is_not_trained_again(tmp_path):
    _run(tmp_path / "a", finished=True)
    calls = []
    assert train_once(tmp_path / "a", lambda **kw: calls.append(kw), log=_quiet) is False
    assert calls == []


def test_an_unfinished_run_is_resumed_and_nothing_is_deleted(tmp_path):
    """With a checkpoint, or without one yet (fit(resume=True) then starts from scratch): never rmtree'd."""
    with_checkpoint = _run(tmp_path / "a", checkpoint=True)
    without = _run(tmp_path / "b")
    (without / "metrics.csv").write_text("epoch\n")
    tuned = _run(tmp_path / "c", kind="finetune")
    seen, lines = {}, []

    def recorder(name):
        def train(resume):
            seen[name] = resume
            return COMPLETED

        return train

    for folder, kind in ((with_checkpoint, "train"), (without, "train"), (tmp_path / "new", "train"),
                         (tuned, "finetune")):  # fmt: skip
        train_once(folder, recorder(folder.name), kind=kind, log=lines.append)
    assert seen == {"a": True, "b": True, "new": False, "c": True}
    assert (without / "metrics.csv").is_file()  # the leftover run is continued, not cleared
    assert any("from its last checkpoint" in line for line in lines)
    assert any("from the start (no checkpoint yet)" in line for line in lines)
    # a run of another kind is not resumed as this kind (the engine then refuses the folder)
    train_once(tuned, recorder("c as train"), kind="train", log=_quiet)
    assert seen["c as train"] is False


def test_a_finished_run_is_reused_only_with_the_settings_asked_for(tmp_path):
    run = _run(tmp_path / "r", finished=True, config=dict(model="tiny", epochs=2, lr=0.1))
    assert train_once(run, pytest.fail, wanted=dict(model="tiny", epochs=2, lr=0.1, device="cpu"), log=_quiet) is False
    with pytest.raises(SettingsChanged, match=r"finished run .* other settings: epochs \(2 -> 3\), lr") as error:
        train_once(run, pytest.fail, wanted=dict(model="tiny", epochs=3, lr=0.2), log=_quiet)
    assert error.value.keys == ["epochs", "lr"] and "\n" not in str(error.value)


def test_an_interrupted_training_stops_the_experiment_with_its_exit_code(tmp_path):
    interrupted = SimpleNamespace(status="interrupted", signal="SIGTERM", exit_code=143)
    with pytest.raises(ExperimentInterrupted, match="SIGTERM.*run the same command again") as error:
        train_once(tmp_path / "run", lambda **kw: interrupted, log=_quiet, what="resnet20")
    assert error.value.exit_code == 143
    assert train_once(tmp_path / "other", lambda **kw: COMPLETED, log=_quiet) is True


def test_a_signal_after_the_last_step_stops_the_experiment_too(tmp_path):
    """The run finished (status completed), but Ctrl-C came during its final test: the trainer noted it."""

    def train(resume):  # what fit returns then: FitResult.signal set on a completed run
        return SimpleNamespace(status="completed", signal="SIGINT", exit_code=130)

    with pytest.raises(ExperimentInterrupted, match="SIGINT") as error:
        train_once(tmp_path / "run", train, log=_quiet)
    assert error.value.exit_code == 130


# ------------------------------------------------------------------------------------------
# the experiment's folder: one settings guard
# ------------------------------------------------------------------------------------------


def test_the_experiment_folder_records_its_settings_and_refuses_others(tmp_path):
    out = tmp_path / "exp"
    exp = ExperimentDir.open(out, "demo", {"lr": 0.1, "epochs": 2, "widths": (4, 8)})
    record = json.loads((out / "run.json").read_text())
    assert record["kind"] == "experiment:demo" and record["settings"] == {"lr": 0.1, "epochs": 2, "widths": [4, 8]}
    assert exp / "variant" == out / "variant"
    ExperimentDir.open(out, "demo", {"lr": 0.1, "epochs": 2, "widths": [4, 8]})  # the same again: continues
    with pytest.raises(SettingsChanged) as error:
        ExperimentDir.open(out, "demo", {"lr": 0.2, "epochs": 2, "widths": [4, 16]})
    message = str(error.value)
    assert error.value.keys == ["lr", "widths"] and "\n" not in message
    assert message.startswith(f"the demo experiment in {out} was made with other settings: lr (0.1 -> 0.2)")
    assert "choose another --out" in message
    # a key given once is kept (and compared when given again)
    ExperimentDir.open(out, "demo", {"lr": 0.1, "sizes": [1, 2]})
    assert json.loads((out / "run.json").read_text())["settings"]["epochs"] == 2
    with pytest.raises(SettingsChanged, match=r"sizes \(\[1, 2\] -> \[1, 3\]\)"):
        ExperimentDir.open(out, "demo", {"sizes": [1, 3]})
    # check=False: an experiment that reuses nothing just records the new settings
    ExperimentDir.open(out, "demo", {"lr": 0.5}, check=False)
    assert json.loads((out / "run.json").read_text())["settings"]["lr"] == 0.5


def test_the_experiment_folder_is_never_someone_elses(tmp_path):
    _run(tmp_path / "train-run")
    with pytest.raises(OutputDirError, match="holds a train run, not the demo experiment"):
        ExperimentDir.open(tmp_path / "train-run", "demo", {})
    ExperimentDir.open(tmp_path / "other", "other", {})
    with pytest.raises(OutputDirError, match="holds a experiment:other run"):
        ExperimentDir.open(tmp_path / "other", "demo", {})
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(OutputDirError, match="not a cnnzoo run directory"):
        ExperimentDir.open(tmp_path / "mine", "demo", {})
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]


# ------------------------------------------------------------------------------------------
# the training flags
# ------------------------------------------------------------------------------------------


def _experiment(*, data="fashion-mnist", epochs=15, lr=0.05, limit_train=6000, input_size=None, threads=2):
    """Stands for a ``run_*_experiment`` function: its defaults are the flags' defaults."""


KEYS = {"data": "", "epochs": "", "lr": "the base rate", "limit_train": "", "input_size": "", "threads": ""}


def _parse(argv):
    parser = argparse.ArgumentParser()
    add_training_flags(parser, _experiment, KEYS, out="runs/experiment-demo")
    return parser, parser.parse_args(argv)


def test_training_flags_come_from_the_configuration_with_the_experiments_defaults():
    parser, args = _parse([])
    assert args.out == "runs/experiment-demo" and args.epochs is None  # None: not given
    assert training_values(args, _experiment, KEYS) == dict(data="fashion-mnist", epochs=15, lr=0.05,
                                                            limit_train=6000, input_size=None, threads=2)  # fmt: skip
    helps = {a.dest: a.help for a in parser._actions}
    assert helps["epochs"] == "epochs to train (default: 15)"  # the configuration's words, the experiment's default
    assert helps["lr"] == "peak learning rate (default: 0.05; the base rate)"
    assert helps["limit_train"].endswith("(default: 6000; 0: all)")
    _, args = _parse(["--epochs", "3", "--lr", "0.2", "--limit-train", "0", "--input-size", "8",
                      "--set", "threads=1"])  # fmt: skip
    assert training_values(args, _experiment, KEYS) == dict(data="fashion-mnist", epochs=3, lr=0.2, limit_train=None,
                                                            input_size=[8, 8], threads=1)  # fmt: skip


@pytest.mark.parametrize("argv, message", [
    (["--lr", "0"], "learning rate must be > 0"),
    (["--limit-train", "-5"], "--limit-train must be >= 0"),
    (["--epochs", "two"], "invalid value 'two' for epochs"),
    (["--set", "warmup_epochs=2"], "--set warmup_epochs: this experiment sets it itself"),
])  # fmt: skip
def test_bad_training_values_are_one_line_errors(argv, message):
    _, args = _parse(argv)
    with pytest.raises(ConfigError, match=message) as error:
        training_values(args, _experiment, KEYS)
    assert "\n" not in str(error.value)


# ------------------------------------------------------------------------------------------
# tables and the plot
# ------------------------------------------------------------------------------------------


def test_markdown_table_aligns_numbers_right():
    table = markdown_table(["net", "error"], [["resnet20", "8.75%"]])
    assert table.splitlines() == ["| net | error |", "|---|---:|", "| resnet20 | 8.75% |"]


def test_figure_saves_a_png_when_the_block_ends_and_nothing_when_it_fails(tmp_path):
    with figure(tmp_path / "plot.png", 1, 2, figsize=(4, 2)) as (fig, axes):
        assert len(axes) == 2
        axes[0].plot([1, 2], [3, 4])
    assert (tmp_path / "plot.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ZeroDivisionError):
        with figure(tmp_path / "broken.png") as (fig, ax):
            ax.plot([1], [1 / 0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plot.png"]  # no half-written file either


# ------------------------------------------------------------------------------------------
# every training experiment: an interrupted run stops it, torch's threads come back
# ------------------------------------------------------------------------------------------

SYN = "synthetic:classes=10,channels=1,size=8,train=200,test=40"


def _experiments(out):
    from cnnzoo.experiments import batchnorm, degradation, gap_sizes, lesion, transfer

    return {
        "batchnorm": lambda: batchnorm.run_batchnorm_experiment(data=SYN, variants=["bn"], out=out, threads=1,
                                                                 log=_quiet),  # fmt: skip
        "degradation": lambda: degradation.run_degradation_experiment(data=SYN, depths=[20], out=out, threads=1,
                                                                      log=_quiet),  # fmt: skip
        "gap-sizes": lambda: gap_sizes.run_gap_sizes_experiment(data=SYN, input_size=(8, 8), eval_sizes="1x", out=out,
                                                                threads=1, log=_quiet),  # fmt: skip
        "lesion": lambda: lesion.run_lesion_experiment(model="resnet20", data=SYN, out=out, threads=1, log=_quiet),
        "transfer": lambda: transfer.run_transfer_experiment(data=SYN, sizes=(3,), target=0.5, val_per_class=2, out=out,
                                                             log=_quiet),  # fmt: skip
    }


@pytest.mark.parametrize("name", ["batchnorm", "degradation", "gap-sizes", "lesion", "transfer"])
def test_an_interrupted_run_stops_every_experiment_and_the_threads_are_restored(name, tmp_path, monkeypatch):
    import cnnzoo.train
    from cnnzoo.train.engine import FitResult

    calls = []

    def interrupted_fit(model, *args, out, **kwargs):
        calls.append(out)
        return FitResult(run_dir=out, status="interrupted", epochs_done=0, steps=1, signal="SIGINT")

    monkeypatch.setattr(cnnzoo.train, "fit", interrupted_fit)
    torch.set_num_threads(3)
    with pytest.raises(ExperimentInterrupted, match="run the same command again") as error:
        _experiments(tmp_path / name)[name]()
    assert error.value.exit_code == 130 and len(calls) == 1  # the first training, and no other after it
    assert torch.get_num_threads() == 3
    record = json.loads((tmp_path / name / "run.json").read_text())
    assert record["kind"] == f"experiment:{name}" and record["settings"]
