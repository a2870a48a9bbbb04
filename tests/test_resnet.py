"""ResNet (He et al. 2016): torchvision equivalence, Table 1 and Table 6 figures, shortcut
options A/B/C, v1 / v1.5 bottlenecks, the CIFAR nets and their plain twins."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cnnzoo
from cnnzoo.errors import CnnzooError, ConfigError
from cnnzoo.paper_figures import macs_from, params_from
from cnnzoo.layers.residual import BasicBlock, Bottleneck, ZeroPadShortcut, make_shortcut
from cnnzoo.registry import create_model, model_info
from zoo_helpers import assert_matches_torchvision, build_on_meta, count_params


@pytest.fixture(scope="module")
def resnet1202():
    torch.manual_seed(0)
    return create_model("resnet1202")


def count_macs(model: nn.Module, size: int) -> int:
    """Multiply-adds of convolutions and fc layers, as the papers count them (cnnzoo.summary)."""
    return cnnzoo.summary(model, (model.in_chans, size, size)).total_macs


def weighted_layers(model: nn.Module, include_shortcuts: bool = False) -> int:
    """Conv and fc layers on the main path (projection shortcuts are not counted by the paper)."""
    count = 0
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)) and (include_shortcuts or "downsample" not in name):
            count += 1
    return count


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"])
def test_torchvision_equivalence(name):
    assert_matches_torchvision(name)


def test_our_initialisation_gives_a_working_net():
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=7).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = model(x)
        features = model.forward_features(x)
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    assert features.shape == (2, 512, 2, 2)
    torch.testing.assert_close(model.forward_head(features), out)
    assert model.forward_head(features, pre_logits=True).shape == (2, model.num_features)
    model.reset_classifier(0)
    with torch.no_grad():
        assert model(x).shape == (2, 512)


# Table 1 of He et al. 2016, the "FLOPs" row at 224x224 (multiply-adds), in G
TABLE1_GFLOPS = {name: macs / 1e9 for name, macs in macs_from("He et al. 2016, Table 1").items()}


@pytest.mark.parametrize("name", TABLE1_GFLOPS)
def test_table1_flops_row(name):
    """He et al. 2016, Table 1, FLOPs row: 1.8 / 3.6 / 3.8 / 7.6 / 11.3 x 10^9 multiply-adds
    at 224x224, reproduced within 3% with the paper's bottleneck (stride on the first 1x1)."""
    macs = count_macs(build_on_meta(name, stride_in_1x1=True), 224)
    assert macs / 1e9 == pytest.approx(TABLE1_GFLOPS[name], rel=0.03)


def test_v15_resnet50_costs_4_1_gflops():
    """He et al. 2016, Table 1 gives ResNet-50 3.8 G; torchvision's v1.5 needs 4.1 G because the
    first 1x1 of the three downsampling blocks runs at the input resolution: each costs an
    extra 3/4 * 56*56*256*128 multiply-adds."""
    v1 = count_macs(build_on_meta("resnet50", stride_in_1x1=True), 224)
    v15 = count_macs(build_on_meta("resnet50"), 224)
    assert v15 / 1e9 == pytest.approx(4.1, rel=0.01)
    assert v15 - v1 == 3 * (56 * 56 - 28 * 28) * 256 * 128


def test_table1_output_sizes():
    """He et al. 2016, Table 1, "output size" column: conv1 112x112, conv2_x 56x56, conv3_x
    28x28, conv4_x 14x14, conv5_x 7x7 (channels 64/256/512/1024/2048 for ResNet-50), as
    ``cnnzoo summary --depth 1`` shows them."""
    rows = cnnzoo.summary(build_on_meta("resnet50"), (3, 224, 224), depth=1).rows
    shapes = {row.name: row.output_shape for row in rows}
    assert {name: shapes[name] for name in ["conv1", "maxpool", "layer1", "layer2", "layer3", "layer4"]} == {
        "conv1": (64, 112, 112),
        "maxpool": (64, 56, 56),
        "layer1": (256, 56, 56),
        "layer2": (512, 28, 28),
        "layer3": (1024, 14, 14),
        "layer4": (2048, 7, 7),
    }
    assert shapes["fc"] == (1000,)


@pytest.mark.parametrize("name, depth", [("resnet18", 18), ("resnet34", 34), ("resnet50", 50),
                                         ("resnet101", 101), ("resnet152", 152)])
