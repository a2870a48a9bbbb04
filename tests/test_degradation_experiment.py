"""``cnnzoo experiment degradation`` (the brief's experiment 7), on tiny synthetic data."""

from __future__ import annotations

import csv
import json
import re
import shutil
import signal

import pytest

from cnnzoo import create_model
from cnnzoo.cli import main
from cnnzoo.errors import ConfigError
from cnnzoo.experiments import _runs
from cnnzoo.experiments.degradation import (
    check_depths,
    paper_recipe,
    run_degradation_experiment,
    verdict,
)
from cnnzoo.train.config import read_config
from test_experiment_runs import ctrl_c_in_the_first_training


# 8x8 images: the CIFAR nets' two stride-2 stages leave 2x2 maps, and an epoch takes a second
TINY = "synthetic:classes=4,channels=1,size=8,train=96,test=32"
SETTINGS = dict(data=TINY, depths=(32, 20), epochs=2, limit_train=None, limit_val=None, batch_size=16,
                threads=1, device="cpu")  # fmt: skip
MODELS = ("plain20", "resnet20", "plain32", "resnet32")


# ------------------------------------------------------------------------------------------
# the verdict, on hand-made numbers
# ------------------------------------------------------------------------------------------


def test_verdict_when_the_run_shows_what_the_paper_shows():
    line = verdict({"plain20": 0.10, "plain56": 0.15, "resnet20": 0.09, "resnet56": 0.08})
    assert line == ("degradation: plain56 training error 15.00% > plain20 10.00%; "
                    "residual: resnet56 8.00% <= resnet20 9.00% (as in the paper's Figure 6)")  # fmt: skip


def test_verdict_says_so_when_the_run_does_not_show_it():
    line = verdict({"plain20": 0.10, "plain56": 0.08, "resnet20": 0.09, "resnet56": 0.12})
    assert line.startswith("no degradation in this run: plain56 training error 8.00% <= plain20 10.00%")
    assert "resnet56 12.00% > resnet20 9.00%, the deeper ResNet did not train better" in line
    assert line.endswith("(unlike the paper's Figure 6)")
    # half of it: the plain nets degrade, the deeper ResNet trains worse too
    mixed = verdict({"plain20": 0.10, "plain56": 0.20, "resnet20": 0.09, "resnet56": 0.10})
    assert mixed.startswith("degradation: plain56") and mixed.endswith("(unlike the paper's Figure 6)")


def test_verdict_compares_the_shallowest_and_the_deepest_depth():
    errors = {"plain20": 0.1, "plain32": 0.5, "plain56": 0.2, "resnet20": 0.1, "resnet32": 0.5, "resnet56": 0.05}
    line = verdict(errors)
    assert "plain56 training error 20.00% > plain20 10.00%" in line and "resnet56 5.00% <= resnet20" in line
    assert verdict({"plain20": 0.1, "resnet20": 0.2}).startswith("one depth only")


# ------------------------------------------------------------------------------------------
# the recipe and the depths
# ------------------------------------------------------------------------------------------


def test_the_recipe_is_the_papers_compressed():
    recipe = paper_recipe(10)
    assert recipe["milestones"] == [5.0, 7.5] and recipe["schedule_unit"] == "epoch" and recipe["gamma"] == 0.1
    assert (recipe["lr"], recipe["momentum"], recipe["weight_decay"], recipe["batch_size"]) == (0.1, 0.9, 1e-4, 128)


