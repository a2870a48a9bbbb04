"""The Inception modules, from GoogLeNet (2014) to Inception-ResNet (2016).

Every module runs a few branches side by side on the same input and concatenates their
outputs along the channel axis ("filter concatenation").  The blocks here are:

* :class:`InceptionNaive`, :class:`Inception` -- GoogLeNet's Figure 2 (a) and (b);
* :class:`InceptionBN` -- BN-Inception (Ioffe & Szegedy 2015, Figure 5 table): 5x5 as two
  3x3, average or max pooling, and stride-2 "pass through" modules that shrink the grid;
* :class:`InceptionV3A` (Figure 5 of Szegedy et al. 2015, "Rethinking"), :class:`InceptionV3B`
  (Figure 6, n x n as 1 x n then n x 1), :class:`InceptionV3C` (Figure 7, the expanded filter
  bank) and the grid reductions :class:`InceptionV3ReductionA`, :class:`InceptionV3ReductionB`
  (Figure 10) with the auxiliary classifier :class:`InceptionV3Aux`;
* the Inception-v4 stem pieces and modules (Szegedy et al. 2016, Figures 3-8) and the
  generic :class:`ReductionA` of its Table 1 (k, l, m, n filters);
* :class:`InceptionResNetBlock` (Figures 10, 11, 13, 16, 17, 19): Inception branches, a
  linear 1x1 convolution back to the input width, and a *scaled* residual sum (Section 3.3),
  and :class:`InceptionResNetReductionB` (Figures 12 and 18).

Submodule names follow torchvision (GoogLeNet, Inception v3) and timm (Inception v4,
Inception-ResNet-v2) so that their published state dicts load with ``strict=True``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from cnnzoo.layers.conv import ConvNormAct

#: batch-norm epsilon of the TensorFlow releases of Inception v2-v4 (and of torchvision/timm)
INCEPTION_BN_EPS = 1e-3


def conv_bn(
    in_channels: int,
    out_channels: int,
    kernel_size: int | tuple[int, int],
    stride: int = 1,
    padding: int | tuple[int, int] | None = None,
    eps: float = INCEPTION_BN_EPS,
) -> ConvNormAct:
    """conv (no bias) -> BN -> ReLU; ``padding=None`` is "same" padding for odd kernels."""
    return ConvNormAct(in_channels, out_channels, kernel_size, stride, padding, bn_eps=eps)


def conv_relu(
    in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int | None = None
) -> ConvNormAct:
    """conv (with bias) -> ReLU, the pre-batch-norm unit of GoogLeNet (2014)."""
    return ConvNormAct(in_channels, out_channels, kernel_size, stride, padding, norm=False)


class _Concat(nn.Module):
    """Runs the branches in ``branch_names`` order and concatenates them on channels."""

    branch_names: tuple[str, ...] = ()

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([getattr(self, name)(x) for name in self.branch_names], dim=1)


# --------------------------------------------------------------------------- GoogLeNet


class InceptionNaive(_Concat):
    """The naive Inception module (GoogLeNet paper, Figure 2a).

    1x1, 3x3 and 5x5 convolutions and a 3x3 max-pool, side by side, all at stride 1 with
    "same" padding, concatenated.  The pooling branch passes all input channels through,
    so the output is always deeper than the input: on 28x28x256 with 128/192/96 filters
    the output is 28x28x(128+192+96+256) = 672 (the brief, 002).
    """

    branch_names = ("branch1", "branch2", "branch3", "branch4")

    def __init__(self, in_channels: int, ch1x1: int, ch3x3: int, ch5x5: int) -> None:
        super().__init__()
        self.branch1 = conv_relu(in_channels, ch1x1, 1)
        self.branch2 = conv_relu(in_channels, ch3x3, 3)
        self.branch3 = conv_relu(in_channels, ch5x5, 5)
        self.branch4 = nn.MaxPool2d(3, stride=1, padding=1)
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + in_channels


class Inception(_Concat):
    """The Inception module with dimension reductions (GoogLeNet paper, Figure 2b).

    Branches (the columns of Table 1): ``branch1`` 1x1; ``branch2`` 1x1 "3x3 reduce" then
    3x3; ``branch3`` 1x1 "5x5 reduce" then 5x5; ``branch4`` 3x3 max-pool then a 1x1 "pool
    proj".  The 1x1 reductions before the expensive convolutions are what keep the cost down.

    ``batch_norm=False`` is the 2014 paper (convolutions with bias, ReLU); ``True`` puts a
    batch norm after each convolution (torchvision's GoogLeNet).  ``kernel_5x5=3``
    reproduces torchvision's layout, whose "5x5" branch holds a 3x3 convolution.
    """

    branch_names = ("branch1", "branch2", "branch3", "branch4")

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch5x5red: int,
        ch5x5: int,
        pool_proj: int,
        *,
        batch_norm: bool = False,
        kernel_5x5: int = 5,
    ) -> None:
        super().__init__()

        def unit(cin: int, cout: int, k: int) -> ConvNormAct:
            return conv_bn(cin, cout, k) if batch_norm else conv_relu(cin, cout, k)

        self.branch1 = unit(in_channels, ch1x1, 1)
        self.branch2 = nn.Sequential(unit(in_channels, ch3x3red, 1), unit(ch3x3red, ch3x3, 3))
        self.branch3 = nn.Sequential(unit(in_channels, ch5x5red, 1), unit(ch5x5red, ch5x5, kernel_5x5))
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True), unit(in_channels, pool_proj, 1)
        )
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj


# --------------------------------------------------------------------------- BN-Inception


class InceptionBN(_Concat):
    """An Inception module of BN-Inception (Ioffe & Szegedy 2015, Figure 5 and Section 4.2.1).

    Compared with GoogLeNet: batch norm after every convolution, the 5x5 convolution replaced
    by two stacked 3x3 ("double 3x3"), average or max pooling in the pool branch, and for
    ``stride=2`` a module that halves the grid: no 1x1 branch, the last 3x3 of both
    convolution branches at stride 2, and a stride-2 max-pool passing the input through
    ("max + pass through").
    """

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        dbl3x3red: int,
        dbl3x3: int,
        pool: str,
        pool_proj: int,
        stride: int = 1,
    ) -> None:
        super().__init__()
        names = []
        if ch1x1:
            self.branch1x1 = conv_bn(in_channels, ch1x1, 1)
            names.append("branch1x1")
        self.branch3x3 = nn.Sequential(
            conv_bn(in_channels, ch3x3red, 1), conv_bn(ch3x3red, ch3x3, 3, stride=stride)
        )
        self.branch3x3dbl = nn.Sequential(
            conv_bn(in_channels, dbl3x3red, 1),
            conv_bn(dbl3x3red, dbl3x3, 3),
            conv_bn(dbl3x3, dbl3x3, 3, stride=stride),
        )
        pool_layer = (
            nn.MaxPool2d(3, stride=stride, padding=1)
            if pool == "max"
            else nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
        )
        if pool_proj:
            self.branch_pool = nn.Sequential(pool_layer, conv_bn(in_channels, pool_proj, 1))
            pool_out = pool_proj
        else:  # pass through
            self.branch_pool = pool_layer
            pool_out = in_channels
        self.branch_names = (*names, "branch3x3", "branch3x3dbl", "branch_pool")
        self.out_channels = ch1x1 + ch3x3 + dbl3x3 + pool_out


# --------------------------------------------------------------------------- Inception v3


class InceptionV3A(nn.Module):
    """The 35x35 module (Rethinking, Figure 5): 5x5 factorised into two 3x3 convolutions.

    Widths of the released Inception v3 (torchvision/TF): 1x1 64; 1x1 48 -> 5x5 64; 1x1 64 ->
    3x3 96 -> 3x3 96; 3x3 average pool -> 1x1 ``pool_features``.  The release keeps a real
    5x5 branch next to the factorised double 3x3.
    """

    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = conv_bn(in_channels, 64, 1)
        self.branch5x5_1 = conv_bn(in_channels, 48, 1)
        self.branch5x5_2 = conv_bn(48, 64, 5)
        self.branch3x3dbl_1 = conv_bn(in_channels, 64, 1)
        self.branch3x3dbl_2 = conv_bn(64, 96, 3)
        self.branch3x3dbl_3 = conv_bn(96, 96, 3)
        self.branch_pool = conv_bn(in_channels, pool_features, 1)
        self.out_channels = 64 + 64 + 96 + pool_features

    def forward(self, x: Tensor) -> Tensor:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(F.avg_pool2d(x, 3, stride=1, padding=1))
        return torch.cat([b1, b5, b3, bp], 1)


class InceptionV3ReductionA(nn.Module):
    """Grid reduction 35x35 -> 17x17 (Rethinking, Figure 10, Section 7).

    Pooling and a stride-2 convolution in parallel, so the grid shrinks while the filter
    bank grows, without the representational bottleneck of pooling first (principle 1).
    """

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = conv_bn(in_channels, 384, 3, stride=2, padding=0)
        self.branch3x3dbl_1 = conv_bn(in_channels, 64, 1)
        self.branch3x3dbl_2 = conv_bn(64, 96, 3)
        self.branch3x3dbl_3 = conv_bn(96, 96, 3, stride=2, padding=0)
        self.out_channels = 384 + 96 + in_channels

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = F.max_pool2d(x, 3, stride=2)
        return torch.cat([b3, bd, bp], 1)


class InceptionV3B(nn.Module):
    """The 17x17 module (Rethinking, Figure 6): 7x7 factorised as 1x7 then 7x1 (Section 3.2).

    ``channels_7x7`` is the width inside the factorised branches (128, 160, 160, 192).
    """

    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = conv_bn(in_channels, 192, 1)
        self.branch7x7_1 = conv_bn(in_channels, c7, 1)
        self.branch7x7_2 = conv_bn(c7, c7, (1, 7))
        self.branch7x7_3 = conv_bn(c7, 192, (7, 1))
        self.branch7x7dbl_1 = conv_bn(in_channels, c7, 1)
        self.branch7x7dbl_2 = conv_bn(c7, c7, (7, 1))
        self.branch7x7dbl_3 = conv_bn(c7, c7, (1, 7))
        self.branch7x7dbl_4 = conv_bn(c7, c7, (7, 1))
        self.branch7x7dbl_5 = conv_bn(c7, 192, (1, 7))
        self.branch_pool = conv_bn(in_channels, 192, 1)
        self.out_channels = 4 * 192

    def forward(self, x: Tensor) -> Tensor:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            bd = layer(bd)
        bp = self.branch_pool(F.avg_pool2d(x, 3, stride=1, padding=1))
        return torch.cat([b1, b7, bd, bp], 1)


class InceptionV3ReductionB(nn.Module):
    """Grid reduction 17x17 -> 8x8 of the released Inception v3 (Mixed_7a)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = conv_bn(in_channels, 192, 1)
        self.branch3x3_2 = conv_bn(192, 320, 3, stride=2, padding=0)
        self.branch7x7x3_1 = conv_bn(in_channels, 192, 1)
        self.branch7x7x3_2 = conv_bn(192, 192, (1, 7))
        self.branch7x7x3_3 = conv_bn(192, 192, (7, 1))
        self.branch7x7x3_4 = conv_bn(192, 192, 3, stride=2, padding=0)
        self.out_channels = 320 + 192 + in_channels

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = layer(b7)
        bp = F.max_pool2d(x, 3, stride=2)
        return torch.cat([b3, b7, bp], 1)


class InceptionV3C(nn.Module):
    """The 8x8 module with expanded filter banks (Rethinking, Figure 7).

    The 3x3 convolutions are split into 1x3 and 3x1 applied *in parallel* to the same input
    and concatenated, which widens the output (2048) for the coarsest grid, where "higher
    dimensional representations are easier to process locally" (principle 2).
    """

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch1x1 = conv_bn(in_channels, 320, 1)
        self.branch3x3_1 = conv_bn(in_channels, 384, 1)
        self.branch3x3_2a = conv_bn(384, 384, (1, 3))
        self.branch3x3_2b = conv_bn(384, 384, (3, 1))
        self.branch3x3dbl_1 = conv_bn(in_channels, 448, 1)
        self.branch3x3dbl_2 = conv_bn(448, 384, 3)
        self.branch3x3dbl_3a = conv_bn(384, 384, (1, 3))
        self.branch3x3dbl_3b = conv_bn(384, 384, (3, 1))
        self.branch_pool = conv_bn(in_channels, 192, 1)
        self.out_channels = 320 + 768 + 768 + 192

    def forward(self, x: Tensor) -> Tensor:
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        bp = self.branch_pool(F.avg_pool2d(x, 3, stride=1, padding=1))
        return torch.cat([b1, b3, bd, bp], 1)


class InceptionV3Aux(nn.Module):
    """The auxiliary classifier on the 17x17x768 grid (Rethinking, Figure 8, Section 4).

    5x5/3 average pool -> 1x1 conv 128 -> 5x5 conv 768 (batch-normalised, which the paper
    found to act as a regulariser) -> global average -> fully connected.
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv0 = conv_bn(in_channels, 128, 1)
        self.conv1 = conv_bn(128, 768, 5, padding=0)
        self.fc = nn.Linear(768, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = F.avg_pool2d(x, 5, stride=3)
        x = self.conv1(self.conv0(x))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


# --------------------------------------------------------------------------- Inception v4


class StemPoolAndConv(nn.Module):
    """Inception-v4 stem split (Figure 3): 3x3/2 max-pool || 3x3/2 conv, concatenated."""

    def __init__(self, in_channels: int, conv_channels: int) -> None:
        super().__init__()
        self.maxpool = nn.MaxPool2d(3, stride=2)
        self.conv = conv_bn(in_channels, conv_channels, 3, stride=2, padding=0)
        self.out_channels = in_channels + conv_channels

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.maxpool(x), self.conv(x)], 1)


class StemConvAndPool(nn.Module):
    """Inception-v4 stem's last split (Figure 3): 3x3/2 conv || 3x3/2 max-pool."""

    def __init__(self, in_channels: int, conv_channels: int) -> None:
        super().__init__()
        self.conv = conv_bn(in_channels, conv_channels, 3, stride=2, padding=0)
        self.maxpool = nn.MaxPool2d(3, stride=2)
        self.out_channels = in_channels + conv_channels

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.conv(x), self.maxpool(x)], 1)


