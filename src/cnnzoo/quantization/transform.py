"""Binary, ternary and two-bit networks as a model transform, and the ``quantize`` command.

``quantize_model(model, scheme)`` (the registered transform ``"quantize"``) parametrizes the
weights of a net's convolutions and linear layers with a quantizer of
:mod:`cnnzoo.quantization.layers`: the full-precision shadow weights train, the forward pass sees
the quantized ones.  A :class:`~cnnzoo.modelspec.ModelSpec` that names the transform rebuilds the
quantized architecture, so ``load_run(DIR)`` loads a quantized run's checkpoint strictly.

The schemes:

=========  ==========================================================  ======  ===============
scheme     weights                                                     bits    inputs
=========  ==========================================================  ======  ===============
binary     BinaryConnect ``sign(w)``                                   1       BNN's ``sign``
                                                                               with
                                                                               ``binary_activations``
xnor       XNOR-Net ``alpha * sign(W)``, alpha = mean abs per filter   1       ``sign`` and K
bwn        the same weights (XNOR-Net's Binary-Weight-Networks)        1       full precision
ternary    TWN ``alpha * {-1, 0, 1}``, delta = 0.7 mean abs, per layer 2       full precision
ttq        TTQ ``{-W_n, 0, W_p}`` learned per layer, delta = 0.05 max  2       full precision
2bit       Meng et al. ``alpha * {-2, -1, 1, 2}`` per filter           2       full precision
=========  ==========================================================  ======  ===============

The first layer (the one that reads the image) and the classifier stay in full precision by
default, as BinaryConnect, BNN's and XNOR-Net's experiments and TWN and TTQ keep them (XNOR-Net
Sec. 4: "we keep the first and last layer real-valued").
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from cnnzoo.errors import ConfigError
from cnnzoo.modelspec import ModelSpec, register_transform, spec_of
from cnnzoo.quantization import layers as ql
from cnnzoo.train.trainer import Callback

#: scheme -> (weight quantizer, how the layers' inputs are treated: "never", "option" or "always" binary)
SCHEMES: dict[str, tuple[type[ql.WeightQuantizer], str]] = {
    "binary": (ql.BinaryWeights, "option"),
    "xnor": (ql.ScaledBinaryWeights, "always"),
    "bwn": (ql.ScaledBinaryWeights, "never"),
    "ternary": (ql.TernaryWeights, "never"),
    "ttq": (ql.TrainedTernaryWeights, "never"),
    "2bit": (ql.TwoBitWeights, "never"),
}

#: the activations that binary inputs replace by hard tanh (below: why)
_RECTIFIERS = (nn.ReLU, nn.ReLU6)


def check_scheme(scheme: str, binary_activations: bool = False) -> bool:
    """Whether the layers' inputs are binarized; an unknown scheme or a wrong combination is a ConfigError."""
    if scheme == "int8":
        raise ConfigError("int8 is post-training quantization of a trained run: use cnnzoo quantize RUN --scheme int8")
    if scheme not in SCHEMES:
        raise ConfigError(f"unknown quantization scheme {scheme!r}; known: {', '.join(SCHEMES)}, int8")
    inputs = SCHEMES[scheme][1]
    if binary_activations and inputs != "option":
        what = "always has binary inputs" if inputs == "always" else "keeps full-precision inputs"
        raise ConfigError(f"--binary-activations goes with --scheme binary (BNN); {scheme} {what}")
    return inputs == "always" or (inputs == "option" and bool(binary_activations))


# ------------------------------------------------------------------------------------------
# the quantized model
# ------------------------------------------------------------------------------------------


class QuantizedModel:
    """Mixed into a quantized net's class (as ``parametrize`` does for its layers): what was quantized.

    ``quantization`` is the transform's record; ``_quantized_paths`` maps each quantized
    layer's name in the original net to the module that holds its weight (the same, or
    ``NAME.layer`` inside a :class:`~cnnzoo.quantization.layers.BinaryInputs`).
    """

    quantization: dict[str, Any]
    _quantized_paths: dict[str, str]

    def quantized_layers(self) -> dict[str, nn.Module]:
        """``{layer name: the convolution or linear layer}`` of every quantized layer, in order."""
        return {name: self.get_submodule(path) for name, path in self._quantized_paths.items()}

    def quantized_weights(self) -> dict[str, Tensor]:
        """``{layer name: weight as deployed}``; layers kept in full precision are not in it."""
        with torch.no_grad():
            return {name: layer.weight.detach().clone() for name, layer in self.quantized_layers().items()}


_QUANTIZED_CLASSES: dict[type, type] = {}


