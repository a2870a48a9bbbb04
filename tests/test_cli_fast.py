"""The quick command line: --help, --version, list, info and shape never import torch.

Each command runs as ``python -m cnnzoo ...`` in a fresh interpreter under a probe that
records, at exit, whether torch (or any ``torch.*``) was imported, and if so the cnnzoo
source lines on the stack when it was first asked for.  No timing is asserted.  The same
probe can send the process a real SIGINT when a given module is first imported, which is
how Ctrl-C during start-up is tested without racing a timer.
"""

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import cnnzoo
from cnnzoo import model_index
from cnnzoo.cli import COMMAND_MODULES
from cnnzoo.errors import UnknownModelError
from cnnzoo.registry import _REGISTRY, list_models, model_info

ROOT = Path(__file__).resolve().parent.parent

# Runs `python -m cnnzoo ARGS` (runpy, exactly as -m does) with a meta-path spy in front.
PROBE = r"""
import json, os, runpy, signal, sys, traceback

report_path = os.environ["CNNZOO_PROBE_REPORT"]
interrupt_on = os.environ.get("CNNZOO_PROBE_SIGINT_ON")
report = {"torch_requested_from": None}


class Spy:
    def find_spec(self, name, path=None, target=None):
        if (name == "torch" or name.startswith("torch.")) and report["torch_requested_from"] is None:
            report["torch_requested_from"] = [
                f"{f.filename}:{f.lineno}" for f in traceback.extract_stack() if "cnnzoo" in f.filename
            ]
        if name == interrupt_on:
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, delivered inside this import
        return None


sys.meta_path.insert(0, Spy())
try:
    runpy.run_module("cnnzoo", run_name="__main__", alter_sys=True)
finally:
    report["torch_imported"] = any(m == "torch" or m.startswith("torch.") for m in sys.modules)
    report["cnnzoo_modules"] = sorted(m for m in sys.modules if m == "cnnzoo" or m.startswith("cnnzoo."))
    with open(report_path, "w") as handle:
        json.dump(report, handle)
"""


def probe(tmp_path, *args, sigint_on=None):
    """Run ``python -m cnnzoo *args`` under the probe: (CompletedProcess, report dict)."""
    report_path = tmp_path / "probe.json"
    env = dict(os.environ, CNNZOO_PROBE_REPORT=str(report_path), OMP_NUM_THREADS="1")
    if sigint_on:
        env["CNNZOO_PROBE_SIGINT_ON"] = sigint_on
    result = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=300,
                            env=env, cwd=tmp_path)  # fmt: skip
    report = json.loads(report_path.read_text())
    return result, report


def assert_no_torch(report):
    assert not report["torch_imported"], f"torch was imported; first asked for from {report['torch_requested_from']}"


def test_quick_commands_never_import_torch(tmp_path):
    index_names = list_models(from_index=True)
    cases = {
        ("--version",): lambda out: out == f"cnnzoo {cnnzoo.__version__}\n",
        ("list",): lambda out: [line.split()[0] for line in out.splitlines()] == index_names,
        ("list", "vgg*"): lambda out: {"vgg11", "vgg16", "vgg16_bn", "vgg19_bn"}
        <= {line.split()[0] for line in out.splitlines()}
        and all(line.startswith("vgg") for line in out.splitlines()),
        ("info", "vgg16"): lambda out: "paper:        Very Deep Convolutional Networks" in out
        and "sizes accepted: at least 32x32" in out
        and "num classes:  1000" in out,
        ("info", "lenet5"): lambda out: "pretrained:   lenet5.fashion_mnist" in out,
        ("list", "--pretrained"): lambda out: out.startswith("tag ") and "lenet5.fashion_mnist" in out
        and "cnnzoo train lenet5 --data fashion-mnist" in out,
        ("list", "lenet5", "--pretrained"): lambda out: "lenet5.fashion_mnist" in out and "fastnet" not in out,
        ("shape", "224", "conv:11/4/2"): lambda out: "conv 11x11/4 pad 2: floor((224 + 2*2 - 11) / 4) + 1 = 55" in out,
    }
    for args, check in cases.items():
        result, report = probe(tmp_path, *args)
        assert result.returncode == 0, (args, result.stderr)
        assert result.stderr == "", (args, result.stderr)
        assert check(result.stdout), (args, result.stdout)
        assert_no_torch(report)
        assert not [m for m in report["cnnzoo_modules"] if m.startswith(("cnnzoo.models", "cnnzoo.experiments"))]


def test_info_of_an_unknown_model_is_one_line_exit_2_without_torch(tmp_path):
    result, report = probe(tmp_path, "info", "qqqzzzxx")
    assert result.returncode == 2
    assert result.stderr == "cnnzoo: error: unknown model 'qqqzzzxx'; see `cnnzoo list`\n"
    assert result.stdout == ""
    assert_no_torch(report)
    result, report = probe(tmp_path, "info", "resnet5O")
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("cnnzoo: error: unknown model 'resnet5O'; did you mean ")
    assert "resnet50" in result.stderr
    assert_no_torch(report)


def test_no_arguments_prints_the_help_to_stdout_and_exits_2(tmp_path):
    result, _ = probe(tmp_path)
    assert result.returncode == 2
    assert result.stdout.startswith("usage: cnnzoo")
    assert "list registered models" in result.stdout and "experiment" in result.stdout
    assert result.stderr == ""


