"""The output-size formula of 004: floor for convolution, Caffe's ceil for pooling."""

import pytest
import torch
from torch import nn

from cnnzoo.analysis.shape import conv_output_size, explain_chain, parse_layer, pool_output_size
from cnnzoo.errors import ConfigError


@pytest.mark.parametrize(
    "size, kernel, stride, padding, dilation",
    [(227, 11, 4, 0, 1), (224, 7, 2, 3, 1), (32, 3, 1, 1, 1), (17, 3, 2, 0, 1), (20, 3, 1, 2, 2), (8, 5, 3, 1, 1)],
)
def test_conv_formula_matches_pytorch(size, kernel, stride, padding, dilation):
    conv = nn.Conv2d(1, 1, kernel, stride=stride, padding=padding, dilation=dilation)
    expected = conv(torch.zeros(1, 1, size, size)).shape[-1]
    assert conv_output_size(size, kernel, stride, padding, dilation) == expected


@pytest.mark.parametrize("size", [5, 6, 13, 26, 54, 55, 110, 112, 113])
@pytest.mark.parametrize("padding", [0, 1])
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_pool_formula_matches_pytorch_floor_and_ceil(size, padding, ceil_mode):
    pool = nn.MaxPool2d(3, stride=2, padding=padding, ceil_mode=ceil_mode)
    expected = pool(torch.zeros(1, 1, size, size)).shape[-1]
    assert pool_output_size(size, 3, 2, padding, ceil_mode=ceil_mode) == expected


def test_floor_and_ceil_differ_where_a_window_hangs_over():
    # ZFNet: 110 -> 55 only with Caffe's rounding up (floor gives 54)
    assert pool_output_size(110, 3, 2, ceil_mode=True) == 55
    assert pool_output_size(110, 3, 2, ceil_mode=False) == 54
    # and agree where the windows tile exactly
    assert pool_output_size(55, 3, 2, ceil_mode=True) == pool_output_size(55, 3, 2) == 27


def test_alexnet_chain_from_002():
    layers = [parse_layer(t) for t in ("conv:11/4/0", "pool:3/2", "conv:5/1/2", "pool:3/2", "conv:3/1/1", "pool:3/2")]
    lines, final = explain_chain(227, layers)
    assert final == 6
    assert "floor((227 + 2*0 - 11) / 4) + 1 = 55" in lines[1]
    assert lines[2].endswith("= 27")


def test_explain_shows_the_other_rounding_when_it_differs():
    lines, _ = explain_chain(112, [parse_layer("pool:3/2")])
    assert "= 55" in lines[1] and "ceil (Caffe) gives 56" in lines[1]


@pytest.mark.parametrize("text", ["conv", "conv:", "conv:a", "pool:3/2/1/1", "dense:3", "conv:1/2/3/4/5"])
def test_malformed_layer_is_a_config_error(text):
    with pytest.raises(ConfigError, match="malformed layer"):
        parse_layer(text)


def test_window_larger_than_input_is_an_error():
    with pytest.raises(ConfigError, match="does not fit"):
        conv_output_size(5, 7)
