"""Structured filter pruning: whole filters removed, a smaller dense network left (issue 12).

A filter is ranked by one of four scores, then removed together with everything that depends
on its output channel:

* ``l1``: Li et al. 2017 ("Pruning Filters for Efficient ConvNets", Sec. 3.1), the sum of the
  filter's absolute kernel weights; ``l2``: the sum of their squares (the alternative Li et
  al. compare with).  We rank by the *mean* over the filter's weights, which orders the filters of
  one layer exactly as the sum does and makes layers of different fan-in comparable when the
  ranking is global;
* ``bn-scale``: Liu et al. 2017 ("network slimming", Sec. 3.2), ``|gamma|`` of the batch norm
  that follows the convolution; train with ``bn_sparsity`` (:mod:`cnnzoo.compress.slimming`)
  first, and rank globally (``global_pruning=True``) as the paper does;
* ``random``: the control, seeded.

The channel surgery is Torch-Pruning's (Fang et al., CVPR 2023, "DepGraph"): its dependency
graph couples the channels that must go together (the BN and classifier that follow, residual
additions, concatenations, grouped and depthwise convolutions), and its pruner ranks each
group's channels (``ratio`` of every layer, or one threshold over all of them with
``global_pruning``).  The final classifiers (the main one and auxiliary heads) keep their
outputs.  What Torch-Pruning cannot do, and what we do instead:

* option A shortcuts of the CIFAR ResNets (:class:`~cnnzoo.layers.residual.ZeroPadShortcut`:
  strided identity plus zero channels) look to its tracer like an element-wise op, which
  wrongly ties the 16-, 32- and 64-channel stages together.  We replace each one by
  :class:`ChannelMapShortcut`, the same function written as a fixed one-hot 1x1 convolution
  (output channel ``j`` copies input channel ``source[j]`` or is zero), and teach Torch-Pruning
  how it is pruned: removing an output channel drops it from the map, removing an input channel
  turns the output that copied it into a zero channel.  So ResNet-20/56 are pruned in every
  layer, the residual stream included (Li et al. prune only inside the blocks, Sec. 4.2);
* ShuffleNet with g > 1: the channel shuffle after a grouped convolution sends channel ``i`` of
  group ``a`` to position ``i * g + a``, so a removed channel changes which group every later
  channel falls in; keeping the next grouped convolution's groups would need the same channels
  removed in every group *and* balanced across the next layer's groups, which Torch-Pruning
  cannot express: a clear error;
* LeNet-5: C3 reads fixed subsets of S2's maps (Table I); removing a map would rewrite the
  connection table: a clear error.

**Recording.**  A pruned model's :class:`~cnnzoo.modelspec.ModelSpec` gets one ``pruned``
transform per pruning step: the input size of the trace and the groups Torch-Pruning removed
(the root layer, output or input channels, the indices), in order.  Replaying them on a freshly
built model (:func:`replay_pruning`) gives the same architecture, so ``load_run`` rebuilds a
pruned run and its checkpoint loads strictly.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from cnnzoo.errors import ConfigError
from cnnzoo.modelspec import register_transform, spec_of

__all__ = ["METHODS", "ChannelMapShortcut", "PruneError", "PruneReport", "prune", "prune_command", "prune_run",
           "replay_pruning", "round_ratios"]  # fmt: skip

METHODS = ("l1", "l2", "bn-scale", "random")


class PruneError(ConfigError):
    """A pruning that cannot be done as asked: a bad ratio or method, a family that cannot be pruned."""


# ------------------------------------------------------------------------------------------
# option A shortcuts, taught to Torch-Pruning
# ------------------------------------------------------------------------------------------


class ChannelMapShortcut(nn.Module):
    """A parameter-free shortcut: output channel ``j`` is input channel ``source[j]`` (subsampled by
    ``stride``), or zeros where ``source[j] == -1``.

    ``ZeroPadShortcut(16, 32, 2)`` is the map ``[0, ..., 15, -1, ..., -1]`` (He et al. 2016,
    Sec. 3.3, option A); pruning changes the map.  It runs as one 1x1 convolution with a fixed
    one-hot weight (a buffer, outside the state dict: the map is rebuilt from the recorded
    pruning), which is exact in float32, traces with torch.fx and exports; to Torch-Pruning's
    tracer it is one layer whose input and output channels are pruned separately.
    """

    def __init__(self, source: list[int], in_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        self.register_buffer("selection", torch.zeros(0), persistent=False)
        self.set_map(source, in_channels)

    def set_map(self, source: list[int], in_channels: int) -> None:
        self.source, self.in_channels, self.out_channels = [int(s) for s in source], int(in_channels), len(source)
        weight = torch.zeros(self.out_channels, self.in_channels, 1, 1, device=self.selection.device)
        for out, inp in enumerate(self.source):
            if inp >= 0:
                weight[out, inp] = 1.0
        self.selection = weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.selection.to(x.dtype), stride=self.stride)

    def extra_repr(self) -> str:
        zeros = sum(1 for s in self.source if s < 0)
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}, zero channels={zeros}"


def _use_channel_map_shortcuts(model: nn.Module) -> None:
    """Replace every option A shortcut by its :class:`ChannelMapShortcut` (same outputs)."""
    from cnnzoo.layers.residual import ZeroPadShortcut

    for name, module in list(model.named_modules()):
        if isinstance(module, ZeroPadShortcut):
            source = list(range(module.in_channels)) + [-1] * (module.out_channels - module.in_channels)
            parent, _, leaf = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, leaf,
                    ChannelMapShortcut(source, module.in_channels, module.stride))  # fmt: skip


def _channel_map_pruner():
    """Torch-Pruning's handler for :class:`ChannelMapShortcut` (its input and output are not coupled)."""
    import torch_pruning as tp

    class ChannelMapPruner(tp.pruner.function.BasePruningFunc):
        TARGET_MODULES = (ChannelMapShortcut,)

        def prune_out_channels(self, layer, idxs):
            dropped = {int(i) for i in idxs}
            layer.set_map([s for j, s in enumerate(layer.source) if j not in dropped], layer.in_channels)
            return layer

        def prune_in_channels(self, layer, idxs):
            dropped = {int(i) for i in idxs}
            kept = [i for i in range(layer.in_channels) if i not in dropped]
            renumber = {old: new for new, old in enumerate(kept)}
            # an output that copied a removed input channel becomes a zero channel
            layer.set_map([renumber.get(s, -1) for s in layer.source], len(kept))
            return layer

        def get_out_channels(self, layer):
            return layer.out_channels

        def get_in_channels(self, layer):
            return layer.in_channels

    return ChannelMapPruner()


