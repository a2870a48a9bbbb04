"""SqueezeNet, MobileNet v1, ShuffleNet v1 and their blocks (issue 5)."""

import pytest
import torch
import torchvision
from torch import nn

import cnnzoo
from cnnzoo.errors import CnnzooError, ConfigError
from cnnzoo.paper_figures import PAPER_FIGURES, macs_from
from cnnzoo.layers.conv_types import DepthwiseSeparableConv
from cnnzoo.layers.fire import Fire
from cnnzoo.layers.shuffle import ChannelShuffle, ShuffleUnit, channel_shuffle
from cnnzoo.models.shufflenet import ShuffleNetV1
from zoo_helpers import assert_matches_torchvision, random_reference


def count(model: nn.Module, side: int = 224) -> tuple[int, float]:
    """(parameters, millions of multiply-adds) from the per-layer analysis."""
    s = cnnzoo.summary(model.eval(), (3, side, side))
    return s.total_params, s.total_macs / 1e6


def close_to_table(value: float, table: float, rel: float) -> bool:
    return abs(value - table) <= rel * table


# ------------------------------------------------------------------ channel shuffle


@pytest.mark.parametrize("groups, per_group", [(3, 4), (2, 5), (8, 1), (1, 6)])
def test_channel_shuffle_is_the_papers_reshape_transpose_flatten(groups, per_group):
    """Section 3.1: channels as a (g, n) matrix, transposed to (n, g), read out row by row."""
    channels = groups * per_group
    x = torch.arange(channels, dtype=torch.float32).reshape(1, channels, 1, 1).expand(2, channels, 3, 2)
    out = ChannelShuffle(groups)(x.contiguous())
    # output channel j * g + i is input channel i * n + j: one channel of each group in turn
    expected = [i * per_group + j for j in range(per_group) for i in range(groups)]
    assert out[0, :, 0, 0].tolist() == [float(c) for c in expected]
    assert torch.equal(out, x[:, expected])
    if groups > 1 and per_group > 1:
        # a grouped layer after the shuffle sees every input group in each of its groups
        first_group = out[0, :per_group, 0, 0].long() // per_group
        assert len(set(first_group.tolist())) == min(groups, per_group)


def test_channel_shuffle_rejects_indivisible_channels():
    with pytest.raises(ConfigError, match="groups"):
        channel_shuffle(torch.zeros(1, 7, 2, 2), 3)


# ------------------------------------------------------------------ units


def test_shuffle_unit_stride1_adds_and_stride2_concatenates_avgpooled_input():
    """Figure 2b/2c: identity + branch at stride 1; [3x3/2 avg-pool(x), branch] at stride 2."""
    unit = ShuffleUnit(240, 240, groups=3, stride=1).eval()
    x = torch.randn(2, 240, 14, 14)
    with torch.no_grad():
        out = unit(x)
        branch = unit.expand(unit.depthwise(unit.shuffle(unit.compress(x))))
    assert out.shape == x.shape
    torch.testing.assert_close(out, torch.relu(x + branch))

    down = ShuffleUnit(240, 480, groups=3, stride=2).eval()
    with torch.no_grad():
        out = down(x)
    assert out.shape == (2, 480, 7, 7)
    pooled = nn.functional.avg_pool2d(x, 3, stride=2, padding=1)
    torch.testing.assert_close(out[:, :240], torch.relu(pooled))
    # branch: grouped 1x1 (g = 3), depthwise 3x3/2, grouped 1x1 to 480 - 240 channels
    assert down.compress.conv.groups == 3 and down.expand.conv.groups == 3
    assert down.depthwise.conv.groups == down.depthwise.conv.in_channels == 480 // 4
    assert down.expand.conv.out_channels == 240
    assert isinstance(down.depthwise.act, nn.Identity)  # no ReLU after the depthwise conv


def test_shuffle_unit_rejects_mismatched_widths():
    with pytest.raises(ConfigError):
        ShuffleUnit(240, 480, groups=3, stride=1)
    with pytest.raises(ConfigError, match="multiple of groups"):
        ShuffleUnit(24, 100, groups=8, stride=2)


def test_depthwise_separable_cost_is_equation_5():
    """MobileNet Section 3.1, Eq. 5: D_K^2 M D_F^2 + M N D_F^2 multiply-adds (vs Eq. 2's D_K^2 M N D_F^2)."""
    m, n, side = 32, 64, 28
    layer = DepthwiseSeparableConv(m, n)
    s = cnnzoo.summary(layer, (m, side, side))
    assert s.total_macs == 9 * m * side * side + m * n * side * side
    assert s.total_params == 9 * m + m * n + 2 * m + 2 * n  # conv weights (no bias) + BN
    full = cnnzoo.summary(nn.Conv2d(m, n, 3, padding=1, bias=False), (m, side, side)).total_macs
    assert full == 9 * m * n * side * side
    assert full / s.total_macs == pytest.approx(1 / (1 / n + 1 / 9))


def test_fire_module_concatenates_1x1_then_3x3_expansions():
    fire = Fire(96, 16, 64, 64)
    x = torch.randn(1, 96, 13, 13)
    with torch.no_grad():
        out = fire(x)
        squeezed = torch.relu(fire.squeeze(x))
        expected = torch.cat([torch.relu(fire.expand1x1(squeezed)), torch.relu(fire.expand3x3(squeezed))], 1)
    assert out.shape == (1, 128, 13, 13)
    torch.testing.assert_close(out, expected)


# ------------------------------------------------------------------ SqueezeNet


