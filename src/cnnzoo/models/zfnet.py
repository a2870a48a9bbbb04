"""ZFNet (Zeiler & Fergus 2013): AlexNet with a 7x7/2 first layer and wider conv3-5.

Figure 3 of the paper: 224x224x3 input; conv1 96 7x7/2 -> 110; 3x3/2 max-pool -> 55
and contrast normalisation across maps; conv2 256 5x5/2 -> 26, pool -> 13, norm;
conv3-5 3x3/1; pool -> 6x6; FC-4096, FC-4096, classes.  Pooling rounds up (ceil mode,
as in Caffe, which is how 110 -> 55 and 26 -> 13 in the figure).

The lecture (002) gives conv3-5 as 512, 1024, 512 filters, the widened variant of the
paper's Table 3 ("Our model ... 512, 1024, 512 maps"); that is our default, and
``conv345_widths=(384, 384, 256)`` gives Figure 3's net.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cnnzoo.layers.normalization import krizhevsky_lrn
from cnnzoo.models.base import ClassifierNet, fc_head, linear_or_identity
from cnnzoo.registry import Paper, register_model

ZFNET_PAPER = Paper(
    title="Visualizing and Understanding Convolutional Networks",
    authors="Matthew D. Zeiler, Rob Fergus",
    year=2013,
    url="https://arxiv.org/abs/1311.2901",
)


def make_zfnet_features(in_chans: int, conv345_widths: tuple[int, int, int]) -> nn.Sequential:
    """conv1..conv5 with their pools and normalisations, ending with the last max-pool."""
    c3, c4, c5 = conv345_widths
    return nn.Sequential(
        nn.Conv2d(in_chans, 96, kernel_size=7, stride=2, padding=1),  # 224 -> 110
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),  # 110 -> 55
        krizhevsky_lrn(),
        nn.Conv2d(96, 256, kernel_size=5, stride=2),  # 55 -> 26
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),  # 26 -> 13
        krizhevsky_lrn(),
        nn.Conv2d(256, c3, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(c3, c4, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(c4, c5, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),  # 13 -> 6
    )


class ZFNet(ClassifierNet):
    """ZFNet: ``features`` (conv1-5 and pools), ``classifier`` (FC6, FC7, FC8 with dropout)."""

    feature_trunk = ("features.*",)

    classifier_path = "classifier.6"

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        conv345_widths: tuple[int, int, int] = (512, 1024, 512),
        drop_rate: float = 0.5,
    ) -> None:
        super().__init__(num_classes, in_chans)
        self.num_features = 4096
        self.features = make_zfnet_features(in_chans, tuple(conv345_widths))
        self.classifier = nn.Sequential(
            nn.Linear(conv345_widths[2] * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=drop_rate),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=drop_rate),
            linear_or_identity(4096, num_classes),
        )

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        return fc_head(self.classifier, torch.flatten(x, 1), pre_logits)


@register_model(family="zfnet", paper=ZFNET_PAPER, input_size=(3, 224, 224), fixed_size=True)
def zfnet(**kwargs) -> ZFNet:
    """ZFNet: 7x7/2 conv1, 512/1024/512 filters in conv3-5 (the lecture's variant)."""
    return ZFNet(**kwargs)
