"""int8 through ONNX Runtime (cnnzoo.quantization.int8): close to fp32, a run directory the other
commands take, quantization-aware training, and every user mistake as one line with exit code 2."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import torch

pytest.importorskip("onnxruntime.quantization")

from cnnzoo import cli  # noqa: E402
from cnnzoo.errors import ConfigError  # noqa: E402
from cnnzoo.quantization import int8  # noqa: E402
from cnnzoo.quantization.int8_qat import FakeQuantized, int8_qat, strip_fake_quant  # noqa: E402

SYN = "synthetic:classes=4,channels=1,size=16,train=384,test=128"


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A resnet20 trained for two epochs on 1-channel 16x16 synthetic images (well above chance)."""
    out = tmp_path_factory.mktemp("int8") / "src"
    assert cli.main(["train", "resnet20", "--data", SYN, "--epochs", "2", "--batch-size", "64", "--threads", "1",
                     "--out", str(out), "--no-progress"]) == 0  # fmt: skip
    return out


@pytest.fixture(scope="module")
def int8_run(trained, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """``cnnzoo quantize SRC --scheme int8``'s directory, and the source's files before it ran."""
    before = _tree(trained)
    out = tmp_path_factory.mktemp("int8q") / "q"
    assert cli.main(["quantize", str(trained), "--scheme", "int8", "--calibration", "64", "--out", str(out),
                     "--threads", "1"]) == 0  # fmt: skip
    return out, before


def _one_line_error(capsys, argv, piece: str, watched: Path | None = None) -> str:
    before = _tree(watched) if watched is not None and watched.exists() else None
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert piece in err, err
    if watched is not None:
        assert (_tree(watched) if watched.exists() else None) == before
    return err


# ------------------------------------------------------------------------------------------
# close to fp32
# ------------------------------------------------------------------------------------------


def test_int8_outputs_close_to_fp32_on_a_trained_net(trained, tmp_path):
    from cnnzoo.train.runs import load_run

    source = load_run(trained, device="cpu")
    images = int8.calibration_images(source.config, source.meta, 128)
    made = int8.quantize_onnx(source.model, images[:64], tmp_path / "m.int8.onnx")
    assert made["format"] == "QDQ" and made["calibration_images"] == 64
    model = int8.Int8Model(tmp_path / "m.int8.onnx", num_classes=4, in_chans=1)
    held_out = images[64:]  # not used for calibration
    with torch.no_grad():
        want, got = source.model(held_out), model(held_out)
    assert got.shape == want.shape and got.dtype == torch.float32
    assert float((want.argmax(1) == got.argmax(1)).float().mean()) >= 0.9
    # per image, the largest logit difference against that image's logit spread; a few images whose
    # logits lie beyond the calibrated range are clipped, so the bound is on the 90th percentile
    spread = want.amax(1) - want.amin(1)
    relative = (want - got).abs().amax(1) / spread
    assert float(relative.quantile(0.9)) < 0.1 and float(relative.median()) < 0.05
    # really int8: the file is smaller than fp32 and holds integer convolutions' weights
    import onnx

    graph = onnx.load(str(tmp_path / "m.int8.onnx")).graph
    assert sum(node.op_type == "DequantizeLinear" for node in graph.node) >= 20
    assert any(init.data_type == onnx.TensorProto.INT8 for init in graph.initializer)


def test_calibration_images_must_match_the_model(trained, tmp_path):
    from cnnzoo.train.runs import load_run

    source = load_run(trained, device="cpu")
    with pytest.raises(ConfigError, match="3 channels; the model takes 1"):
        int8.quantize_onnx(source.model, torch.randn(4, 3, 16, 16), tmp_path / "a.onnx")
    with pytest.raises(ConfigError, match="are 1x20x20; the model was trained at 1x16x16"):
        int8.check_calibration(torch.randn(4, 1, 20, 20), 1, (16, 16))
    with pytest.raises(ConfigError, match="N >= 1"):
        int8.check_calibration(torch.randn(0, 1, 16, 16), 1, (16, 16))
    assert not (tmp_path / "a.onnx").exists()


# ------------------------------------------------------------------------------------------
# the run directory through the command line
# ------------------------------------------------------------------------------------------


def test_quantize_writes_a_run_that_eval_summary_bench_and_load_run_take(int8_run, trained, capsys):
    from cnnzoo.train.runs import load_run

    out, before = int8_run
    assert _tree(trained) == before  # the source run is only read
    assert (out / int8.INT8_FILE).is_file() and (out / "config.yaml").is_file()
    run = load_run(out)
    assert isinstance(run.model, int8.Int8Model) and run.checkpoint == "int8"
    assert run.meta["int8"]["method"] == "ptq" and run.meta["int8"]["calibration"] == 64

    capsys.readouterr()
    assert cli.main(["eval", str(out)]) == 0
    int8_top1 = float(re.search(r"top-1 ([\d.]+)%", capsys.readouterr().out).group(1))
    assert cli.main(["eval", str(trained)]) == 0
    fp32_top1 = float(re.search(r"top-1 ([\d.]+)%", capsys.readouterr().out).group(1))
    assert fp32_top1 > 40  # well above chance (25%): a trained net
    assert abs(int8_top1 - fp32_top1) <= 5  # 128 test images: 5 points are 6 images

    assert cli.main(["summary", str(out)]) == 0  # the fp32 architecture's table, then the int8 file's size
    shown = capsys.readouterr().out
    assert "parameter memory" in shown and re.search(r"^int8: .*model\.int8\.onnx [\d.]+ MB \(fp32 weights", shown, re.M)
    assert cli.main(["bench", str(out), "--int8", "--batch-size", "2", "--repeats", "2", "--warmup", "1",
                     "--threads", "1"]) == 0  # fmt: skip
    assert re.search(r"^int8: \d+\.\dx at batch 2$", capsys.readouterr().out, re.M)


def test_bench_int8_of_a_model_name(capsys):
    assert cli.main(["bench", "resnet20", "--input", "1x16x16", "--int8", "--batch-size", "1", "--repeats", "2",
                     "--warmup", "1", "--threads", "1"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "random normal images" in out and "| 1 | int8 onnxruntime |" in out
    assert re.search(r"^int8: \d+\.\dx at batch 1$", out, re.M)


# ------------------------------------------------------------------------------------------
# quantization-aware training
# ------------------------------------------------------------------------------------------


def test_fake_quantized_layer_rounds_to_int8_levels_and_passes_gradients():
    conv = torch.nn.Conv2d(2, 3, 3, padding=1)
    layer = FakeQuantized(conv).train()
    x = torch.randn(4, 2, 8, 8, requires_grad=True)
    layer(x).sum().backward()
    assert bool(layer.observed) and float(layer.input_range[0]) == pytest.approx(float(x.min()))
    assert x.grad is not None and conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
    weight = layer.quantized_weight().detach()
    scale = conv.weight.detach().abs().flatten(1).amax(1) / 127
    levels = weight / scale.view(-1, 1, 1, 1)
    assert torch.allclose(levels, levels.round(), atol=1e-3)  # every weight is an int8 level of its channel
    assert (levels.abs() <= 127 + 1e-3).all()
    quantized_input = layer.quantize_input(x.detach())
    assert len(torch.unique(quantized_input)) <= 256 and not torch.equal(quantized_input, x.detach())


def test_int8_qat_transform_replays_and_strips():
    from cnnzoo.modelspec import ModelSpec

    spec = ModelSpec("resnet20", num_classes=4, in_chans=1).then("int8_qat")
    net = spec.build()
    again = spec.build()
    assert list(net.state_dict()) == list(again.state_dict())  # what load_run rebuilds loads strictly
    assert sum(isinstance(m, FakeQuantized) for m in net.modules()) == 20  # 19 convolutions and the classifier
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())  # folded
    plain = strip_fake_quant(net)
    assert not any(isinstance(m, FakeQuantized) for m in plain.modules())
    assert any(isinstance(m, FakeQuantized) for m in net.modules())  # the original is untouched
    assert isinstance(int8_qat(ModelSpec("resnet20", num_classes=4, in_chans=1).build()).fc, FakeQuantized)


def test_quantize_qat_trains_then_converts(trained, tmp_path, capsys):
    from cnnzoo.train.runs import load_run

    before = _tree(trained)
    out = tmp_path / "qat"
    assert cli.main(["quantize", str(trained), "--scheme", "int8", "--qat", "--epochs", "1", "--limit-train", "128",
                     "--calibration", "32", "--batch-size", "64", "--threads", "1", "--no-progress",
                     "--out", str(out)]) == 0  # fmt: skip
    assert _tree(trained) == before
    run = load_run(out)
    assert isinstance(run.model, int8.Int8Model) and run.meta["int8"]["method"] == "qat"
    assert any(step["name"] == "int8_qat" for step in run.meta["spec"]["transforms"])
    assert cli.main(["eval", str(out)]) == 0
    assert "int8 checkpoint" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------
# mistakes: one line, exit code 2, nothing written
# ------------------------------------------------------------------------------------------


def test_calibration_data_with_other_channels(trained, tmp_path, capsys):
    other = "synthetic:classes=4,channels=3,size=16,train=64,test=16"
    _one_line_error(capsys, ["quantize", str(trained), "--scheme", "int8", "--data", other, "--out",
                             str(tmp_path / "q")], "3-channel images; the run's model takes 1", trained)  # fmt: skip
    assert not (tmp_path / "q").exists()


@pytest.mark.parametrize("argv, piece", [
    (["--calibration", "0"], "--calibration must be >= 1"),
    (["--epochs", "3"], "go with --qat"),
    (["--resume"], "nothing to resume"),
])  # fmt: skip
def test_bad_quantize_flags(trained, tmp_path, capsys, argv, piece):
    _one_line_error(capsys, ["quantize", str(trained), "--scheme", "int8", "--out", str(tmp_path / "q"), *argv],
                    piece, trained)  # fmt: skip
    assert not (tmp_path / "q").exists()


def test_missing_engine_names_the_engines_there_are(trained, tmp_path, capsys, monkeypatch):
    def no_quantizer():
        raise ImportError("No module named 'onnxruntime.quantization'")

    monkeypatch.setattr(int8, "_onnxruntime_quantization", no_quantizer)
    err = _one_line_error(capsys, ["quantize", str(trained), "--scheme", "int8", "--out", str(tmp_path / "q")],
                          "int8 needs ONNX Runtime and its quantizer", trained)  # fmt: skip
    assert "installed: torch quantized engines" in err
    assert not (tmp_path / "q").exists()
    _one_line_error(capsys, ["bench", "resnet20", "--input", "1x16x16", "--int8"], "installed:")


def test_missing_cpu_provider(trained, tmp_path, capsys, monkeypatch):
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider"])
    err = _one_line_error(capsys, ["quantize", str(trained), "--scheme", "int8", "--out", str(tmp_path / "q")],
                          "which this build lacks (it has CUDAExecutionProvider)", trained)  # fmt: skip
    assert "CPU provider" in err
    assert not (tmp_path / "q").exists()  # refused before the run directory was made


@pytest.mark.parametrize("argv, piece", [
    (["quantize", "{run}", "--scheme", "int8", "--out", "{tmp}/again"], "is an int8 run"),
    (["export", "{run}", "--out", "{tmp}/x.onnx"], "is an int8 run"),
    (["bench", "{run}", "--deploy"], "is an int8 run"),
    (["bench", "{run}", "--compare", "torchvision"], "is an int8 run"),
    (["bench", "{run}", "--int8", "--train"], "cannot be combined"),
    (["quantize", "{run}", "--scheme", "ttq", "--out", "{tmp}/q"], "is an int8 run"),
    (["prune", "{run}", "--ratio", "0.5", "--out", "{tmp}/p"], "is an int8 run"),
    (["finetune", "--from", "{run}", "--out", "{tmp}/f"], "is an int8 run"),
])  # fmt: skip
def test_int8_run_given_to_a_command_that_cannot_take_it(int8_run, tmp_path, capsys, argv, piece):
    out, _ = int8_run
    argv = [a.replace("{run}", str(out)).replace("{tmp}", str(tmp_path)) for a in argv]
    _one_line_error(capsys, argv, piece, out)
    assert list(tmp_path.iterdir()) == []
