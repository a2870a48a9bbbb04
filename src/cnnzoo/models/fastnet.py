"""``fastnet``: a net built for time to accuracy on small images, after airbench (Jordan 2024).

Jordan's airbench trains a CIFAR-10 net to 94% in seconds on one GPU.  ``fastnet`` takes the
architectural ideas that do not depend on a GPU and sizes the net for Fashion-MNIST on a CPU:

* **a frozen patch-whitening first layer**: a 2x2 convolution whose filters are the training
  patches' principal directions scaled by ``1/sqrt(eigenvalue)``, each with its negative
  (so that a following nonlinearity keeps both signs).  It is computed from the data before
  training (:meth:`FastNet.init_from_data`, which the engine calls) and never trained;
* **three blocks** of ``conv 3x3 -> max-pool 2 -> BN -> act -> conv 3x3 -> BN -> act``, so that
  the second convolution of each block already works at the lower resolution;
* **identity-initialised convolutions**: the first ``c_in`` filters of every 3x3 convolution start
  as a Dirac delta (they pass their input through), the rest as usual;
* **batch norm with frozen scales** (only the shifts train) and a high running-average momentum;
* **global max pooling** and a bias-free linear classifier whose logits are scaled down by a
  fixed factor (``logit_scale``), which keeps the first steps' softmax soft.

What is *not* taken (it lives in the recipe, ``-c fast94``, or the engine): label smoothing,
Nesterov SGD, the triangular (one-cycle) schedule, flip test-time augmentation, bf16 autocast and
channels-last.  The defaults were chosen on the validation split for time to 94% on 2 CPU cores
(docs/results.md, "Fastest to 94%"): widths 48/96/192 and ReLU, which a CPU computes faster
than airbench's GELU (1215 against 979 img/s at 64/128/256 in one training-step probe), for
28x28 grey images about 25M multiply-adds and 0.65M parameters.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
from torch import Tensor, nn

from cnnzoo.errors import ConfigError
from cnnzoo.models.base import ClassifierNet
from cnnzoo.registry import Paper, register_model

AIRBENCH_PAPER = Paper(
    title="94% on CIFAR-10 in 3.29 Seconds on a Single GPU",
    authors="Keller Jordan",
    year=2024,
    url="https://arxiv.org/abs/2404.00498",
)


def _batch_norm(channels: int, momentum: float) -> nn.BatchNorm2d:
    norm = nn.BatchNorm2d(channels, momentum=momentum, eps=1e-12)
    norm.weight.requires_grad_(False)  # frozen scales: only the shifts (biases) train
    return norm


class ConvBlock(nn.Sequential):
    """``conv 3x3 -> max-pool 2 -> BN -> act -> conv 3x3 -> BN -> act``."""

    def __init__(self, in_channels: int, out_channels: int, bn_momentum: float, act: str = "gelu") -> None:
        super().__init__(OrderedDict(
            conv1=nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            pool=nn.MaxPool2d(2),
            norm1=_batch_norm(out_channels, bn_momentum),
            act1=_activation(act),
            conv2=nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            norm2=_batch_norm(out_channels, bn_momentum),
            act2=_activation(act),
        ))  # fmt: skip


ACTIVATIONS = ("gelu", "relu")


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ConfigError(f"fastnet's act is one of {', '.join(ACTIVATIONS)}, got {name!r}")
    # airbench uses GELU; ReLU is cheaper on a CPU
    return nn.GELU() if name == "gelu" else nn.ReLU(inplace=True)


class FastNet(ClassifierNet):
    """Whitening layer, three conv blocks, global max pooling, scaled linear classifier."""

    feature_trunk = ("whiten", "act", "blocks.*")

    classifier_path = "fc"

    def __init__(self, num_classes: int = 10, in_chans: int = 1, widths: Sequence[int] = (48, 96, 192),
                 bn_momentum: float = 0.4, logit_scale: float = 1 / 9, whiten_eps: float = 5e-4,
                 act: str = "relu") -> None:  # fmt: skip
        super().__init__(num_classes, in_chans)
        widths = [int(w) for w in widths]
        if len(widths) != 3 or min(widths) < 1:
            raise ConfigError(f"fastnet takes three positive widths, got {list(widths)}")
        self.logit_scale = float(logit_scale)
        self.whiten_eps = float(whiten_eps)
        patch = in_chans * 2 * 2
        # 2x2 patches, no padding: 28x28 -> 27x27 (see init_from_data for the filters)
        self.whiten = nn.Conv2d(in_chans, 2 * patch, kernel_size=2, bias=True)
        self.whiten.weight.requires_grad_(False)
        self.whiten.bias.requires_grad_(False)
        self.act = _activation(act)
        blocks, channels = [], 2 * patch
        for width in widths:
            blocks.append(ConvBlock(channels, width, bn_momentum, act))
            channels = width
        self.blocks = nn.Sequential(*blocks)
        self.num_features = channels
        self.global_pool = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(channels, num_classes, bias=False) if num_classes else nn.Identity()
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        nn.init.zeros_(self.whiten.weight)  # until init_from_data: replaced before training
        nn.init.zeros_(self.whiten.bias)
        for module in self.blocks.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                identity = min(module.in_channels, module.out_channels)
                nn.init.dirac_(module.weight[:identity])  # the first filters pass their input through
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if isinstance(self.fc, nn.Linear):
            nn.init.normal_(self.fc.weight, std=0.01 / max(self.logit_scale, 1e-6))

    @torch.no_grad()
    def init_from_data(self, images: Tensor) -> None:
        """Set the whitening filters from training images ``(N, C, H, W)`` (normalised, no augmentation).

        The 2x2 patches' covariance ``V diag(l) V^T`` gives filters ``v / sqrt(l + eps)`` and
        their negatives: the layer outputs decorrelated, unit-variance patch coordinates.
        """
        weight = self.whiten.weight
        patches = images.to(weight.device, torch.float32).unfold(2, 2, 1).unfold(3, 2, 1)  # N, C, H', W', 2, 2
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, weight.shape[1] * 4)
        patches = patches - patches.mean(dim=0)
        covariance = patches.T @ patches / max(1, patches.shape[0] - 1)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance.double())
        filters = (eigenvectors.T / (eigenvalues.clamp_min(0) + self.whiten_eps).sqrt()[:, None]).float()
        filters = filters.reshape(-1, weight.shape[1], 2, 2)
        weight.copy_(torch.cat([filters, -filters]))
        self.whiten.bias.zero_()

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes, bias=False) if num_classes else nn.Identity()
        if num_classes:
            nn.init.normal_(self.fc.weight, std=0.01 / max(self.logit_scale, 1e-6))

    def forward_features(self, x: Tensor) -> Tensor:
        return self.blocks(self.act(self.whiten(x)))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.global_pool(x).flatten(1)
        return x if pre_logits else self.fc(x) * self.logit_scale


@register_model(family="fastnet", paper=AIRBENCH_PAPER, input_size=(1, 28, 28), num_classes=10, min_size=9)
def fastnet(**kwargs) -> FastNet:
    """After airbench (Jordan 2024), sized for Fashion-MNIST on a CPU: widths 48/96/192, ReLU."""
    return FastNet(**kwargs)
