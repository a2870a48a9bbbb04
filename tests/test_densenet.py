"""DenseNet (Huang et al. 2017): torchvision equivalence, Table 1 layouts, Table 2 parameter
counts, dense blocks and transitions."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnzoo.errors import ConfigError
from cnnzoo.layers.dense import DenseBlock, DenseLayer, Transition, compressed_width
from cnnzoo.paper_figures import params_from
from cnnzoo.models.densenet import densenet_cifar
from cnnzoo.registry import create_model, model_info
from zoo_helpers import assert_matches_torchvision, build_on_meta, count_params


def weighted_layers(model: nn.Module) -> int:
    return sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules())


@pytest.mark.parametrize("name", ["densenet121", "densenet161", "densenet169", "densenet201"])
def test_torchvision_equivalence(name):
    """Strict state-dict load from torchvision's model, same eval outputs (random weights)."""
    assert_matches_torchvision(name)


@pytest.mark.parametrize("name, depth", [("densenet121", 121), ("densenet161", 161),
                                         ("densenet169", 169), ("densenet201", 201)])
def test_table1_depths(name, depth):
    """Huang et al. 2017, Table 1: two convs per dense layer, the first conv, three transition
    convs and the fc layer add up to the name."""
    assert weighted_layers(build_on_meta(name)) == depth


def test_densenet264_follows_table1():
    """Huang et al. 2017, Table 1, DenseNet-264: blocks of 6/12/64/48 layers, k = 32.
    (Counted as above these give 265 weighted layers; the table's name is one short.)"""
    model = build_on_meta("densenet264")
    blocks = [m for m in model.features if isinstance(m, DenseBlock)]
    assert [len(b) for b in blocks] == [6, 12, 64, 48]
    assert model.growth_rate == 32 and weighted_layers(model) == 265
    assert model.num_features == 2688


def test_table1_output_sizes():
    """Huang et al. 2017, Table 1, "Output Size": 112 after the 7x7 conv, 56 after pooling and
    dense block 1, 28 / 14 / 7 after the transitions and blocks 2-4."""
    model = build_on_meta("densenet121").eval()
    sides = {}
    for name, module in model.features.named_children():
        module.register_forward_hook(lambda m, args, out, name=name: sides.__setitem__(name, out.shape[-1]))
    with torch.device("meta"):
        model(torch.empty(1, 3, 224, 224))
    assert [sides[k] for k in ["conv0", "pool0", "denseblock1", "transition1", "denseblock2",
                               "transition2", "denseblock3", "transition3", "denseblock4"]] == \
        [112, 56, 56, 28, 28, 14, 14, 7, 7]


# Table 2 of Huang et al. 2017: parameters of the CIFAR nets
TABLE2_PARAMS = params_from("Huang et al. 2017, Table 2")


@pytest.mark.parametrize("name", TABLE2_PARAMS)
def test_table2_parameters(name):
    """Huang et al. 2017, Table 2: DenseNet-BC (L=100, k=12) 0.8M, (L=250, k=24) 15.3M,
    (L=190, k=40) 25.6M parameters (within 5%)."""
    model = build_on_meta(name)
    assert count_params(model) == pytest.approx(TABLE2_PARAMS[name], rel=0.05)
    depth = int(name.split("_")[2])
    assert weighted_layers(model) == depth


def test_table2_original_densenet():
    """Huang et al. 2017, Table 2: DenseNet (L=40, k=12), no bottleneck nor compression, 1.0M."""
    with torch.device("meta"):
        model = densenet_cifar(40, 12, bottleneck=False, compression=1.0)
    assert count_params(model) == pytest.approx(1.0e6, rel=0.05)
    assert weighted_layers(model) == 40


