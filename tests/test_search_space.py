"""Architecture search (issue 15): the search space, the architecture text, the child network and its cost.

Zoph & Le 2017 (arXiv:1611.01578): the space of Sec. 3.1-3.3 and 4.1, the child's compilation rules
of Sec. 3.3 (a layer without inputs reads the image; outputs no layer reads are concatenated for the
classifier; smaller maps are zero-padded before a concatenation).
"""

from __future__ import annotations

import json
import random

import pytest
import torch

import cnnzoo
from cnnzoo.cli import main
from cnnzoo.errors import ConfigError
from cnnzoo.modelspec import ModelSpec, parse_option_pairs
from cnnzoo.models.nas import DEFAULT_ARCH, NASChild, concat_zero_padded
from cnnzoo.search.budget import check_admits, child_cost, within
from cnnzoo.search.space import Architecture, LayerChoice, SearchSpace

torch.set_num_threads(1)


def random_tokens(space: SearchSpace, rng: random.Random) -> list[int]:
    return [rng.randrange(step.num_choices) for step in space.steps() for _ in range(step.num_tokens)]


# --------------------------------------------------------------------------- the architecture text
def test_text_round_trip_and_the_interface_spelling():
    arch = Architecture.parse("3x3:36 | 5x5:48<1 | 7x1:64:s2<2,1")
    assert arch.layers[2] == LayerChoice(7, 1, 64, stride=2, inputs=(1, 2))
    assert str(arch) == "3x3:36/5x5:48@1/7x1:64:s2@1+2"
    assert Architecture.parse(str(arch)) == arch
    assert arch.unconsumed() == [3]


def test_text_survives_the_command_line_yaml_csv_and_json():
    rng = random.Random(3)
    space = SearchSpace(depth=5)
    for _ in range(20):
        text = str(space.decode(random_tokens(space, rng)))
        assert not set(text) & set(" \t\"'`$&|;<>()[]{}*?!#~,\\\n")  # nothing a shell or CSV treats specially
        assert parse_option_pairs([f"arch={text}"]) == {"arch": text}  # -o arch=... reads YAML
        assert json.loads(json.dumps(text)) == text


@pytest.mark.parametrize("text, message", [
    ("", "an architecture is text"),
    ("3x3:36/5x5", "architecture layer 2 '5x5'"),
    ("3x3:36/5x5:48/3x3:s2", "architecture layer 3 '3x3:s2'"),
    ("3x3:36/5x5:48@2", "layer 2 can only read earlier layers (1..1), not 2"),
    ("3x3:36/5x5:48@1+1", "layer 2 names an input layer twice"),
    ("3x3:36/0x5:48", "layer 2: filter_height must be a positive integer, got 0"),
    ("3x3:36:s0", "layer 1: stride must be a positive integer"),
    ("3x3:36@0", "layer 1: inputs must be layer numbers >= 1"),
])  # fmt: skip
def test_bad_text_is_a_one_line_error_naming_the_layer(text, message):
    with pytest.raises(ConfigError) as caught:
        Architecture.parse(text)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_bad_arch_option_on_the_command_line_is_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "nas_child", "--data", "synthetic:classes=2,channels=1,size=8,train=8,test=4",
                 "--epochs", "1", "--out", str(out), "-o", "arch=3x3:24/3x3:36@3"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "layer 2 can only read earlier layers" in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- the space and its tokens
def test_steps_follow_the_space():
    space = SearchSpace(depth=3)
    kinds = [(s.kind, s.layer, s.num_tokens) for s in space.steps()]
    per_layer = ["filter_height", "filter_width", "filters", "stride", "anchor"]
    assert [k for k, _, _ in kinds] == per_layer * 3
    assert [n for k, layer, n in kinds if k == "anchor"] == [0, 1, 2]  # N - 1 bits at layer N
    assert space.num_tokens == 3 * 4 + 0 + 1 + 2
    # a single value is no decision; no skips, no anchors
    plain = SearchSpace(depth=3, strides=(1,), skips=False)
    assert {s.kind for s in plain.steps()} == {"filter_height", "filter_width", "filters"}
    arch = plain.decode([0] * plain.num_tokens)
    assert [layer.inputs for layer in arch.layers] == [(), (1,), (2,)]
    assert {layer.stride for layer in arch.layers} == {1}


@pytest.mark.parametrize("space", [SearchSpace(), SearchSpace(depth=4, strides=(1, 2, 3)),
                                   SearchSpace(depth=3, skips=False, filters=(8,))])  # fmt: skip
