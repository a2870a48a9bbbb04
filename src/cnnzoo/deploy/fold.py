"""Batch norm folded into the neighbouring convolution or linear layer, for inference.

In eval mode a batch norm is a fixed per-channel affine map ``y = s * x + t`` with
``s = gamma / sqrt(var + eps)`` and ``t = beta - mean * s``.  Where it reads the output of a
convolution (or a linear layer) and nothing else reads that output, the map folds into the
layer's weights and bias exactly: ``s * (W * x + b) + t = (s W) * x + (s b + t)``.  Where it
comes *before* a convolution with no padding (or a linear layer), it folds forward:
``W * (s x + t) + b = (W s) * x + (b + W * t)``.  Zero padding breaks the forward fold (the
padded zeros would have to be ``-t / s`` to match), and so does a ReLU in between, the
BN-ReLU-conv order of the pre-activation nets (He et al. 2016b) and DenseNet: those batch
norms are left, and the report says why.  Dropout is the identity at inference and is replaced
by ``nn.Identity``.

Finding the pairs.  A pair may be folded only if the data really flows from one layer to the
other and nowhere else, which the module tree alone does not say (a block's ``conv2`` and
``bn2`` are attributes; its ``forward`` decides how they connect).  So every module with
children is traced with :mod:`torch.fx`, one level at a time (its children are leaves), and a
pair is taken from that graph: ``bn(conv(x))`` where the convolution's output has no other
user and each of the two modules is called once in the whole net.  Tracing one level at a time
keeps the analysis exact where a whole-net trace fails (control flow on shapes, modules kept
outside the tree): a level that cannot be traced is still analysed if it is a plain
``nn.Sequential`` (its ``forward`` is the chain of its children), and otherwise its own pairs
are left and named in the report; the levels below it are traced on their own.  Identity and
dropout calls between the two are looked through (DenseNet's conv1 -> dropout -> norm2), and a
child whose forward ends with a layer (Xception's ``SeparableConv2d``: depthwise, pointwise)
stands for that layer.  Why not one whole-net trace, or torch.ao's ``fuse_modules``: the first
fails for part of the zoo, and the second fuses the pairs it is told, with no check that the data
flows between them.

The layers are changed in place (the convolution keeps its identity, the batch norm becomes an
``nn.Identity`` where it was), so the folded net is the same class with the same methods and
submodule paths (``classifier_path`` still names the classifier).  The arithmetic of the
backward fold is PyTorch's own (:func:`torch.nn.utils.fusion.fuse_conv_bn_eval`,
:func:`~torch.nn.utils.fusion.fuse_linear_bn_eval`); the forward fold has no library version
and is written here.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.fx
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from cnnzoo.layers.batchnorm import BatchNorm2dFromEquations

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_LAYERS = (*_CONVS, nn.Linear)
#: modules that compute eval-mode batch norm from running statistics; the paper-equation
#: version (simple_cnn's ``norm=bn``) has the same parameters and buffers
_BATCH_NORMS = (nn.modules.batchnorm._BatchNorm, BatchNorm2dFromEquations)
#: modules that are the identity at inference
_PASS_THROUGH = (nn.Identity, nn.modules.dropout._DropoutNd)


@dataclass
class FoldReport:
    """What :func:`fold_bn` did: each entry names modules by their path in the net."""

    #: ``(layer, bn)``: the batch norm folded into the layer before it
    folded: list[tuple[str, str]] = field(default_factory=list)
    #: ``(bn, layer)``: the batch norm folded into the layer after it
    folded_forward: list[tuple[str, str]] = field(default_factory=list)
    #: ``(bn, reason)``: batch norms left in the net
    left: list[tuple[str, str]] = field(default_factory=list)
    #: dropout modules replaced by ``nn.Identity``
    dropout_removed: list[str] = field(default_factory=list)

    @property
    def num_batch_norms(self) -> int:
        return len(self.folded) + len(self.folded_forward) + len(self.left)

    def summary(self) -> str:
        """One line: how many batch norms were folded, which way, and how many were left."""
        return (f"folded {len(self.folded) + len(self.folded_forward)} of {self.num_batch_norms} batch norms "
                f"({len(self.folded)} into the layer before, {len(self.folded_forward)} into the layer after), "
                f"left {len(self.left)}; removed {len(self.dropout_removed)} dropout layers")  # fmt: skip

    def format(self) -> str:
        """The summary, then every batch norm left with its reason."""
        return "\n".join([self.summary(), *(f"  left {name}: {reason}" for name, reason in self.left)])


def fold_bn(model: nn.Module, *, inplace: bool = False) -> tuple[nn.Module, FoldReport]:
    """An inference copy of ``model`` (eval mode) with its batch norms folded and dropout removed.

    Returns ``(folded model, report)``; ``inplace=True`` changes ``model`` itself instead of a
    copy.  The outputs equal the eval-mode outputs of ``model`` up to float rounding.
    """
    net = model if inplace else copy.deepcopy(model)
    net.eval()
    report = FoldReport()
    plan = _find_pairs(net, _single_owner_modules(net))
    report.left.extend(plan.left)
    # forward folds first: a layer that takes both a BN before it and one after it then gets
    # the second fold on top of the first, in the order the data meets them
    for bn_name, layer_name in plan.forward:
        _fold_forward(net.get_submodule(bn_name), net.get_submodule(layer_name))
        _replace(net, bn_name, nn.Identity())
        report.folded_forward.append((bn_name, layer_name))
    for layer_name, bn_name in plan.backward:
        _fold_backward(net.get_submodule(layer_name), net.get_submodule(bn_name))
        _replace(net, bn_name, nn.Identity())
        report.folded.append((layer_name, bn_name))
    for name, module in list(net.named_modules()):
        if isinstance(module, nn.modules.dropout._DropoutNd):
            _replace(net, name, nn.Identity())
            report.dropout_removed.append(name)
    return net, report


# ------------------------------------------------------------------------------------------
# finding the pairs
# ------------------------------------------------------------------------------------------


@dataclass
class _Plan:
    backward: list[tuple[str, str]] = field(default_factory=list)  # (layer, bn)
    forward: list[tuple[str, str]] = field(default_factory=list)  # (bn, layer)
    left: list[tuple[str, str]] = field(default_factory=list)  # (bn, reason)


class _OneLevelTracer(torch.fx.Tracer):
    """Every submodule call is a leaf: the graph of one module's own ``forward``."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return True


