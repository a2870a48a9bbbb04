"""Wide Residual Networks (Zagoruyko & Komodakis 2016).

CIFAR nets WRN-d-k (Section 2, Table 1): a 3x3 conv with 16 filters, then three groups of
``N = (d - 4) / 6`` pre-activation basic blocks B(3,3) of width 16k, 32k and 64k on 32x32,
16x16 and 8x8 maps, BN-ReLU, global average pooling, fc.  A 1x1 convolution projects the
shortcut where the width or resolution changes.  ``drop_rate`` adds dropout between a block's convolutions (Section 2.3; the paper
uses 0.3 on CIFAR).  Parameter counts (Table 4 and 5): WRN-28-10 36.5M, WRN-40-4 8.9M,
WRN-16-8 11.0M.

``wide_resnet50_2`` / ``wide_resnet101_2`` are the ImageNet bottleneck ResNets with the 3x3
(and 1x1-reduced) width doubled (the paper's WRN-50-2-bottleneck of its ImageNet experiments),
in torchvision's layout.
"""

from __future__ import annotations

from cnnzoo.errors import ConfigError
from cnnzoo.models.preact_resnet import PreActResNet
from cnnzoo.models.resnet import ResNet, imagenet_config
from cnnzoo.registry import Paper, register_model

WRN_PAPER = Paper(
    title="Wide Residual Networks",
    authors="Sergey Zagoruyko, Nikos Komodakis",
    year=2016,
    url="https://arxiv.org/abs/1605.07146",
)


def _wrn(depth: int, width: int, **kwargs) -> PreActResNet:
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
        raise ConfigError(f"a Wide ResNet has 6N+4 layers (10, 16, 22, 28, 40, ...), got depth={depth!r}")
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ConfigError(f"the widening factor must be an integer >= 1, got width={width!r}")
    n = (depth - 4) // 6
    kwargs.setdefault("num_classes", 10)
    return PreActResNet(
        "basic", (n, n, n), (16 * width, 32 * width, 64 * width),
        stem="cifar", stem_channels=16, **kwargs,
    )


_CIFAR = dict(family="wide_resnet", paper=WRN_PAPER, input_size=(3, 32, 32), num_classes=10, min_size=1)
_IMAGENET = dict(family="wide_resnet", paper=WRN_PAPER, input_size=(3, 224, 224), min_size=1)


@register_model(**_CIFAR)
def wide_resnet_cifar(depth: int = 28, width: int = 10, **kwargs) -> PreActResNet:
    """WRN-depth-width for CIFAR (options depth = 6N+4, width = k; default WRN-28-10)."""
    return _wrn(depth, width, **kwargs)


@register_model(**_CIFAR)
def wrn28_10(**kwargs) -> PreActResNet:
    """WRN-28-10 (Table 4): 4 blocks per group of width 160/320/640, 36.5M parameters."""
    return _wrn(28, 10, **kwargs)


@register_model(**_CIFAR)
def wrn40_4(**kwargs) -> PreActResNet:
    """WRN-40-4 (Table 4): 6 blocks per group of width 64/128/256, 8.9M parameters."""
    return _wrn(40, 4, **kwargs)


@register_model(**_CIFAR)
def wrn16_8(**kwargs) -> PreActResNet:
    """WRN-16-8 (Table 4): 2 blocks per group of width 128/256/512, 11.0M parameters."""
    return _wrn(16, 8, **kwargs)


@register_model(**_IMAGENET)
def wide_resnet50_2(**kwargs) -> ResNet:
    """Wide ResNet-50-2: ResNet-50 with twice as wide bottlenecks, torchvision layout."""
    return ResNet(imagenet_config(50, width_per_group=128), **kwargs)


@register_model(**_IMAGENET)
def wide_resnet101_2(**kwargs) -> ResNet:
    """Wide ResNet-101-2: ResNet-101 with twice as wide bottlenecks, torchvision layout."""
    return ResNet(imagenet_config(101, width_per_group=128), **kwargs)
