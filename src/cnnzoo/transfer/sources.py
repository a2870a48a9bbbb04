"""Where pretrained weights come from: ``SOURCE`` of ``cnnzoo finetune --from SOURCE``.

``RUN_DIR``
    a cnnzoo run directory (``cnnzoo train`` or ``cnnzoo finetune``): its ``best`` weights
    (``last`` when there is no ``best``), the model name and options from ``run.json`` (or
    the ``transfer.json`` a fine-tuning run writes), the class names;
``torchvision:<WeightsEnum>.<NAME>``
    e.g. ``torchvision:ResNet18_Weights.IMAGENET1K_V1``, read through torchvision's own
    ``get_weight(...).get_state_dict()``: downloaded when online, taken from the torch hub
    cache (``~/.cache/torch/hub/checkpoints``) offline.  Every torchvision classifier that
    cnnzoo implements loads strictly (AlexNet, VGG, ResNet, ResNeXt, Wide ResNet, DenseNet,
    SqueezeNet, GoogLeNet as ``googlenet_bn``, Inception v3).  Feed them ImageNet-normalised
    images (what cnnzoo's photo data sets use); torchvision's GoogLeNet and Inception v3
    weights were trained with its ``transform_input`` re-normalisation, which cnnzoo does not
    apply, so expect a small shift until fine-tuning adapts them;
``timm:<model name>``
    ``timm.create_model(name, pretrained=True)`` (downloaded, or from the Hugging Face cache
    offline); Inception v3/v4, Inception-ResNet-v2, ``legacy_xception`` (cnnzoo's
    ``xception``), and the ResNet, ResNeXt, Wide ResNet and DenseNet names that cnnzoo shares;
``NAME.TAG``
    weights that ship with cnnzoo (``lenet5.fashion_mnist``; see ``cnnzoo.list_pretrained()``):
    hash-checked, with the architecture, classes and normalisation of the run that trained them;
``FILE.safetensors``, ``FILE.pth``/``.pt``
    a state dict (``torch.load(..., weights_only=True)``: no pickled code runs; a
    ``{"state_dict": ...}`` or ``{"model": ...}`` wrapper and DDP's ``module.`` prefix are
    undone).  A file names no architecture: give it with ``--model``.

The number of classes and of input channels are read from the weights (the classifier's
and the first convolution's shapes), so ``--model`` is enough.  Weights that do not fit
the architecture raise :class:`ArchitectureMismatch` naming the first differing keys and
their shapes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from cnnzoo.errors import CnnzooError, ConfigError


class SourceError(CnnzooError):
    """A weight source that does not exist, cannot be read or cannot be downloaded."""


class ArchitectureMismatch(SourceError):
    """Weights whose keys or shapes do not fit the chosen architecture."""


#: torchvision model names that cnnzoo registers under another name
TORCHVISION_NAMES = {"googlenet": "googlenet_bn"}
#: timm model names that cnnzoo registers under another name
TIMM_NAMES = {"legacy_xception": "xception"}
#: a torchvision DenseNet file's old key style ``denselayer1.norm.1.weight`` (``norm1.weight`` now)
_OLD_DENSENET_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


@dataclass
class Source:
    """Pretrained weights and what is known about them."""

    spec: str
    kind: str  # "run", "pretrained", "torchvision", "timm" or "file"
    state_dict: dict[str, Tensor]
    model_name: str | None = None
    model_kwargs: dict = field(default_factory=dict)
    classes: list[str] | None = None
    #: a fine-tuning run's transfer.json (its mode, the new-fc wrapper's widths)
    transfer: dict | None = None
    #: normalisation the weights were trained with, when known (a cnnzoo run's)
    mean: list[float] | None = None
    std: list[float] | None = None

    def build(self, model: str | None = None, **model_kwargs) -> nn.Module:
        """The model with these weights loaded strictly (see :func:`build_from_source`)."""
        return build_from_source(self, model, **model_kwargs)


# ------------------------------------------------------------------------------------------
# reading a source
# ------------------------------------------------------------------------------------------


def load_source(spec: str | Path) -> Source:
    """Read ``spec`` (module docstring) into a :class:`Source`; a one-line error if it cannot."""
    text = str(spec)
    if text.startswith("torchvision:"):
        return _from_torchvision(text)
    if text.startswith("timm:"):
        return _from_timm(text)
    path = Path(text).expanduser()
    if path.is_dir():
        return _from_run_dir(path, text)
    if path.is_file():
        source = _from_file(path, text)
        run_info = _run_info(path.parent)
        if run_info is not None:
            source.kind = "run"
            _apply_run_info(source, run_info)
        return source
    from cnnzoo.pretrained.table import looks_like_tag

    if looks_like_tag(text):
        return _from_pretrained(text)
    raise SourceError(
        f"weight source {text!r} not found: give a cnnzoo run directory, a .safetensors/.pth file, "
        "a pretrained tag (cnnzoo.list_pretrained()), torchvision:<Weights>.<NAME> or timm:<model>"
    )


def _from_pretrained(tag: str) -> Source:
    """Shipped weights: the entry's architecture and options, classes and normalisation."""
    from cnnzoo.pretrained.load import pretrained_state_dict
    from cnnzoo.pretrained.table import pretrained_entry

    entry = pretrained_entry(tag)
    spec, run = entry["spec"], entry["run"]
    if spec.get("transforms"):  # the source's architecture is built from its name and options only
        names = ", ".join(t["name"] for t in spec["transforms"])
        raise SourceError(f"{tag} was changed after building ({names}): cnnzoo finetune cannot rebuild it")
    return Source(tag, "pretrained", pretrained_state_dict(entry), model_name=spec["name"],
                  model_kwargs=dict(spec.get("options") or {}), classes=list(run["classes"]),
                  mean=list(run["mean"]), std=list(run["std"]))  # fmt: skip