# ------------------------------------------------------------------------------------------
# what can be pruned
# ------------------------------------------------------------------------------------------


def check_ratio(ratio: float) -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 < float(ratio) < 1.0:
        raise PruneError(f"the pruning ratio is the share of filters removed: it must be in (0, 1), got {ratio}")
    return float(ratio)


def check_method(method: str) -> str:
    if method not in METHODS:
        raise PruneError(f"unknown pruning method {method!r}; choose from {', '.join(METHODS)}")
    return method


def check_prunable(model: nn.Module, name: str, method: str = "l1") -> None:
    """A one-line :class:`PruneError` for a net whose channels cannot be removed (module docstring)."""
    from cnnzoo.layers.shuffle import ChannelShuffle
    from cnnzoo.models.lenet import SparseConv

    for module in model.modules():
        if isinstance(module, SparseConv):
            raise PruneError(f"{name} cannot be pruned: C3 reads fixed subsets of S2's maps (LeNet-5's connection "
                             "table, Table I), so removing a filter would rewrite the table")  # fmt: skip
        if isinstance(module, ChannelShuffle) and module.groups > 1:
            raise PruneError(f"{name} cannot be pruned: its channel shuffle (g={module.groups}) moves channel i of "
                             "group a to position i*g+a, so removing a filter re-mixes the groups of the next grouped "
                             "convolution; shufflenet_v1_g1 (no shuffle) can be pruned")  # fmt: skip
    if method == "bn-scale" and not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise PruneError(f"--method bn-scale ranks channels by the scale of the batch norm after each convolution; "
                         f"{name} has no batch norm (use l1, l2 or random)")  # fmt: skip


