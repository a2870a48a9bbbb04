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


def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights, and random BN statistics, scales and shifts: default statistics (mean 0,
    variance 1) and zero-initialised residual BNs would hide mistakes in the layers they follow."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.copy_(torch.randn(module.num_features, generator=gen) * 0.1)
                module.running_var.copy_(torch.rand(module.num_features, generator=gen) + 0.5)
                module.weight.copy_(torch.rand(module.num_features, generator=gen) + 0.5)
                module.bias.copy_(torch.randn(module.num_features, generator=gen) * 0.1)
            elif isinstance(module, (nn.Conv2d, nn.Linear)):
                # filled in place: a copy through a new tensor doubles the time of VGG's 120M weights
                module.weight.normal_(0.0, (1.0 / module.weight[0].numel()) ** 0.5, generator=gen)
                if module.bias is not None:
                    module.bias.normal_(0.0, 0.1, generator=gen)
    return model


#: the layers :func:`randomise` fills; a reference built by :func:`random_reference` may hold no others
RANDOMISED = (nn.BatchNorm2d, nn.Conv2d, nn.Linear)


def random_reference(build, seed: int = 0) -> nn.Module:
    """``build()`` (a torchvision or timm constructor) with :func:`randomise`'s weights only.

    Built on the meta device, then given memory: its own initialisation never runs, which for
    VGG's 120M classifier weights is most of a test's time.  Every weighted layer must be one
    that :func:`randomise` fills.
    """
    with torch.device("meta"):
        model = build()
    others = {type(m).__name__ for m in model.modules()
              if not isinstance(m, RANDOMISED) and any(True for _ in m.parameters(recurse=False))}  # fmt: skip
    assert not others, f"randomise() does not fill {sorted(others)}"
    model = model.to_empty(device="cpu")
    for name, buffer in model.named_buffers():
        if name.endswith("num_batches_tracked"):
            buffer.zero_()
    return randomise(model, seed)


def assert_matches_torchvision(name: str, size: int = 224) -> None:
    """Strict state-dict load from torchvision's model, same eval outputs at the native size
    (random weights and BN statistics)."""
    reference = random_reference(lambda: getattr(torchvision.models, name)(weights=None)).eval()
    # ours is built on the meta device and takes torchvision's tensors: a strict load checks
    # every name and shape, and building only one model keeps the test fast
    ours = build_on_meta(name)
    ours.load_state_dict(reference.state_dict(), strict=True, assign=True)
    ours.eval()
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(x)
        actual = ours(x)
    assert actual.shape == expected.shape == (1, 1000)
    assert torch.isfinite(expected).all() and expected.std() > 1e-2  # outputs worth comparing
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)
