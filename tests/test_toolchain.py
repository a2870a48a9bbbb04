"""The zoo passes through the PyTorch 2 toolchain and gives its eager outputs.

Each net is freshly built with random weights and BN statistics, in eval mode, on a small
input (``tests/test_contract.py``'s ``_test_side``); finite eager outputs and the head/feature
split are test_contract's, here only agreement with eager is checked.

* ``torch.fx.symbolic_trace``: every registered model (cheap: fx records the forward once).
* ``torch.export.export``, torchvision's ``create_feature_extractor`` (its own fx tracer, train and
  eval graphs) and ``torch.compile(fullgraph=True)``: one model for every distinct body of code.
  Models built from the same model class and the same layer classes (resnet20 .. resnet1202,
  vgg11 .. vgg19, densenet121 .. densenet264) run the same Python code and differ only in how
  many blocks there are and how wide they are, which these tracers do not branch on; dynamo and
  export cost seconds per hundred layers (resnet1202 alone took minutes), so each such group is
  represented by its smallest net.  ``test_representatives_cover_every_model`` derives the groups
  from the registry and fails when a model brings code that no representative runs.
* ``torch.compile`` uses ``backend="eager"`` per representative: dynamo captures the whole forward
  without a graph break (``fullgraph=True``) and runs the captured graph.  What ``aot_eager`` adds,
  functionalisation and decomposition to ATen by AOT autograd, is the tracing ``torch.export``
  already does on every representative, and it doubled the cost (densenet121: 20 s against 10 s
  on a busy 2-core machine).  Inductor (AOT autograd, code generation and a C++ compiler) runs on
  two nets that cover the zoo's layer kinds (LRN, grouped and depthwise convolutions, channel
  shuffle, residual additions, concatenation), in one test so that its start-up is paid once:
  about 60 s of CPU with an empty inductor cache, a few seconds with a warm one (marked slow).

Measured (Intel Xeon, 2 cores, load average about 1, ``OMP_NUM_THREADS=1 pytest -n 2`` on this
file and tests/test_features.py): 2 min 23 s wall, 4 min 47 s CPU with a warm inductor cache.
``resnet1202`` keeps its own initialisation: random BN scales over 1202 layers overflow float32.
"""

from __future__ import annotations

import pytest
import torch
import torch.fx
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

import cnnzoo
from test_contract import _test_side
from zoo_helpers import build_on_meta, randomise

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

INDUCTOR_SAMPLE = ["alexnet_paper", "shufflenet_v1_g2"]

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
        randomise(model)
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


def _assert_fx_trace_gives(model, x, expected) -> None:
    traced = torch.fx.symbolic_trace(model)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), expected, **SAME_CALLS)


@pytest.mark.parametrize("name", [name for name in ALL_MODELS if name not in REPRESENTATIVES])
def test_fx_symbolic_trace_gives_eager_outputs(name):
    """Every model that is no representative (those get the same check below, on one build)."""
    _assert_fx_trace_gives(*_model_and_input(name))


@pytest.mark.parametrize(
    "name", [pytest.param(name, marks=pytest.mark.slow) if name in SLOWEST else name for name in REPRESENTATIVES]
)
def test_fx_export_extractor_and_compile_give_eager_outputs(name):
    model, x, expected = _model_and_input(name)
    _assert_fx_trace_gives(model, x, expected)
    with torch.no_grad():
        exported = torch.export.export(model, (x,)).module()
        torch.testing.assert_close(exported(x), expected, **SAME_CALLS, msg=lambda m: f"{name}, torch.export: {m}")

        output_node = get_graph_node_names(model)[1][-1]  # the eval graph's last node: the logits
        extractor = create_feature_extractor(model, return_nodes=[output_node], suppress_diff_warning=True).eval()
        torch.testing.assert_close(extractor(x)[output_node], expected, **SAME_CALLS,
                                   msg=lambda m: f"{name}, create_feature_extractor: {m}")

        torch._dynamo.reset()
        compiled = torch.compile(model, fullgraph=True, backend="eager")
        torch.testing.assert_close(compiled(x), expected, **SAME_CALLS, msg=lambda m: f"{name}, torch.compile: {m}")


@pytest.mark.slow
def test_compile_with_inductor_on_a_sample():
    """One test for the sample: inductor's start-up (tens of seconds) is paid once."""
    for name in INDUCTOR_SAMPLE:
        model, x, expected = _model_and_input(name)
        torch._dynamo.reset()
        compiled = torch.compile(model, fullgraph=True, backend="inductor")
        with torch.no_grad():
            torch.testing.assert_close(compiled(x), expected, **DECOMPOSED, msg=lambda m: f"{name}, inductor: {m}")
