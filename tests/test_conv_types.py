"""Dilated and deformable convolutions (issue 5)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnzoo
from cnnzoo.errors import ConfigError
from cnnzoo.layers.conv_types import DeformableConv2d, dilated_conv


def _dilated_stack() -> nn.Sequential:
    return nn.Sequential(dilated_conv(1, 1, 1), dilated_conv(1, 1, 2), dilated_conv(1, 1, 4))


@pytest.mark.parametrize("dilation", [1, 2, 3])
def test_dilated_conv_taps_are_dilation_apart_and_keep_the_size(dilation):
    conv = dilated_conv(1, 1, dilation, bias=False)
    nn.init.ones_(conv.weight)
    impulse = torch.zeros(1, 1, 15, 15)
    impulse[0, 0, 7, 7] = 1.0
    with torch.no_grad():
        response = conv(impulse)[0, 0]
    assert response.shape == (15, 15)
    taps = {(int(r) - 7, int(c) - 7) for r, c in response.nonzero()}
    assert taps == {(dy * dilation, dx * dilation) for dy in (-1, 0, 1) for dx in (-1, 0, 1)}
    assert conv.weight.numel() == 9  # no extra parameters


def test_three_dilated_convs_see_15x15_empirically():
    """Yu & Koltun 2015, Section 2: dilations 1, 2, 4 give a (2^(i+2) - 1)^2 = 15x15 receptive field."""
    stack = _dilated_stack()
    for conv in stack:
        nn.init.constant_(conv.weight, 1.0)
    x = torch.zeros(1, 1, 41, 41, requires_grad=True)
    stack(x)[0, 0, 20, 20].backward()
    rows, cols = x.grad[0, 0].nonzero(as_tuple=True)
    assert (int(rows.max() - rows.min()) + 1, int(cols.max() - cols.min()) + 1) == (15, 15)
    assert int(rows.min()) == 20 - 7


def test_summary_receptive_field_of_dilated_stack_is_15():
    """The per-layer analysis: 3x3 convs with dilation 1, 2, 4 reach 3, 7 and 15 pixels."""
    rows = [row for row in cnnzoo.summary(_dilated_stack(), (1, 32, 32)).rows if row.type == "Conv2d"]
    assert [row.receptive_field for row in rows] == [3, 7, 15]
    assert [row.output_shape[-1] for row in rows] == [32, 32, 32]


def test_dilated_conv_rejects_bad_dilation():
    with pytest.raises(ConfigError, match="dilation"):
        dilated_conv(3, 3, 0)


@pytest.mark.parametrize(
    "kernel, stride, padding, dilation, groups",
    [(3, 1, None, 1, 1), (3, 2, 1, 1, 1), (3, 1, None, 2, 1), (5, 1, 0, 1, 2), (1, 1, 0, 1, 1)],
)
def test_deformable_conv_starts_as_plain_conv(kernel, stride, padding, dilation, groups):
    """Dai et al. 2017, Section 2.3: zero-initialised offsets, so the layer starts as a plain convolution."""
    layer = DeformableConv2d(4, 6, kernel, stride, padding, dilation, groups=groups)
    x = torch.randn(2, 4, 13, 11)
    with torch.no_grad():
        expected = F.conv2d(
            x,
            layer.conv.weight,
            layer.conv.bias,
            stride=stride,
            padding=layer.conv.padding,
            dilation=dilation,
            groups=groups,
        )
        out = layer(x)
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    assert layer.offset.out_channels == 2 * kernel * kernel
    assert not layer.offset.weight.any() and not layer.offset.bias.any()


def test_deformable_conv_offsets_move_the_sampling_points():
    """A constant offset of +1 pixel in x samples the input one pixel to the right."""
    layer = DeformableConv2d(3, 5, 3)
    with torch.no_grad():
        layer.offset.bias[1::2] = 1.0  # (dy, dx) per tap: dx = +1
        x = torch.randn(1, 3, 10, 12)
        shifted = layer(x)
        plain = F.conv2d(x, layer.conv.weight, layer.conv.bias, padding=1)
    # away from the right border, output (y, x) equals the plain conv at (y, x + 1)
    torch.testing.assert_close(shifted[..., :-2], plain[..., 1:-1], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(shifted, plain)


def test_deformable_offsets_learn():
    """The offset branch gets gradients (it is trained with the rest of the net)."""
    layer = DeformableConv2d(2, 3, 3)
    layer(torch.randn(1, 2, 8, 8)).square().sum().backward()
    assert layer.offset.weight.grad.abs().sum() > 0
