"""Inception v3 (Szegedy et al. 2015, "Rethinking the Inception Architecture"), Table 1.

299x299 input.  Stem of plain convolutions down to 35x35, then
3 x Figure-5 modules (35x35, 5x5 factorised into two 3x3) -> grid reduction (Figure 10) ->
4 x Figure-6 modules (17x17, 7x7 factorised into 1x7 and 7x1) -> grid reduction ->
2 x Figure-7 modules (8x8, expanded filter banks, 2048 channels) -> 8x8 average pool ->
dropout -> linear; an auxiliary classifier (Figure 8) on the last 17x17 module.

The layout is that of the released model (TF-slim, torchvision ``inception_v3``), whose
state dict loads strictly; it differs from the paper's Table 1 in places the paper itself
leaves loose: the stem's fourth and fifth convolutions are 1x1/80 and 3x3/192 followed by
a 3x3/2 max-pool (the table lists 3x3/80, 3x3/2 192, 3x3 288), the 35x35 modules keep a 5x5
branch next to the double 3x3, and the table's "5 x Inception" at 17x17 counts the grid
reduction: there are four Figure-6 modules.  Batch norm follows every convolution (the
"Inception-v2 BN-auxiliary" row of Table 3).  Label smoothing (Section 7) and RMSProp
(Section 8) belong to training.

In training mode with ``aux_logits=True`` the forward returns ``(logits, aux_logits)``
(torchvision returns the same pair as a named tuple); the paper weights the auxiliary
loss by 0.3 as GoogLeNet does (:data:`AUX_LOSS_WEIGHT`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cnnzoo.errors import InputSizeError
from cnnzoo.layers.inception import (
    InceptionV3A,
    InceptionV3Aux,
    InceptionV3B,
    InceptionV3C,
    InceptionV3ReductionA,
    InceptionV3ReductionB,
    conv_bn,
)
from cnnzoo.models.base import AuxClassifierNet, linear_or_identity
from cnnzoo.registry import Paper, register_model

INCEPTION_V3_PAPER = Paper(
    title="Rethinking the Inception Architecture for Computer Vision",
    authors="Christian Szegedy, Vincent Vanhoucke, Sergey Ioffe, Jonathon Shlens, Zbigniew Wojna",
    year=2015,
    url="https://arxiv.org/abs/1512.00567",
)

AUX_LOSS_WEIGHT = 0.3

#: the 35x35 modules' pool-projection widths and the 17x17 modules' factorised widths
POOL_FEATURES_35 = (32, 64, 64)
CHANNELS_7x7_17 = (128, 160, 160, 192)


# a leaf function for torch.fx: the check reads the traced shape, which symbolic tracing cannot
# branch on; dynamo (torch.export, torch.compile) traces through it as it is
@torch.fx.wrap
def check_aux_grid(x: Tensor) -> Tensor:
    """``x``, if it is the 17x17 grid (or larger) the auxiliary classifier needs."""
    if min(x.shape[-2:]) < 17:
        raise InputSizeError(
            f"inception_v3's auxiliary classifier needs the 17x17 grid of a 299x299 input, got "
            f"{x.shape[-2]}x{x.shape[-1]}; use aux_logits=False for smaller inputs"
        )
    return x


class InceptionV3(AuxClassifierNet):
    """Inception v3 with torchvision's module names (see the module docstring)."""

    feature_trunk = (
        "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
        "maxpool2", "Mixed_*",
    )

    classifier_path = "fc"

    def __init__(
        self, num_classes: int = 1000, in_chans: int = 3, aux_logits: bool = True, drop_rate: float = 0.5
    ) -> None:
        super().__init__(num_classes, in_chans)
        self.aux_logits = aux_logits
        self.num_features = 2048
        # stem (Table 1's first rows): 299 -> 149 -> 147 -> 147 -> 73 -> 73 -> 71 -> 35
        self.Conv2d_1a_3x3 = conv_bn(in_chans, 32, 3, stride=2, padding=0)
        self.Conv2d_2a_3x3 = conv_bn(32, 32, 3, padding=0)
        self.Conv2d_2b_3x3 = conv_bn(32, 64, 3, padding=1)
        self.maxpool1 = nn.MaxPool2d(3, stride=2)
        self.Conv2d_3b_1x1 = conv_bn(64, 80, 1)
        self.Conv2d_4a_3x3 = conv_bn(80, 192, 3, padding=0)
        self.maxpool2 = nn.MaxPool2d(3, stride=2)
        # 3 x Figure 5 at 35x35
        self.Mixed_5b = InceptionV3A(192, POOL_FEATURES_35[0])
        self.Mixed_5c = InceptionV3A(256, POOL_FEATURES_35[1])
        self.Mixed_5d = InceptionV3A(288, POOL_FEATURES_35[2])
        self.Mixed_6a = InceptionV3ReductionA(288)
        # 4 x Figure 6 at 17x17
        self.Mixed_6b = InceptionV3B(768, CHANNELS_7x7_17[0])
        self.Mixed_6c = InceptionV3B(768, CHANNELS_7x7_17[1])
        self.Mixed_6d = InceptionV3B(768, CHANNELS_7x7_17[2])
        self.Mixed_6e = InceptionV3B(768, CHANNELS_7x7_17[3])
        self.AuxLogits = InceptionV3Aux(768, num_classes) if aux_logits else None
        self.Mixed_7a = InceptionV3ReductionB(768)
        # 2 x Figure 7 at 8x8
        self.Mixed_7b = InceptionV3C(1280)
        self.Mixed_7c = InceptionV3C(2048)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(drop_rate)
        self.fc = linear_or_identity(2048, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01 if module is self.fc else 0.001)
                nn.init.zeros_(module.bias)

    def _features(self, x: Tensor, with_aux: bool) -> tuple[Tensor, list[Tensor]]:
        for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
                     "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a",
                     "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
            x = getattr(self, name)(x)
        aux = []
        if with_aux:
            aux.append(self.AuxLogits(check_aux_grid(x)))
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))
        return x, aux

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.dropout(torch.flatten(self.avgpool(x), 1))
        return x if pre_logits else self.fc(x)

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh main classifier and a fresh auxiliary classifier with ``num_classes`` outputs."""
        super().reset_classifier(num_classes)
        if self.aux_logits:
            self.AuxLogits.fc = linear_or_identity(768, num_classes)


@register_model(family="inception", paper=INCEPTION_V3_PAPER, input_size=(3, 299, 299), min_size=75)
def inception_v3(**kwargs) -> InceptionV3:
    """Inception v3 (factorised 7x7, expanded 8x8 modules, aux head); loads torchvision's weights."""
    return InceptionV3(**kwargs)