def test_table1_depths(name, depth):
    """He et al. 2016, Table 1: the weighted layers (convs on the main path plus fc) give the name."""
    assert weighted_layers(build_on_meta(name)) == depth


# --------------------------------------------------------------------------------------------
# Shortcut options A, B, C and the stride placement


def test_zero_pad_shortcut_subsamples_and_pads():
    x = torch.randn(2, 16, 8, 8)
    out = ZeroPadShortcut(16, 32, stride=2)(x)
    assert out.shape == (2, 32, 4, 4)
    torch.testing.assert_close(out[:, :16], x[:, :, ::2, ::2])
    assert (out[:, 16:] == 0).all()


def test_make_shortcut_per_option():
    assert make_shortcut("A", 64, 64, 1) is None
    assert isinstance(make_shortcut("A", 64, 128, 2), ZeroPadShortcut)
    assert make_shortcut("B", 64, 64, 1) is None
    projection = make_shortcut("B", 64, 128, 2)
    assert isinstance(projection[0], nn.Conv2d) and projection[0].stride == (2, 2)
    assert isinstance(projection[1], nn.BatchNorm2d)
    assert make_shortcut("C", 64, 64, 1) is not None
    with pytest.raises(ConfigError):
        make_shortcut("D", 64, 64, 1)


def _shape_changes(model):
    return [(b.in_channels, b.out_channels) for b in model.residual_blocks() if not b.keeps_shape]


@pytest.mark.parametrize("name", ["resnet34", "resnet50"])
def test_shortcut_options_parameter_counts(name):
    """He et al. 2016, Section 3.3 / Table 3: A is parameter-free, B adds a projection (1x1 conv +
    BN) where the shape changes, C one on every block."""
    models = {option: build_on_meta(name, shortcut=option) for option in "ABC"}
    params = {option: count_params(model) for option, model in models.items()}
    blocks = models["A"].residual_blocks()
    changing = [(b.in_channels, b.out_channels) for b in blocks if not b.keeps_shape]
    keeping = [(b.in_channels, b.out_channels) for b in blocks if b.keeps_shape]
    assert len(changing) == (3 if name == "resnet34" else 4)  # ResNet-50's first block widens 64->256
    assert params["B"] - params["A"] == sum(i * o + 2 * o for i, o in changing)
    assert params["C"] - params["B"] == sum(i * o + 2 * o for i, o in keeping)
    if name == "resnet34":
        # ResNet-34 with option B is torchvision's, with 21.8M parameters
        assert params["B"] == 21_797_672


@pytest.mark.parametrize("option", ["A", "B", "C"])
def test_shortcut_options_shapes(option):
    torch.manual_seed(0)
    model = create_model("resnet18", shortcut=option, num_classes=5).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert model.forward_features(x).shape == (1, 512, 2, 2)
        assert model(x).shape == (1, 5)
    for block in model.residual_blocks():
        if option == "A":
            assert block.downsample is None or isinstance(block.downsample, ZeroPadShortcut)
        elif option == "C" or not block.keeps_shape:
            assert isinstance(block.downsample[0], nn.Conv2d)
        else:
            assert block.downsample is None


def test_shortcut_a_on_bottlenecks_runs():
    torch.manual_seed(0)
    model = create_model("resnet50", shortcut="A").eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 1000)


def test_stride_placement_v1_and_v15():
    """v1 (the paper) strides the first 1x1 of a downsampling bottleneck, v1.5 (torchvision)
    the 3x3: same parameters and output shapes, different multiply-adds."""
    v1 = build_on_meta("resnet50", stride_in_1x1=True)
    v15 = build_on_meta("resnet50")
    assert (v1.layer2[0].conv1.stride, v1.layer2[0].conv2.stride) == ((2, 2), (1, 1))
    assert (v15.layer2[0].conv1.stride, v15.layer2[0].conv2.stride) == ((1, 1), (2, 2))
    assert count_params(v1) == count_params(v15) == 25_557_032
    torch.manual_seed(0)
    block_v1 = Bottleneck(256, 128, 512, stride=2, stride_in_1x1=True).eval()
    block_v15 = Bottleneck(256, 128, 512, stride=2).eval()
    x = torch.randn(1, 256, 14, 14)
    with torch.no_grad():
        assert block_v1(x).shape == block_v15(x).shape == (1, 512, 7, 7)


