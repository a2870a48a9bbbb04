"""The zoo passes through the PyTorch 2 toolchain and gives its eager outputs.

Each net is freshly built with random weights and BN statistics, in eval mode, on a small
input (``tests/test_contract.py``'s ``_test_side``); finite eager outputs and the head/feature
split are test_contract's, here only agreement with eager is checked.

* Every registered model, on one build (building and randomising the big nets costs more than
  most checks): ``torch.fx.symbolic_trace``, ``torch.export.export``, feature extraction
  (``cnnzoo.features.features_only``: each stage's map is its module's output in the full net,
  with ``feature_info``'s channels and reductions; tests/test_features.py's check) and, last since
  it changes the net in place, ``cnnzoo.deploy.fold_bn`` (tests/test_fold_bn.py's check).  The
  representatives here, every other model in tests/test_toolchain_every_model.py.
  ResNet-1202 and PreAct-ResNet-1001 cost about 35 s each, most of it in export.
* torchvision's ``create_feature_extractor`` (its own fx tracer, train and eval graphs) and
  ``torch.compile(fullgraph=True)``: one model for every distinct body of code.  Models built
  from the same model class and the same layer classes (resnet20 .. resnet1202, vgg11 .. vgg19,
  densenet121 .. densenet264) run the same Python code and differ only in how many blocks there
  are and how wide they are, which these tracers do not branch on; both cost about a minute on
  resnet1202 alone (torchvision's tracer names nodes in quadratic time; dynamo traces every
  layer), so each such group is represented by its smallest net.
  ``test_representatives_cover_every_model`` derives the groups from the registry and fails when
  a model brings code that no representative runs.
* ``torch.compile`` uses ``backend="eager"`` per representative: dynamo captures the whole forward
  without a graph break (``fullgraph=True``) and runs the captured graph.  What ``aot_eager`` adds,
  functionalisation and decomposition to ATen by AOT autograd, is the tracing ``torch.export``
  already does on every representative, and it doubled the cost (densenet121: 20 s against 10 s
  on a busy 2-core machine).  Dynamo's tracing is the costliest check of all: 7-14 s each on the
  five deepest representatives (Inception-v4, Inception-ResNet v1 and v2, PreAct-ResNet-164,
  DenseNet-121; 2-core Xeon), which together with the every-model export took the suite past
  its 15 minutes; those five skip it (``COMPILE_SKIPPED``) and keep every other check.  Inductor
  (AOT autograd, code generation and a C++ compiler) runs on ShuffleNet g2 (grouped and
  depthwise convolutions, channel shuffle, residual additions, concatenation): about 30 s of CPU
  with an empty inductor cache, a few seconds with a warm one (marked slow).

Measured (Intel Xeon, 2 cores, ``OMP_NUM_THREADS=1 pytest -n 2`` on this file and
tests/test_toolchain_every_model.py, a background training at nice 19 taking the idle time): about
4 min of one core each, with a warm inductor cache.
``resnet1202`` keeps its own initialisation: random BN scales over 1202 layers overflow float32.
"""

from __future__ import annotations

import pytest
import torch
import torch.fx
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

import cnnzoo
from cnnzoo.features import features_only
from test_contract import _test_side
from test_features import assert_stages_match_feature_info_and_the_full_net
from test_fold_bn import assert_folds_exactly, randomise_all_norms
from zoo_helpers import build_on_meta

ALL_MODELS = cnnzoo.list_models()

# the smallest model of each group built from the same model class and layer classes
REPRESENTATIVES = [
    "alexnet", "alexnet_paper", "bn_inception", "cnn3", "densenet121", "densenet_bc_100_12", "fastnet",
    "fcn32s_vgg16", "googlenet", "googlenet_bn", "inception_resnet_v1", "inception_resnet_v2",
    "inception_v3", "inception_v4", "lenet5", "lenet5_caffe", "lenet_300_100", "mobilenet_v1", "nas_child", "nin", "nin_cifar", "plain20",
    "preact_resnet164", "preact_resnet18", "preact_resnet50", "resnet18", "resnet20", "resnet50",
    "resnext29_16x64d", "shufflenet_v1_g1", "shufflenet_v1_g2", "squeezenet1_0", "vgg11", "vgg11_bn",
    "vgg11_lrn", "wrn16_8", "xception", "zfnet", "zfnet_spp",
]  # fmt: skip

INDUCTOR_SAMPLE = ["shufflenet_v1_g2"]