def _single_owner_modules(net: nn.Module) -> set[int]:
    """The ids of the modules that sit once in the tree and share no parameter.

    A module registered under two names, or holding a parameter another module also holds,
    would carry a fold to the second place too: such modules are never folded.
    """
    paths: dict[int, list[str]] = {}
    for name, module in net.named_modules(remove_duplicate=False):
        paths.setdefault(id(module), []).append(name)
    owners: dict[int, set[int]] = {}
    for module in net.modules():
        for param in module.parameters(recurse=False):
            owners.setdefault(id(param), set()).add(id(module))
    shared = {mod for mods in owners.values() if len(mods) > 1 for mod in mods}
    return {key for key, names in paths.items() if len(names) == 1 and key not in shared}


def _find_pairs(net: nn.Module, single_owner: set[int]) -> _Plan:
    edges: list[tuple[str, str]] = []  # (producer, consumer): the only data path between two modules
    calls: dict[str, int] = {}  # how often each module is called, over every traced level
    untraced: dict[str, str] = {}  # module path -> why its level has no graph
    referenced: set[str] = set()  # modules whose parameters a forward reads directly
    # a module whose forward starts with one child reading its input, or ends with one child
    # whose output it returns (Xception's SeparableConv2d: depthwise, pointwise): that child
    first: dict[str, str] = {}
    last: dict[str, str] = {}
    for path, module in net.named_modules():
        if not any(True for _ in module.children()):
            continue
        graph = _trace(module, path)
        prefix = f"{path}." if path else ""
        if isinstance(graph, str):
            if type(module).forward is nn.Sequential.forward:
                for child in module._modules:
                    calls[prefix + child] = calls.get(prefix + child, 0) + 1
                chain = [prefix + n for n, child in module.named_children() if not isinstance(child, _PASS_THROUGH)]
                edges.extend(zip(chain, chain[1:]))
                if chain:
                    first[path], last[path] = chain[0], chain[-1]
            else:
                untraced[path] = graph
            continue
        for node in graph.nodes:
            if node.op == "get_attr":
                referenced.update(_parents(prefix + node.target))
            elif node.op == "call_module":
                calls[prefix + node.target] = calls.get(prefix + node.target, 0) + 1
                source = _source(node, module)
                if source is not None:
                    edges.append((prefix + source.target, prefix + node.target))
            elif node.op == "output" and _source(node, module) is not None:
                last[path] = prefix + _source(node, module).target
        reader = _only_reader(graph, module)
        if reader is not None:
            first[path] = prefix + reader.target

    plan = _Plan()
    modules = dict(net.named_modules())

    def foldable(name: str) -> bool:
        return calls.get(name) == 1 and id(modules[name]) in single_owner and name not in referenced

    def inner(name: str | None, ends: dict[str, str]) -> str | None:
        """From a module that is not a layer down to the layer at its start or end, if any."""
        while name in ends and not isinstance(modules[name], _LAYERS) and foldable(name):
            name = ends[name]
        return name

    consumers = {producer: inner(consumer, first) for producer, consumer in edges}
    producers = {consumer: inner(producer, last) for producer, consumer in edges}
    for name, module in modules.items():
        if not isinstance(module, _BATCH_NORMS):
            continue
        if module.running_mean is None or module.running_var is None:
            plan.left.append((name, "it has no running statistics (normalises every batch by itself)"))
            continue
        before, after = producers.get(name), consumers.get(name)
        if before in modules and isinstance(modules[before], _LAYERS) and foldable(before) and foldable(name) \
                and _matches(modules[before], module):  # fmt: skip
            plan.backward.append((before, name))
        elif after in modules and isinstance(modules[after], _LAYERS) and foldable(after) and foldable(name) \
                and _forward_exact(module, modules[after]) is None:  # fmt: skip
            plan.forward.append((name, after))
        else:
            plan.left.append((name, _why_left(name, modules, before, after, untraced)))
    return plan


