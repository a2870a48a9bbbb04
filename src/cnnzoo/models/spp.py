"""SPP-net (He et al. 2014): ZFNet with spatial pyramid pooling in place of its last pooling.

Convolutional layers take any image size, the fully connected ones do not.  SPP-net
replaces the pooling after the last convolution by a spatial pyramid pooling layer
(``cnnzoo.layers.spp``), whose output length does not depend on the feature map's size,
so one set of weights classifies images of any size (Section 2.3) and can be trained on
several sizes (180 and 224, Section 2.3's multi-size training).  The convolutional part
is ZFNet's (``cnnzoo.models.zfnet``) up to conv5's ReLU; SPP-net's "ZF-5" has 384, 384
and 256 filters in conv3-5 (Section 3.1.1, Table 1), our default, and uses the 4-level
pyramid {6x6, 3x3, 2x2, 1x1} (50 bins) on ImageNet (Section 3.1.1).
"""

from __future__ import annotations

from torch import Tensor, nn

from cnnzoo.layers.spp import SpatialPyramidPooling
from cnnzoo.models.base import ClassifierNet, fc_head, linear_or_identity
from cnnzoo.models.zfnet import make_zfnet_features
from cnnzoo.registry import Paper, register_model

SPP_PAPER = Paper(
    title="Spatial Pyramid Pooling in Deep Convolutional Networks for Visual Recognition",
    authors="Kaiming He, Xiangyu Zhang, Shaoqing Ren, Jian Sun",
    year=2014,
    url="https://arxiv.org/abs/1406.4729",
)

ZF5_CONV345_WIDTHS = (384, 384, 256)  # Section 3.1.1 "ZF-5"
IMAGENET_PYRAMID = (6, 3, 2, 1)  # Section 3.1.1: 50 bins


class SPPNet(ClassifierNet):
    """A classifier that takes any input size: conv layers, SPP, then FC6, FC7, FC8.

    For this net the contract's two halves split at the pyramid:

    * ``forward_features(x)`` returns conv5's map after ReLU, ``(N, C5, h, w)``, whose
      ``h, w`` follow the input size (13 x 13 at 224, 10 x 10 at 180);
    * ``forward_head(x)`` pools that map into the pyramid's fixed-length vector
      (``C5 * 50`` values for levels 6, 3, 2, 1) and runs the fully connected layers;
      ``pre_logits=True`` returns FC7's 4096 values (``num_features``).

    ``features`` keeps ZFNet's layer indices (the last max-pool removed), so ZFNet's
    convolution weights load into it.
    """

    feature_trunk = ("features.*",)

    classifier_path = "classifier.6"

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        conv345_widths: tuple[int, int, int] = ZF5_CONV345_WIDTHS,
        levels: tuple[int, ...] = IMAGENET_PYRAMID,
        drop_rate: float = 0.5,
    ) -> None:
        super().__init__(num_classes, in_chans)
        zfnet_features = make_zfnet_features(in_chans, tuple(conv345_widths))
        # SPP replaces ZFNet's last pooling layer (pool5)
        self.features = nn.Sequential(*list(zfnet_features)[:-1])
        self.spp = SpatialPyramidPooling(levels)
        self.num_features = 4096
        self.classifier = nn.Sequential(
            nn.Linear(self.spp.output_features(conv345_widths[2]), 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=drop_rate),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=drop_rate),
            linear_or_identity(4096, num_classes),
        )

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        return fc_head(self.classifier, self.spp(x), pre_logits)


@register_model(family="sppnet", paper=SPP_PAPER, input_size=(3, 224, 224), min_size=31)
def zfnet_spp(**kwargs) -> SPPNet:
    """ZF-5 with a {6,3,2,1} spatial pyramid pooling layer instead of pool5: any input size."""
    return SPPNet(**kwargs)
