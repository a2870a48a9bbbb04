"""ResNet (He, Zhang, Ren & Sun 2016): the ImageNet nets of Table 1, the CIFAR nets of
Section 4.2 with their plain twins, and the stochastic-depth ResNet-110 of Huang et al. 2016.

ImageNet ResNets (``resnet18`` ... ``resnet152``) follow torchvision's layout by default
(``conv1``/``bn1``/``maxpool``, ``layer1``-``layer4``, ``fc``; projection shortcuts where the
shape changes, i.e. option B; the bottleneck's stride on its 3x3 convolution), so its state
dicts load strictly and give the same outputs.  ``shortcut="A"|"B"|"C"`` selects the shortcut
option of Section 3.3 and ``stride_in_1x1=True`` the paper's own bottleneck ("v1").

The FLOPs row of Table 1 (1.8 / 3.6 / 3.8 / 7.6 / 11.3 G at 224x224) counts multiply-adds of
the convolutions and the fc layer.  It is reproduced (within 3%) with ``stride_in_1x1=True``.
torchvision's ResNet-50 ("v1.5", stride on the 3x3) needs 4.1 G: in the first block of stages
conv3_x, conv4_x and conv5_x the stride moves from the first 1x1 convolution to the 3x3, so
that 1x1 runs at the input resolution, four times as many positions.  Each of the three 1x1s
costs an extra 3/4 * (56*56*256*128) = 77 M multiply-adds (the channels double as the side
halves, so all three are equal), 0.23 G in all: 3.86 G + 0.23 G = 4.09 G.  ResNet-18/34 have
no 1x1 convs in their branches and are unaffected.

CIFAR ResNets (Section 4.2): a 3x3 conv with 16 filters, then ``3n`` basic blocks on 32x32,
16x16 and 8x8 maps with 16, 32 and 64 filters, global average pooling and a 10-way fc;
``6n + 2`` weighted layers; identity shortcuts with zero padding (option A) "in all cases",
so they have exactly the parameters of their plain twins.

Every net here exposes its residual blocks as a sequence (:class:`ResidualNet`): the
lesion study (Veit et al. 2016) deletes and reorders them with :meth:`ResidualNet.delete_blocks`
and :meth:`ResidualNet.set_residual_blocks`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cnnzoo.errors import ConfigError
from cnnzoo.layers.drop_path import check_drop_prob, drop_path_rates
from cnnzoo.layers.residual import BasicBlock, Bottleneck, ResidualBlock, check_shortcut_option
from cnnzoo.models.base import ClassifierNet, init_weights, linear_or_identity
from cnnzoo.registry import Paper, register_model

RESNET_PAPER = Paper(
    title="Deep Residual Learning for Image Recognition",
    authors="Kaiming He, Xiangyu Zhang, Shaoqing Ren, Jian Sun",
    year=2016,
    url="https://arxiv.org/abs/1512.03385",
)

STOCHASTIC_DEPTH_PAPER = Paper(
    title="Deep Networks with Stochastic Depth",
    authors="Gao Huang, Yu Sun, Zhuang Liu, Daniel Sedra, Kilian Q. Weinberger",
    year=2016,
    url="https://arxiv.org/abs/1603.09382",
)


# --------------------------------------------------------------------------------------------
# Blocks as a sequence


class ResidualNet(ClassifierNet):
    """A classifier whose body is a list of stages (``layer1``, ``layer2``, ...) of residual blocks.

    :meth:`residual_blocks` lists the blocks in the order they run; :meth:`delete_blocks` and
    :meth:`set_residual_blocks` rebuild the stages from an edited list.  Each block remembers
    the stage it was built in (``block.stage_index``), and a block stays in that stage: only
    blocks whose output has their input's shape can be deleted, and a reordering must keep
    the stages in order and every block's input width equal to the previous block's output.
    Subclasses set ``self.stage_names`` and ``self.stem_channels`` and build the stages with
    :meth:`_build_stages`.
    """

    stage_names: list[str]
    stem_channels: int

    def _build_stages(
        self,
        stage_blocks: Sequence[int],
        stage_strides: Sequence[int],
        stage_channels: Sequence[int],
        make_block: Callable[..., ResidualBlock],
        drop_path_rate: float,
    ) -> int:
        """Create ``layer1 .. layerK``; ``make_block(stage, index, in_ch, out_ch, stride, drop_path)``.

        Drop probabilities decay linearly over all blocks of the net (Huang et al. 2016,
        Section 3).  Returns the output width of the last stage.
        """
        rates = drop_path_rates(sum(stage_blocks), check_drop_prob(drop_path_rate))
        self.stage_names = []
        channels = self.stem_channels
        block_number = 0
        for stage, (count, stride, out_channels) in enumerate(
            zip(stage_blocks, stage_strides, stage_channels)
        ):
            blocks = []
            for index in range(count):
                block = make_block(
                    stage, index, channels, out_channels, stride if index == 0 else 1,
                    rates[block_number],
                )
                block.stage_index = stage
                blocks.append(block)
                channels = out_channels
                block_number += 1
            name = f"layer{stage + 1}"
            setattr(self, name, nn.Sequential(*blocks))
            self.stage_names.append(name)
        return channels

    def stages(self) -> list[nn.Sequential]:
        return [getattr(self, name) for name in self.stage_names]

    def forward_stages(self, x: Tensor) -> Tensor:
        for stage in self.stages():
            x = stage(x)
        return x

    def residual_blocks(self) -> list[ResidualBlock]:
        """The residual blocks in the order they run."""
        return [block for stage in self.stages() for block in stage]

    def block_names(self) -> list[str]:
        """``"layer2.0"``-style names of :meth:`residual_blocks`, in the same order."""
        return [f"{name}.{i}" for name in self.stage_names for i in range(len(getattr(self, name)))]

    def set_residual_blocks(self, blocks: Iterable[nn.Module]) -> None:
        """Rebuild the stages from ``blocks`` (a subset / reordering of :meth:`residual_blocks`).

        Each block goes back into the stage it was built in; raises a one-line ConfigError if
        the stages would come out of order or the widths do not chain.
        """
        blocks = list(blocks)
        for position, block in enumerate(blocks):
            if not isinstance(block, ResidualBlock) or not hasattr(block, "stage_index"):
                raise ConfigError(f"item {position} is not a residual block of a cnnzoo residual net")
            if block.stage_index >= len(self.stage_names):
                raise ConfigError(f"item {position} belongs to stage {block.stage_index + 1}, "
                                  f"the net has {len(self.stage_names)}")
        channels = self.stem_channels
        for position, block in enumerate(blocks):
            if position and block.stage_index < blocks[position - 1].stage_index:
                raise ConfigError(
                    f"item {position} belongs to stage {block.stage_index + 1} but follows a block of "
                    f"stage {blocks[position - 1].stage_index + 1}: blocks cannot move between stages"
                )
            if block.in_channels != channels:
                raise ConfigError(
                    f"item {position} takes {block.in_channels} channels but receives {channels}"
                )
            channels = block.out_channels
        if channels != self.num_features:
            raise ConfigError(f"the blocks end with {channels} channels, the head needs {self.num_features}")
        for stage, name in enumerate(self.stage_names):
            setattr(self, name, nn.Sequential(*[b for b in blocks if b.stage_index == stage]))

    def delete_blocks(self, indices: int | Iterable[int]) -> None:
        """Remove the blocks at these positions of :meth:`residual_blocks`.

        Only blocks that keep their input's shape (same width, stride 1) can go: deleting one
        leaves its shortcut, the identity.  The others raise a one-line ConfigError.
        """
        indices = [indices] if isinstance(indices, int) else list(indices)
        blocks = self.residual_blocks()
        names = self.block_names()
        for index in indices:
            if isinstance(index, bool) or not isinstance(index, int) or not -len(blocks) <= index < len(blocks):
                raise ConfigError(f"block index {index!r} out of range: the net has {len(blocks)} blocks")
            block = blocks[index]
            if not block.keeps_shape:
                raise ConfigError(
                    f"block {index % len(blocks)} ({names[index]}) changes the shape "
                    f"({block.in_channels} -> {block.out_channels} channels, stride {block.stride}) "
                    "and cannot be deleted"
                )
        drop = {index % len(blocks) for index in indices}
        self.set_residual_blocks(b for i, b in enumerate(blocks) if i not in drop)


def init_residual_weights(model: nn.Module, zero_init_residual: bool = False) -> None:
    """He initialisation for convolutions (He et al. 2015, as ResNet Section 3.4), BN at 1 / 0.

    ``zero_init_residual`` starts every residual branch at zero, so each block begins as its
    shortcut (Goyal et al. 2017, Section 5.1): a post-activation block's last BN gets scale 0
    (its branch ends in that BN); a pre-activation block's branch ends in a convolution, whose
    weights are zeroed instead.  (Zeroing the BN before that convolution would not do: the ReLU
    between them would see only zeros, pass no gradient, and the branch would never start.)
    """
    if any(p.is_meta for p in model.parameters()):
        return  # built on the meta device (shapes only): nothing to initialise
    init_weights(model, linear_std=None)
    if zero_init_residual:
        for module in model.modules():
            if not getattr(module, "residual", True):
                continue  # a plain net's block has no shortcut to fall back on
            if hasattr(module, "last_bn"):
                nn.init.zeros_(module.last_bn().weight)
            elif hasattr(module, "last_conv"):
                nn.init.zeros_(module.last_conv().weight)


# --------------------------------------------------------------------------------------------
# The post-activation ResNet


@dataclass(frozen=True)
class ResNetConfig:
    """A net's body: the block kind and, per stage, blocks, output width and bottleneck width."""

    block: str  # "basic" or "bottleneck"
    stage_blocks: tuple[int, ...]
    stage_channels: tuple[int, ...]
    bottleneck_widths: tuple[int, ...] | None = None
    groups: int = 1
    stem: str = "imagenet"  # "imagenet": 7x7/2 conv + 3x3/2 max-pool; "cifar": one 3x3 conv
    stem_channels: int = 64


