"""SqueezeNet (Iandola et al. 2016): AlexNet-level accuracy with 50x fewer parameters.

The network is data: a stem convolution, then a sequence of Fire modules and 3x3/2
max-pools (Table 1 for v1.0; v1.1 is the authors' revision in their released models,
with a 3x3/64 stem and earlier pooling, 2.4x less computation).  There is no fully
connected layer: a 1x1 convolution ("conv10") makes one map per class that global
average pooling turns into logits (Section 3.3, after NiN).  The layout follows
torchvision's ``features`` / ``classifier`` so its state dicts load strictly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cnnzoo.layers.fire import Fire
from cnnzoo.models.base import ClassifierNet
from cnnzoo.registry import Paper, register_model

SQUEEZENET_PAPER = Paper(
    title="SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and <0.5MB model size",
    authors="Forrest N. Iandola, Song Han, Matthew W. Moskewicz, Khalid Ashraf, William J. Dally, "
    "Kurt Keutzer",
    year=2016,
    url="https://arxiv.org/abs/1602.07360",
)

POOL = "pool"  # a 3x3 max-pool with stride 2


@dataclass(frozen=True)
class FireSpec:
    """One Fire module: squeeze s1x1, expand e1x1 and e3x3 filters (Table 1's columns)."""

    squeeze: int
    expand1x1: int
    expand3x3: int


@dataclass(frozen=True)
class SqueezeNetConfig:
    name: str
    stem_channels: int
    stem_kernel: int
    layers: tuple[FireSpec | str, ...]


SQUEEZENET_CONFIGS = {
    # Table 1: conv1 96x7x7/2, maxpool1, fire2-4, maxpool4, fire5-8, maxpool8, fire9
    "1_0": SqueezeNetConfig(
        "1_0",
        stem_channels=96,
        stem_kernel=7,
        layers=(
            POOL,
            FireSpec(16, 64, 64),
            FireSpec(16, 64, 64),
            FireSpec(32, 128, 128),
            POOL,
            FireSpec(32, 128, 128),
            FireSpec(48, 192, 192),
            FireSpec(48, 192, 192),
            FireSpec(64, 256, 256),
            POOL,
            FireSpec(64, 256, 256),
        ),
    ),
    # v1.1: conv1 64x3x3/2 and the max-pools moved after fire3 and fire5
    "1_1": SqueezeNetConfig(
        "1_1",
        stem_channels=64,
        stem_kernel=3,
        layers=(
            POOL,
            FireSpec(16, 64, 64),
            FireSpec(16, 64, 64),
            POOL,
            FireSpec(32, 128, 128),
            FireSpec(32, 128, 128),
            POOL,
            FireSpec(48, 192, 192),
            FireSpec(48, 192, 192),
            FireSpec(64, 256, 256),
            FireSpec(64, 256, 256),
        ),
    ),
}


def make_squeezenet_features(config: SqueezeNetConfig, in_chans: int) -> nn.Sequential:
    """Stem conv (no padding) + ReLU, then Fire modules and 3x3/2 max-pools."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_chans, config.stem_channels, config.stem_kernel, stride=2),
        nn.ReLU(inplace=True),
    ]
    channels = config.stem_channels
    for layer in config.layers:
        if layer == POOL:
            # ceil mode, as in the released Caffe models (and torchvision)
            layers.append(nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True))
        else:
            fire = Fire(channels, layer.squeeze, layer.expand1x1, layer.expand3x3)
            layers.append(fire)
            channels = fire.out_channels
    return nn.Sequential(*layers)


class SqueezeNet(ClassifierNet):
    """SqueezeNet: Fire modules, then dropout, conv10 (1x1, one map per class), ReLU, global average pool.

    ``forward_features`` returns fire9's map (512 x 13 x 13 at 224 for v1.1); the head is
    ``classifier`` (dropout 0.5 after fire9, Section 3.3; conv10; ReLU; average pool).
    ``num_features`` is 512; ``forward_head(pre_logits=True)`` returns the globally
    averaged 512-wide feature vector, which is also what ``forward`` returns after
    ``reset_classifier(0)`` (conv10 becomes the identity).
    """

    feature_trunk = ("features.*",)

    def __init__(
        self, config: SqueezeNetConfig, num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.5
    ) -> None:
        super().__init__(num_classes, in_chans)
        self.config = config
        self.features = make_squeezenet_features(config, in_chans)
        self.num_features = self.features[-1].out_channels
        self.classifier = nn.Sequential(
            nn.Dropout(p=drop_rate),
            self._final_conv(num_classes),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d((1, 1)),
        )
        self._init_weights()

    def _final_conv(self, num_classes: int) -> nn.Module:
        if num_classes == 0:
            return nn.Identity()
        conv = nn.Conv2d(self.num_features, num_classes, kernel_size=1)
        # conv10 starts from N(0, 0.01) in the released solver, the other layers from Kaiming
        nn.init.normal_(conv.weight, mean=0.0, std=0.01)
        nn.init.zeros_(conv.bias)
        return conv

    def _init_weights(self) -> None:
        for module in self.features.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        if pre_logits:
            return torch.flatten(self.classifier[3](x), 1)
        return torch.flatten(self.classifier(x), 1)

    def get_classifier(self) -> nn.Module:
        return self.classifier[1]

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier[1] = self._final_conv(num_classes)
        self.num_classes = num_classes


_SQUEEZENET = dict(family="squeezenet", paper=SQUEEZENET_PAPER, input_size=(3, 224, 224))


@register_model(**_SQUEEZENET, min_size=21)
def squeezenet1_0(**kwargs) -> SqueezeNet:
    """SqueezeNet v1.0 (Table 1): 96x7x7 stem, 8 Fire modules, 1.25M parameters."""
    return SqueezeNet(SQUEEZENET_CONFIGS["1_0"], **kwargs)


@register_model(**_SQUEEZENET, min_size=17)
def squeezenet1_1(**kwargs) -> SqueezeNet:
    """SqueezeNet v1.1: 64x3x3 stem and earlier pooling, 2.4x less computation than v1.0."""
    return SqueezeNet(SQUEEZENET_CONFIGS["1_1"], **kwargs)
