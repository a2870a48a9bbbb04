"""LeNet-5, AlexNet, ZFNet, VGG and NIN against their papers, the lecture and torchvision."""

import pytest
import torch

import cnnzoo
from cnnzoo.paper_figures import PAPER_FIGURES, params_from
from zoo_helpers import assert_matches_torchvision, build_on_meta, count_params


# --------------------------------------------------------------------------- LeNet-5
def test_lenet5_layer_params_match_section_2b():
    """LeCun et al. 1998, Section II.B: C1 156, S2 12, C3 1,516, S4 32, C5 48,120, F6 10,164
    trainable parameters (60,000 in all before the output layer)."""
    s = cnnzoo.summary("lenet5", depth=2)
    expected = {"features.0": 156, "features.2": 12, "features.4": 1516, "features.6": 32,
                "features.8": 48120, "f6": 10164}
    assert {name: s.row(name).params for name in expected} == expected
    assert s.total_params - s.row("classifier").params == PAPER_FIGURES["lenet5"].params
    # C3 has 151,600 connections = 150,000 multiply-adds + 1,600 bias additions
    assert s.row("features.4").macs == 150_000
    shapes = [s.row(n).output_shape for n in ("features.0", "features.2", "features.4", "features.6", "features.8")]
    assert shapes == [(6, 28, 28), (6, 14, 14), (16, 10, 10), (16, 5, 5), (120, 1, 1)]


def test_lenet5_c3_follows_table_1():
    model = cnnzoo.create_model("lenet5")
    c3 = model.features[4]
    assert sum(len(c) for c in c3.connections) == 60
    # map 0 reads S2 maps 0, 1, 2 only: changing map 3 leaves it unchanged
    x = torch.randn(1, 6, 14, 14)
    y = x.clone()
    y[:, 3] += 1.0
    with torch.no_grad():
        assert torch.equal(c3(x)[:, 0], c3(y)[:, 0])
        assert not torch.equal(c3(x)[:, 3], c3(y)[:, 3])


def test_lenet5_initialisation_follows_appendix_c():
    """LeCun et al. 1998, Appendix C: uniform in +-2.4/F, F the fan-in of the unit."""
    torch.manual_seed(0)
    model = cnnzoo.create_model("lenet5")
    c3 = model.features[4]
    layers = {"C1": (model.features[0], 25), "C3 map 0": (c3.maps[0], 75), "C3 map 6": (c3.maps[6], 100),
              "C3 map 15": (c3.maps[15], 150), "C5": (model.features[8], 400), "F6": (model.f6, 120),
              "output": (model.classifier, 84)}
    for name, (layer, fan_in) in layers.items():
        bound = 2.4 / fan_in
        for tensor in (layer.weight, layer.bias):
            assert tensor.abs().max() <= bound, name
        # uniform over the whole range, not a narrower one (C5: 48,000 draws)
        assert layer.weight.abs().max() > 0.8 * bound, name
    for subsampling in (model.features[2], model.features[6]):
        # four inputs summed (F = 4) then scaled; the module averages, so it stores 4x the coefficient
        assert subsampling.weight.abs().max() <= 2.4 and subsampling.bias.abs().max() <= 0.6
    c5 = model.features[8].weight
    assert c5.std().item() == pytest.approx((2.4 / 400) / 3**0.5, rel=0.05)  # std of U(-b, b)


# --------------------------------------------------------------------------- AlexNet
def test_alexnet_matches_torchvision():
    assert_matches_torchvision("alexnet")  # 224x224, random weights


def test_alexnet_totals_match_torchvision_published_figures():
    """torchvision's AlexNet_Weights.IMAGENET1K_V1 meta: 61.1M params, 0.71 GFLOPS (multiply-adds)."""
    s = cnnzoo.summary("alexnet")
    assert s.total_params == pytest.approx(61.10e6, rel=0.02)
    assert s.total_macs == pytest.approx(0.71e9, rel=0.02)


