"""The Inception lineage: blocks, paper tables, and equivalence with torchvision / timm.

Big networks are analysed on the ``meta`` device (shapes and counts without arithmetic);
the equivalence tests run real forwards at small inputs (batch 1-2, eval mode, no_grad):
a strict load and equal outputs prove the same layers at any input size.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cnnzoo
from cnnzoo.errors import InputSizeError
from cnnzoo.layers.inception import (
    Inception,
    InceptionNaive,
    InceptionResNetBlock,
    InceptionV3B,
    InceptionV3C,
    ReductionA,
)
from cnnzoo.paper_figures import PAPER_FIGURES
from cnnzoo.layers.separable import SeparableConv2d
from cnnzoo.models.bn_inception import BN_INCEPTION_TABLE
from cnnzoo.models.googlenet import INCEPTION_TABLE
from zoo_helpers import count_params, random_reference

INCEPTION_NAMES = [
    "googlenet",
    "googlenet_bn",
    "bn_inception",
    "inception_v3",
    "inception_v4",
    "inception_resnet_v1",
    "inception_resnet_v2",
    "xception",
]


def _meta_model(name: str, **options) -> nn.Module:
    with torch.device("meta"):
        return cnnzoo.create_model(name, **options).eval()


def _meta_summary(name: str, size: int, depth: int = 1, **options):
    return cnnzoo.summary(_meta_model(name, **options), (3, size, size), depth=depth)


# --------------------------------------------------------------------------- registry


def test_every_inception_model_is_registered():
    names = cnnzoo.list_models()
    for name in INCEPTION_NAMES:
        assert name in names
        info = cnnzoo.model_info(name)
        assert info.description and info.paper.url.startswith("https://")
    assert cnnzoo.model_info("inception_v3").input_size == (3, 299, 299)
    assert cnnzoo.model_info("googlenet").input_size == (3, 224, 224)


# --------------------------------------------------------------------------- blocks


def test_naive_module_passes_the_input_through_its_pool_branch():
    module = InceptionNaive(256, 128, 192, 96)
    out = module(torch.randn(1, 256, 12, 12))
    assert out.shape == (1, 128 + 192 + 96 + 256, 12, 12) and module.out_channels == out.shape[1]
    # the pool branch is an exact copy of the max-pooled input
    x = torch.randn(1, 256, 12, 12)
    torch.testing.assert_close(module(x)[:, -256:], nn.functional.max_pool2d(x, 3, 1, 1))


def test_reduced_module_widths_and_5x5_option():
    paper = Inception(192, *INCEPTION_TABLE["3a"][1:])
    assert paper.branch3[1].conv.kernel_size == (5, 5) and paper.branch3[1].conv.bias is not None
    bn = Inception(192, *INCEPTION_TABLE["3a"][1:], batch_norm=True, kernel_5x5=3)
    assert bn.branch3[1].conv.kernel_size == (3, 3) and isinstance(bn.branch3[1].bn, nn.BatchNorm2d)
    assert paper(torch.randn(2, 192, 7, 7)).shape == (2, 256, 7, 7)


def test_factorized_v3_blocks_use_asymmetric_kernels():
    block = InceptionV3B(768, 128)
    kernels = [m.kernel_size for m in block.modules() if isinstance(m, nn.Conv2d)]
    assert kernels.count((1, 7)) == 3 and kernels.count((7, 1)) == 3
    expanded = InceptionV3C(1280)
    out = expanded.eval()(torch.randn(1, 1280, 5, 5))
    # Figure 7: the 1x3 and 3x1 run side by side, widening the output to 2048
    assert out.shape == (1, 2048, 5, 5)


def test_reduction_a_table_widths():
    """Inception-v4 paper, Table 1: Reduction-A outputs input + n + m channels at half the grid."""
    block = ReductionA(384, k=192, l=224, m=256, n=384).eval()
    out = block(torch.randn(1, 384, 35, 35))
    assert out.shape == (1, 384 + 384 + 256, 17, 17)


def test_inception_resnet_block_scales_the_residual():
    torch.manual_seed(0)
    x = torch.randn(2, 32, 6, 6)
    branches = ([(8, 1)], [(8, 1), (8, 3)])
    block = InceptionResNetBlock(32, branches, scale=0.2, activate=False).eval()
    unscaled = InceptionResNetBlock(32, branches, scale=1.0, activate=False).eval()
    unscaled.load_state_dict(block.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(block(x) - x, 0.2 * (unscaled(x) - x), atol=1e-5, rtol=1e-4)
        relu_block = InceptionResNetBlock(32, branches, scale=0.2).eval()
        relu_block.load_state_dict(block.state_dict())
        torch.testing.assert_close(relu_block(x), torch.relu(block(x)))
    assert block.conv2d.bias is not None  # the linear 1x1 has a bias and no BN


def test_separable_conv_counts():
    """Xception Section 2: k*k*C_in depthwise weights plus C_in*C_out pointwise."""
    conv = SeparableConv2d(728, 728, 3)
    assert count_params(conv) == 3 * 3 * 728 + 728 * 728
    assert conv.depthwise.groups == 728
    assert conv(torch.randn(1, 728, 5, 5)).shape == (1, 728, 5, 5)


# --------------------------------------------------------------------------- GoogLeNet, Table 1


# Table 1 of Szegedy et al. 2014: row -> (output size, depth, params in K = 1024, ops in M)
GOOGLENET_TABLE_1 = {
    "conv1": ((64, 112, 112), 2.7, 34),
    "maxpool1": ((64, 56, 56), 0, 0),
    "conv2+conv3": ((192, 56, 56), 112, 360),
    "maxpool2": ((192, 28, 28), 0, 0),
    "inception3a": ((256, 28, 28), 159, 128),
    "inception3b": ((480, 28, 28), 380, 304),
    "maxpool3": ((480, 14, 14), 0, 0),
    "inception4a": ((512, 14, 14), 364, 73),
    "inception4b": ((512, 14, 14), 437, 88),
    "inception4c": ((512, 14, 14), 463, 100),
    "inception4d": ((528, 14, 14), 580, 119),
    "inception4e": ((832, 14, 14), 840, 170),
    "maxpool4": ((832, 7, 7), 0, 0),
    "inception5a": ((832, 7, 7), 1072, 54),
    "inception5b": ((1024, 7, 7), 1388, 71),
    "avgpool": ((1024, 1, 1), 0, 0),
    "fc": ((1000,), 1000, 1),
}
# Rows where Table 1 disagrees with its own layer widths (checked against the formula instead):
# conv1 (7x7x3x64 = 9.4K weights, 118M ops, not 2.7K/34M), 4c (its widths give 497K, though its
# 100M ops agree), 5a (1019K and 51M from its widths).
TABLE_1_SLIPS = {"conv1", "inception4c", "inception5a"}


@pytest.fixture(scope="module")
def googlenet_summary():
    model = cnnzoo.create_model("googlenet", aux_logits=False)
    return cnnzoo.summary(model, (3, 224, 224), depth=1)


def test_googlenet_table1_rows(googlenet_summary):
    """GoogLeNet paper, Table 1 (and the brief, 000): every row's output size, params and ops.

    The paper's params column is in units of 1024 (inception 3a: 163,328 weights = 159.5K).
    """
    rows = {row.name: row for row in googlenet_summary.rows}
    merged = {"conv2+conv3": [rows["conv2"], rows["conv3"]]}
    for name, (shape, params_k, ops_m) in GOOGLENET_TABLE_1.items():
        parts = merged[name] if name in merged else [rows[name]]
        assert tuple(parts[-1].output_shape) == shape, name
        params = sum(r.params for r in parts)
        macs = sum(r.macs for r in parts)
        if name in TABLE_1_SLIPS:
            continue
        if params_k:
            assert params / 1024 == pytest.approx(params_k, rel=0.02), name
        if ops_m:
            assert macs / 1e6 == pytest.approx(ops_m, rel=0.02, abs=0.5), name
    # inception (3a): the brief's 159K params and 128M ops, to the unit
    assert rows["inception3a"].params / 1024 == pytest.approx(159, abs=1)
    assert round(rows["inception3a"].macs / 1e6) == 128
    # the slips: conv1 as its real 7x7x3x64 convolution; 4c and 5a from their widths
    assert rows["conv1"].macs == 112 * 112 * 64 * 7 * 7 * 3
    assert rows["inception4c"].macs / 1e6 == pytest.approx(100, rel=0.01)
    assert rows["inception5a"].macs / 1e6 == pytest.approx(54, rel=0.06)


def test_googlenet_totals(googlenet_summary):
    """GoogLeNet paper, Table 1 totals: about 6.8M parameters and 1.5G multiply-adds (no aux heads).

    The table's params column sums to 6,797.7K (K = 1024) and its ops column to 1,502M, of
    which conv1 is 34M; the real 7x7 convolution on 3 channels costs 118M.
    """
    table_params = sum(p for _, p, _ in GOOGLENET_TABLE_1.values()) * 1024
    table_ops = sum(o for _, _, o in GOOGLENET_TABLE_1.values()) * 1e6
    assert googlenet_summary.total_params == pytest.approx(table_params, rel=0.01)
    assert googlenet_summary.total_params / 1024 == pytest.approx(PAPER_FIGURES["googlenet"].params / 1e3, abs=50)
    conv1 = googlenet_summary.row("conv1").macs
    assert googlenet_summary.total_macs - conv1 + 34e6 == pytest.approx(table_ops, rel=0.01)
    assert googlenet_summary.total_macs == pytest.approx(PAPER_FIGURES["googlenet"].macs, rel=0.06)


def test_googlenet_paper_details():
    """GoogLeNet paper, Section 5: LRN in the stem, dropout 40% (main) and 70% (auxiliary)."""
    model = cnnzoo.create_model("googlenet")
    assert sum(isinstance(m, nn.LocalResponseNorm) for m in model.modules()) == 2
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert model.dropout.p == 0.4 and model.aux1.dropout.p == 0.7
    assert model.inception3a.branch3[1].conv.kernel_size == (5, 5)
    # aux heads: 1x1 conv 128, FC 1024, classifier; together they add ~6.4M parameters
    no_aux = cnnzoo.create_model("googlenet", aux_logits=False)
    assert count_params(model) - count_params(no_aux) == 2 * (128 * 4 * 4 * 1024 + 1024 + 1024 * 1000 + 1000) + 128 * (
        512 + 528 + 2
    )


def test_aux_heads_in_training_only():
    model = cnnzoo.create_model("googlenet", num_classes=10)
    x = torch.randn(2, 3, 96, 96)
    model.train()
    out = model(x)
    assert isinstance(out, tuple) and len(out) == 3 and all(o.shape == (2, 10) for o in out)
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2, 10)
    plain = cnnzoo.create_model("googlenet", num_classes=10, aux_logits=False).train()
    assert plain(x).shape == (2, 10)
    model.reset_classifier(4)
    assert model.train()(x)[2].shape == (2, 4)


def test_inception_v3_aux_needs_its_grid():
    model = _meta_model("inception_v3", num_classes=10).train()
    with pytest.raises(InputSizeError, match="aux_logits=False"):
        model(torch.empty(2, 3, 298, 298, device="meta"))
    main, aux = model(torch.empty(2, 3, 299, 299, device="meta"))
    assert main.shape == aux.shape == (2, 10)


# --------------------------------------------------------------------------- other papers' tables


def test_bn_inception_figure5_table():
    """Ioffe & Szegedy 2015, Figure 5: the stage grids and each module's widths.

    Modules 3c and 4e halve the grid; the widths of 4c and 4d add up to 608 channels (the
    table's output column says 576), so 4e outputs 192 + 256 + 608 = 1056.
    """
    s = _meta_summary("bn_inception", 224)
    rows = {row.name: row for row in s.rows}
    assert rows["maxpool1"].output_shape == (64, 56, 56)
    assert rows["conv3"].output_shape == (192, 56, 56)
    assert rows["maxpool2"].output_shape == (192, 28, 28)
    channels = 192
    for spec in BN_INCEPTION_TABLE:
        row = rows[f"inception{spec.name}"]
        passthrough = channels if spec.pool_proj == 0 else spec.pool_proj
        channels = spec.ch1x1 + spec.ch3x3 + spec.dbl3x3 + passthrough
        grid = {"3": 28, "4": 14, "5": 7}[spec.name[0]] // spec.stride
        assert row.output_shape == (channels, grid, grid), spec.name
    expected = {"3a": 256, "3b": 320, "3c": 576, "4a": 576, "4b": 576, "4e": 1056, "5a": 1024, "5b": 1024}
    for name, depth in expected.items():
        assert rows[f"inception{name}"].output_shape[0] == depth
    assert not any(isinstance(m, nn.LocalResponseNorm) for m in _meta_model("bn_inception").modules())


def test_inception_v3_table1_grids_and_params():
    """Rethinking the Inception Architecture, Table 1 (the brief's v2/v3 table, 000): the grids
    35x35x288 -> 17x17x768 -> 8x8x1280 -> 8x8x2048; and Xception paper Table 3: Inception V3
    has 23,626,728 parameters (the released layout, without the auxiliary head, is within 1%).
    """
    s = _meta_summary("inception_v3", 299, aux_logits=False)
    rows = {row.name: row for row in s.rows}
    assert rows["Conv2d_1a_3x3"].output_shape == (32, 149, 149)
    assert rows["Conv2d_2b_3x3"].output_shape == (64, 147, 147)
    assert rows["maxpool1"].output_shape == (64, 73, 73)
    assert rows["Mixed_5d"].output_shape == (288, 35, 35)
    assert rows["Mixed_6a"].output_shape == (768, 17, 17)
    assert rows["Mixed_6e"].output_shape == (768, 17, 17)
    assert rows["Mixed_7a"].output_shape == (1280, 8, 8)
    assert rows["Mixed_7c"].output_shape == (2048, 8, 8)
    assert s.total_params == pytest.approx(PAPER_FIGURES["inception_v3"].params, rel=0.01)


@pytest.fixture(scope="module")
def v4_family_summaries():
    names = ("inception_v4", "inception_resnet_v1", "inception_resnet_v2")
    return {name: _meta_summary(name, 299, depth=2 if name == "inception_v4" else 1) for name in names}


def _stage_shapes(s, names):
    rows = {row.name: row for row in s.rows}
    return [rows[n].output_shape for n in names]


def test_inception_v4_figure9(v4_family_summaries):
    """Inception-v4 paper, Figure 9: stem 35x35x384, Reduction-A 17x17x1024, Reduction-B 8x8x1536."""
    s = v4_family_summaries["inception_v4"]
    shapes = [r.output_shape for r in s.rows if r.name.startswith("features.")]
    assert len(shapes) == 6 + 4 + 1 + 7 + 1 + 3
    assert shapes[5] == (384, 35, 35)  # stem, Figure 3
    assert shapes[9] == (384, 35, 35)  # 4 x Inception-A
    assert shapes[10] == (1024, 17, 17)  # Reduction-A
    assert shapes[17] == (1024, 17, 17)  # 7 x Inception-B
    assert shapes[18] == (1536, 8, 8)  # Reduction-B
    assert shapes[21] == (1536, 8, 8)  # 3 x Inception-C


def test_inception_resnet_figure15(v4_family_summaries):
    """Inception-v4 paper, Figures 14-15 and Table 1: Inception-ResNet-v1 is 35x35x256 after the
    stem, 17x17x896 after Reduction-A (k, l, m, n = 192, 192, 256, 384), 8x8x1792 after
    Reduction-B; the released v2 is 35x35x320, 17x17x1088, 8x8x2080, then 1536 channels.
    """
    v1 = v4_family_summaries["inception_resnet_v1"]
    assert _stage_shapes(v1, ["conv2d_4b", "repeat", "mixed_6a", "repeat_1", "mixed_7a", "repeat_2"]) == [
        (256, 35, 35), (256, 35, 35), (896, 17, 17), (896, 17, 17), (1792, 8, 8), (1792, 8, 8)
    ]  # fmt: skip
    v2 = v4_family_summaries["inception_resnet_v2"]
    assert _stage_shapes(v2, ["mixed_5b", "mixed_6a", "mixed_7a", "conv2d_7b"]) == [
        (320, 35, 35), (1088, 17, 17), (2080, 8, 8), (1536, 8, 8)
    ]  # fmt: skip
    blocks = [m for m in _meta_model("inception_resnet_v1").modules() if isinstance(m, InceptionResNetBlock)]
    assert len(blocks) == 5 + 10 + 5  # Figure 15
    assert sorted({b.scale for b in blocks}) == [0.1, 0.17, 0.2]  # Section 3.3: 0.1 to 0.3


def test_inception_resnet_v1_follows_figure_15_not_facenet():
    """22,756,328 parameters (1000 classes): Figure 15 with Figures 10-14 of the Inception-v4 paper,
    not the 23.99M FaceNet-style Inception-ResNet-v1 that some libraries ship."""
    assert count_params(_meta_model("inception_resnet_v1")) == 22_756_328


def test_inception_resnet_costs_match_their_pure_inception_twins(v4_family_summaries):
    """Inception-v4 paper, Section 3.1 (no parameter table is given): "Inception-ResNet-v1 [has]
    roughly the computational cost of Inception-v3, while Inception-ResNet-v2 matches the raw
    cost of the newly introduced Inception-v4 network".
    """
    v3 = _meta_summary("inception_v3", 299, aux_logits=False)
    s = v4_family_summaries
    assert s["inception_resnet_v1"].total_macs / v3.total_macs == pytest.approx(1.0, abs=0.15)
    assert s["inception_resnet_v2"].total_macs / s["inception_v4"].total_macs == pytest.approx(1.0, abs=0.15)
    # and their parameters: v1 about v3's 23.8M, v2 more than v4's
    assert s["inception_resnet_v1"].total_params == pytest.approx(v3.total_params, rel=0.1)
    assert s["inception_resnet_v2"].total_params > s["inception_v4"].total_params


def test_xception_table3_params():
    """Xception paper, Table 3: 22,855,952 parameters (ImageNet model, with the classifier)."""
    model = _meta_model("xception")
    assert count_params(model) == PAPER_FIGURES["xception"].params
    flows = [m for name, m in model.named_children() if name.startswith("block")]
    assert len(flows) == 3 + 8 + 1  # entry, middle (x8), exit blocks of Figure 5
    s = cnnzoo.summary(model, (3, 299, 299), depth=1)
    assert s.row("block3").output_shape == (728, 19, 19)  # entry flow output, Figure 5
    assert s.row("block11").output_shape == (728, 19, 19)  # middle flow output
    assert s.row("act4").output_shape == (2048, 10, 10)  # exit flow, before pooling


# --------------------------------------------------------------------------- equivalence


def _compare(build_reference, name: str, side: int, **options) -> tuple[nn.Module, nn.Module]:
    """cnnzoo names its modules like the reference, so the reference's state dict loads as it is.

    The reference gets random weights and BN statistics (:func:`random_reference`); both nets
    are compared in eval mode at ``side`` x ``side``, the net's native input size.
    """
    reference = random_reference(build_reference).eval()
    with torch.device("meta"):
        ours = cnnzoo.create_model(name, **options)
    ours.load_state_dict(reference.state_dict(), strict=True, assign=True)
    ours.eval()
    x = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = reference(x), ours(x)
    assert torch.isfinite(expected).all() and expected.std() > 1e-2  # outputs worth comparing
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    return reference, ours


def test_googlenet_bn_matches_torchvision():
    torchvision = pytest.importorskip("torchvision")
    ref, ours = _compare(lambda: torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False,
                                                              transform_input=False), "googlenet_bn", 224)  # fmt: skip
    # training mode: torchvision returns (logits, aux2, aux1); we return (logits, aux1, aux2)
    ref.train(), ours.train()
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        torch.manual_seed(1)
        theirs = ref(x)
        torch.manual_seed(1)
        mine = ours(x)
    for a, b in zip((theirs[0], theirs[2], theirs[1]), mine):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)


def test_inception_v3_matches_torchvision():
    torchvision = pytest.importorskip("torchvision")
    ref, ours = _compare(lambda: torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False,
                                                                 transform_input=False), "inception_v3", 299)  # fmt: skip
    # the auxiliary head alone, on the 17x17x768 grid it reads
    grid = torch.randn(2, 768, 17, 17)
    with torch.no_grad():
        torch.testing.assert_close(ours.AuxLogits.eval()(grid), ref.AuxLogits.eval()(grid), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "timm_name, name",
    [("inception_v4", "inception_v4"), ("inception_resnet_v2", "inception_resnet_v2"), ("legacy_xception", "xception")],
)
def test_matches_timm(timm_name, name):
    timm = pytest.importorskip("timm")
    ref, ours = _compare(lambda: timm.create_model(timm_name, pretrained=False), name, 299)
    assert count_params(ref) == count_params(ours)


def test_timm_inception_v3_matches_without_the_aux_head():
    timm = pytest.importorskip("timm")
    ref, ours = _compare(lambda: timm.create_model("inception_v3", pretrained=False), "inception_v3", 299,
                         aux_logits=False)  # fmt: skip
    assert count_params(ref) == count_params(ours)
