"""cnnzoo.deploy.fold_bn: batch norm folded exactly, dropout removed, what was left named."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from cnnzoo.deploy import fold_bn
from cnnzoo.layers.batchnorm import BatchNorm2dFromEquations
from cnnzoo.registry import create_model, model_info
from zoo_helpers import randomise

BATCH_NORMS = (nn.modules.batchnorm._BatchNorm, BatchNorm2dFromEquations)


def randomise_all_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """zoo_helpers.randomise, plus the batch norms it leaves alone (1-d, the paper-equation one)."""
    randomise(model, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, BATCH_NORMS) and not isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                module.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                module.bias.copy_(torch.randn(n, generator=gen) * 0.1)
    return model


def small_input(name: str, batch: int = 2) -> torch.Tensor:
    """The smallest square input of at least 32 pixels the net takes (its own where fixed)."""
    info = model_info(name)
    channels, height, width = info.input_size
    if not info.fixed_size:
        height = width = max(info.min_size, 32)
    return torch.randn(batch, channels, height, width)


def count_batch_norms(model: nn.Module) -> int:
    return sum(isinstance(m, BATCH_NORMS) for m in model.modules())


def assert_same_outputs(expected: torch.Tensor, actual: torch.Tensor) -> None:
    assert torch.isfinite(expected).all()
    assert float(expected.abs().max()) > 0  # outputs worth comparing
    assert float((actual - expected).abs().max()) <= 1e-5 * float(expected.abs().max())


def assert_folds_exactly(model: nn.Module, x: torch.Tensor, expected: torch.Tensor) -> None:
    """``fold_bn`` in place (no second copy of the big nets) gives ``expected``, the eval-mode
    output of ``model`` on ``x``, to 1e-5 relative; every folded BN and every dropout is gone.
    tests/test_toolchain.py runs it on every registered model, on the build it traces and exports."""
    before = count_batch_norms(model)
    folded, report = fold_bn(model, inplace=True)
    with torch.no_grad():
        actual = folded(x)
    assert_same_outputs(expected, actual)
    assert report.num_batch_norms == before
    assert count_batch_norms(folded) == len(report.left)  # every folded BN is gone from the net
    assert not any(isinstance(m, nn.Dropout) for m in folded.modules())


@pytest.mark.parametrize("name", ["resnet18", "vgg11_bn", "mobilenet_v1", "googlenet_bn", "inception_v3",
                                  "shufflenet_v1_g3", "resnext29_8x64d", "xception"])  # fmt: skip
def test_conv_bn_nets_keep_no_batch_norm(name):
    model = create_model(name)
    assert count_batch_norms(model) > 0
    folded, report = fold_bn(model)
    assert not report.left, report.format()
    assert not [key for key in folded.state_dict() if "running_mean" in key]
    assert count_batch_norms(model) > 0 and model.training  # the argument is untouched


def test_the_argument_is_not_changed_unless_inplace():
    model = randomise(create_model("resnet20"))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    folded, _ = fold_bn(model)
    assert folded is not model and model.training and not folded.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    same, _ = fold_bn(model, inplace=True)
    assert same is model and count_batch_norms(model) == 0 and not model.training


def test_folded_net_keeps_its_class_and_paths():
    folded, _ = fold_bn(create_model("vgg11_bn"))
    assert type(folded).__name__ == "VGG"
    assert folded.get_classifier() is folded.classifier[6]  # dropouts became Identity, indices kept
    assert isinstance(folded.classifier[2], nn.Identity)


def test_paper_equation_batch_norm_is_folded():
    model = randomise_all_norms(create_model("cnn3", norm="bn")).eval()
    x = small_input("cnn3")
    with torch.no_grad():
        expected = model(x)
    folded, report = fold_bn(model)
    assert len(report.folded) == 3 and count_batch_norms(folded) == 0
    with torch.no_grad():
        assert_same_outputs(expected, folded(x))


def test_pre_activation_batch_norms_are_left_and_said_why():
    folded, report = fold_bn(create_model("preact_resnet18"))
    assert report.folded and report.left
    assert count_batch_norms(folded) == len(report.left)
    # He et al. 2016b's order: BN-ReLU-conv; each block's first BN feeds a ReLU
    assert all("ReLU" in reason for name, reason in report.left if name.endswith("bn1")), report.format()
    assert f"left {len(report.left)}" in report.summary()


def test_densenet_folds_through_its_dropout():
    model = randomise(create_model("densenet_bc_100_12", drop_rate=0.2)).eval()
    x = small_input("densenet_bc_100_12")
    with torch.no_grad():
        expected = model(x)
    folded, report = fold_bn(model)
    # conv1 -> dropout -> norm2 in every bottleneck layer (48 of them)
    assert sum(bn.endswith("norm2") for _, bn in report.folded) == 48
    assert report.dropout_removed
    with torch.no_grad():
        assert_same_outputs(expected, folded(x))


# ------------------------------------------------------------------------------------------
# the cases no registered net has
# ------------------------------------------------------------------------------------------


class BnBefore(nn.Module):
    """BN right before an unpadded conv (folds forward), BN before a padded conv (stays),
    linear -> BN1d (folds backward) and BN1d -> linear (folds forward)."""

    def __init__(self, padding: int = 0) -> None:
        super().__init__()
        self.bn0 = nn.BatchNorm2d(3)
        self.conv = nn.Conv2d(3, 4, 3, padding=padding)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(4, 5)
        self.bn1 = nn.BatchNorm1d(5)
        self.act = nn.ReLU()
        self.bn2 = nn.BatchNorm1d(5)
        self.fc2 = nn.Linear(5, 2)

    def forward(self, x):
        x = self.pool(self.conv(self.bn0(x))).flatten(1)
        return self.fc2(self.bn2(self.act(self.bn1(self.fc1(x)))))


def fold_and_compare(model: nn.Module, x: torch.Tensor):
    model = randomise_all_norms(model).eval()
    with torch.no_grad():
        expected = model(x)
    folded, report = fold_bn(model)
    with torch.no_grad():
        assert_same_outputs(expected, folded(x))
    return folded, report


def test_batch_norm_before_an_unpadded_conv_or_a_linear_folds_forward():
    folded, report = fold_and_compare(BnBefore(padding=0), torch.randn(3, 3, 8, 8))
    assert report.folded == [("fc1", "bn1")]
    assert sorted(report.folded_forward) == [("bn0", "conv"), ("bn2", "fc2")]
    assert count_batch_norms(folded) == 0 and not report.left


def test_batch_norm_before_a_zero_padded_conv_is_left():
    folded, report = fold_and_compare(BnBefore(padding=1), torch.randn(3, 3, 8, 8))
    assert [name for name, _ in report.left] == ["bn0"]
    assert "zero-pads" in report.left[0][1]
    assert isinstance(folded.bn0, nn.BatchNorm2d)


class SharedConv(nn.Module):
    """One conv called twice, and a conv whose output is read twice: neither may fold."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.bn = nn.BatchNorm2d(3)
        self.conv2 = nn.Conv2d(3, 3, 1)
        self.bn2 = nn.BatchNorm2d(3)

    def forward(self, x):
        y = self.bn(self.conv(x)) + self.conv(x)
        z = self.conv2(y)
        return self.bn2(z) + z


def test_a_conv_called_twice_or_read_twice_is_not_folded():
    _, report = fold_and_compare(SharedConv(), torch.randn(2, 3, 4, 4))
    assert not report.folded and [name for name, _ in report.left] == ["bn", "bn2"]


class ShapeBranch(nn.Module):
    """Control flow on the input's size: torch.fx cannot trace this forward."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3)
        self.bn = nn.BatchNorm2d(3)
        self.seq = nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 3, 3), drop=nn.Dropout(0.5), bn=nn.BatchNorm2d(3)))

    def forward(self, x):
        if x.shape[-1] > 4:
            x = self.bn(self.conv(x))
        return self.seq(x)


def test_an_untraceable_level_is_left_and_its_sequential_children_still_fold():
    _, report = fold_and_compare(ShapeBranch(), torch.randn(2, 3, 9, 9))
    assert report.folded == [("seq.conv", "seq.bn")]
    assert report.dropout_removed == ["seq.drop"]
    [(name, reason)] = report.left
    assert name == "bn" and "cannot be traced" in reason
