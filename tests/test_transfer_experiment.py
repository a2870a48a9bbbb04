"""``cnnzoo experiment transfer`` (issue 7), on a tiny synthetic stand-in for Fashion-MNIST."""

from __future__ import annotations

import json

import pytest
import torch

from cnnzoo.errors import ConfigError
from cnnzoo.experiments._runs import run_history
from cnnzoo.experiments.transfer import (
    METHODS,
    RunRecord,
    epochs_to_target,
    format_table,
    run_transfer_experiment,
    targets_for,
)


TINY = "synthetic:classes=10,channels=1,size=28,train=400,test=100"


def test_epochs_to_target_is_the_first_epoch_reaching_it():
    assert epochs_to_target([0.5, 0.84, 0.86, 0.9], 0.85) == 3
    assert epochs_to_target([0.5, 0.6], 0.85) is None
    assert epochs_to_target([0.9], 0.85) == 1


def test_one_target_or_one_per_size():
    assert targets_for(0.8, [10, 50]) == {10: 0.8, 50: 0.8}
    assert targets_for([0.7, 0.9], [10, 50]) == {10: 0.7, 50: 0.9}
    with pytest.raises(ConfigError, match="2 targets for 3 sizes"):
        targets_for([0.7, 0.9], [10, 50, 500])
    with pytest.raises(ConfigError, match="fraction in"):
        targets_for(85, [10])


def test_table_has_a_row_per_method_and_columns_per_size():
    records = [RunRecord(m, n, s, 0.5 + 0.1 * s, 0.5, 2 if s else None, [0.4, 0.6], 1.0, 10, 100)
               for m in ("scratch", "all") for n in (10, 50) for s in (0, 1)]  # fmt: skip
    records[0].val_top1 = [0.4, 0.5]  # scratch, 10 per class, seed 0: never reaches 60%
    table = format_table(records, [10, 50], [0.6, 0.85], ["scratch", "all"])
    lines = table.splitlines()
    assert len(lines) == 4 and "10/class: test top-1 | epochs to 60%" in lines[0] and "epochs to 85%" in lines[0]
    assert "55.0 ± 7.1%" in lines[2] and "| 2 (1/2 runs) |" in lines[2] and "not reached" in lines[2]


@pytest.fixture(scope="module")
def tiny_experiment(tmp_path_factory):
    out = tmp_path_factory.mktemp("experiment")
    lines = []
    torch.set_num_threads(3)  # the experiment trains with --threads 1 (its default), then gives torch its 3 back
    records = run_transfer_experiment(data=TINY, sizes=(3,), val_per_class=4, pretrain_epochs=1, epochs=2,
                                      batch_size=4, target=0.5, seeds=(0,), out=out, device="cpu", log=lines.append)  # fmt: skip
    lines.append(f"threads after: {torch.get_num_threads()}")
    return out, records, lines


def test_the_experiment_trains_every_method_and_reports(tiny_experiment):
    out, records, lines = tiny_experiment
    assert [r.method for r in records] == list(METHODS)
    assert all(r.per_class == 3 and len(r.val_top1) == 2 and 0.0 <= r.test_top1 <= 1.0 for r in records)
    by_method = {r.method: r for r in records}
    assert by_method["scratch"].trainable_params == by_method["all"].trainable_params
    assert by_method["new-fc"].trainable_params == 5 * 5 + 5  # one linear layer on the 5 old outputs
    assert by_method["head"].trainable_params == 84 * 5 + 5  # LeNet-5's output layer on F6's 84 units
    assert (out / "results.csv").read_text().count("\n") == 1 + len(METHODS)
    assert (out / "transfer.png").stat().st_size > 0 and "from scratch" in (out / "results.md").read_text()
    # the fine-tuned runs start from the pretrained network: its frozen first layer is unchanged
    transfer = json.loads((out / "last-3pc-seed0" / "run.json").read_text())["transfer"]
    assert transfer["source"].endswith("pretrain-lenet5-seed0") and transfer["frozen"][0] == "features.0"
    assert any("pretrained lenet5" in line for line in lines)


def test_torchs_thread_count_is_restored(tiny_experiment):
    assert tiny_experiment[2][-1] == "threads after: 3"


def test_finished_runs_are_not_run_again(tiny_experiment):
    out, records, _ = tiny_experiment
    stamp = (out / "all-3pc-seed0" / "experiment.json").stat().st_mtime_ns
    again = run_transfer_experiment(data=TINY, sizes=(3,), val_per_class=4, pretrain_epochs=1, epochs=2,
                                    batch_size=4, target=0.5, seeds=(0,), out=out, device="cpu", log=lambda _: None)  # fmt: skip
    assert [r.test_top1 for r in again] == [r.test_top1 for r in records]
    assert (out / "all-3pc-seed0" / "experiment.json").stat().st_mtime_ns == stamp


def test_cli_errors_are_one_line(capsys, tmp_path):
    from cnnzoo.cli import main

    assert main(["experiment", "transfer", "--data", TINY, "--methods", "scratch,magic", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown method 'magic'" in err and err.count("\n") == 1
    assert main(["experiment", "transfer", "--data", TINY, "--source-classes", "0-5", "--target-classes", "5-9",
                 "--out", str(tmp_path)]) == 2  # fmt: skip
    assert "overlap" in capsys.readouterr().err


@pytest.mark.parametrize("kind, interrupted", [("train", "pretrain-lenet5-seed0"), ("finetune", "all-3pc-seed0")])
def test_an_interrupted_training_is_resumed_by_the_same_command(kind, interrupted, tmp_path, monkeypatch, capsys):
    """Ctrl-C in the pretraining, or in the first fine-tuning: exit 130, a checkpoint; the same command
    resumes that run (nothing deleted, no --resume needed) and goes on."""
    from cnnzoo.cli import main
    from test_experiment_runs import ctrl_c_in_the_first_training

    argv = ["experiment", "transfer", "--data", TINY, "--sizes", "3", "--val-per-class", "4", "--pretrain-epochs",
            "2", "--epochs", "2", "--batch-size", "4", "--target", "0.5", "--methods", "scratch,all", "--device",
            "cpu", "--out", str(tmp_path / "out")]  # fmt: skip
    ctrl_c_in_the_first_training(monkeypatch, "step 2", kind=kind)
    assert main(argv) == 130
    assert "training interrupted (SIGINT); run the same command again" in capsys.readouterr().err
    run_dir = tmp_path / "out" / interrupted
    assert (run_dir / "last.state.pt").is_file() and not (run_dir / "results.json").exists()
    monkeypatch.undo()
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "resuming the unfinished run in" in printed and str(run_dir) in printed
    assert (run_dir / "results.json").is_file() and len(run_history(run_dir)) == 2  # resumed, not started again
    records = [json.loads((tmp_path / "out" / f"{m}-3pc-seed0" / "experiment.json").read_text())
               for m in ("scratch", "all")]  # fmt: skip
    assert [len(r["val_top1"]) for r in records] == [2, 2]
