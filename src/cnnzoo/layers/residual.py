"""Residual blocks: ResNet's basic and bottleneck blocks, their shortcuts, pre-activation and wide blocks.

* He, Zhang, Ren & Sun 2016, "Deep Residual Learning for Image Recognition": the basic block
  (two 3x3 convs, Fig. 2) and the bottleneck block (1x1 reduce, 3x3, 1x1 expand, Fig. 5), the
  shortcut options A/B/C of Section 3.3 / 4.1 and the plain twins (same layers, no shortcut).
* He, Zhang, Ren & Sun 2016b, "Identity Mappings in Deep Residual Networks": pre-activation
  blocks, BN -> ReLU -> conv (Fig. 4(e)), with nothing after the addition.
* Zagoruyko & Komodakis 2016, "Wide Residual Networks": the pre-activation basic block with
  dropout between its two convolutions (Section 2.3, Fig. 1(d)).
* Xie, Girshick, Dollar, Tu & He 2017, "Aggregated Residual Transformations" (ResNeXt): the
  bottleneck whose 3x3 convolution is grouped (Fig. 3(c)), the ``groups`` argument here.

Every block knows its ``in_channels``, ``out_channels`` and ``stride``; a block whose output
has the input's shape (``keeps_shape``) can be deleted from a net or moved within its stage
(the lesion study of Veit, Wilber & Belongie 2016).  Submodule names follow torchvision's
``BasicBlock`` / ``Bottleneck`` (``conv1``, ``bn1``, ..., ``downsample``), so its state dicts
load strictly into the post-activation blocks.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from cnnzoo.errors import ConfigError
from cnnzoo.layers.drop_path import DropPath

#: Section 3.3 of He et al. 2016: (A) zero-padding identity shortcuts, parameter-free;
#: (B) projection shortcuts where the shape changes, identity elsewhere; (C) projections everywhere.
SHORTCUT_OPTIONS = ("A", "B", "C")

#: how a pre-activation block treats its input (see :class:`PreActBasicBlock`)
PREACT_MODES = ("own", "shared", "none")


def check_shortcut_option(option: str) -> str:
    """``"a"``/``"A"`` ... -> ``"A"``; anything else is a one-line ConfigError."""
    if isinstance(option, str) and option.upper() in SHORTCUT_OPTIONS:
        return option.upper()
    raise ConfigError(f"shortcut must be one of A, B, C (He et al. 2016, Section 3.3), got {option!r}")


def conv3x3(in_channels: int, out_channels: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """3x3 convolution, "same" padding, no bias (a batch norm follows or precedes it)."""
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, groups=groups, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution without bias."""
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class ZeroPadShortcut(nn.Module):
    """Option A: identity with strided subsampling and zero-padded extra channels.

    "The shortcut still performs identity mapping, with extra zero entries padded for
    increasing dimensions ... when the shortcuts go across feature maps of two sizes, they
    are performed with a stride of 2" (He et al. 2016, Section 3.3).  Taking every
    ``stride``-th pixel is what a 1x1 convolution with that stride would see.  Parameter-free.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ConfigError(
                f"shortcut A cannot reduce channels ({in_channels} -> {out_channels}); use B or C"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        extra = self.out_channels - self.in_channels
        if extra:
            x = F.pad(x, (0, 0, 0, 0, 0, extra))  # zeros appended after the last channel
        return x

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"


def make_shortcut(
    option: str, in_channels: int, out_channels: int, stride: int, *, norm: bool = True
) -> nn.Module | None:
    """The shortcut of a block under option A, B or C; ``None`` means the identity.

    Projections are a strided 1x1 convolution followed by batch norm (``norm=True``, the
    post-activation nets: torchvision's ``downsample.0`` / ``downsample.1``) or the bare 1x1
    convolution (pre-activation nets, where the next block's BN follows the addition).
    """
    option = check_shortcut_option(option)
    same_shape = in_channels == out_channels and stride == 1
    if option == "C" or (option == "B" and not same_shape):
        layers = [conv1x1(in_channels, out_channels, stride)]
        if norm:
            layers.append(nn.BatchNorm2d(out_channels))
        return nn.Sequential(*layers)
    if same_shape:
        return None
    return ZeroPadShortcut(in_channels, out_channels, stride)


def is_projection(shortcut: nn.Module | None) -> bool:
    """True for a learned (1x1 convolution) shortcut."""
    return shortcut is not None and not isinstance(shortcut, ZeroPadShortcut)


class ResidualBlock(nn.Module):
    """What every residual block shares: its shape, its shortcut and its drop-path.

    ``residual=False`` builds the plain twin (He et al. 2016, Section 4.1, "Plain Networks"):
    the same layers with the shortcut and the addition removed.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        *,
        residual: bool,
        drop_path: float,
        drop_path_per_sample: bool,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        self.residual = residual
        if not residual and drop_path > 0:
            raise ConfigError("stochastic depth needs shortcuts: a plain net cannot take drop_path_rate > 0")
        self.drop_path = DropPath(drop_path, per_sample=drop_path_per_sample)

    @property
    def keeps_shape(self) -> bool:
        """True if the output has the input's shape, so the block can be deleted or moved."""
        return self.in_channels == self.out_channels and self.stride == 1

    def shortcut(self, x: Tensor) -> Tensor:
        return x if self.downsample is None else self.downsample(x)


class BasicBlock(ResidualBlock):
    """Two 3x3 conv-BN layers with a shortcut around them, ReLU after the addition (Fig. 2).

    ``conv1`` carries the stride when the block halves the resolution.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        *,
        shortcut: str = "B",
        residual: bool = True,
        drop_path: float = 0.0,
        drop_path_per_sample: bool = False,
    ) -> None:
        super().__init__(
            in_channels, out_channels, stride,
            residual=residual, drop_path=drop_path, drop_path_per_sample=drop_path_per_sample,
        )
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.act2 = nn.ReLU(inplace=True)
        self.downsample = make_shortcut(shortcut, in_channels, out_channels, stride) if residual else None

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: Tensor) -> Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            out = self.drop_path(out) + self.shortcut(x)
        return self.act2(out)


class Bottleneck(ResidualBlock):
    """1x1 (reduce to ``width``) -> 3x3 -> 1x1 (expand to ``out_channels``), each conv-BN,
    ReLU between them and after the addition (He et al. 2016, Fig. 5 right).

    ``stride_in_1x1=True`` puts the stride on the first 1x1 convolution, as the paper's
    Caffe models do ("v1"); the default puts it on the 3x3, as torchvision (and Facebook's
    fb.resnet.torch before it) do ("v1.5").  Same parameters, but in v1.5 the first 1x1 of a
    downsampling block runs at the higher resolution: more multiply-adds, better accuracy.
    ``groups > 1`` groups the 3x3 convolution: the ResNeXt block of Xie et al. 2017, Fig. 3(c),
    with cardinality ``groups`` and ``width / groups`` channels per group.
    """

    def __init__(
        self,
        in_channels: int,
        width: int,
        out_channels: int,
        stride: int = 1,
        *,
        groups: int = 1,
        stride_in_1x1: bool = False,
        shortcut: str = "B",
        residual: bool = True,
        drop_path: float = 0.0,
        drop_path_per_sample: bool = False,
    ) -> None:
        super().__init__(
            in_channels, out_channels, stride,
            residual=residual, drop_path=drop_path, drop_path_per_sample=drop_path_per_sample,
        )
        if width % groups:
            raise ConfigError(f"bottleneck width {width} is not divisible by {groups} groups")
        self.width = width
        self.groups = groups
        self.stride_in_1x1 = stride_in_1x1
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = conv1x1(in_channels, width, stride_1x1)
        self.bn1 = nn.BatchNorm2d(width)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(width, width, stride_3x3, groups=groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.act2 = nn.ReLU(inplace=True)
        self.conv3 = conv1x1(width, out_channels)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.act3 = nn.ReLU(inplace=True)
        self.downsample = make_shortcut(shortcut, in_channels, out_channels, stride) if residual else None

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: Tensor) -> Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.act2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.residual:
            out = self.drop_path(out) + self.shortcut(x)
        return self.act3(out)


class _PreActBlock(ResidualBlock):
    """Shared logic of the pre-activation blocks: where the first BN-ReLU goes.

    ``preact`` is

    * ``"own"``: BN-ReLU starts the residual branch; the shortcut carries the raw input (the
      usual unit, He et al. 2016b Fig. 4(e));
    * ``"shared"``: the BN-ReLU comes before the split and feeds both the branch and the
      projection shortcut.  Used where the shortcut is a projection, as in the authors' code
      ("both_preact") and in Wide ResNets; it keeps the projection from reading an
      un-normalised sum;
    * ``"none"``: the input is already activated (the first block after a conv-BN-ReLU stem,
      He et al. 2016b, Section 4: "for the first Residual Unit ... we adopt the first
      activation right after conv1 and before splitting into two paths").

    ``preact=None`` picks ``"shared"`` for a projection shortcut and ``"own"`` otherwise.
    """

    def _init_preact(self, preact: str | None, in_channels: int) -> None:
        if preact is None:
            preact = "shared" if is_projection(self.downsample) else "own"
        if preact not in PREACT_MODES:
            raise ConfigError(f"preact must be one of {', '.join(PREACT_MODES)}, got {preact!r}")
        self.preact = preact
        if preact == "none":
            self.bn1 = None
            self.act1 = None
        else:
            self.bn1 = nn.BatchNorm2d(in_channels)
            self.act1 = nn.ReLU()  # not in place: the "own" shortcut still reads x

    def _preactivate(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(branch input, shortcut input)."""
        if self.preact == "none":
            return x, x
        activated = self.act1(self.bn1(x))
        return activated, (activated if self.preact == "shared" else x)

    def _add(self, branch: Tensor, shortcut_input: Tensor) -> Tensor:
        if not self.residual:
            return branch
        return self.drop_path(branch) + self.shortcut(shortcut_input)


class PreActBasicBlock(_PreActBlock):
    """BN-ReLU-conv3x3, BN-ReLU-[dropout]-conv3x3, plus the shortcut; nothing after the addition.

    He et al. 2016b, Fig. 1(b) / 4(e).  ``drop_rate > 0`` inserts dropout between the two
    convolutions, the wide-dropout block of Zagoruyko & Komodakis 2016 (Section 2.3: "we add a
    dropout layer into each residual block between convolutions and after ReLU").
    Projection shortcuts are a bare 1x1 convolution.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        *,
        shortcut: str = "B",
        preact: str | None = None,
        drop_rate: float = 0.0,
        residual: bool = True,
        drop_path: float = 0.0,
        drop_path_per_sample: bool = False,
    ) -> None:
        super().__init__(
            in_channels, out_channels, stride,
            residual=residual, drop_path=drop_path, drop_path_per_sample=drop_path_per_sample,
        )
        self.downsample = (
            make_shortcut(shortcut, in_channels, out_channels, stride, norm=False) if residual else None
        )
        self._init_preact(preact, in_channels)
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.act2 = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.conv2 = conv3x3(out_channels, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        branch, shortcut_input = self._preactivate(x)
        branch = self.conv1(branch)
        branch = self.conv2(self.dropout(self.act2(self.bn2(branch))))
        return self._add(branch, shortcut_input)

    def last_conv(self) -> nn.Conv2d:
        """The branch's final layer (zeroed by ``zero_init_residual``)."""
        return self.conv2


class WideBasicBlock(PreActBasicBlock):
    """The Wide ResNet block B(3,3) with dropout, "wide-dropout" (Zagoruyko & Komodakis 2016,
    Fig. 1(d)): a pre-activation basic block of ``k`` times the width, dropout between convs."""


class PreActBottleneck(_PreActBlock):
    """BN-ReLU-conv1x1, BN-ReLU-conv3x3, BN-ReLU-conv1x1, plus the shortcut (He et al. 2016b).

    The stride is on the 3x3 convolution unless ``stride_in_1x1``; ``groups`` groups the 3x3.
    """

    def __init__(
        self,
        in_channels: int,
        width: int,
        out_channels: int,
        stride: int = 1,
        *,
        groups: int = 1,
        stride_in_1x1: bool = False,
        shortcut: str = "B",
        preact: str | None = None,
        residual: bool = True,
        drop_path: float = 0.0,
        drop_path_per_sample: bool = False,
    ) -> None:
        super().__init__(
            in_channels, out_channels, stride,
            residual=residual, drop_path=drop_path, drop_path_per_sample=drop_path_per_sample,
        )
        if width % groups:
            raise ConfigError(f"bottleneck width {width} is not divisible by {groups} groups")
        self.width = width
        self.downsample = (
            make_shortcut(shortcut, in_channels, out_channels, stride, norm=False) if residual else None
        )
        self._init_preact(preact, in_channels)
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = conv1x1(in_channels, width, stride_1x1)
        self.bn2 = nn.BatchNorm2d(width)
        self.act2 = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(width, width, stride_3x3, groups=groups)
        self.bn3 = nn.BatchNorm2d(width)
        self.act3 = nn.ReLU(inplace=True)
        self.conv3 = conv1x1(width, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        branch, shortcut_input = self._preactivate(x)
        branch = self.act2(self.bn2(self.conv1(branch)))
        branch = self.act3(self.bn3(self.conv2(branch)))
        return self._add(self.conv3(branch), shortcut_input)

    def last_conv(self) -> nn.Conv2d:
        """The branch's final layer (zeroed by ``zero_init_residual``)."""
        return self.conv3


__all__ = [
    "SHORTCUT_OPTIONS",
    "check_shortcut_option",
    "make_shortcut",
    "ZeroPadShortcut",
    "ResidualBlock",
    "BasicBlock",
    "Bottleneck",
    "PreActBasicBlock",
    "WideBasicBlock",
    "PreActBottleneck",
]