def test_help_lists_every_command_without_importing_experiments(tmp_path):
    result, report = probe(tmp_path, "--help")
    assert result.returncode == 0 and result.stderr == ""
    for command in ("list", "info", "summary", "shape", "compare", "experiment", "train", "finetune"):
        assert f"\n    {command}" in result.stdout, command
    assert "exits with status 2" in result.stdout  # the documented no-argument behaviour
    assert not [m for m in report["cnnzoo_modules"] if m.startswith("cnnzoo.experiments")]


def test_help_does_not_import_torch(tmp_path):
    _, report = probe(tmp_path, "--help")
    if report["torch_imported"]:
        # --help imports COMMAND_MODULES to list their commands; while one of them (or its
        # package) still imports torch at import time, that is theirs to fix, not the CLI's
        stack = report["torch_requested_from"] or []
        for module in COMMAND_MODULES:
            package = f"{os.sep}{module.split('.')[1]}{os.sep}"  # cnnzoo.train.commands -> /train/
            frames = [frame for frame in stack if package in frame]
            if frames:
                where = os.path.relpath(frames[0].rpartition(":")[0], ROOT) + ":" + frames[0].rpartition(":")[2]
                pytest.xfail(f"importing {module} imports torch (first at {where})")
    assert_no_torch(report)


@pytest.mark.parametrize(
    "args, interrupt_on",
    [
        (["train", "lenet5", "--data", "synthetic", "--out", "run"], "torch"),  # while torch is imported
        (["train", "lenet5", "--data", "synthetic", "--out", "run"], "cnnzoo.train.commands"),  # parser building
        (["experiment", "inception-module"], "cnnzoo.experiments"),  # building the experiment sub-parsers
        (["summary", "lenet5"], "torch"),  # in the handler
        (["list"], "cnnzoo.model_index"),  # in a quick handler
    ],
)
def test_ctrl_c_during_start_up_is_one_line_exit_130(tmp_path, args, interrupt_on):
    result, _ = probe(tmp_path, *args, sigint_on=interrupt_on)
    assert (result.returncode, result.stderr, result.stdout) == (130, "cnnzoo: interrupted\n", "")
    assert not (tmp_path / "run").exists()


def test_version_is_the_projects():
    with open(ROOT / "pyproject.toml", "rb") as handle:
        assert cnnzoo.__version__ == tomllib.load(handle)["project"]["version"]


# ------------------------------------------------------------------------------------------
# the metadata index
# ------------------------------------------------------------------------------------------


def test_shipped_model_index_is_in_sync_with_the_registry():
    problems = model_index.differences()
    assert not problems, (
        f"{model_index.INDEX_PATH} is out of date ({'; '.join(problems)}): regenerate it with "
        f"`{model_index.REGENERATE}` and commit it"
    )


def _shipped(names):
    """Names the index holds: models registered at run time (by other tests) are not shipped."""
    return [n for n in names if _REGISTRY[n].builder.__module__.startswith("cnnzoo.models.")]


def test_index_and_live_registry_give_the_same_answers():
    for pattern, family in [("*", None), ("vgg*", None), ("*_bn", None), ("resnet?", None), ("*", "alexnet"),
                            ("*", "inception"), ("no_such_*", None), ("*", "no-such-family")]:  # fmt: skip
        assert list_models(pattern, family, from_index=True) == _shipped(list_models(pattern, family)), pattern
    for name in list_models(from_index=True):
        indexed, live = model_info(name, from_index=True), model_info(name)
        assert indexed == live, name  # every field but the builder
        assert indexed.builder is None
    for wrong in ("vgg61", "nosuchmodel", "resnet5O"):
        with pytest.raises(UnknownModelError) as from_index:
            model_info(wrong, from_index=True)
        with pytest.raises(UnknownModelError) as from_live:
            model_info(wrong)
        assert str(from_index.value) == str(from_live.value)


def test_index_check_names_what_is_missing(tmp_path, capsys):
    data = json.loads(model_index.INDEX_PATH.read_text(encoding="utf-8"))
    del data["models"]["vgg16"]
    data["models"]["alexnet"]["min_size"] = 1
    stale = tmp_path / "index.json"
    stale.write_text(json.dumps(data), encoding="utf-8")
    assert model_index.differences(stale) == [
        "registered but not in the index: vgg16",
        "records that differ: alexnet",
    ]
    assert model_index.main(["--check", "--path", str(stale)]) == 1
    assert model_index.REGENERATE in capsys.readouterr().err
    assert model_index.main(["--path", str(stale)]) == 0  # regenerating fixes it
    assert model_index.differences(stale) == []


def test_a_stale_or_missing_index_falls_back_to_the_live_registry(tmp_path, monkeypatch, capsys):
    data = json.loads(model_index.INDEX_PATH.read_text(encoding="utf-8"))
    data["family_modules"].remove("vgg")  # as if vgg.py were a new family file
    stale = tmp_path / "index.json"
    stale.write_text(json.dumps(data), encoding="utf-8")
    for path, why in ((stale, "new vgg"), (tmp_path / "missing.json", "unreadable")):
        monkeypatch.setattr(model_index, "INDEX_PATH", path)
        monkeypatch.setattr(model_index, "_loaded", None)
        assert model_info("vgg16", from_index=True) is model_info("vgg16")
        note = capsys.readouterr().err
        assert note.startswith("cnnzoo: note: the model index") and why in note and model_index.REGENERATE in note
        assert len(note.splitlines()) == 1