def _from_run_dir(path: Path, spec: str) -> Source:
    weights = next((path / f"{tag}.safetensors" for tag in ("best", "last") if (path / f"{tag}.safetensors").is_file()),
                   None)  # fmt: skip
    info = _run_info(path)
    if info is not None and isinstance(info.get("int8"), dict):
        raise SourceError(f"{spec} is an int8 run (an ONNX Runtime graph): fine-tune the run it was quantized from")
    if weights is None:
        raise SourceError(f"{spec} is not a cnnzoo run directory: it has no best.safetensors or last.safetensors")
    if info is not None and info.get("spec"):
        from cnnzoo.modelspec import ModelSpec
        from cnnzoo.quantization import refuse_quantized

        # a quantized net's weights are shadow weights behind parametrizations: no plain architecture takes them
        refuse_quantized(ModelSpec.from_dict(info["spec"]), "cnnzoo finetune")
    source = _from_file(weights, spec)
    source.kind = "run"
    if info is not None:
        _apply_run_info(source, info)
    return source


def _run_info(folder: Path) -> dict | None:
    """The model name, options and classes a run directory records (None if it is no run)."""
    info: dict[str, Any] = {}
    for name in ("run.json", "transfer.json"):  # transfer.json (a fine-tuning run's) wins
        file = folder / name
        if file.is_file():
            try:
                info.update(json.loads(file.read_text()))
            except (OSError, ValueError) as exc:
                raise SourceError(f"cannot read {file}: {exc}") from None
    return info or None


def _apply_run_info(source: Source, info: dict) -> None:
    source.model_name = info.get("model") or source.model_name
    source.model_kwargs = dict(info.get("model_kwargs") or {})
    source.classes = list(info["classes"]) if info.get("classes") else None
    source.mean, source.std = info.get("mean"), info.get("std")
    if "transfer" in info:
        source.transfer = dict(info["transfer"])


def _from_file(path: Path, spec: str) -> Source:
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except Exception as exc:  # safetensors raises several types for a damaged file
            raise SourceError(f"cannot read {spec}: not a valid safetensors file ({_one_line(exc)})") from None
    elif suffix in (".pth", ".pt", ".bin", ".ckpt"):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # unpickling errors, truncated zip files, code objects refused
            raise SourceError(f"cannot read {spec} with weights_only=True ({_one_line(exc)})") from None
    else:
        raise SourceError(f"{spec}: unknown weight file type {suffix or '(none)'}; use .safetensors, .pth or .pt")
    return Source(spec, "file", clean_state_dict(state, spec))


