"""ShuffleNet v1 (Zhang et al. 2017): pointwise group convolutions and channel shuffle.

Table 1 is data: a 3x3/2 convolution with 24 filters and a 3x3/2 max-pool, then three
stages of ShuffleNet units (4, 8 and 4 units; the first unit of each stage has stride 2),
global average pooling and a fully connected layer.  The output channels of the stages
depend on the number of groups ``g`` so that every ``g`` costs about 140M multiply-adds
at 224x224.  "ShuffleNet s x" multiplies the number of filters by ``s`` (Section 4.1.1,
Table 2).  Scaled stage widths are rounded to a multiple of ``4 g`` so that the
bottleneck (a quarter of a unit's output) splits into ``g`` groups.  The paper's
complexities pin down the stem's width, which a plain ``24 s`` would not give:
2x costs 524M with a 48-filter stem, 1.5x 292M with 24 filters (Table 5), and 0.5x and
0.25x cost 38M and 13M (Table 2) with 12 filters (at 0.25x a 6-filter stem would give
11M, a 24-filter one 18M).  ``STEM_CHANNELS_BY_SCALE`` records these; other scales use
``24 s``.  The stem width is rounded to a multiple of ``g`` so that the stride-2 units'
branches (``out - in`` channels) split into groups too.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cnnzoo.errors import ConfigError
from cnnzoo.layers.conv import ConvNormAct
from cnnzoo.layers.shuffle import ShuffleUnit
from cnnzoo.models.base import ClassifierNet, init_weights, linear_or_identity
from cnnzoo.registry import Paper, register_model

SHUFFLENET_PAPER = Paper(
    title="ShuffleNet: An Extremely Efficient Convolutional Neural Network for Mobile Devices",
    authors="Xiangyu Zhang, Xinyu Zhou, Mengxiao Lin, Jian Sun",
    year=2017,
    url="https://arxiv.org/abs/1707.01083",
)

STEM_CHANNELS = 24
# the stem's width at the paper's scales (see the module docstring)
STEM_CHANNELS_BY_SCALE = {0.25: 12, 0.5: 12, 1.0: 24, 1.5: 24, 2.0: 48}
STAGE_REPEATS = (4, 8, 4)  # units in Stage 2, 3, 4 (the first of each has stride 2)
# Table 1: output channels of Stage 2, 3, 4 for each number of groups g (1x)
STAGE_CHANNELS = {
    1: (144, 288, 576),
    2: (200, 400, 800),
    3: (240, 480, 960),
    4: (272, 544, 1088),
    8: (384, 768, 1536),
}
SCALES = (0.25, 0.5, 1.0, 1.5, 2.0)  # Table 2 has 0.25x, 0.5x, 1x; Table 8 has 1.5x and 2x


def round_to_multiple(channels: float, unit: int) -> int:
    """``channels`` rounded to the nearest positive multiple of ``unit``."""
    return max(unit, int(round(channels / unit)) * unit)


class ShuffleNetV1(ClassifierNet):
    """ShuffleNet v1: ``stem`` conv, ``stem_pool``, ``stages`` of ShuffleNet units, pool, FC.

    ``forward_features`` returns Stage 4's map (960 x 7 x 7 for g = 3 at 224); the head
    pools it globally and applies the ``classifier``.  ``num_features`` is Stage 4's width.
    """

    feature_trunk = ("stem", "stem_pool", "stages.*")

    classifier_path = "classifier"

    def __init__(
        self,
        groups: int = 3,
        scale: float = 1.0,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__(num_classes, in_chans)
        if groups not in STAGE_CHANNELS:
            raise ConfigError(f"ShuffleNet groups must be one of {sorted(STAGE_CHANNELS)}, got {groups!r}")
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale <= 4:
            raise ConfigError(f"ShuffleNet scale must be in (0, 4] (the paper's: {SCALES}), got {scale!r}")
        self.groups = groups
        self.scale = float(scale)
        stem = STEM_CHANNELS_BY_SCALE.get(self.scale, STEM_CHANNELS * self.scale)
        channels = round_to_multiple(stem, groups)
        self.stem = ConvNormAct(in_chans, channels, 3, stride=2)
        self.stem_pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        stages: list[nn.Module] = []
        for stage_index, (width, repeats) in enumerate(zip(STAGE_CHANNELS[groups], STAGE_REPEATS)):
            width = round_to_multiple(width * scale, 4 * groups)
            units = []
            for unit_index in range(repeats):
                units.append(
                    ShuffleUnit(
                        channels,
                        width,
                        groups,
                        stride=2 if unit_index == 0 else 1,
                        # Stage 2's first pointwise conv is dense: few input channels (Section 3.3)
                        group_first_conv=not (stage_index == 0 and unit_index == 0),
                    )
                )
                channels = width
            stages.append(nn.Sequential(*units))
        self.stages = nn.Sequential(*stages)
        self.num_features = channels
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(p=drop_rate)
        self.classifier = linear_or_identity(channels, num_classes)
        init_weights(self)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.stages(self.stem_pool(self.stem(x)))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = torch.flatten(self.global_pool(x), 1)
        if pre_logits:
            return x
        return self.classifier(self.dropout(x))


_SHUFFLENET = dict(family="shufflenet", paper=SHUFFLENET_PAPER, input_size=(3, 224, 224), min_size=1)


@register_model(**_SHUFFLENET)
def shufflenet_v1_g1(scale: float = 1.0, **kwargs) -> ShuffleNetV1:
    """ShuffleNet v1 1x, g = 1 (Table 1: 143M multiply-adds); option scale."""
    return ShuffleNetV1(groups=1, scale=scale, **kwargs)


@register_model(**_SHUFFLENET)
def shufflenet_v1_g2(scale: float = 1.0, **kwargs) -> ShuffleNetV1:
    """ShuffleNet v1 1x, g = 2 (Table 1: 140M multiply-adds); option scale."""
    return ShuffleNetV1(groups=2, scale=scale, **kwargs)


@register_model(**_SHUFFLENET)
def shufflenet_v1_g3(scale: float = 1.0, **kwargs) -> ShuffleNetV1:
    """ShuffleNet v1 1x, g = 3 (Table 1: 137M multiply-adds); option scale."""
    return ShuffleNetV1(groups=3, scale=scale, **kwargs)


@register_model(**_SHUFFLENET)
def shufflenet_v1_g4(scale: float = 1.0, **kwargs) -> ShuffleNetV1:
    """ShuffleNet v1 1x, g = 4 (Table 1: 133M multiply-adds); option scale."""
    return ShuffleNetV1(groups=4, scale=scale, **kwargs)


@register_model(**_SHUFFLENET)
def shufflenet_v1_g8(scale: float = 1.0, **kwargs) -> ShuffleNetV1:
    """ShuffleNet v1 1x, g = 8 (Table 1: 137M multiply-adds); option scale."""
    return ShuffleNetV1(groups=8, scale=scale, **kwargs)
