"""Batch norm from its equations behaves exactly like nn.BatchNorm2d, in both modes."""

import pytest
import torch
from torch import nn

from cnnzoo.layers.batchnorm import BatchNorm2dFromEquations


def test_training_and_eval_match_pytorch_batchnorm():
    ours, theirs = BatchNorm2dFromEquations(6, momentum=0.2), nn.BatchNorm2d(6, momentum=0.2)
    with torch.no_grad():
        for module in (ours, theirs):
            module.weight.copy_(torch.linspace(0.5, 2.0, 6))
            module.bias.copy_(torch.linspace(-1.0, 1.0, 6))
    for step in range(3):
        x = torch.randn(4, 6, 5, 5) * (step + 1) + step
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.running_mean, theirs.running_mean)
    torch.testing.assert_close(ours.running_var, theirs.running_var)
    assert ours.num_batches_tracked.item() == theirs.num_batches_tracked.item() == 3
    ours.eval(), theirs.eval()
    x = torch.randn(2, 6, 5, 5)
    torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-5)


def test_state_dicts_are_interchangeable():
    theirs = nn.BatchNorm2d(3)
    theirs.train()(torch.randn(8, 3, 4, 4))
    ours = BatchNorm2dFromEquations(3)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    ours.eval(), theirs.eval()
    x = torch.randn(1, 3, 4, 4)
    torch.testing.assert_close(ours(x), theirs(x))


def test_training_output_is_normalised_per_channel_and_eval_ignores_the_batch():
    bn = BatchNorm2dFromEquations(2)
    y = bn(torch.randn(16, 2, 3, 3) * 5 + 3)
    torch.testing.assert_close(y.mean(dim=(0, 2, 3)), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(dim=(0, 2, 3), unbiased=False), torch.ones(2), atol=1e-3, rtol=0)
    bn.eval()
    single = torch.randn(1, 2, 3, 3)
    batch = torch.cat([single, torch.randn(3, 2, 3, 3)])
    torch.testing.assert_close(bn(single), bn(batch)[:1])


def test_one_value_per_channel_is_refused_in_training():
    with pytest.raises(ValueError, match="more than one value per channel"):
        BatchNorm2dFromEquations(2)(torch.randn(1, 2, 1, 1))
