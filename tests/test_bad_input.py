"""Every command fed malformed values: one line on stderr, exit code 2, no traceback, nothing written.

Each row is a command line (``{run}`` is a trained run directory, ``{tmp}`` a scratch folder,
``{png}`` a real image) and a piece of the message it must print.
"""

from __future__ import annotations

import pytest

from cnnzoo import cli

SYN = "synthetic:classes=3,channels=1,size=16,train=24,test=12"

CASES = [
    # train: configuration values
    (["train", "lenet5", "--data", SYN, "--epochs", "three"], "invalid value 'three' for epochs"),
    (["train", "lenet5", "--data", SYN, "--epochs", "0"], "epochs must be >= 1"),
    (["train", "lenet5", "--data", SYN, "--lr", "-1"], "learning rate must be > 0"),
    (["train", "lenet5", "--data", SYN, "--batch-size", "1.5"], "invalid value '1.5' for batch_size"),
    (["train", "lenet5", "--data", SYN, "--optimizer", "adam"], "unknown optimizer 'adam'"),
    (["train", "lenet5", "--data", SYN, "--schedule", "linear"], "unknown schedule 'linear'"),
    (["train", "lenet5", "--data", SYN, "--amp", "fp8"], "amp must be one of"),
    (["train", "lenet5", "--data", SYN, "--device", "tpu"], "device must be cpu, cuda or auto"),
    (["train", "lenet5", "--data", SYN, "--input-size", "axb"], "invalid value 'axb' for input_size"),
    (["train", "lenet5", "--data", SYN, "--input-size", "8x8"], "lenet5"),
    (["train", "lenet5", "--data", SYN, "--val-fraction", "1.5"], "val_fraction must be in [0, 1)"),
    (["train", "lenet5", "--data", SYN, "--label-smoothing", "2"], "label_smoothing must be in [0, 1)"),
    (["train", "lenet5", "--data", SYN, "--limit-train", "0"], "limit_train must be >= 1"),
    (["train", "lenet5", "--data", SYN, "--threads", "-2"], "threads must be >= 1"),
    (["train", "lenet5", "--data", SYN, "--grad-clip", "0"], "grad_clip must be > 0"),
    (["train", "lenet5", "--data", SYN, "--set", "nosuchkey=1"], "unknown key 'nosuchkey'"),
    (["train", "lenet5", "--data", SYN, "--set", "epoch=3"], "did you mean epochs"),
    (["train", "lenet5", "--data", SYN, "--set", "noequals"], "--set takes key=value"),
    (["train", "lenet5", "--data", SYN, "--set", "model=vgg16"], "given as the command's argument"),
    (["train", "lenet5", "--data", SYN, "-c", "nosuchrecipe"], "unknown recipe 'nosuchrecipe'"),
    (["train", "lenet5", "--data", SYN, "-c", "{tmp}/missing.yaml"], "not found"),
    (["train", "lenet5", "--data", SYN, "-c", "{tmp}/list.yaml"], "must be a mapping"),
    (["train", "lenet5", "--data", SYN, "-c", "{tmp}/broken.yaml"], "not valid YAML"),
    (["train", "nosuchnet", "--data", SYN], "nosuchnet"),
    (["train", "lenet5", "--data", "nosuchdata"], "unknown data set 'nosuchdata'"),
    (["train", "lenet5", "--data", "synthetic:classes=x"], "synthetic"),
    (["train", "lenet5", "--data", "fashion-mnist", "--data-dir", "{tmp}/nowhere"], "does not exist"),
    (["train", "lenet5", "--data", "imagefolder"], "needs a directory"),
    (["train", "lenet5", "--data", SYN, "--device", "cuda"], "no CUDA GPU"),
    # train: model options
    (["train", "resnet20", "--data", SYN, "-o", "shortcut=B", "-o", "zero_init=true"], "no option 'zero_init'"),
    (["train", "resnet20", "--data", SYN, "-o", "zero_init_residual=maybe"], "takes true or false"),
    (["train", "resnet20", "--data", SYN, "-o", "num_classes=3"], "set from the data set"),
    (["train", "resnet20", "--data", SYN, "-o", "norm=[1,2"], "cannot read the value"),
    (["train", "resnet20", "--data", SYN, "-o", "novalue"], "malformed model option"),
    # train: the run directory
    (["train", "lenet5", "--data", SYN, "--out", "{tmp}/userfiles"], "not a cnnzoo run directory"),
    (["train", "lenet5", "--data", SYN, "--out", "{tmp}/afile"], "is a file"),
    (["train", "lenet5", "--data", SYN, "--out", "{run}"], "already holds a run"),
    (["train", "lenet5", "--data", SYN, "--out", "{tmp}/none", "--resume"], "no checkpoint"),
    (["train", "lenet5", "--data", SYN, "--out", "{run}", "--resume", "--lr", "0.5"], "other settings: lr"),
    # eval
    (["eval", "{tmp}/nowhere"], "not found"),
    (["eval", "{tmp}/userfiles"], "a cnnzoo run directory?"),
    (["eval", "{run}", "--limit", "0"], "--limit must be >= 1"),
    (["eval", "{run}", "--batch-size", "0"], "--batch-size must be >= 1"),
    (["eval", "{run}", "--confusion", "{tmp}"], "is a directory"),
    (["eval", "{run}", "--confusion", "{tmp}/no/such/folder.png"], "does not exist"),
    (["eval", "{run}", "--data", "mnist", "--data-dir", "{tmp}/nowhere"], "does not exist"),
    (["eval", "{run}", "--split", "train"], "invalid choice"),
    # predict
    (["predict", "{run}", "{tmp}/missing.png"], "not found"),
    (["predict", "{run}", "{tmp}/list.yaml"], "cannot read image"),
    (["predict", "{run}", "{png}", "--topk", "0"], "--topk must be >= 1"),
    (["predict", "{run}", "{png}", "--cam", "{tmp}"], "is a directory"),
    (["predict", "{run}", "{png}", "--cam", "{tmp}/no/such/cam.png"], "does not exist"),
    # plot
    (["plot", "{tmp}/nowhere"], "nowhere"),
    (["plot", "{run}", "-o", "{tmp}"], "is a directory"),
    (["plot", "{run}", "-o", "{tmp}/no/such/plot.png"], "does not exist"),
    # finetune
    (["finetune", "--from", "{tmp}/nowhere", "--data", SYN], "not found"),
    (["finetune", "--from", "{run}", "--data", SYN, "--mode", "some"], "unknown transfer mode 'some'"),
    (["finetune", "--from", "{run}", "--data", SYN, "--per-class", "3"], "need --classes"),
    (["finetune", "--from", "{run}", "--data", SYN, "--out", "{tmp}/userfiles"], "not a cnnzoo run directory"),
    (["finetune", "--from", "{run}", "--data", SYN, "-o", "nosuch=1"], "lenet5 has no option 'nosuch'"),
    # analysis
    (["summary", "vgg16", "--input", "3x2"], "vgg16"),
    (["summary", "resnet50", "-o", "stride_in_1x1=yes"], "takes true or false"),
    (["summary", "nosuchnet"], "nosuchnet"),
    (["shape", "224", "conv:x"], "conv"),
    (["info", "nosuchnet"], "nosuchnet"),
    # argparse's own errors are one line too
    (["train"], "the following arguments are required"),
    (["train", "lenet5", "--no-such-flag"], "unrecognized arguments"),
]


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    from PIL import Image

    from cnnzoo.train.engine import fit

    tmp = tmp_path_factory.mktemp("bad-input")
    run = tmp / "run"
    fit("lenet5", data=SYN, out=str(run), epochs=1, batch_size=12, progress=False, verbose=False)
    (tmp / "userfiles").mkdir()
    (tmp / "userfiles" / "config.yaml").write_text("mine\n")
    (tmp / "afile").write_text("a file\n")
    (tmp / "list.yaml").write_text("- 1\n- 2\n")
    (tmp / "broken.yaml").write_text("epochs: [1,\n")
    Image.new("L", (16, 16), 128).save(tmp / "img.png")
    return {"run": str(run), "tmp": str(tmp), "png": str(tmp / "img.png")}


def _snapshot(folder):
    from pathlib import Path

    return sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in Path(folder).rglob("*"))


@pytest.mark.parametrize("argv, message", CASES, ids=[" ".join(a)[:60] for a, _ in CASES])
def test_bad_input_is_one_line_and_exit_2(argv, message, places, capsys):
    argv = [a.format(**places) for a in argv]
    before = _snapshot(places["tmp"])
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse exits itself
        code = exc.code
    captured = capsys.readouterr()
    assert code == 2, (argv, captured.err)
    assert "Traceback" not in captured.err
    assert captured.err.count("\n") == 1, captured.err
    assert message.format(**places) in captured.err, captured.err
    assert _snapshot(places["tmp"]) == before, "a failed command changed files"
