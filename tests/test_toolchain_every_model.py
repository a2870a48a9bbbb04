"""Every registered model that is no representative of tests/test_toolchain.py: the same checks
on one build (torch.fx, torch.export, features_only, fold_bn), without the representatives'
create_feature_extractor and torch.compile (that module's docstring says why).

A file of its own so that the two test workers share the toolchain's checks (about 4 minutes
each on one core) instead of one worker running all of them.
"""

from __future__ import annotations

import pytest

from test_toolchain import (
    ALL_MODELS,
    REPRESENTATIVES,
    _assert_fx_export_features_and_fold_give,
    _model_and_input,
    _slow_if_in,
)

# about 35 s each on one core (Xeon): thousands of layers through torch.export
DEEPEST = {"resnet1202", "preact_resnet1001"}


@pytest.mark.parametrize("name", _slow_if_in(DEEPEST, [name for name in ALL_MODELS if name not in REPRESENTATIVES]))
def test_fx_export_features_and_fold_give_eager_outputs(name):
    """tests/test_toolchain.py gives the representatives these checks and more, on one build."""
    _assert_fx_export_features_and_fold_give(name, *_model_and_input(name))
