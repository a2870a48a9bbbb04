"""timm's ResNet, Wide ResNet, ResNeXt and DenseNet load into cnnzoo's and give the same outputs.

Both nets get random weights and random BN statistics, scales and shifts (timm starts each
residual branch's last BN at zero, and default statistics hide BN mistakes), and are compared
at the native 224x224 input in eval mode.  Nothing is downloaded.
"""

from __future__ import annotations

import pytest
import torch

import cnnzoo
from zoo_helpers import randomise

timm = pytest.importorskip("timm")

PAIRS = [
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "wide_resnet50_2", "wide_resnet101_2",
    "resnext50_32x4d", "resnext101_32x8d", "densenet121", "densenet161", "densenet169", "densenet201",
]  # fmt: skip


@pytest.mark.parametrize("name", PAIRS)
def test_matches_timm_at_224_with_random_bn(name):
    reference = randomise(timm.create_model(name, pretrained=False)).eval()
    with torch.device("meta"):
        ours = cnnzoo.create_model(name)
    ours.load_state_dict(reference.state_dict(), strict=True, assign=True)
    ours.eval()
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, actual = reference(x), ours(x)
    assert torch.isfinite(expected).all() and expected.std() > 1e-2  # outputs worth comparing
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)
