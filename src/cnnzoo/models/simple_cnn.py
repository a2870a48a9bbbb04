"""A 3-layer CNN for the brief's batch-normalisation experiment (000 and 001; Ioffe & Szegedy 2015).

The brief asks for "a 3-layer CNN on MNIST with and without BN".  ``cnn3`` is the smallest net
that makes the comparison: three stages of

    3x3 convolution (padding 1) -> [batch norm] -> ReLU -> 2x2 max-pool

with 32, 64 and 128 filters (28x28 -> 14 -> 7 -> 3), global average pooling and one linear
classifier.  Option ``norm`` decides the only thing that differs between the variants:

* ``"none"``: no normalisation; the convolutions have a bias;
* ``"bn"``: :class:`~cnnzoo.layers.batchnorm.BatchNorm2dFromEquations` (the paper's Algorithms 1
  and 2, written out) after every convolution;
* ``"bn_torch"``: ``nn.BatchNorm2d`` at the same places (to check that the two agree).

BN sits between the convolution and the nonlinearity, as Section 3.2 places it ("we add the BN
transform immediately before the nonlinearity, by normalizing x = Wu + b"), and the convolution
has no bias there: "the bias b can be ignored since its effect will be canceled by the subsequent
mean subtraction (the role of the bias is subsumed by beta)" (Section 3.2; 001's rule "conv
without bias before BN").
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
from torch import Tensor, nn

from cnnzoo.errors import ConfigError
from cnnzoo.layers.batchnorm import BatchNorm2dFromEquations
from cnnzoo.models.base import ClassifierNet, init_weights, linear_or_identity
from cnnzoo.models.bn_inception import BN_INCEPTION_PAPER
from cnnzoo.registry import register_model

NORMS = ("none", "bn", "bn_torch")


def _norm_layer(norm: str, channels: int) -> nn.Module:
    if norm == "bn":
        return BatchNorm2dFromEquations(channels)
    if norm == "bn_torch":
        return nn.BatchNorm2d(channels)
    return nn.Identity()


class SimpleCNN(ClassifierNet):
    """Conv-[BN]-ReLU-pool stages, global average pooling, one linear classifier."""

    feature_trunk = ("features.*",)

    classifier_path = "fc"

    def __init__(self, num_classes: int = 10, in_chans: int = 1, norm: str = "none",
                 widths: Sequence[int] = (32, 64, 128)) -> None:  # fmt: skip
        super().__init__(num_classes, in_chans)
        if norm not in NORMS:
            raise ConfigError(f"unknown norm {norm!r} for cnn3; choose from {', '.join(NORMS)}")
        widths = [int(w) for w in widths]
        if not widths or min(widths) < 1:
            raise ConfigError(f"widths must be positive numbers of filters, got {list(widths)}")
        self.norm = norm
        self.num_features = widths[-1]
        stages = []
        channels = in_chans
        for width in widths:
            # every convolution is built without a bias (see below for the unnormalised net)
            stages.append(nn.Sequential(OrderedDict(
                conv=nn.Conv2d(channels, width, kernel_size=3, padding=1, bias=False),
                norm=_norm_layer(norm, width),
                act=nn.ReLU(inplace=True),
                pool=nn.MaxPool2d(kernel_size=2, stride=2),
            )))  # fmt: skip
            channels = width
        self.features = nn.Sequential(*stages)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = linear_or_identity(channels, num_classes)
        init_weights(self)
        if norm == "none":
            # The biases are added after the initialisation, zero and without drawing random
            # numbers: under one seed every variant starts from the same convolution and
            # classifier weights, so BN is the only difference between them.
            for stage in self.features:
                stage.conv.bias = nn.Parameter(torch.zeros(stage.conv.out_channels))

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = torch.flatten(self.global_pool(x), 1)
        return x if pre_logits else self.fc(x)


@register_model(family="simple_cnn", paper=BN_INCEPTION_PAPER, input_size=(1, 28, 28), num_classes=10, min_size=8)
def cnn3(**kwargs) -> SimpleCNN:
    """3-layer CNN (3x3 convs 32/64/128, max-pools, GAP) for the BN experiment; norm=none|bn|bn_torch."""
    return SimpleCNN(**kwargs)
