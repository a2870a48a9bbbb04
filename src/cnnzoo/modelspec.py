"""What a run records to rebuild its model: the builder, every option, and the changes made to it.

A :class:`ModelSpec` names a registered builder (``resnet20``), the keyword options it was
called with (checked against the builder's signature by :func:`check_options`), the number
of classes and input channels, and an ordered list of *transforms*: registered functions
that change the architecture after it is built (a new classifier layer on top for transfer
learning; later pruning, quantization and search add theirs).  ``spec.build()`` replays all of
it, so ``cnnzoo.load_run(DIR)`` rebuilds a model whose architecture was changed, and the
run's checkpoint then loads strictly.

Options are written ``KEY=VALUE`` on the command line (``-o stride_in_1x1=true``); the value
is read as YAML and must have the option's type: a boolean takes true/false only, a typo
names the nearest option.
"""

from __future__ import annotations

import difflib
import inspect
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable

from cnnzoo.errors import ConfigError

#: the modules that register transforms (imported when a spec names one not yet registered)
TRANSFORM_MODULES = (
    "cnnzoo.transfer.prepare",
    "cnnzoo.compress.pruning",
    "cnnzoo.compress.deep_compression",
    "cnnzoo.quantization.transform",
    "cnnzoo.quantization.int8_qat",
)

#: transform name -> function(model, **options) -> model
_TRANSFORMS: dict[str, Callable[..., Any]] = {}


def register_transform(name: str):
    """Register ``fn(model, **options) -> model`` as a transform a :class:`ModelSpec` can replay."""

    def decorator(fn):
        if name in _TRANSFORMS:
            raise RuntimeError(f"model transform {name!r} registered twice")
        _TRANSFORMS[name] = fn
        return fn

    return decorator


def _transform(name: str) -> Callable[..., Any]:
    if name not in _TRANSFORMS:
        # transforms live beside their concern; importing it registers them
        from importlib import import_module

        for module in TRANSFORM_MODULES:
            import_module(module)
    try:
        return _TRANSFORMS[name]
    except KeyError:
        raise ConfigError(f"unknown model transform {name!r}; known: {', '.join(sorted(_TRANSFORMS))}") from None


@dataclass
class ModelSpec:
    """A registered builder, its options and the transforms applied after building."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    num_classes: int | None = None
    in_chans: int | None = None
    #: ``[{"name": "new_fc", "options": {...}}, ...]`` applied in order
    transforms: list[dict[str, Any]] = field(default_factory=list)

    def build(self):
        """The model, freshly initialised, with every transform replayed."""
        from cnnzoo.registry import create_model

        model = create_model(self.name, num_classes=self.num_classes, in_chans=self.in_chans, **self.options)
        for step in self.transforms:
            model = _transform(step["name"])(model, **dict(step.get("options") or {}))
        model.model_spec = self.copy()
        return model

    def then(self, name: str, **options) -> "ModelSpec":
        """This spec followed by one more transform."""
        _transform(name)
        spec = self.copy()
        spec.transforms.append({"name": name, "options": options})
        return spec

    def copy(self) -> "ModelSpec":
        return ModelSpec.from_dict(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "options": dict(self.options), "num_classes": self.num_classes,
                "in_chans": self.in_chans, "transforms": [dict(t) for t in self.transforms]}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelSpec":
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            raise ConfigError("a model record must name its builder")
        return cls(name=data["name"], options=dict(data.get("options") or {}), num_classes=data.get("num_classes"),
                   in_chans=data.get("in_chans"), transforms=[dict(t) for t in data.get("transforms") or []])  # fmt: skip


def spec_of(model) -> ModelSpec | None:
    """The spec a model was built from (set by :meth:`ModelSpec.build`), or None."""
    spec = getattr(model, "model_spec", None)
    return spec.copy() if isinstance(spec, ModelSpec) else None


# ------------------------------------------------------------------------------------------
# options: KEY=VALUE, checked against the builder
# ------------------------------------------------------------------------------------------

#: options every builder takes, set by the engine from the data, not by the user
_RESERVED = ("num_classes", "in_chans")


def _strict_yaml_loader():
    """YAML's safe loader, but only ``true``/``false`` are booleans (not yes/no/on/off, YAML 1.1's)."""
    import re

    import yaml

    class StrictBoolLoader(yaml.SafeLoader):
        pass

    StrictBoolLoader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    StrictBoolLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                           list("tTfF"))  # fmt: skip
    return StrictBoolLoader


def parse_option_pairs(pairs: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["stride_in_1x1=true"]`` -> ``{"stride_in_1x1": True}`` (values read as YAML; booleans are true/false)."""
    import yaml

    loader = _strict_yaml_loader()
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key.isidentifier():
            raise ConfigError(f"malformed model option {pair!r}; write KEY=VALUE, e.g. -o drop_rate=0.2")
        try:
            options[key] = yaml.load(raw, Loader=loader) if raw.strip() else None  # noqa: S506 - a SafeLoader
        except yaml.YAMLError as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConfigError(f"model option {key}: cannot read the value {raw!r} ({first})") from None
    return options