def _only_reader(graph: torch.fx.Graph, level: nn.Module) -> torch.fx.Node | None:
    """The module call that alone reads the forward's only input, looking through identities."""
    inputs = [node for node in graph.nodes if node.op == "placeholder"]
    node = inputs[0] if len(inputs) == 1 else None
    while node is not None and len(node.users) == 1:
        (user,) = node.users
        if user.op != "call_module" or user.args != (node,) or user.kwargs:
            return None
        if not isinstance(level.get_submodule(user.target), _PASS_THROUGH):
            return user
        node = user
    return None


def _source(node: torch.fx.Node, level: nn.Module) -> torch.fx.Node | None:
    """The module call whose output is ``node``'s only input and has no other user, if any.

    Identity and dropout calls in between are looked through (both are the identity at
    inference, and dropout is removed): DenseNet's conv1 -> dropout -> norm2.
    """
    source = node.args[0] if len(node.args) == 1 and not node.kwargs else None
    while isinstance(source, torch.fx.Node) and source.op == "call_module" and len(source.users) == 1:
        if not isinstance(level.get_submodule(source.target), _PASS_THROUGH):
            return source
        source = source.args[0] if len(source.args) == 1 and not source.kwargs else None
    return None


def _trace(module: nn.Module, path: str) -> torch.fx.Graph | str:
    """The graph of ``module``'s own forward, or why it cannot be traced."""
    try:
        return _OneLevelTracer().trace(module)
    except Exception as exc:  # noqa: BLE001 - any failure of the symbolic trace means "no graph here"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"{path or 'the net'} cannot be traced by torch.fx ({first[:120]})"