def clean_state_dict(state: Any, spec: str = "the weights") -> dict[str, Tensor]:
    """A flat ``{name: tensor}``: common checkpoint wrappers and the DDP ``module.`` prefix undone."""
    for key in ("state_dict", "model", "model_state_dict", "weights"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping) or not state:
        raise SourceError(f"{spec} holds no state dict (a mapping of parameter names to tensors)")
    tensors = {str(k): v for k, v in state.items() if isinstance(v, Tensor)}
    if not tensors:
        raise SourceError(f"{spec} holds no tensors")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    renamed = {}
    for key, value in tensors.items():
        match = _OLD_DENSENET_KEY.match(key)
        renamed[match.group(1) + match.group(2) if match else key] = value
    return renamed


def _from_torchvision(spec: str) -> Source:
    from torchvision.models import get_model_weights, get_weight, list_models

    name = spec.split(":", 1)[1]
    try:
        weights = get_weight(name)
    except (ValueError, KeyError, AttributeError):
        raise SourceError(f"{spec}: torchvision has no weights {name!r} (e.g. ResNet18_Weights.IMAGENET1K_V1)") from None
    enum_class = type(weights)
    tv_name = next((m for m in list_models() if _safe(get_model_weights, m) is enum_class), None)
    try:
        state = weights.get_state_dict(progress=True, check_hash=True)
    except Exception as exc:  # URLError offline, hash mismatch, a truncated download
        raise SourceError(
            f"{spec}: cannot get {weights.url} ({_one_line(exc)}); offline, put the file in "
            f"{Path(torch.hub.get_dir()) / 'checkpoints'} or pass it as a .pth file with --model"
        ) from None
    model = TORCHVISION_NAMES.get(tv_name, tv_name) if tv_name else None
    categories = weights.meta.get("categories")
    return Source(spec, "torchvision", clean_state_dict(state, spec), model_name=model,
                  classes=list(categories) if categories else None)  # fmt: skip


def _safe(fn, *args):
    try:
        return fn(*args)
    except Exception:
        return None


def _from_timm(spec: str) -> Source:
    try:
        import timm
    except ImportError:
        raise SourceError(f"{spec}: timm weights need the timm package (pip install timm)") from None

    name = spec.split(":", 1)[1]
    if not timm.is_model(name.split(".")[0]):
        raise SourceError(f"{spec}: timm has no model {name!r}")
    try:
        model = timm.create_model(name, pretrained=True)
    except Exception as exc:  # no network and no cache, unknown pretrained tag, ...
        raise SourceError(f"{spec}: cannot load timm's pretrained weights ({_one_line(exc)})") from None
    base = name.split(".")[0]
    ours = TIMM_NAMES.get(base, base)
    # cnnzoo names the modules of the nets timm ships like timm does (tests/test_inception.py
    # loads timm's state dicts strictly): no renaming
    state = clean_state_dict(model.state_dict(), spec)
    return Source(spec, "timm", state, model_name=ours)


# ------------------------------------------------------------------------------------------
# building the model
# ------------------------------------------------------------------------------------------


def _skeleton(name: str, **kwargs) -> nn.Module:
    """The architecture without real weights (on the meta device when the builder allows)."""
    from cnnzoo.registry import create_model

    try:
        with torch.device("meta"):
            return create_model(name, **kwargs)
    except CnnzooError:
        raise
    except Exception:  # a builder that needs real tensors at construction
        return create_model(name, **kwargs)


def _module_key(model: nn.Module, target: nn.Module | None) -> str | None:
    if target is None:
        return None
    return next((n for n, m in model.named_modules() if m is target), None)


def infer_shape_options(name: str, state_dict: Mapping[str, Tensor], **kwargs) -> dict:
    """``num_classes`` and ``in_chans`` read from the classifier's and the stem's weights."""
    from cnnzoo.transfer.adapt import first_conv

    skeleton = _skeleton(name, **kwargs)
    options: dict[str, Any] = {}
    classifier = skeleton.get_classifier() if hasattr(skeleton, "get_classifier") else None
    key = _module_key(skeleton, classifier)
    if key is not None:
        weight = state_dict.get(f"{key}.weight")
        if weight is not None and weight.dim() >= 2:
            options["num_classes"] = int(weight.shape[0])
        elif not any(k.startswith(f"{key}.") for k in state_dict) and isinstance(classifier, (nn.Linear, nn.Conv2d)):
            options["num_classes"] = 0  # a headless net's weights
    try:
        conv_name, _ = first_conv(skeleton)
    except ConfigError:
        return options
    weight = state_dict.get(f"{conv_name}.weight")
    if weight is not None and weight.dim() == 4:
        options["in_chans"] = int(weight.shape[1])
    return options


