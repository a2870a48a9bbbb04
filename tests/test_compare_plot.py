"""``cnnzoo compare --plot``: Canziani et al.'s chart, and the papers' ImageNet figures behind it."""

from __future__ import annotations

import pytest

from cnnzoo import cli
from cnnzoo.registry import list_models, model_info
from cnnzoo.reported_accuracy import REPORTED_ACCURACY

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_cli(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_chart_is_drawn_and_names_the_nets_without_a_figure(capsys, tmp_path):
    chart = tmp_path / "chart.png"
    code, out, err = run_cli(capsys, "compare", "resnet18", "mobilenet_v1_025", "googlenet", "--input", "3x64x64",
                             "--plot", str(chart))
    assert code == 0, err
    assert chart.read_bytes().startswith(PNG_MAGIC)
    assert "not on the chart (no ImageNet top-1 in its paper, or a run directory): googlenet" in out
    assert f"chart: {chart}" in out


@pytest.mark.parametrize("where, message", [("missing/chart.png", "folder"), ("chart.png", "already exists")])
def test_plot_into_a_missing_folder_or_onto_a_file_is_refused(capsys, tmp_path, where, message):
    (tmp_path / "chart.png").write_bytes(b"a user's picture")
    code, out, err = run_cli(capsys, "compare", "resnet18", "--plot", str(tmp_path / where))
    assert code == 2 and err.startswith("cnnzoo: error:") and err.count("\n") == 1 and message in err
    assert out == ""  # refused before any work
    assert (tmp_path / "chart.png").read_bytes() == b"a user's picture"
    assert not (tmp_path / "missing").exists()


def test_every_reported_figure_belongs_to_a_registered_model_and_is_a_percentage():
    registered = set(list_models())
    for name, figure in REPORTED_ACCURACY.items():
        assert name in registered, name
        assert figure.source and figure.evaluation in ("single crop", "10 crops", "dense", "not stated")
        for value in (figure.top1, figure.top5):
            assert value is None or 0 < value < 100
        assert figure.top1 is not None or figure.top5 is not None


def test_figures_are_the_papers():
    """He et al. 2016, Table 3: ResNet-50 22.85% top-1 error (10-crop); Szegedy et al. 2014 give GoogLeNet's
    top-5 only (Table 3: 10.07% for 1 model, 1 crop); torchvision's BN variants have no paper figure."""
    resnet50 = model_info("resnet50").reported
    assert resnet50.top1 == pytest.approx(77.15) and resnet50.evaluation == "10 crops"
    googlenet = model_info("googlenet").reported
    assert googlenet.top1 is None and googlenet.top5 == pytest.approx(89.93)
    assert model_info("vgg16_bn").reported is None and model_info("googlenet_bn").reported is None


def test_the_shipped_index_carries_the_figures_and_info_prints_them(capsys):
    for name in ("resnet50", "mobilenet_v1", "vgg16_bn"):
        assert model_info(name, from_index=True).reported == model_info(name).reported
    code, out, _ = run_cli(capsys, "info", "resnet50")
    assert code == 0 and "ImageNet:     top-1 77.2%, top-5 93.3% (10 crops; He et al. 2016, Table 3)" in out
    code, out, _ = run_cli(capsys, "info", "vgg16_bn")
    assert "ImageNet:     no figure in its paper" in out
