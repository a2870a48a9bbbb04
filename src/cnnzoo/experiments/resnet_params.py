"""``cnnzoo experiment resnet-params``: the brief's experiment 6, counted from the real modules.

000 and 001 print ResNet's Table 1 and ask: how many more parameters has ResNet-101 than
ResNet-50, and how do both compare with AlexNet?  Every number here is measured by
:func:`cnnzoo.summary` on the registered networks at 224x224 (AlexNet at its own 224, or 227 for
the 2012 layout) and set against the papers' figures:

* He et al. 2016, Table 1, "FLOPs" row: 1.8 / 3.6 / 3.8 / 7.6 / 11.3 x 10^9 multiply-adds for
  ResNet-18/34/50/101/152.  The paper's bottleneck strides on its first 1x1 convolution;
  torchvision's layout ("v1.5", the one whose weights load) strides on the 3x3, which costs
  more (see :mod:`cnnzoo.models.resnet`): both are counted.
* The ImageNet validation top-1 error each paper reports for one model, from
  :mod:`cnnzoo.reported_accuracy`: He et al. 2016, Table 2 (ResNet-18 27.88%) and Table 3
  (10-crop testing: ResNet-34 B 24.52%, ResNet-50 22.85%, ResNet-101 21.75%, ResNet-152 21.43%);
  Krizhevsky et al. 2012, Table 2: one CNN 40.7%.

The answer the brief wants falls out of the stage lists: ResNet-101 is ResNet-50 with 17 more
bottleneck blocks in conv4_x (23 instead of 6), each 1024 -> 256 -> 256 -> 1024 channels.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from cnnzoo.experiments import register_experiment
from cnnzoo.experiments._runs import ExperimentDir, markdown_table, write_text
from cnnzoo.reported_accuracy import reported_accuracy

#: He et al. 2016, Table 1 ("FLOPs", multiply-adds at 224x224, in 10^9)
TABLE1_GMACS = {"resnet18": 1.8, "resnet34": 3.6, "resnet50": 3.8, "resnet101": 7.6, "resnet152": 11.3}

DEFAULT_MODELS = ("alexnet_paper", "alexnet", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152")


@dataclass(frozen=True)
class Count:
    model: str
    input_size: int
    params: int
    macs: int
    paper_macs: int | None = None  # with the paper's bottleneck (stride on the first 1x1)


def count(name: str, input_size: int | None = None) -> Count:
    """Parameters and multiply-adds of ``name`` for one image (its default size unless given)."""
    from cnnzoo import create_model, model_info, summary

    info = model_info(name)
    side = input_size or info.input_size[1]
    model = create_model(name).eval()
    measured = summary(model, (3, side, side))
    paper_macs = None
    if name in TABLE1_GMACS and name not in ("resnet18", "resnet34"):
        paper_macs = summary(create_model(name, stride_in_1x1=True).eval(), (3, side, side)).total_macs
    return Count(name, side, measured.total_params, measured.total_macs, paper_macs)


def extra_blocks_answer(counts: dict[str, Count]) -> str:
    """The brief's question in one paragraph, from the counts."""
    r50, r101 = counts.get("resnet50"), counts.get("resnet101")
    if r50 is None or r101 is None:
        return ""
    from cnnzoo import create_model

    deep, shallow = create_model("resnet101"), create_model("resnet50")
    extra_blocks = len(deep.layer3) - len(shallow.layer3)
    block_params = sum(p.numel() for p in deep.layer3[1].parameters())
    difference = r101.params - r50.params
    text = (
        f"ResNet-101 has {difference:,} more parameters than ResNet-50 ({r101.params / r50.params:.2f}x): "
        f"{extra_blocks} more bottleneck blocks in conv4_x, {block_params:,} parameters each "
        f"({extra_blocks} x {block_params:,} = {extra_blocks * block_params:,}), and "
        f"{(r101.macs - r50.macs) / 1e9:.1f} G more multiply-adds per image."
    )
    alexnet = counts.get("alexnet_paper") or counts.get("alexnet")
    if alexnet is not None:
        text += (
            f" AlexNet ({alexnet.model}) has {alexnet.params / 1e6:.1f}M parameters, "
            f"{alexnet.params / r50.params:.1f}x ResNet-50's and {alexnet.params / r101.params:.1f}x ResNet-101's "
            f"(most in its fully connected layers), but only {alexnet.macs / 1e9:.2f} G multiply-adds: "
            f"ResNet-50 computes {r50.macs / alexnet.macs:.0f}x and ResNet-101 {r101.macs / alexnet.macs:.0f}x as much."
        )
    return text


def paper_top1_error(name: str) -> float | None:
    """The single-model ImageNet top-1 error (%) ``name``'s paper reports (cnnzoo.reported_accuracy)."""
    reported = reported_accuracy(name)
    return None if reported is None or reported.top1 is None else 100 - reported.top1


def format_table(counts: list[Count]) -> str:
    rows = []
    for c in counts:
        paper = TABLE1_GMACS.get(c.model)
        error = paper_top1_error(c.model)
        rows.append([
            c.model,
            f"{c.input_size}x{c.input_size}",
            f"{c.params / 1e6:.2f}M",
            f"{c.macs / 1e9:.2f} G",
            f"{c.paper_macs / 1e9:.2f} G" if c.paper_macs else ("same" if paper else "-"),
            f"{paper:.1f} G" if paper else "-",
            f"{error:.2f}%" if error is not None else "-",
        ])  # fmt: skip
    header = ["model", "input", "params", "multiply-adds", "with the paper's bottleneck", "Table 1 FLOPs",
              "paper top-1 error"]  # fmt: skip
    return markdown_table(header, rows)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", default=",".join(DEFAULT_MODELS),
                   help=f"registered models, comma-separated (default {','.join(DEFAULT_MODELS)})")  # fmt: skip
    p.add_argument("--out", default="runs/experiment-resnet-params",
                   help="output folder: results.md and run.json (default runs/experiment-resnet-params)")


@register_experiment(
    "resnet-params",
    "ResNet-18..152 vs AlexNet: parameters and multiply-adds against He et al. Table 1; ResNet-101 minus ResNet-50",
    add_arguments,
)
def run(args: argparse.Namespace) -> int:
    from cnnzoo.registry import model_info

    names = [n.strip() for n in args.models.split(",") if n.strip()]
    for name in names:
        model_info(name)  # unknown names: one-line error before any work
    counts = [count(name) for name in names]
    table = format_table(counts)
    answer = extra_blocks_answer({c.model: c for c in counts})
    # counted afresh every time: nothing is reused, so other --models may go into the same folder
    exp = ExperimentDir.open(args.out, "resnet-params", {"models": names}, check=False)
    out = write_text(exp / "results.md", table + "\n\n" + answer + "\n")
    print(table)
    if answer:
        print("\n" + answer)
    print(f"\nwritten: {out}")
    return 0
