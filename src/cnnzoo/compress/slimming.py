"""Network slimming's sparsity penalty (Liu et al. 2017, "Learning Efficient Convolutional Networks
through Network Slimming").

Eq. 1 trains with ``loss + lambda * sum over every batch-norm scale gamma of |gamma|``; channels
whose scale the penalty drove to zero are then pruned (``cnnzoo prune --method bn-scale
--global``, the paper's global threshold).  Sec. 4.3 (training): lambda = 1e-4 for VGGNet,
1e-5 for ResNet and DenseNet on CIFAR.  The paper adds ``lambda * sign(gamma)`` to the gradient
(sub-gradient descent on the L1 term); adding the term to the loss gives autograd the same
gradient, so the penalty is a loss wrapper for the one trainer (``bn_sparsity`` in the
training configuration, ``--bn-sparsity`` on the command line), not a change of the loop.  The
logged training loss includes the penalty.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from cnnzoo.errors import ConfigError


class BNSparsityLoss:
    """``loss(outputs, labels, images) + weight * sum(|gamma|)`` over the batch-norm scales of ``model``."""

    def __init__(self, loss: Callable, model: nn.Module, weight: float) -> None:
        self.loss, self.weight = loss, float(weight)
        self.scales = [m.weight for m in model.modules()
                       if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None]  # fmt: skip
        if not self.scales:
            name = getattr(model, "model_name", type(model).__name__)
            raise ConfigError(f"bn_sparsity penalises batch-norm scales; {name} has no batch norm with a scale")

    def penalty(self) -> torch.Tensor:
        return torch.stack([scale.abs().sum() for scale in self.scales]).sum()

    def __call__(self, outputs, labels: torch.Tensor, images: torch.Tensor):
        loss, main = self.loss(outputs, labels, images)
        return loss + self.weight * self.penalty(), main
