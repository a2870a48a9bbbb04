"""Pre-activation ResNet (He, Zhang, Ren & Sun 2016b, "Identity Mappings in Deep Residual Networks").

Every unit is ``x + F(x)`` with ``F`` = (BN-ReLU-conv) x 2 or x 3 and nothing after the addition
(Fig. 4(e)), so a clean identity path runs from any block to any later one (Eq. 4-5).

* Stem: the ImageNet nets keep ResNet's conv1 (7x7/2) - BN - ReLU - max-pool, and their first
  block takes that activated output directly (Section 4: "for the first Residual Unit (that
  follows a stand-alone convolutional layer, conv1), we adopt the first activation right after
  conv1 and before splitting into two paths").  The CIFAR nets start with a bare 3x3 conv whose
  activation is done by the first block before the split (the same computation).  timm's
  ``resnetv2_50``/``resnetv2_101`` order the stem conv1 -> max-pool and let the first unit's
  BN-ReLU pre-activate the pooled map: the same parameters (that BN is our stem's ``bn1``) and
  the same outputs whenever its scales are positive, since max-pooling commutes with a
  non-decreasing per-channel map (tests/test_timm_equivalence.py renames the state dict).
* "For the last Residual Unit ... we adopt an extra activation right after its element-wise
  addition": a final BN-ReLU before global pooling.
* Where the shape changes the shortcut is a 1x1 projection (option B) reading the
  pre-activated input, as in the authors' code; see :class:`cnnzoo.layers.residual.PreActBasicBlock`.

``preact_resnet18`` ... ``preact_resnet152`` use the stages of ResNet's Table 1 (the paper
trains pre-activation ResNet-152 and -200 on ImageNet, Table 5);  ``preact_resnet164`` and
``preact_resnet1001`` are the CIFAR bottleneck nets of Table 3 and Table 4 (1.7M and 10.2M
parameters in Table 4): 16/32/64-wide bottlenecks with 4x expansion, ``depth = 9n + 2``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cnnzoo.errors import ConfigError
from cnnzoo.layers.residual import PreActBasicBlock, PreActBottleneck, check_shortcut_option
from cnnzoo.models.base import linear_or_identity
from cnnzoo.models.resnet import IMAGENET_STAGE_BLOCKS, ResidualNet, init_residual_weights
from cnnzoo.registry import Paper, register_model

PREACT_PAPER = Paper(
    title="Identity Mappings in Deep Residual Networks",
    authors="Kaiming He, Xiangyu Zhang, Shaoqing Ren, Jian Sun",
    year=2016,
    url="https://arxiv.org/abs/1603.05027",
)


class PreActResNet(ResidualNet):
    """A pre-activation ResNet: stem, stages of pre-activation blocks, BN-ReLU, pool, fc.

    ``block`` is ``"basic"`` or ``"bottleneck"``; ``stage_channels`` the output widths of the
    stages, ``bottleneck_widths`` the bottlenecks' inner widths, ``stem`` ``"imagenet"`` or
    ``"cifar"``.  ``drop_rate`` puts dropout between the convolutions of basic blocks (Wide
    ResNets); ``shortcut``, ``drop_path_rate``, ``plain`` and ``zero_init_residual`` (here: each
    branch's last convolution starts at zero) as in :class:`~cnnzoo.models.resnet.ResNet`.
    """

    feature_trunk = ("conv1", "bn1", "relu", "maxpool", "layer*", "final_bn", "final_act")

    classifier_path = "fc"

    def __init__(
        self,
        block: str,
        stage_blocks: tuple[int, ...],
        stage_channels: tuple[int, ...],
        *,
        bottleneck_widths: tuple[int, ...] | None = None,
        stem: str = "imagenet",
        stem_channels: int = 64,
        num_classes: int = 1000,
        in_chans: int = 3,
        shortcut: str = "B",
        stride_in_1x1: bool = False,
        drop_rate: float = 0.0,
        plain: bool = False,
        drop_path_rate: float = 0.0,
        drop_path_per_sample: bool = False,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__(num_classes, in_chans)
        shortcut = check_shortcut_option(shortcut)
        if isinstance(drop_rate, bool) or not isinstance(drop_rate, (int, float)) or not 0 <= drop_rate < 1:
            raise ConfigError(f"drop_rate must be a number in [0, 1), got {drop_rate!r}")
        if drop_rate and block != "basic":
            raise ConfigError("drop_rate (dropout between convolutions) applies to basic blocks only")
        self.stem_channels = stem_channels
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_chans, stem_channels, 7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(stem_channels)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        else:
            self.conv1 = nn.Conv2d(in_chans, stem_channels, 3, padding=1, bias=False)
            self.bn1 = self.relu = self.maxpool = None
        stem_activated = stem == "imagenet"

        def make_block(stage, index, in_ch, out_ch, stride, drop_path):
            preact = "none" if stem_activated and stage == 0 and index == 0 else None
            common = dict(shortcut=shortcut, preact=preact, residual=not plain,
                          drop_path=drop_path, drop_path_per_sample=drop_path_per_sample)
            if block == "basic":
                return PreActBasicBlock(in_ch, out_ch, stride, drop_rate=drop_rate, **common)
            return PreActBottleneck(in_ch, bottleneck_widths[stage], out_ch, stride,
                                    stride_in_1x1=stride_in_1x1, **common)

        strides = (1,) + (2,) * (len(stage_blocks) - 1)
        self.num_features = self._build_stages(
            stage_blocks, strides, stage_channels, make_block, drop_path_rate
        )
        # the extra activation after the last unit's addition (Section 4)
        self.final_bn = nn.BatchNorm2d(self.num_features)
        self.final_act = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = linear_or_identity(self.num_features, num_classes)
        init_residual_weights(self, zero_init_residual)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        if self.bn1 is not None:
            x = self.maxpool(self.relu(self.bn1(x)))
        x = self.forward_stages(x)
        return self.final_act(self.final_bn(x))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = torch.flatten(self.avgpool(x), 1)
        return x if pre_logits else self.fc(x)


def _imagenet_preact(depth: int, **kwargs) -> PreActResNet:
    block, stage_blocks = IMAGENET_STAGE_BLOCKS[depth]
    planes = (64, 128, 256, 512)
    if block == "basic":
        return PreActResNet("basic", stage_blocks, planes, **kwargs)
    return PreActResNet("bottleneck", stage_blocks, tuple(4 * p for p in planes),
                        bottleneck_widths=planes, **kwargs)


def preact_resnet_cifar(depth: int, **kwargs) -> PreActResNet:
    """CIFAR pre-activation ResNet with bottlenecks, ``depth = 9n + 2`` (164: n=18, 1001: n=111).

    16/32/64-wide bottlenecks expanding to 64/128/256 on 32/16/8 maps (He et al. 2016b,
    Section 4.1 and Table 3, following ResNet's CIFAR design).
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 11 or (depth - 2) % 9:
        raise ConfigError(f"a CIFAR bottleneck pre-activation ResNet has 9n+2 layers, got {depth!r}")
    n = (depth - 2) // 9
    kwargs.setdefault("num_classes", 10)
    return PreActResNet("bottleneck", (n, n, n), (64, 128, 256), bottleneck_widths=(16, 32, 64),
                        stem="cifar", stem_channels=16, **kwargs)


_IMAGENET = dict(family="preact_resnet", paper=PREACT_PAPER, input_size=(3, 224, 224), min_size=1)
_CIFAR = dict(family="preact_resnet", paper=PREACT_PAPER, input_size=(3, 32, 32), num_classes=10, min_size=1)


@register_model(**_IMAGENET)
def preact_resnet18(**kwargs) -> PreActResNet:
    """Pre-activation ResNet-18: basic blocks [2, 2, 2, 2] with BN-ReLU-conv units."""
    return _imagenet_preact(18, **kwargs)


@register_model(**_IMAGENET)
def preact_resnet34(**kwargs) -> PreActResNet:
    """Pre-activation ResNet-34: basic blocks [3, 4, 6, 3] with BN-ReLU-conv units."""
    return _imagenet_preact(34, **kwargs)


@register_model(**_IMAGENET)
def preact_resnet50(**kwargs) -> PreActResNet:
    """Pre-activation ResNet-50: bottleneck blocks [3, 4, 6, 3] with BN-ReLU-conv units."""
    return _imagenet_preact(50, **kwargs)


@register_model(**_IMAGENET)
def preact_resnet101(**kwargs) -> PreActResNet:
    """Pre-activation ResNet-101: bottleneck blocks [3, 4, 23, 3] with BN-ReLU-conv units."""
    return _imagenet_preact(101, **kwargs)


@register_model(**_IMAGENET)
def preact_resnet152(**kwargs) -> PreActResNet:
    """Pre-activation ResNet-152 (Table 5): bottleneck blocks [3, 8, 36, 3]."""
    return _imagenet_preact(152, **kwargs)


@register_model(**_CIFAR)
def preact_resnet164(**kwargs) -> PreActResNet:
    """CIFAR pre-activation ResNet-164 (Table 4): 3 x 18 bottleneck units, 1.7M parameters."""
    return preact_resnet_cifar(164, **kwargs)


@register_model(**_CIFAR)
def preact_resnet1001(**kwargs) -> PreActResNet:
    """CIFAR pre-activation ResNet-1001 (Table 4): 3 x 111 bottleneck units, 10.2M parameters.

    Built with ``zero_init_residual=True`` (each branch's last convolution at zero, Goyal et al.
    2017): in eval mode a fresh BN (running mean 0, variance 1) normalises nothing, so with He
    initialisation every identity unit adds a branch about as large as its input and the
    residual stream grows with each of the 333 additions until it overflows to inf/NaN.  With the
    branches at zero every unit starts as its shortcut and the fresh net is finite; training
    (batch statistics) is unaffected in kind, and loaded weights replace the initialisation.
    ``-o zero_init_residual=false`` gives the plain He initialisation.
    """
    kwargs.setdefault("zero_init_residual", True)
    return preact_resnet_cifar(1001, **kwargs)