# dynamo traces each of these for 7-14 s on one core (module docstring)
COMPILE_SKIPPED = {"inception_v4", "inception_resnet_v1", "inception_resnet_v2", "preact_resnet164", "densenet121"}

# over 9 s each on 2 cores (Xeon, 1 thread per worker): deep Inception stems and dense blocks
SLOWEST = {"inception_resnet_v2", "inception_v4", "preact_resnet164", "densenet_bc_100_12", "densenet121",
           "fcn32s_vgg16", "inception_resnet_v1"}

# fx and export record the same ATen calls as eager; dynamo may reorder nothing either, but AOT
# autograd's and inductor's decompositions change the order of sums
SAME_CALLS = dict(rtol=1e-5, atol=1e-5)
DECOMPOSED = dict(rtol=1e-4, atol=1e-4)


# 1202 layers of random BN scales and statistics overflow float32: this one keeps its own init
KEEPS_ITS_INIT = {"resnet1202"}


def _model_and_input(name: str) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """The net with random weights in eval mode, a small input (batch 2), and its eager output."""
    info = cnnzoo.model_info(name)
    model = cnnzoo.create_model(name).eval()
    if name not in KEEPS_ITS_INIT:
        randomise_all_norms(model)  # zoo_helpers.randomise, and the 1-d and paper-equation BNs
    h, w = _test_side(info)
    x = torch.randn(2, info.input_size[0], h, w, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x)
    assert torch.isfinite(expected).all() and expected.abs().max() > 0  # worth comparing
    return model, x, expected


def _code_signature(model: torch.nn.Module) -> tuple:
    return type(model), frozenset(type(module) for module in model.modules())


def test_representatives_cover_every_model():
    groups: dict[tuple, list[tuple[int, str]]] = {}
    for name in ALL_MODELS:
        model = build_on_meta(name)
        groups.setdefault(_code_signature(model), []).append((len(list(model.modules())), name))
    smallest = sorted(min(members)[1] for members in groups.values())
    assert smallest == sorted(REPRESENTATIVES), "a model brings code no representative runs"


def _assert_fx_export_features_and_fold_give(name, model, x, expected) -> None:
    traced = torch.fx.symbolic_trace(model)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), expected, **SAME_CALLS, msg=lambda m: f"{name}, torch.fx: {m}")
        exported = torch.export.export(model, (x,)).module()
        torch.testing.assert_close(exported(x), expected, **SAME_CALLS, msg=lambda m: f"{name}, torch.export: {m}")
    extractor = features_only(model, input_side=cnnzoo.model_info(name).input_size[1]).eval()
    assert_stages_match_feature_info_and_the_full_net(name, model, extractor, x)
    del extractor, exported, traced  # they share the modules fold_bn is about to change
    assert_folds_exactly(model, x, expected)


def _slow_if_in(names: set[str], models: list[str]) -> list:
    return [pytest.param(name, marks=pytest.mark.slow) if name in names else name for name in models]


@pytest.mark.parametrize("name", _slow_if_in(SLOWEST, REPRESENTATIVES))
def test_fx_export_features_extractor_compile_and_fold_give_eager_outputs(name):
    model, x, expected = _model_and_input(name)
    with torch.no_grad():
        output_node = get_graph_node_names(model)[1][-1]  # the eval graph's last node: the logits
        extractor = create_feature_extractor(model, return_nodes=[output_node], suppress_diff_warning=True).eval()
        torch.testing.assert_close(extractor(x)[output_node], expected, **SAME_CALLS,
                                   msg=lambda m: f"{name}, create_feature_extractor: {m}")

        del extractor
        if name not in COMPILE_SKIPPED:
            torch._dynamo.reset()
            compiled = torch.compile(model, fullgraph=True, backend="eager")
            torch.testing.assert_close(compiled(x), expected, **SAME_CALLS, msg=lambda m: f"{name}, torch.compile: {m}")
            torch._dynamo.reset()
            del compiled
    _assert_fx_export_features_and_fold_give(name, model, x, expected)  # folds in place: last


@pytest.mark.slow
def test_compile_with_inductor_on_a_sample():
    """One test for the sample: inductor's start-up (tens of seconds) is paid once."""
    for name in INDUCTOR_SAMPLE:
        model, x, expected = _model_and_input(name)
        torch._dynamo.reset()
        compiled = torch.compile(model, fullgraph=True, backend="inductor")
        with torch.no_grad():
            torch.testing.assert_close(compiled(x), expected, **DECOMPOSED, msg=lambda m: f"{name}, inductor: {m}")
