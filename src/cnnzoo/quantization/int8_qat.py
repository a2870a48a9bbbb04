"""Quantization-aware training for int8: the net trains through the rounding ONNX Runtime will do.

``int8_qat`` (a registered model transform, so ``ModelSpec.build()`` replays it and a QAT run's
checkpoint loads strictly) folds batch norm into the convolutions (:func:`cnnzoo.deploy.fold.fold_bn`)
and wraps every ``nn.Conv2d`` and ``nn.Linear`` in :class:`FakeQuantized`, which rounds

* the layer's input to uint8 with one asymmetric range per tensor, tracked during training as an
  exponential moving average of each batch's minimum and maximum (Jacob et al. 2018, Section 3.1,
  "Quantization-aware training": EMA ranges for activations, the range nudged to contain 0), and
* the layer's weights to int8 per output channel, symmetric (``scale = max |w| / 127``),

which is what :func:`cnnzoo.quantization.int8.quantize_onnx` asks ONNX Runtime for (QDQ, uint8
activations, int8 per-channel weights) after batch norm has been folded the same way.  The
rounding passes gradients straight through inside the range and stops them outside it
(``torch.fake_quantize_*``; Bengio et al. 2013's straight-through estimator, as Jacob et al.
use it).  Why fold first: ONNX Runtime quantizes the folded weights, so those are the ones whose
rounding the net must learn to tolerate (Krishnamoorthi 2018, Section 3.2, simulates the fold
instead, to keep batch statistics; a short fine-tuning at a small learning rate does without them).

After training, :func:`strip_fake_quant` gives back the plain folded fp32 net, and the int8 file
is made from it exactly as for post-training quantization; ONNX Runtime re-measures the
activation ranges on the calibration images (the learned EMA ranges are not carried over; they
measure the same quantity).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from cnnzoo.modelspec import register_transform

#: the EMA's weight on a new batch's range (Jacob et al. use a slow average; TF's default is 0.999 decay)
RANGE_MOMENTUM = 0.01
#: uint8 activations, int8 weights: the types ONNX Runtime's quantizer is asked for
ACTIVATION_LEVELS = (0, 255)
WEIGHT_LEVELS = (-127, 127)


class FakeQuantized(nn.Module):
    """A convolution or linear layer whose input and weights are rounded to int8 levels (module docstring)."""

    def __init__(self, layer: nn.Module, momentum: float = RANGE_MOMENTUM) -> None:
        super().__init__()
        self.layer = layer
        self.momentum = momentum
        #: (min, max) of the input seen so far; ``observed`` is False until the first batch
        self.register_buffer("input_range", torch.zeros(2))
        self.register_buffer("observed", torch.tensor(False))

    def observe(self, x: torch.Tensor) -> None:
        low, high = x.detach().aminmax()
        batch = torch.stack([low, high]).float()
        if not bool(self.observed):
            self.input_range.copy_(batch)
            self.observed.fill_(True)
        else:
            self.input_range.lerp_(batch, self.momentum)

    def quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        if not bool(self.observed):  # nothing measured yet (an evaluation before any batch): leave it
            return x
        low = min(float(self.input_range[0]), 0.0)  # the range holds 0, so that zero padding is exact
        high = max(float(self.input_range[1]), 0.0)
        q_min, q_max = ACTIVATION_LEVELS
        scale = max((high - low) / (q_max - q_min), 1e-8)
        zero_point = int(min(max(round(q_min - low / scale), q_min), q_max))
        return torch.fake_quantize_per_tensor_affine(x, scale, zero_point, q_min, q_max)

    def quantized_weight(self) -> torch.Tensor:
        weight = self.layer.weight
        q_min, q_max = WEIGHT_LEVELS
        absmax = weight.detach().abs().flatten(1).amax(dim=1)
        scale = (absmax / q_max).clamp_min(1e-8).float()
        zero_point = torch.zeros_like(scale, dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(weight, scale, zero_point, 0, q_min, q_max)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.observe(x)
        x = self.quantize_input(x)
        weight = self.quantized_weight()
        if isinstance(self.layer, nn.Conv2d):
            return self.layer._conv_forward(x, weight, self.layer.bias)
        return F.linear(x, weight, self.layer.bias)


def _wrap(net: nn.Module) -> int:
    count = 0
    for name, child in list(net.named_children()):
        if isinstance(child, (nn.Conv2d, nn.Linear)):
            setattr(net, name, FakeQuantized(child))
            count += 1
        elif not isinstance(child, FakeQuantized):
            count += _wrap(child)
    return count


@register_transform("int8_qat")
def int8_qat(model: nn.Module) -> nn.Module:
    """Fold batch norm, then wrap every convolution and linear layer in :class:`FakeQuantized` (in place)."""
    from cnnzoo.deploy.fold import fold_bn

    was_training = model.training
    model.eval()  # folding reads the running statistics; a freshly built net's are replaced by the checkpoint's
    fold_bn(model, inplace=True)
    _wrap(model)
    model.train(was_training)
    return model


def observe_ranges(model: nn.Module, batches) -> None:
    """Start every input range from the calibration images (before the first training step)."""
    was_training = model.training
    model.train()  # FakeQuantized observes in training mode; batch norm is folded away, dropout does not matter
    with torch.no_grad():
        for images in batches:
            model(images)
    model.train(was_training)


def strip_fake_quant(model: nn.Module) -> nn.Module:
    """A copy of a QAT net with every :class:`FakeQuantized` replaced by its plain layer (trained weights)."""
    plain = copy.deepcopy(model)

    def unwrap(net: nn.Module) -> None:
        for name, child in list(net.named_children()):
            if isinstance(child, FakeQuantized):
                setattr(net, name, child.layer)
            else:
                unwrap(child)

    unwrap(plain)
    if hasattr(plain, "model_spec"):
        del plain.model_spec  # no longer what the spec builds
    return plain
