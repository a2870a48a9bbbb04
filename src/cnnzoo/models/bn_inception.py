"""BN-Inception, the "Inception v2" of Ioffe & Szegedy 2015 (Batch Normalization paper).

The network of Section 4.2 and the table of Figure 5 (appendix): GoogLeNet with batch
normalisation after every convolution and these changes (Section 4.2.1 and Figure 5):

* the 5x5 convolutions become two stacked 3x3 ("double 3x3", +9 weight layers);
* the 28x28 stage gets a third module (3c) and the pool branch is an average or max pool;
* there are no max-pools between stages: modules 3c and 4e halve the grid themselves
  (stride-2 last convolutions and a stride-2 max-pool passing the input through);
* no LRN, no dropout (Section 4.2.1, "Remove Dropout", "Remove Local Response Normalization").

The widths are the table's.  Its output-size column is not consistent with them at 4c and
4d (the widths give 160+160+160+128 = 608 and 96+192+192+128 = 608 channels, the column
says 576), and so 4e outputs 192+256+608 = 1056 channels rather than 1024; the released
Caffe reproduction of BN-Inception follows the widths too, as we do.  The paper's first
convolution (marked with an asterisk) is a plain 7x7/2 convolution here.  No auxiliary
classifiers: the paper does not describe them for this network.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cnnzoo.layers.inception import InceptionBN, conv_bn
from cnnzoo.models.base import ClassifierNet, linear_or_identity
from cnnzoo.registry import Paper, register_model

BN_INCEPTION_PAPER = Paper(
    title="Batch Normalization: Accelerating Deep Network Training by Reducing Internal Covariate Shift",
    authors="Sergey Ioffe, Christian Szegedy",
    year=2015,
    url="https://arxiv.org/abs/1502.03167",
)


@dataclass(frozen=True)
class BNInceptionRow:
    """One Inception row of Figure 5's table."""

    name: str
    ch1x1: int
    ch3x3red: int
    ch3x3: int
    dbl3x3red: int
    dbl3x3: int
    pool: str  # "avg" or "max"
    pool_proj: int  # 0: "pass through"
    stride: int = 1


#: Figure 5: #1x1, #3x3 reduce, #3x3, double #3x3 reduce, double #3x3, pool + proj
BN_INCEPTION_TABLE = (
    BNInceptionRow("3a", 64, 64, 64, 64, 96, "avg", 32),
    BNInceptionRow("3b", 64, 64, 96, 64, 96, "avg", 64),
    BNInceptionRow("3c", 0, 128, 160, 64, 96, "max", 0, stride=2),
    BNInceptionRow("4a", 224, 64, 96, 96, 128, "avg", 128),
    BNInceptionRow("4b", 192, 96, 128, 96, 128, "avg", 128),
    BNInceptionRow("4c", 160, 128, 160, 128, 160, "avg", 128),
    BNInceptionRow("4d", 96, 128, 192, 160, 192, "avg", 128),
    BNInceptionRow("4e", 0, 128, 192, 192, 256, "max", 0, stride=2),
    BNInceptionRow("5a", 352, 192, 320, 160, 224, "avg", 128),
    BNInceptionRow("5b", 352, 192, 320, 192, 224, "max", 128),
)


class BNInception(ClassifierNet):
    """BN-Inception: stem, ten Inception modules (Figure 5), global average pool, linear."""

    feature_trunk = ("conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception*")

    classifier_path = "fc"

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.0) -> None:
        super().__init__(num_classes, in_chans)
        # stem rows of Figure 5: 7x7/2 conv 64, 3x3/2 max-pool, 1x1 64 + 3x3 192, 3x3/2 max-pool
        self.conv1 = conv_bn(in_chans, 64, 7, stride=2)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = conv_bn(64, 64, 1)
        self.conv3 = conv_bn(64, 192, 3)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        channels = 192
        for row in BN_INCEPTION_TABLE:
            module = InceptionBN(
                channels, row.ch1x1, row.ch3x3red, row.ch3x3, row.dbl3x3red, row.dbl3x3,
                row.pool, row.pool_proj, row.stride,
            )
            self.add_module(f"inception{row.name}", module)
            channels = module.out_channels
        self.num_features = channels
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(drop_rate)
        self.fc = linear_or_identity(channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.maxpool2(self.conv3(self.conv2(self.maxpool1(self.conv1(x)))))
        for row in BN_INCEPTION_TABLE:
            x = getattr(self, f"inception{row.name}")(x)
        return x

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.dropout(torch.flatten(self.avgpool(x), 1))
        return x if pre_logits else self.fc(x)


@register_model(family="inception", paper=BN_INCEPTION_PAPER, input_size=(3, 224, 224), min_size=7)
def bn_inception(**kwargs) -> BNInception:
    """BN-Inception (Inception v2): GoogLeNet with batch norm and 5x5 as two 3x3 convs."""
    return BNInception(**kwargs)