@pytest.mark.parametrize("name", ["squeezenet1_0", "squeezenet1_1"])
def test_squeezenet_loads_torchvision_state_dict_and_matches(name):
    assert_matches_torchvision(name)  # 224x224, random weights (no BN in SqueezeNet)
    theirs = random_reference(lambda: getattr(torchvision.models, name)()).eval()
    ours = cnnzoo.create_model(name).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    # and at an odd size above the minimum, where ceil-mode pooling matters
    x = torch.randn(1, 3, 99, 117)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-4, rtol=1e-4)


def test_squeezenet_1_0_parameters_are_table_1_and_50x_fewer_than_alexnet():
    """SqueezeNet Table 1 (1,248,424 parameters before pruning) and Table 2 (50x fewer than AlexNet)."""
    squeezenet, _ = count(cnnzoo.create_model("squeezenet1_0"))
    assert squeezenet == PAPER_FIGURES["squeezenet1_0"].params
    if "alexnet" in cnnzoo.list_models():
        alexnet = sum(p.numel() for p in cnnzoo.create_model("alexnet").parameters())
    else:
        alexnet = sum(p.numel() for p in torchvision.models.alexnet().parameters())
    assert 45 <= alexnet / squeezenet < 55  # "50x fewer parameters"


# ------------------------------------------------------------------ MobileNet


@pytest.mark.parametrize("name", macs_from("Howard et al. 2017, Table 6"))
def test_mobilenet_width_multiplier_matches_table_6(name):
    """MobileNet Table 6: width multiplier 1.0/0.75/0.5/0.25 at 224 - parameters and multiply-adds
    (4.2/2.6/1.3/0.5M, 569/325/149/41M)."""
    params, macs = count(cnnzoo.create_model(name))
    assert round(params / 1e6, 1) == PAPER_FIGURES[name].params / 1e6
    assert abs(macs - PAPER_FIGURES[name].macs / 1e6) <= 1.0


@pytest.mark.parametrize("side, macs_m", [(224, 569), (192, 418), (160, 290), (128, 186)])
def test_mobilenet_resolution_multiplier_matches_table_7(side, macs_m):
    """MobileNet Table 7: 1.0 MobileNet at 224/192/160/128 - 569/418/290/186M multiply-adds, 4.2M params."""
    params, macs = count(cnnzoo.create_model("mobilenet_v1"), side)
    assert round(params / 1e6, 1) == 4.2
    assert abs(macs - macs_m) <= 1.0


def test_mobilenet_full_convolutions_match_table_4():
    """MobileNet Table 4: Conv MobileNet 29.3M params / 4866M mult-adds vs 4.2M / 569M separable."""
    params, macs = count(cnnzoo.create_model("mobilenet_v1", separable=False))
    assert round(params / 1e6, 1) == 29.3
    assert close_to_table(macs, 4866, 0.001)
    sep_params, sep_macs = count(cnnzoo.create_model("mobilenet_v1"))
    assert 8 < macs / sep_macs < 9  # "8 to 9 times less computation" (Section 3.1)
    assert params / sep_params > 6


def test_mobilenet_any_resolution_and_bad_alpha():
    model = cnnzoo.create_model("mobilenet_v1_025", num_classes=10).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 97, 131)).shape == (1, 10)
        assert model.forward_features(torch.randn(1, 3, 224, 224)).shape == (1, 256, 7, 7)
    with pytest.raises(CnnzooError, match="alpha"):
        cnnzoo.create_model("mobilenet_v1", alpha=0)


# ------------------------------------------------------------------ ShuffleNet


@pytest.mark.parametrize("groups", [1, 2, 3, 4, 8])
def test_shufflenet_complexity_per_group_count_matches_table_1(groups):
    """ShuffleNet Table 1 (complexity row; the issue's "Table 2"): 143/140/137/133/137 MFLOPs at 1x."""
    model = cnnzoo.create_model(f"shufflenet_v1_g{groups}")
    _, macs = count(model)
    assert close_to_table(macs, PAPER_FIGURES[f"shufflenet_v1_g{groups}"].macs / 1e6, 0.015)
    with torch.no_grad():
        features = model.forward_features(torch.randn(1, 3, 224, 224))
    # Table 1: Stage 4 outputs 7x7 maps with 576/800/960/1088/1536 channels
    assert features.shape == (1, {1: 576, 2: 800, 3: 960, 4: 1088, 8: 1536}[groups], 7, 7)


@pytest.mark.parametrize("scale, macs_m", [(0.25, 13), (0.5, 38), (1.5, 292), (2.0, 524)])
def test_shufflenet_scale_matches_tables_2_and_5(scale, macs_m):
    """ShuffleNet Table 2 (0.25x: 13, 0.5x: 38 MFLOPs) and Table 5 (g=3: 1.5x 292, 2x 524 MFLOPs)."""
    _, macs = count(cnnzoo.create_model("shufflenet_v1_g3", scale=scale))
    assert close_to_table(macs, macs_m, 0.03)


@pytest.mark.parametrize("groups, scale", [(8, 0.25), (4, 0.5), (2, 1.5), (1, 2.0)])
def test_shufflenet_scales_round_widths_to_whole_groups(groups, scale):
    """Scaled widths must still split into groups (e.g. g = 4 at 0.25x: 272 / 4 = 68 channels)."""
    model = cnnzoo.create_model(f"shufflenet_v1_g{groups}", scale=scale, num_classes=4).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 4)
    assert model.num_features % (4 * groups) == 0
    table_1_stage4 = {1: 576, 2: 800, 4: 1088, 8: 1536}[groups]
    assert abs(model.num_features - table_1_stage4 * scale) <= 2 * groups


def test_shufflenet_bad_options_fail():
    with pytest.raises(CnnzooError, match="scale"):
        cnnzoo.create_model("shufflenet_v1_g3", scale=-1)
    with pytest.raises(CnnzooError, match="groups"):
        ShuffleNetV1(groups=5)
