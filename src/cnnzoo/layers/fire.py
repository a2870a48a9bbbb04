"""The Fire module of SqueezeNet (Iandola et al. 2016, Section 3.2).

A Fire module *squeezes* the input with 1x1 convolutions (strategy 2 of Section 3.1:
fewer input channels for the 3x3 filters that follow), then *expands* it with a mix of
1x1 and 3x3 convolutions (strategy 1: replace most 3x3 filters by 1x1 ones) whose
outputs are concatenated along the channel axis.  Every convolution is followed by a
ReLU; the submodule names follow torchvision's so its state dicts load strictly.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Fire(nn.Module):
    """``squeeze 1x1 -> ReLU -> [expand 1x1 -> ReLU | expand 3x3 -> ReLU]`` (concatenated).

    The output has ``expand1x1_channels + expand3x3_channels`` channels and the input's
    resolution (the 3x3 expand filters have 1 pixel of zero padding, Section 3.3).
    """

    def __init__(
        self,
        in_channels: int,
        squeeze_channels: int,
        expand1x1_channels: int,
        expand3x3_channels: int,
    ) -> None:
        super().__init__()
        self.out_channels = expand1x1_channels + expand3x3_channels
        self.squeeze = nn.Conv2d(in_channels, squeeze_channels, kernel_size=1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze_channels, expand1x1_channels, kernel_size=1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze_channels, expand3x3_channels, kernel_size=3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        squeezed = self.squeeze_activation(self.squeeze(x))
        return torch.cat(
            [
                self.expand1x1_activation(self.expand1x1(squeezed)),
                self.expand3x3_activation(self.expand3x3(squeezed)),
            ],
            dim=1,
        )