def test_encode_decode_round_trip_over_random_token_lists(space):
    rng = random.Random(0)
    seen = set()
    for _ in range(300):
        tokens = random_tokens(space, rng)
        arch = space.decode(tokens)
        assert len(arch.layers) == space.depth
        assert space.encode(arch) == tokens
        assert space.decode(space.encode(Architecture.parse(str(arch)))) == arch
        seen.add(str(arch))
    assert len(seen) > 250  # the codec does not collapse different token lists


def test_decode_and_encode_refuse_what_the_space_cannot_emit():
    space = SearchSpace(depth=2)
    with pytest.raises(ConfigError, match="takes 9 tokens per child, got 3"):
        space.decode([0, 0, 0])
    with pytest.raises(ConfigError, match="token 4 of layer 1's filter_height is not in 0..3"):
        space.decode([4] + [0] * 8)
    with pytest.raises(ConfigError, match="layer 2: filters 50 is not in the search space"):
        space.encode(Architecture.parse("3x3:24/3x3:50"))
    with pytest.raises(ConfigError, match="has 1 layers, the search space 2"):
        space.encode(Architecture.parse("3x3:24"))
    with pytest.raises(ConfigError, match="has skip connections; the search space has none"):
        SearchSpace(depth=2, skips=False).encode(Architecture.parse("3x3:24/3x3:24"))


def test_space_to_and_from_json_and_its_errors():
    space = SearchSpace(depth=4, filters=(16, 32), strides=(1,), skips=False)
    assert SearchSpace.from_dict(json.loads(json.dumps(space.to_dict()))) == space
    with pytest.raises(ConfigError, match="no setting 'widths'"):
        SearchSpace.from_dict({"widths": [1]})
    with pytest.raises(ConfigError, match="filters must be positive integers"):
        SearchSpace(filters=())
    with pytest.raises(ConfigError, match="depth must be a positive integer"):
        SearchSpace(depth=0)


# --------------------------------------------------------------------------- the child network
def test_a_layer_without_inputs_reads_the_image_and_unconsumed_outputs_reach_the_classifier():
    # layer 3 reads the image (no inputs); layers 2 and 4 are read by nobody: they and only they
    # are concatenated into the final hidden state
    arch = "3x3:24/5x5:36@1/1x7:48:s2/3x3:64:s2@1+3"
    model = NASChild(num_classes=7, in_chans=3, arch=arch)
    assert model.layers[2].conv.in_channels == 3  # the image's channels
    assert model.layers[0].conv.in_channels == 3
    assert model.layers[3].conv.in_channels == 24 + 48  # its inputs, concatenated in depth
    assert model.num_features == 36 + 64 == model.fc.in_features
    assert model.layers[2].conv.weight.shape == (48, 3, 1, 7)


def test_output_shapes_with_skips_strides_and_padding():
    # layer 3 (stride 2 of the 15x13 image: 8x7) is concatenated with layer 1 (15x13) for layer 4,
    # and the final state pads layer 4's 4x4 map to layer 2's 15x13
    model = NASChild(num_classes=5, in_chans=2, arch="3x3:4/1x1:6@1/2x4:8:s2/3x3:3:s2@1+3").eval()
    x = torch.randn(2, 2, 15, 13)
    maps = {}
    hooks = [layer.register_forward_hook(lambda m, i, o, n=n: maps.setdefault(n, o)) for n, layer in enumerate(model.layers)]
    with torch.no_grad():
        features = model.forward_features(x)
        logits = model(x)
    for hook in hooks:
        hook.remove()
    assert [tuple(maps[n].shape[1:]) for n in range(4)] == [(4, 15, 13), (6, 15, 13), (8, 8, 7), (3, 8, 7)]
    assert features.shape == (2, 6 + 3, 15, 13) and logits.shape == (2, 5)
    # the padding is zeros below and to the right: layer 4's map sits at the top-left corner
    torch.testing.assert_close(features[:, 6:, :8, :7], maps[3])
    assert features[:, 6:, 8:, :].abs().sum() == 0 and features[:, 6:, :, 7:].abs().sum() == 0


def test_concatenation_pads_the_smaller_maps_with_zeros_at_the_bottom_right():
    big, small = torch.ones(1, 1, 3, 4), torch.full((1, 2, 2, 2), 5.0)
    joined = concat_zero_padded([big, small])
    assert joined.shape == (1, 3, 3, 4)
    assert joined[0, 1:].tolist() == [[[5, 5, 0, 0], [5, 5, 0, 0], [0, 0, 0, 0]]] * 2