def round_ratios(ratio: float, steps: int) -> list[float]:
    """The share of what is left that each of ``steps`` rounds removes, so that round k has removed ``ratio * k / steps``."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise PruneError(f"--steps must be a whole number >= 1, got {steps}")
    left = [1.0 - ratio * k / steps for k in range(steps + 1)]
    return [1.0 - left[k] / left[k - 1] for k in range(1, steps + 1)]


# ------------------------------------------------------------------------------------------
# tracing: Torch-Pruning's dependency graph
# ------------------------------------------------------------------------------------------


def _example(model: nn.Module, input_size) -> torch.Tensor:
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    # two images: batch norm in training mode (auxiliary heads, below) needs more than one value
    return torch.randn(2, *input_size, generator=torch.Generator().manual_seed(0)).to(device)


def _forward_every_head(model: nn.Module, example: torch.Tensor):
    """The forward Torch-Pruning traces: in training mode for nets with auxiliary heads, which run only then,
    so that their inputs are pruned with the trunk."""
    if getattr(model, "aux_logits", False):
        model.train()
    try:
        return model(example)
    finally:
        model.eval()


@contextlib.contextmanager
def _side_effects_undone(model: nn.Module):
    """A trace leaves no trace: batch-norm statistics, the random generators and warnings are restored.

    Gradients are switched on: Torch-Pruning traces through autograd (``load_run`` may be called
    under ``torch.no_grad``).
    """
    buffers = [b.detach().clone() for b in model.buffers()]
    training = model.training
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings(), torch.enable_grad():
        warnings.simplefilter("ignore")
        yield
    with torch.no_grad():
        for saved, buffer in zip(buffers, model.buffers()):
            if saved.shape == buffer.shape:
                buffer.copy_(saved)
    model.train(training)


def _graph_options(model: nn.Module) -> dict[str, Any]:
    return {"forward_fn": _forward_every_head, "customized_pruners": {ChannelMapShortcut: _channel_map_pruner()}}


def _output_layers(model: nn.Module, example: torch.Tensor) -> list[nn.Module]:
    """The layers whose outputs are the net's outputs (the classifier, auxiliary classifiers): never pruned."""
    produced: list[tuple[nn.Module, Any]] = []  # the outputs are kept alive: a freed tensor's id is reused

    def remember(module, args, out) -> None:  # (a hook that returned something would replace the output)
        produced.append((module, out))

    hooks = [m.register_forward_hook(remember) for m in model.modules()
             if next(m.parameters(recurse=False), None) is not None]  # fmt: skip
    try:
        with _side_effects_undone(model), torch.no_grad():
            outputs = _forward_every_head(model, example)
    finally:
        for hook in hooks:
            hook.remove()
    outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
    layers = [module for module, out in produced if any(out is o for o in outputs)]
    classifier = model.get_classifier() if hasattr(model, "get_classifier") else None
    if isinstance(classifier, nn.Module) and all(classifier is not m for m in layers):
        layers.append(classifier)
    return layers


def _refresh_attributes(model: nn.Module) -> None:
    """The model contract's ``num_features``: the width the (pruned) classifier now reads."""
    classifier = model.get_classifier() if hasattr(model, "get_classifier") else None
    width = getattr(classifier, "in_features", None) or getattr(classifier, "in_channels", None)
    if width and hasattr(model, "num_features"):
        model.num_features = int(width)


@register_transform("pruned")
def replay_pruning(model: nn.Module, *, input_size: list[int], groups: list[dict[str, Any]]) -> nn.Module:
    """Redo one recorded pruning step on ``model`` (the ``pruned`` transform of its ModelSpec)."""
    import torch_pruning as tp

    _use_channel_map_shortcuts(model)
    example = _example(model, input_size)
    with _side_effects_undone(model):
        graph = tp.DependencyGraph().build_dependency(model, example, verbose=False, **_graph_options(model))
    history = [[g["module"], g["channels"] == "out", [int(i) for i in g["idxs"]]] for g in groups]
    graph.load_pruning_history(history)
    _refresh_attributes(model)
    return model


# ------------------------------------------------------------------------------------------
# channel scores
# ------------------------------------------------------------------------------------------