def _parents(target: str) -> list[str]:
    """``a.b.weight`` -> ``a.b``, ``a``: the modules whose state a direct attribute read touches."""
    parts = target.split(".")
    return [".".join(parts[:i]) for i in range(len(parts), 0, -1)]


def _matches(layer: nn.Module, bn: nn.Module) -> bool:
    """The batch norm normalises the layer's output channels (dim 1)."""
    width = layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
    return bn.num_features == width


def _forward_exact(bn: nn.Module, layer: nn.Module) -> str | None:
    """None where ``layer(bn(x))`` folds into ``layer`` exactly; otherwise why not."""
    width = layer.in_features if isinstance(layer, nn.Linear) else layer.in_channels
    if width != bn.num_features:
        return "its width differs from the next layer's input"
    if isinstance(layer, nn.Linear):
        return None
    if isinstance(layer, _TRANSPOSED):
        return "the next layer is a transposed convolution"
    if layer.groups != 1:
        return "the next convolution is grouped"
    # a per-channel affine map commutes with reflect, replicate and circular padding, but
    # zeros padded after the BN are not zeros padded before it
    padded = layer.padding == "same" or (layer.padding != "valid" and any(p != 0 for p in layer.padding))
    if padded and layer.padding_mode == "zeros":
        return "the next convolution zero-pads its input"
    return None


def _why_left(name: str, modules: dict[str, nn.Module], before: str | None, after: str | None,
              untraced: dict[str, str]) -> str:  # fmt: skip
    parent = name.rpartition(".")[0]
    if parent in untraced:
        return untraced[parent]
    for neighbour in (before, after):
        if neighbour in modules and isinstance(modules[neighbour], _LAYERS):
            why = _forward_exact(modules[name], modules[neighbour]) if neighbour == after else None
            return why or f"{neighbour} is called in more than one place, shared, or read directly"
    return f"it reads {_describe(before, modules)} and feeds {_describe(after, modules)}"


def _describe(neighbour: str | None, modules: dict[str, nn.Module]) -> str:
    if neighbour is None:
        return "a computed value (a sum, a concatenation or its block's input)"
    return f"a {type(modules[neighbour]).__name__} ({neighbour})"


# ------------------------------------------------------------------------------------------
# the folds
# ------------------------------------------------------------------------------------------


def _fold_backward(layer: nn.Module, bn: nn.Module) -> None:
    """``bn(layer(x))`` -> ``layer'(x)``, keeping the layer object (hooks, identity)."""
    if isinstance(layer, nn.Linear):
        fused = fuse_linear_bn_eval(layer, bn)
    else:
        fused = fuse_conv_bn_eval(layer, bn, transpose=isinstance(layer, _TRANSPOSED))
    layer.weight = fused.weight
    layer.bias = fused.bias


@torch.no_grad()
def _fold_forward(bn: nn.Module, layer: nn.Module) -> None:
    """``layer(bn(x))`` -> ``layer'(x)`` for an unpadded, ungrouped convolution or a linear layer.

    Not in torch.nn.utils.fusion (it fuses only a BN *after* its layer).  Computed in float64,
    so that the fold adds no more rounding than the backward one.
    """
    scale = torch.rsqrt(bn.running_var.double() + bn.eps)
    if bn.weight is not None:  # affine=False: gamma 1, beta 0
        scale = scale * bn.weight.double()
    shift = -bn.running_mean.double() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.double()
    weight = layer.weight.double()
    shape = (1, -1) + (1,) * (weight.dim() - 2)  # the input-channel axis of the weight
    bias = (weight * shift.view(shape)).flatten(1).sum(1)
    if layer.bias is not None:
        bias = bias + layer.bias.double()
    dtype = layer.weight.dtype
    layer.weight = nn.Parameter((weight * scale.view(shape)).to(dtype))
    layer.bias = nn.Parameter(bias.to(dtype))


def _replace(net: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, child = path.rpartition(".")
    setattr(net.get_submodule(parent_path) if parent_path else net, child, new)