def _quantized_class(cls: type) -> type:
    if issubclass(cls, QuantizedModel):
        return cls
    if cls not in _QUANTIZED_CLASSES:
        _QUANTIZED_CLASSES[cls] = type(f"Quantized{cls.__name__}", (QuantizedModel, cls), {})
    return _QUANTIZED_CLASSES[cls]


def is_quantized(model_or_spec) -> bool:
    """Whether a net (or a spec, a run's model record) went through the quantize transform."""
    spec = model_or_spec if isinstance(model_or_spec, ModelSpec) else spec_of(model_or_spec)
    if spec is not None and any(step.get("name") == "quantize" for step in spec.transforms):
        return True
    return isinstance(model_or_spec, QuantizedModel)


def refuse_quantized(model_or_spec, what: str) -> None:
    """A one-line ConfigError when ``what`` (a command) is given a quantized net (any scheme, int8 too)."""
    if isinstance(model_or_spec, nn.Module):
        from cnnzoo.quantization.int8 import refuse_int8

        refuse_int8(model_or_spec, what)
    if is_quantized(model_or_spec):
        raise ConfigError(f"{what} takes a full-precision run; this one is quantized "
                          "(start from the run it was quantized from)")  # fmt: skip


def _candidates(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _kept_full_precision(model: nn.Module, layers: list[tuple[str, nn.Module]]) -> set[str]:
    """The first layer (it reads the image) and the final classifier."""
    if not layers:
        return set()
    kept = {layers[0][0]}
    classifier = model.get_classifier() if hasattr(model, "get_classifier") else None
    names = [name for name, m in layers if m is classifier]
    kept.add(names[0] if names else layers[-1][0])
    return kept


@register_transform("quantize")
def quantize_model(model: nn.Module, scheme: str, *, binary_activations: bool = False,
                   keep_first_last: bool = True) -> nn.Module:  # fmt: skip
    """``model`` with its convolution and linear weights quantized by ``scheme`` (in place; returned).

    ``binary_activations`` (scheme ``binary`` only: BNN) binarizes the inputs of the
    quantized layers too; ``xnor`` always does, with its scaling factor K.  The net's ReLUs
    then become hard tanh: ``sign`` of a rectified input would be +1 everywhere, and
    ``htanh`` is the activation BNN's estimator assumes (Hubara et al. Sec. 1.3; XNOR-Net's
    block is BatchNorm -> binary activation -> binary convolution, Fig. 3).  The input of the
    net's first layer (the image) is never binarized.  ReLUs written as functions in a net's
    forward code (``F.relu``) cannot be replaced: use such nets without binary inputs.
    """
    binary_inputs = check_scheme(scheme, binary_activations)
    if isinstance(model, QuantizedModel) or any(parametrize.is_parametrized(m) for m in model.modules()):
        raise ConfigError("the net is already quantized (or otherwise parametrized); quantize its full-precision run")
    quantizer_class = SCHEMES[scheme][0]
    layers = _candidates(model)
    first = layers[0][0] if layers else None
    kept = _kept_full_precision(model, layers) if keep_first_last else set()
    chosen = [(name, layer) for name, layer in layers if name not in kept]
    if not chosen:
        raise ConfigError(f"{type(model).__name__} has no convolution or linear layer to quantize "
                          "besides its first and last (try --no-keep-first-last)")  # fmt: skip

    paths: dict[str, str] = {}
    for name, layer in chosen:
        quantizer = quantizer_class(layer.weight) if quantizer_class is ql.TrainedTernaryWeights else quantizer_class()
        parametrize.register_parametrization(layer, "weight", quantizer)
        paths[name] = name
    if binary_inputs:
        for name, layer in chosen:
            if name == first:
                continue
            _replace(model, name, ql.BinaryInputs(layer, scaled=scheme == "xnor"))
            paths[name] = f"{name}.layer"
        for name, module in list(model.named_modules()):
            if isinstance(module, _RECTIFIERS):
                _replace(model, name, nn.Hardtanh())

    model.__class__ = _quantized_class(type(model))
    model._quantized_paths = paths
    model.quantization = {"scheme": scheme, "binary_activations": binary_inputs, "keep_first_last": keep_first_last,
                          "bits": quantizer_class.bits, "layers": list(paths)}  # fmt: skip
    return model


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def deployed(model: QuantizedModel) -> nn.Module:
    """A copy of ``model`` whose quantized layers hold their deployed weights as plain parameters.

    The parametrizations are removed (the shadow weights, TTQ's scales with them); binary
    inputs stay.  The copy computes what ``model`` computes; it is what the packed file holds.
    """
    import copy

    plain = copy.deepcopy(model)
    for layer in plain.quantized_layers().values():
        # the copy shares the class parametrize made for the original layer, and removing a
        # parametrization deletes its property from that class: give the copy a class of its own
        shared = type(layer)
        layer.__class__ = type(shared.__name__, shared.__bases__, dict(shared.__dict__))
        parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
    return plain


# ------------------------------------------------------------------------------------------
# training
# ------------------------------------------------------------------------------------------


class ClipShadowWeights(Callback):
    """BinaryConnect's clipping of the real-valued weights to [-1, 1] after each update (Sec. 2.4).

    Without it a weight could grow without bound while its sign, all that the forward pass
    sees, stays put; BNN does the same (Hubara et al., Algorithm 1).
    """

    def _clip(self, model: nn.Module) -> None:
        with torch.no_grad():
            for layer in model.quantized_layers().values():
                layer.parametrizations.weight.original.clamp_(-1.0, 1.0)

    def on_fit_start(self, trainer) -> None:
        self._clip(trainer.model)

    def on_step_end(self, trainer, batch: int, loss: float) -> None:
        self._clip(trainer.model)


def training_callbacks(scheme: str) -> list[Callback]:
    """The callbacks a scheme trains with (binary: the clipping)."""
    return [ClipShadowWeights()] if scheme == "binary" else []


def quantize_options(args: argparse.Namespace, scheme: str) -> dict[str, Any]:
    """The transform's options from a command line (``--binary-activations``, ``--keep-first-last``)."""
    binary = bool(getattr(args, "binary_activations", False))
    check_scheme(scheme, binary)
    return {"scheme": scheme, "binary_activations": binary,
            "keep_first_last": bool(getattr(args, "keep_first_last", True))}  # fmt: skip


def quantized_from_run(source, options: dict[str, Any], what: str):
    """The loaded run ``source``'s net quantized with ``options``, its spec recording the transform.

    Returns the model (ready to fine-tune) and the ``quantize`` record its run's ``run.json``
    keeps; ``what`` names the command in the error for a net that is already quantized.
    """
    refuse_quantized(source.model, what)
    spec = spec_of(source.model)
    model = quantize_model(source.model, **options)
    model.model_spec = spec.then("quantize", **options)
    return model, {"quantize": {"source": str(source.run_dir), **model.quantization}}


def quantize_command(args: argparse.Namespace) -> int:
    """``cnnzoo quantize RUN --scheme S``: quantize a trained run, fine-tune it, write the packed weights."""
    from cnnzoo.rundir import default_path
    from cnnzoo.train.commands import train_overrides
    from cnnzoo.train.engine import fit
    from cnnzoo.train.runs import load_run

    options = quantize_options(args, args.scheme)
    overrides = train_overrides(args)
    if overrides.get("model_kwargs"):
        raise ConfigError("-o applies to a model name; the run's net is rebuilt as it was trained")
    source = load_run(args.source, device="cpu")
    model, record = quantized_from_run(source, options, "cnnzoo quantize")

    config, meta = source.config, source.meta
    given_data = overrides.pop("data", None)
    data = given_data or config.data
    if not given_data and "data_dir" not in overrides and config.data_dir:
        overrides["data_dir"] = config.data_dir  # the source's data where the source found it
    overrides.setdefault("input_size", list(meta["input_size"]))
    if not overrides.get("out") and not overrides.get("resume"):
        overrides["out"] = str(default_path(meta["model"], args.scheme, data))
    result = fit(model, data, kind="quantize", record=record, callbacks=training_callbacks(args.scheme), **overrides)
    finish_quantized_run(result)
    return result.exit_code


def finish_quantized_run(result, log=None) -> None:
    """After a quantized training: ``weights.qpack`` in the run directory, its size against fp32, the test top-1."""
    from cnnzoo.quantization.packing import write_qpack
    from cnnzoo.train.runs import load_run

    say = log or (lambda text: print(text, flush=True))
    if result.status != "completed" or result.run_dir is None:
        print("cnnzoo: warning: the run did not finish: no weights.qpack yet (continue it with --resume)",
              file=sys.stderr, flush=True)  # fmt: skip
        return
    target = result.run_dir / "weights.qpack"
    if target.exists():  # a finished run continued again: its packed file is kept, never overwritten
        say(f"{target} is already there (kept)")
        return
    run = load_run(result.run_dir, device="cpu")
    report = write_qpack(run.model, target)
    say(report.describe())
    if result.test_top1 is not None:
        say(f"test top-1 {100 * result.test_top1:.2f}% ({run.model.quantization['scheme']})")