class StemFactorizedBranches(_Concat):
    """Inception-v4 stem middle (Figure 3): 1x1 64 -> 3x3 96 || 1x1 64 -> 7x1 -> 1x7 -> 3x3 96.

    Both 3x3 convolutions are unpadded ("V"), 73x73 -> 71x71.
    """

    branch_names = ("branch0", "branch1")

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch0 = nn.Sequential(conv_bn(in_channels, 64, 1), conv_bn(64, 96, 3, padding=0))
        self.branch1 = nn.Sequential(
            conv_bn(in_channels, 64, 1),
            conv_bn(64, 64, (1, 7)),
            conv_bn(64, 64, (7, 1)),
            conv_bn(64, 96, 3, padding=0),
        )
        self.out_channels = 192


def _avg_pool_3x3() -> nn.AvgPool2d:
    # TF's "SAME" average pooling divides by the number of real (non-padding) pixels
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


class InceptionV4A(_Concat):
    """Inception-A of Inception-v4 (Figure 4), on the 35x35 grid: 384 -> 384 channels."""

    branch_names = ("branch0", "branch1", "branch2", "branch3")

    def __init__(self, in_channels: int = 384) -> None:
        super().__init__()
        self.branch0 = conv_bn(in_channels, 96, 1)
        self.branch1 = nn.Sequential(conv_bn(in_channels, 64, 1), conv_bn(64, 96, 3))
        self.branch2 = nn.Sequential(conv_bn(in_channels, 64, 1), conv_bn(64, 96, 3), conv_bn(96, 96, 3))
        self.branch3 = nn.Sequential(_avg_pool_3x3(), conv_bn(in_channels, 96, 1))
        self.out_channels = 4 * 96


