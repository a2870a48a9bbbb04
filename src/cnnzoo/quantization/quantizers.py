"""The quantizers: autograd Functions whose backward is each paper's straight-through estimator.

A quantizer's forward maps a full-precision tensor to a few values; its true derivative is
zero almost everywhere, so each paper replaces it in the backward pass by an estimator
(Bengio et al. 2013's "straight-through estimator", STE).  The functions here are that pair,
one per rule; :mod:`cnnzoo.quantization.layers` turns them into weight parametrizations and
input binarizers.

Weights are quantized per output filter (``w[i]`` is filter ``i``: a convolution's
``(out, in, kh, kw)`` or a linear layer's ``(out, in)``) where the paper computes its scale
per filter (XNOR-Net, BWN, two-bit) and per layer where it computes it per layer (TWN, TTQ).
"""

from __future__ import annotations

import torch
from torch import Tensor


def per_filter_mean_abs(weight: Tensor) -> Tensor:
    """``mean |W|`` of each output filter, shaped to broadcast against ``weight``."""
    dims = tuple(range(1, weight.dim()))
    return weight.abs().mean(dim=dims, keepdim=True) if dims else weight.abs()


def sign_plus(x: Tensor) -> Tensor:
    """``+1`` where ``x >= 0``, else ``-1`` (BNN Sec. 1.1: zero goes to +1, so there are two values, not three)."""
    return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))


class BinarySign(torch.autograd.Function):
    """BinaryConnect's deterministic ``sign(w)`` (Courbariaux et al. 2015, Sec. 2.2).

    Backward: the gradient passes straight through (Sec. 2.3: the gradient with respect to
    the binary weight updates the real-valued one); the real-valued weights are clipped to
    [-1, 1] after each update instead (Sec. 2.4), by
    :class:`~cnnzoo.quantization.transform.ClipShadowWeights`.
    """

    @staticmethod
    def forward(ctx, weight: Tensor) -> Tensor:
        return sign_plus(weight)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return grad


