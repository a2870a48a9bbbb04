"""Stochastic depth (Huang, Sun, Liu, Sedra & Weinberger 2016, "Deep Networks with Stochastic Depth").

During training each residual block's branch ``f_l`` survives with probability ``p_l`` and is
otherwise removed, so the block becomes its shortcut (Section 3, "Stochastic depth"):

    H_l = ReLU(b_l * f_l(H_{l-1}) + id(H_{l-1})),   b_l ~ Bernoulli(p_l).

At test time every branch is kept and scaled by its survival probability,
``H_l = ReLU(p_l * f_l(H_{l-1}) + id(H_{l-1}))`` (Section 3, "Stochastic depth during testing"),
which is the expectation of the training-mode branch.  Unlike the "inverted" variant common
in later code (timm's ``drop_path``, which divides by ``p_l`` while training and does nothing
at test time), this is the paper's formulation.

The survival probabilities decay linearly with depth (Section 3, "Survival probabilities"):
``p_l = 1 - l / L * (1 - p_L)`` for the ``l``-th of ``L`` blocks, so the first block almost
always survives and the last survives with ``p_L`` (0.5 in the paper).  :func:`drop_path_rates`
returns the per-block drop probabilities ``1 - p_l``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cnnzoo.errors import ConfigError


def check_drop_prob(value: float, what: str = "drop_path_rate") -> float:
    """Validate a probability in [0, 1) and return it as a float (ConfigError otherwise)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ConfigError(f"{what} must be a number in [0, 1), got {value!r}")
    return float(value)


def drop_path_rates(num_blocks: int, final_rate: float) -> list[float]:
    """Drop probabilities ``1 - p_l = l / L * (1 - p_L)`` for blocks ``l = 1 .. L`` (linear decay).

    ``final_rate`` is ``1 - p_L``, the drop probability of the last block; the first block's
    is ``final_rate / L``, never exactly zero, as in the paper's rule.
    """
    final_rate = check_drop_prob(final_rate)
    return [final_rate * index / num_blocks for index in range(1, num_blocks + 1)]


class DropPath(nn.Module):
    """Drops a residual branch with probability ``drop_prob`` (stochastic depth).

    * training: the branch is multiplied by ``b ~ Bernoulli(1 - drop_prob)``; by default one
      draw per mini-batch, as in the paper ("for each mini-batch, randomly select sets of
      layers and remove their corresponding transformation functions"); ``per_sample=True``
      draws one ``b`` per example instead (same expectation, lower variance);
    * evaluation: the branch is multiplied by its survival probability ``1 - drop_prob``.

    With ``drop_prob == 0`` the module is the identity in both modes.
    """

    def __init__(self, drop_prob: float = 0.0, per_sample: bool = False) -> None:
        super().__init__()
        self.drop_prob = check_drop_prob(drop_prob, "drop_prob")
        self.per_sample = bool(per_sample)

    @property
    def survival_prob(self) -> float:
        return 1.0 - self.drop_prob

    def forward(self, x: Tensor) -> Tensor:
        if self.drop_prob == 0.0:
            return x
        if not self.training:
            return x * self.survival_prob
        if self.per_sample:
            shape = (x.shape[0],) + (1,) * (x.dim() - 1)
            keep = torch.rand(shape, device=x.device) < self.survival_prob
            return x * keep.to(x.dtype)
        keep = bool(torch.rand(()) < self.survival_prob)
        # multiply rather than return zeros so every parameter still gets a (zero) gradient,
        # which distributed training expects
        return x if keep else x * 0.0

    def extra_repr(self) -> str:
        mode = "per sample" if self.per_sample else "per mini-batch"
        return f"drop_prob={self.drop_prob:.4f}, {mode}"
