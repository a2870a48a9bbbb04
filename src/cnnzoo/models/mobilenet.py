"""MobileNet v1 (Howard et al. 2017): depthwise separable convolutions, width and resolution multipliers.

The body is Table 1 as data: a full 3x3/2 convolution with 32 filters, then 13 depthwise
separable convolutions given as (output channels, stride), global average pooling and a
fully connected layer.  Table 1 prints stride 2 for the second-to-last depthwise layer
("Conv dw / s2" on a 7x7 input); it keeps 7x7 resolution, so its stride is 1, as in the
authors' released models.  The width multiplier ``alpha`` thins every layer to
``alpha`` times its channels (Section 3.3); the resolution multiplier is simply a smaller
input (Section 3.4): the net takes any resolution.  ``separable=False`` builds Table 4's
"Conv MobileNet", the same net with full 3x3 convolutions.

Every convolution is followed by batch norm and ReLU (Fig. 3).  timm's ``mobilenetv1_100``
(like TensorFlow's released MobileNets) is the same net layer for layer but clips with ReLU6;
with its ReLU6s swapped for ReLU its weights load here and give the same outputs
(tests/test_timm_equivalence.py).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cnnzoo.errors import ConfigError
from cnnzoo.layers.conv import ConvNormAct
from cnnzoo.layers.conv_types import DepthwiseSeparableConv
from cnnzoo.models.base import ClassifierNet, init_weights, linear_or_identity
from cnnzoo.registry import Paper, register_model

MOBILENET_PAPER = Paper(
    title="MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications",
    authors="Andrew G. Howard, Menglong Zhu, Bo Chen, Dmitry Kalenichenko, Weijun Wang, Tobias Weyand, "
    "Marco Andreetto, Hartwig Adam",
    year=2017,
    url="https://arxiv.org/abs/1704.04861",
)

STEM_CHANNELS = 32
# Table 1: (output channels, stride) of each depthwise separable layer
MOBILENET_V1_LAYERS: tuple[tuple[int, int], ...] = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),  # printed "s2" in Table 1, but the map stays 7x7
)


def scale_width(channels: int, alpha: float) -> int:
    """``alpha * channels``, rounded, at least 1 (Section 3.3's width multiplier)."""
    return max(1, int(round(channels * alpha)))


class MobileNetV1(ClassifierNet):
    """MobileNet v1: ``stem`` (3x3/2 conv-BN-ReLU), 13 ``blocks``, global average pool, FC.

    ``forward_features`` returns the last block's map (``1024 alpha`` x 7 x 7 at 224);
    the head pools it globally (any resolution works), applies optional dropout and the
    ``classifier``.  ``num_features`` is ``1024 alpha``.
    """

    feature_trunk = ("stem", "blocks.*")

    classifier_path = "classifier"

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        alpha: float = 1.0,
        separable: bool = True,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__(num_classes, in_chans)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha <= 4:
            raise ConfigError(f"mobilenet width multiplier alpha must be in (0, 4], got {alpha!r}")
        self.alpha = float(alpha)
        self.separable = bool(separable)
        channels = scale_width(STEM_CHANNELS, alpha)
        self.stem = ConvNormAct(in_chans, channels, 3, stride=2)
        blocks: list[nn.Module] = []
        for out_channels, stride in MOBILENET_V1_LAYERS:
            out_channels = scale_width(out_channels, alpha)
            if separable:
                blocks.append(DepthwiseSeparableConv(channels, out_channels, stride))
            else:
                blocks.append(ConvNormAct(channels, out_channels, 3, stride))
            channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.num_features = channels
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(p=drop_rate)
        self.classifier = linear_or_identity(channels, num_classes)
        init_weights(self)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.blocks(self.stem(x))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = torch.flatten(self.global_pool(x), 1)
        if pre_logits:
            return x
        return self.classifier(self.dropout(x))


_MOBILENET = dict(family="mobilenet", paper=MOBILENET_PAPER, input_size=(3, 224, 224), min_size=1)


@register_model(**_MOBILENET)
def mobilenet_v1(alpha: float = 1.0, **kwargs) -> MobileNetV1:
    """MobileNet v1 1.0 (Table 1): 4.2M parameters, 569M multiply-adds at 224; options alpha, separable."""
    return MobileNetV1(alpha=alpha, **kwargs)


@register_model(**_MOBILENET)
def mobilenet_v1_075(**kwargs) -> MobileNetV1:
    """MobileNet v1 with width multiplier 0.75 (Table 6): 2.6M parameters, 325M multiply-adds."""
    return MobileNetV1(alpha=0.75, **kwargs)


@register_model(**_MOBILENET)
def mobilenet_v1_050(**kwargs) -> MobileNetV1:
    """MobileNet v1 with width multiplier 0.5 (Table 6): 1.3M parameters, 149M multiply-adds."""
    return MobileNetV1(alpha=0.5, **kwargs)


@register_model(**_MOBILENET)
def mobilenet_v1_025(**kwargs) -> MobileNetV1:
    """MobileNet v1 with width multiplier 0.25 (Table 6): 0.5M parameters, 41M multiply-adds."""
    return MobileNetV1(alpha=0.25, **kwargs)
