"""Transposed convolution initialised to bilinear interpolation (Long et al. 2015, Section 3.3).

FCN upsamples coarse score maps with "backwards strided convolution" (a transposed
convolution, also called deconvolution): upsampling by a factor ``f`` is a transposed
convolution with stride ``f``, whose ``2f x 2f`` kernel can be set to bilinear
interpolation and then learned, or kept fixed (Section 4.2 learns the intermediate 2x
upsamplings and fixes the final one to bilinear interpolation).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cnnzoo.errors import ConfigError


def bilinear_kernel(kernel_size: int) -> Tensor:
    """The ``kernel_size x kernel_size`` bilinear interpolation filter.

    Its 1-D profile is a tent of half-width ``f = ceil(kernel_size / 2)`` centred on the
    kernel: ``1 - |i - centre| / f``; the 2-D filter is the outer product of two tents.
    """
    factor = (kernel_size + 1) // 2
    centre = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    positions = torch.arange(kernel_size, dtype=torch.float64)
    tent = 1 - (positions - centre).abs() / factor
    return torch.outer(tent, tent).float()


class BilinearConvTranspose2d(nn.ConvTranspose2d):
    """``channels -> channels`` transposed convolution with stride ``factor``, bilinear weights.

    The kernel is ``2 * factor - factor % 2`` wide.  Channel ``c`` is upsampled from
    channel ``c`` only (the weight is the bilinear filter on the channel diagonal, zero
    elsewhere), exactly as FCN initialises its score upsampling.  ``padding=None`` picks
    the padding that makes the output exactly ``factor`` times the input; FCN uses
    ``padding=0`` and crops the result.  ``learnable=False`` freezes the weight (FCN's
    final upsampling).
    """

    def __init__(
        self,
        channels: int,
        factor: int,
        padding: int | None = None,
        *,
        bias: bool = False,
        learnable: bool = True,
    ) -> None:
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
            raise ConfigError(f"upsampling factor must be a positive integer, got {factor!r}")
        kernel_size = 2 * factor - factor % 2
        if padding is None:
            padding = factor // 2  # output (H - 1) f - 2 (f // 2) + 2f - f % 2 = f H
        super().__init__(channels, channels, kernel_size, stride=factor, padding=padding, bias=bias)
        self.factor = factor
        self.reset_to_bilinear()
        self.weight.requires_grad_(learnable)

    @torch.no_grad()
    def reset_to_bilinear(self) -> None:
        """Set the weight to bilinear interpolation (and the bias to zero)."""
        self.weight.zero_()
        kernel = bilinear_kernel(self.kernel_size[0])
        for channel in range(self.in_channels):
            self.weight[channel, channel] = kernel
        if self.bias is not None:
            self.bias.zero_()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if hasattr(self, "factor"):  # nn.ConvTranspose2d's __init__ calls this before we can
            self.reset_to_bilinear()
