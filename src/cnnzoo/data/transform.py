"""The batch transform: uint8 images -> float32 normalised network input, augmented in whole batches.

Fitting the network's input size (``input_size``): a stored image smaller than the input by at
most 25% per side is *padded* with background (zeros) and centred, as LeCun et al. (1998, section
II.A) did to put the 28x28 MNIST digits in LeNet-5's 32x32 field; larger differences (e.g. CIFAR's
32x32 into a 224x224 network) and shrinking use bilinear *resizing* (``resize="auto"``; force one
with ``resize="pad"`` or ``resize="bilinear"``).

Used by both loaders (:mod:`cnnzoo.data.pipeline` for in-memory splits, :mod:`cnnzoo.data.folders`
for image folders) and by prediction; it depends on neither.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from cnnzoo.errors import ConfigError


def _pair(size) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    h, w = (int(s) for s in size)
    return (h, w)


@dataclass
class AugmentParams:
    """Per-sample augmentation parameters (CPU or device tensors of one length)."""

    dy: torch.Tensor  # crop offset in the padded image (int64)
    dx: torch.Tensor
    flip: torch.Tensor  # bool
    erase: torch.Tensor  # int64 (n, 4): y0, y1, x0, x1 (empty box: no erasing)

    def __getitem__(self, index) -> "AugmentParams":
        return AugmentParams(self.dy[index], self.dx[index], self.flip[index], self.erase[index])

    def to(self, device) -> "AugmentParams":
        return AugmentParams(*(t.to(device, non_blocking=True) for t in (self.dy, self.dx, self.flip, self.erase)))


class BatchTransform:
    """uint8 ``(B, C, H, W)`` images -> float32 normalised ``(B, C', h, w)`` with batch augmentation.

    ``src_size`` is the stored ``(H, W)``; ``input_size`` the network's; ``out_chans`` repeats a
    single channel (grayscale into a 3-channel net).  With ``crop_padding`` the output is a crop of
    the input-size image padded by that many pixels (zeros); ``flip`` mirrors left-right; erasing
    sets a rectangle to 0 after normalisation, i.e. to the data set's mean (torchvision's default).
    """

    def __init__(
        self,
        src_size: Sequence[int],
        input_size: Sequence[int] | int | None,
        mean: Sequence[float],
        std: Sequence[float],
        augment: dict,
        *,
        in_chans: int,
        out_chans: int | None = None,
        resize: str = "auto",
        device: torch.device | str = "cpu",
    ) -> None:
        self.src_size = _pair(src_size)
        self.input_size = _pair(input_size) if input_size is not None else self.src_size
        self.augment = augment
        self.in_chans = in_chans
        self.out_chans = out_chans or in_chans
        if self.out_chans != in_chans and in_chans != 1:
            raise ConfigError(f"cannot turn {in_chans}-channel images into {self.out_chans} channels")
        if len(mean) != in_chans or len(std) != in_chans:
            raise ConfigError(f"mean/std need {in_chans} values, got {len(mean)}/{len(std)}")
        self.device = torch.device(device)
        self.mode = self._resize_mode(resize)
        self.pad = int(augment["crop_padding"])
        std_t = torch.tensor(std, dtype=torch.float32)
        mean_t = torch.tensor(mean, dtype=torch.float32)
        self.scale = (1.0 / (255.0 * std_t)).view(1, -1, 1, 1).to(self.device)
        self.shift = (-mean_t / std_t).view(1, -1, 1, 1).to(self.device)

    def _resize_mode(self, resize: str) -> str:
        (sh, sw), (th, tw) = self.src_size, self.input_size
        if (sh, sw) == (th, tw):
            return "none"
        if resize not in ("auto", "pad", "bilinear"):
            raise ConfigError(f"resize must be 'auto', 'pad' or 'bilinear', got {resize!r}")
        if resize == "pad" and (th < sh or tw < sw):
            raise ConfigError(f"cannot pad {sh}x{sw} images to a smaller {th}x{tw} input; use resize='bilinear'")
        if resize == "auto":
            close = sh <= th <= 1.25 * sh and sw <= tw <= 1.25 * sw
            return "pad" if close else "bilinear"
        return resize

    # -- parameters -------------------------------------------------------------------------

    @property
    def random(self) -> bool:
        return self.pad > 0 or bool(self.augment["flip"]) or float(self.augment["random_erasing"]) > 0

    def draw(self, n: int, generator: torch.Generator) -> AugmentParams:
        """Draw the parameters of ``n`` samples on the CPU (always the same count of random numbers)."""
        h, w = self.input_size
        g = generator
        dy = torch.randint(0, 2 * self.pad + 1, (n,), generator=g)
        dx = torch.randint(0, 2 * self.pad + 1, (n,), generator=g)
        flip = torch.rand(n, generator=g) < (0.5 if self.augment["flip"] else 0.0)
        p_erase = float(self.augment["random_erasing"])
        do_erase = torch.rand(n, generator=g) < p_erase
        lo, hi = self.augment["erasing_scale"]
        area = (torch.rand(n, generator=g) * (hi - lo) + lo) * (h * w)
        rlo, rhi = (math.log(r) for r in self.augment["erasing_ratio"])
        ratio = torch.exp(torch.rand(n, generator=g) * (rhi - rlo) + rlo)
        eh = torch.sqrt(area * ratio).round().long().clamp(1, h)
        ew = torch.sqrt(area / ratio).round().long().clamp(1, w)
        y0 = (torch.rand(n, generator=g) * (h - eh + 1)).long()
        x0 = (torch.rand(n, generator=g) * (w - ew + 1)).long()
        eh, ew = eh * do_erase, ew * do_erase
        erase = torch.stack([y0, y0 + eh, x0, x0 + ew], dim=1)
        return AugmentParams(dy, dx, flip, erase)

    # -- the transform ----------------------------------------------------------------------

    def __call__(self, images: torch.Tensor, params: AugmentParams | None = None) -> torch.Tensor:
        """Transform a batch already on ``device``; ``params`` (on ``device``) None = no augmentation."""
        if images.dim() != 4 or images.shape[1] != self.in_chans:
            raise ValueError(f"expected (B, {self.in_chans}, H, W) images, got {tuple(images.shape)}")
        th, tw = self.input_size
        x = images
        if self.mode == "bilinear":
            x = F.interpolate(x.float(), size=(th, tw), mode="bilinear", align_corners=False, antialias=True)
            x = x.round_().clamp_(0, 255)
            extra_h = extra_w = (0, 0)
        elif self.mode == "pad":
            dh, dw = th - x.shape[2], tw - x.shape[3]
            extra_h, extra_w = (dh // 2, dh - dh // 2), (dw // 2, dw - dw // 2)
        else:
            extra_h = extra_w = (0, 0)
        p = self.pad
        if params is not None and (p > 0 or bool(self.augment["flip"])):
            x = self._crop_flip(x, params, p, extra_h, extra_w)
        elif extra_h != (0, 0) or extra_w != (0, 0):
            x = F.pad(x, (extra_w[0], extra_w[1], extra_h[0], extra_h[1]))
        x = torch.addcmul(self.shift, x.to(torch.float32), self.scale)
        if params is not None and float(self.augment["random_erasing"]) > 0:
            rows = torch.arange(th, device=x.device).view(1, 1, th, 1)
            cols = torch.arange(tw, device=x.device).view(1, 1, 1, tw)
            e = params.erase.view(-1, 4, 1, 1, 1)
            mask = ((rows >= e[:, 0]) & (rows < e[:, 1])) & ((cols >= e[:, 2]) & (cols < e[:, 3]))
            x.masked_fill_(mask, 0.0)
        if self.out_chans != self.in_chans:
            x = x.expand(-1, self.out_chans, -1, -1)
        return x.contiguous()

    def _crop_flip(self, x, params: AugmentParams, p: int, extra_h, extra_w) -> torch.Tensor:
        """One gather: pad by ``p`` (plus centring), crop at ``(dy, dx)``, mirror where ``flip``."""
        b, c = x.shape[:2]
        th, tw = self.input_size
        padded = F.pad(x, (p + extra_w[0], p + extra_w[1], p + extra_h[0], p + extra_h[1]))
        pw = padded.shape[3]
        dev = x.device
        rows = params.dy.view(b, 1) + torch.arange(th, device=dev).view(1, th)
        ar = torch.arange(tw, device=dev).view(1, tw)
        cols = params.dx.view(b, 1) + torch.where(params.flip.view(b, 1), tw - 1 - ar, ar)
        flat = (rows.view(b, th, 1) * pw + cols.view(b, 1, tw)).view(b, 1, th * tw)
        out = padded.flatten(2).gather(2, flat.expand(b, c, th * tw))
        return out.view(b, c, th, tw)