def _importance(method: str, seed: int):
    import torch_pruning as tp

    if method == "bn-scale":
        # Liu et al. rank the raw |gamma| (no per-layer normalisation: the threshold is global)
        return tp.importance.BNScaleImportance(normalizer=None)
    if method == "random":
        return _SeededRandom(seed)

    class FilterNorm(tp.importance.GroupMagnitudeImportance):
        """Li et al.'s score: the |w|^p of a filter's own kernel weights (averaged over them, and over
        the filters a residual addition couples); the layers that read the channel do not count."""

        @torch.no_grad()
        def __call__(self, group):
            scores, positions = [], []
            for item in group.items:
                dep, idxs, layer = item.dep, item.idxs, item.dep.layer
                if not isinstance(layer, (nn.modules.conv._ConvNd, nn.Linear)):
                    continue
                if not group._DG.is_out_channel_pruning_fn(dep.handler):
                    continue
                weight = layer.weight.data.transpose(0, 1) if getattr(layer, "transposed", False) else layer.weight.data
                scores.append(weight[idxs].flatten(1).abs().pow(self.p).mean(1))
                positions.append(item.root_idxs)
            return self._reduce(scores, positions) if scores else None

    return FilterNorm(p=1 if method == "l1" else 2, group_reduction="mean", normalizer=None)


class _SeededRandom:
    """The control: a random score per channel, from its own seeded generator."""

    def __init__(self, seed: int) -> None:
        self.generator = torch.Generator().manual_seed(int(seed))

    def __call__(self, group):
        return torch.rand(len(group.items[0].idxs), generator=self.generator)


# ------------------------------------------------------------------------------------------
# prune
# ------------------------------------------------------------------------------------------


@dataclass
class PruneReport:
    """What one pruning step did: per image at ``input_size``."""

    method: str
    ratio: float
    global_pruning: bool
    input_size: list[int]
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    groups: int
    #: measured by :func:`prune_run` (seconds, batch 1, median of interleaved calls)
    latency_before: float | None = None
    latency_after: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def params_share(self) -> float:
        return self.params_after / self.params_before

    @property
    def macs_share(self) -> float:
        return self.macs_after / self.macs_before

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "params_share": self.params_share, "macs_share": self.macs_share}

    def format(self) -> str:
        from cnnzoo.analysis.summary import _human

        rows = [("params", _human(self.params_before), _human(self.params_after), self.params_share),
                ("multiply-adds", _human(self.macs_before), _human(self.macs_after), self.macs_share)]  # fmt: skip
        if self.latency_before and self.latency_after:
            rows.append(("CPU latency, batch 1", f"{1e3 * self.latency_before:.2f} ms",
                         f"{1e3 * self.latency_after:.2f} ms", self.latency_after / self.latency_before))  # fmt: skip
        lines = [f"{'':22s} {'before':>12s} {'after':>12s} {'after/before':>13s}"]
        lines += [f"{name:22s} {a:>12s} {b:>12s} {share:13.3f}" for name, a, b, share in rows]
        return "\n".join(lines)


def _default_input_size(model: nn.Module, name: str) -> tuple[int, int, int]:
    from cnnzoo.registry import model_info

    size = model_info(name).input_size
    return (int(getattr(model, "in_chans", size[0])), int(size[1]), int(size[2]))


