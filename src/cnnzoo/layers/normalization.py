"""Normalisation layers as the papers define them."""

from __future__ import annotations

from torch import nn


def krizhevsky_lrn(size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0) -> nn.Module:
    """Local response normalisation of Krizhevsky et al. 2012, Section 3.3.

    The paper divides by ``(k + alpha * sum_j a_j^2) ** beta`` over ``size`` adjacent
    channels; PyTorch's ``LocalResponseNorm`` (like Caffe) uses ``alpha / size`` in that
    sum, so the paper's alpha is multiplied by ``size`` here to give the paper's equation.
    """
    return nn.LocalResponseNorm(size=size, alpha=alpha * size, beta=beta, k=k)