def test_cifar_bc_structure_and_run():
    """Section 3: a 2k-filter first conv, transitions halve the maps (compression 0.5)."""
    torch.manual_seed(0)
    model = create_model("densenet_bc_100_12").eval()
    assert model.features.conv0.out_channels == 24
    transitions = [m for m in model.features if isinstance(m, Transition)]
    assert [(t.in_channels, t.out_channels) for t in transitions] == [(216, 108), (300, 150)]
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = model.forward_features(x)
        out = model(x)
    assert features.shape == (2, 342, 8, 8)
    torch.testing.assert_close(out, model.forward_head(features))
    assert out.shape == (2, 10)


def test_dropout_follows_every_convolution_but_the_first():
    """Section 4.2: "we add a dropout layer after each convolutional layer (except the first
    one)", so the transitions' 1x1 convolutions get one too; none at drop_rate=0 (torchvision)."""
    model = create_model("densenet_bc_100_12", drop_rate=0.2)
    transitions = [m for m in model.features if isinstance(m, Transition)]
    assert len(transitions) == 2
    for t in transitions:
        assert [type(m).__name__ for m in t] == ["BatchNorm2d", "ReLU", "Conv2d", "Dropout", "AvgPool2d"]
        assert t.dropout.p == 0.2
    layer = model.features.denseblock1.denselayer1
    assert layer.dropout.p == 0.2  # applied after conv1 and after conv2 of every dense layer
    # live in training mode, the identity in eval mode
    t = transitions[0]
    x = torch.randn(1, t.in_channels, 8, 8)
    with torch.no_grad():
        assert not torch.equal(t.train()(x), t(x))
        assert torch.equal(t.eval()(x), t(x))
    plain = create_model("densenet_bc_100_12")
    assert not any(isinstance(m, nn.Dropout) for m in plain.modules())


def test_dense_block_concatenates_every_earlier_output():
    """Eq. 2: layer l reads [x_0, ..., x_{l-1}]; the block outputs in + L * k maps, and its
    input comes through unchanged as the first channels."""
    torch.manual_seed(0)
    block = DenseBlock(3, 8, growth_rate=4).eval()
    assert [layer.in_channels for layer in block.values()] == [8, 12, 16]
    x = torch.randn(1, 8, 5, 5)
    with torch.no_grad():
        out = block(x)
        first = block["denselayer1"](x)
    assert out.shape == (1, 20, 5, 5)
    torch.testing.assert_close(out[:, :8], x)
    torch.testing.assert_close(out[:, 8:12], first)


def test_bottleneck_layer_and_compression():
    """Section 3: the bottleneck's 1x1 produces 4k maps; compression keeps floor(theta m)."""
    layer = DenseLayer(64, 12)
    assert layer.conv1.out_channels == 48 and layer.conv2.out_channels == 12
    plain = DenseLayer(64, 12, bottleneck=False)
    assert plain.conv1.kernel_size == (3, 3) and plain.conv1.out_channels == 12
    assert compressed_width(165, 0.5) == 82
    with pytest.raises(ConfigError):
        compressed_width(64, 0.0)
    with pytest.raises(ConfigError):
        densenet_cifar(101, 12)


def test_min_sizes():
    """The registry's smallest sides run and one pixel fewer does not."""
    torch.manual_seed(0)
    for name, size in [("densenet121", 29), ("densenet_bc_100_12", 4)]:
        assert model_info(name).min_size == size
        model = create_model(name).eval()
        with torch.no_grad():
            assert model(torch.randn(1, 3, size, size)).shape[0] == 1
            with pytest.raises(RuntimeError):
                model(torch.randn(1, 3, size - 1, size - 1))


def test_cifar_stem_is_an_option_of_the_cifar_builders():
    """`-o stem=...` reaches the CIFAR builders (it once collided with the stem they pass themselves)."""
    assert create_model("densenet_bc_100_12", stem="cifar").features.conv0.kernel_size == (3, 3)
    imagenet_stem = create_model("densenet_bc_100_12", stem="imagenet")
    assert imagenet_stem.features.conv0.kernel_size == (7, 7) and hasattr(imagenet_stem.features, "pool0")
