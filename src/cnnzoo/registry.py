"""The model registry: every network is registered by name with its paper.

``@register_model`` records, for each builder function, the family, the paper
(title, authors, year, link), the default input size ``(C, H, W)``, the default
number of classes and which input sizes the network accepts.  The public entry
points are :func:`create_model`, :func:`list_models` and :func:`model_info`.

This module does not import torch: the model files (``cnnzoo/models/*.py``, which do) are
imported the first time the live registry is asked for, and :func:`list_models` /
:func:`model_info` with ``from_index=True`` read the same records from the shipped metadata
index instead (:mod:`cnnzoo.model_index`), which is how ``cnnzoo list`` and ``cnnzoo info``
answer without torch.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping

from cnnzoo.errors import ConfigError, InputSizeError, UnknownModelError
from cnnzoo.reported_accuracy import ReportedAccuracy, reported_accuracy

if TYPE_CHECKING:  # only for the annotations: building a model imports torch, not this module
    from torch import nn


@dataclass(frozen=True)
class Paper:
    """A publication a model comes from."""

    title: str
    authors: str
    year: int
    url: str

    def cite(self) -> str:
        return f"{self.authors} ({self.year}). {self.title}. {self.url}"


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about one model name."""

    name: str
    family: str
    paper: Paper
    input_size: tuple[int, int, int]
    num_classes: int = 1000
    #: smallest square side (pixels) the network can take; None if only ``input_size`` works
    min_size: int | None = None
    #: True when only ``input_size``'s H x W works (a flatten before a fixed-size linear layer)
    fixed_size: bool = False
    description: str = ""
    #: the ImageNet accuracy the paper reports for this configuration (cnnzoo/reported_accuracy.py)
    reported: ReportedAccuracy | None = None
    builder: Callable[..., nn.Module] = field(default=None, repr=False, compare=False)

    @property
    def year(self) -> int:
        return self.paper.year

    def check_input_size(self, height: int, width: int) -> None:
        """Raise a one-line :class:`InputSizeError` if the net cannot take ``height x width``."""
        _, need_h, need_w = self.input_size
        if self.fixed_size:
            if (height, width) != (need_h, need_w):
                raise InputSizeError(
                    f"{self.name} takes only {need_h}x{need_w} inputs (its classifier is a fixed-size "
                    f"fully connected layer), got {height}x{width}"
                )
            return
        if self.min_size is not None and min(height, width) < self.min_size:
            raise InputSizeError(
                f"{self.name} needs inputs of at least {self.min_size}x{self.min_size} pixels, "
                f"got {height}x{width}"
            )


def check_num_classes(num_classes: int) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
        raise ConfigError(f"num_classes must be an integer >= 0 (0 = no classifier), got {num_classes!r}")


