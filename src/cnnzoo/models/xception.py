"""Xception (Chollet 2017, "Deep Learning with Depthwise Separable Convolutions"), Figure 5.

An Inception module taken to its extreme (Section 2): one 1x1 convolution per output
channel followed by one spatial convolution per channel is a depthwise separable
convolution, and Xception is a linear stack of them with residual connections:

* entry flow: 3x3/2 conv 32, 3x3 conv 64, then three blocks (128, 256, 728 channels), each
  ``[ReLU] sep-conv, ReLU, sep-conv, 3x3/2 max-pool`` plus a 1x1/2 convolution shortcut;
* middle flow: eight blocks ``3 x (ReLU, sep-conv 728)`` with identity shortcuts;
* exit flow: ``ReLU, sep-conv 728, ReLU, sep-conv 1024, max-pool`` plus a 1x1/2 shortcut;
  sep-conv 1536, ReLU, sep-conv 2048, ReLU, global average pool, (dropout 0.5), linear.

Every convolution is followed by batch normalisation (Section 3).  No non-linearity
between the depthwise and pointwise parts (Section 4.7).  The paper's Table 3 counts
22,855,952 parameters for the ImageNet model; this one has exactly as many.  Module names
are those of timm's ``legacy_xception``, whose weights load strictly.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cnnzoo.layers.separable import SeparableConv2d
from cnnzoo.models.base import ClassifierNet, linear_or_identity
from cnnzoo.registry import Paper, register_model

XCEPTION_PAPER = Paper(
    title="Xception: Deep Learning with Depthwise Separable Convolutions",
    authors="Francois Chollet",
    year=2017,
    url="https://arxiv.org/abs/1610.02357",
)

#: Figure 5.  Entry flow blocks: (in, out); the first starts without ReLU (the stem ends in one)
ENTRY_FLOW = ((64, 128), (128, 256), (256, 728))
MIDDLE_FLOW_REPEATS = 8
MIDDLE_WIDTH = 728
#: Exit flow residual block: 728 -> 728 -> 1024, then separable convs to 1536 and 2048
EXIT_BLOCK = (728, 1024)
EXIT_CONVS = (1536, 2048)


class XceptionBlock(nn.Module):
    """One residual block of Figure 5: ``rep(x) + shortcut(x)``.

    ``rep`` is a sequence of ``ReLU, SeparableConv2d, BatchNorm`` triples (the first ReLU
    left out for the first entry block), ending with a 3x3/2 max-pool when the block
    downsamples; the shortcut is then a 1x1/2 convolution with batch norm, else identity.
    ``widths`` lists the output channels of the separable convolutions in order.
    """

    def __init__(
        self, in_channels: int, widths: tuple[int, ...], downsample: bool, start_with_relu: bool = True
    ) -> None:
        super().__init__()
        out_channels = widths[-1]
        if downsample or in_channels != out_channels:
            self.skip = nn.Conv2d(in_channels, out_channels, 1, stride=2 if downsample else 1, bias=False)
            self.skipbn = nn.BatchNorm2d(out_channels)
        else:
            self.skip = self.skipbn = None
        layers: list[nn.Module] = []
        channels = in_channels
        for index, width in enumerate(widths):
            if index > 0 or start_with_relu:
                # the block's first ReLU must not overwrite its input: the shortcut reads it
                layers.append(nn.ReLU(inplace=index > 0))
            layers += [SeparableConv2d(channels, width, 3), nn.BatchNorm2d(width)]
            channels = width
        if downsample:
            layers.append(nn.MaxPool2d(3, stride=2, padding=1))
        self.rep = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = self.skipbn(self.skip(x)) if self.skip is not None else x
        return self.rep(x) + shortcut


class Xception(ClassifierNet):
    """Xception: entry, middle and exit flows of depthwise separable convolutions."""

    feature_trunk = (
        "conv1", "bn1", "act1", "conv2", "bn2", "act2", "block*", "conv3", "bn3", "act3", "conv4", "bn4", "act4",
    )

    classifier_path = "fc"

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.5) -> None:
        super().__init__(num_classes, in_chans)
        self.num_features = EXIT_CONVS[-1]
        # entry flow stem: 299 -> 149 -> 147 (unpadded convolutions)
        self.conv1 = nn.Conv2d(in_chans, 32, 3, stride=2, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(32, 64, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.act2 = nn.ReLU(inplace=True)
        blocks: list[XceptionBlock] = []
        for index, (cin, cout) in enumerate(ENTRY_FLOW):
            blocks.append(XceptionBlock(cin, (cout, cout), downsample=True, start_with_relu=index > 0))
        blocks += [
            XceptionBlock(MIDDLE_WIDTH, (MIDDLE_WIDTH,) * 3, downsample=False) for _ in range(MIDDLE_FLOW_REPEATS)
        ]
        blocks.append(XceptionBlock(MIDDLE_WIDTH, EXIT_BLOCK, downsample=True))
        for index, block in enumerate(blocks, start=1):
            self.add_module(f"block{index}", block)
        self.num_blocks = len(blocks)
        # exit flow tail
        self.conv3 = SeparableConv2d(EXIT_BLOCK[-1], EXIT_CONVS[0], 3)
        self.bn3 = nn.BatchNorm2d(EXIT_CONVS[0])
        self.act3 = nn.ReLU(inplace=True)
        self.conv4 = SeparableConv2d(EXIT_CONVS[0], EXIT_CONVS[1], 3)
        self.bn4 = nn.BatchNorm2d(EXIT_CONVS[1])
        self.act4 = nn.ReLU(inplace=True)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.head_drop = nn.Dropout(drop_rate)  # Section 4.3: dropout 0.5 before the classifier
        self.fc = linear_or_identity(self.num_features, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.act2(self.bn2(self.conv2(x)))
        for index in range(1, self.num_blocks + 1):
            x = getattr(self, f"block{index}")(x)
        x = self.act3(self.bn3(self.conv3(x)))
        return self.act4(self.bn4(self.conv4(x)))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.head_drop(torch.flatten(self.global_pool(x), 1))
        return x if pre_logits else self.fc(x)


@register_model(family="xception", paper=XCEPTION_PAPER, input_size=(3, 299, 299), min_size=7)
def xception(**kwargs) -> Xception:
    """Xception: depthwise separable convolutions with residual links; loads timm legacy_xception."""
    return Xception(**kwargs)
