"""DenseNet (Huang, Liu, van der Maaten & Weinberger 2017, "Densely Connected Convolutional Networks").

* ImageNet (Table 1): a 7x7/2 conv with ``2k`` filters (96 for DenseNet-161), 3x3/2 max-pool,
  four dense blocks of bottleneck layers joined by transitions with compression 0.5
  (DenseNet-BC), a final BN-ReLU, global average pooling and fc.  Blocks of 6/12/24/16
  (121), 6/12/32/32 (169), 6/12/48/32 (201), 6/12/64/48 (264); ``k = 32`` (48 for 161).
  ``densenet121/161/169/201`` follow torchvision's layout (``features.conv0`` ...,
  ``features.denseblock1.denselayer1.norm1`` ..., ``classifier``); its state dicts load.
* CIFAR DenseNet-BC (Section 3 "Implementation Details" and Table 2): a 3x3 conv with ``2k``
  filters, three dense blocks of ``(L - 4) / 6`` bottleneck layers on 32x32, 16x16 and 8x8
  maps, compression 0.5, BN-ReLU, global average pooling, fc.  Table 2 lists
  DenseNet-BC (L=100, k=12) 0.8M, (L=250, k=24) 15.3M and (L=190, k=40) 25.6M parameters.
  :func:`densenet_cifar` also builds the original DenseNet (``bottleneck=False``,
  ``compression=1``: ``(L - 4) / 3`` layers per block, a 16-filter first conv).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

from cnnzoo.errors import ConfigError
from cnnzoo.layers.dense import DenseBlock, Transition, compressed_width
from cnnzoo.models.base import ClassifierNet, init_weights, linear_or_identity
from cnnzoo.registry import Paper, register_model

DENSENET_PAPER = Paper(
    title="Densely Connected Convolutional Networks",
    authors="Gao Huang, Zhuang Liu, Laurens van der Maaten, Kilian Q. Weinberger",
    year=2017,
    url="https://arxiv.org/abs/1608.06993",
)


class DenseNet(ClassifierNet):
    """Stem, dense blocks with transitions between them, BN-ReLU, global pool, fc.

    ``block_layers``: layers per dense block; ``growth_rate``: k; ``stem_channels``: the first
    conv's filters; ``stem``: ``"imagenet"`` (7x7/2 conv-BN-ReLU-maxpool) or ``"cifar"`` (one
    3x3 conv); ``compression``: theta of the transitions; ``bottleneck``: the 1x1 conv in each
    layer (``bn_size * k`` wide); ``drop_rate``: dropout after every convolution but the first,
    in the dense layers and the transitions (Section 4.2).
    """

    feature_trunk = ("features.*",)

    classifier_path = "classifier"

    def __init__(
        self,
        block_layers: tuple[int, ...],
        growth_rate: int,
        stem_channels: int,
        *,
        stem: str = "imagenet",
        compression: float = 0.5,
        bottleneck: bool = True,
        bn_size: int = 4,
        drop_rate: float = 0.0,
        num_classes: int = 1000,
        in_chans: int = 3,
    ) -> None:
        super().__init__(num_classes, in_chans)
        if isinstance(drop_rate, bool) or not isinstance(drop_rate, (int, float)) or not 0 <= drop_rate < 1:
            raise ConfigError(f"drop_rate must be a number in [0, 1), got {drop_rate!r}")
        self.growth_rate = growth_rate
        self.block_layers = tuple(block_layers)
        if stem == "imagenet":
            stem_layers = [
                ("conv0", nn.Conv2d(in_chans, stem_channels, 7, stride=2, padding=3, bias=False)),
                ("norm0", nn.BatchNorm2d(stem_channels)),
                ("relu0", nn.ReLU(inplace=True)),
                ("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
            ]
        else:
            # the first dense layer's BN-ReLU activates this conv's output
            stem_layers = [("conv0", nn.Conv2d(in_chans, stem_channels, 3, padding=1, bias=False))]
        self.features = nn.Sequential(OrderedDict(stem_layers))
        channels = stem_channels
        for index, num_layers in enumerate(block_layers):
            block = DenseBlock(num_layers, channels, growth_rate, bn_size=bn_size,
                               bottleneck=bottleneck, drop_rate=drop_rate)
            self.features.add_module(f"denseblock{index + 1}", block)
            channels = block.out_channels
            if index != len(block_layers) - 1:
                transition = Transition(channels, compressed_width(channels, compression), drop_rate=drop_rate)
                self.features.add_module(f"transition{index + 1}", transition)
                channels = transition.out_channels
        self.features.add_module(f"norm{len(block_layers) + 1}", nn.BatchNorm2d(channels))
        self.features.add_module(f"relu{len(block_layers) + 1}", nn.ReLU(inplace=True))
        self.num_features = channels
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = linear_or_identity(channels, num_classes)
        init_weights(self, linear_std=None)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = torch.flatten(self.avgpool(x), 1)
        return x if pre_logits else self.classifier(x)


def densenet_imagenet(block_layers: tuple[int, ...], growth_rate: int = 32, stem_channels: int | None = None,
                      **kwargs) -> DenseNet:
    """An ImageNet DenseNet-BC (Table 1); the stem has ``2k`` filters unless given."""
    return DenseNet(block_layers, growth_rate, stem_channels or 2 * growth_rate, **kwargs)


def densenet_cifar(depth: int, growth_rate: int, *, bottleneck: bool = True, compression: float = 0.5,
                   **kwargs) -> DenseNet:
    """A CIFAR DenseNet of ``depth`` L and growth rate k with three dense blocks (Section 3).

    With bottlenecks each layer has two convs: ``(L - 4) / 6`` layers per block and a ``2k``-filter
    first conv; without, ``(L - 4) / 3`` layers and 16 filters.
    """
    convs_per_layer = 2 if bottleneck else 1
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 4 + 3 * convs_per_layer \
            or (depth - 4) % (3 * convs_per_layer):
        raise ConfigError(
            f"a CIFAR DenseNet{'-BC' if bottleneck else ''} needs depth = {3 * convs_per_layer}n + 4, got {depth!r}"
        )
    n = (depth - 4) // (3 * convs_per_layer)
    kwargs.setdefault("num_classes", 10)
    kwargs.setdefault("stem", "cifar")  # the paper's one 3x3 conv; `-o stem=imagenet` may still ask for 7x7/2
    stem_channels = 2 * growth_rate if bottleneck else 16
    return DenseNet((n, n, n), growth_rate, stem_channels, bottleneck=bottleneck, compression=compression,
                    **kwargs)


# The stem divides the side by 4 (conv 7x7/2 pad 3, max-pool 3x3/2 pad 1) and each of the three
# 2x2 average pools of the transitions needs at least 2 pixels: a 29-pixel input gives
# 15 -> 8 -> 4 -> 2 -> 1, a 28-pixel one 14 -> 7 -> 3 -> 1 -> 0.
_IMAGENET = dict(family="densenet", paper=DENSENET_PAPER, input_size=(3, 224, 224), min_size=29)
# CIFAR: two transitions (2x2 pools), 4 -> 2 -> 1.
_CIFAR = dict(family="densenet", paper=DENSENET_PAPER, input_size=(3, 32, 32), num_classes=10, min_size=4)


@register_model(**_IMAGENET)
def densenet121(**kwargs) -> DenseNet:
    """DenseNet-121 (Table 1): k=32, dense blocks of 6/12/24/16 bottleneck layers."""
    return densenet_imagenet((6, 12, 24, 16), 32, **kwargs)


@register_model(**_IMAGENET)
def densenet161(**kwargs) -> DenseNet:
    """DenseNet-161 (Table 1): k=48, 96-filter stem, dense blocks of 6/12/36/24 layers."""
    return densenet_imagenet((6, 12, 36, 24), 48, 96, **kwargs)


@register_model(**_IMAGENET)
def densenet169(**kwargs) -> DenseNet:
    """DenseNet-169 (Table 1): k=32, dense blocks of 6/12/32/32 bottleneck layers."""
    return densenet_imagenet((6, 12, 32, 32), 32, **kwargs)


@register_model(**_IMAGENET)
def densenet201(**kwargs) -> DenseNet:
    """DenseNet-201 (Table 1): k=32, dense blocks of 6/12/48/32 bottleneck layers."""
    return densenet_imagenet((6, 12, 48, 32), 32, **kwargs)


@register_model(**_IMAGENET)
def densenet264(**kwargs) -> DenseNet:
    """DenseNet-264 (Table 1): k=32, dense blocks of 6/12/64/48 bottleneck layers."""
    return densenet_imagenet((6, 12, 64, 48), 32, **kwargs)


@register_model(**_CIFAR)
def densenet_bc_100_12(**kwargs) -> DenseNet:
    """CIFAR DenseNet-BC (L=100, k=12), Table 2: 16 layers per block, 0.8M parameters."""
    return densenet_cifar(100, 12, **kwargs)


@register_model(**_CIFAR)
def densenet_bc_250_24(**kwargs) -> DenseNet:
    """CIFAR DenseNet-BC (L=250, k=24), Table 2: 41 layers per block, 15.3M parameters."""
    return densenet_cifar(250, 24, **kwargs)


@register_model(**_CIFAR)
def densenet_bc_190_40(**kwargs) -> DenseNet:
    """CIFAR DenseNet-BC (L=190, k=40), Table 2: 31 layers per block, 25.6M parameters."""
    return densenet_cifar(190, 40, **kwargs)