def imagenet_config(depth: int, width_per_group: int = 64, groups: int = 1) -> ResNetConfig:
    """Table 1 of He et al. 2016, with torchvision's width rule for ResNeXt / Wide ResNet.

    A bottleneck's 3x3 width is ``planes * width_per_group / 64 * groups`` where ``planes`` is
    64, 128, 256, 512 (the output is ``4 * planes``): 64 wide for ResNet-50's conv2_x, twice
    that for Wide ResNet-50-2 (``width_per_group=128``), 32 groups of 4 for ResNeXt-50 32x4d.
    """
    if depth not in IMAGENET_STAGE_BLOCKS:
        raise ConfigError(f"ImageNet ResNet depth must be one of {sorted(IMAGENET_STAGE_BLOCKS)}, got {depth}")
    block, stage_blocks = IMAGENET_STAGE_BLOCKS[depth]
    planes = (64, 128, 256, 512)
    if block == "basic":
        return ResNetConfig("basic", stage_blocks, planes)
    return ResNetConfig(
        "bottleneck",
        stage_blocks,
        tuple(4 * p for p in planes),
        tuple(int(p * width_per_group / 64) * groups for p in planes),
        groups=groups,
    )


# Table 1 of He et al. 2016: blocks per stage conv2_x .. conv5_x
IMAGENET_STAGE_BLOCKS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}


