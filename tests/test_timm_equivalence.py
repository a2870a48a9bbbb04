"""timm's ResNet, Wide ResNet, ResNeXt, DenseNet, VGG, MobileNet v1 and ResNet-v2 give cnnzoo's outputs.

Both nets get random weights and random BN statistics, scales and shifts (timm starts each
residual branch's last BN at zero, and default statistics hide BN mistakes), and are compared
at the native 224x224 input in eval mode.  Most pairs share their state dict as it is; VGG,
MobileNet v1 and ResNet-v2 need the renaming or reshaping that each test states.  Nothing is
downloaded.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cnnzoo
from zoo_helpers import random_reference

timm = pytest.importorskip("timm")

PAIRS = [
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "wide_resnet50_2", "wide_resnet101_2",
    "resnext50_32x4d", "resnext101_32x8d", "densenet121", "densenet161", "densenet169", "densenet201",
]  # fmt: skip


def _input() -> torch.Tensor:
    return torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))


def _assert_same_outputs(reference: nn.Module, ours: nn.Module, state: dict) -> None:
    """Load ``state`` (the reference's, renamed for ours) strictly; same eval outputs at 224."""
    ours.load_state_dict(state, strict=True, assign=True)
    reference.eval(), ours.eval()
    x = _input()
    with torch.no_grad():
        expected, actual = reference(x), ours(x)
    assert torch.isfinite(expected).all() and expected.std() > 1e-2  # outputs worth comparing
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)


def _ours_on_meta(name: str) -> nn.Module:
    with torch.device("meta"):
        return cnnzoo.create_model(name)


@pytest.mark.parametrize("name", PAIRS)
def test_matches_timm_at_224_with_random_bn(name):
    reference = random_reference(lambda: timm.create_model(name, pretrained=False))
    _assert_same_outputs(reference, _ours_on_meta(name), reference.state_dict())


@pytest.mark.parametrize("name", ["vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"])
def test_vgg_matches_timm_with_its_conv_head_reshaped(name):
    """timm's VGG head is a ConvMlp ("pre_logits"): FC6 as a 7x7 convolution over pool5 and FC7 as a
    1x1 convolution, then global pooling and the classifier.  At 224 pool5 is exactly 7x7, so the
    convolutions are our fully connected layers with their kernels flattened (C, H, W order, as
    ``torch.flatten`` reads pool5): the test reshapes the two kernels to share the state."""
    reference = random_reference(lambda: timm.create_model(name, pretrained=False))
    state = reference.state_dict()
    renamed = {key: value for key, value in state.items() if key.startswith("features.")}
    for ours_index, theirs in ((0, "pre_logits.fc1"), (3, "pre_logits.fc2")):
        renamed[f"classifier.{ours_index}.weight"] = state[f"{theirs}.weight"].flatten(1)
        renamed[f"classifier.{ours_index}.bias"] = state[f"{theirs}.bias"]
    renamed["classifier.6.weight"], renamed["classifier.6.bias"] = state["head.fc.weight"], state["head.fc.bias"]
    assert len(renamed) == len(state)
    _assert_same_outputs(reference, _ours_on_meta(name), renamed)


