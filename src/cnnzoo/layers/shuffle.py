"""Channel shuffle and the ShuffleNet unit (Zhang et al. 2017, Sections 3.1-3.2).

Stacking grouped convolutions makes each output group depend on one input group only
(Figure 1a).  *Channel shuffle* mixes the groups between two grouped layers: with ``g``
groups of ``n`` channels, reshape the channel axis to ``(g, n)``, transpose it to
``(n, g)`` and flatten it back (Figure 1c), so that the next grouped layer sees one
channel of every group in each of its groups.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cnnzoo.errors import ConfigError
from cnnzoo.layers.conv import ConvNormAct


# a leaf function for torch.fx: its divisibility check reads the traced shape, which symbolic
# tracing cannot branch on; dynamo (torch.export, torch.compile) traces through it as it is
@torch.fx.wrap
def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """Section 3.1: reshape channels to ``(groups, n)``, transpose to ``(n, groups)``, flatten."""
    batch, channels, height, width = x.shape
    if channels % groups:
        raise ConfigError(f"channel shuffle: {channels} channels do not split into {groups} groups")
    per_group = channels // groups
    x = x.reshape(batch, groups, per_group, height, width)
    x = x.transpose(1, 2)
    return x.reshape(batch, channels, height, width)


class ChannelShuffle(nn.Module):
    """The channel shuffle operation as a layer (no parameters)."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: Tensor) -> Tensor:
        return channel_shuffle(x, self.groups)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


class ShuffleUnit(nn.Module):
    """The ShuffleNet unit of Figure 2b (stride 1) and Figure 2c (stride 2).

    Residual branch: grouped 1x1 conv -> BN -> ReLU -> channel shuffle -> 3x3 depthwise
    conv (stride 1 or 2) -> BN -> grouped 1x1 conv -> BN.  Section 3.2: no ReLU after the
    depthwise convolution, and the bottleneck is a quarter of the unit's output channels.

    * stride 1: ``ReLU(x + branch(x))``, ``out_channels == in_channels``;
    * stride 2: ``ReLU(concat(avgpool3x3/2(x), branch(x)))``: the branch produces only
      ``out_channels - in_channels`` channels, the average-pooled shortcut the rest.

    ``group_first_conv=False`` makes the first 1x1 convolution dense, as in the first unit
    of Stage 2, whose input has only 24 channels (Section 3.3).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        groups: int,
        stride: int = 1,
        group_first_conv: bool = True,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ConfigError(f"ShuffleUnit stride must be 1 or 2, got {stride}")
        if stride == 1 and in_channels != out_channels:
            raise ConfigError(
                f"a stride-1 ShuffleUnit adds its input: in_channels ({in_channels}) must equal "
                f"out_channels ({out_channels})"
            )
        branch_channels = out_channels - in_channels if stride == 2 else out_channels
        bottleneck = out_channels // 4
        first_groups = groups if group_first_conv else 1
        for name, value in (("bottleneck", bottleneck), ("branch output", branch_channels)):
            if value <= 0 or value % groups:
                raise ConfigError(
                    f"ShuffleUnit {in_channels}->{out_channels}: {name} width {value} is not a "
                    f"positive multiple of groups={groups}"
                )
        self.stride = stride
        self.groups = groups
        self.compress = ConvNormAct(in_channels, bottleneck, 1, groups=first_groups)
        # shuffling after a dense 1x1 conv would be a fixed permutation without effect
        self.shuffle = ChannelShuffle(groups) if first_groups > 1 else nn.Identity()
        self.depthwise = ConvNormAct(bottleneck, bottleneck, 3, stride, groups=bottleneck, act=False)
        self.expand = ConvNormAct(bottleneck, branch_channels, 1, groups=groups, act=False)
        self.shortcut = nn.AvgPool2d(3, stride=2, padding=1) if stride == 2 else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        branch = self.expand(self.depthwise(self.shuffle(self.compress(x))))
        if self.stride == 1:
            return self.act(x + branch)
        return self.act(torch.cat([self.shortcut(x), branch], dim=1))