def cifar_config(depth: int) -> ResNetConfig:
    """Section 4.2 of He et al. 2016: ``depth = 6n + 2``, n basic blocks per stage, 16/32/64 filters."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ConfigError(f"a CIFAR ResNet has 6n+2 layers (20, 32, 44, 56, 110, ...), got {depth!r}")
    n = (depth - 2) // 6
    return ResNetConfig("basic", (n, n, n), (16, 32, 64), stem="cifar", stem_channels=16)


class ResNet(ResidualNet):
    """The post-activation ResNet: stem, stages of basic or bottleneck blocks, global pool, fc.

    Options: ``shortcut`` (A, B or C, Section 3.3), ``stride_in_1x1`` (the paper's bottleneck
    instead of torchvision's), ``plain=True`` (the plain twin: no shortcuts), ``drop_path_rate``
    (stochastic depth, the last block's drop probability ``1 - p_L``), ``drop_path_per_sample``,
    ``zero_init_residual``.
    """

    feature_trunk = ("conv1", "bn1", "relu", "maxpool", "layer*")

    classifier_path = "fc"

    def __init__(
        self,
        config: ResNetConfig,
        num_classes: int = 1000,
        in_chans: int = 3,
        *,
        shortcut: str = "B",
        stride_in_1x1: bool = False,
        plain: bool = False,
        drop_path_rate: float = 0.0,
        drop_path_per_sample: bool = False,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__(num_classes, in_chans)
        self.config = config
        shortcut = check_shortcut_option(shortcut)
        self.shortcut_option = shortcut
        self.plain = plain
        self.stem_channels = config.stem_channels
        if config.stem == "imagenet":
            # conv1 of Table 1: 7x7, 64, stride 2, then a 3x3 max-pool, stride 2
            self.conv1 = nn.Conv2d(in_chans, config.stem_channels, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        else:
            # Section 4.2: "The first layer is 3x3 convolutions"; no pooling on 32x32 inputs
            self.conv1 = nn.Conv2d(in_chans, config.stem_channels, 3, padding=1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(config.stem_channels)
        self.relu = nn.ReLU(inplace=True)

        def make_block(stage, index, in_ch, out_ch, stride, drop_path):
            common = dict(shortcut=shortcut, residual=not plain, drop_path=drop_path,
                          drop_path_per_sample=drop_path_per_sample)
            if config.block == "basic":
                return BasicBlock(in_ch, out_ch, stride, **common)
            return Bottleneck(in_ch, config.bottleneck_widths[stage], out_ch, stride,
                              groups=config.groups, stride_in_1x1=stride_in_1x1, **common)

        strides = (1,) + (2,) * (len(config.stage_blocks) - 1)
        self.num_features = self._build_stages(
            config.stage_blocks, strides, config.stage_channels, make_block, drop_path_rate
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = linear_or_identity(self.num_features, num_classes)
        init_residual_weights(self, zero_init_residual)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.forward_stages(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = torch.flatten(self.avgpool(x), 1)
        return x if pre_logits else self.fc(x)


def _imagenet_resnet(depth: int, **kwargs) -> ResNet:
    return ResNet(imagenet_config(depth), **kwargs)


def cifar_resnet(depth: int, *, plain: bool = False, shortcut: str = "A", **kwargs) -> ResNet:
    """A CIFAR ResNet (or, with ``plain=True``, its plain twin) of ``6n + 2`` layers."""
    kwargs.setdefault("num_classes", 10)
    return ResNet(cifar_config(depth), shortcut=shortcut, plain=plain, **kwargs)


# Global average pooling after the last stage: no layer needs more than one pixel, so any
# input side >= 1 runs (the 7x7/2 conv pads by 3, the pools and strided convs by 1).
_IMAGENET = dict(family="resnet", paper=RESNET_PAPER, input_size=(3, 224, 224), min_size=1)
_CIFAR = dict(family="resnet", paper=RESNET_PAPER, input_size=(3, 32, 32), num_classes=10, min_size=1)


@register_model(**_IMAGENET)
def resnet18(**kwargs) -> ResNet:
    """ResNet-18 (Table 1): basic blocks [2, 2, 2, 2], torchvision layout."""
    return _imagenet_resnet(18, **kwargs)


@register_model(**_IMAGENET)
def resnet34(**kwargs) -> ResNet:
    """ResNet-34 (Table 1): basic blocks [3, 4, 6, 3], torchvision layout."""
    return _imagenet_resnet(34, **kwargs)


@register_model(**_IMAGENET)
def resnet50(**kwargs) -> ResNet:
    """ResNet-50 (Table 1): bottleneck blocks [3, 4, 6, 3], torchvision layout (v1.5)."""
    return _imagenet_resnet(50, **kwargs)


@register_model(**_IMAGENET)
def resnet101(**kwargs) -> ResNet:
    """ResNet-101 (Table 1): bottleneck blocks [3, 4, 23, 3], torchvision layout (v1.5)."""
    return _imagenet_resnet(101, **kwargs)


@register_model(**_IMAGENET)
def resnet152(**kwargs) -> ResNet:
    """ResNet-152 (Table 1): bottleneck blocks [3, 8, 36, 3], torchvision layout (v1.5)."""
    return _imagenet_resnet(152, **kwargs)


@register_model(**_CIFAR)
def resnet20(**kwargs) -> ResNet:
    """CIFAR ResNet-20 (Section 4.2, n=3): 16/32/64 filters, option A shortcuts."""
    return cifar_resnet(20, **kwargs)


@register_model(**_CIFAR)
def resnet32(**kwargs) -> ResNet:
    """CIFAR ResNet-32 (Section 4.2, n=5): 16/32/64 filters, option A shortcuts."""
    return cifar_resnet(32, **kwargs)


@register_model(**_CIFAR)
def resnet44(**kwargs) -> ResNet:
    """CIFAR ResNet-44 (Section 4.2, n=7): 16/32/64 filters, option A shortcuts."""
    return cifar_resnet(44, **kwargs)


@register_model(**_CIFAR)
def resnet56(**kwargs) -> ResNet:
    """CIFAR ResNet-56 (Section 4.2, n=9): 16/32/64 filters, option A shortcuts."""
    return cifar_resnet(56, **kwargs)


@register_model(**_CIFAR)
def resnet110(**kwargs) -> ResNet:
    """CIFAR ResNet-110 (Section 4.2, n=18): 16/32/64 filters, option A shortcuts."""
    return cifar_resnet(110, **kwargs)


@register_model(**_CIFAR)
def resnet1202(**kwargs) -> ResNet:
    """CIFAR ResNet-1202 (Section 4.2, n=200): 19.4M parameters, option A shortcuts.

    Built with ``zero_init_residual=True`` (each block's last BN at scale 0, Goyal et al. 2017,
    Section 5.1): in eval mode a fresh BN (running mean 0, variance 1) normalises nothing, so
    with He initialisation each of the 600 blocks adds a branch about as large as its input and
    the residual stream overflows to inf/NaN.  With the last BN at zero every block starts as
    its shortcut and the fresh net is finite; loaded weights replace the initialisation.  The
    shallower nets keep the paper's plain He initialisation (Section 3.4) by default.
    ``-o zero_init_residual=false`` gives it here too.
    """
    kwargs.setdefault("zero_init_residual", True)
    return cifar_resnet(1202, **kwargs)


@register_model(**_CIFAR)
def plain20(**kwargs) -> ResNet:
    """Plain twin of CIFAR ResNet-20 (Section 4.2, Fig. 6 left): same layers, no shortcuts."""
    return cifar_resnet(20, plain=True, **kwargs)


@register_model(**_CIFAR)
def plain32(**kwargs) -> ResNet:
    """Plain twin of CIFAR ResNet-32 (Section 4.2, Fig. 6 left): same layers, no shortcuts."""
    return cifar_resnet(32, plain=True, **kwargs)


@register_model(**_CIFAR)
def plain44(**kwargs) -> ResNet:
    """Plain twin of CIFAR ResNet-44 (Section 4.2, Fig. 6 left): same layers, no shortcuts."""
    return cifar_resnet(44, plain=True, **kwargs)


@register_model(**_CIFAR)
def plain56(**kwargs) -> ResNet:
    """Plain twin of CIFAR ResNet-56 (Section 4.2, Fig. 6 left): same layers, no shortcuts."""
    return cifar_resnet(56, plain=True, **kwargs)


@register_model(**_CIFAR)
def plain110(**kwargs) -> ResNet:
    """Plain twin of CIFAR ResNet-110 (Section 4.2): same layers, no shortcuts."""
    return cifar_resnet(110, plain=True, **kwargs)


@register_model(
    family="resnet", paper=STOCHASTIC_DEPTH_PAPER, input_size=(3, 32, 32), num_classes=10, min_size=1
)
def resnet110_sd(**kwargs) -> ResNet:
    """CIFAR ResNet-110 with stochastic depth, linear decay to p_L = 0.5 (Huang et al. 2016)."""
    # Section 4 of Huang et al.: the 110-layer ResNet of He et al. (option A shortcuts,
    # the zero-padded identity) with p_L = 0.5, i.e. the last block is dropped half the time
    kwargs.setdefault("drop_path_rate", 0.5)
    return cifar_resnet(110, **kwargs)
