"""Feature extraction, timm's way: ``create_model(name, features_only=True, out_indices=...)``.

Every model's stages have the channels ``feature_info`` gives and shrink by its reductions, each
map is its module's output as the full net computes it, and the last one is
``forward_features``'s: a few nets here, through ``create_model``; every registered model in
tests/test_toolchain.py, which builds each net once for all its checks.  timm's
``features_only`` nets give the same maps for the architectures both zoos have (shared random
weights and BN statistics, as in tests/test_timm_equivalence.py).
"""

from __future__ import annotations

import pytest
import torch

import cnnzoo
from cnnzoo.errors import CnnzooError
from cnnzoo.models.base import ClassifierNet
from test_contract import _test_side
from zoo_helpers import randomise

# through create_model(..., features_only=True): nets whose forward differs between training and
# eval (auxiliary heads), a searched child, a multilayer perceptron, a plain ResNet
THROUGH_CREATE_MODEL = ["googlenet", "inception_v3", "nas_child", "resnet20", "lenet_300_100"]


def _input(name: str, batch: int = 1) -> torch.Tensor:
    info = cnnzoo.model_info(name)
    h, w = _test_side(info)
    return torch.randn(batch, info.input_size[0], h, w, generator=torch.Generator().manual_seed(1))


def _module_outputs(model: torch.nn.Module, paths: list[str], x: torch.Tensor) -> list[torch.Tensor]:
    """Each module's output as ``forward_features`` computes it, copied when the module returns
    (a later in-place operation on a returned map would show as a difference)."""
    outputs: dict[str, torch.Tensor] = {}

    def keep(path):
        def hook(module, inputs, output) -> None:
            outputs[path] = output.clone()

        return hook

    hooks = [model.get_submodule(path).register_forward_hook(keep(path)) for path in paths]
    with torch.no_grad():
        features = model.forward_features(x)
    for hook in hooks:
        hook.remove()
    return [outputs[path] for path in paths], features


# multilayer perceptrons: their one "stage" is the image itself
WITHOUT_CONVOLUTIONS = {"lenet_300_100"}


def assert_stages_match_feature_info_and_the_full_net(name: str, model, extractor, x: torch.Tensor) -> None:
    """``extractor`` (``model`` cut after its stages, with ``model``'s weights) returns maps with
    ``feature_info``'s channels and reductions, each exactly its module's output in ``model``."""
    info = extractor.feature_info
    with torch.no_grad():
        maps = extractor(x)
    assert isinstance(maps, list) and len(maps) == len(info) >= (1 if name in WITHOUT_CONVOLUTIONS else 3)
    assert [m.shape[1] for m in maps] == info.channels()
    reductions = info.reduction()
    assert reductions == sorted(set(reductions)) and all(r & (r - 1) == 0 for r in reductions)
    sides = [m.shape[-1] for m in maps]
    assert sides == sorted(sides, reverse=True)
    # the map of a stage of stride r is about side / r (valid convolutions shave a few pixels;
    # FCN pads its first convolution by 100 pixels, so its maps are larger)
    side = x.shape[-1] + (200 if name.startswith("fcn") else 0)
    for s, r in zip(sides, reductions):
        assert side / r / 2 - 3 <= s <= side / r + 3, f"{name}: a {s}-pixel map at reduction {r} of {side}"

    expected, features = _module_outputs(model, info.module_name(), x)
    for actual, wanted, stage in zip(maps, expected, info.get_dicts()):
        torch.testing.assert_close(actual, wanted, rtol=0, atol=0, msg=lambda m: f"{name} stage {stage}: {m}")
    last = features.pool5 if name.startswith("fcn") else features  # FCN's features: its skips' maps
    torch.testing.assert_close(maps[-1], last, rtol=0, atol=0)


@pytest.mark.parametrize("name", THROUGH_CREATE_MODEL)
def test_stages_match_feature_info_and_the_full_net(name):
    """Through ``create_model(name, features_only=True)``; every registered model gets the same
    check in tests/test_toolchain.py, on the net it traces and exports."""
    model = randomise(cnnzoo.create_model(name)).eval()
    extractor = cnnzoo.create_model(name, features_only=True).eval()
    extractor.load_state_dict(model.state_dict(), strict=False)  # the same parameter names
    assert_stages_match_feature_info_and_the_full_net(name, model, extractor, _input(name))


