"""The ImageNet accuracy each model's own paper reports: one table, with its source.

Canziani et al. 2016 (the practical comparison 002 closes with) plot top-1 accuracy against
operations; ``cnnzoo compare --plot`` draws that chart from these figures and ``cnnzoo info``
prints them.  The registry attaches each entry to its model (``ModelInfo.reported``), and the
shipped metadata index carries it.  Torch-free.

Rules of the table:

* only a model whose paper gives an ImageNet (ILSVRC-2012 validation) figure for that very
  configuration has an entry; torchvision's variants (``googlenet_bn``, the ``*_bn`` VGGs,
  ``resnext101_32x8d``, ``wide_resnet101_2``, ``squeezenet1_1``) and nets evaluated on CIFAR only
  have none;
* numbers are accuracies in percent, ``100 - error`` where the paper prints errors;
* ``evaluation`` says how the paper tested: a single centre crop, 10 crops, dense (fully
  convolutional) evaluation, or ``"not stated"`` where the table does not say;
* GoogLeNet's paper gives top-5 only (Szegedy et al. 2014, Table 3), so it has no top-1.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReportedAccuracy:
    """One model's ImageNet validation accuracy (%) as its paper reports it."""

    source: str  # the paper and its table, e.g. "He et al. 2016, Table 3"
    top1: float | None = None
    top5: float | None = None
    evaluation: str = "not stated"  # "single crop", "10 crops", "dense", "not stated"
    note: str = ""

    def describe(self) -> str:
        """``top-1 76.2%, top-5 93.3% (10 crops; He et al. 2016, Table 3)``: for ``cnnzoo info``."""
        parts = [f"top-{k} {v:.1f}%" for k, v in ((1, self.top1), (5, self.top5)) if v is not None]
        return f"{', '.join(parts)} ({self.evaluation}; {self.source})" + (f"; {self.note}" if self.note else "")


def _error(top1_error: float | None, top5_error: float | None = None, **fields) -> ReportedAccuracy:
    """An entry from the errors (%) a paper prints."""
    return ReportedAccuracy(top1=None if top1_error is None else round(100 - top1_error, 2),
                            top5=None if top5_error is None else round(100 - top5_error, 2), **fields)  # fmt: skip


_VGG = "Simonyan & Zisserman 2015, Table 3 (the configuration's best single-scale row)"
_RESNET2 = "He et al. 2016, Table 2"
_RESNET3 = "He et al. 2016, Table 3"
_V15 = "the paper's bottleneck strides in its first 1x1; the registered torchvision layout strides in the 3x3"
_DENSENET = "Huang et al. 2017, Table 3"
_INCEPTION4 = "Szegedy et al. 2017, Table 2 (single model)"
_MOBILENET = "Howard et al. 2017, Table 6"
_SHUFFLENET = "Zhang et al. 2018, Table 2 (ShuffleNet 1x)"

#: model name -> its paper's ImageNet validation accuracy
REPORTED_ACCURACY: dict[str, ReportedAccuracy] = {
    "alexnet_paper": _error(40.7, 18.2, source="Krizhevsky et al. 2012, Table 2 (1 CNN)", evaluation="10 crops"),
    "zfnet": _error(38.4, 16.5, source="Zeiler & Fergus 2014, Table 2 (1 convnet as in Fig. 3)"),
    "vgg11": _error(29.6, 10.4, source=_VGG, evaluation="dense", note="train S=256, test Q=256"),
    "vgg11_lrn": _error(29.7, 10.5, source=_VGG, evaluation="dense", note="train S=256, test Q=256"),
    "vgg13": _error(28.7, 9.9, source=_VGG, evaluation="dense", note="train S=256, test Q=256"),
    "vgg16_c": _error(27.3, 8.8, source=_VGG, evaluation="dense", note="train S in [256, 512], test Q=384"),
    "vgg16": _error(25.6, 8.1, source=_VGG, evaluation="dense", note="train S in [256, 512], test Q=384"),
    "vgg19": _error(25.5, 8.0, source=_VGG, evaluation="dense", note="train S in [256, 512], test Q=384"),
    "bn_inception": ReportedAccuracy(source="Ioffe & Szegedy 2015, Figure 3 (BN-x30)", top1=74.8,
                                     evaluation="single crop"),
    "googlenet": _error(None, 10.07, source="Szegedy et al. 2014, Table 3 (1 model, 1 crop)",
                        evaluation="single crop", note="the paper gives top-5 only"),
    "inception_v3": _error(21.2, 5.6, source=_INCEPTION4, evaluation="single crop", note="at 299x299"),
    "inception_v4": _error(20.0, 5.0, source=_INCEPTION4, evaluation="single crop", note="at 299x299"),
    "inception_resnet_v1": _error(21.3, 5.5, source=_INCEPTION4, evaluation="single crop", note="at 299x299"),
    "inception_resnet_v2": _error(19.9, 4.9, source=_INCEPTION4, evaluation="single crop", note="at 299x299"),
    "xception": ReportedAccuracy(source="Chollet 2017, Table 1", top1=79.0, top5=94.5, evaluation="single crop",
                                 note="at 299x299"),
    "resnet18": _error(27.88, source=_RESNET2, evaluation="10 crops"),
    "resnet34": _error(24.52, 7.46, source=_RESNET3 + " (ResNet-34 B)", evaluation="10 crops"),
    "resnet50": _error(22.85, 6.71, source=_RESNET3, evaluation="10 crops", note=_V15),
    "resnet101": _error(21.75, 6.05, source=_RESNET3, evaluation="10 crops", note=_V15),
    "resnet152": _error(21.43, 5.71, source=_RESNET3, evaluation="10 crops", note=_V15),
    "resnext50_32x4d": _error(22.2, source="Xie et al. 2017, Table 3", evaluation="single crop"),
    "wide_resnet50_2": _error(21.9, 6.03, source="Zagoruyko & Komodakis 2016, ImageNet table (WRN-50-2-bottleneck)",
                              evaluation="single crop"),
    "densenet121": _error(25.02, 7.71, source=_DENSENET, evaluation="single crop"),
    "densenet169": _error(23.80, 6.85, source=_DENSENET, evaluation="single crop"),
    "densenet201": _error(22.58, 6.34, source=_DENSENET, evaluation="single crop"),
    "densenet264": _error(22.15, 6.12, source=_DENSENET, evaluation="single crop"),
    "squeezenet1_0": ReportedAccuracy(source="Iandola et al. 2016, Table 2", top1=57.5, top5=80.3),
    "mobilenet_v1": ReportedAccuracy(source=_MOBILENET, top1=70.6),
    "mobilenet_v1_075": ReportedAccuracy(source=_MOBILENET, top1=68.4),
    "mobilenet_v1_050": ReportedAccuracy(source=_MOBILENET, top1=63.7),
    "mobilenet_v1_025": ReportedAccuracy(source=_MOBILENET, top1=50.6),
    "shufflenet_v1_g1": _error(33.6, source=_SHUFFLENET),
    "shufflenet_v1_g2": _error(32.7, source=_SHUFFLENET),
    "shufflenet_v1_g3": _error(32.6, source=_SHUFFLENET),
    "shufflenet_v1_g4": _error(32.8, source=_SHUFFLENET),
    "shufflenet_v1_g8": _error(32.4, source=_SHUFFLENET),
}


def reported_accuracy(name: str) -> ReportedAccuracy | None:
    """The paper's ImageNet figure for ``name``, or None when its paper gives none."""
    return REPORTED_ACCURACY.get(name)