def builder_parameters(name: str) -> dict[str, inspect.Parameter]:
    """The keyword options model ``name`` accepts, with their annotations resolved.

    A builder is usually ``def resnet50(**kwargs) -> ResNet`` passing everything to the
    class, so the class's ``__init__`` (and its bases' while they take ``**kwargs``) is
    read as well as the builder's own keyword parameters.
    """
    from cnnzoo.registry import model_info

    builder = model_info(name).builder
    params: dict[str, inspect.Parameter] = {}
    open_ended = _collect(builder, params)
    cls = _hints(builder).get("return")
    if open_ended and isinstance(cls, type):
        for klass in cls.__mro__:
            if "__init__" not in vars(klass) or klass.__module__.startswith("torch"):
                continue
            if not _collect(vars(klass)["__init__"], params, skip_self=True):
                break
    for key in _RESERVED:
        params.pop(key, None)
    return params


def _collect(fn, params: dict[str, inspect.Parameter], skip_self: bool = False) -> bool:
    """Add ``fn``'s keyword parameters (types resolved); True when it also takes ``**kwargs``."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return True
    hints = _hints(fn)
    open_ended = False
    for index, (key, param) in enumerate(signature.parameters.items()):
        if skip_self and index == 0:
            continue
        if param.kind is param.VAR_KEYWORD:
            open_ended = True
        elif param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY) and key not in params:
            if skip_self and param.default is param.empty:
                continue  # a required argument of the class: its builder sets it (VGG's layer list)
            params[key] = param.replace(annotation=hints.get(key, param.annotation))
    return open_ended


def _hints(fn) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:  # an annotation that does not resolve: fall back to the defaults' types
        return {}


def check_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Options of model ``name`` converted to their types; an unknown or ill-typed one is a one-line error."""
    params = builder_parameters(name)
    checked: dict[str, Any] = {}
    for key, value in options.items():
        if key in _RESERVED:
            raise ConfigError(f"{name}: {key} is set from the data set, not as a model option")
        if key not in params:
            close = difflib.get_close_matches(key, params, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            known = f" (options: {', '.join(sorted(params))})" if params and not close else ""
            raise ConfigError(f"{name} has no option {key!r}{hint}{known}")
        param = params[key]
        checked[key] = coerce_value(value, param.annotation, param.default, f"{name} option {key}")
    return checked


def coerce_value(value: Any, annotation: Any, default: Any, what: str) -> Any:
    """``value`` converted to ``annotation`` (or the default's type when unannotated), else ConfigError."""
    kinds = _kinds(annotation, default)
    if not kinds:
        return value
    if value is None:
        if type(None) in kinds:
            return None
        raise ConfigError(f"{what} cannot be empty")
    for kind in kinds:
        converted = _convert(value, kind)
        if converted is not _NO:
            return converted
    names = " or ".join(_kind_name(k) for k in kinds if k is not type(None))
    raise ConfigError(f"{what} takes {names}, got {value!r}")


_NO = object()


def _kinds(annotation: Any, default: Any) -> list[Any]:
    if annotation is inspect.Parameter.empty or annotation is Any:
        if default is inspect.Parameter.empty or default is None:
            return []
        return [type(default)]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        out: list[Any] = []
        for arg in typing.get_args(annotation):
            out.extend(_kinds(arg, inspect.Parameter.empty) or [Any])
        return [] if Any in out else out
    if origin is typing.Literal:
        return [annotation]
    return [annotation]


def _kind_name(kind: Any) -> str:
    if typing.get_origin(kind) is typing.Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(kind))
    if kind is bool:
        return "true or false"
    origin = typing.get_origin(kind)
    return getattr(origin or kind, "__name__", str(kind))


def _convert(value: Any, kind: Any) -> Any:
    origin = typing.get_origin(kind) or kind
    if kind is type(None):
        return _NO
    if origin is typing.Literal:
        return value if value in typing.get_args(kind) else _NO
    if kind is bool:
        return value if isinstance(value, bool) else _NO
    if kind is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _NO
    if kind is float:
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else _NO
    if kind is str:
        return value if isinstance(value, str) else _NO
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return _NO
        args = typing.get_args(kind)
        if origin is tuple and args and args[-1] is not Ellipsis:  # tuple[int, int]: one type per place
            if len(args) != len(value):
                return _NO
            items = [_convert(v, a) for v, a in zip(value, args)]
        elif args:  # list[int], tuple[int, ...]
            items = [_convert(v, args[0]) for v in value]
        else:
            items = list(value)
        if any(v is _NO for v in items):
            return _NO
        return tuple(items) if origin is tuple else items
    if origin is dict or kind is dict:
        return dict(value) if isinstance(value, dict) else _NO
    if isinstance(kind, type):
        return value if isinstance(value, kind) else _NO
    return value
