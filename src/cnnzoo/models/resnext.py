"""ResNeXt (Xie, Girshick, Dollar, Tu & He 2017, "Aggregated Residual Transformations").

A ResNeXt block aggregates ``C`` (the cardinality) transformations of the same topology; in
its grouped-convolution form (Fig. 3(c)) it is a bottleneck whose 3x3 convolution has ``C``
groups of ``d`` channels.  Names read ``resnext{depth}_{C}x{d}d``.

* ImageNet (Table 1 / Section 5.1): ``resnext50_32x4d``, ``resnext101_32x8d`` and
  ``resnext101_64x4d`` (the "2x complexity" ResNeXt-101 of Tables 4 and 5) in torchvision's
  layout: ResNet-50/101 stages with 3x3 width ``C * d * 2**stage`` (128 ... 1024 for 32x4d).
* CIFAR (Section 5.3 and Table 7): ``resnext29_8x64d`` (34.4M parameters) and
  ``resnext29_16x64d`` (68.1M): a 3x3 conv with 64 filters, then three stages of 3 bottleneck
  blocks with outputs 256, 512, 1024 on 32x32, 16x16, 8x8 maps; "the width is increased by 2x
  when the stage changes", so the grouped 3x3 is ``C * d``, ``2 C d``, ``4 C d`` wide.
  Post-activation blocks with projection shortcuts where the shape changes, as in ResNet.
"""

from __future__ import annotations

from cnnzoo.errors import ConfigError
from cnnzoo.models.resnet import ResNet, ResNetConfig, imagenet_config
from cnnzoo.registry import Paper, register_model

RESNEXT_PAPER = Paper(
    title="Aggregated Residual Transformations for Deep Neural Networks",
    authors="Saining Xie, Ross Girshick, Piotr Dollar, Zhuowen Tu, Kaiming He",
    year=2017,
    url="https://arxiv.org/abs/1611.05431",
)


def resnext_cifar(depth: int = 29, cardinality: int = 8, bottleneck_width: int = 64, **kwargs) -> ResNet:
    """CIFAR ResNeXt-``depth`` ``cardinality`` x ``bottleneck_width`` d (``depth = 9n + 2``)."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 11 or (depth - 2) % 9:
        raise ConfigError(f"a CIFAR ResNeXt has 9n+2 layers (29: 3 blocks per stage), got {depth!r}")
    for what, value in (("cardinality", cardinality), ("bottleneck_width", bottleneck_width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{what} must be an integer >= 1, got {value!r}")
    n = (depth - 2) // 9
    inner = cardinality * bottleneck_width
    config = ResNetConfig(
        "bottleneck", (n, n, n), (256, 512, 1024), (inner, 2 * inner, 4 * inner),
        groups=cardinality, stem="cifar", stem_channels=64,
    )
    kwargs.setdefault("num_classes", 10)
    return ResNet(config, **kwargs)


_IMAGENET = dict(family="resnext", paper=RESNEXT_PAPER, input_size=(3, 224, 224), min_size=1)
_CIFAR = dict(family="resnext", paper=RESNEXT_PAPER, input_size=(3, 32, 32), num_classes=10, min_size=1)


@register_model(**_IMAGENET)
def resnext50_32x4d(**kwargs) -> ResNet:
    """ResNeXt-50 (32x4d), Table 1: ResNet-50 stages, 32 groups of 4 channels in the first 3x3."""
    return ResNet(imagenet_config(50, width_per_group=4, groups=32), **kwargs)


@register_model(**_IMAGENET)
def resnext101_32x8d(**kwargs) -> ResNet:
    """ResNeXt-101 (32x8d): ResNet-101 stages, 32 groups of 8 channels in the first 3x3."""
    return ResNet(imagenet_config(101, width_per_group=8, groups=32), **kwargs)


@register_model(**_IMAGENET)
def resnext101_64x4d(**kwargs) -> ResNet:
    """ResNeXt-101 (64x4d), Tables 4 and 5: ResNet-101 stages, 64 groups of 4 channels in the first 3x3."""
    return ResNet(imagenet_config(101, width_per_group=4, groups=64), **kwargs)


@register_model(**_CIFAR)
def resnext29_8x64d(**kwargs) -> ResNet:
    """CIFAR ResNeXt-29 (8x64d), Table 7: 34.4M parameters."""
    return resnext_cifar(29, 8, 64, **kwargs)


@register_model(**_CIFAR)
def resnext29_16x64d(**kwargs) -> ResNet:
    """CIFAR ResNeXt-29 (16x64d), Table 7: 68.1M parameters."""
    return resnext_cifar(29, 16, 64, **kwargs)
