"""Quantized layers: weight parametrizations and the binary-input wrapper.

A weight quantizer is registered on a convolution or linear layer with
``torch.nn.utils.parametrize``: the layer's parameter is the full-precision *shadow* weight
(``parametrizations.weight.original``), which the optimizer updates, and ``layer.weight``, which
its forward reads, is the quantized one (the papers' "real-valued weights are kept for the
updates, the binary ones are used in the propagations": BinaryConnect Sec. 2.3).

Each quantizer also gives its *codebook*: the values its codes stand for, per filter or per
layer, so that :mod:`cnnzoo.quantization.packing` stores a code of 1 or 2 bits per weight and
the codebook instead of the weight.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cnnzoo.quantization import quantizers as q


class WeightQuantizer(nn.Module):
    """A parametrization ``shadow weight -> deployed weight``; subclasses give the rule."""

    #: bits of one weight's code in the packed file
    bits: int = 1

    def codebook(self, weight: Tensor) -> Tensor:
        """``(F, L)`` values (F filters, or 1 for the whole layer) that the codes ``0..L-1`` index."""
        raise NotImplementedError


class BinaryWeights(WeightQuantizer):
    """BinaryConnect / BNN: ``sign(w)``, the values -1 and +1 without a scale."""

    bits = 1

    def forward(self, weight: Tensor) -> Tensor:
        return q.BinarySign.apply(weight)

    def codebook(self, weight: Tensor) -> Tensor:
        return torch.tensor([[-1.0, 1.0]], dtype=weight.dtype, device=weight.device)


class ScaledBinaryWeights(WeightQuantizer):
    """XNOR-Net and BWN: ``alpha * sign(W)`` with ``alpha = mean |W|`` per output filter."""

    bits = 1

    def forward(self, weight: Tensor) -> Tensor:
        return q.ScaledSign.apply(weight)

    def codebook(self, weight: Tensor) -> Tensor:
        alpha = q.per_filter_mean_abs(weight).reshape(-1, 1)
        return torch.cat([-alpha, alpha], dim=1)


class TernaryWeights(WeightQuantizer):
    """TWN: ``alpha * {-1, 0, +1}``, threshold ``0.7 * mean |W|``, one alpha per layer."""

    bits = 2

    def forward(self, weight: Tensor) -> Tensor:
        return q.TernaryTWN.apply(weight)

    def codebook(self, weight: Tensor) -> Tensor:
        _, alpha = q.twn_threshold_and_scale(weight)
        return torch.stack([-alpha, torch.zeros_like(alpha), alpha]).reshape(1, 3)


class TrainedTernaryWeights(WeightQuantizer):
    """TTQ: ``{-W_n, 0, +W_p}`` with ``W_p`` and ``W_n`` learned per layer (threshold ``0.05 * max |W|``).

    The scales start at the mean magnitude of the weights in their set (TWN's alpha, taken
    separately for each sign), so that a trained net's first quantized forward is already
    close to the full-precision one; they are parameters of this module, saved with the net.
    """

    bits = 2

    def __init__(self, weight: Tensor) -> None:
        super().__init__()
        with torch.no_grad():
            positive, negative = q.ttq_masks(weight)
            magnitude = weight.abs()
            fallback = magnitude.mean()
            wp = (magnitude * positive).sum() / positive.sum() if positive.any() else fallback
            wn = (magnitude * negative).sum() / negative.sum() if negative.any() else fallback
        self.wp = nn.Parameter(wp.detach().clone().reshape(1))
        self.wn = nn.Parameter(wn.detach().clone().reshape(1))

    def forward(self, weight: Tensor) -> Tensor:
        return q.TernaryTTQ.apply(weight, self.wp, self.wn)

    def codebook(self, weight: Tensor) -> Tensor:
        wp, wn = self.wp.detach().to(weight.dtype), self.wn.detach().to(weight.dtype)
        return torch.stack([-wn[0], torch.zeros_like(wp[0]), wp[0]]).reshape(1, 3)


class TwoBitWeights(WeightQuantizer):
    """Meng et al.'s two-bit weights ``alpha * {-2, -1, +1, +2}``, one alpha per output filter."""

    bits = 2

    def forward(self, weight: Tensor) -> Tensor:
        return q.TwoBit.apply(weight)

    def codebook(self, weight: Tensor) -> Tensor:
        _, alpha = q.two_bit_codes_and_scale(weight)
        levels = torch.tensor([-2.0, -1.0, 1.0, 2.0], dtype=weight.dtype, device=weight.device)
        return alpha.reshape(-1, 1) * levels


class BinaryInputs(nn.Module):
    """A layer whose input is binarized first: BNN's ``sign(x)``, or XNOR-Net's ``sign(x)`` with K.

    XNOR-Net (Rastegari et al. 2016, Sec. 3.2) approximates ``I * W`` by
    ``(sign(I) (*) sign(W)) . K alpha``: alpha is in the binary weights, and K holds the
    scale of each input patch, ``A = mean over channels of |I|`` convolved with a
    ``k x k`` box filter of ``1 / (k * k)`` (the convolution's own stride, padding and
    dilation).  A linear layer's patch is its whole input: K is ``mean |x|`` of each
    sample.  One simplification: a grouped convolution's A averages over all channels, not
    over each group's.  The bias is added after the scaling, as it is not part of ``I * W``.
    """

    def __init__(self, layer: nn.Module, scaled: bool) -> None:
        super().__init__()
        self.layer = layer
        self.scaled = scaled

    def forward(self, x: Tensor) -> Tensor:
        binary = q.BinaryActivation.apply(x)
        if not self.scaled:
            return self.layer(binary)
        layer = self.layer
        if isinstance(layer, nn.Conv2d):
            out = layer._conv_forward(binary, layer.weight, None)
            average = x.abs().mean(dim=1, keepdim=True)
            kh, kw = layer.kernel_size
            box = torch.full((1, 1, kh, kw), 1.0 / (kh * kw), dtype=x.dtype, device=x.device)
            k = nn.functional.conv2d(average, box, None, layer.stride, layer.padding, layer.dilation)
            bias_shape = (1, -1, 1, 1)
        else:
            out = nn.functional.linear(binary, layer.weight)
            k = x.abs().mean(dim=-1, keepdim=True)
            bias_shape = (-1,)
        out = out * k
        if layer.bias is not None:
            out = out + layer.bias.view(bias_shape)
        return out

    def extra_repr(self) -> str:
        return "sign(x) * K" if self.scaled else "sign(x)"
