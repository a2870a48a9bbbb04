"""The ResNet family: pre-activation, Wide ResNet, ResNeXt, stochastic depth, and blocks as a
sequence (deleting and reordering blocks, the lesion study of Veit et al. 2016)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnzoo.errors import ConfigError
from cnnzoo.paper_figures import params_from
from cnnzoo.layers.drop_path import DropPath, drop_path_rates
from cnnzoo.layers.residual import BasicBlock, PreActBasicBlock, PreActBottleneck
from cnnzoo.registry import create_model, list_models
from zoo_helpers import assert_matches_torchvision, build_on_meta, count_params


def test_every_name_is_registered():
    names = set(list_models())
    expected = {
        "preact_resnet18", "preact_resnet34", "preact_resnet50", "preact_resnet101", "preact_resnet152",
        "preact_resnet164", "preact_resnet1001",
        "wrn28_10", "wrn40_4", "wrn16_8", "wide_resnet_cifar", "wide_resnet50_2", "wide_resnet101_2",
        "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d", "resnext29_8x64d", "resnext29_16x64d",
        "resnet110_sd",
    }
    assert expected <= names


# --------------------------------------------------------------------------------------------
# Pre-activation ResNets (He et al. 2016b)


@pytest.mark.parametrize("name, params", params_from("He et al. 2016b, Table 4").items())
def test_preact_cifar_parameters(name, params):
    """He et al. 2016b, Table 4: pre-activation ResNet-164 has 1.7M and ResNet-1001 10.2M
    parameters (within 5%)."""
    model = build_on_meta(name)
    assert count_params(model) == pytest.approx(params, rel=0.05)
    depth = int(name[len("preact_resnet"):])
    assert len(model.residual_blocks()) == (depth - 2) // 3


def test_preact_unit_is_identity_plus_branch():
    """Fig. 4(e): nothing follows the addition, so a unit with a zero branch is the identity
    (negative inputs pass), where the original unit's final ReLU clips them."""
    torch.manual_seed(0)
    preact = PreActBasicBlock(8, 8).eval()
    original = BasicBlock(8, 8).eval()
    nn.init.zeros_(preact.conv2.weight)
    nn.init.zeros_(original.bn2.weight)
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(preact(x), x)
        torch.testing.assert_close(original(x), torch.relu(x))


def test_preact_projection_reads_the_activated_input():
    """Where the shortcut is a projection it takes the pre-activated input (authors' code,
    'both_preact'); an identity shortcut takes the raw input."""
    torch.manual_seed(0)
    block = PreActBottleneck(16, 16, 64).eval()
    assert block.preact == "shared"
    nn.init.zeros_(block.conv3.weight)  # branch off: the output is the shortcut alone
    x = torch.randn(1, 16, 4, 4)
    with torch.no_grad():
        expected = block.downsample(torch.relu(block.bn1(x)))
        torch.testing.assert_close(block(x), expected)
    assert PreActBottleneck(64, 16, 64).preact == "own"


def test_preact_nets_run():
    torch.manual_seed(0)
    imagenet = create_model("preact_resnet18", num_classes=4).eval()
    assert imagenet.layer1[0].preact == "none"  # the stem's BN-ReLU already activated it
    assert imagenet.layer2[0].preact == "shared"
    cifar = create_model("preact_resnet164").eval()
    with torch.no_grad():
        assert imagenet(torch.randn(1, 3, 64, 64)).shape == (1, 4)
        features = cifar.forward_features(torch.randn(1, 3, 32, 32))
    assert features.shape == (1, 256, 8, 8)
    assert (features >= 0).all()  # the final BN-ReLU after the last unit