def test_alexnet_paper_drops_out_the_outputs_of_fc6_and_fc7():
    """Krizhevsky et al. 2012, Section 4.2 (and the Caffe release: fc6-relu6-drop6, fc7-relu7-drop7);
    torchvision's ``alexnet`` keeps its own order, dropout before FC6 and FC7."""
    paper = cnnzoo.create_model("alexnet_paper").classifier
    assert [type(m).__name__ for m in paper] == ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]
    assert paper[2].p == paper[5].p == 0.5
    assert (paper[0].out_features, paper[3].out_features, paper[6].out_features) == (4096, 4096, 1000)
    single_tower = cnnzoo.create_model("alexnet").classifier
    assert [type(m).__name__ for m in single_tower] == [
        "Dropout", "Linear", "ReLU", "Dropout", "Linear", "ReLU", "Linear"]


def _lecture_rows(summary):
    return [(row.type, row.output_shape) for row in summary.rows
            if row.type in ("Conv2d", "MaxPool2d", "LocalResponseNorm", "Linear")]


def test_alexnet_paper_reproduces_the_layer_list_of_002():
    """002's list (cs231n): 55x55x96, 27x27x96, 27x27x96, 27x27x256, 13x13x256, 13x13x256,
    13x13x384, 13x13x384, 13x13x256, 6x6x256, 4096, 4096, 1000; conv1 has 96x11x11x3 weights."""
    expected = [
        ("Conv2d", (96, 55, 55)), ("MaxPool2d", (96, 27, 27)), ("LocalResponseNorm", (96, 27, 27)),
        ("Conv2d", (256, 27, 27)), ("MaxPool2d", (256, 13, 13)), ("LocalResponseNorm", (256, 13, 13)),
        ("Conv2d", (384, 13, 13)), ("Conv2d", (384, 13, 13)), ("Conv2d", (256, 13, 13)),
        ("MaxPool2d", (256, 6, 6)), ("Linear", (4096,)), ("Linear", (4096,)), ("Linear", (1000,)),
    ]
    lecture_order = cnnzoo.summary(cnnzoo.create_model("alexnet_paper", lrn_after_pool=True), (3, 227, 227))
    assert _lecture_rows(lecture_order) == expected
    # the paper's own order normalises before pooling: same conv/pool/FC sizes
    paper = cnnzoo.summary("alexnet_paper")
    assert [r for r in _lecture_rows(paper) if r[0] != "LocalResponseNorm"] == [
        r for r in expected if r[0] != "LocalResponseNorm"
    ]
    conv1 = paper.row("features.0")
    assert tuple(cnnzoo.create_model("alexnet_paper").features[0].weight.shape) == (96, 3, 11, 11)
    assert conv1.params == 96 * 11 * 11 * 3 + 96


def test_alexnet_paper_two_towers_and_size():
    """Krizhevsky et al. 2012, Section 3.5: conv2, conv4, conv5 only see their own GPU's maps;
    about 60 million parameters (Section 4)."""
    model = cnnzoo.create_model("alexnet_paper")
    convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.groups for c in convs] == [1, 2, 1, 2, 2]
    single = cnnzoo.create_model("alexnet_paper", two_towers=False)
    assert count_params(model) == pytest.approx(PAPER_FIGURES["alexnet_paper"].params, rel=0.02)
    assert count_params(single) > count_params(model)
    # output 0 of conv2 reads only the first tower's 48 maps
    x = torch.randn(1, 96, 27, 27)
    y = x.clone()
    y[:, 60] += 1.0
    with torch.no_grad():
        assert torch.equal(convs[1](x)[:, 0], convs[1](y)[:, 0])


# --------------------------------------------------------------------------- ZFNet
def test_zfnet_sizes_follow_figure_3_and_002():
    """Zeiler & Fergus 2013, Figure 3: 224 -> 110 -> 55 -> 26 -> 13 -> 13 -> 13 -> 13 -> 6;
    002: 7x7 stride-2 conv1 and 512/1024/512 filters in conv3-5."""
    s = cnnzoo.summary("zfnet")
    convs = [r for r in s.rows if r.type == "Conv2d"]
    pools = [r for r in s.rows if r.type == "MaxPool2d"]
    assert [r.output_shape for r in convs] == [(96, 110, 110), (256, 26, 26), (512, 13, 13), (1024, 13, 13), (512, 13, 13)]
    assert [r.output_shape for r in pools] == [(96, 55, 55), (256, 13, 13), (512, 6, 6)]
    assert convs[0].kernel.startswith("7x7/2")


