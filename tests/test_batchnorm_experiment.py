"""Experiment 4 of the brief: cnn3 with and without batch norm (cnnzoo experiment batchnorm)."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from torch import nn

import cnnzoo
from cnnzoo.errors import ConfigError
from cnnzoo.experiments._runs import run_history
from cnnzoo.experiments.batchnorm import parse_variant, run_batchnorm_experiment, steps_to_target
from cnnzoo.layers.batchnorm import BatchNorm2dFromEquations
from test_data import make_idx_set

TINY = "synthetic:classes=4,channels=1,size=16,train=256,test=64"


def _build(norm: str) -> nn.Module:
    torch.manual_seed(0)
    return cnnzoo.create_model("cnn3", norm=norm)


def test_variants_have_batch_norm_and_conv_bias_where_the_paper_puts_them():
    """Section 3.2: BN right after the convolution, before ReLU, and no conv bias (beta replaces it)."""
    expected_norm = {"none": None, "bn": BatchNorm2dFromEquations, "bn_torch": nn.BatchNorm2d}
    nets = {norm: _build(norm) for norm in expected_norm}
    for norm, net in nets.items():
        convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
        norms = [m for m in net.modules() if isinstance(m, (BatchNorm2dFromEquations, nn.BatchNorm2d))]
        assert [c.out_channels for c in convs] == [32, 64, 128]
        if expected_norm[norm] is None:
            assert norms == []
            assert all(c.bias is not None and torch.count_nonzero(c.bias) == 0 for c in convs)
        else:
            assert [type(m) for m in norms] == [expected_norm[norm]] * 3
            assert all(c.bias is None for c in convs)
            for stage in net.features:  # conv -> BN -> ReLU -> pool
                assert [type(m) for m in stage] == [nn.Conv2d, expected_norm[norm], nn.ReLU, nn.MaxPool2d]
    # one seed, one starting point: the convolution and classifier weights are the same in every variant
    for name in ("features.0.conv.weight", "features.2.conv.weight", "fc.weight"):
        weights = [dict(net.named_parameters())[name] for net in nets.values()]
        assert torch.equal(weights[0], weights[1]) and torch.equal(weights[0], weights[2])
    assert sum(p.numel() for p in nets["none"].parameters()) - sum(p.numel() for p in nets["bn"].parameters()) \
        == -(32 + 64 + 128)  # 3 conv biases (224) out, 3 x (gamma, beta) (448) in
    with pytest.raises(ConfigError, match="unknown norm"):
        cnnzoo.create_model("cnn3", norm="layer")


def test_bn_from_equations_trains_like_torch_batchnorm():
    """Same start, same batches: the two BN implementations give the same weights, outputs and moving averages.

    In float64, to the last digits: in float32 rounding differences grow over a training (after 30 steps
    at lr 0.05 the weights differ by ~1e-2), which is why the experiment's bn and bn-torch curves
    are close but not identical.
    """
    ours, theirs = _build("bn").double(), _build("bn_torch").double()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    optimisers = [torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9) for net in (ours, theirs)]
    generator = torch.Generator().manual_seed(1)
    for _ in range(6):
        x = torch.randn(8, 1, 28, 28, generator=generator, dtype=torch.float64)
        y = torch.randint(0, 10, (8,), generator=generator)
        for net, optimiser in zip((ours, theirs), optimisers):
            optimiser.zero_grad()
            nn.functional.cross_entropy(net.train()(x), y).backward()
            optimiser.step()
    assert ours.features[0].norm.num_batches_tracked.item() == 6
    for (name, a), b in zip(ours.state_dict().items(), theirs.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10, msg=name)
    x = torch.randn(3, 1, 28, 28, dtype=torch.float64)
    torch.testing.assert_close(ours.eval()(x), theirs.eval()(x), atol=1e-10, rtol=1e-10)


def test_steps_to_target_reads_the_first_row_at_or_above_the_target():
    history = [
        {"epoch": 1, "step": 100, "val_top1": 0.52},
        {"epoch": 2, "step": 200, "val_top1": math.nan},
        {"epoch": 3, "step": 300, "val_top1": 0.85},
        {"epoch": 4, "step": 400, "val_top1": 0.84},
        {"epoch": 5, "step": 500, "val_top1": 0.90},
    ]
    assert steps_to_target(history, 0.5) == 100
    assert steps_to_target(history, 0.85) == 300  # reaching counts, and a later dip does not undo it
    assert steps_to_target(history, 0.86) == 500
    assert steps_to_target(history, 0.95) is None
    assert steps_to_target([], 0.1) is None


def test_variant_names():
    v = parse_variant("bn-lr5x")
    assert (v.norm, v.lr_factor) == ("bn", 5.0)
    assert parse_variant("none-lr1e3x").lr_factor == 1000.0
    v = parse_variant("bn-torch-lr30x")
    assert (v.norm, v.lr_factor) == ("bn_torch", 30.0)
    assert parse_variant("none").lr_factor == 1.0
    for bad in ("batchnorm", "bn-lr0x", "bn-lrx", "none-5x"):
        with pytest.raises(ConfigError, match="unknown variant"):
            parse_variant(bad)


def _table_rows(path) -> dict[str, list[str]]:
    rows = {}
    for line in path.read_text().splitlines():
        if line.startswith("| ") and not line.startswith("| variant"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells
    return rows


def test_experiment_on_tiny_data(tmp_path, monkeypatch):
    """Files written, the table's numbers come from the runs' metrics, a rerun reuses the runs."""
    out = tmp_path / "bn"
    settings = dict(data=TINY, variants=["none", "bn"], lr=0.05, batch_size=32, epochs=3,
                    limit_train=None, limit_val=None, widths=(4, 8, 8), targets=(0.75, 0.99), out=out, threads=1)
    messages = []
    results = run_batchnorm_experiment(log=messages.append, **settings)
    for name in ("results.md", "results.csv", "batchnorm.png", "run.json"):
        assert (out / name).is_file(), name
    assert (out / "batchnorm.png").read_bytes()[:4] == b"\x89PNG"

    by_name = {r.variant.name: r for r in results}
    table = _table_rows(out / "results.md")
    for name in ("none", "bn"):
        rows = run_history(out / name)
        assert len(rows) == 3 and not by_name[name].diverged
        for column, target in ((3, 0.75), (4, 0.99)):
            reached = steps_to_target(rows, target)
            assert table[name][column] == (f"{reached:,}" if reached is not None else "not reached")
        assert table[name][5] == f"{100 * rows[-1]['val_top1']:.2f}%"
        test_top1 = json.loads((out / name / "results.json").read_text())["top1"]
        assert table[name][7] == f"{100 * test_top1:.2f}%"
        assert table[name][8] == f"{int(rows[-1]['step']):,}"
    assert table["bn"][1] == "BN (equations)" and table["none"][2] == "0.05"

    # the same command again trains nothing: the finished runs are read back
    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr("cnnzoo.train.fit", no_training)
    before = (out / "results.md").read_text()
    again = run_batchnorm_experiment(log=messages.append, **settings)
    assert (out / "results.md").read_text() == before
    assert [r.diverged_at for r in again] == [r.diverged_at for r in results]

    # other training settings in the same folder are refused
    with pytest.raises(ConfigError, match=r"batchnorm experiment in .* made with other settings: epochs \(3 -> 4\)"):
        run_batchnorm_experiment(log=messages.append, **{**settings, "epochs": 4})


def test_mnist_from_its_idx_files(tmp_path, capsys):
    """--data mnist reads the official files (tiny random ones here) and reports MNIST's default targets."""
    from cnnzoo.cli import main

    make_idx_set(tmp_path / "mnist", n_train=60, n_test=20)
    out = tmp_path / "out"
    assert main(["experiment", "batchnorm", "--data", "mnist", "--data-dir", str(tmp_path / "mnist"),
                 "--variants", "bn", "--epochs", "1", "--batch-size", "18", "--widths", "4,4,4", "--threads", "1",
                 "--out", str(out)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "steps to 97% val | steps to 98% val | steps to 99% val" in printed
    record = json.loads((out / "run.json").read_text())
    assert record["kind"] == "experiment:batchnorm" and record["settings"]["data"] == "mnist"
    assert len(run_history(out / "bn")) == 1 and (out / "bn" / "results.json").is_file()


def test_cli_errors_are_one_line(capsys, tmp_path):
    from cnnzoo.cli import main

    assert main(["experiment", "batchnorm", "--data", TINY, "--variants", "none,bn,magic", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cnnzoo: error: unknown variant 'magic'") and "\n" not in err
    assert main(["experiment", "batchnorm", "--data", TINY, "--targets", "85", "--out", str(tmp_path)]) == 2
    assert "fraction in (0, 1]" in capsys.readouterr().err


def test_a_diverging_variant_is_recorded_not_fatal(tmp_path, monkeypatch):
    """At a huge learning rate the unnormalised net's loss becomes NaN: the run is reported as diverged."""
    out = tmp_path / "diverge"
    settings = dict(data=TINY, variants=["none-lr1e15x", "none"], lr=0.05, batch_size=32, epochs=2, limit_train=None,
                    limit_val=None, widths=(4, 8, 8), targets=(0.3,), out=out, threads=1)
    results = run_batchnorm_experiment(log=lambda text: None, **settings)
    diverged = results[0]
    assert diverged.diverged and 1 <= diverged.diverged_at <= 8  # 231 images / 32 = 8 steps per epoch
    # the engine left no run directory (it diverged before the first checkpoint): the experiment's own record
    assert not (out / "none-lr1e15x").exists()
    recorded = json.loads((out / "diverged.json").read_text())["none-lr1e15x"]
    assert recorded["step"] == diverged.diverged_at and recorded["epoch"] == 1 and recorded["batch"] == recorded["step"]
    assert diverged.test_top1 is None
    table = _table_rows(out / "results.md")
    assert table["none-lr1e15x"][2] == "5e+13"
    assert table["none-lr1e15x"][4] == f"diverged at step {diverged.diverged_at:,}"
    assert table["none-lr1e15x"][3] == "diverged" and table["none-lr1e15x"][6] == "-"
    with open(out / "results.csv") as handle:
        rows = {row["variant"]: row for row in csv.DictReader(handle)}
    assert rows["none-lr1e15x"]["status"] == "diverged"
    assert rows["none-lr1e15x"]["diverged_at_step"] == str(diverged.diverged_at)
    # the variant after it still ran
    assert rows["none"]["status"] == "finished" and (out / "none" / "results.json").is_file()

    monkeypatch.setattr("cnnzoo.train.fit", lambda *a, **k: pytest.fail("a diverged run was trained again"))
    again = run_batchnorm_experiment(log=lambda text: None, **settings)
    assert again[0].diverged_at == diverged.diverged_at