def prune(model: nn.Module, ratio: float, method: str = "l1", *, global_pruning: bool = False,
          input_size=None, seed: int = 0) -> tuple[nn.Module, PruneReport]:  # fmt: skip
    """A copy of ``model`` with ``ratio`` of its filters removed, and what that did.

    ``model`` must come from a :class:`~cnnzoo.modelspec.ModelSpec` (``ModelSpec.build``,
    ``load_run``): the pruning is recorded in the copy's spec as a ``pruned`` transform.
    ``input_size`` ``(C, H, W)`` is where the net is traced and measured (default: the
    registry's size with the model's channels).  ``model`` itself is not changed.
    """
    import torch_pruning as tp

    from cnnzoo.analysis import summary

    ratio, method = check_ratio(ratio), check_method(method)
    spec = spec_of(model)
    if spec is None:
        raise PruneError(f"{type(model).__name__} was not built from a ModelSpec (use ModelSpec(...).build() or "
                         "load_run): the pruning is recorded in the spec so that load_run can rebuild the net")  # fmt: skip
    name = spec.name
    check_prunable(model, name, method)
    size = tuple(int(v) for v in input_size) if input_size is not None else _default_input_size(model, name)

    before = summary(model, size)
    pruned = copy.deepcopy(model)
    training = pruned.training
    pruned.eval()
    _use_channel_map_shortcuts(pruned)
    example = _example(pruned, size)
    try:
        ignored = _output_layers(pruned, example)
        with _side_effects_undone(pruned):
            pruner = tp.pruner.BasePruner(pruned, example, _importance(method, seed), pruning_ratio=ratio,
                                          global_pruning=global_pruning, ignored_layers=ignored,
                                          **_graph_options(pruned))  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pruner.step()
        history = pruner.pruning_history()
        _refresh_attributes(pruned)
        with torch.no_grad():
            _forward_every_head(pruned, example)  # a net left inconsistent fails here, not in training
    except PruneError:
        raise
    except Exception as exc:
        text = " ".join(str(exc).split())[:200]
        raise PruneError(f"{name} cannot be pruned: Torch-Pruning left it inconsistent ({type(exc).__name__}: "
                         f"{text})") from None  # fmt: skip
    if not history:
        raise PruneError(f"ratio {ratio} removes no filter of {name}: every layer would keep all its channels")
    groups = [{"module": module, "channels": "out" if is_out else "in", "idxs": [int(i) for i in idxs]}
              for module, is_out, idxs in history]  # fmt: skip
    pruned.model_spec = spec.then("pruned", input_size=list(size), groups=groups)
    after = summary(pruned, size)
    pruned.train(training)
    report = PruneReport(method=method, ratio=ratio, global_pruning=bool(global_pruning), input_size=list(size),
                         params_before=before.total_params, params_after=after.total_params,
                         macs_before=before.total_macs, macs_after=after.total_macs, groups=len(groups))  # fmt: skip
    return pruned, report


# ------------------------------------------------------------------------------------------
# the command: a run or a model in, a new run out
# ------------------------------------------------------------------------------------------


def measure_latency(before: nn.Module, after: nn.Module, input_size, repeats: int = 30,
                    warmup: int = 3) -> tuple[float, float]:  # fmt: skip
    """Median CPU latency (s) of ``before`` and ``after`` at batch 1, timed interleaved (cnnzoo bench's way)."""
    from cnnzoo.deploy.bench import flushed_denormals, inference_runner, measure_interleaved, random_batch

    images = random_batch(tuple(input_size), 1)
    models = {"before": copy.deepcopy(before).cpu(), "after": copy.deepcopy(after).cpu()}
    with flushed_denormals():
        results = measure_interleaved({k: inference_runner(m, images) for k, m in models.items()}, 1, repeats, warmup)
    for label, result in results.items():
        if result.unavailable:
            raise PruneError(f"cannot time the {label} model: {result.unavailable}")
    return results["before"].latency_median, results["after"].latency_median


@dataclass
class _Source:
    model: nn.Module
    name: str
    kind: str  # "run" or "model"
    input_size: tuple[int, int]


def _load_source(source: str, run, options: dict[str, Any], bundle, config) -> _Source:
    """The model to prune: a run's (``run``, loaded) or registered model ``source`` built for the data."""
    from cnnzoo.modelspec import ModelSpec, check_options
    from cnnzoo.registry import model_info
    from cnnzoo.train import engine

    if run is not None:
        if options:
            raise ConfigError(f"-o applies to a model name; {source} is a run directory, rebuilt as it was trained")
        meta = run.meta
        if len(bundle.classes) != meta["num_classes"] or bundle.in_chans != meta["in_chans"]:
            raise ConfigError(f"{bundle.name} has {len(bundle.classes)} classes of {bundle.in_chans}-channel images; "
                              f"the run's model takes {meta['num_classes']} classes, {meta['in_chans']} channels")  # fmt: skip
        name = spec_of(run.model).name if spec_of(run.model) else meta["model"]
        return _Source(run.model, name, "run", tuple(int(v) for v in meta["input_size"]))
    info = model_info(source)
    data_size = tuple(bundle.image_size) if bundle.image_size else None
    size = engine.choose_input_size(info, data_size, config.input_size)
    engine.seed_everything(config.seed)
    spec = ModelSpec(source, check_options(source, options), num_classes=len(bundle.classes),
                     in_chans=int(bundle.in_chans))  # fmt: skip
    return _Source(spec.build(), source, "model", size)


