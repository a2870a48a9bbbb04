"""``cnnzoo.experiments._runs.train_once``: what every run-comparing experiment relies on."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from cnnzoo.experiments._runs import ExperimentInterrupted, markdown_table, train_once


def test_a_finished_run_is_not_trained_again(tmp_path):
    (tmp_path / "results.json").write_text("{}")
    calls = []
    assert train_once(tmp_path, lambda resume: calls.append(resume), log=lambda _: None) is False
    assert calls == []


def test_resumes_from_a_checkpoint_and_restarts_a_run_without_one(tmp_path):
    with_checkpoint, without = tmp_path / "a", tmp_path / "b"
    with_checkpoint.mkdir()
    (with_checkpoint / "last.state.pt").write_bytes(b"")
    without.mkdir()
    (without / "metrics.csv").write_text("epoch\n")  # stopped before its first checkpoint
    seen = {}
    assert train_once(with_checkpoint, lambda resume: seen.setdefault("a", resume), log=lambda _: None)
    assert train_once(without, lambda resume: seen.setdefault("b", resume), log=lambda _: None)
    assert seen == {"a": True, "b": False}
    assert not without.exists()  # the leftover folder was cleared so the engine can start afresh


def test_an_interrupted_training_stops_the_experiment_with_its_exit_code(tmp_path):
    interrupted = SimpleNamespace(status="interrupted", signal="SIGTERM", exit_code=143)
    with pytest.raises(ExperimentInterrupted, match="SIGTERM.*run the same command again") as error:
        train_once(tmp_path / "run", lambda resume: interrupted, log=lambda _: None, what="resnet20")
    assert error.value.exit_code == 143
    completed = SimpleNamespace(status="completed", signal=None, exit_code=0)
    assert train_once(tmp_path / "other", lambda resume: completed, log=lambda _: None) is True


def test_markdown_table_aligns_numbers_right():
    table = markdown_table(["net", "error"], [["resnet20", "8.75%"]])
    assert table.splitlines() == ["| net | error |", "|---|---:|", "| resnet20 | 8.75% |"]
