"""Inception-v4 (Szegedy, Ioffe, Vanhoucke & Alemi 2016), Figure 9.

299x299x3 -> stem (Figure 3) 35x35x384 -> 4 x Inception-A (Figure 4) -> Reduction-A
(Figure 7, k=192, l=224, m=256, n=384 from Table 1) 17x17x1024 -> 7 x Inception-B
(Figure 5) -> Reduction-B (Figure 8) 8x8x1536 -> 3 x Inception-C (Figure 6) -> average
pool -> dropout (keep 0.8) -> linear.  Convolutions marked "V" in the figures are unpadded,
the others keep the grid size.

The layout (one ``features`` sequence, ``last_linear``) is timm's ``inception_v4``, whose
state dict loads strictly.  The paper gives no parameter count; timm's model has the
same 42.7M parameters.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cnnzoo.layers.inception import (
    InceptionV4A,
    InceptionV4B,
    InceptionV4C,
    InceptionV4ReductionB,
    ReductionA,
    StemConvAndPool,
    StemFactorizedBranches,
    StemPoolAndConv,
    conv_bn,
)
from cnnzoo.models.base import ClassifierNet, linear_or_identity
from cnnzoo.registry import Paper, register_model

INCEPTION_V4_PAPER = Paper(
    title="Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning",
    authors="Christian Szegedy, Sergey Ioffe, Vincent Vanhoucke, Alex Alemi",
    year=2016,
    url="https://arxiv.org/abs/1602.07261",
)

#: Figure 9: how many of each module
NUM_INCEPTION_A, NUM_INCEPTION_B, NUM_INCEPTION_C = 4, 7, 3
#: Table 1, the Reduction-A filter counts (k, l, m, n) of Inception-v4
REDUCTION_A_V4 = (192, 224, 256, 384)


class InceptionV4(ClassifierNet):
    """Inception-v4: the modules of Figures 3-8 arranged as in Figure 9."""

    feature_trunk = ("features.*",)

    classifier_path = "last_linear"

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.2) -> None:
        super().__init__(num_classes, in_chans)
        self.num_features = 1536
        layers: list[nn.Module] = [
            # stem, Figure 3: 299 -> 149 -> 147 -> 147 (SAME) -> 73 -> 71 -> 35
            conv_bn(in_chans, 32, 3, stride=2, padding=0),
            conv_bn(32, 32, 3, padding=0),
            conv_bn(32, 64, 3, padding=1),
            StemPoolAndConv(64, 96),  # 73x73x160
            StemFactorizedBranches(160),  # 71x71x192
            StemConvAndPool(192, 192),  # 35x35x384
        ]
        layers += [InceptionV4A(384) for _ in range(NUM_INCEPTION_A)]
        layers.append(ReductionA(384, *REDUCTION_A_V4))  # 17x17x1024
        layers += [InceptionV4B(1024) for _ in range(NUM_INCEPTION_B)]
        layers.append(InceptionV4ReductionB(1024))  # 8x8x1536
        layers += [InceptionV4C(1536) for _ in range(NUM_INCEPTION_C)]
        self.features = nn.Sequential(*layers)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        # "Dropout (keep 0.8)", Figure 9
        self.head_drop = nn.Dropout(drop_rate)
        self.last_linear = linear_or_identity(self.num_features, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.head_drop(torch.flatten(self.global_pool(x), 1))
        return x if pre_logits else self.last_linear(x)


@register_model(family="inception", paper=INCEPTION_V4_PAPER, input_size=(3, 299, 299), min_size=75)
def inception_v4(**kwargs) -> InceptionV4:
    """Inception-v4 (pure Inception, Figure 9 of the paper); loads timm's inception_v4 weights."""
    return InceptionV4(**kwargs)
