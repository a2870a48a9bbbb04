"""Convolution variants beyond the plain dense one.

* depthwise separable convolution (MobileNet, Howard et al. 2017, Section 3.1, Figure 3):
  a 3x3 depthwise convolution (one filter per input channel) then a 1x1 pointwise
  convolution that mixes channels, each followed by BN and ReLU;
* dilated ("atrous") convolution (Yu & Koltun 2015): a kernel whose taps are ``d`` pixels
  apart, which widens the receptive field without adding parameters or downsampling
  (three 3x3 convs with dilation 1, 2, 4 see 15x15 pixels, Section 2 / Figure 1);
* deformable convolution (Dai et al. 2017, Section 2.1): every tap of the kernel is moved by
  a learned, input-dependent 2-D offset that a plain convolution predicts from the input.
"""

from __future__ import annotations

from torch import Tensor, nn

from cnnzoo.errors import ConfigError
from cnnzoo.layers.conv import ConvNormAct


class DepthwiseSeparableConv(nn.Module):
    """``3x3 depthwise conv -> BN -> ReLU -> 1x1 pointwise conv -> BN -> ReLU`` (Figure 3 right).

    It costs ``D_K^2 M D_F^2 + M N D_F^2`` multiply-adds instead of a full convolution's
    ``D_K^2 M N D_F^2`` (Section 3.1, equations 4-5): 8-9 times fewer for 3x3 kernels.
    The stride, if any, is in the depthwise convolution.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.depthwise = ConvNormAct(in_channels, in_channels, 3, stride, groups=in_channels)
        self.pointwise = ConvNormAct(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(x))


def dilated_conv(
    in_channels: int,
    out_channels: int,
    dilation: int,
    kernel_size: int = 3,
    stride: int = 1,
    bias: bool = True,
) -> nn.Conv2d:
    """A ``kernel_size`` convolution with taps ``dilation`` pixels apart and "same" padding.

    Its effective kernel spans ``dilation * (kernel_size - 1) + 1`` pixels; the padding
    ``dilation * (kernel_size - 1) // 2`` keeps the resolution at stride 1.
    """
    if isinstance(dilation, bool) or not isinstance(dilation, int) or dilation < 1:
        raise ConfigError(f"dilation must be a positive integer, got {dilation!r}")
    if kernel_size % 2 == 0:
        raise ConfigError(f"dilated_conv needs an odd kernel size for 'same' padding, got {kernel_size}")
    padding = dilation * (kernel_size - 1) // 2
    return nn.Conv2d(
        in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation, bias=bias
    )


class DeformableConv2d(nn.Module):
    """Deformable convolution: ``torchvision.ops.DeformConv2d`` fed by an offset-predicting conv.

    ``offset`` is a plain convolution with the deformable one's kernel size, stride,
    padding and dilation; it outputs ``2 * offset_groups * k * k`` channels, a (dy, dx) shift
    for every kernel tap at every output position (Section 2.1, Figure 2).  Its weights and
    bias start at zero (Section 2.3), so before training the layer is exactly a plain
    convolution with the same weights; ``conv`` holds those weights.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        dilation: int = 1,
        *,
        groups: int = 1,
        offset_groups: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if in_channels % offset_groups:
            raise ConfigError(
                f"offset_groups={offset_groups} must divide in_channels={in_channels}"
            )
        if padding is None:
            padding = dilation * (kernel_size - 1) // 2
        self.offset = nn.Conv2d(
            in_channels,
            2 * offset_groups * kernel_size * kernel_size,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
        )
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)
        # imported here: torchvision's import costs seconds, and every command imports the zoo
        from torchvision.ops import DeformConv2d

        self.conv = DeformConv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=bias,
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x, self.offset(x))