class ReductionA(_Concat):
    """The 35x35 -> 17x17 reduction of Inception-v4 and Inception-ResNet (Figure 7).

    3x3/2 conv ``n`` || 1x1 ``k`` -> 3x3 ``l`` -> 3x3/2 ``m`` || 3x3/2 max-pool.  The widths
    k, l, m, n are the paper's Table 1: (192, 224, 256, 384) for Inception-v4, (192, 192,
    256, 384) for Inception-ResNet-v1 and (256, 256, 384, 384) for Inception-ResNet-v2.
    """

    branch_names = ("branch0", "branch1", "branch2")

    def __init__(self, in_channels: int, k: int, l: int, m: int, n: int) -> None:  # noqa: E741
        super().__init__()
        self.branch0 = conv_bn(in_channels, n, 3, stride=2, padding=0)
        self.branch1 = nn.Sequential(
            conv_bn(in_channels, k, 1), conv_bn(k, l, 3), conv_bn(l, m, 3, stride=2, padding=0)
        )
        self.branch2 = nn.MaxPool2d(3, stride=2)
        self.out_channels = in_channels + n + m


class InceptionV4B(_Concat):
    """Inception-B of Inception-v4 (Figure 5), on the 17x17 grid: 1024 -> 1024 channels."""

    branch_names = ("branch0", "branch1", "branch2", "branch3")

    def __init__(self, in_channels: int = 1024) -> None:
        super().__init__()
        self.branch0 = conv_bn(in_channels, 384, 1)
        self.branch1 = nn.Sequential(
            conv_bn(in_channels, 192, 1), conv_bn(192, 224, (1, 7)), conv_bn(224, 256, (7, 1))
        )
        self.branch2 = nn.Sequential(
            conv_bn(in_channels, 192, 1),
            conv_bn(192, 192, (7, 1)),
            conv_bn(192, 224, (1, 7)),
            conv_bn(224, 224, (7, 1)),
            conv_bn(224, 256, (1, 7)),
        )
        self.branch3 = nn.Sequential(_avg_pool_3x3(), conv_bn(in_channels, 128, 1))
        self.out_channels = 384 + 256 + 256 + 128