def test_preact_resnet1001_is_finite_when_freshly_built():
    """333 identity units: with fresh (unit) running statistics the eval-mode BNs normalise
    nothing and the stream would overflow; each branch's last conv starts at zero (Goyal et
    al. 2017) by default for this depth, so the fresh net is finite in eval mode."""
    torch.manual_seed(0)
    model = create_model("preact_resnet1001").eval()
    units = model.residual_blocks()
    assert len(units) == 333
    assert all(torch.count_nonzero(u.last_conv().weight) == 0 for u in units)
    with torch.no_grad():
        out = model(torch.randn(2, 3, 8, 8))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_preact_zero_init_starts_units_as_identity_and_trains():
    """A zeroed last conv (not the BN before it, whose ReLU would pass no gradient) makes an
    identity unit return its input exactly, and that conv still receives a gradient."""
    torch.manual_seed(0)
    model = create_model("preact_resnet164", zero_init_residual=True).eval()
    unit = model.layer1[1]
    x = torch.randn(2, 64, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(unit(x), x, rtol=0, atol=0)
    model.train()
    model(torch.randn(2, 3, 16, 16)).sum().backward()
    assert unit.last_conv().weight.grad.abs().sum() > 0
    assert torch.count_nonzero(create_model("preact_resnet164").layer1[1].last_conv().weight) > 0


# --------------------------------------------------------------------------------------------
# Wide ResNets (Zagoruyko & Komodakis 2016)


@pytest.mark.parametrize("name, params", params_from("Zagoruyko & Komodakis 2016, Table 4").items())
def test_wrn_parameters(name, params):
    """Zagoruyko & Komodakis 2016, Table 4 (and Table 5): WRN-28-10 36.5M, WRN-40-4 8.9M,
    WRN-16-8 11.0M parameters (within 5%)."""
    assert count_params(build_on_meta(name)) == pytest.approx(params, rel=0.05)


def test_wide_resnet_cifar_builder():
    general = build_on_meta("wide_resnet_cifar", depth=16, width=8)
    assert count_params(general) == count_params(build_on_meta("wrn16_8"))
    assert [stage[0].out_channels for stage in general.stages()] == [128, 256, 512]
    assert len(general.residual_blocks()) == 6
    for options in ({"depth": 27}, {"width": 0}):
        with pytest.raises(ConfigError):
            create_model("wide_resnet_cifar", **options)


def test_wide_dropout_sits_between_the_convolutions():
    """Section 2.3: dropout between the convolutions, active only in training mode."""
    torch.manual_seed(0)
    model = create_model("wide_resnet_cifar", depth=10, width=2, drop_rate=0.3)
    block = model.residual_blocks()[0]
    assert isinstance(block.dropout, nn.Dropout) and block.dropout.p == 0.3
    seen = []
    block.dropout.register_forward_hook(lambda m, args, out: seen.append(args[0].shape))
    block.conv2.register_forward_pre_hook(lambda m, args: seen.append("conv2"))
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        model.eval()
        torch.testing.assert_close(model(x), model(x))
        model.train()
        assert not torch.equal(model(x), model(x))
    assert seen[0] == (2, 32, 16, 16) and seen[1] == "conv2"


@pytest.mark.parametrize("name", ["wide_resnet50_2", "wide_resnet101_2"])
def test_wide_resnet_torchvision_equivalence(name):
    assert_matches_torchvision(name)


# --------------------------------------------------------------------------------------------
# ResNeXt (Xie et al. 2017)


@pytest.mark.parametrize("name", ["resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d"])
def test_resnext_torchvision_equivalence(name):
    assert_matches_torchvision(name)


@pytest.mark.parametrize("name, params", params_from("Xie et al. 2017, Table 7").items())
def test_resnext29_parameters(name, params):
    """Xie et al. 2017, Table 7: ResNeXt-29 8x64d has 34.4M and 16x64d 68.1M parameters."""
    model = build_on_meta(name)
    assert count_params(model) == pytest.approx(params, rel=0.05)
    cardinality = int(name.split("_")[1].split("x")[0])
    first = model.residual_blocks()[0]
    assert first.conv2.groups == cardinality and first.conv2.out_channels == cardinality * 64


def test_resnext_grouped_bottleneck():
    """Table 1 of Xie et al.: conv2 of ResNeXt-50 (32x4d) is a 3x3 with 32 groups, 128 wide."""
    model = build_on_meta("resnext50_32x4d")
    conv = model.layer1[0].conv2
    assert (conv.groups, conv.in_channels, conv.out_channels) == (32, 128, 128)
    torch.manual_seed(0)
    cifar = create_model("resnext29_8x64d").eval()
    with torch.no_grad():
        assert cifar(torch.randn(1, 3, 32, 32)).shape == (1, 10)


# --------------------------------------------------------------------------------------------
# Stochastic depth (Huang et al. 2016)


def test_linear_decay_rule():
    """Huang et al. 2016, Section 3: p_l = 1 - l/L (1 - p_L); resnet110_sd has p_L = 0.5."""
    rates = drop_path_rates(4, 0.5)
    assert rates == [0.125, 0.25, 0.375, 0.5]
    model = create_model("resnet110_sd")
    blocks = model.residual_blocks()
    assert len(blocks) == 54
    probs = [block.drop_path.drop_prob for block in blocks]
    assert probs == pytest.approx([0.5 * (l + 1) / 54 for l in range(54)])
    with pytest.raises(ConfigError):
        drop_path_rates(4, 1.0)


def test_drop_path_eval_is_training_expectation_per_sample():
    """Per-sample mode: the mean over many independent draws is ``p * x``, the eval output."""
    torch.manual_seed(0)
    layer = DropPath(0.3, per_sample=True)
    x = torch.randn(1, 4, 3, 3).expand(20000, 4, 3, 3)
    layer.train()
    mean = layer(x).mean(0, keepdim=True)
    layer.eval()
    expected = layer(x[:1])
    torch.testing.assert_close(expected, 0.7 * x[:1])
    torch.testing.assert_close(mean, expected, atol=0.03, rtol=0.02)


def test_stochastic_depth_block_expectation_equals_eval():
    """Huang et al. 2016, Section 3: in training a block outputs x + b f(x), b ~ Bernoulli(p);
    at test time x + p f(x), the training-mode expectation.  Checked exactly on a
    pre-activation block (linear in b) with its batch norms in eval mode: each training
    output is one of the two outcomes, the keep frequency is p, and the expectation
    p (x + f) + (1 - p) x equals the eval output."""
    torch.manual_seed(0)
    block = PreActBasicBlock(8, 8, drop_path=0.25).eval()
    x = torch.randn(2, 8, 5, 5)
    with torch.no_grad():
        evaluated = block(x)
        block.drop_path.train()
        outcomes = [block(x) for _ in range(400)]
        kept_output = x + block.conv2(block.act2(block.bn2(block.conv1(block.act1(block.bn1(x))))))
    kept = 0
    for out in outcomes:
        if torch.allclose(out, kept_output, atol=1e-6):
            kept += 1
        else:
            torch.testing.assert_close(out, x)
    assert kept / len(outcomes) == pytest.approx(0.75, abs=0.07)
    torch.testing.assert_close(0.75 * kept_output + 0.25 * x, evaluated, atol=1e-5, rtol=1e-5)


def test_stochastic_depth_net_trains_and_evaluates():
    torch.manual_seed(0)
    model = create_model("resnet110_sd")
    x = torch.randn(2, 3, 32, 32)
    model.train()
    out = model(x)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x))