# --------------------------------------------------------------------------- VGG
@pytest.mark.parametrize("name, params", params_from("Simonyan & Zisserman 2014, Table 2").items())
def test_vgg_params_match_table_2(name, params):
    """Simonyan & Zisserman 2014, Table 2: 133, 133, 133, 134, 138, 144 million for A, A-LRN, B, C, D, E."""
    assert round(count_params(build_on_meta(name)) / 1e6) == params / 1e6


def test_vgg_configurations_follow_table_1():
    """Table 1: weight layers 11, 11, 13, 16, 16, 19; C's extra layers are 1x1 convolutions."""
    for name, depth in [("vgg11", 11), ("vgg11_lrn", 11), ("vgg13", 13), ("vgg16_c", 16), ("vgg16", 16), ("vgg19", 19)]:
        model = build_on_meta(name, num_classes=10)
        weighted = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
        assert len(weighted) == depth, name
    c = build_on_meta("vgg16_c")
    assert sorted({m.kernel_size for m in c.features if isinstance(m, torch.nn.Conv2d)}) == [(1, 1), (3, 3)]
    lrn = build_on_meta("vgg11_lrn")
    assert isinstance(lrn.features[2], torch.nn.LocalResponseNorm)


@pytest.mark.parametrize("name", ["vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"])
def test_vgg_matches_torchvision(name):
    assert_matches_torchvision(name)  # 224x224 (the 7x7 pool5 the classifier reads), random BN statistics


def test_vgg16_totals_match_torchvision_published_figures():
    """torchvision's VGG16_Weights.IMAGENET1K_V1 meta: 138.36M params, 15.47 GFLOPS (multiply-adds)."""
    s = cnnzoo.summary("vgg16")
    assert s.total_params == pytest.approx(138.36e6, rel=0.02)
    assert s.total_macs == pytest.approx(15.47e9, rel=0.02)


# --------------------------------------------------------------------------- NIN
def test_nin_cifar_takes_any_size_with_the_same_weights():
    model = cnnzoo.create_model("nin_cifar").eval()
    with torch.no_grad():
        for side in (32, 48, 64):
            assert model(torch.randn(2, 3, side, side)).shape == (2, 10)
    assert not any(isinstance(m, torch.nn.Linear) for m in model.modules())


def test_nin_keeps_000s_rounding_and_a_linear_class_map():
    """The two documented differences from the released Caffe NIN (nin.py's docstring): pool1 rounds
    down (54 -> 26, Caffe 27) and the class maps are linear before global pooling (Caffe: ReLU);
    1.061G multiply-adds at 224 against the release's 1.100G."""
    model = cnnzoo.create_model("nin")
    s = cnnzoo.summary(model.eval(), (3, 224, 224))
    assert s.total_macs == pytest.approx(1.061e9, rel=0.001)
    pools = [r for r in s.rows if r.type == "MaxPool2d"]
    assert pools[0].output_shape[-1] == 26
    class_maps = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    assert class_maps.out_channels == 1000
    seen = []
    class_maps.register_forward_hook(lambda module, inputs, output: seen.append(output))
    with torch.no_grad():
        logits = model.eval()(torch.randn(1, 3, 224, 224))
    assert (seen[0] < 0).any()  # linear class maps: a ReLU would leave none below zero
    torch.testing.assert_close(logits, seen[0].mean(dim=(2, 3)))  # their global average, nothing between


def test_nin_is_mlpconv_and_gap_with_far_fewer_params_than_alexnet():
    """000: NIN beat AlexNet with a small fraction of its parameters; mlpconv = 1x1 convs."""
    model = cnnzoo.create_model("nin")
    assert not any(isinstance(m, torch.nn.Linear) for m in model.modules())
    one_by_one = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1)]
    assert len(one_by_one) == 8  # 2 per mlpconv, 1 + the class maps in the last
    assert count_params(model) * 7 < count_params(cnnzoo.create_model("alexnet_paper"))
    s = cnnzoo.summary("nin")
    # 000: first conv, first and third pool VALID, the rest SAME: 224 -> 54 -> 26 -> 26 -> 13 -> 6
    sizes = [r.output_shape[-1] for r in s.rows if r.type in ("Conv2d", "MaxPool2d") and not r.kernel.startswith("1x1/")]
    assert sizes == [54, 26, 26, 13, 13, 6, 6]
