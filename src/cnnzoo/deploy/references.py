"""The architectures cnnzoo shares with torchvision and timm: one table, for ``cnnzoo bench
--compare`` and ``benchmarks/vs_torchvision.py``.

A shared architecture is one whose reference model's state dict loads strictly into cnnzoo's
(the equivalence tests check each: tests/test_resnet.py, test_densenet.py, test_efficient.py,
test_inception.py, test_timm_equivalence.py ...).  The renames (torchvision's ``googlenet`` is
cnnzoo's ``googlenet_bn``, timm's ``legacy_xception`` is ``xception``) are those of
:mod:`cnnzoo.transfer.sources`, which loads their weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cnnzoo.errors import ConfigError

LIBRARIES = ("torchvision", "timm")

#: torchvision names of the shared classifiers; their constructors' arguments where the defaults differ
#: from cnnzoo's layout (torchvision's GoogLeNet and Inception v3 re-normalise the input unless told not to)
_TORCHVISION: dict[str, dict[str, Any]] = {
    "alexnet": {}, "vgg11": {}, "vgg13": {}, "vgg16": {}, "vgg19": {},
    "vgg11_bn": {}, "vgg13_bn": {}, "vgg16_bn": {}, "vgg19_bn": {},
    "resnet18": {}, "resnet34": {}, "resnet50": {}, "resnet101": {}, "resnet152": {},
    "wide_resnet50_2": {}, "wide_resnet101_2": {}, "resnext50_32x4d": {}, "resnext101_32x8d": {},
    "resnext101_64x4d": {},
    "densenet121": {}, "densenet161": {}, "densenet169": {}, "densenet201": {},
    "squeezenet1_0": {}, "squeezenet1_1": {},
    "googlenet": {"aux_logits": True, "init_weights": True, "transform_input": False},
    "inception_v3": {"aux_logits": True, "init_weights": True, "transform_input": False},
}  # fmt: skip

#: timm names of the shared classifiers
_TIMM: dict[str, dict[str, Any]] = {
    name: {} for name in (
        "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "wide_resnet50_2", "wide_resnet101_2",
        "resnext50_32x4d", "resnext101_32x8d", "densenet121", "densenet161", "densenet169", "densenet201",
        "inception_v3", "inception_v4", "inception_resnet_v2", "legacy_xception",
    )
}  # fmt: skip

#: cnnzoo options that give a reference's layout (timm's Inception v3 has no auxiliary head)
_OUR_OPTIONS = {("timm", "inception_v3"): {"aux_logits": False}}


@dataclass(frozen=True)
class Reference:
    """A reference implementation of one cnnzoo architecture."""

    library: str  # "torchvision" or "timm"
    name: str  # the library's model name
    ours: str  # cnnzoo's model name
    kwargs: dict[str, Any] = field(default_factory=dict)  # the library constructor's arguments
    our_options: dict[str, Any] = field(default_factory=dict)  # cnnzoo builder options for the same layout

    @property
    def label(self) -> str:
        return f"{self.library} {self.name}"

    def build(self, num_classes: int = 1000):
        """The reference model, freshly initialised (imports the library)."""
        if self.library == "torchvision":
            import torchvision

            return torchvision.models.get_model(self.name, weights=None, num_classes=num_classes, **self.kwargs)
        import timm

        return timm.create_model(self.name, pretrained=False, num_classes=num_classes, **self.kwargs)


def _renames(library: str) -> dict[str, str]:
    from cnnzoo.transfer.sources import TIMM_NAMES, TORCHVISION_NAMES

    return TORCHVISION_NAMES if library == "torchvision" else TIMM_NAMES


def shared(library: str) -> dict[str, Reference]:
    """cnnzoo name -> :class:`Reference` for every architecture ``library`` shares with cnnzoo."""
    if library not in LIBRARIES:
        raise ConfigError(f"unknown reference library {library!r}; choose from {', '.join(LIBRARIES)}")
    table = _TORCHVISION if library == "torchvision" else _TIMM
    renames = _renames(library)
    references = {}
    for name, kwargs in table.items():
        ours = renames.get(name, name)
        references[ours] = Reference(library, name, ours, dict(kwargs), dict(_OUR_OPTIONS.get((library, name), {})))
    return references


def reference(library: str, ours: str) -> Reference:
    """The reference for cnnzoo's ``ours`` in ``library``; a one-line error naming the shared ones if none."""
    table = shared(library)
    if ours not in table:
        raise ConfigError(f"--compare {library}: {library} has no {ours}; the architectures it shares with cnnzoo "
                          f"are {', '.join(sorted(table))}")  # fmt: skip
    return table[ours]
