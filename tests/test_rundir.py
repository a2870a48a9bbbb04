"""The run directory: a user's files are never overwritten, failed starts leave nothing, umask, load_run."""

from __future__ import annotations

import json
import os
import stat

import pytest
import torch

from cnnzoo import cli
from cnnzoo.errors import CnnzooError
from cnnzoo.modelspec import ModelSpec
from cnnzoo.rundir import OutputDirError, RunDir, SettingsChanged, check_same_settings
from cnnzoo.train.engine import fit
from cnnzoo.train.runs import load_run

SYN = "synthetic:classes=3,channels=1,size=16,train=24,test=12"
QUICK = dict(batch_size=12, progress=False, verbose=False, epochs=1)


def test_a_folder_with_the_users_files_is_refused_and_left_as_it_was(tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    for name in ("config.yaml", "metrics.csv", "notes.txt"):
        (folder / name).write_text(f"my {name}\n")
    code = cli.main(["train", "lenet5", "--data", SYN, "--epochs", "1", "--out", str(folder), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "not a cnnzoo run directory" in err
    assert sorted(p.name for p in folder.iterdir()) == ["config.yaml", "metrics.csv", "notes.txt"]
    assert (folder / "config.yaml").read_text() == "my config.yaml\n"
    # --resume does not make it a run either
    assert cli.main(["train", "lenet5", "--data", SYN, "--out", str(folder), "--resume"]) == 2
    assert (folder / "metrics.csv").read_text() == "my metrics.csv\n"


def test_a_run_of_another_kind_is_refused(tmp_path):
    run = RunDir.open(tmp_path / "exp", "experiment:degradation")
    run.start({"settings": {}})
    with pytest.raises(OutputDirError, match="holds a experiment:degradation run"):
        RunDir.open(tmp_path / "exp", "train")
    with pytest.raises(OutputDirError, match="not a train run"):
        RunDir.open(tmp_path / "exp", "train", resume=True)


class BrokenNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(1, 3)

    def forward(self, x):
        raise CnnzooError("broken on purpose")


def test_a_failed_start_leaves_nothing_behind(tmp_path, capsys):
    out = tmp_path / "deep" / "run"
    # an unknown data set fails after the run directory was checked: nothing may be created
    code = cli.main(["train", "lenet5", "--data", "nosuchdata", "--out", str(out)])
    assert code == 2 and not (tmp_path / "deep").exists()
    # a failure after the folder was made (in the first forward pass) removes it again
    with pytest.raises(CnnzooError, match="broken on purpose"):
        fit(BrokenNet(), data=SYN, out=str(out), **QUICK)
    assert not (tmp_path / "deep").exists()


def test_default_run_folder_appears_only_when_training_starts(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "lenet5", "--data", "nosuchdata"]) == 2
    assert not (tmp_path / "runs").exists()


def test_files_get_the_users_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        result = fit("lenet5", data=SYN, out=str(tmp_path / "run"), **QUICK)
    finally:
        os.umask(previous)
    for name in ("run.json", "config.yaml", "metrics.csv", "last.safetensors", "last.state.pt", "results.json"):
        mode = stat.S_IMODE((result.run_dir / name).stat().st_mode)
        assert mode == 0o644, (name, oct(mode))


def test_settings_guard_names_every_differing_key():
    with pytest.raises(SettingsChanged, match=r"lr \(0.1 -> 0.2\), seed \(0 -> 1\)") as info:
        check_same_settings({"lr": 0.1, "seed": 0, "epochs": 3}, {"lr": 0.2, "seed": 1, "epochs": 3.0}, "x")
    assert info.value.keys == ["lr", "seed"]
    check_same_settings({"lr": 0.1}, {"lr": 0.1, "out": "y"}, "x", ignore=("out",))


def test_load_run_rebuilds_the_model_with_its_options(tmp_path):
    result = fit("resnet20", data=SYN, out=str(tmp_path / "run"), model_kwargs={"shortcut": "B"}, max_steps=1,
                 **QUICK)  # fmt: skip
    record = json.loads((result.run_dir / "run.json").read_text())
    assert record["kind"] == "train"
    assert record["spec"] == {"name": "resnet20", "options": {"shortcut": "B"}, "num_classes": 3, "in_chans": 1,
                              "transforms": []}  # fmt: skip
    loaded = load_run(result.run_dir, device="cpu")
    assert loaded.checkpoint == "best"
    plain = ModelSpec("resnet20", num_classes=3, in_chans=1).build()
    # option B projects shortcuts with 1x1 convolutions: keys the default (A) lacks
    assert set(loaded.model.state_dict()) != set(plain.state_dict())
    x = torch.randn(2, 1, 16, 16)
    assert loaded.model(x).shape == (2, 3)


def test_a_bad_model_option_is_one_line_naming_the_nearest(tmp_path, capsys):
    out = tmp_path / "r"
    cases = [
        (["-o", "stride_in_1=true"], "did you mean stride_in_1x1"),
        (["-o", "stride_in_1x1=yes"], "takes true or false"),
        (["-o", "stride_in_1x1=1"], "takes true or false"),
        (["-o", "norm=[1,2"], "cannot read the value"),
        (["-o", "=3"], "malformed model option"),
        (["--set", "model=vgg16"], "the model is given as the command's argument"),
    ]
    for flags, message in cases:
        code = cli.main(["train", "resnet50", "--data", SYN, "--out", str(out), *flags])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and message in err, (flags, err)
        assert not out.exists()


def test_finetune_takes_checked_model_options_and_records_them(tmp_path, capsys):
    source = fit("resnet20", data=SYN, out=str(tmp_path / "src"), max_steps=1, **QUICK)
    out = tmp_path / "ft"
    code = cli.main(["finetune", "--from", str(source.run_dir), "--data", SYN, "--mode", "all", "-o",
                     "drop_path_rate=0.1", "--epochs", "1", "--max-steps", "1", "-b", "12", "--out", str(out),
                     "--no-progress"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    spec = json.loads((out / "run.json").read_text())["spec"]
    assert spec["name"] == "resnet20" and spec["options"]["drop_path_rate"] == 0.1
    assert load_run(out, device="cpu").model(torch.randn(2, 1, 16, 16)).shape == (2, 3)