def test_mobilenet_v1_matches_timm_with_relu_for_relu6():
    """timm's mobilenetv1_100 is our mobilenet_v1 layer for layer (the same 13 depthwise separable
    layers and strides, BN after every convolution, 4,231,976 parameters) except that it clips its
    activations, ReLU6 where Howard et al. (Fig. 3) and we use ReLU.  With its ReLU6s swapped for
    ReLU the outputs are equal.  The input is scaled up so that activations exceed 6 (BN in eval
    mode does not undo the scale): there the clipping changes the outputs, so the swap is tested."""
    reference = random_reference(lambda: timm.create_model("mobilenetv1_100", pretrained=False)).eval()
    relu6 = [name for name, m in reference.named_modules() if isinstance(m, nn.ReLU6)]
    assert len(relu6) == 1 + 2 * 13  # the stem and both convolutions of every separable layer
    renamed = {}
    for key, value in reference.state_dict().items():
        for theirs, ours in (("conv_stem.", "stem.conv."), ("bn1.", "stem.bn.")):
            if key.startswith(theirs):
                key = ours + key[len(theirs):]
        renamed[key] = value
    # timm groups the 13 layers in stages (blocks.S.I); ours are one sequence (blocks.N)
    prefixes = [f"blocks.{s}.{i}." for s, stage in enumerate(reference.blocks) for i in range(len(stage))]
    assert len(prefixes) == 13
    for index, prefix in enumerate(prefixes):
        for theirs, ours in (("conv_dw.", "depthwise.conv."), ("bn1.", "depthwise.bn."), ("conv_pw.", "pointwise.conv."),
                             ("bn2.", "pointwise.bn.")):  # fmt: skip
            for key in [k for k in renamed if k.startswith(prefix + theirs)]:
                renamed[f"blocks.{index}.{ours}{key[len(prefix + theirs):]}"] = renamed.pop(key)
    ours = _ours_on_meta("mobilenet_v1")
    ours.load_state_dict(renamed, strict=True, assign=True)
    ours.eval()
    x = 50 * _input()
    with torch.no_grad():
        clipped = reference(x)
        for name in relu6:
            parent, _, child = name.rpartition(".")
            setattr(reference.get_submodule(parent), child, nn.ReLU(inplace=True))
        expected, actual = reference(x), ours(x)
    assert torch.isfinite(expected).all() and expected.std() > 1e-2
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(clipped, expected, atol=1e-2, rtol=1e-2)


def _resnetv2_state(state: dict) -> dict:
    """timm ResNet-v2 names -> ours; its first block's pre-activation BN is our stem BN."""
    renamed = {}
    for key, value in state.items():
        if key.startswith("stem.conv."):
            key = "conv1." + key[len("stem.conv."):]
        elif key.startswith("stages.0.blocks.0.norm1."):
            key = "bn1." + key[len("stages.0.blocks.0.norm1."):]
        elif key.startswith("stages."):
            _, stage, _, block, rest = key.split(".", 4)
            rest = rest.replace("downsample.conv.", "downsample.0.")
            for number in "123":
                rest = rest.replace(f"norm{number}.", f"bn{number}.")
            key = f"layer{int(stage) + 1}.{block}.{rest}"
        elif key.startswith("norm."):
            key = "final_bn." + key[len("norm."):]
        elif key == "head.fc.weight":
            value = value.flatten(1)  # timm's classifier is a 1x1 convolution
            key = "fc.weight"
        elif key == "head.fc.bias":
            key = "fc.bias"
        renamed[key] = value
    return renamed


@pytest.mark.parametrize("depth", [50, 101])
def test_preact_resnet_matches_timm_resnetv2(depth):
    """timm's resnetv2_50/101 are our pre-activation ResNets but for the stem's order: timm runs
    conv1 -> max-pool and lets the first unit's BN-ReLU pre-activate the pooled map, we run
    conv1 -> BN-ReLU -> max-pool (ResNet's stem) and the first unit takes that activated map
    (He et al. 2016b, Section 4).  Same parameters (that BN moves from the first unit to the
    stem); the outputs are equal whenever every scale of that BN is positive, since max-pooling
    commutes with a per-channel non-decreasing map (BN with a positive scale, then ReLU).
    randomise() draws the scales in [0.5, 1.5]; with one negative scale they differ."""
    reference = random_reference(lambda: timm.create_model(f"resnetv2_{depth}", pretrained=False))
    ours = _ours_on_meta(f"preact_resnet{depth}")
    _assert_same_outputs(reference, ours, _resnetv2_state(reference.state_dict()))
    with torch.no_grad():
        ours.bn1.weight[0] = -1.0  # the same tensor in both nets (assign=True)
        assert reference.stages[0].blocks[0].norm1.weight[0] == -1.0
        x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))  # small: only "differs" is asked
        assert not torch.allclose(ours(x), reference(x), atol=1e-4)