def _test_top1(model: nn.Module, bundle, input_size, config) -> float | None:
    """Top-1 on the test split (the validation split without one), as ``cnnzoo eval`` measures it."""
    from cnnzoo.train import engine

    split = bundle.test if bundle.test is not None and len(bundle.test) else bundle.val
    if split is None or not len(split):
        return None
    device = engine.resolve_device(config.device)
    loader = engine.make_loader(split, batch_size=max(config.batch_size, 256), train=False, augment=None,
                                device=device, input_size=tuple(input_size), mean=bundle.mean, std=bundle.std,
                                seed=config.seed)  # fmt: skip
    evaluated = copy.deepcopy(model).to(device)
    return engine.evaluate(evaluated, loader, device, len(bundle.classes), tta_flip=config.tta_flip).top1_acc


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def prune_run(source: str, ratio: float, method: str = "l1", *, global_pruning: bool = False, steps: int = 1,
              data: str | None = None, recipe: str | None = None, verbose: bool = True,
              log: Callable[[str], None] | None = None, **overrides):  # fmt: skip
    """Prune a trained run (or a freshly built registered model), fine-tune, write a new run directory.

    ``steps`` rounds each remove the share that brings the removed share to ``ratio * k /
    steps`` and are fine-tuned for ``epochs`` (the last one in ``out``, the others in
    ``OUT-roundK``); ``epochs=0`` fine-tunes nothing but still writes a run that ``load_run``
    takes.  Every other keyword is a training configuration key, as for
    :func:`cnnzoo.train.fit`; the data default to the source run's.  Returns the final
    :class:`~cnnzoo.train.trainer.FitResult`.
    """
    from cnnzoo.rundir import RunDir, default_path
    from cnnzoo.train import engine
    from cnnzoo.train.config import resolve
    from cnnzoo.train.runs import load_run, names_a_run

    printer = log or (lambda text: print(text, flush=True))
    say = printer if verbose else (lambda text: None)
    ratio, method = check_ratio(ratio), check_method(method)
    ratios = round_ratios(ratio, steps)
    options = dict(overrides.pop("model_kwargs", None) or {})
    if data is not None:
        overrides["data"] = data
    # a folder that is not a run fails here, before any work
    run = load_run(source, device="cpu") if names_a_run(str(source)) else None
    if run is not None:
        from cnnzoo.quantization import refuse_quantized

        refuse_quantized(run.model, "cnnzoo prune")
    if run is not None and "data" not in overrides:  # the source run's data set by default
        overrides["data"] = run.config.data
        overrides.setdefault("data_dir", run.config.data_dir)
    given = {k: v for k, v in overrides.items() if v is not None and k != "epochs"}
    config, _ = resolve(recipe, {**given, "model": "prune"})
    epochs = int(overrides["epochs"]) if overrides.get("epochs") is not None else config.epochs
    if epochs < 0:
        raise ConfigError(f"epochs must be >= 0 (0: no fine-tuning), got {epochs}")
    if config.resume and not config.out:
        raise ConfigError("--resume needs --out DIR: the prune run to continue")

    with engine.torch_threads(config.threads):
        bundle = engine.load_config_data(config)
        origin = _load_source(source, run, options, bundle, config)
        out = Path(config.out) if config.out else default_path(origin.name, "prune", config.data)
        RunDir.open(out, "prune", resume=bool(config.resume))  # a bad --out fails before any work
        full_size = (int(bundle.in_chans), *origin.input_size)
        say(f"pruning {origin.name} ({origin.kind} {source}): {method}, ratio {ratio:g}"
            f"{', global ranking' if global_pruning else ''}, {steps} step{'s' if steps > 1 else ''}, "
            f"{epochs} fine-tuning epoch{'s' if epochs != 1 else ''} after each")  # fmt: skip
        top1_before = _test_top1(origin.model, bundle, origin.input_size, config)

        model, rounds = origin.model, []
        fit_overrides = {k: v for k, v in overrides.items() if k not in ("data", "epochs", "out", "resume")}
        fit_overrides.update(input_size=list(origin.input_size), epochs=epochs)
        for number, share in enumerate(ratios, start=1):
            model, report = prune(model, share, method, global_pruning=global_pruning, input_size=full_size,
                                  seed=config.seed + number - 1)  # fmt: skip
            rounds.append(report)
            if number < steps and epochs > 0:
                model = _fine_tune_round(model, Path(f"{out}-round{number}"), number, steps, source, report, bundle,
                                         config, recipe, verbose, log, fit_overrides)  # fmt: skip

        total = PruneReport(method=method, ratio=ratio, global_pruning=bool(global_pruning),
                            input_size=list(full_size), params_before=rounds[0].params_before,
                            params_after=rounds[-1].params_after, macs_before=rounds[0].macs_before,
                            macs_after=rounds[-1].macs_after, groups=sum(r.groups for r in rounds))  # fmt: skip
        total.latency_before, total.latency_after = measure_latency(origin.model, model, full_size)
        top1_pruned = _test_top1(model, bundle, origin.input_size, config)
        say(total.format())
        say(f"{'top-1 (test)':22s} {_pct(top1_before):>12s} {_pct(top1_pruned):>12s}   (before fine-tuning)")
        record = {"prune": {"source": str(source), "source_kind": origin.kind, "method": method, "ratio": ratio,
                            "global_pruning": bool(global_pruning), "steps": steps, "epochs": epochs,
                            **total.to_dict(), "top1_before": top1_before, "top1_pruned": top1_pruned,
                            "rounds": [r.to_dict() for r in rounds]}}  # fmt: skip
    result = engine.fit(model, config.data, recipe=recipe, verbose=verbose, log=log, bundle=bundle, kind="prune",
                        record=record, allow_no_epochs=True, out=str(out), resume=config.resume or None,
                        **fit_overrides)  # fmt: skip
    if result.test_top1 is not None:
        what = "after fine-tuning" if epochs else "no fine-tuning"
        say(f"{'top-1 (test)':22s} {_pct(top1_before):>12s} {_pct(result.test_top1):>12s}   ({what})")
    return result