def check_in_chans(in_chans: int) -> None:
    if isinstance(in_chans, bool) or not isinstance(in_chans, int) or in_chans < 1:
        raise ConfigError(f"in_chans must be an integer >= 1, got {in_chans!r}")


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(
    *,
    family: str,
    paper: Paper,
    input_size: tuple[int, int, int] = (3, 224, 224),
    num_classes: int = 1000,
    min_size: int | None = None,
    fixed_size: bool = False,
    description: str = "",
    name: str | None = None,
    reported: ReportedAccuracy | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a builder ``fn(num_classes=..., in_chans=..., **options) -> nn.Module``.

    The builder's function name is the model name unless ``name`` is given.  ``min_size``
    defaults to the input size's side for fixed-size nets; ``reported`` (the paper's ImageNet
    accuracy) to the model's entry in :data:`cnnzoo.reported_accuracy.REPORTED_ACCURACY`.
    """

    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        model_name = name or fn.__name__
        if model_name in _REGISTRY:
            raise RuntimeError(f"model {model_name!r} registered twice")
        info = ModelInfo(
            name=model_name,
            family=family,
            paper=paper,
            input_size=tuple(input_size),
            num_classes=num_classes,
            min_size=input_size[1] if fixed_size and min_size is None else min_size,
            fixed_size=fixed_size,
            description=description or (fn.__doc__ or "").strip().split("\n")[0],
            reported=reported or reported_accuracy(model_name),
            builder=fn,
        )
        _REGISTRY[model_name] = info
        fn.model_info = info
        return fn

    return decorator


def _ensure_models_imported() -> None:
    import cnnzoo.models  # noqa: F401  (importing the package registers every family)


def family_module_names(models_dir) -> list[str]:
    """The family modules in ``models_dir`` (every module but ``base`` and ``_private`` ones), sorted.

    ``cnnzoo.models`` imports exactly these; the metadata index records them to notice a new file.
    """
    import pkgutil

    return sorted(
        m.name for m in pkgutil.iter_modules([str(models_dir)]) if m.name != "base" and not m.name.startswith("_")
    )


def _records(from_index: bool) -> Mapping[str, ModelInfo]:
    if from_index:
        from cnnzoo.model_index import load_index

        return load_index()
    _ensure_models_imported()
    return _REGISTRY


def list_models(pattern: str = "*", family: str | None = None, *, from_index: bool = False) -> list[str]:
    """Registered model names matching a shell-style wildcard, sorted.

    ``from_index=True`` reads the shipped metadata index instead of importing the model files
    (no torch); the names are the same.
    """
    return sorted(
        name
        for name, info in _records(from_index).items()
        if fnmatch.fnmatchcase(name, pattern) and (family is None or info.family == family)
    )


def model_info(name: str, *, from_index: bool = False) -> ModelInfo:
    """The registry record of ``name``; an unknown name suggests the closest ones.

    ``from_index=True`` reads the shipped metadata index instead of importing the model files
    (no torch): the same record, equal field by field, except that it has no ``builder``.
    """
    records = _records(from_index)
    try:
        return records[name]
    except KeyError:
        close = difflib.get_close_matches(name, records, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see `cnnzoo list`"
        raise UnknownModelError(f"unknown model {name!r}{hint}") from None


def create_model(
    name: str,
    num_classes: int | None = None,
    in_chans: int | None = None,
    *,
    features_only: bool = False,
    out_indices=None,
    pretrained: bool = False,
    **options,
) -> nn.Module:
    """Build a registered model with freshly initialised weights, or with shipped trained ones.

    ``num_classes`` defaults to the paper's (0 builds the net without its classifier, so
    ``forward`` returns pooled features); ``in_chans`` to the default input's channels.
    ``features_only=True`` (timm's) returns the net cut after its stages: ``forward(x)`` gives the
    list of the feature maps of the stages in ``out_indices`` (default: all), and
    ``feature_info`` their channels and reductions (:mod:`cnnzoo.features`).

    ``name.tag`` (``"lenet5.fashion_mnist"``, see ``list_pretrained()``) builds the architecture
    those weights were trained as (its classes, channels and options); ``pretrained=True`` loads
    them (a plain name takes its one shipped tag).  Another ``num_classes`` re-initialises the
    head and another ``in_chans`` adapts the first convolution, as ``cnnzoo finetune`` does
    (:mod:`cnnzoo.pretrained.load`).
    """
    if out_indices is not None and not features_only:
        raise ConfigError(f"{name}: out_indices is for features_only=True")
    from cnnzoo.pretrained.table import split_tag  # torch-free

    if pretrained is not False or split_tag(name)[1] is not None:
        if not isinstance(pretrained, bool):
            raise ConfigError(f"pretrained takes True or False, got {pretrained!r}")
        from cnnzoo.pretrained.load import create_pretrained

        return create_pretrained(name, num_classes, in_chans, pretrained=pretrained, features_only=features_only,
                                 out_indices=out_indices, **options)  # fmt: skip
    info = model_info(name)
    num_classes = info.num_classes if num_classes is None else num_classes
    in_chans = info.input_size[0] if in_chans is None else in_chans
    check_num_classes(num_classes)
    check_in_chans(in_chans)
    try:
        model = info.builder(num_classes=num_classes, in_chans=in_chans, **options)
    except TypeError as exc:
        # an option the builder does not know: say which, in one line
        if "unexpected keyword argument" in str(exc):
            raise ConfigError(f"{name}: {exc}".replace(f"{info.builder.__name__}() ", "")) from None
        raise
    model.model_name = name  # lets summary() and checkpoints find the registry record
    if features_only:
        from cnnzoo.features import features_only as cut_after_stages

        return cut_after_stages(model, out_indices, input_side=info.input_size[1])
    return model


__all__ = [
    "Paper",
    "ModelInfo",
    "register_model",
    "create_model",
    "list_models",
    "model_info",
    "InputSizeError",
]
