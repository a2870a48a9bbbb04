"""The convolution + batch norm + activation unit most post-2015 networks are built from."""

from __future__ import annotations

from torch import Tensor, nn


class ConvNormAct(nn.Module):
    """``conv -> BatchNorm -> ReLU`` with submodules named ``conv``, ``bn``, ``act``.

    The convolution has no bias when a batch norm follows it: BN's shift makes the
    bias redundant (Ioffe & Szegedy 2015, Section 3.2; the brief's BN rules in 001).
    ``padding=None`` means "same" padding for odd kernels (``kernel // 2`` per side,
    scaled by dilation); kernels may be rectangular, e.g. ``(1, 7)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | None = None,
        *,
        groups: int = 1,
        dilation: int = 1,
        norm: bool = True,
        act: bool = True,
        bn_eps: float = 1e-5,
        bias: bool | None = None,
    ) -> None:
        super().__init__()
        if padding is None:
            if isinstance(kernel_size, int):
                padding = dilation * (kernel_size - 1) // 2
            else:
                padding = tuple(dilation * (k - 1) // 2 for k in kernel_size)
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=(not norm) if bias is None else bias,
        )
        self.bn = nn.BatchNorm2d(out_channels, eps=bn_eps) if norm else nn.Identity()
        self.act = nn.ReLU(inplace=True) if act else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))
