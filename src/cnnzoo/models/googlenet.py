"""GoogLeNet (Szegedy et al. 2014, "Going Deeper with Convolutions"), Table 1.

Two registered variants:

``googlenet``
    The paper.  Stem: 7x7/2 conv, 3x3/2 max-pool, LRN, 1x1 conv 64, 3x3 conv 192, LRN,
    3x3/2 max-pool; nine Inception modules (Figure 2b) with max-pools between stages 3, 4
    and 5; 7x7 average pool, 40% dropout, linear.  Every convolution has a bias and a ReLU,
    no batch norm.  Two auxiliary classifiers on 4a and 4d (Section 5): 5x5/3 average pool,
    1x1 conv 128, FC 1024, 70% dropout, linear; used only in training, where the paper adds
    their losses with weight 0.3 (:data:`AUX_LOSS_WEIGHT`).

``googlenet_bn``
    torchvision's ``googlenet``, whose state dict it loads strictly.  It differs from the
    paper: batch norm after every convolution (no LRN, convolutions without bias); the
    "5x5" branch holds a 3x3 convolution (a known slip of the TF/torchvision port, kept for
    the weights); the max-pool before stage 5 is 2x2/2 instead of 3x3/2 (same 7x7 output);
    the main dropout is 20% instead of 40%; the auxiliary heads pool adaptively to 4x4.
    torchvision's ``transform_input`` (a re-normalisation of the input, off unless its
    ImageNet weights are requested) is not part of the model: feed normalised inputs.

Both return ``(logits, aux1, aux2)`` in training mode when ``aux_logits=True`` (the
default) and the logits alone in eval mode (torchvision's training output is ordered
``(logits, aux2, aux1)``).  Pooling uses ``ceil_mode`` like Caffe, so the
stage sizes are Table 1's 112, 56, 28, 14, 7; the final 7x7 average pool is adaptive (the
same at 224, and it lets other input sizes run).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from cnnzoo.layers.inception import Inception, conv_bn, conv_relu
from cnnzoo.models.base import AuxClassifierNet, linear_or_identity
from cnnzoo.registry import Paper, register_model

GOOGLENET_PAPER = Paper(
    title="Going Deeper with Convolutions",
    authors=(
        "Christian Szegedy, Wei Liu, Yangqing Jia, Pierre Sermanet, Scott Reed, Dragomir Anguelov, "
        "Dumitru Erhan, Vincent Vanhoucke, Andrew Rabinovich"
    ),
    year=2014,
    url="https://arxiv.org/abs/1409.4842",
)

#: Table 1: module -> (input depth, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj)
INCEPTION_TABLE: dict[str, tuple[int, int, int, int, int, int, int]] = {
    "3a": (192, 64, 96, 128, 16, 32, 32),
    "3b": (256, 128, 128, 192, 32, 96, 64),
    "4a": (480, 192, 96, 208, 16, 48, 64),
    "4b": (512, 160, 112, 224, 24, 64, 64),
    "4c": (512, 128, 128, 256, 24, 64, 64),
    "4d": (512, 112, 144, 288, 32, 64, 64),
    "4e": (528, 256, 160, 320, 32, 128, 128),
    "5a": (832, 256, 160, 320, 32, 128, 128),
    "5b": (832, 384, 192, 384, 48, 128, 128),
}

#: Section 5: "during training, their loss gets added to the total loss with a discount weight"
AUX_LOSS_WEIGHT = 0.3


# a leaf function for torch.fx: the test reads the traced shape, which symbolic tracing cannot
# branch on; dynamo (torch.export, torch.compile) traces through it as it is
@torch.fx.wrap
def paper_aux_pool(x: Tensor) -> Tensor:
    """Section 5's 5x5/3 average pool, where the grid has room for it."""
    return F.avg_pool2d(x, 5, stride=3) if min(x.shape[-2:]) >= 5 else x


class GoogLeNetAux(nn.Module):
    """An auxiliary classifier (Section 5), on the 14x14 output of inception 4a or 4d.

    ``paper_pool=True``: 5x5/3 average pool (14x14 -> 4x4), as in the paper; for inputs
    whose grid is not 14x14 an adaptive pool then brings it to 4x4 (a no-op at 224).
    ``paper_pool=False``: torchvision's adaptive 4x4 average pool.
    """

    def __init__(
        self, in_channels: int, num_classes: int, batch_norm: bool, paper_pool: bool, drop_rate: float = 0.7
    ) -> None:
        super().__init__()
        self.paper_pool = paper_pool
        self.conv = conv_bn(in_channels, 128, 1) if batch_norm else conv_relu(in_channels, 128, 1)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.fc2 = linear_or_identity(1024, num_classes)
        self.dropout = nn.Dropout(drop_rate)

    def forward(self, x: Tensor) -> Tensor:
        if self.paper_pool:
            x = paper_aux_pool(x)
        x = F.adaptive_avg_pool2d(x, 4)
        x = torch.flatten(self.conv(x), 1)
        x = self.dropout(F.relu(self.fc1(x), inplace=True))
        return self.fc2(x)


