"""Spatial pyramid pooling (He et al. 2014, "Spatial Pyramid Pooling in Deep Convolutional
Networks for Visual Recognition", Section 2.3).

SPP max-pools the last convolutional feature map, of any size ``a x a``, into ``n x n``
bins for each pyramid level ``n`` and concatenates the bins into one vector of fixed
length ``channels * sum(n * n)``: the fully connected layers after it then take images of
any size.  The paper pools level ``n`` with window ``ceil(a / n)`` and stride
``floor(a / n)``; that formula gives fewer or more than ``n`` bins for some sizes
(``a = 7, n = 4`` gives 6), so the bins here are the adaptive ones (bin ``i`` spans
``[floor(i a / n), ceil((i + 1) a / n))``), which coincide with the paper's whenever
``n`` divides ``a`` and always give exactly ``n x n`` bins.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cnnzoo.errors import ConfigError


class SpatialPyramidPooling(nn.Module):
    """Max-pool a ``(N, C, H, W)`` map into ``n x n`` bins per level; return ``(N, C * bins)``.

    The default levels ``(4, 2, 1)`` are the 3-level pyramid of Figure 3 (21 bins); the
    ImageNet networks of Section 3.1 use ``(6, 3, 2, 1)`` (50 bins).  The output is ordered
    level by level, channel-major inside a level (each level's ``(C, n, n)`` flattened).
    """

    def __init__(self, levels: tuple[int, ...] = (4, 2, 1)) -> None:
        super().__init__()
        levels = tuple(levels)
        if not levels or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in levels):
            raise ConfigError(f"SPP levels must be positive integers, got {levels!r}")
        self.levels = levels
        self.pools = nn.ModuleList(nn.AdaptiveMaxPool2d(n) for n in levels)

    @property
    def num_bins(self) -> int:
        return sum(n * n for n in self.levels)

    def output_features(self, channels: int) -> int:
        """Length of the fixed-size vector for a ``channels``-channel feature map."""
        return channels * self.num_bins

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([torch.flatten(pool(x), 1) for pool in self.pools], dim=1)

    def extra_repr(self) -> str:
        return f"levels={self.levels}"
