"""``synthetic``: random images with learnable structure, for smoke tests without any files.

Each class has a fixed smooth random pattern (a coarse 4x4 random grid upsampled bilinearly to the
image size, per channel); an image is its class pattern at a random brightness and contrast plus
pixel noise, stored as uint8.  A small network learns it well above chance within an epoch, so a
training smoke test can check that the loss falls.

Options after a colon, comma-separated: ``synthetic:classes=10,channels=3,size=32,train=1000,
test=200,noise=0.35,seed=0`` (the defaults).  ``seed`` fixes the images; the split seed of
:func:`load_dataset` only chooses the validation split.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cnnzoo.data.base import DataError, TensorSplit

DEFAULTS = {"classes": 10, "channels": 3, "size": 32, "train": 1000, "test": 200, "noise": 0.35, "seed": 0}


def parse_options(arg: str) -> dict:
    options = dict(DEFAULTS)
    for item in filter(None, (part.strip() for part in arg.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in DEFAULTS:
            raise DataError(f"bad synthetic option {item!r}; use key=value with keys {', '.join(DEFAULTS)}")
        try:
            options[key] = type(DEFAULTS[key])(value)
        except ValueError:
            raise DataError(f"bad synthetic option {item!r}: {key} must be a {type(DEFAULTS[key]).__name__}") from None
    if (
        options["classes"] < 2
        or options["channels"] < 1
        or options["size"] < 4
        or options["train"] < 1
        or options["test"] < 0
    ):
        raise DataError(f"synthetic options out of range: {options}")
    return options


def make_images(n: int, patterns: torch.Tensor, noise: float, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    k, c, h, w = patterns.shape
    labels = torch.randint(0, k, (n,), generator=g)
    contrast = 0.6 + 0.4 * torch.rand(n, 1, 1, 1, generator=g)
    brightness = 0.15 * torch.randn(n, 1, 1, 1, generator=g)
    x = patterns[labels] * contrast + brightness + noise * torch.randn(n, c, h, w, generator=g)
    images = (128 + 64 * x).round().clamp(0, 255).to(torch.uint8)
    return images, labels


def load_synthetic(arg: str = "", seed: int = 0) -> tuple[TensorSplit, TensorSplit, str]:
    """``(train, test, canonical options string)``."""
    o = parse_options(arg)
    g = torch.Generator().manual_seed(o["seed"])
    coarse = torch.randn(o["classes"], o["channels"], 4, 4, generator=g)
    patterns = F.interpolate(coarse, size=(o["size"], o["size"]), mode="bilinear", align_corners=False)
    patterns = patterns / patterns.flatten(1).std(dim=1).clamp_min(1e-6).view(-1, 1, 1, 1)
    classes = [f"class_{i}" for i in range(o["classes"])]
    train = TensorSplit(*make_images(o["train"], patterns, o["noise"], g), classes)
    test = TensorSplit(*make_images(o["test"], patterns, o["noise"], g), classes)
    canonical = ",".join(f"{k}={v}" for k, v in o.items() if v != DEFAULTS[k])
    return train, test, canonical
