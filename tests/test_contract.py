"""Every registered model keeps the model contract (docs/architecture.md)."""

import pytest
import torch
from torch import nn

import cnnzoo
from cnnzoo.models.base import ClassifierNet

ALL_MODELS = cnnzoo.list_models()


def _test_side(info) -> tuple[int, int]:
    """A small input the net accepts: its fixed size, or a little above its minimum."""
    _, h, w = info.input_size
    if info.fixed_size:
        return h, w
    side = max(info.min_size or h, 32)
    side = min(side, h)
    return side, side


def _runs(model: nn.Module, channels: int, side: int) -> bool:
    try:
        with torch.no_grad():
            model(torch.randn(1, channels, side, side))
        return True
    except (RuntimeError, ValueError):
        return False


@pytest.mark.parametrize("name", ALL_MODELS)
def test_model_contract(name):
    """The timm contract, and the registry's input sizes are true (one build per model)."""
    info = cnnzoo.model_info(name)
    assert info.paper.year >= 1989 and info.paper.url.startswith("http")
    assert info.description
    # non-default class and channel counts prove both options reach the network
    model = cnnzoo.create_model(name, num_classes=5, in_chans=2).eval()
    assert isinstance(model, ClassifierNet)
    assert (model.num_classes, model.in_chans) == (5, 2)
    assert model.num_features > 0
    h, w = _test_side(info)
    x = torch.randn(1, 2, h, w)
    with torch.no_grad():
        logits = model(x)
        # freshly built, in eval mode (default BN statistics), every net gives finite outputs
        assert torch.isfinite(logits).all(), f"{name} gives non-finite outputs when freshly built"
        features = model.forward_features(x)
        torch.testing.assert_close(model.forward_head(features), logits, rtol=0, atol=0)
        pre_logits = model.forward_head(features, pre_logits=True)
        assert logits.shape[:2] == (1, 5)
        assert pre_logits.shape[:2] == (1, model.num_features)
        assert isinstance(model.get_classifier(), nn.Module)

        # the head alone shows what a new classifier does: the features do not change
        model.reset_classifier(7)
        assert model.num_classes == 7
        assert model.forward_head(features).shape[:2] == (1, 7)
        model.reset_classifier(0)
        assert isinstance(model.get_classifier(), nn.Identity)
        pooled = model.forward_head(features)
        assert pooled.shape[:2] == (1, model.num_features)
        torch.testing.assert_close(pooled, pre_logits)

    # min_size runs and min_size - 1 fails; fixed-size nets reject other sizes
    if info.fixed_size:
        assert _runs(model, 2, info.input_size[1])
        assert not _runs(model, 2, info.input_size[1] + 32)
        with pytest.raises(cnnzoo.CnnzooError, match=f"only {info.input_size[1]}x"):
            info.check_input_size(info.input_size[1] + 32, info.input_size[2] + 32)
    else:
        assert info.min_size is not None, f"{name} must record its minimum input size"
        assert _runs(model, 2, info.min_size), f"{name} fails at its min_size {info.min_size}"
        assert _runs(model, 2, info.min_size + 1), f"{name} fails at {info.min_size + 1}, above its min_size"
        if info.min_size > 1:
            # a real image one pixel smaller must fail (a 0-pixel one would prove nothing)
            assert not _runs(model, 2, info.min_size - 1), f"{name} also runs at {info.min_size - 1}"
            with pytest.raises(cnnzoo.CnnzooError, match=f"at least {info.min_size}x{info.min_size}"):
                info.check_input_size(info.min_size - 1, info.min_size - 1)
        # min_size == 1: the 1x1 run above is the whole claim; there is no smaller image
