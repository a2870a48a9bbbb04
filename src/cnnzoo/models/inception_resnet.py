"""Inception-ResNet-v1 and -v2 (Szegedy, Ioffe, Vanhoucke & Alemi 2016), Figure 15.

Inception modules whose concatenated branches pass through a linear 1x1 convolution and
are *added* to the input, scaled by 0.1-0.3 first (Section 3.3).  Both nets follow the
schema of Figure 15: stem -> Inception-ResNet-A x N at 35x35 -> Reduction-A (Table 1's
k, l, m, n) -> Inception-ResNet-B x N at 17x17 -> Reduction-B -> Inception-ResNet-C x N at
8x8 -> average pool -> dropout (keep 0.8) -> linear.

``inception_resnet_v1`` is the paper: the stem of Figure 14 (35x35x256), 5 x Figure 10,
Reduction-A (192, 192, 256, 384) to 17x17x896, 10 x Figure 11, Reduction-B of Figure 12 to
8x8x1792, 5 x Figure 13; residual scales 0.17, 0.10, 0.20.  Its 22.76M parameters (1000
classes) follow Figure 15 and Figures 10-14, not the FaceNet-style Inception-ResNet-v1 that
some libraries ship (23.99M parameters): that is a variant of its own, not the paper's net, so
the two counts are not expected to agree.

``inception_resnet_v2`` is the released model (TF-slim; timm ``inception_resnet_v2``, whose
weights load strictly).  The paper's version (Figures 3, 16-19) does not add up: its
Inception-ResNet-B block projects to 1154 channels while Reduction-A gives 1152, and its
Inception-ResNet-C to 2048 where Reduction-B gives 2144.  The release instead uses an
Inception-v3 style stem ending in a 35x35x320 Inception module (``mixed_5b``), and
10 x A (320), Reduction-A (256, 256, 384, 384) to 1088, 20 x B (1088), Reduction-B of
Figure 18 to 2080, 10 x C (2080, the last one without ReLU and with scale 1), then a 1x1
convolution to 1536 channels before pooling.  The paper gives no parameter counts; it
says v1 costs about as much as Inception-v3 and v2 about as much as Inception-v4.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cnnzoo.layers.inception import (
    InceptionResNetBlock,
    InceptionResNetReductionB,
    ReductionA,
    conv_bn,
)
from cnnzoo.models.base import ClassifierNet, linear_or_identity
from cnnzoo.models.inception_v4 import INCEPTION_V4_PAPER
from cnnzoo.registry import register_model

# Block branches as data: each branch is its convolutions' (out_channels, kernel).
#: Figure 10, 11, 13 (Inception-ResNet-v1)
V1_BLOCK_A = ([(32, 1)], [(32, 1), (32, 3)], [(32, 1), (32, 3), (32, 3)])
V1_BLOCK_B = ([(128, 1)], [(128, 1), (128, (1, 7)), (128, (7, 1))])
V1_BLOCK_C = ([(192, 1)], [(192, 1), (192, (1, 3)), (192, (3, 1))])
#: Figures 16, 17, 19 as released (Inception-ResNet-v2)
V2_BLOCK_A = ([(32, 1)], [(32, 1), (32, 3)], [(32, 1), (48, 3), (64, 3)])
V2_BLOCK_B = ([(192, 1)], [(128, 1), (160, (1, 7)), (192, (7, 1))])
V2_BLOCK_C = ([(192, 1)], [(192, 1), (224, (1, 3)), (256, (3, 1))])
#: residual scales of the A, B and C blocks (Section 3.3: "between 0.1 and 0.3")
RESIDUAL_SCALES = (0.17, 0.10, 0.20)


class _InceptionResNet(ClassifierNet):
    """Shared head and contract; subclasses build ``forward_features``' layers."""

    classifier_path = "classif"

    def _finish(self, num_features: int, num_classes: int, drop_rate: float) -> None:
        self.num_features = num_features
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.head_drop = nn.Dropout(drop_rate)  # Figure 15: "Dropout (keep 0.8)"
        self.classif = linear_or_identity(num_features, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01)
                nn.init.zeros_(module.bias)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.head_drop(torch.flatten(self.global_pool(x), 1))
        return x if pre_logits else self.classif(x)


def _blocks(count: int, channels: int, branches, scale: float) -> nn.Sequential:
    return nn.Sequential(*(InceptionResNetBlock(channels, branches, scale) for _ in range(count)))