class GoogLeNet(AuxClassifierNet):
    """GoogLeNet / Inception v1; ``batch_norm`` selects torchvision's layout (see module doc)."""

    feature_trunk = (
        "conv1", "maxpool1", "norm1", "conv2", "conv3", "norm2", "maxpool2", "inception3*", "maxpool3",
        "inception4*", "maxpool4", "inception5*",
    )

    classifier_path = "fc"

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        *,
        batch_norm: bool = False,
        aux_logits: bool = True,
        drop_rate: float | None = None,
        aux_drop_rate: float = 0.7,
    ) -> None:
        super().__init__(num_classes, in_chans)
        self.batch_norm = batch_norm
        self.aux_logits = aux_logits
        self.num_features = 1024
        paper = not batch_norm

        def unit(cin: int, cout: int, k: int, stride: int = 1) -> nn.Module:
            return conv_relu(cin, cout, k, stride) if paper else conv_bn(cin, cout, k, stride)

        def lrn() -> nn.Module:
            # the LRN of the released Caffe model (size 5, alpha 1e-4, beta 0.75); the paper
            # names the layer in Figure 3 without giving its constants
            return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0) if paper else nn.Identity()

        # Table 1 rows "convolution 7x7/2", "max pool 3x3/2", "convolution 3x3/1" (depth 2: a
        # 1x1 reduce, then the 3x3), "max pool 3x3/2"; LRNs from Figure 3
        self.conv1 = unit(in_chans, 64, 7, stride=2)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.norm1 = lrn()
        self.conv2 = unit(64, 64, 1)
        self.conv3 = unit(64, 192, 3)
        self.norm2 = lrn()
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)

        kernel_5x5 = 5 if paper else 3

        def inception(name: str) -> Inception:
            return Inception(*INCEPTION_TABLE[name], batch_norm=batch_norm, kernel_5x5=kernel_5x5)

        self.inception3a = inception("3a")
        self.inception3b = inception("3b")
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = inception("4a")
        self.inception4b = inception("4b")
        self.inception4c = inception("4c")
        self.inception4d = inception("4d")
        self.inception4e = inception("4e")
        self.maxpool4 = nn.MaxPool2d(3, stride=2, ceil_mode=True) if paper else nn.MaxPool2d(2, 2, ceil_mode=True)
        self.inception5a = inception("5a")
        self.inception5b = inception("5b")
        if aux_logits:
            self.aux1 = GoogLeNetAux(512, num_classes, batch_norm, paper_pool=paper, drop_rate=aux_drop_rate)
            self.aux2 = GoogLeNetAux(528, num_classes, batch_norm, paper_pool=paper, drop_rate=aux_drop_rate)
        else:
            self.aux1 = self.aux2 = None
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(drop_rate if drop_rate is not None else (0.4 if paper else 0.2))
        self.fc = linear_or_identity(1024, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                if self.batch_norm:
                    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                else:  # the released Caffe model: Xavier initialisation, constant bias 0.2
                    nn.init.xavier_uniform_(module.weight)
                    nn.init.constant_(module.bias, 0.2)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01)
                nn.init.zeros_(module.bias)

    def _features(self, x: Tensor, with_aux: bool) -> tuple[Tensor, list[Tensor]]:
        aux: list[Tensor] = []
        x = self.maxpool2(self.norm2(self.conv3(self.conv2(self.norm1(self.maxpool1(self.conv1(x)))))))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4a(x)
        if with_aux:
            aux.append(self.aux1(x))
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        if with_aux:
            aux.append(self.aux2(x))
        x = self.maxpool4(self.inception4e(x))
        x = self.inception5b(self.inception5a(x))
        return x, aux

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.dropout(torch.flatten(self.avgpool(x), 1))
        return x if pre_logits else self.fc(x)

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh main classifier, and fresh auxiliary classifiers with the same width."""
        super().reset_classifier(num_classes)
        if self.aux_logits:
            # the width the auxiliary layers have now (1024 as built; less once filters were pruned)
            self.aux1.fc2 = linear_or_identity(self.aux1.fc1.out_features, num_classes)
            self.aux2.fc2 = linear_or_identity(self.aux2.fc1.out_features, num_classes)


_GOOGLENET = dict(family="inception", paper=GOOGLENET_PAPER, input_size=(3, 224, 224))


@register_model(**_GOOGLENET, min_size=31)
def googlenet(**kwargs) -> GoogLeNet:
    """GoogLeNet as in the paper: LRN, 5x5 branches, two auxiliary classifiers, no batch norm."""
    return GoogLeNet(batch_norm=False, **kwargs)


@register_model(**_GOOGLENET, min_size=15)
def googlenet_bn(**kwargs) -> GoogLeNet:
    """GoogLeNet in torchvision's layout (batch norm, 3x3 in the 5x5 branch); loads its weights."""
    return GoogLeNet(batch_norm=True, **kwargs)
