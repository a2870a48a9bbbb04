"""``cnnzoo experiment practical``: Canziani et al. 2016's measurements on this machine.

The report's numbers must come from the measurements it wrote: the correlation is recomputed
here from measurements.csv, and the energy line must match what the machine exposes.
"""

from __future__ import annotations

import csv
import math
import os
import re

import pytest

from cnnzoo import cli
from cnnzoo.experiments.practical import NetResult, RaplMeter, findings, line_fit, pearson

SMALL = ["experiment", "practical", "--models", "resnet18,mobilenet_v1_025,squeezenet1_1",
         "--batch-sizes", "1,2", "--input-size", "32", "--repeats", "1", "--warmup", "1"]  # fmt: skip


def test_the_report_is_computed_from_its_measurements(capsys, tmp_path):
    out_dir = tmp_path / "practical"
    assert cli.main([*SMALL, "--out", str(out_dir)]) == 0
    printed = capsys.readouterr().out
    report = (out_dir / "results.md").read_text()
    assert (out_dir / "practical.png").read_bytes().startswith(b"\x89PNG")
    with open(out_dir / "measurements.csv") as f:
        rows = list(csv.DictReader(f))
    assert {(r["model"], r["batch_size"]) for r in rows} == {
        (m, b) for m in ("resnet18", "mobilenet_v1_025", "squeezenet1_1") for b in ("1", "2")}
    at2 = [r for r in rows if r["batch_size"] == "2"]
    macs = [float(r["macs_per_image"]) for r in at2]
    per_image = [float(r["seconds_per_batch"]) / 2 for r in at2]
    r = pearson(macs, per_image)
    assert f"Pearson r = {r:.3f} between multiply-adds and time per image over 3 nets" in report
    r_log = pearson([math.log(v) for v in macs], [math.log(v) for v in per_image])
    assert f"(r = {r_log:.3f} on log-log axes)" in report
    # memory grows with the batch and starts above the weights
    for name in ("resnet18", "mobilenet_v1_025", "squeezenet1_1"):
        memory = {row["batch_size"]: int(row["peak_memory_bytes"]) for row in rows if row["model"] == name}
        assert memory["1"] < memory["2"]
    # the energy line says what this machine has
    if os.path.isdir("/sys/class/powercap") and any(n.startswith("intel-rapl:") for n in os.listdir("/sys/class/powercap")):
        assert "Energy: Intel RAPL" in report or "is not readable" in report
    else:
        assert "Energy: not measured: Intel RAPL: /sys/class/powercap" in report
        assert "J/image" not in report
    assert "machine: " in report and "load average" in report
    assert report.split("\n\n")[-1].strip() in printed


def _meter_tree(root, energy, wrap):
    package = root / "intel-rapl:0"
    package.mkdir(parents=True)
    (package / "energy_uj").write_text(str(energy))
    (package / "max_energy_range_uj").write_text(str(wrap))
    (root / "intel-rapl:0:0").mkdir()  # a sub-domain (the cores): not summed with its package
    return package


def test_rapl_meter_reads_packages_and_undoes_wrap_around(tmp_path):
    package = _meter_tree(tmp_path, 5_000_000, 10_000_000)
    meter, found = RaplMeter.open(str(tmp_path))
    assert found == f"Intel RAPL, 1 CPU package(s) under {tmp_path}"
    before = meter.read()
    (package / "energy_uj").write_text("1_000_000".replace("_", ""))  # wrapped past 10 J
    assert meter.joules_between(before, meter.read()) == pytest.approx(6.0)


def test_rapl_meter_says_why_there_is_none(tmp_path):
    meter, found = RaplMeter.open(str(tmp_path / "nothing"))
    assert meter is None and "does not exist" in found
    meter, found = RaplMeter.open(str(tmp_path))
    assert meter is None and "no intel-rapl package domains" in found


def test_pearson_and_line_fit():
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert pearson([1, 2], [1, 2]) is None
    slope, intercept, r2 = line_fit([1.0, 2.0, 4.0], [12.0, 14.0, 18.0])
    assert (slope, intercept, r2) == (pytest.approx(2.0), pytest.approx(10.0), pytest.approx(1.0))


def test_a_net_far_below_the_median_rate_is_named():
    def net(name, macs, seconds, grouped=False):
        return NetResult(name, (3, 224, 224), macs, 1, 1, None, grouped, seconds={8: seconds}, memory={8: 1})

    results = [net("vgg16", 15e9, 8 * 0.15), net("resnet50", 4e9, 8 * 0.04),
               net("mobilenet_v1", 0.57e9, 8 * 0.03, grouped=True)]
    text = " ".join(findings(results, [8], "not measured").text)
    assert findings(results, [8], "not measured").slow == ["mobilenet_v1"]
    assert re.search(r"Where the count breaks: .*mobilenet_v1 19\.0 G/s \(0\.19x the median, grouped/depthwise", text)
    assert "depthwise convolutions do few multiply-adds" in text and "has no grouped convolution" not in text
    # a slow net without grouped convolutions is not explained by them
    results[2] = net("alexnet", 0.57e9, 8 * 0.03)
    text = " ".join(findings(results, [8], "not measured").text)
    assert "alexnet has no grouped convolution" in text and "depthwise convolutions do few" not in text


@pytest.mark.parametrize("extra, message", [(["--batch-sizes", "0"], "--batch-sizes must be >= 1"),
                                            (["--batch-sizes", "a"], "expected comma-separated integers"),
                                            (["--models", "nosuchnet"], "unknown model 'nosuchnet'"),
                                            (["--models", "alexnet_paper", "--input-size", "64"], "227x227")])
def test_bad_input(capsys, tmp_path, extra, message):
    try:
        code = cli.main(["experiment", "practical", "--out", str(tmp_path / "out"), *extra])
    except SystemExit as exc:  # argparse's own errors (OneLineArgumentParser: one line, exit 2)
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err
    assert not (tmp_path / "out").exists()
