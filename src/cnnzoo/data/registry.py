"""The data-set registry: every name :func:`cnnzoo.data.load_dataset` accepts, with its one-line help.

A data set is one module in :mod:`cnnzoo.data.sets`; every module there is imported (pkgutil) the
first time the registry is asked anything, so adding a data set is adding its file::

    from cnnzoo.data.registry import register_dataset

    @register_dataset("cifar10", aliases=("cifar-10",), help="CIFAR-10: 60000 32x32 colour images, 10 classes",
                      default_augment={"crop_padding": 4, "flip": True}, downloads=True)
    def load(request):                      # a DatasetRequest: the name, the options, load_dataset's arguments
        from cnnzoo.data.cifar import load_cifar      # heavy imports (torch, numpy, PIL) inside the function

        train, test, source = load_cifar(request.name, request.data_dir, request.download)
        return request.finish(train, test, source=source)   # the validation split, limits and statistics

One function may carry several ``@register_dataset`` lines (``mnist`` and ``fashion-mnist``);
``request.name`` tells it which was asked for.

This module and the modules in :mod:`cnnzoo.data.sets` import neither torch nor numpy nor PIL at
import time, so that listing the data sets (:func:`dataset_names`, :func:`dataset_help`, for
``--help`` texts) stays cheap; the loading functions import what they need when called.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping

from cnnzoo.data.errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    from cnnzoo.data.base import DataBundle

#: the package whose every module registers data sets
SETS_PACKAGE = "cnnzoo.data.sets"


@dataclass(frozen=True)
class DatasetInfo:
    """One registered data set.

    ``takes_path``: the text after ``NAME:`` is a directory (``imagefolder:PATH``), and
    ``data_dir`` stands in for it when it is absent.  ``options``: the data set accepts options
    after the colon; the string shows their form in listings (``"k=v,..."``).  A data set with
    neither accepts nothing after its name.  ``downloads``: ``download=True`` can fetch it.
    """

    name: str
    loader: Callable[["DatasetRequest"], "DataBundle"]
    help: str
    aliases: tuple[str, ...] = ()
    takes_path: bool = False
    options: str | None = None
    default_augment: Mapping[str, Any] = field(default_factory=dict)
    downloads: bool = False
    module: str = ""

    @property
    def usage(self) -> str:
        """How the name is written: ``cifar10``, ``imagefolder:PATH``, ``synthetic[:k=v,...]``."""
        if self.takes_path:
            return f"{self.name}:PATH"
        if self.options:
            return f"{self.name}[:{self.options}]"
        return self.name


@dataclass(frozen=True)
class DatasetRequest:
    """What a registered loading function receives: the resolved name and load_dataset's arguments."""

    info: DatasetInfo
    #: the text after ``NAME:`` ("" when none); for ``takes_path`` data sets see :attr:`path`
    arg: str
    data_dir: Any
    download: bool
    val_fraction: float
    seed: int
    limit_train: int | None
    limit_val: int | None
    limit_test: int | None

    @property
    def name(self) -> str:
        """The canonical name (``fashion-mnist`` for ``fashion_mnist``)."""
        return self.info.name

    @property
    def path(self) -> str:
        """For ``takes_path`` data sets: the directory after the colon, else ``data_dir``."""
        return self.arg or (str(self.data_dir) if self.data_dir is not None else "")

    def finish(self, train, test, **kwargs) -> "DataBundle":
        """:func:`~cnnzoo.data.base.finish_bundle` with this request's split, limits and default augmentation.

        ``kwargs`` go to ``finish_bundle`` (``val``, ``image_size``, ``mean``, ``std``, ``source``;
        ``name`` overrides the bundle's name).
        """
        from cnnzoo.data.base import finish_bundle

        name = kwargs.pop("name", self.name)
        kwargs.setdefault("default_augment", dict(self.info.default_augment))
        return finish_bundle(name, train, test, val_fraction=self.val_fraction, seed=self.seed,
                             limit_train=self.limit_train, limit_val=self.limit_val, limit_test=self.limit_test,
                             **kwargs)  # fmt: skip


