"""``cnnzoo experiment low-precision`` (issue 13) on tiny synthetic data: files, rows, reuse, refusals."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from cnnzoo.cli import main
from cnnzoo.errors import ConfigError
from cnnzoo.experiments.low_precision import (
    SCHEMES,
    check_schemes,
    fp32_size,
    onnx_int8_size,
    run_low_precision_experiment,
)
from cnnzoo.rundir import SettingsChanged
from cnnzoo.train.engine import evaluate
from cnnzoo.train.runs import evaluate_run, load_run

TINY = "synthetic:classes=4,channels=1,size=16,train=160,test=48"
MODELS, SCHEME_NAMES = ["lenet5", "resnet20"], ["int8", "bwn"]
SETTINGS = dict(models=MODELS, schemes=SCHEME_NAMES, data=TINY, train_size=0, epochs=1, finetune_epochs=1,
                batch_size=32, limit_val=0, calibration=32, speed_batches=[1, 4], repeats=2, device="cpu",
                threads=1)  # fmt: skip


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    out = tmp_path_factory.mktemp("low-precision") / "exp"
    lines: list[str] = []
    torch.set_num_threads(3)  # the experiment runs with --threads 1, then gives torch its 3 back
    report = run_low_precision_experiment(out=out, log=lines.append, **SETTINGS)
    lines.append(f"threads after: {torch.get_num_threads()}")
    return out, report, lines


def _csv(out):
    with open(out / "results.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _snapshot(folder):
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def _test_loader(run):
    from cnnzoo.data import load_dataset, make_loader

    bundle = load_dataset(TINY, val_fraction=0.1, seed=0)
    return make_loader(bundle.test, batch_size=16, train=False, input_size=tuple(run.meta["input_size"]),
                       augment=None, mean=run.meta["mean"], std=run.meta["std"])  # fmt: skip


def test_files_and_rows(experiment):
    out, report, lines = experiment
    rows = _csv(out)
    assert [(r["model"], r["scheme"]) for r in rows] == [(m, s) for m in MODELS for s in ("fp32", "int8", "bwn")]
    assert {r["file"] for r in rows} == {"best.safetensors", "model.int8.onnx", "weights.qpack"}
    for row in rows:
        stored = out / f"{row['model']}-{row['scheme']}" / row["file"]
        assert int(row["size_bytes"]) == stored.stat().st_size  # the size is the file's
        assert 0.0 <= float(row["test_top1"]) <= 1.0 and row["test_images"] == "48"
    by = {(r["model"], r["scheme"]): r for r in rows}
    for model in MODELS:
        fp32, int8, bwn = (by[(model, s)] for s in ("fp32", "int8", "bwn"))
        assert float(fp32["bits_per_weight"]) == 32.0 and float(fp32["change_vs_fp32"]) == 0.0
        assert 8.0 < float(int8["bits_per_weight"]) < 9.0 and 1.0 < float(bwn["bits_per_weight"]) < 2.0
        assert int(fp32["size_bytes"]) > int(int8["size_bytes"]) > int(bwn["size_bytes"])
        # speed only where a kernel exists: int8, at each batch size asked for
        assert int8["speed_batch_sizes"] == "1;4" and all(float(v) > 0 for v in int8["int8_speedups"].split(";"))
        assert fp32["int8_speedups"] == bwn["int8_speedups"] == ""
    text = (out / "results.md").read_text()
    for piece in ("## lenet5", "## resnet20", "The papers' figures beside ours", "8.23% -> 8.87% error",
                  "69.30% -> 51.20% top-1", "11.40% error", "no speed is claimed", "summary: "):  # fmt: skip
        assert piece in text
    assert "| BWN | Rastegari et al. 2016 |" in text and "x at batch 1, " in text
    assert (out / "low-precision.png").stat().st_size > 10_000
    assert lines[-1] == "threads after: 3"


def test_measured_values_are_the_stored_models(experiment):
    """Recompute a few figures another way: the quantized net as trained (parametrized, not the
    decoded qpack), eval of the int8 run, and the bit count of 1-bit codes with two float32 levels
    per filter (BWN's codebook)."""
    out, report, _ = experiment
    run = load_run(out / "resnet20-bwn", device="cpu")
    row = report.of("resnet20", "bwn")
    meter = evaluate(run.model, _test_loader(run), torch.device("cpu"), 4)
    assert row.top1 == pytest.approx(meter.top1_acc, abs=1e-6)
    layers = run.model.quantized_layers()
    weights = sum(layer.weight.numel() for layer in layers.values())
    bits = sum(8 * math.ceil(layer.weight.numel() / 8) + 2 * 32 * layer.weight.shape[0] for layer in layers.values())
    assert row.stored.weights == weights and row.stored.weight_bits == bits

    int8 = report.of("resnet20", "int8")
    assert int8.top1 == pytest.approx(evaluate_run(out / "resnet20-int8", device="cpu",
                                                   confusion_png=str(out.parent / "c.png")).top1, abs=1e-6)  # fmt: skip
    # ONNX Runtime quantizes every convolution and linear layer: as many int8 weights as fp32 ones
    assert onnx_int8_size(int8.stored.file).weights == fp32_size(out / "resnet20-fp32").weights
    assert int8.params == sum(p.numel() for p in load_run(out / "resnet20-fp32", device="cpu").model.parameters())


def test_a_second_run_reuses_every_run(experiment):
    out, report, _ = experiment
    before = {p: t for p, t in _snapshot(out).items() if p.parent != out}  # the runs, not the tables
    lines: list[str] = []
    again = run_low_precision_experiment(out=out, log=lines.append, **SETTINGS)
    assert not any(line.startswith("training ") or "fine-tuning" in line for line in lines)
    assert sum("reusing it" in line for line in lines) == len(MODELS) * 3
    assert {p: t for p, t in _snapshot(out).items() if p.parent != out} == before
    assert [(r.model, r.scheme, r.top1, r.stored.size_bytes) for r in again.rows] == \
        [(r.model, r.scheme, r.top1, r.stored.size_bytes) for r in report.rows]  # fmt: skip


def test_other_settings_are_refused(experiment, capsys):
    out, _, _ = experiment
    before = _snapshot(out)
    with pytest.raises(SettingsChanged, match=r"epochs \(1 -> 2\)"):
        run_low_precision_experiment(out=out, log=lambda _: None, **{**SETTINGS, "epochs": 2})
    argv = ["experiment", "low-precision", "--models", "resnet20", "--schemes", "int8", "--data", TINY,
            "--train-size", "0", "--epochs", "1", "--finetune-epochs", "1", "-b", "32", "--limit-val", "0",
            "--calibration", "64", "--device", "cpu", "--threads", "1", "--out", str(out)]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "calibration (32 -> 64)" in err[0]
    assert _snapshot(out) == before


@pytest.mark.parametrize("flags, piece", [
    (["--schemes", "int8,fp16"], "unknown scheme 'fp16' for --schemes; known: fp32, int8"),
    (["--models", "lenet5,resnet21"], "unknown model 'resnet21'"),
    (["--finetune-epochs", "0"], "--finetune-epochs must be >= 1"),
    (["--calibration", "0"], "--calibration must be >= 1"),
    (["--speed-batches", "1,x"], "comma-separated integers"),
])  # fmt: skip
def test_bad_flags_are_one_line_errors(tmp_path, capsys, flags, piece):
    out = tmp_path / "exp"
    try:
        code = main(["experiment", "low-precision", *flags, "--data", TINY, "--device", "cpu", "--out", str(out)])
    except SystemExit as exc:  # argparse's own errors (OneLineArgumentParser: one line, exit 2)
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and piece in err[0]
    assert not out.exists()


def test_schemes_come_in_table_order_with_fp32_first():
    assert check_schemes(["bnn", "int8"]) == ["fp32", "int8", "bnn"]
    assert check_schemes(["twn", "fp32", "2bit"]) == ["fp32", "2bit", "twn"]
    assert SCHEMES["twn"].quantize == {"scheme": "ternary"}
    assert SCHEMES["bnn"].quantize == {"scheme": "binary", "binary_activations": True}
    with pytest.raises(ConfigError, match="at least one"):
        check_schemes([])


def test_from_scratch_trains_the_quantized_spec(tmp_path):
    """--from-scratch: the scheme's own run, built from a spec that names the transform (train --quantize's way)."""
    out = tmp_path / "exp"
    report = run_low_precision_experiment(out=out, log=lambda _: None, from_scratch=True,
                                          **{**SETTINGS, "models": ["resnet20"], "schemes": ["twn"]})  # fmt: skip
    assert [(r.scheme, r.run_dir.name) for r in report.rows] == [("fp32", "resnet20-fp32"), ("twn", "resnet20-twn-scratch")]
    run = load_run(out / "resnet20-twn-scratch", device="cpu")
    assert run.meta["kind"] == "train" and run.model.quantization["scheme"] == "ternary"
    assert "bit schemes from scratch" in (out / "results.md").read_text()
    values = {len(w.unique()) for w in run.model.quantized_weights().values()}
    assert values <= {2, 3}  # TWN: {-alpha, 0, alpha} per layer
