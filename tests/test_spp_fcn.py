"""SPP-net, FCN, bilinear transposed convolution and fully connected layers as convolutions (issue 5)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnzoo
from cnnzoo.errors import ConfigError, InputSizeError
from cnnzoo.layers.fc_to_conv import classifier_to_conv, linear_to_conv, to_fully_convolutional
from cnnzoo.layers.spp import SpatialPyramidPooling
from cnnzoo.layers.upsample import BilinearConvTranspose2d, bilinear_kernel
from cnnzoo.models.fcn import FCNFeatures
from cnnzoo.models.zfnet import ZFNet

# ------------------------------------------------------------------ spatial pyramid pooling


@pytest.mark.parametrize("side", [1, 4, 7, 10, 13])
def test_spp_gives_a_fixed_length_for_any_map_size(side):
    """He et al. 2014, Figure 3: levels 4x4, 2x2, 1x1 -> 21 bins per channel whatever the map size."""
    spp = SpatialPyramidPooling()
    x = torch.randn(2, 5, side, side + 3)
    out = spp(x)
    assert out.shape == (2, 5 * 21)
    # the 1x1 level is the global max of each channel, the last 5 values
    torch.testing.assert_close(out[:, -5:], x.amax(dim=(2, 3)))


def test_spp_bins_are_the_papers_windows_when_the_level_divides_the_map():
    """Section 2.3: window ceil(a/n), stride floor(a/n); for a = 8, n = 4 that is 2x2/2 max-pooling."""
    x = torch.randn(1, 3, 8, 8)
    out = SpatialPyramidPooling((4, 2))(x)
    torch.testing.assert_close(out[:, : 3 * 16], F.max_pool2d(x, 2, 2).flatten(1))
    torch.testing.assert_close(out[:, 3 * 16 :], F.max_pool2d(x, 4, 4).flatten(1))


def test_spp_rejects_bad_levels():
    with pytest.raises(ConfigError, match="levels"):
        SpatialPyramidPooling((4, 0))


@pytest.fixture(scope="module")
def spp_net():
    torch.manual_seed(0)
    return cnnzoo.create_model("zfnet_spp").eval()


def test_zfnet_spp_one_set_of_weights_classifies_180_224_260(spp_net):
    """He et al. 2014, Sections 2.3/3.1: conv5 is 10x10 at 180 and 13x13 at 224; SPP makes one length."""
    for side, conv5 in [(180, 10), (224, 13), (260, 15)]:
        x = torch.randn(1, 3, side, side)
        with torch.no_grad():
            features = spp_net.forward_features(x)
            logits = spp_net(x)
            pre_logits = spp_net.forward_head(features, pre_logits=True)
        assert features.shape == (1, 256, conv5, conv5)
        assert logits.shape == (1, 1000)
        assert pre_logits.shape == (1, 4096)
    # the 4-level pyramid {6, 3, 2, 1}: 50 bins of 256 channels feed fc6
    assert spp_net.classifier[0].in_features == 256 * 50


def test_zfnet_spp_reuses_zfnets_convolutions(spp_net):
    """SPP replaces only pool5: ZF-5's convolution weights load into zfnet_spp unchanged."""
    zf5 = ZFNet(conv345_widths=(384, 384, 256))
    spp_net_copy = cnnzoo.create_model("zfnet_spp")
    spp_net_copy.features.load_state_dict(zf5.features.state_dict(), strict=True)
    assert isinstance(zf5.features[-1], nn.MaxPool2d)
    assert not isinstance(spp_net.features[-1], nn.MaxPool2d)
    assert len(spp_net.features) == len(zf5.features) - 1


# ------------------------------------------------------------------ bilinear transposed conv


def test_bilinear_kernel_values():
    """Long et al. 2015, Section 3.3: a 4x4 stride-2 kernel with tent weights 1/4, 3/4, 3/4, 1/4."""
    tent = torch.tensor([0.25, 0.75, 0.75, 0.25])
    torch.testing.assert_close(bilinear_kernel(4), torch.outer(tent, tent))
    tent5 = torch.tensor([1 / 3, 2 / 3, 1.0, 2 / 3, 1 / 3])
    torch.testing.assert_close(bilinear_kernel(5), torch.outer(tent5, tent5))