def test_bad_options_are_one_line_config_errors():
    for options in ({"shortcut": "D"}, {"drop_path_rate": 1.5}):
        with pytest.raises(ConfigError) as excinfo:
            create_model("resnet18", **options)
        assert "\n" not in str(excinfo.value)
    with pytest.raises(CnnzooError):
        create_model("resnet18", not_an_option=1)
    with pytest.raises(ConfigError):
        create_model("plain20", drop_path_rate=0.2)


# --------------------------------------------------------------------------------------------
# CIFAR nets (Section 4.2) and their plain twins

# Table 6 of He et al. 2016: parameters of the CIFAR-10 ResNets
TABLE6_PARAMS = params_from("He et al. 2016, Table 6")


@pytest.mark.parametrize("name", TABLE6_PARAMS)
def test_table6_parameters(name, request):
    """He et al. 2016, Table 6: 0.27M, 0.46M, 0.66M, 0.85M, 1.7M and 19.4M parameters."""
    model = request.getfixturevalue("resnet1202") if name == "resnet1202" else build_on_meta(name)
    assert count_params(model) == pytest.approx(TABLE6_PARAMS[name], rel=0.05)
    assert weighted_layers(model, include_shortcuts=True) == int(name[len("resnet"):])
    assert model.num_classes == 10 and model_info(name).input_size == (3, 32, 32)


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
def test_plain_twins_have_the_same_layers(depth):
    """Section 4.2: with option A shortcuts the ResNets have exactly the plain nets' parameters."""
    plain = build_on_meta(f"plain{depth}")
    residual = build_on_meta(f"resnet{depth}")
    assert count_params(plain) == count_params(residual)
    assert weighted_layers(plain, include_shortcuts=True) == depth
    assert all(not block.residual for block in plain.residual_blocks())


def test_plain_block_has_no_shortcut():
    """A block whose branch is zeroed outputs relu(x) with a shortcut and 0 without one."""
    torch.manual_seed(0)
    residual = BasicBlock(16, 16).eval()
    plain = BasicBlock(16, 16, residual=False).eval()
    for block in (residual, plain):
        nn.init.zeros_(block.bn2.weight)  # the branch now outputs bn2's shift, zero
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(residual(x), torch.relu(x))
        assert (plain(x) == 0).all()


def test_cifar_net_runs_and_keeps_the_contract():
    torch.manual_seed(0)
    model = create_model("resnet20").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (2, 64, 8, 8)
        torch.testing.assert_close(model(x), model.forward_head(features))


def test_resnet1202_builds_and_runs(resnet1202):
    """Section 4.2: the 1202-layer net (n = 200) builds and runs a 32x32 batch, finite in both
    modes when freshly built: with fresh running statistics the eval-mode BNs are identities,
    and 600 un-normalised residual additions would overflow float32 but for the zero-initialised
    last BN of each block (Goyal et al. 2017), on by default for this depth."""
    assert len(resnet1202.residual_blocks()) == 600
    assert all(torch.count_nonzero(b.last_bn().weight) == 0 for b in resnet1202.residual_blocks())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        for mode in (True, False):
            out = resnet1202.train(mode)(x)
            assert out.shape == (2, 10) and torch.isfinite(out).all(), f"training={mode}"


def test_zero_init_residual_makes_each_block_its_shortcut():
    """Goyal et al. 2017, Section 5.1: gamma = 0 in each block's last BN; the block then
    computes relu(shortcut(x)), and the zeroed scale still receives a gradient."""
    torch.manual_seed(0)
    model = create_model("resnet20", zero_init_residual=True).eval()
    block = model.layer1[1]
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(block(x), torch.relu(x), rtol=0, atol=0)
    model.train()
    model(torch.randn(4, 3, 16, 16)).sum().backward()
    assert block.last_bn().weight.grad.abs().sum() > 0
    # the paper's own He initialisation stays the default for the shallower nets
    assert torch.count_nonzero(create_model("resnet20").layer1[1].last_bn().weight) == 16


def test_min_size_runs():
    """ImageNet ResNets pool globally, so even a 1x1 input runs (the registry records 1)."""
    assert model_info("resnet50").min_size == 1
    model = create_model("resnet18").eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 1, 1)).shape == (1, 1000)


def test_in_chans():
    model = create_model("resnet18", in_chans=1, num_classes=3).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 32, 32)).shape == (1, 3)
