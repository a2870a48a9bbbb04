"""AlexNet: the 2012 paper's two-tower net and torchvision's single-tower variant.

``alexnet_paper`` is Krizhevsky, Sutskever & Hinton 2012 (Section 3, Figure 2):
227x227x3 input, conv 96-256-384-384-256, ReLU, local response normalisation after
conv1 and conv2 (Section 3.3), overlapping 3x3/2 max-pooling (Section 3.4),
FC-4096, FC-4096 with dropout 0.5 on their outputs (Section 4.2).  The two GPUs are kept as
``groups=2``: conv2, conv4 and conv5 see only the kernel maps on their own GPU,
conv3 and the fully connected layers see both (Section 3.5).  It has 60.97M params.

``alexnet`` is the single-tower layout of Krizhevsky's 2014 "one weird trick" paper
that torchvision ships (64-192-384-256-256 filters, no LRN, adaptive 6x6 pooling so
any input of at least 63 pixels works); its layer indices match torchvision's so a
torchvision state dict loads strictly.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cnnzoo.layers.normalization import krizhevsky_lrn
from cnnzoo.models.base import ClassifierNet, fc_head, linear_or_identity
from cnnzoo.registry import Paper, register_model

ALEXNET_PAPER = Paper(
    title="ImageNet Classification with Deep Convolutional Neural Networks",
    authors="Alex Krizhevsky, Ilya Sutskever, Geoffrey E. Hinton",
    year=2012,
    url="https://papers.nips.cc/paper/4824-imagenet-classification-with-deep-convolutional-neural-networks",
)
ONE_WEIRD_TRICK_PAPER = Paper(
    title="One weird trick for parallelizing convolutional neural networks",
    authors="Alex Krizhevsky",
    year=2014,
    url="https://arxiv.org/abs/1404.5997",
)


def _classifier(in_features: int, hidden: int, num_classes: int, drop_rate: float,
                dropout_after_fc: bool = False) -> nn.Sequential:
    """FC6, FC7 (each with ReLU and dropout), FC8 at index 6.

    "We use dropout in the first two fully-connected layers" (Section 4.2): the paper and its
    Caffe release drop out the outputs of FC6 and FC7 (FC-ReLU-dropout, ``dropout_after_fc``);
    torchvision puts the dropout before FC6 and FC7 (dropout-FC-ReLU).
    """
    def fc(in_f: int) -> list[nn.Module]:
        layers = [nn.Linear(in_f, hidden), nn.ReLU(inplace=True)]
        dropout = [nn.Dropout(p=drop_rate)]
        return (layers + dropout) if dropout_after_fc else (dropout + layers)

    return nn.Sequential(*fc(in_features), *fc(hidden), linear_or_identity(hidden, num_classes))


class AlexNetBase(ClassifierNet):
    """Feature extractor ``features``, pooling ``avgpool``, FC head ``classifier``."""

    feature_trunk = ("features.*",)

    classifier_path = "classifier.6"

    def __init__(self, features: nn.Sequential, pool: nn.Module, feature_shape: tuple[int, int, int],
                 num_classes: int, in_chans: int, drop_rate: float, dropout_after_fc: bool = False) -> None:
        super().__init__(num_classes, in_chans)
        self.num_features = 4096
        self.features = features
        self.avgpool = pool
        channels, height, width = feature_shape
        self.classifier = _classifier(channels * height * width, 4096, num_classes, drop_rate, dropout_after_fc)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        return fc_head(self.classifier, torch.flatten(self.avgpool(x), 1), pre_logits)


class AlexNet(AlexNetBase):
    """torchvision's single-tower AlexNet (Krizhevsky 2014)."""

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.5) -> None:
        features = nn.Sequential(
            nn.Conv2d(in_chans, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        super().__init__(features, nn.AdaptiveAvgPool2d((6, 6)), (256, 6, 6), num_classes, in_chans, drop_rate)


class AlexNetPaper(AlexNetBase):
    """The 2012 paper's AlexNet; the two-GPU split is ``groups=2`` in conv2, conv4, conv5.

    Order within layers 1 and 2 follows the paper: conv, ReLU, LRN, max-pool
    ("Response-normalization layers follow the first and second convolutional layers.
    Max-pooling layers ... follow both response-normalization layers", Section 3.5).
    The lecture's list (002) puts each norm after its pool (``lrn_after_pool=True``);
    the convolution and pooling output sizes are the same either way.  The head is
    FC6-ReLU-dropout, FC7-ReLU-dropout, FC8: dropout on the outputs of FC6 and FC7 (Section 4.2
    and the Caffe release), not before them as in torchvision's ``alexnet``.
    """

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.5,
                 two_towers: bool = True, lrn_after_pool: bool = False) -> None:
        groups = 2 if two_towers else 1

        def normalise_then_pool() -> list[nn.Module]:
            # the paper's order; lrn_after_pool=True gives the lecture's (and CaffeNet's)
            layers = [krizhevsky_lrn(), nn.MaxPool2d(kernel_size=3, stride=2)]
            return layers[::-1] if lrn_after_pool else layers

        features = nn.Sequential(
            nn.Conv2d(in_chans, 96, kernel_size=11, stride=4),  # 227 -> 55
            nn.ReLU(inplace=True),
            *normalise_then_pool(),  # 55 -> 27
            nn.Conv2d(96, 256, kernel_size=5, padding=2, groups=groups),
            nn.ReLU(inplace=True),
            *normalise_then_pool(),  # 27 -> 13
            nn.Conv2d(256, 384, kernel_size=3, padding=1),  # reads both towers
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 384, kernel_size=3, padding=1, groups=groups),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1, groups=groups),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),  # 13 -> 6
        )
        # the fully connected layers read a fixed 6x6x256 map: only 227x227 inputs fit
        # dropout on the outputs of FC6 and FC7, as in the paper and the Caffe release
        super().__init__(features, nn.Identity(), (256, 6, 6), num_classes, in_chans, drop_rate,
                         dropout_after_fc=True)
        self._init_weights()

    def _init_weights(self) -> None:
        # Section 5: weights from N(0, 0.01); biases 1 in conv2, conv4, conv5 and the
        # hidden FC layers ("accelerates the early stages of learning"), 0 elsewhere.
        convs = [m for m in self.features if isinstance(m, nn.Conv2d)]
        linears = [m for m in self.classifier if isinstance(m, nn.Linear)]
        for module in convs + linears:
            nn.init.normal_(module.weight, 0.0, 0.01)
            nn.init.zeros_(module.bias)
        for module in (convs[1], convs[3], convs[4], *linears[:2]):
            nn.init.ones_(module.bias)


@register_model(family="alexnet", paper=ONE_WEIRD_TRICK_PAPER, input_size=(3, 224, 224), min_size=63)
def alexnet(**kwargs) -> AlexNet:
    """AlexNet, torchvision's single-tower layout (64-192-384-256-256, no LRN)."""
    return AlexNet(**kwargs)


@register_model(family="alexnet", paper=ALEXNET_PAPER, input_size=(3, 227, 227), fixed_size=True)
def alexnet_paper(**kwargs) -> AlexNetPaper:
    """AlexNet as in the 2012 paper: 227x227, LRN, two GPU towers as groups=2."""
    return AlexNetPaper(**kwargs)
