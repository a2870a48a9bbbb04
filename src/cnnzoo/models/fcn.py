"""Fully convolutional networks (Long, Shelhamer & Darrell 2015): FCN-32s, FCN-16s, FCN-8s on VGG-16.

Section 3.1: VGG-16's fully connected layers become convolutions (fc6: 7x7 with 4096
filters, fc7: 1x1 with 4096; ``cnnzoo.layers.fc_to_conv``), a 1x1 convolution
``score_fr`` scores every class at every position of the stride-32 map, and transposed
convolutions initialised to bilinear interpolation upsample the scores back to the image
(Section 3.3).  Section 4.2's skip architecture refines the coarse scores: FCN-16s adds
scores predicted from pool4 (stride 16) to the 2x-upsampled fc7 scores, FCN-8s adds
pool3's (stride 8) as well (Figure 3).  The skip configurations are data
(``FCN_SKIPS``).

Details from the authors' reference nets: conv1_1 is padded by 100 pixels and pooling
rounds up, so fc6's 7x7 window fits any image and every output pixel has a prediction;
each score map is then cropped at a fixed offset to align it with the finer map it is
added to (``SKIP_CROPS``) and, at the end, with the image (``FINAL_CROPS``).  The
upsampling inside the skips is learned from bilinear initialisation, the final one is
fixed to bilinear interpolation (Section 4.2), and the score layers start at zero
(Section 4.3; ``zero_init_scores=False`` gives them random weights instead).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from cnnzoo.errors import InputSizeError
from cnnzoo.layers.fc_to_conv import linear_to_conv
from cnnzoo.layers.upsample import BilinearConvTranspose2d
from cnnzoo.models.base import ClassifierNet
from cnnzoo.models.vgg import VGG, VGG_CONFIGS, make_vgg_features
from cnnzoo.registry import Paper, register_model

FCN_PAPER = Paper(
    title="Fully Convolutional Networks for Semantic Segmentation",
    authors="Jonathan Long, Evan Shelhamer, Trevor Darrell",
    year=2015,
    url="https://arxiv.org/abs/1411.4038",
)

CONV1_PADDING = 100  # the reference nets' padding of conv1_1


@dataclass(frozen=True)
class SkipSpec:
    """A skip from a pooling layer: its channels and the crop offset aligning its scores."""

    layer: str
    channels: int
    crop: int


# Figure 3: FCN-16s fuses pool4, FCN-8s pool4 then pool3 (coarse to fine)
SKIP_CROPS = {"pool4": SkipSpec("pool4", 512, 5), "pool3": SkipSpec("pool3", 256, 9)}
FCN_SKIPS = {"32s": (), "16s": ("pool4",), "8s": ("pool4", "pool3")}
FINAL_STRIDE = {"32s": 32, "16s": 16, "8s": 8}
FINAL_CROPS = {"32s": 19, "16s": 27, "8s": 31}


class FCNFeatures(NamedTuple):
    """What an FCN's head reads: the backbone's maps at strides 8, 16, 32 and the image size."""

    pool3: Tensor
    pool4: Tensor
    pool5: Tensor
    image_size: tuple[int, int]


# a leaf function for torch.fx: the size check reads the traced shape, which symbolic tracing
# cannot branch on; dynamo (torch.export, torch.compile) traces through it as it is
@torch.fx.wrap
def crop_to(x: Tensor, offset: int, size: tuple[int, int]) -> Tensor:
    """``x[..., offset:offset + h, offset:offset + w]`` (Caffe's Crop layer)."""
    height, width = size
    if x.shape[-2] < offset + height or x.shape[-1] < offset + width:
        raise InputSizeError(
            f"FCN: a {tuple(x.shape[-2:])} score map cannot be cropped to {height}x{width} at offset {offset}"
        )
    return x[..., offset : offset + height, offset : offset + width]


class FCN(ClassifierNet):
    """FCN on VGG-16: pixel-wise class scores ``(N, num_classes, H, W)`` for any ``H, W``.

    For this dense-prediction net the contract's two halves are:

    * ``forward_features(x)`` runs VGG-16's convolutional part (``features``, the same
      layer indices as ``VGG``) and returns :class:`FCNFeatures`: the pool3, pool4 and
      pool5 maps the head reads and the image size it crops its output back to;
    * ``forward_head(f)`` runs fc6 and fc7 as convolutions, scores classes (``score_fr``),
      fuses the skips' scores and upsamples to ``(N, num_classes, H, W)``;
      ``pre_logits=True`` returns fc7's map ``(N, 4096, h, w)``, what ``score_fr`` reads
      (``num_features`` = 4096 channels, one vector per position).

    ``get_classifier()`` is ``score_fr``.  ``reset_classifier(n)`` rebuilds every
    class-dependent layer (the score layers and the upsamplings); with ``n = 0`` the net
    has no score layers and ``forward`` returns fc7's map.  ``init_from_vgg(vgg16)``
    copies an ImageNet VGG-16's convolutions and converts its fc6/fc7 (Section 4.1).
    """

    feature_trunk = ("features.*",)

    def __init__(
        self,
        variant: str = "8s",
        num_classes: int = 21,
        in_chans: int = 3,
        drop_rate: float = 0.5,
        zero_init_scores: bool = True,
    ) -> None:
        super().__init__(num_classes, in_chans)
        self.variant = variant
        self.skips = tuple(SKIP_CROPS[name] for name in FCN_SKIPS[variant])
        self.zero_init_scores = zero_init_scores
        self.features = make_vgg_features(VGG_CONFIGS["D"], in_chans, batch_norm=False)
        self.features[0].padding = (CONV1_PADDING, CONV1_PADDING)
        self._pool_indices = []
        for index, module in enumerate(self.features):
            if isinstance(module, nn.MaxPool2d):
                module.ceil_mode = True  # Caffe's pooling rounds up
                self._pool_indices.append(index)
        self.num_features = 4096
        self.fc6 = nn.Conv2d(512, 4096, kernel_size=7)
        self.relu6 = nn.ReLU(inplace=True)
        self.drop6 = nn.Dropout(p=drop_rate)
        self.fc7 = nn.Conv2d(4096, 4096, kernel_size=1)
        self.relu7 = nn.ReLU(inplace=True)
        self.drop7 = nn.Dropout(p=drop_rate)
        self._init_backbone()
        self._build_scoring(num_classes)

    def _init_backbone(self) -> None:
        for module in [*self.features, self.fc6, self.fc7]:
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def _score_conv(self, in_channels: int, num_classes: int) -> nn.Conv2d:
        conv = nn.Conv2d(in_channels, num_classes, kernel_size=1)
        if self.zero_init_scores:
            nn.init.zeros_(conv.weight)
        else:
            nn.init.normal_(conv.weight, 0, 0.01)
        nn.init.zeros_(conv.bias)
        return conv

    def _build_scoring(self, num_classes: int) -> None:
        """The class-dependent layers: score_fr, per skip a score layer and a 2x upsampling, the last upsampling."""
        self.num_classes = num_classes
        if num_classes == 0:
            self.score_fr = nn.Identity()
            self.skip_scores = nn.ModuleDict()
            self.skip_upsamples = nn.ModuleDict()
            self.upscore = nn.Identity()
            return
        self.score_fr = self._score_conv(self.num_features, num_classes)
        # Section 4.2: the 2x upsamplings start bilinear and are learned
        self.skip_upsamples = nn.ModuleDict(
            {skip.layer: BilinearConvTranspose2d(num_classes, 2, padding=0) for skip in self.skips}
        )
        self.skip_scores = nn.ModuleDict(
            {skip.layer: self._score_conv(skip.channels, num_classes) for skip in self.skips}
        )
        # the last upsampling is fixed to bilinear interpolation
        self.upscore = BilinearConvTranspose2d(
            num_classes, FINAL_STRIDE[self.variant], padding=0, learnable=False
        )

    def forward_features(self, x: Tensor) -> FCNFeatures:
        image_size = (x.shape[-2], x.shape[-1])
        pools = []
        for index, module in enumerate(self.features):
            x = module(x)
            if index in self._pool_indices:
                pools.append(x)
        return FCNFeatures(pools[2], pools[3], pools[4], image_size)

    def forward_head(self, features: FCNFeatures, pre_logits: bool = False) -> Tensor:
        x = self.drop6(self.relu6(self.fc6(features.pool5)))
        x = self.drop7(self.relu7(self.fc7(x)))
        if pre_logits or self.num_classes == 0:
            return x
        score = self.score_fr(x)
        for skip in self.skips:
            score = self.skip_upsamples[skip.layer](score)
            skip_score = self.skip_scores[skip.layer](getattr(features, skip.layer))
            score = score + crop_to(skip_score, skip.crop, score.shape[-2:])
        score = self.upscore(score)
        return crop_to(score, FINAL_CROPS[self.variant], features.image_size)

    def get_classifier(self) -> nn.Module:
        return self.score_fr

    def reset_classifier(self, num_classes: int) -> None:
        self._build_scoring(num_classes)

    def init_from_vgg(self, vgg: VGG) -> None:
        """Copy VGG-16's convolutions and its fc6/fc7 as 7x7 and 1x1 convolutions (Section 4.1)."""
        self.features.load_state_dict(vgg.features.state_dict())
        self.fc6.load_state_dict(linear_to_conv(vgg.classifier[0], 512, (7, 7)).state_dict())
        self.fc7.load_state_dict(linear_to_conv(vgg.classifier[3], 4096).state_dict())


_FCN = dict(family="fcn", paper=FCN_PAPER, input_size=(3, 224, 224), num_classes=21, min_size=1)


@register_model(**_FCN)
def fcn32s_vgg16(**kwargs) -> FCN:
    """FCN-32s: VGG-16 made fully convolutional, scores upsampled 32x (PASCAL VOC's 21 classes)."""
    return FCN("32s", **kwargs)


@register_model(**_FCN)
def fcn16s_vgg16(**kwargs) -> FCN:
    """FCN-16s: FCN-32s plus a skip from pool4, upsampled 16x."""
    return FCN("16s", **kwargs)


@register_model(**_FCN)
def fcn8s_vgg16(**kwargs) -> FCN:
    """FCN-8s: FCN-16s plus a skip from pool3, upsampled 8x."""
    return FCN("8s", **kwargs)