class InceptionV4ReductionB(_Concat):
    """Reduction-B of Inception-v4 (Figure 8): 17x17x1024 -> 8x8x1536."""

    branch_names = ("branch0", "branch1", "branch2")

    def __init__(self, in_channels: int = 1024) -> None:
        super().__init__()
        self.branch0 = nn.Sequential(conv_bn(in_channels, 192, 1), conv_bn(192, 192, 3, stride=2, padding=0))
        self.branch1 = nn.Sequential(
            conv_bn(in_channels, 256, 1),
            conv_bn(256, 256, (1, 7)),
            conv_bn(256, 320, (7, 1)),
            conv_bn(320, 320, 3, stride=2, padding=0),
        )
        self.branch2 = nn.MaxPool2d(3, stride=2)
        self.out_channels = 192 + 320 + in_channels


class InceptionV4C(nn.Module):
    """Inception-C of Inception-v4 (Figure 6), on the 8x8 grid: 1536 -> 1536 channels.

    Like v3's Figure 7, the last 1x3 and 3x1 convolutions of two branches run in parallel.
    """

    def __init__(self, in_channels: int = 1536) -> None:
        super().__init__()
        self.branch0 = conv_bn(in_channels, 256, 1)
        self.branch1_0 = conv_bn(in_channels, 384, 1)
        self.branch1_1a = conv_bn(384, 256, (1, 3))
        self.branch1_1b = conv_bn(384, 256, (3, 1))
        self.branch2_0 = conv_bn(in_channels, 384, 1)
        self.branch2_1 = conv_bn(384, 448, (3, 1))
        self.branch2_2 = conv_bn(448, 512, (1, 3))
        self.branch2_3a = conv_bn(512, 256, (1, 3))
        self.branch2_3b = conv_bn(512, 256, (3, 1))
        self.branch3 = nn.Sequential(_avg_pool_3x3(), conv_bn(in_channels, 256, 1))
        self.out_channels = 6 * 256

    def forward(self, x: Tensor) -> Tensor:
        b0 = self.branch0(x)
        b1 = self.branch1_0(x)
        b1 = torch.cat([self.branch1_1a(b1), self.branch1_1b(b1)], 1)
        b2 = self.branch2_2(self.branch2_1(self.branch2_0(x)))
        b2 = torch.cat([self.branch2_3a(b2), self.branch2_3b(b2)], 1)
        return torch.cat([b0, b1, b2, self.branch3(x)], 1)


