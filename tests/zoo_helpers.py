"""Helpers shared by the model test files."""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from cnnzoo.registry import create_model


def build_on_meta(name: str, **options) -> nn.Module:
    """Build without allocating or initialising weights (shapes and counts only)."""
    with torch.device("meta"):
        return create_model(name, **options)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def assert_matches_torchvision(name: str, size: int = 64) -> None:
    """Strict state-dict load from torchvision's model, same eval outputs (random weights)."""
    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)(weights=None).eval()
    # ours is built on the meta device and takes torchvision's tensors: a strict load checks
    # every name and shape, and building only one model keeps the test fast
    ours = build_on_meta(name)
    ours.load_state_dict(reference.state_dict(), strict=True, assign=True)
    ours.eval()
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        expected = reference(x)
        actual = ours(x)
    assert actual.shape == expected.shape == (1, 1000)
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)