def test_the_default_child_has_a_skip_and_is_a_model_spec():
    arch = Architecture.parse(DEFAULT_ARCH)
    assert 4 <= len(arch.layers) <= 6
    assert any(layer.inputs and layer.inputs != (n,) for n, layer in enumerate(arch.layers))  # a skip
    spec = ModelSpec("nas_child", {"arch": "3x3:8/3x3:8:s2@1"}, num_classes=3, in_chans=1)
    model = ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict()))).build()
    assert str(model.arch) == "3x3:8/3x3:8:s2@1" and model.fc.out_features == 3


# --------------------------------------------------------------------------- cost and budget
def hand_cost(arch: Architecture, in_chans: int, num_classes: int, size: tuple[int, int]) -> tuple[int, int]:
    """Parameters and multiply-adds counted by hand from the compilation rules (Sec. 3.3): each conv
    output value needs FH * FW * C_in multiply-adds, the classifier F * classes; BN has 2 per channel."""
    sizes, channels, params, macs = [], [], 0, 0
    for layer in arch.layers:
        sources = layer.inputs
        c_in = sum(channels[j - 1] for j in sources) if sources else in_chans
        h = max(sizes[j - 1][0] for j in sources) if sources else size[0]
        w = max(sizes[j - 1][1] for j in sources) if sources else size[1]
        h, w = -(-h // layer.stride), -(-w // layer.stride)  # "same" padding: ceil(H / stride)
        sizes.append((h, w))
        channels.append(layer.filters)
        kernel = layer.filter_height * layer.filter_width * c_in
        params += kernel * layer.filters + 2 * layer.filters
        macs += h * w * layer.filters * kernel
    features = sum(channels[n - 1] for n in arch.unconsumed())
    return params + features * num_classes + num_classes, macs + features * num_classes


def test_child_cost_is_what_summary_counts_and_what_the_layers_hold():
    rng = random.Random(1)
    space = SearchSpace(depth=4)
    for _ in range(4):
        arch = space.decode(random_tokens(space, rng))
        params, macs = child_cost(arch, 1, 10, (28, 28))
        model = NASChild(num_classes=10, in_chans=1, arch=arch)
        counted = cnnzoo.summary(model, (1, 28, 28))
        assert (params, macs) == (counted.total_params, counted.total_macs)
        assert params == sum(p.numel() for p in model.parameters())
        assert (params, macs) == hand_cost(arch, 1, 10, (28, 28))


@pytest.mark.parametrize("in_chans, num_classes", [(1, 10), (16, 2)])
def test_check_admits_agrees_with_counting_every_child(in_chans, num_classes, monkeypatch):
    """The cheapest child is among cheapest_children() for both counts and for both budgets at once:
    check_admits refuses exactly the budgets that no child of the whole space keeps (16,384 children,
    counted by hand; the hand count is summary's, checked above and here on the candidates)."""
    import itertools

    import cnnzoo.search.budget as budget

    space = SearchSpace(depth=4, filter_heights=(1,), filter_widths=(3,), filters=(4, 8), strides=(1, 2))
    ranges = [range(step.num_choices) for step in space.steps() for _ in range(step.num_tokens)]
    costs = {hand_cost(space.decode(list(t)), in_chans, num_classes, (9, 9)) for t in itertools.product(*ranges)}
    for child in space.cheapest_children():
        assert child_cost(child, in_chans, num_classes, (9, 9)) == hand_cost(child, in_chans, num_classes, (9, 9))
    monkeypatch.setattr(budget, "child_cost", hand_cost)
    params = sorted({c[0] for c in costs})
    macs = sorted({c[1] for c in costs})
    refused = 0
    for max_params, max_macs in itertools.product([params[0] - 1, *params[:15], None], [macs[0] - 1, *macs[:15], None]):
        if any(within(c, max_params, max_macs) for c in costs):
            check_admits(space, max_params, max_macs, in_chans, num_classes, (9, 9))
        else:
            refused += 1
            with pytest.raises(ConfigError, match="admits no child within"):
                check_admits(space, max_params, max_macs, in_chans, num_classes, (9, 9))
    assert refused > 32  # more than the rows and columns below the minima: some budgets fail only together


def test_check_admits_refuses_a_budget_below_the_smallest_child_in_one_line():
    space = SearchSpace(depth=6)
    cheapest = min(child_cost(c, 1, 10, (28, 28))[0] for c in space.cheapest_children())
    with pytest.raises(ConfigError) as caught:
        check_admits(space, cheapest - 1, None, 1, 10, (28, 28))
    message = str(caught.value)
    assert f"admits no child within max_params={cheapest - 1:,}" in message and "\n" not in message
    assert f"the smallest has {cheapest:,} params" in message
    with pytest.raises(ConfigError, match="max_macs must be a positive integer"):
        check_admits(space, None, 0, 1, 10, (28, 28))