class BinaryActivation(torch.autograd.Function):
    """BNN's binary activation: ``sign(x)`` forward, ``g * 1_{|x| <= 1}`` backward.

    Hubara et al. 2016, Sec. 1.3: the STE of ``sign`` is the gradient of ``htanh(x) =
    clip(x, -1, 1)``, which "cancels the gradient when r is too large".  XNOR-Net uses the
    same estimator for its binary inputs (Rastegari et al. 2016, Sec. 3.2).
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return sign_plus(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= 1).to(grad.dtype)


class ScaledSign(torch.autograd.Function):
    """XNOR-Net's binary weights ``alpha * sign(W)``, ``alpha = mean |W|`` per filter (Sec. 3.1).

    Backward as the paper writes it (Sec. 3.1, "Training Binary-Weights-Networks"):
    ``dC/dW_i = dC/dW~_i * (1/n + alpha * 1_{|W_i| <= 1})``, n the filter's size: the
    ``1/n`` is alpha's own share, the second term sign's STE.  (Differentiating the mean
    exactly would add the off-diagonal terms ``sign(W_i) sign(W_j) / n``; the paper drops them.)
    """

    @staticmethod
    def forward(ctx, weight: Tensor) -> Tensor:
        alpha = per_filter_mean_abs(weight)
        ctx.save_for_backward(weight, alpha)
        return alpha * sign_plus(weight)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        weight, alpha = ctx.saved_tensors
        n = weight[0].numel()
        return grad * (1.0 / n + alpha * (weight.abs() <= 1).to(grad.dtype))


def twn_threshold_and_scale(weight: Tensor) -> tuple[Tensor, Tensor]:
    """TWN's ``delta = 0.7 * mean |W|`` and ``alpha = mean of |W_i| over |W_i| > delta``, per layer.

    Li & Liu 2016, Sec. 2.2 (the 0.7 approximates the optimal threshold for
    uniformly or normally distributed weights).
    """
    magnitude = weight.abs()
    delta = 0.7 * magnitude.mean()
    kept = magnitude > delta
    count = kept.sum()
    alpha = torch.where(count > 0, (magnitude * kept).sum() / count.clamp_min(1), magnitude.mean())
    return delta, alpha


class TernaryTWN(torch.autograd.Function):
    """TWN's ternary weights ``alpha * {-1, 0, +1}`` (Li & Liu 2016, Sec. 2.2).

    Backward: straight through to the full-precision weights (Sec. 2.3: "the ternary-valued
    weights are used ... in forward and backward propagation"; the update goes to the
    full-precision weights, as in BinaryConnect); delta and alpha are constants there.
    """

    @staticmethod
    def forward(ctx, weight: Tensor) -> Tensor:
        delta, alpha = twn_threshold_and_scale(weight)
        return alpha * ((weight > delta).to(weight.dtype) - (weight < -delta).to(weight.dtype))

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return grad


#: TTQ's threshold factor t: delta = t * max |W| (Zhu et al. 2017, Sec. 3: "t = 0.05" on CIFAR-10 and ImageNet)
TTQ_THRESHOLD = 0.05


def ttq_masks(weight: Tensor, t: float = TTQ_THRESHOLD) -> tuple[Tensor, Tensor]:
    """The positive and negative sets ``I_p = {W > delta}``, ``I_n = {W < -delta}``, delta = t * max |W|."""
    delta = t * weight.detach().abs().max()
    return weight > delta, weight < -delta


class TernaryTTQ(torch.autograd.Function):
    """TTQ's ternary weights ``{-W_n, 0, +W_p}`` with learned per-layer scales (Zhu et al. 2017, Sec. 3).

    The paper first divides the weights by their maximum; the threshold is then ``t`` of the
    normalised maximum, which is ``t * max |W|`` of the weights themselves: the same sets.
    Backward (Sec. 3): the scales get the gradients of their weights, and the latent weights
    get the gradient scaled by the scale of their set, by 1 in between: ``g * W_p`` on ``I_p``,
    ``g`` on the zeros, ``g * W_n`` on ``I_n``.  The paper's scale gradient is the *sum*
    ``dL/dW_p = sum_{I_p} g`` (``-sum_{I_n} g`` for ``W_n``, the value there being ``-W_n``);
    we take the *mean* over the set instead.  With the sum, one SGD step at the fine-tuning
    learning rate (0.01, momentum 0.9) moved a ResNet-20 layer's scale (about 0.05, its set
    holding thousands of weights) by more than its own value: the scales changed sign and the
    net fell to 31% on Fashion-MNIST (``cnnzoo experiment low-precision``).  The mean is the
    sum divided by a count per layer, so it points the same way: it is the paper's update
    with a learning rate of ``lr / |I_p|`` for the scales.
    """

    @staticmethod
    def forward(ctx, weight: Tensor, wp: Tensor, wn: Tensor) -> Tensor:
        positive, negative = ttq_masks(weight)
        ctx.save_for_backward(positive, negative, wp, wn)
        zero = torch.zeros((), dtype=weight.dtype, device=weight.device)
        return torch.where(positive, wp.to(weight.dtype), torch.where(negative, -wn.to(weight.dtype), zero))

    @staticmethod
    def backward(ctx, grad: Tensor):
        positive, negative, wp, wn = ctx.saved_tensors
        scale = torch.where(positive, wp.to(grad.dtype), torch.where(negative, wn.to(grad.dtype), 1.0))
        grad_wp = ((grad * positive).sum() / positive.sum().clamp(min=1)).reshape(wp.shape).to(wp.dtype)
        grad_wn = (-(grad * negative).sum() / negative.sum().clamp(min=1)).reshape(wn.shape).to(wn.dtype)
        return grad * scale, grad_wp, grad_wn


def two_bit_codes_and_scale(weight: Tensor) -> tuple[Tensor, Tensor]:
    """The two-bit weights ``alpha * {-2, -1, +1, +2}`` of each filter: integer codes and alpha.

    Meng et al. 2017 constrain the weights to ``(-2, -1, 1, 2)`` times a scale; we did not find
    the paper's own rule for the scale and thresholds, so this is the least-squares one, the
    criterion XNOR-Net and TWN derive theirs from: ``min ||W - alpha B||^2``, per filter as
    XNOR-Net's alpha.  For fixed levels B the best scale is ``<W, B> / <B, B>``; the best B
    for a scale is the nearest level, ``sign(W) * (2 if |W| > 1.5 alpha else 1)``, a split of
    the sorted magnitudes.  So the optimum is the best of the n + 1 splits: with the k
    smallest magnitudes at level 1 (sum S1) and the rest at 2 (sum S2), alpha = (S1 + 2 S2) /
    (k + 4 (n - k)) and the error is ``||W||^2 - (S1 + 2 S2)^2 / (k + 4 (n - k))``.  Exact,
    with no iteration (a sort and a cumulative sum per filter).
    """
    rows = weight.detach().abs().reshape(weight.shape[0], -1)
    n = rows.shape[1]
    ordered, _ = rows.sort(dim=1)
    zero = torch.zeros_like(ordered[:, :1])
    below = torch.cat([zero, ordered.cumsum(dim=1)], dim=1)  # S1 for k = 0 .. n
    total = below[:, -1:]
    k = torch.arange(n + 1, dtype=weight.dtype, device=weight.device)
    numerator = below + 2 * (total - below)
    denominator = k + 4 * (n - k)
    best = (numerator * numerator / denominator).argmax(dim=1, keepdim=True)
    alpha = (numerator.gather(1, best) / denominator.expand_as(numerator).gather(1, best))
    alpha = alpha.reshape((-1,) + (1,) * (weight.dim() - 1))
    levels = 1.0 + (weight.abs() > 1.5 * alpha).to(weight.dtype)
    return sign_plus(weight) * levels, alpha


class TwoBit(torch.autograd.Function):
    """Meng et al.'s two-bit weights ``{-2a, -a, a, 2a}``; backward straight through, as BinaryConnect's."""

    @staticmethod
    def forward(ctx, weight: Tensor) -> Tensor:
        codes, alpha = two_bit_codes_and_scale(weight)
        return alpha * codes

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return grad
