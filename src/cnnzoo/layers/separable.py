"""Depthwise separable convolution as Xception uses it (Chollet 2017, Section 2).

A ``k x k`` depthwise convolution (one filter per input channel, ``groups = channels``)
followed by a ``1 x 1`` pointwise convolution that mixes the channels.  Xception puts
*no* non-linearity between the two (Section 4.7, Figure 10: an intermediate ReLU or ELU
made the results worse), and no bias: batch normalisation follows the pair.

Parameters: ``C_in * k * k + C_in * C_out`` instead of ``C_in * C_out * k * k`` for a
regular convolution, e.g. 728 -> 728 with 3x3: 536,536 against 4,769,856 (8.9x fewer).
"""

from __future__ import annotations

from torch import Tensor, nn


class SeparableConv2d(nn.Module):
    """Depthwise ``k x k`` conv, then pointwise ``1 x 1`` conv, both without bias.

    The submodules are named ``conv1`` (the depthwise convolution) and ``pointwise`` so
    that the Xception weights timm publishes (``legacy_xception``) load directly.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        dilation: int = 1,
        bias: bool = False,
    ) -> None:
        super().__init__()
        if padding is None:
            padding = dilation * (kernel_size - 1) // 2
        # depthwise: spatial correlations, each channel on its own
        self.conv1 = nn.Conv2d(
            in_channels,
            in_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=in_channels,
            bias=bias,
        )
        # pointwise: cross-channel correlations
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=bias)

    @property
    def depthwise(self) -> nn.Conv2d:
        """The depthwise convolution (stored as ``conv1`` for timm's key names)."""
        return self.conv1

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.conv1(x))
