"""Checkpoints that survive: atomic writes, exact resume, changed configs, corrupt files."""

from __future__ import annotations

import os

import pytest
import safetensors.torch
import torch
from torch import nn

from cnnzoo import cli
from cnnzoo.errors import ConfigError
from cnnzoo import rundir
from cnnzoo.errors import CnnzooError
from cnnzoo.train import checkpoint as ckpt
from cnnzoo.train.engine import fit

SYN = "synthetic:classes=4,channels=1,size=32,train=96,test=32"


class DropoutNet(nn.Module):
    """BN buffers and dropout: resuming must restore running statistics and the RNG."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 6, 3, stride=2), nn.BatchNorm2d(6), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.5), nn.Linear(6, 4))  # fmt: skip

    def forward(self, x):
        return self.body(x)


def _same_weights(dir_a, dir_b, tag="last") -> bool:
    a = safetensors.torch.load_file(str(dir_a / f"{tag}.safetensors"))
    b = safetensors.torch.load_file(str(dir_b / f"{tag}.safetensors"))
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def dropout_net_name():
    """DropoutNet registered under a private name for one test (the CLI builds models by name)."""
    from cnnzoo.models.lenet import LENET_PAPER
    from cnnzoo.registry import _REGISTRY, register_model

    name = "_test_dropout_net"

    def builder(num_classes=4, in_chans=1):
        return DropoutNet()

    builder.__name__ = name
    register_model(family="test", paper=LENET_PAPER, input_size=(1, 32, 32), num_classes=4, min_size=3)(builder)
    yield name
    _REGISTRY.pop(name, None)


def test_cli_stop_after_epochs_then_resume_is_bitwise_exact(tmp_path, dropout_net_name):
    name = dropout_net_name
    base = ["train", name, "--data", SYN, "--epochs", "3", "-b", "32", "--deterministic", "--no-progress",
            "--lr", "0.05"]  # fmt: skip
    assert cli.main(base + ["--out", str(tmp_path / "whole")]) == 0
    assert cli.main(base + ["--out", str(tmp_path / "cut"), "--stop-after-epochs", "1"]) == 0
    state = torch.load(tmp_path / "cut" / "last.state.pt", weights_only=True)
    assert state["epoch"] == 1
    assert not _same_weights(tmp_path / "whole", tmp_path / "cut")
    # resume with only the run directory: the saved configuration supplies the rest
    assert cli.main(["train", name, "--out", str(tmp_path / "cut"), "--resume", "--no-progress"]) == 0
    assert _same_weights(tmp_path / "whole", tmp_path / "cut")
    assert _same_weights(tmp_path / "whole", tmp_path / "cut", tag="best")
    whole = (tmp_path / "whole" / "metrics.csv").read_text().splitlines()
    cut = (tmp_path / "cut" / "metrics.csv").read_text().splitlines()
    assert len(cut) == len(whole) == 4  # header + 3 epochs, no duplicated rows
    strip = lambda line: line.split(",")[:9]  # noqa: E731  (without throughput and seconds)
    assert [strip(r) for r in cut] == [strip(r) for r in whole]


def test_resume_restores_rng_and_bn_buffers(tmp_path):
    common = dict(data=SYN, epochs=3, batch_size=32, deterministic=True, progress=False, verbose=False)
    torch.manual_seed(3)
    fit(DropoutNet(), out=str(tmp_path / "whole"), **common)
    torch.manual_seed(3)
    first = fit(DropoutNet(), out=str(tmp_path / "cut"), stop_after_epochs=2, **common)
    assert first.status == "stopped" and first.epochs_done == 2
    torch.manual_seed(12345)  # a different global RNG state: the checkpoint must restore it
    fit(DropoutNet(), out=str(tmp_path / "cut"), resume=True, **common)
    assert _same_weights(tmp_path / "whole", tmp_path / "cut")


def test_checkpoint_files_are_safetensors_and_weights_only(tmp_path):
    model = DropoutNet()
    state = {"epoch": 4, "step": 40, "rng": ckpt.rng_states(), "optimizer": torch.optim.SGD(model.parameters(), 0.1,
             momentum=0.9).state_dict(), "history": [{"epoch": 1, "val_top1": 0.5}]}  # fmt: skip
    ckpt.save_checkpoint(tmp_path, "last", model, state)
    tensors = safetensors.torch.load_file(str(tmp_path / "last.safetensors"))
    assert set(tensors) == set(model.state_dict())
    loaded = torch.load(tmp_path / "last.state.pt", weights_only=True)
    assert loaded["epoch"] == 4 and loaded["history"][0]["val_top1"] == 0.5
    after_save = torch.rand(3)
    torch.rand(5)
    ckpt.set_rng_states(loaded["rng"])  # the saved RNG state replays the numbers drawn after the save
    assert torch.equal(torch.rand(3), after_save)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_a_kill_during_a_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    model = DropoutNet()
    ckpt.save_checkpoint(tmp_path, "last", model, {"epoch": 1})
    good_weights = (tmp_path / "last.safetensors").read_bytes()
    good_state = (tmp_path / "last.state.pt").read_bytes()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)

    def killed(fd):  # the process dies while the temporary file is being flushed
        raise KeyboardInterrupt

    monkeypatch.setattr(rundir.os, "fsync", killed)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(tmp_path, "last", model, {"epoch": 2})
    monkeypatch.undo()
    assert (tmp_path / "last.safetensors").read_bytes() == good_weights
    assert (tmp_path / "last.state.pt").read_bytes() == good_state
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    tensors, state = ckpt.load_checkpoint(tmp_path, "last")
    assert state["epoch"] == 1


def test_a_pair_from_two_saves_is_reported_incomplete(tmp_path):
    model = DropoutNet()
    ckpt.save_checkpoint(tmp_path, "last", model, {"epoch": 1})
    old_state = (tmp_path / "last.state.pt").read_bytes()
    ckpt.save_checkpoint(tmp_path, "last", model, {"epoch": 2})
    (tmp_path / "last.state.pt").write_bytes(old_state)  # as if killed between the two renames
    with pytest.raises(ckpt.CheckpointError, match="incomplete"):
        ckpt.load_checkpoint(tmp_path, "last")


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("stopped") / "run"
    fit(DropoutNet(), data=SYN, epochs=3, batch_size=32, out=str(out), stop_after_epochs=1, progress=False,
        verbose=False)  # fmt: skip
    return out


def test_resume_with_a_changed_config_names_the_keys(stopped_run):
    before = (stopped_run / "last.safetensors").read_bytes()
    with pytest.raises(ConfigError, match=r"other settings: batch_size \(32 -> 16\), lr \(0.1 -> 0.5\)"):
        fit(DropoutNet(), data=SYN, epochs=3, batch_size=16, lr=0.5, out=str(stopped_run), resume=True,
            progress=False, verbose=False)  # fmt: skip
    assert (stopped_run / "last.safetensors").read_bytes() == before


def test_corrupt_checkpoint_is_a_one_line_error(stopped_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "corrupt"
    shutil.copytree(stopped_run, run)
    weights = run / "last.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ckpt.CheckpointError, match="corrupt or truncated"):
        fit(DropoutNet(), data=SYN, out=str(run), resume=True, progress=False, verbose=False)
    (run / "last.state.pt").write_bytes(b"garbage")
    with pytest.raises(ckpt.CheckpointError, match="last.state.pt is corrupt"):
        ckpt.load_state(run / "last.state.pt")
    # from the command line: exit code 2, one line
    assert cli.main(["eval", str(run), "--checkpoint", "last"]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "corrupt or truncated" in err


def test_resume_without_a_checkpoint_says_so(tmp_path):
    with pytest.raises(CnnzooError, match="no checkpoint in"):
        fit(DropoutNet(), data=SYN, out=str(tmp_path / "empty"), resume=True, progress=False, verbose=False)


def test_the_printed_resume_command_continues_a_run_with_model_options(tmp_path, capsys):
    """The stop message gives the model and its ``-o`` options, and that command resumes the run;
    without the ``-o`` the options come from the run's config.yaml; other options are refused."""
    import shlex

    out = tmp_path / "run"
    args = ["train", "cnn3", "-o", "norm=bn", "--data", SYN, "--epochs", "3", "-b", "32", "--no-progress",
            "--stop-after-epochs", "1", "--out", str(out)]  # fmt: skip
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    arguments = printed.split("continue with the same command and: ", 1)[1].splitlines()[0]
    assert arguments == f"cnn3 -o norm=bn --resume --out {shlex.quote(str(out))}"
    assert cli.main(["train", *shlex.split(arguments), "--no-progress", "--stop-after-epochs", "1"]) == 0
    assert torch.load(out / "last.state.pt", weights_only=True)["epoch"] == 2
    capsys.readouterr()
    assert cli.main(["train", "cnn3", "-o", "norm=none", "--resume", "--out", str(out), "--no-progress"]) == 2
    assert "model_kwargs ({'norm': 'bn'} -> {'norm': 'none'})" in capsys.readouterr().err
    assert cli.main(["train", "cnn3", "--resume", "--out", str(out), "--no-progress"]) == 0
    assert torch.load(out / "last.state.pt", weights_only=True)["epoch"] == 3
