"""Fully connected layers as convolutions (the brief's 004, Q3/Q4; Long et al. 2015, Section 3.1).

A fully connected layer that reads a flattened ``C x h x w`` feature map is a convolution
with ``h x w`` kernels and no padding: its ``(out, C*h*w)`` weight matrix reshaped to
``(out, C, h, w)`` computes the same dot products.  The layers after it, reading vectors,
are 1x1 convolutions.  The converted classifier runs on a feature map of any size
``>= h x w`` and slides over it, returning a spatial map of logits whose every position
equals the original classifier applied to one ``h x w`` window of the features, at a
fraction of the cost of running the net on each crop (OverFeat, FCN).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

from cnnzoo.errors import ConfigError


@torch.no_grad()
def linear_to_conv(linear: nn.Linear, in_channels: int, kernel_size: tuple[int, int] = (1, 1)) -> nn.Conv2d:
    """The convolution equal to ``linear`` on a flattened ``(in_channels, *kernel_size)`` input."""
    kernel_h, kernel_w = kernel_size
    if linear.in_features != in_channels * kernel_h * kernel_w:
        raise ConfigError(
            f"a Linear with {linear.in_features} inputs cannot read a {in_channels}x{kernel_h}x{kernel_w} "
            "feature map"
        )
    conv = nn.Conv2d(in_channels, linear.out_features, (kernel_h, kernel_w), bias=linear.bias is not None)
    conv = conv.to(device=linear.weight.device, dtype=linear.weight.dtype)
    # torch.flatten orders a (C, h, w) map channel-major, the reshape's order
    conv.weight.copy_(linear.weight.reshape(linear.out_features, in_channels, kernel_h, kernel_w))
    if linear.bias is not None:
        conv.bias.copy_(linear.bias)
    return conv


def classifier_to_conv(
    classifier: nn.Module, in_channels: int, feature_size: tuple[int, int]
) -> nn.Sequential:
    """Convert a ``Linear``/``ReLU``/``Dropout`` stack that reads a flattened map into convolutions.

    The first ``nn.Linear`` becomes an ``feature_size`` convolution, later ones 1x1
    convolutions; ``nn.Flatten`` layers are dropped and every other (element-wise) layer is
    copied as it is.
    """
    layers: list[nn.Module] = []
    channels, kernel = in_channels, tuple(feature_size)
    modules = list(classifier) if isinstance(classifier, nn.Sequential) else [classifier]
    for module in modules:
        if isinstance(module, nn.Linear):
            layers.append(linear_to_conv(module, channels, kernel))
            channels, kernel = module.out_features, (1, 1)
        elif isinstance(module, nn.Flatten):
            continue
        elif isinstance(module, (nn.Sequential, nn.ModuleList)):
            raise ConfigError("classifier_to_conv takes a flat nn.Sequential of layers")
        else:
            layers.append(copy.deepcopy(module))
    if not any(isinstance(layer, nn.Conv2d) for layer in layers):
        raise ConfigError("the classifier has no fully connected layer to convert")
    return nn.Sequential(*layers)


def _last_out_channels(features: nn.Module) -> int:
    for module in reversed(list(features.modules())):
        channels = getattr(module, "out_channels", None)
        if isinstance(channels, int):
            return channels
    raise ConfigError("cannot tell how many channels the feature extractor outputs")


class FullyConvolutionalNet(nn.Module):
    """A classifier's ``features`` followed by its fully connected layers as convolutions.

    ``forward`` returns ``(N, num_classes, H', W')``: one logit vector per ``h x w`` window
    of the feature map, ``(1, 1)`` at the classifier's own input size.
    """

    def __init__(self, features: nn.Module, classifier: nn.Sequential) -> None:
        super().__init__()
        self.features = features
        self.classifier = classifier

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def to_fully_convolutional(
    model: nn.Module, feature_shape: tuple[int, int, int] | None = None
) -> FullyConvolutionalNet:
    """Convert a ``features`` + ``classifier`` net (VGG, AlexNet, ZFNet) to a fully convolutional one.

    ``feature_shape`` is the ``(C, h, w)`` map the first fully connected layer reads; by
    default ``C`` is the last ``out_channels`` in ``model.features`` and ``h = w``.  Any
    pooling between ``features`` and ``classifier`` that only adapts the map to ``h x w``
    (VGG's ``AdaptiveAvgPool2d(7)``, the identity at 224) is left out, so a larger image
    gives a larger map of logits.  The model's weights are copied, not shared.
    """
    features = getattr(model, "features", None)
    classifier = getattr(model, "classifier", None)
    if not isinstance(features, nn.Module) or not isinstance(classifier, nn.Module):
        raise ConfigError(f"{type(model).__name__} has no `features` and `classifier` to convert")
    first = next((m for m in classifier.modules() if isinstance(m, nn.Linear)), None)
    if first is None:
        raise ConfigError(f"{type(model).__name__}'s classifier has no fully connected layer")
    if feature_shape is None:
        channels = _last_out_channels(features)
        side = math.isqrt(first.in_features // channels)
        if channels * side * side != first.in_features:
            raise ConfigError(
                f"cannot read {first.in_features} classifier inputs as a square {channels}-channel map; "
                "pass feature_shape=(C, h, w)"
            )
        feature_shape = (channels, side, side)
    channels, height, width = feature_shape
    head = classifier_to_conv(classifier, channels, (height, width))
    return FullyConvolutionalNet(copy.deepcopy(features), head)