def _aux_keys(keys) -> list[str]:
    return [k for k in keys if "aux" in k.lower()]


def check_fits(model: nn.Module, state_dict: Mapping[str, Tensor], what: str, arch: str) -> None:
    """Raise :class:`ArchitectureMismatch` naming the first differing keys and shapes."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [k for k in own if k in state_dict and tuple(own[k].shape) != tuple(state_dict[k].shape)]
    if not (missing or unexpected or shapes):
        return
    parts = []
    if shapes:
        k = shapes[0]
        parts.append(f"{k} is {tuple(state_dict[k].shape)} in the source, {tuple(own[k].shape)} in {arch}"
                     + (f" (+{len(shapes) - 1} more shapes differ)" if len(shapes) > 1 else ""))  # fmt: skip
    if missing:
        parts.append(f"{arch} has {', '.join(_shaped(own, missing[:2]))} that the source lacks"
                     + (f" (+{len(missing) - 2} more)" if len(missing) > 2 else ""))  # fmt: skip
    if unexpected:
        parts.append(f"the source has {', '.join(_shaped(state_dict, unexpected[:2]))} that {arch} lacks"
                     + (f" (+{len(unexpected) - 2} more)" if len(unexpected) > 2 else ""))  # fmt: skip
    raise ArchitectureMismatch(f"{what} does not fit {arch}: {'; '.join(parts)}")


def _shaped(tensors: Mapping[str, Tensor], keys: list[str]) -> list[str]:
    return [f"{k} {tuple(tensors[k].shape)}" for k in keys]


def build_from_source(source: Source, model: str | None = None, **model_kwargs) -> nn.Module:
    """The cnnzoo model for ``source`` with its weights loaded strictly.

    ``model`` overrides the source's architecture (and is required for a plain file); the
    number of classes and input channels come from the weights.  A fine-tuning run made with
    mode ``new-fc`` is rebuilt with its new layer (:class:`~cnnzoo.transfer.prepare.NewFC`).
    """
    from cnnzoo.registry import model_info

    name = model or source.model_name
    if not name:
        raise ConfigError(f"{source.spec} names no architecture: give it with --model NAME (see `cnnzoo list`)")
    model_info(name)  # an unknown name: a one-line error with suggestions
    kwargs = {**source.model_kwargs, **model_kwargs} if name == source.model_name else dict(model_kwargs)
    state = source.state_dict
    transfer = source.transfer or {}
    new_fc = transfer.get("mode") == "new-fc" and any(k.startswith("base.") for k in state)
    if new_fc:
        state = {k[len("base."):]: v for k, v in state.items() if k.startswith("base.")}
    options = {**infer_shape_options(name, state, **kwargs), **kwargs}
    from cnnzoo.registry import create_model

    net = create_model(name, **options)
    if _aux_keys(net.state_dict()) and not _aux_keys(state) and "aux_logits" not in kwargs:
        try:  # the source was saved without its auxiliary classifiers (timm's inception_v3)
            net = create_model(name, **options, aux_logits=False)
            options["aux_logits"] = False
        except CnnzooError:
            pass
    check_fits(net, state, source.spec, name)
    net.load_state_dict(state, strict=True)
    net.model_name = name
    from cnnzoo.modelspec import ModelSpec

    built = {k: v for k, v in options.items() if k not in ("num_classes", "in_chans")}
    net.model_spec = ModelSpec(name, built, num_classes=int(net.num_classes), in_chans=int(net.in_chans))
    if new_fc:
        from cnnzoo.transfer.prepare import NewFC

        fc_weight = source.state_dict.get("fc.weight")
        width = int(fc_weight.shape[0]) if fc_weight is not None else int(transfer.get("num_classes", 0))
        wrapped = NewFC(net, width)
        fc_state = {k[len("fc."):]: v for k, v in source.state_dict.items() if k.startswith("fc.")}
        wrapped.fc.load_state_dict(fc_state, strict=True)
        return wrapped
    return net


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) < 160 else text[:157] + "..."


__all__ = [
    "ArchitectureMismatch",
    "Source",
    "SourceError",
    "build_from_source",
    "check_fits",
    "clean_state_dict",
    "infer_shape_options",
    "load_source",
]