@pytest.mark.parametrize("depth, message", [(21, "6n+2 layers"), (26, "no plain26/resnet26 pair")])
def test_a_depth_without_a_plain_residual_pair_is_a_one_line_error(depth, message, tmp_path, capsys):
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_depths([20, depth])
    assert main(["experiment", "degradation", "--depths", f"20,{depth}", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and "20, 32, 44, 56, 110" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()  # refused before any work
    assert check_depths([56, 20, 56]) == [20, 56]


# ------------------------------------------------------------------------------------------
# the whole experiment, tiny
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_experiment(tmp_path_factory):
    out = tmp_path_factory.mktemp("degradation")
    lines: list[str] = []
    rows = run_degradation_experiment(out=out, log=lines.append, **SETTINGS)
    return out, rows, lines


def test_every_net_is_trained_with_one_recipe(tiny_experiment):
    out, rows, _ = tiny_experiment
    assert [r.model for r in rows] == list(MODELS)
    configs = {m: read_config(out / m / "config.yaml") for m in MODELS}
    for model, config in configs.items():
        assert config.model == model
        recipe = (config.optimizer, config.momentum, config.weight_decay, config.schedule)
        assert recipe == ("sgd", 0.9, 1e-4, "multistep")
        assert config.milestones == [1.0, 1.5] and config.epochs == 2 and config.batch_size == 16
    recipes = [{k: v for k, v in vars(c).items() if k not in ("model", "out")} for c in configs.values()]
    assert all(recipe == recipes[0] for recipe in recipes)


def test_the_table_holds_the_runs_own_numbers(tiny_experiment):
    out, rows, _ = tiny_experiment
    assert (out / "degradation.png").stat().st_size > 10_000
    with open(out / "results.csv", newline="") as handle:
        table = {row["model"]: row for row in csv.DictReader(handle)}
    assert list(table) == ["plain20", "plain32", "resnet20", "resnet32"]  # plain nets first, as in the figure
    markdown = (out / "results.md").read_text()
    for model in MODELS:
        history = _runs.run_history(out / model)
        results = _runs.run_results(out / model)
        row = table[model]
        expected = {
            "final_train_error": 1 - history[-1]["train_top1"],
            "best_val_error": 1 - results["best_val_top1"],
            "test_error": 1 - results["top1"],
        }
        for key, value in expected.items():
            assert float(row[key]) == pytest.approx(value, abs=1e-6), (model, key)
        assert results["split"] == "test" and int(row["best_epoch"]) == results["best_epoch"]
        assert int(row["epochs"]) == len(history) == 2
        net = create_model(model, num_classes=4, in_chans=1)
        assert int(row["params"]) == sum(p.numel() for p in net.parameters())
        line = next(line for line in markdown.splitlines() if line.startswith(f"| {model} |"))
        assert _runs.percent(expected["final_train_error"]) in line and _runs.percent(expected["test_error"]) in line
        assert f"{int(row['params']):,}" in line
    # option A shortcuts have no parameters: a ResNet and its plain twin have the same count
    assert table["plain20"]["params"] == table["resnet20"]["params"] != table["resnet32"]["params"]
    errors = {model: float(row["final_train_error"]) for model, row in table.items()}
    assert verdict(errors) in markdown and "plain32" in verdict(errors)


def test_a_rerun_reuses_the_finished_runs_and_an_unfinished_one_resumes(tiny_experiment, tmp_path):
    out, rows, _ = tiny_experiment
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    before = {m: (copy / m / "metrics.csv").read_text() for m in MODELS}
    # resnet32 "stopped" before its final evaluation: its checkpoint is there, its results are not
    (copy / "resnet32" / "results.json").unlink()
    lines: list[str] = []
    again = run_degradation_experiment(out=copy, log=lines.append, **SETTINGS)
    for model in ("plain20", "resnet20", "plain32"):
        assert any(line.startswith(f"{model}: already trained") for line in lines), lines
    assert any(line.startswith("resnet32: resuming the unfinished run") for line in lines), lines
    assert not any("epoch 1/2" in line for line in lines)  # nothing trained again
    assert {m: (copy / m / "metrics.csv").read_text() for m in MODELS} == before
    assert again == rows


def test_a_finished_run_trained_otherwise_is_not_reused(tiny_experiment, tmp_path):
    out, _, _ = tiny_experiment
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    with pytest.raises(ConfigError, match=r"degradation experiment in .* made with other settings: epochs \(2 -> 3\)"):
        run_degradation_experiment(out=copy, log=lambda _: None, **dict(SETTINGS, epochs=3))
    with pytest.raises(ConfigError, match=r"limit_train \(None -> 50\)"):
        run_degradation_experiment(out=copy, log=lambda _: None, **dict(SETTINGS, limit_train=50))
    assert json.loads((copy / "plain20" / "results.json").read_text()) == _runs.run_results(out / "plain20")


# ------------------------------------------------------------------------------------------
# Ctrl-C: the experiment stops with 130, and the same command continues it
# ------------------------------------------------------------------------------------------


CLI = ["experiment", "degradation", "--data", TINY, "--depths", "20", "--epochs", "2", "--limit-train", "0",
       "--limit-val", "0", "-b", "16", "--threads", "1", "--device", "cpu"]  # fmt: skip


@pytest.mark.parametrize("when", ["end", "step 2"])
def test_ctrl_c_stops_the_experiment_with_130_and_the_same_command_continues(when, tmp_path, monkeypatch, capsys):
    """Ctrl-C just after plain20's last step (during its final test) or in the middle of its training:
    the experiment stops there with 128 + SIGINT (resnet20 is not started), and runs on when started again."""
    out = tmp_path / "out"
    handler = signal.getsignal(signal.SIGINT)
    ctrl_c_in_the_first_training(monkeypatch, when)
    assert main([*CLI, "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert "plain20: training interrupted (SIGINT); run the same command again" in err and "Traceback" not in err
    assert signal.getsignal(signal.SIGINT) is handler
    assert not (out / "resnet20").exists()
    assert _runs.finished(out / "plain20") == (when == "end")  # "step 2": a checkpoint to resume from
    assert (out / "plain20" / "last.state.pt").is_file()

    monkeypatch.undo()
    assert main([*CLI, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert ("plain20: already trained" in printed) == (when == "end")
    assert ("plain20: resuming the unfinished run" in printed) == (when == "step 2")
    for model in ("plain20", "resnet20"):
        assert len(_runs.run_history(out / model)) == 2 and _runs.finished(out / model)
    assert (out / "results.md").is_file()
