"""The command line: output of each command and one-line errors with exit code 2."""

import subprocess
import sys

import pytest

from cnnzoo.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "cnnzoo", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    "args, message",
    [
        (["summary", "vgg61"], "unknown model 'vgg61'; did you mean"),
        (["summary", "vgg16", "--input", "3x22a"], "malformed input size '3x22a'"),
        (["summary", "vgg16", "--input", "3x16x16"], "vgg16 needs inputs of at least 32x32 pixels, got 16x16"),
        (["summary", "alexnet_paper", "--input", "3x224x224"], "alexnet_paper takes only 227x227 inputs"),
        (["summary", "lenet5", "--num-classes", "-3"], "num_classes must be an integer >= 0"),
        (["summary", "lenet5", "--input", "0x32x32"], "malformed input size"),
        (["summary", "vgg16", "-o", "bogus"], "malformed model option 'bogus'"),
        (["summary", "vgg16", "--depth", "0"], "depth must be at least 1"),
        (["shape", "5", "conv:7"], "does not fit"),
        (["shape", "32", "conv:x"], "malformed layer"),
        (["experiment", "no-such-experiment"], "invalid choice"),
        (["no-such-command"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_exit_2(args, message):
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_summary_table_and_formats(capsys):
    assert main(["summary", "alexnet_paper"]) == 0
    out = capsys.readouterr().out
    assert "96x55x55" in out and "60,965,224" in out and "FLOPs = 2 x MACs" in out
    assert main(["summary", "lenet5", "--format", "csv", "--depth", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("name,type,depth")
    assert main(["summary", "zfnet", "-o", "conv345_widths=[384,384,256]", "--format", "json"]) == 0
    assert '"params": 62357608' in capsys.readouterr().out


def test_list_info_shape_compare(capsys):
    assert main(["list", "vgg1?"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == ["vgg11", "vgg13", "vgg16", "vgg19"]
    assert main(["info", "nin_cifar"]) == 0
    out = capsys.readouterr().out
    assert "Network In Network" in out and "at least 4x4" in out
    assert main(["shape", "110", "pool:3/2", "--ceil-mode"]) == 0
    assert "= 55" in capsys.readouterr().out
    assert main(["compare", "alexnet", "vgg16"]) == 0
    out = capsys.readouterr().out
    assert "+77.26M (x2.26)" in out and "vgg16" in out


def test_compare_shows_squeezenets_50x_fewer_parameters(capsys):
    """Iandola et al. 2016, Table 2: SqueezeNet matches AlexNet with 50x fewer parameters."""
    assert main(["compare", "alexnet", "squeezenet1_0"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("squeezenet1_0"))
    assert "1.25M" in row and "(x0.02)" in row  # 1.25M / 61.10M = 1/49


def test_python_dash_m_and_console_script_agree():
    result = run_cli("list", "lenet*")
    assert result.returncode == 0 and result.stdout.startswith("lenet5")


def test_experiment_without_a_name_lists_the_experiments_and_exits_2():
    result = run_cli("experiment")
    assert result.returncode == 2 and result.stderr == ""
    assert result.stdout.startswith("usage: cnnzoo experiment")
    assert "inception-module" in result.stdout and "degradation" in result.stdout


def test_build_parser_builds_every_command_by_default():
    from cnnzoo.cli import build_parser, parts_needed

    args = build_parser().parse_args(["experiment", "inception-module", "--size", "14"])
    assert args.experiment == "inception-module" and args.size == 14 and callable(args.func)
    assert parts_needed(["list", "vgg*"]) == {"command_modules": False, "experiments": False}
    assert parts_needed(["--version"]) == {"command_modules": False, "experiments": False}
    assert parts_needed(["experiment", "lesion"]) == {"command_modules": False, "experiments": True}
    for argv in ([], ["--help"], ["-h", "list"], ["train", "lenet5"], ["no-such-command"]):
        assert parts_needed(argv) == {"command_modules": True, "experiments": False}, argv