@pytest.mark.parametrize("factor", [2, 3, 4, 8])
def test_bilinear_transposed_conv_is_bilinear_upsampling(factor):
    up = BilinearConvTranspose2d(3, factor)
    x = torch.randn(2, 3, 6, 7)
    with torch.no_grad():
        y = up(x)
    expected = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    assert y.shape == (2, 3, 6 * factor, 7 * factor)
    # equal away from the borders, where interpolate clamps instead of padding with zeros
    inner = (..., slice(factor, -factor), slice(factor, -factor))
    torch.testing.assert_close(y[inner], expected[inner], atol=1e-5, rtol=1e-5)
    assert up.weight.requires_grad
    assert not BilinearConvTranspose2d(3, factor, learnable=False).weight.requires_grad


# ------------------------------------------------------------------ fc as conv


@pytest.fixture(scope="module")
def vgg16():
    torch.manual_seed(0)
    return cnnzoo.create_model("vgg16").eval()


def test_fc_to_conv_vgg16_same_logits_and_a_map_on_larger_images(vgg16):
    """The brief's 004 Q3/Q4 (FCN Section 3.1): fc6 is a 7x7 conv, fc7/fc8 1x1 convs; exact at 224."""
    fully_conv = to_fully_convolutional(vgg16).eval()
    convs = [m for m in fully_conv.classifier if isinstance(m, nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(7, 7), (1, 1), (1, 1)]
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        logits = vgg16(x)
        map_224 = fully_conv(x)
    assert map_224.shape == (1, 1000, 1, 1)
    torch.testing.assert_close(map_224.flatten(1), logits, atol=1e-4, rtol=1e-4)

    big = torch.randn(1, 3, 256, 288)
    with torch.no_grad():
        pool5 = fully_conv.features(big)  # 8 x 9: 2 x 3 windows of 7 x 7
        logit_map = fully_conv.classifier(pool5)
        assert logit_map.shape == (1, 1000, 2, 3)
        # each position is the original classifier on one 7x7 window of the features
        for i in range(2):
            for j in range(3):
                window = pool5[:, :, i : i + 7, j : j + 7]
                expected = vgg16.forward_head(window)
                torch.testing.assert_close(logit_map[:, :, i, j], expected, atol=1e-4, rtol=1e-4)


def test_fc_to_conv_rejects_mismatches():
    with pytest.raises(ConfigError, match="cannot read"):
        linear_to_conv(nn.Linear(10, 3), 3, (2, 2))
    with pytest.raises(ConfigError, match="no fully connected"):
        classifier_to_conv(nn.Sequential(nn.ReLU()), 3, (1, 1))
    with pytest.raises(ConfigError, match="features"):
        to_fully_convolutional(nn.Linear(3, 3))
    # Flatten is dropped, ReLU kept, each Linear becomes a conv computing the same numbers
    reference = nn.Sequential(nn.Flatten(), nn.Linear(12, 4), nn.ReLU(), nn.Linear(4, 2))
    converted = classifier_to_conv(reference, 3, (2, 2))
    assert [type(m) for m in converted] == [nn.Conv2d, nn.ReLU, nn.Conv2d]
    x = torch.randn(5, 3, 2, 2)
    with torch.no_grad():
        torch.testing.assert_close(converted(x).flatten(1), reference(x))


# ------------------------------------------------------------------ FCN


@pytest.fixture(scope="module")
def fcn8s():
    torch.manual_seed(0)
    return cnnzoo.create_model("fcn8s_vgg16", zero_init_scores=False).eval()


@pytest.mark.parametrize("size", [(1, 1), (37, 53), (64, 64)])
def test_fcn8s_outputs_one_score_map_per_class_at_the_input_size(fcn8s, size):
    """Long et al. 2015, Section 3: an FCN takes any input size and outputs (N, classes, H, W)."""
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        features = fcn8s.forward_features(x)
        out = fcn8s.forward_head(features)
    assert out.shape == (1, 21, *size)
    assert isinstance(features, FCNFeatures) and features.image_size == size
    # VGG-16's strides 8, 16, 32 on the image padded by 100 pixels; 2x2/2 pooling rounds up (Caffe)
    padded = [side + 2 * 100 - 2 for side in size]  # conv1_1 (3x3, pad 100) output
    for tensor, stride in [(features.pool3, 8), (features.pool4, 16), (features.pool5, 32)]:
        assert list(tensor.shape[-2:]) == [-(-side // stride) for side in padded]
    assert out.abs().sum() > 0


@pytest.mark.parametrize("name, size", [("fcn32s_vgg16", (45, 45)), ("fcn16s_vgg16", (50, 41))])
def test_fcn32s_and_16s_shapes(name, size):
    model = cnnzoo.create_model(name, num_classes=5).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, *size))
    assert out.shape == (1, 5, *size)
    assert [s.layer for s in model.skips] == {"fcn32s_vgg16": [], "fcn16s_vgg16": ["pool4"]}[name]
    # Section 4.3: score layers start at zero, so a fresh FCN predicts all-zero scores
    assert not out.any()


def test_fcn8s_skip_structure_and_final_upsampling(fcn8s):
    """Figure 3: FCN-8s fuses pool4 then pool3 through learned 2x upsamplings, then upsamples 8x (fixed)."""
    assert [s.layer for s in fcn8s.skips] == ["pool4", "pool3"]
    assert fcn8s.skip_scores["pool3"].in_channels == 256 and fcn8s.skip_scores["pool4"].in_channels == 512
    assert fcn8s.upscore.stride == (8, 8) and fcn8s.upscore.kernel_size == (16, 16)
    assert not fcn8s.upscore.weight.requires_grad
    assert all(up.weight.requires_grad and up.stride == (2, 2) for up in fcn8s.skip_upsamples.values())


def test_fcn_head_is_vggs_classifier_as_convolutions(vgg16):
    """Section 4.1: FCN starts from VGG-16, whose fc6/fc7 become 7x7 and 1x1 convolutions."""
    fcn = cnnzoo.create_model("fcn32s_vgg16", num_classes=3)
    fcn.init_from_vgg(vgg16)
    fcn.eval()
    pool5 = torch.randn(1, 512, 7, 7)
    empty = torch.zeros(1, 1, 1, 1)
    with torch.no_grad():
        fc7 = fcn.forward_head(FCNFeatures(empty, empty, pool5, (1, 1)), pre_logits=True)
        expected = vgg16.forward_head(pool5, pre_logits=True)
    assert fc7.shape == (1, 4096, 1, 1)
    torch.testing.assert_close(fc7.flatten(1), expected, atol=1e-4, rtol=1e-4)
    for ours, theirs in zip(fcn.features.parameters(), vgg16.features.parameters()):
        assert torch.equal(ours, theirs)


def test_fcn_reset_classifier_and_too_small_crop():
    model = cnnzoo.create_model("fcn16s_vgg16", zero_init_scores=False).eval()
    model.reset_classifier(4)
    assert model.get_classifier().out_channels == 4
    assert model.skip_scores["pool4"].out_channels == 4 and model.upscore.out_channels == 4
    x = torch.randn(1, 3, 20, 20)
    with torch.no_grad():
        features = model.forward_features(x)
        assert model.forward_head(features).shape == (1, 4, 20, 20)
        model.reset_classifier(0)
        assert model.forward_head(features).shape[:2] == (1, 4096)
        model.reset_classifier(4)
        # a score map too small for the requested crop is a one-line input-size error
        with pytest.raises(InputSizeError, match="cropped"):
            model.forward_head(features._replace(image_size=(500, 500)))