# --------------------------------------------------------------------------- Inception-ResNet

#: a branch of an Inception-ResNet block: its convolutions as (out_channels, kernel_size)
BranchSpec = Sequence[tuple[int, int | tuple[int, int]]]


class InceptionResNetBlock(nn.Module):
    """An Inception-ResNet block (Inception-v4 paper, Figures 10, 11, 13, 16, 17, 19).

    ``x -> act(x + scale * conv1x1(concat(branches(x))))``.  The branches are data: each is
    a list of ``(out_channels, kernel)`` convolutions (BN + ReLU, "same" padding); the 1x1
    convolution without activation ("1x1 Conv (Linear)") brings the width back to the
    input's so the sum is possible.  Section 3.3: scaling the residual by 0.1-0.3 before
    the addition keeps very wide residual Inception nets from dying early in training.
    ``activate=False`` leaves out the final ReLU (the last block of the TF release).
    """

    def __init__(
        self,
        in_channels: int,
        branches: Sequence[BranchSpec],
        scale: float,
        activate: bool = True,
    ) -> None:
        super().__init__()
        self.scale = scale
        self.branch_names = tuple(f"branch{i}" for i in range(len(branches)))
        concat_channels = 0
        for name, spec in zip(self.branch_names, branches):
            layers, channels = [], in_channels
            for out_channels, kernel in spec:
                layers.append(conv_bn(channels, out_channels, kernel))
                channels = out_channels
            setattr(self, name, layers[0] if len(layers) == 1 else nn.Sequential(*layers))
            concat_channels += channels
        self.conv2d = nn.Conv2d(concat_channels, in_channels, 1)  # linear, with bias
        self.act = nn.ReLU() if activate else nn.Identity()
        self.out_channels = in_channels

    def forward(self, x: Tensor) -> Tensor:
        residual = self.conv2d(torch.cat([getattr(self, n)(x) for n in self.branch_names], 1))
        return self.act(x + self.scale * residual)


