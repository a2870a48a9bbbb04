"""``cnnzoo experiment resnet-params``: the brief's question about ResNet-50/101 and AlexNet."""

from __future__ import annotations

from cnnzoo import create_model
from cnnzoo.cli import main
from cnnzoo.experiments.resnet_params import Count, extra_blocks_answer, format_table


def _params(name: str) -> int:
    return sum(p.numel() for p in create_model(name).parameters())


def test_resnet101_minus_resnet50_is_17_conv4_bottlenecks():
    """He et al. 2016, Table 1: conv4_x has 6 blocks in ResNet-50 and 23 in ResNet-101, each a
    1024 -> 256 -> 256 -> 1024 bottleneck: 1024*256 + 9*256*256 + 256*1024 weights plus
    2*(256 + 256 + 1024) batch-norm parameters = 1,117,184."""
    r50, r101 = _params("resnet50"), _params("resnet101")
    block = 1024 * 256 + 9 * 256 * 256 + 256 * 1024 + 2 * (256 + 256 + 1024)
    assert r101 - r50 == 17 * block == 18_992_128
    counts = {"resnet50": Count("resnet50", 224, r50, 4_089_184_256),
              "resnet101": Count("resnet101", 224, r101, 7_801_405_440),
              "alexnet_paper": Count("alexnet_paper", 227, _params("alexnet_paper"), 720_000_000)}  # fmt: skip
    answer = extra_blocks_answer(counts)
    assert "18,992,128 more parameters" in answer
    assert "17 more bottleneck blocks" in answer and "1,117,184 parameters each" in answer
    # AlexNet has more parameters than either ResNet (its fc layers) but far fewer multiply-adds
    assert counts["alexnet_paper"].params > r101 > r50
    assert f"{counts['alexnet_paper'].params / r50:.1f}x ResNet-50's" in answer


def test_table_cites_table1_and_marks_the_paper_bottleneck():
    table = format_table([Count("resnet50", 224, 25_557_032, 4_089_184_256, 3_858_000_000),
                          Count("resnet18", 224, 11_689_512, 1_814_073_344)])  # fmt: skip
    lines = table.splitlines()
    assert lines[0].startswith("| model |")
    assert "| resnet50 | 224x224 | 25.56M | 4.09 G | 3.86 G | 3.8 G | 22.85% |" in lines
    assert "| resnet18 | 224x224 | 11.69M | 1.81 G | same | 1.8 G | 27.88% |" in lines


def test_command_measures_the_models(tmp_path, capsys):
    out = tmp_path / "rp"
    assert main(["experiment", "resnet-params", "--models", "resnet18,alexnet", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    # measured by cnnzoo.summary, not copied: torchvision's layouts have these exact counts
    assert "| resnet18 | 224x224 | 11.69M | 1.81 G | same | 1.8 G | 27.88% |" in printed
    assert "| alexnet | 224x224 | 61.10M | 0.71 G | - | - | - |" in printed
    assert (out / "results.md").read_text().startswith("| model |")


def test_unknown_model_is_a_one_line_error(tmp_path, capsys):
    assert main(["experiment", "resnet-params", "--models", "resnet51", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "resnet51" in err and len(err.splitlines()) == 1
