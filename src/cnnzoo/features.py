"""Feature extraction, timm's way: ``create_model(name, features_only=True, out_indices=...)``.

A *stage* is the part of a net that works at one stride (reduction) of the input; its feature map
is the output of the stage's last module.  Each model class declares its trunk as data,
``feature_trunk``: the modules of its main path, in forward order (shell-style patterns whose
``*`` does not cross a dot: ``"features.*"`` is every child of ``features``).  One generic
implementation here

1. measures each trunk module's output channels and stride with a shape-only forward on the meta
   device, at two input sizes (the stride is the input's growth over the output's, which valid
   convolutions and ceil-mode pools, whose sizes are off by a few pixels, do not change), and
2. takes the last module at each stride as that stage's end, and
3. cuts the net after the last stage asked for: torch.fx traces the net once in training mode
   and once in eval mode (forwards may branch on ``self.training``: auxiliary heads, dropout), each
   graph returns the last node recorded inside each chosen module, and torchvision's
   ``DualGraphModule`` switches between the two graphs with ``train()``/``eval()``.

Why torch.fx: the extracted module runs exactly the net's own forward code up to the chosen
nodes (the rest, classifier included, is removed as dead code), keeps the net's parameter names
(so a classifier's state dict loads into it with ``strict=False``) and is itself a plain graph
that ``torch.export`` and ``torch.compile`` take.  Forward hooks would run the whole net and
could not stop after the last stage; truncating each family's forward by hand would be one copy
per family.

Why not torchvision's ``create_feature_extractor``, which does the same cut: its tracer names
each new node by matching it against the name of every node recorded before it, which is
quadratic in the graph's length (ResNet-1202, 4,213 nodes: 19.5 s on a Xeon core, against
2.3 s here; ``benchmarks/features_build.py``, docs/results.md).  fx's own tracer already
records, on every node, the stack of modules being called (``node.meta["nn_module_stack"]``),
which is all the cut needs.

``feature_info`` follows timm's API (``channels()``, ``reduction()``, ``module_name()``,
``get_dicts()``, and ``feature_info[i]``, a dict with ``num_chs``, ``reduction``, ``module``);
timm is only a test dependency, so this small class is our own.  Unlike timm's, it lists only
the stages ``out_indices`` chose, in the order of the returned maps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, fx, nn

from cnnzoo.errors import ConfigError


class FeatureInfo:
    """Channels, reduction (stride) and module of each returned feature map (timm's API)."""

    def __init__(self, stages: Sequence[dict]) -> None:
        self.info = [dict(stage) for stage in stages]

    def get_dicts(self, keys: Sequence[str] | None = None) -> list[dict]:
        return [dict(s) if keys is None else {k: s[k] for k in keys} for s in self.info]

    def channels(self) -> list[int]:
        return [s["num_chs"] for s in self.info]

    def reduction(self) -> list[int]:
        return [s["reduction"] for s in self.info]

    def module_name(self) -> list[str]:
        return [s["module"] for s in self.info]

    def __getitem__(self, index: int) -> dict:
        return self.info[index]

    def __len__(self) -> int:
        return len(self.info)

    def __repr__(self) -> str:
        return f"FeatureInfo({self.info})"


def _matches(name: str, pattern: str) -> bool:
    """``fnmatch`` per dotted segment: ``*`` matches within one segment only."""
    import fnmatch

    names, patterns = name.split("."), pattern.split(".")
    return len(names) == len(patterns) and all(map(fnmatch.fnmatchcase, names, patterns))


def trunk_modules(model: nn.Module) -> list[str]:
    """The dotted paths ``model.feature_trunk`` names, pattern by pattern, in registration order."""
    names = [name for name, _ in model.named_modules() if name]
    paths: list[str] = []
    for pattern in model.feature_trunk:
        found = [name for name in names if _matches(name, pattern)]
        paths += found  # a pattern may match nothing: a layer some configurations lack (bn1)
    return paths


class _ForwardFeatures(nn.Module):
    """``net.forward_features`` as a module's forward, for ``torch.func.functional_call``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor):
        return self.net.forward_features(x)


def _output_shapes(model: nn.Module, paths: list[str], side: int) -> dict[str, torch.Size]:
    """Each module's output shape in ``forward_features`` of a ``side x side`` input, on the meta
    device: no memory for activations and no arithmetic, whatever the net's size."""
    shapes: dict[str, torch.Size] = {}

    def record(path):
        def hook(module, inputs, output) -> None:  # returns None: the output stays as it is
            shapes.setdefault(path, output.shape)

        return hook

    hooks = [model.get_submodule(p).register_forward_hook(record(p)) for p in paths]
    wrapper = _ForwardFeatures(model)
    tensors = {**dict(wrapper.named_parameters()), **dict(wrapper.named_buffers())}
    meta = {name: t.to("meta") for name, t in tensors.items()}  # no copy of the values
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            torch.func.functional_call(wrapper, meta, (torch.empty(1, model.in_chans, side, side, device="meta"),))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return shapes


def feature_stages(model: nn.Module, input_side: int) -> list[dict]:
    """Every stage of ``model``: ``num_chs``, ``reduction`` and ``module`` (its last module)."""
    if not getattr(model, "feature_trunk", ()):
        name = getattr(model, "model_name", type(model).__name__)
        raise ConfigError(f"{name} has no stages to extract features from (it declares no feature trunk)")
    paths = trunk_modules(model)
    # two sides well above any minimum: the outputs' growth gives the stride exactly
    small, large = 2 * input_side, 4 * input_side
    at_small, at_large = _output_shapes(model, paths, small), _output_shapes(model, paths, large)
    stages: list[dict] = []
    for path in paths:
        growth = at_large[path][-1] - at_small[path][-1]
        if growth <= 0:  # a mistake in the model's declaration, not the user's
            raise RuntimeError(f"{type(model).__name__}.feature_trunk: {path}'s output does not follow the input size")
        # the nominal stride, a power of two: floor/ceil rounding moves an output by a pixel
        reduction = 2 ** round(math.log2((large - small) / growth))
        stage = dict(num_chs=at_small[path][1], reduction=reduction, module=path)
        if stages and stages[-1]["reduction"] == reduction:
            stages[-1] = stage  # a later module at the same stride ends the stage
        else:
            stages.append(stage)
    return stages


def _checked_indices(out_indices: Sequence[int], count: int, name: str) -> list[int]:
    if not isinstance(out_indices, (Sequence, range)) or isinstance(out_indices, str):
        raise ConfigError(f"out_indices must be a sequence of stage indices such as (1, 2, 3), got {out_indices!r}")
    indices = list(out_indices)
    valid = f"{name} has {count} stages (indices 0..{count - 1}, or -{count}..-1)"
    if not indices:
        raise ConfigError(f"out_indices is empty; {valid}")
    for index in indices:
        if isinstance(index, bool) or not isinstance(index, int) or not -count <= index < count:
            raise ConfigError(f"out_indices {tuple(indices)}: {index!r} is out of range; {valid}")
    resolved = [index % count for index in indices]
    if resolved != sorted(set(resolved)):
        raise ConfigError(f"out_indices {tuple(indices)} must name distinct stages in increasing order")
    return resolved


def _last_node_of_each_module(graph: fx.Graph) -> dict[str, fx.Node]:
    """For each module path, the last node recorded while that module (or one inside it) was
    being called: the module's output, as torchvision's extractor also takes it."""
    last: dict[str, fx.Node] = {}
    for node in graph.nodes:
        for path, _module_type in node.meta.get("nn_module_stack", {}).values():
            last[path] = node
        if node.op == "call_module":  # a leaf module: its own call is its output
            last[node.target] = node
    return last


def _graph_returning(model: nn.Module, modules: list[str], training: bool) -> fx.Graph:
    """``model`` traced in training or eval mode, returning the list of ``modules``' outputs."""
    model.train(training)
    graph = fx.Tracer().trace(model)
    last = _last_node_of_each_module(graph)
    missing = [path for path in modules if path not in last]
    if missing:  # a declaration that names a module the forward never calls: the model's mistake
        raise RuntimeError(f"{type(model).__name__}: the traced forward never calls {', '.join(missing)}")
    output = next(node for node in graph.nodes if node.op == "output")
    output.args = ([last[path] for path in modules],)
    # everything after the last chosen stage, the classifier included; dead-code elimination
    # asks the graph's owner whether each called module is pure (the net itself: a GraphModule
    # built only for that would generate and compile the whole graph's code once more)
    graph.owning_module = model
    graph.eliminate_dead_code()
    graph.owning_module = None
    graph.lint()
    return graph


def features_only(
    model: nn.Module, out_indices: Sequence[int] | None = None, input_side: int = 224
) -> fx.GraphModule:
    """``model`` cut after its last chosen stage; ``forward(x)`` returns the chosen stages' maps.

    ``out_indices`` defaults to every stage; ``input_side`` is the net's usual input side (the
    strides are measured at twice and four times it).  The result has ``feature_info`` (channels,
    reduction and module of each map) and the net's parameter names.
    """
    from torchvision.models.feature_extraction import DualGraphModule

    name = getattr(model, "model_name", type(model).__name__)
    stages = feature_stages(model, input_side)
    if out_indices is None:
        out_indices = range(len(stages))
    chosen = [stages[i] for i in _checked_indices(out_indices, len(stages), name)]
    modules = [stage["module"] for stage in chosen]
    was_training = model.training
    try:
        train_graph = _graph_returning(model, modules, training=True)
        eval_graph = _graph_returning(model, modules, training=False)
    finally:
        model.train(was_training)
    extractor = DualGraphModule(model, train_graph, eval_graph, class_name=type(model).__name__)
    extractor.train(was_training)
    extractor.feature_info = FeatureInfo(chosen)
    extractor.model_name = name
    return extractor


__all__ = ["FeatureInfo", "feature_stages", "features_only", "trunk_modules"]