def test_every_residual_net_takes_drop_path_rate():
    for name in ["resnet50", "preact_resnet18", "wrn16_8", "resnext29_8x64d", "wide_resnet50_2"]:
        model = build_on_meta(name, drop_path_rate=0.2)
        probs = [block.drop_path.drop_prob for block in model.residual_blocks()]
        assert probs[-1] == pytest.approx(0.2) and probs == sorted(probs)


# --------------------------------------------------------------------------------------------
# Blocks as a sequence (the lesion study)


def test_residual_blocks_are_listed_in_order():
    model = build_on_meta("resnet34")
    blocks = model.residual_blocks()
    assert len(blocks) == 3 + 4 + 6 + 3
    assert model.block_names()[:4] == ["layer1.0", "layer1.1", "layer1.2", "layer2.0"]
    assert blocks[3] is model.layer2[0]


@pytest.mark.parametrize("name", ["resnet20", "preact_resnet18", "wrn16_8"])
def test_deleting_a_block_equals_switching_off_its_branch(name):
    """Veit et al. 2016: deleting a block leaves its identity shortcut.  The edited net runs
    and computes exactly what the full net computes with that block's branch zeroed."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=10).eval()
    blocks = model.residual_blocks()
    index = next(i for i, b in enumerate(blocks) if b.keeps_shape and i > 0)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        full = model(x)
        last_conv = [m for m in blocks[index].modules() if isinstance(m, nn.Conv2d)][-1]
        last_bn = blocks[index].last_bn() if hasattr(blocks[index], "last_bn") else None
        if last_bn is not None:  # post-activation: zero the last BN, the branch outputs 0
            saved = last_bn.weight.clone()
            last_bn.weight.zero_()
        else:
            saved = last_conv.weight.clone()
            last_conv.weight.zero_()
        switched_off = model(x)
        (last_bn.weight if last_bn is not None else last_conv.weight).copy_(saved)
        model.delete_blocks([index])
        lesioned = model(x)
    assert len(model.residual_blocks()) == len(blocks) - 1
    assert lesioned.shape == full.shape
    torch.testing.assert_close(lesioned, switched_off)
    assert not torch.allclose(lesioned, full)


def test_blocks_that_change_shape_cannot_be_deleted():
    model = build_on_meta("resnet20")
    with pytest.raises(ConfigError) as excinfo:
        model.delete_blocks(3)  # layer2.0: 16 -> 32 channels, stride 2
    assert "layer2.0" in str(excinfo.value) and "\n" not in str(excinfo.value)
    with pytest.raises(ConfigError):
        model.delete_blocks(99)
    assert len(model.residual_blocks()) == 9


def test_reordering_blocks_within_a_stage():
    """Veit et al. 2016, Section 5: swapping blocks of one stage; the net still runs."""
    torch.manual_seed(0)
    model = create_model("resnet20").eval()
    blocks = model.residual_blocks()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
        swapped = list(blocks)
        swapped[1], swapped[2] = swapped[2], swapped[1]
        model.set_residual_blocks(swapped)
        after = model(x)
    assert model.residual_blocks()[1] is blocks[2] and model.layer1[1] is blocks[2]
    assert after.shape == before.shape and not torch.allclose(after, before)
    with pytest.raises(ConfigError):  # a stage-1 block cannot follow a stage-2 block
        model.set_residual_blocks([blocks[0], blocks[3], blocks[1]] + blocks[4:])
    with pytest.raises(ConfigError):  # the widths must chain
        model.set_residual_blocks(blocks[:3] + blocks[4:])
    with pytest.raises(ConfigError):
        model.set_residual_blocks([nn.Identity()])


def test_plain_twin_blocks_can_be_listed_and_deleted():
    torch.manual_seed(0)
    model = create_model("plain20").eval()
    model.delete_blocks([1, 2])
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    assert len(model.residual_blocks()) == 7
