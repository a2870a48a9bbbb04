"""NIN's mlpconv layer (Lin, Chen & Yan 2013, Section 3.1).

"The cross channel parametric pooling layer is equivalent to a convolution layer with
1x1 convolution kernel": an mlpconv is one spatial convolution followed by a small
multilayer perceptron shared over positions, i.e. 1x1 convolutions, each with ReLU.
"""

from __future__ import annotations

from torch import Tensor, nn


class MlpConv(nn.Module):
    """``conv kxk -> ReLU -> (1x1 conv -> ReLU) * len(mlp_widths)``.

    ``last_relu=False`` leaves the final 1x1 conv linear (for the class-map layer).
    """

    def __init__(
        self,
        in_channels: int,
        conv_width: int,
        mlp_widths: tuple[int, ...],
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        last_relu: bool = True,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, conv_width, kernel_size, stride=stride, padding=padding),
            nn.ReLU(inplace=True),
        ]
        channels = conv_width
        for index, width in enumerate(mlp_widths):
            layers.append(nn.Conv2d(channels, width, kernel_size=1))
            if last_relu or index < len(mlp_widths) - 1:
                layers.append(nn.ReLU(inplace=True))
            channels = width
        self.layers = nn.Sequential(*layers)
        self.out_channels = channels

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)