@pytest.mark.parametrize("name", ["resnet50", "densenet121"])
def test_same_feature_maps_as_timm(name):
    timm = pytest.importorskip("timm")
    reference = randomise(timm.create_model(name, pretrained=False))
    timm_features = timm.create_model(name, pretrained=False, features_only=True).eval()
    # timm's feature net flattens nested sequentials: "features.conv0" becomes "features_conv0"
    timm_names = timm_features.state_dict().keys()
    renamed = {key if key in timm_names else key.replace(".", "_", 1): value
               for key, value in reference.state_dict().items()}
    timm_features.load_state_dict({k: v for k, v in renamed.items() if k in timm_names}, strict=True)
    ours = cnnzoo.create_model(name, features_only=True).eval()
    missing, _ = ours.load_state_dict(reference.state_dict(), strict=False)
    assert not missing
    assert ours.feature_info.channels() == timm_features.feature_info.channels()
    assert ours.feature_info.reduction() == timm_features.feature_info.reduction()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, actual = timm_features(x), ours(x)
    assert len(actual) == len(expected) == 5
    for a, e in zip(actual, expected):
        assert e.std() > 1e-2  # maps worth comparing
        torch.testing.assert_close(a, e, atol=1e-4, rtol=1e-4)


def test_out_indices_choose_stages_and_negative_ones_count_from_the_end():
    every = cnnzoo.create_model("resnet18", features_only=True).eval()
    some = cnnzoo.create_model("resnet18", features_only=True, out_indices=(1, -1)).eval()
    some.load_state_dict(every.state_dict(), strict=False)
    assert some.feature_info.get_dicts() == [every.feature_info[1], every.feature_info[4]]
    assert some.feature_info[1] == {"num_chs": 512, "reduction": 32, "module": "layer4"}
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        all_maps, chosen = every(x), some(x)
    assert len(chosen) == 2
    torch.testing.assert_close(chosen[0], all_maps[1], rtol=0, atol=0)
    torch.testing.assert_close(chosen[1], all_maps[4], rtol=0, atol=0)
    # cut after the last chosen stage: no classifier is left
    stem_only = cnnzoo.create_model("resnet18", features_only=True, out_indices=(0,))
    assert not any(name.startswith(("layer", "fc")) for name, _ in stem_only.named_parameters())


def test_an_extractor_exports():
    extractor = cnnzoo.create_model("resnet20", features_only=True, out_indices=(0, 2)).eval()
    x = torch.randn(2, 3, 32, 32)
    program = torch.export.export(extractor, (x,))
    with torch.no_grad():
        for a, e in zip(program.module()(x), extractor(x)):
            torch.testing.assert_close(a, e)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(out_indices=(5,)), r"out_indices \(5,\): 5 is out of range; resnet18 has 5 stages \(indices 0\.\.4"),
        (dict(out_indices=(-6,)), "out of range"),
        (dict(out_indices=()), "out_indices is empty"),
        (dict(out_indices=(2, 1)), "distinct stages in increasing order"),
        (dict(out_indices=(1, -4)), "distinct stages in increasing order"),  # -4 is stage 1
        (dict(out_indices=("1",)), "out of range"),
        (dict(out_indices=3), r"must be a sequence of stage indices such as \(1, 2, 3\), got 3"),
        (dict(out_indices=(1,), features_only=False), "out_indices is for features_only=True"),
    ],
)
def test_bad_out_indices_are_one_line_errors(options, message):
    options.setdefault("features_only", True)
    with pytest.raises(CnnzooError, match=message) as caught:
        cnnzoo.create_model("resnet18", **options)
    assert "\n" not in str(caught.value)


def test_a_net_without_stages_says_so():
    class NoStages(ClassifierNet):
        def forward_features(self, x):
            return x

    from cnnzoo.features import features_only

    with pytest.raises(CnnzooError, match="NoStages has no stages to extract features from"):
        features_only(NoStages(num_classes=1, in_chans=3))


def test_every_model_class_declares_its_stages():
    """A family added without ``feature_trunk`` would make features_only an error for it."""
    cnnzoo.list_models()  # imports every model file

    def leaves(cls):
        subclasses = cls.__subclasses__()
        return [leaf for sub in subclasses for leaf in leaves(sub)] if subclasses else [cls]

    model_classes = [cls for cls in leaves(ClassifierNet) if cls.__module__.startswith("cnnzoo.models.")]
    assert len(model_classes) >= 20
    assert [cls.__name__ for cls in model_classes if not cls.feature_trunk] == []
