"""Dense connectivity (Huang, Liu, van der Maaten & Weinberger 2017, "Densely Connected
Convolutional Networks").

Inside a dense block the l-th layer receives the concatenation of all earlier feature maps,
``x_l = H_l([x_0, x_1, ..., x_{l-1}])`` (Eq. 2), and adds ``k`` (the growth rate) new maps.

* :class:`DenseLayer`: ``H_l`` is BN-ReLU-conv3x3 (Section 3, "Composite function"), or with the
  bottleneck ("DenseNet-B") BN-ReLU-conv1x1(4k)-BN-ReLU-conv3x3(k) ("Bottleneck layers").
* :class:`DenseBlock`: ``num_layers`` dense layers; its output has ``in + num_layers * k`` maps.
* :class:`Transition`: BN-ReLU-conv1x1-avgpool2x2 between blocks; with compression
  ``theta < 1`` ("DenseNet-C") the conv outputs ``floor(theta * m)`` maps ("Compression").
  DenseNet-BC uses both, ``theta = 0.5``.

Names follow torchvision (``denselayer1.norm1`` ..., ``transition1.conv``) so its state
dicts load strictly.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from cnnzoo.errors import ConfigError


class DenseLayer(nn.Module):
    """One dense layer ``H_l``: (BN-ReLU-conv1x1 to ``bn_size * k``)-BN-ReLU-conv3x3 to ``k``.

    ``bottleneck=False`` drops the 1x1 part (the original DenseNet; its 3x3 conv is then
    ``conv1``).  ``drop_rate > 0`` applies dropout after each convolution, as the paper does
    for the data sets without augmentation (Section 4.2, "we add a dropout layer after each
    convolutional layer (except the first one)").
    """

    def __init__(
        self,
        in_channels: int,
        growth_rate: int,
        *,
        bn_size: int = 4,
        bottleneck: bool = True,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.growth_rate = growth_rate
        self.bottleneck = bottleneck
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        if bottleneck:
            inner = bn_size * growth_rate
            self.conv1 = nn.Conv2d(in_channels, inner, 1, bias=False)
            self.norm2 = nn.BatchNorm2d(inner)
            self.relu2 = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(inner, growth_rate, 3, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, growth_rate, 3, padding=1, bias=False)

    def forward(self, features: Tensor) -> Tensor:
        out = self.dropout(self.conv1(self.relu1(self.norm1(features))))
        if self.bottleneck:
            out = self.dropout(self.conv2(self.relu2(self.norm2(out))))
        return out


class DenseBlock(nn.ModuleDict):
    """``num_layers`` dense layers (``denselayer1`` ...), each fed every earlier output (Eq. 2)."""

    def __init__(self, num_layers: int, in_channels: int, growth_rate: int, **layer_options) -> None:
        super().__init__()
        for index in range(num_layers):
            self[f"denselayer{index + 1}"] = DenseLayer(
                in_channels + index * growth_rate, growth_rate, **layer_options
            )
        self.in_channels = in_channels
        self.out_channels = in_channels + num_layers * growth_rate

    def forward(self, x: Tensor) -> Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(torch.cat(features, 1)))
        return torch.cat(features, 1)


def compressed_width(channels: int, compression: float) -> int:
    """``floor(theta * m)`` output maps of a transition layer (Section 3, "Compression")."""
    if isinstance(compression, bool) or not isinstance(compression, (int, float)) or not 0 < compression <= 1:
        raise ConfigError(f"compression must be in (0, 1], got {compression!r}")
    return int(math.floor(compression * channels))


class Transition(nn.Sequential):
    """BN-ReLU-conv1x1-avgpool2x2/2 between two dense blocks (Section 3, "Pooling layers").

    ``drop_rate > 0`` puts dropout after the convolution (before the pooling): Huang et al. add
    "a dropout layer after each convolutional layer (except the first one)" (Section 4.2), the
    transitions' convolutions included, as in their Torch code.  With ``drop_rate = 0`` there
    is no dropout module, so the layout stays torchvision's.
    """

    def __init__(self, in_channels: int, out_channels: int, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(in_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        if drop_rate > 0:
            self.dropout = nn.Dropout(drop_rate)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)
        self.in_channels = in_channels
        self.out_channels = out_channels


__all__ = ["DenseLayer", "DenseBlock", "Transition", "compressed_width"]
