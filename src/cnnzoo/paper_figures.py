"""The papers' own totals for the registered models: parameters and multiply-adds, with their table.

One copy of the figures that the tests assert (each test cites the same table) and that the
atlas (:mod:`cnnzoo.atlas`) prints beside cnnzoo's counts.  Values are as the papers print
them, in plain units (``0.27e6``, not "0.27M"); the tolerance a reproduction needs is the
test's business, and where the registered layout is not the paper's (torchvision's ResNet
v1.5) the note says so.  Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PaperFigures:
    """A model's totals as its paper gives them."""

    source: str  # the paper and its table or section, e.g. "He et al. 2016, Table 1"
    params: float | None = None
    macs: float | None = None  # multiply-adds per image at the registered input size
    note: str = ""


_RESNET = "He et al. 2016, Table 1 (FLOPs row, multiply-adds at 224x224)"
_RESNET_V15 = ("the paper's bottleneck strides in its first 1x1; the registered torchvision "
               "layout (v1.5) strides in the 3x3 and costs more (4.1G for ResNet-50)")
_RESNET_CIFAR = "He et al. 2016, Table 6"
_VGG = "Simonyan & Zisserman 2014, Table 2"
_DENSENET_CIFAR = "Huang et al. 2017, Table 2"
_MOBILENET = "Howard et al. 2017, Table 6"
_SHUFFLENET = "Zhang et al. 2017, Table 1 (complexity, MFLOPs = multiply-adds)"
_WRN = "Zagoruyko & Komodakis 2016, Table 4"

#: model name -> the paper's figures
PAPER_FIGURES: dict[str, PaperFigures] = {
    "lenet5": PaperFigures("LeCun et al. 1998, Section II.B", params=60_000,
                           note="trainable parameters before the output layer"),
    "lenet5_caffe": PaperFigures("Han et al. 2016, Table 2", params=431e3, note="weights, biases not counted"),
    "lenet_300_100": PaperFigures("Han et al. 2016, Table 1", params=267e3,
                                  note="weights, biases not counted (784x300 + 300x100 + 100x10 = 266.2K)"),
    "alexnet_paper": PaperFigures("Krizhevsky et al. 2012, Section 4", params=60e6, note="\"60 million parameters\""),
    "vgg11": PaperFigures(_VGG, params=133e6),
    "vgg11_lrn": PaperFigures(_VGG, params=133e6),
    "vgg13": PaperFigures(_VGG, params=133e6),
    "vgg16_c": PaperFigures(_VGG, params=134e6),
    "vgg16": PaperFigures(_VGG, params=138e6),
    "vgg19": PaperFigures(_VGG, params=144e6),
    "googlenet": PaperFigures("Szegedy et al. 2014, Table 1 (totals of its columns)", params=6.8e6, macs=1.5e9,
                              note="the params column counts K = 1024; its conv1 row says 34M ops where "
                                   "the 7x7 convolution on 3 channels costs 118M"),
    "inception_v3": PaperFigures("Chollet 2017 (Xception), Table 3", params=23_626_728),
    "xception": PaperFigures("Chollet 2017, Table 3", params=22_855_952),
    "resnet18": PaperFigures(_RESNET, macs=1.8e9, note=_RESNET_V15),
    "resnet34": PaperFigures(_RESNET, macs=3.6e9, note=_RESNET_V15),
    "resnet50": PaperFigures(_RESNET, macs=3.8e9, note=_RESNET_V15),
    "resnet101": PaperFigures(_RESNET, macs=7.6e9, note=_RESNET_V15),
    "resnet152": PaperFigures(_RESNET, macs=11.3e9, note=_RESNET_V15),
    "resnet20": PaperFigures(_RESNET_CIFAR, params=0.27e6),
    "resnet32": PaperFigures(_RESNET_CIFAR, params=0.46e6),
    "resnet44": PaperFigures(_RESNET_CIFAR, params=0.66e6),
    "resnet56": PaperFigures(_RESNET_CIFAR, params=0.85e6),
    "resnet110": PaperFigures(_RESNET_CIFAR, params=1.7e6),
    "resnet1202": PaperFigures(_RESNET_CIFAR, params=19.4e6),
    "preact_resnet164": PaperFigures("He et al. 2016b, Table 4", params=1.7e6),
    "preact_resnet1001": PaperFigures("He et al. 2016b, Table 4", params=10.2e6),
    "wrn16_8": PaperFigures(_WRN, params=11.0e6),
    "wrn28_10": PaperFigures(_WRN, params=36.5e6),
    "wrn40_4": PaperFigures(_WRN, params=8.9e6),
    "resnext29_8x64d": PaperFigures("Xie et al. 2017, Table 7", params=34.4e6),
    "resnext29_16x64d": PaperFigures("Xie et al. 2017, Table 7", params=68.1e6),
    "densenet_bc_100_12": PaperFigures(_DENSENET_CIFAR, params=0.8e6),
    "densenet_bc_250_24": PaperFigures(_DENSENET_CIFAR, params=15.3e6),
    "densenet_bc_190_40": PaperFigures(_DENSENET_CIFAR, params=25.6e6),
    "squeezenet1_0": PaperFigures("Iandola et al. 2016, Table 1", params=1_248_424,
                                  note="before deep compression"),
    "mobilenet_v1": PaperFigures(_MOBILENET, params=4.2e6, macs=569e6),
    "mobilenet_v1_075": PaperFigures(_MOBILENET, params=2.6e6, macs=325e6),
    "mobilenet_v1_050": PaperFigures(_MOBILENET, params=1.3e6, macs=149e6),
    "mobilenet_v1_025": PaperFigures(_MOBILENET, params=0.5e6, macs=41e6),
    "shufflenet_v1_g1": PaperFigures(_SHUFFLENET, macs=143e6),
    "shufflenet_v1_g2": PaperFigures(_SHUFFLENET, macs=140e6),
    "shufflenet_v1_g3": PaperFigures(_SHUFFLENET, macs=137e6),
    "shufflenet_v1_g4": PaperFigures(_SHUFFLENET, macs=133e6),
    "shufflenet_v1_g8": PaperFigures(_SHUFFLENET, macs=137e6),
}


def params_from(source_prefix: str) -> dict[str, float]:
    """``{model: params}`` of the figures whose source starts with ``source_prefix`` (one table's column)."""
    return {name: f.params for name, f in PAPER_FIGURES.items()
            if f.source.startswith(source_prefix) and f.params is not None}  # fmt: skip


def macs_from(source_prefix: str) -> dict[str, float]:
    """``{model: multiply-adds}`` of the figures whose source starts with ``source_prefix``."""
    return {name: f.macs for name, f in PAPER_FIGURES.items()
            if f.source.startswith(source_prefix) and f.macs is not None}  # fmt: skip