_REGISTRY: dict[str, DatasetInfo] = {}
_ALIASES: dict[str, str] = {}  # every accepted spelling (names too) -> canonical name
_discovered = False


def register_dataset(
    name: str,
    *,
    help: str,
    aliases: tuple[str, ...] | list[str] = (),
    takes_path: bool = False,
    options: str | None = None,
    default_augment: Mapping[str, Any] | None = None,
    downloads: bool = False,
):
    """Register the decorated ``loader(request: DatasetRequest) -> DataBundle`` as data set ``name``.

    ``help`` is one line for listings; ``aliases`` are other accepted spellings; ``default_augment``
    is the augmentation the data set trains with by default (``make_loader``'s ``augment``).
    The function is returned unchanged, so several decorators may register one function.
    """
    key = _key(name)
    if not key or ":" in key or key != name:
        raise ValueError(f"data set names are lower case, without ':' or spaces: {name!r}")
    if "\n" in help or not help.strip():
        raise ValueError(f"data set {name!r} needs a one-line help")
    if takes_path and options:
        raise ValueError(f"data set {name!r}: takes_path and options exclude each other")

    def decorate(loader):
        info = DatasetInfo(name=name, loader=loader, help=help.strip(), aliases=tuple(_key(a) for a in aliases),
                           takes_path=bool(takes_path), options=options,
                           default_augment=MappingProxyType(dict(default_augment or {})), downloads=bool(downloads),
                           module=getattr(loader, "__module__", ""))  # fmt: skip
        old = _REGISTRY.get(name)
        if old is not None and (old.module, old.loader.__qualname__) != (info.module, loader.__qualname__):
            raise ValueError(f"data set {name!r} is registered twice ({old.module} and {info.module})")
        for spelling in (name, *info.aliases):
            owner = _ALIASES.get(spelling)
            if owner is not None and owner != name:
                raise ValueError(f"data set {name!r}: the name {spelling!r} already belongs to {owner!r}")
        for spelling in (name, *info.aliases):
            _ALIASES[spelling] = name
        _REGISTRY[name] = info
        return loader

    return decorate


def _key(name: str) -> str:
    return str(name).strip().lower()


def _discover() -> None:
    """Import every module of :mod:`cnnzoo.data.sets` (once): each registers its data sets."""
    global _discovered
    if _discovered:
        return
    package = importlib.import_module(SETS_PACKAGE)
    for module in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if not module.name.startswith("_"):
            importlib.import_module(f"{SETS_PACKAGE}.{module.name}")
    _discovered = True


def dataset_names() -> tuple[str, ...]:
    """The canonical names of all registered data sets, sorted (no torch import)."""
    _discover()
    return tuple(sorted(_REGISTRY))


def dataset_help() -> dict[str, str]:
    """``{name: one-line help}`` for every data set, in :func:`dataset_names` order (no torch import)."""
    _discover()
    return {name: _REGISTRY[name].help for name in sorted(_REGISTRY)}


def resolve_dataset(name: str) -> tuple[DatasetInfo, str]:
    """``NAME[:ARG]`` -> ``(info, ARG)``; an unknown name is a one-line :class:`DataError`."""
    _discover()
    base, _, arg = str(name).partition(":")
    canonical = _ALIASES.get(_key(base))
    if canonical is None:
        known = ", ".join(_REGISTRY[n].usage for n in sorted(_REGISTRY))
        close = difflib.get_close_matches(_key(base), list(_ALIASES), n=1, cutoff=0.6)
        hint = f" (did you mean {_ALIASES[close[0]]!r}?)" if close else ""
        raise DataError(f"unknown data set {name!r}{hint}; known: {known}")
    return _REGISTRY[canonical], arg


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name`` (an alias, or ``NAME:ARG``, resolves too)."""
    return resolve_dataset(name)[0]


def default_augment(name: str) -> dict:
    """The augmentation data set ``name`` trains with by default (a fresh dict for ``make_loader``)."""
    return dict(dataset_info(name).default_augment)


__all__ = [
    "DatasetInfo",
    "DatasetRequest",
    "dataset_help",
    "dataset_info",
    "dataset_names",
    "default_augment",
    "register_dataset",
    "resolve_dataset",
]