def _fine_tune_round(model, out: Path, number: int, steps: int, source, report, bundle, config, recipe, verbose,
                     log, fit_overrides):  # fmt: skip
    """Fine-tune an intermediate round into ``out`` (resumed if begun, its weights reused if finished)."""
    from cnnzoo.rundir import RunDir
    from cnnzoo.train import checkpoint as ckpt
    from cnnzoo.train import engine

    existing = RunDir(out, "prune") if (out / "run.json").is_file() else None
    if existing is not None and existing.finished:
        tag = "best" if ckpt.paths(out, "best")[0].exists() else "last"
        tensors, _ = ckpt.load_checkpoint(out, tag)
        ckpt.load_model_weights(model, tensors, f"checkpoint {ckpt.paths(out, tag)[0]}")
        return model
    record = {"prune": {"source": str(source), "round": number, "of": steps, **report.to_dict()}}
    engine.fit(model, config.data, recipe=recipe, verbose=verbose, log=log, bundle=bundle, kind="prune",
               record=record, out=str(out), resume=True if existing is not None else None, **fit_overrides)  # fmt: skip
    return model


def prune_command(args) -> int:
    """``cnnzoo prune RUN|MODEL --ratio R ...`` (the parser is in :mod:`cnnzoo.compress.commands`)."""
    from cnnzoo.train.commands import train_overrides

    check_ratio(args.ratio)
    check_method(args.method)
    round_ratios(args.ratio, args.steps)
    result = prune_run(args.source, args.ratio, args.method, global_pruning=args.global_pruning, steps=args.steps,
                       recipe=args.recipe, **train_overrides(args))  # fmt: skip
    return result.exit_code