class InceptionResNetV1(_InceptionResNet):
    """Inception-ResNet-v1 as in the paper (Figures 10-15)."""

    feature_trunk = (
        "conv2d_1a", "conv2d_2a", "conv2d_2b", "maxpool_3a", "conv2d_3b", "conv2d_4a", "conv2d_4b", "repeat",
        "mixed_6a", "repeat_1", "mixed_7a", "repeat_2",
    )

    def __init__(
        self, num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.2, depths=(5, 10, 5)
    ) -> None:
        super().__init__(num_classes, in_chans)
        # stem, Figure 14: 299 -> 149 -> 147 -> 147 -> 73 -> 73 -> 71 -> 35 (x256)
        self.conv2d_1a = conv_bn(in_chans, 32, 3, stride=2, padding=0)
        self.conv2d_2a = conv_bn(32, 32, 3, padding=0)
        self.conv2d_2b = conv_bn(32, 64, 3, padding=1)
        self.maxpool_3a = nn.MaxPool2d(3, stride=2)
        self.conv2d_3b = conv_bn(64, 80, 1)
        self.conv2d_4a = conv_bn(80, 192, 3, padding=0)
        self.conv2d_4b = conv_bn(192, 256, 3, stride=2, padding=0)
        scale_a, scale_b, scale_c = RESIDUAL_SCALES
        self.repeat = _blocks(depths[0], 256, V1_BLOCK_A, scale_a)
        self.mixed_6a = ReductionA(256, 192, 192, 256, 384)  # 17x17x896
        self.repeat_1 = _blocks(depths[1], 896, V1_BLOCK_B, scale_b)
        self.mixed_7a = InceptionResNetReductionB(896, 384, 256, 256, 256)  # 8x8x1792
        self.repeat_2 = _blocks(depths[2], 1792, V1_BLOCK_C, scale_c)
        self._finish(1792, num_classes, drop_rate)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.conv2d_2b(self.conv2d_2a(self.conv2d_1a(x)))
        x = self.conv2d_4b(self.conv2d_4a(self.conv2d_3b(self.maxpool_3a(x))))
        x = self.mixed_6a(self.repeat(x))
        x = self.mixed_7a(self.repeat_1(x))
        return self.repeat_2(x)


class InceptionResNetV2Mixed5b(nn.Module):
    """The 35x35x320 Inception module that ends the released v2 stem (v3's Figure 5 style)."""

    def __init__(self, in_channels: int = 192) -> None:
        super().__init__()
        self.branch0 = conv_bn(in_channels, 96, 1)
        self.branch1 = nn.Sequential(conv_bn(in_channels, 48, 1), conv_bn(48, 64, 5))
        self.branch2 = nn.Sequential(conv_bn(in_channels, 64, 1), conv_bn(64, 96, 3), conv_bn(96, 96, 3))
        self.branch3 = nn.Sequential(
            nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False), conv_bn(in_channels, 64, 1)
        )
        self.out_channels = 96 + 64 + 96 + 64

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)


class InceptionResNetV2(_InceptionResNet):
    """Inception-ResNet-v2 as released (timm's layout; see the module docstring)."""

    feature_trunk = (
        "conv2d_1a", "conv2d_2a", "conv2d_2b", "maxpool_3a", "conv2d_3b", "conv2d_4a", "maxpool_5a", "mixed_5b",
        "repeat", "mixed_6a", "repeat_1", "mixed_7a", "repeat_2", "block8", "conv2d_7b",
    )

    def __init__(
        self, num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.2, depths=(10, 20, 10)
    ) -> None:
        super().__init__(num_classes, in_chans)
        self.conv2d_1a = conv_bn(in_chans, 32, 3, stride=2, padding=0)
        self.conv2d_2a = conv_bn(32, 32, 3, padding=0)
        self.conv2d_2b = conv_bn(32, 64, 3, padding=1)
        self.maxpool_3a = nn.MaxPool2d(3, stride=2)
        self.conv2d_3b = conv_bn(64, 80, 1)
        self.conv2d_4a = conv_bn(80, 192, 3, padding=0)
        self.maxpool_5a = nn.MaxPool2d(3, stride=2)
        self.mixed_5b = InceptionResNetV2Mixed5b(192)  # 35x35x320
        scale_a, scale_b, scale_c = RESIDUAL_SCALES
        self.repeat = _blocks(depths[0], 320, V2_BLOCK_A, scale_a)
        self.mixed_6a = ReductionA(320, 256, 256, 384, 384)  # 17x17x1088
        self.repeat_1 = _blocks(depths[1], 1088, V2_BLOCK_B, scale_b)
        self.mixed_7a = InceptionResNetReductionB(1088, 384, 288, 288, 320)  # 8x8x2080
        self.repeat_2 = _blocks(depths[2] - 1, 2080, V2_BLOCK_C, scale_c)
        # the release's last block: residual unscaled, no ReLU after the sum
        self.block8 = InceptionResNetBlock(2080, V2_BLOCK_C, scale=1.0, activate=False)
        self.conv2d_7b = conv_bn(2080, 1536, 1)
        self._finish(1536, num_classes, drop_rate)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.conv2d_2b(self.conv2d_2a(self.conv2d_1a(x)))
        x = self.conv2d_4a(self.conv2d_3b(self.maxpool_3a(x)))
        x = self.repeat(self.mixed_5b(self.maxpool_5a(x)))
        x = self.repeat_1(self.mixed_6a(x))
        x = self.repeat_2(self.mixed_7a(x))
        return self.conv2d_7b(self.block8(x))


_IR = dict(family="inception", paper=INCEPTION_V4_PAPER, input_size=(3, 299, 299), min_size=75)


@register_model(**_IR)
def inception_resnet_v1(**kwargs) -> InceptionResNetV1:
    """Inception-ResNet-v1 as in the paper (Figure 15 with Figures 10-14)."""
    return InceptionResNetV1(**kwargs)


@register_model(**_IR)
def inception_resnet_v2(**kwargs) -> InceptionResNetV2:
    """Inception-ResNet-v2 as released; loads timm's inception_resnet_v2 weights."""
    return InceptionResNetV2(**kwargs)
