"""Network In Network (Lin, Chen & Yan 2013): stacked mlpconv layers and a GAP head.

There is no fully connected layer: the last mlpconv's final 1x1 convolution produces
one map per class and global average pooling turns each map into that class's score
(Section 3.2).  Because nothing depends on the map size, one set of weights takes any
input at or above the network's minimum size (the brief's experiment 1).

``nin`` is the ImageNet net of the authors' released Caffe model (four mlpconv layers,
11x11/4 96-256-384-1024; about 7.6M params); 000 describes it: the first convolution,
the first and the third max-pool and the GAP are VALID, the rest SAME.  A SAME 3x3/2
pool equals Caffe's round-up pooling, hence ``ceil_mode=True`` on the second pool.
Two known differences from the released Caffe model, kept on purpose because ``nin`` follows
000's VALID/SAME description: (1) pool1 is VALID and rounds down, 54x54 -> 26x26, where
Caffe's pooling rounds up to 27x27 (and the later maps grow accordingly); (2) the release
puts a ReLU on the class maps before global average pooling, here the class-map conv is
linear, as a classifier is everywhere else in the zoo.  Hence 1.061G multiply-adds at
224x224 against the release's 1.100G; the parameters are the same.

``nin_cifar`` is the CIFAR-10 net of Section 4.2 (three mlpconv layers 192-160-96,
192-192-192, 192-192-10, dropout after the first two; about 0.97M params).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cnnzoo.layers.mlpconv import MlpConv
from cnnzoo.models.base import ClassifierNet, check_num_classes
from cnnzoo.registry import Paper, register_model

NIN_PAPER = Paper(
    title="Network In Network",
    authors="Min Lin, Qiang Chen, Shuicheng Yan",
    year=2013,
    url="https://arxiv.org/abs/1312.4400",
)


@dataclass(frozen=True)
class MlpConvSpec:
    conv_width: int
    mlp_widths: tuple[int, ...]
    kernel_size: int
    stride: int = 1
    padding: int = 0
    #: what follows the mlpconv: "max", "max_ceil", "avg_ceil" (3x3/2 pools) or None
    pool: str | None = None
    dropout: float = 0.0


# The class-map 1x1 conv that ends the last mlpconv is the classifier, not listed here.
NIN_IMAGENET = (
    MlpConvSpec(96, (96, 96), 11, stride=4, pool="max"),  # VALID conv, VALID pool
    MlpConvSpec(256, (256, 256), 5, padding=2, pool="max_ceil"),  # SAME pool
    MlpConvSpec(384, (384, 384), 3, padding=1, pool="max", dropout=0.5),  # VALID pool
    MlpConvSpec(1024, (1024,), 3, padding=1),
)
NIN_CIFAR = (
    MlpConvSpec(192, (160, 96), 5, padding=2, pool="max_ceil", dropout=0.5),
    MlpConvSpec(192, (192, 192), 5, padding=2, pool="avg_ceil", dropout=0.5),
    MlpConvSpec(192, (192,), 3, padding=1),
)

_POOLS = {
    "max": lambda: nn.MaxPool2d(3, stride=2),
    "max_ceil": lambda: nn.MaxPool2d(3, stride=2, ceil_mode=True),
    "avg_ceil": lambda: nn.AvgPool2d(3, stride=2, ceil_mode=True),
}


class NIN(ClassifierNet):
    """``features``: the mlpconv stack without the class maps; ``classifier``: the 1x1
    class-map conv; the head is global average pooling (no fully connected layer).

    ``forward_head(pre_logits=True)`` returns the globally pooled features; because
    GAP and a 1x1 conv are both linear, logits are exactly the classifier applied to
    them, so class activation maps (Zhou et al. 2016) read straight off ``classifier``.
    """

    feature_trunk = ("features.*",)

    def __init__(self, specs: tuple[MlpConvSpec, ...], num_classes: int = 1000, in_chans: int = 3) -> None:
        super().__init__(num_classes, in_chans)
        layers: list[nn.Module] = []
        channels = in_chans
        for spec in specs:
            block = MlpConv(channels, spec.conv_width, spec.mlp_widths, spec.kernel_size,
                            stride=spec.stride, padding=spec.padding)
            layers.append(block)
            if spec.pool:
                layers.append(_POOLS[spec.pool]())
            if spec.dropout:
                layers.append(nn.Dropout(spec.dropout))
            channels = block.out_channels
        self.features = nn.Sequential(*layers)
        self.num_features = channels
        self.classifier = self._class_maps(num_classes)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def _class_maps(self, num_classes: int) -> nn.Module:
        check_num_classes(num_classes)
        return nn.Conv2d(self.num_features, num_classes, kernel_size=1) if num_classes else nn.Identity()

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        if not pre_logits:
            x = self.classifier(x)
        return torch.flatten(self.global_pool(x), 1)

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier = self._class_maps(num_classes)
        self.num_classes = num_classes


@register_model(family="nin", paper=NIN_PAPER, input_size=(3, 224, 224), min_size=59)
def nin(**kwargs) -> NIN:
    """Network In Network for ImageNet: 4 mlpconv layers and global average pooling."""
    return NIN(NIN_IMAGENET, **kwargs)


@register_model(family="nin", paper=NIN_PAPER, input_size=(3, 32, 32), num_classes=10, min_size=4)
def nin_cifar(**kwargs) -> NIN:
    """Network In Network for CIFAR-10: 3 mlpconv layers, dropout, global average pooling."""
    return NIN(NIN_CIFAR, **kwargs)
