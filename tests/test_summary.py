"""The per-layer analysis: counts against FlopCounterMode, receptive fields, memory, formats."""

import csv
import io
import json
import math

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import cnnzoo
from cnnzoo.analysis import GLOBAL
from cnnzoo.errors import ConfigError, InputSizeError


def _flop_counter_macs(model, input_size) -> int:
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.randn(1, *input_size))
    return counter.get_total_flops() // 2


@pytest.mark.parametrize(
    "name, input_size",
    [("lenet5", (1, 32, 32)), ("alexnet", (3, 224, 224)), ("alexnet_paper", (3, 227, 227)),
     ("vgg11_bn", (3, 64, 64)), ("zfnet", (3, 224, 224)), ("nin_cifar", (3, 32, 32))],
)
def test_macs_equal_flop_counter_mode_over_two(name, input_size):
    """Conv and linear multiply-adds agree with torch.utils.flop_counter (FLOPs = 2 x MACs)."""
    model = cnnzoo.create_model(name)
    s = cnnzoo.summary(model, input_size)
    assert s.total_macs == _flop_counter_macs(model, input_size)
    assert s.total_flops == 2 * s.total_macs
    assert sum(r.macs for r in s.rows) == s.total_macs


def test_grouped_dilated_and_transposed_convs_are_counted_like_flop_counter():
    model = nn.Sequential(
        nn.Conv2d(8, 16, 3, padding=2, dilation=2, groups=4),
        nn.ConvTranspose2d(16, 8, 4, stride=2, padding=1),
        nn.Conv2d(8, 8, 1),
    )
    s = cnnzoo.summary(model, (8, 10, 10))
    assert s.total_macs == _flop_counter_macs(model, (8, 10, 10))
    assert s.rows[1].macs == 16 * 10 * 10 * (8 // 4) * 9


def test_params_split_trainable_and_frozen():
    model = cnnzoo.create_model("lenet5")
    for p in model.features.parameters():
        p.requires_grad_(False)
    s = cnnzoo.summary(model)
    frozen = sum(p.numel() for p in model.features.parameters())
    assert s.total_params == sum(p.numel() for p in model.parameters())
    assert s.non_trainable_params == frozen
    assert s.trainable_params == s.total_params - frozen
    assert "trainable" in s.to_table().splitlines()[2]
    assert s.row("f6").trainable_params == s.row("f6").params == 84 * 120 + 84


def test_receptive_fields_of_alexnet_and_vgg16():
    """Classic values: AlexNet conv1 11 / pool5 195 (jump 32); VGG-16 conv5_3 196, pool5 212."""
    alex = cnnzoo.summary("alexnet_paper")
    assert (alex.row("features.0").receptive_field, alex.row("features.0").effective_stride) == (11, 4)
    assert (alex.row("features.14").receptive_field, alex.row("features.14").effective_stride) == (195, 32)
    vgg = cnnzoo.summary("vgg16")
    convs = [r for r in vgg.rows if r.type == "Conv2d"]
    assert [c.receptive_field for c in convs[:2]] == [3, 5]  # two 3x3 convs see a 5x5 window
    assert convs[-1].receptive_field == 196
    assert vgg.row("features.30").receptive_field == 212
    assert vgg.row("classifier.6").receptive_field == GLOBAL


def test_receptive_field_follows_branches_and_additions():
    class TwoBranch(nn.Module):
        def __init__(self):
            super().__init__()
            self.small, self.large = nn.Conv2d(1, 1, 3, padding=1), nn.Conv2d(1, 1, 7, padding=3)

        def forward(self, x):
            return torch.cat([self.small(x), self.large(x)], 1) + 1

    s = cnnzoo.summary(TwoBranch(), (1, 16, 16))
    assert s.rows[-1].name == "large" and s.rows[-1].receptive_field == 7
    assert s.rows[1].name == "" or s.rows[1].name == "small"


def test_asymmetric_kernels_give_rectangular_fields():
    s = cnnzoo.summary(nn.Sequential(nn.Conv2d(1, 1, (1, 7), padding=(0, 3)), nn.Conv2d(1, 1, (7, 1), padding=(3, 0))), (1, 9, 9))
    assert s.rows[1].receptive_field == (1, 7)
    assert s.rows[2].receptive_field == 7


def test_vgg16_activation_memory_against_the_lecture():
    """002 (cs231n's table): 'TOTAL memory: 24M * 4 bytes ~= 96MB / image'.  The table's own rows
    (input, every conv output, every pool output, the FC outputs) add up to about 15.2M values,
    not 24M; the summary counts those rows exactly (docs/analysis.md has the numbers)."""
    s = cnnzoo.summary("vgg16")
    side = {64: 224, 128: 112, 256: 56, 512: 28}
    lecture_rows = [3 * 224 * 224]
    for width, convs in ((64, 2), (128, 2), (256, 3), (512, 3)):
        lecture_rows += [width * side[width] ** 2] * convs + [width * (side[width] // 2) ** 2]
    lecture_rows += [512 * 14 * 14] * 3 + [512 * 7 * 7] + [4096, 4096, 1000]
    conv_pool_fc = [r.activations for r in s.rows if r.type in ("Input", "Conv2d", "MaxPool2d", "Linear")]
    assert conv_pool_fc == lecture_rows
    assert sum(lecture_rows) == pytest.approx(15.2e6, rel=0.01)
    # in-place ReLUs and eval-mode dropout store nothing; the adaptive pool (a no-op at 224) does
    assert all(r.activations == 0 for r in s.rows if r.type in ("ReLU", "Dropout"))
    assert s.activation_count == sum(lecture_rows) + 512 * 7 * 7
    assert s.activation_bytes == 4 * s.activation_count
    assert s.activation_count < 24e6 * 0.7  # the lecture's 24M total overstates its own rows


def test_out_of_place_activations_are_counted():
    s = cnnzoo.summary(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(inplace=False)), (1, 5, 5))
    assert s.rows[2].activations == 2 * 3 * 3
    s_inplace = cnnzoo.summary(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(inplace=True)), (1, 5, 5))
    assert s_inplace.rows[2].activations == 0


def test_depth_folds_rows_without_losing_counts():
    full = cnnzoo.summary("vgg11_bn")
    top = cnnzoo.summary("vgg11_bn", depth=1)
    assert [r.name for r in top.rows] == ["input", "features", "avgpool", "classifier"]
    for key in ("params", "macs", "activations", "other_ops"):
        assert sum(getattr(r, key) for r in top.rows) == sum(getattr(r, key) for r in full.rows)
    assert sum(r.params for r in top.rows) == top.total_params
    assert top.row("features").output_shape == (512, 7, 7)
    assert top.row("classifier").output_shape == (1000,)
    # BN and pooling are listed separately, never in the multiply-adds
    bn_rows = [r for r in full.rows if r.type == "BatchNorm2d"]
    assert bn_rows and all(r.macs == 0 and r.other_ops > 0 for r in bn_rows)


def test_output_formats():
    s = cnnzoo.summary("lenet5")
    data = json.loads(s.to_json())
    assert data["totals"]["params"] == s.total_params and data["totals"]["flops"] == 2 * s.total_macs
    assert "multiply-adds" in data["counted"]
    rows = list(csv.DictReader(io.StringIO(s.to_csv())))
    assert len(rows) == len(s.rows) and int(rows[1]["params"]) == s.rows[1].params
    markdown = s.format("markdown")
    assert markdown.count("\n|") >= len(s.rows) + 1
    table = s.format("table")
    assert "FLOPs = 2 x MACs" in table and "counted:" in table
    with pytest.raises(ConfigError, match="unknown format"):
        s.format("xml")


def test_input_size_errors_are_one_line():
    with pytest.raises(InputSizeError, match="at least 32x32"):
        cnnzoo.summary("vgg16", (3, 16, 16))
    with pytest.raises(InputSizeError, match="only 227x227"):
        cnnzoo.summary("alexnet_paper", (3, 224, 224))
    with pytest.raises(InputSizeError, match="built for 3 input channels"):
        cnnzoo.summary(cnnzoo.create_model("vgg11"), (1, 64, 64))
    with pytest.raises(ConfigError, match="malformed input size"):
        cnnzoo.summary("vgg11", "3x64xa")
    # a module the registry does not know still gets a one-line error
    with pytest.raises(InputSizeError, match="cannot take a 1x3x3 input"):
        cnnzoo.summary(nn.Conv2d(1, 1, 5), (1, 3, 3))


def test_summary_restores_training_mode():
    model = cnnzoo.create_model("lenet5").train()
    cnnzoo.summary(model)
    assert model.training
    assert math.prod(cnnzoo.summary(model).rows[0].output_shape) == 32 * 32