class InceptionResNetReductionB(_Concat):
    """The 17x17 -> 8x8 reduction of Inception-ResNet (Figures 12 and 18).

    1x1 256 -> 3x3/2 ``a`` || 1x1 256 -> 3x3/2 ``b`` || 1x1 256 -> 3x3 ``c`` -> 3x3/2 ``d`` ||
    3x3/2 max-pool; (a, b, c, d) = (384, 256, 256, 256) in v1 and (384, 288, 288, 320) in v2.
    """

    branch_names = ("branch0", "branch1", "branch2", "branch3")

    def __init__(self, in_channels: int, a: int, b: int, c: int, d: int, reduce: int = 256) -> None:
        super().__init__()
        self.branch0 = nn.Sequential(conv_bn(in_channels, reduce, 1), conv_bn(reduce, a, 3, stride=2, padding=0))
        self.branch1 = nn.Sequential(conv_bn(in_channels, reduce, 1), conv_bn(reduce, b, 3, stride=2, padding=0))
        self.branch2 = nn.Sequential(
            conv_bn(in_channels, reduce, 1), conv_bn(reduce, c, 3), conv_bn(c, d, 3, stride=2, padding=0)
        )
        self.branch3 = nn.MaxPool2d(3, stride=2)
        self.out_channels = a + b + d + in_channels
