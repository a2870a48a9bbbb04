"""Fitting pretrained weights to a new task: another number of classes or of input channels.

* **Classes.**  A different number of classes (or, when the class names are known, other
  classes) re-initialises the head with the model's own ``reset_classifier`` (auxiliary
  classifiers included); everything else keeps its pretrained weights.
* **Input channels.**  The first convolution is adapted instead of being started from
  random.  For one channel its kernels are summed over the source's channels: a gray image
  ``g`` through the summed kernel gives exactly what the replicated image ``(g, g, g)``
  gives through the original one.  For ``n`` channels the source's kernels are repeated
  cyclically to ``n`` and scaled by ``source_channels / n``, which keeps the scale of the
  activations: an image whose ``n`` channels are all equal gives the original response
  exactly when ``n`` is a multiple of the source's channels (and about it otherwise).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cnnzoo.errors import ConfigError


def adapt_conv_weight(weight: Tensor, in_chans: int) -> Tensor:
    """A ``(out, C, kh, kw)`` kernel made to read ``in_chans`` channels (see the module docstring)."""
    if in_chans < 1:
        raise ConfigError(f"in_chans must be >= 1, got {in_chans}")
    source = weight.shape[1]
    if in_chans == source:
        return weight.clone()
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    index = torch.arange(in_chans, device=weight.device) % source
    return weight[:, index] * (source / in_chans)


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    """The first ``nn.Conv2d`` that reads the image (the stem), and its name."""
    expected = getattr(model, "in_chans", None)
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and module.groups == 1:
            if expected is None or module.in_channels == expected:
                return name, module
    raise ConfigError(f"{type(model).__name__}: no convolution reading the {expected}-channel input was found")


@torch.no_grad()
def adapt_in_chans(model: nn.Module, in_chans: int) -> nn.Module:
    """Make ``model``'s stem read ``in_chans`` channels, adapting its pretrained kernels in place."""
    name, conv = first_conv(model)
    if conv.in_channels == in_chans:
        return model
    new_weight = adapt_conv_weight(conv.weight.detach(), in_chans)
    conv.weight = nn.Parameter(new_weight, requires_grad=conv.weight.requires_grad)
    conv.in_channels = in_chans
    if hasattr(model, "in_chans"):
        model.in_chans = in_chans
    return model


def head_needs_reset(
    num_classes: int,
    source_num_classes: int,
    classes: list[str] | None = None,
    source_classes: list[str] | None = None,
) -> bool:
    """True when the pretrained head cannot serve: another number of classes, or other classes."""
    if num_classes != source_num_classes:
        return True
    if classes is not None and source_classes is not None:
        return list(classes) != list(source_classes)
    return False


def adapt_num_classes(model: nn.Module, num_classes: int, reset: bool | None = None) -> nn.Module:
    """Re-initialise the head for ``num_classes`` (always when ``reset``; when the count differs if None)."""
    if reset is None:
        reset = num_classes != getattr(model, "num_classes", None)
    if reset:
        if not hasattr(model, "reset_classifier"):
            raise ConfigError(f"{type(model).__name__} has no reset_classifier(): cannot give it a new head")
        model.reset_classifier(num_classes)
    return model


__all__ = ["adapt_conv_weight", "adapt_in_chans", "adapt_num_classes", "first_conv", "head_needs_reset"]
