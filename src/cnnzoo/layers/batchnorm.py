"""Batch normalisation written from its equations (Ioffe & Szegedy 2015, Algorithm 1 and 2).

Training mode, over a mini-batch B = {x_1..m} per channel (for convolutions the batch is every
position of every image, Section 3.2):

    mu_B = 1/m sum x_i          sigma_B^2 = 1/m sum (x_i - mu_B)^2
    x_hat = (x - mu_B) / sqrt(sigma_B^2 + eps)          y = gamma * x_hat + beta

and the moving averages used at test time (Algorithm 2, the brief's 000 and 001):

    E[x]   <- (1 - momentum) * E[x]   + momentum * mu_B
    Var[x] <- (1 - momentum) * Var[x] + momentum * m / (m - 1) * sigma_B^2   (unbiased)

Eval mode normalises with E[x] and Var[x], so the output no longer depends on the batch.
Parameter and buffer names equal ``nn.BatchNorm2d``'s, so state dicts move between the two.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class BatchNorm2dFromEquations(nn.Module):
    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))  # gamma
        self.bias = nn.Parameter(torch.zeros(num_features))  # beta
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            m = x.numel() // x.shape[1]
            if m < 2:
                raise ValueError("batch norm needs more than one value per channel in training mode")
            mean = x.mean(dim=(0, 2, 3))
            var = ((x - mean.view(1, -1, 1, 1)) ** 2).mean(dim=(0, 2, 3))  # biased, for x_hat
            with torch.no_grad():
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
                self.running_var.mul_(1 - self.momentum).add_(self.momentum * var * m / (m - 1))
                self.num_batches_tracked.add_(1)
        else:
            mean, var = self.running_mean, self.running_var
        x_hat = (x - mean.view(1, -1, 1, 1)) / torch.sqrt(var.view(1, -1, 1, 1) + self.eps)
        return self.weight.view(1, -1, 1, 1) * x_hat + self.bias.view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"
