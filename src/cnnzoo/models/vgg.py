"""VGG (Simonyan & Zisserman 2014), configurations A, A-LRN, B, C, D, E of Table 1.

The configurations are data: each is a list of stages, each stage a list of
convolutions given as kernel sizes (3, or 1 for configuration C's 1x1 convs), and
every stage ends with a 2x2 max-pool.  The layer names follow torchvision's
``features`` / ``avgpool`` / ``classifier`` layout so its state dicts load strictly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cnnzoo.layers.normalization import krizhevsky_lrn
from cnnzoo.models.base import ClassifierNet, fc_head, init_weights, linear_or_identity
from cnnzoo.registry import Paper, register_model

VGG_PAPER = Paper(
    title="Very Deep Convolutional Networks for Large-Scale Image Recognition",
    authors="Karen Simonyan, Andrew Zisserman",
    year=2014,
    url="https://arxiv.org/abs/1409.1556",
)

STAGE_WIDTHS = (64, 128, 256, 512, 512)


@dataclass(frozen=True)
class VGGConfig:
    """One column of Table 1: the kernel sizes of each stage's convolutions."""

    name: str
    stage_kernels: tuple[tuple[int, ...], ...]
    lrn_after_first_conv: bool = False


# Table 1 of the paper.  "conv3" is 3, "conv1" (configuration C only) is 1.
VGG_CONFIGS = {
    "A": VGGConfig("A", ((3,), (3,), (3, 3), (3, 3), (3, 3))),
    "A-LRN": VGGConfig("A-LRN", ((3,), (3,), (3, 3), (3, 3), (3, 3)), lrn_after_first_conv=True),
    "B": VGGConfig("B", ((3, 3), (3, 3), (3, 3), (3, 3), (3, 3))),
    "C": VGGConfig("C", ((3, 3), (3, 3), (3, 3, 1), (3, 3, 1), (3, 3, 1))),
    "D": VGGConfig("D", ((3, 3), (3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3))),
    "E": VGGConfig("E", ((3, 3), (3, 3), (3, 3, 3, 3), (3, 3, 3, 3), (3, 3, 3, 3))),
}


def make_vgg_features(config: VGGConfig, in_chans: int, batch_norm: bool) -> nn.Sequential:
    """The convolutional part: conv(-BN)-ReLU layers, a 2x2/2 max-pool after each stage."""
    layers: list[nn.Module] = []
    channels = in_chans
    for stage_index, (width, kernels) in enumerate(zip(STAGE_WIDTHS, config.stage_kernels)):
        for conv_index, kernel in enumerate(kernels):
            # "same" padding keeps the resolution inside a stage (Section 2.1)
            layers.append(nn.Conv2d(channels, width, kernel, padding=kernel // 2))
            if batch_norm:
                layers.append(nn.BatchNorm2d(width))
            layers.append(nn.ReLU(inplace=True))
            if config.lrn_after_first_conv and stage_index == 0 and conv_index == 0:
                # A-LRN: Krizhevsky's LRN after the first layer (Section 2.3, Table 1)
                layers.append(krizhevsky_lrn())
            channels = width
        layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers)


class VGG(ClassifierNet):
    """VGG: five conv stages, then FC-4096, FC-4096, FC-classes with dropout 0.5.

    ``forward_features`` returns the last pooled map (512 x 7 x 7 at 224); the head
    adapts it to 7x7 (a no-op at 224, so any input of at least 32 pixels works, as in
    torchvision) and runs the three fully connected layers.  ``num_features`` is 4096,
    the width of FC7, which ``forward_head(pre_logits=True)`` returns.
    """

    feature_trunk = ("features.*",)

    classifier_path = "classifier.6"

    def __init__(
        self,
        config: VGGConfig,
        num_classes: int = 1000,
        in_chans: int = 3,
        batch_norm: bool = False,
        drop_rate: float = 0.5,
    ) -> None:
        super().__init__(num_classes, in_chans)
        self.config = config
        self.num_features = 4096
        self.features = make_vgg_features(config, in_chans, batch_norm)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=drop_rate),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=drop_rate),
            linear_or_identity(4096, num_classes),
        )
        # The paper initialises from N(0, 0.01) after pretraining net A (Section 3.1);
        # He initialisation trains every configuration from scratch.
        init_weights(self)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        return fc_head(self.classifier, torch.flatten(self.avgpool(x), 1), pre_logits)


def _vgg(config: str, batch_norm: bool = False, **kwargs) -> VGG:
    return VGG(VGG_CONFIGS[config], batch_norm=batch_norm, **kwargs)


_VGG = dict(family="vgg", paper=VGG_PAPER, input_size=(3, 224, 224), min_size=32)


@register_model(**_VGG)
def vgg11(**kwargs) -> VGG:
    """VGG configuration A (11 weight layers)."""
    return _vgg("A", **kwargs)


@register_model(**_VGG)
def vgg11_lrn(**kwargs) -> VGG:
    """VGG configuration A-LRN: A with local response normalisation after conv1."""
    return _vgg("A-LRN", **kwargs)


@register_model(**_VGG)
def vgg13(**kwargs) -> VGG:
    """VGG configuration B (13 weight layers)."""
    return _vgg("B", **kwargs)


@register_model(**_VGG)
def vgg16_c(**kwargs) -> VGG:
    """VGG configuration C: 16 weight layers, the third conv of stages 3-5 is 1x1."""
    return _vgg("C", **kwargs)


@register_model(**_VGG)
def vgg16(**kwargs) -> VGG:
    """VGG configuration D (16 weight layers, the usual VGG-16)."""
    return _vgg("D", **kwargs)


@register_model(**_VGG)
def vgg19(**kwargs) -> VGG:
    """VGG configuration E (19 weight layers)."""
    return _vgg("E", **kwargs)


@register_model(**_VGG)
def vgg11_bn(**kwargs) -> VGG:
    """VGG configuration A with batch normalisation after every convolution."""
    return _vgg("A", batch_norm=True, **kwargs)


@register_model(**_VGG)
def vgg13_bn(**kwargs) -> VGG:
    """VGG configuration B with batch normalisation after every convolution."""
    return _vgg("B", batch_norm=True, **kwargs)


@register_model(**_VGG)
def vgg16_bn(**kwargs) -> VGG:
    """VGG configuration D with batch normalisation after every convolution."""
    return _vgg("D", batch_norm=True, **kwargs)


@register_model(**_VGG)
def vgg19_bn(**kwargs) -> VGG:
    """VGG configuration E with batch normalisation after every convolution."""
    return _vgg("E", batch_norm=True, **kwargs)
