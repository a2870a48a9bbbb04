"""Converting the state dicts other libraries publish into cnnzoo's key names.

``convert(state_dict, source="timm", model="inception_v4")`` returns a state dict that the
cnnzoo model ``model`` loads with ``strict=True``.  Each supported (source, model) pair has
a :class:`KeyMapping`: regular-expression renames applied in order, and key patterns to
drop (buffers or heads the other library keeps and cnnzoo does not).  Where cnnzoo names
its modules like the source (every Inception-family model does), the mapping is empty and
the conversion only checks that the pair is known and copies the dict.

Supported now:

============  =====================  ===============================
source        cnnzoo model           the source's model
============  =====================  ===============================
torchvision   googlenet_bn           ``torchvision.models.googlenet``
torchvision   inception_v3           ``torchvision.models.inception_v3``
timm          inception_v3           ``timm inception_v3`` (aux_logits=False)
timm          inception_v4           ``timm inception_v4``
timm          inception_resnet_v2    ``timm inception_resnet_v2``
timm          xception               ``timm legacy_xception``
============  =====================  ===============================

The source's own model names are accepted too (``model="legacy_xception"``).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Mapping

from torch import Tensor

from cnnzoo.errors import ConfigError


@dataclass(frozen=True)
class KeyMapping:
    """How one source model's keys become a cnnzoo model's keys."""

    source_model: str
    renames: tuple[tuple[str, str], ...] = ()  # (regex, replacement), applied in order
    drop: tuple[str, ...] = ()  # regexes of keys to leave out
    notes: str = ""

    def apply(self, state_dict: Mapping[str, Tensor]) -> OrderedDict[str, Tensor]:
        converted: OrderedDict[str, Tensor] = OrderedDict()
        for key, value in state_dict.items():
            if any(re.fullmatch(pattern, key) for pattern in self.drop):
                continue
            new_key = key
            for pattern, replacement in self.renames:
                new_key = re.sub(pattern, replacement, new_key)
            if new_key in converted:
                raise ConfigError(f"converting {self.source_model}: two keys map to {new_key!r}")
            converted[new_key] = value
        return converted


#: (source, cnnzoo model name) -> mapping
KEY_MAPPINGS: dict[tuple[str, str], KeyMapping] = {
    ("torchvision", "googlenet_bn"): KeyMapping(
        "googlenet", notes="same module names; transform_input is a forward option, not a weight"
    ),
    ("torchvision", "inception_v3"): KeyMapping("inception_v3", notes="same module names"),
    ("timm", "inception_v3"): KeyMapping(
        "inception_v3",
        notes="timm keeps torchvision's names but builds no auxiliary head: use aux_logits=False",
    ),
    ("timm", "inception_v4"): KeyMapping("inception_v4", notes="same module names"),
    ("timm", "inception_resnet_v2"): KeyMapping("inception_resnet_v2", notes="same module names"),
    ("timm", "xception"): KeyMapping("legacy_xception", notes="same module names"),
}


def _resolve(source: str, model: str) -> tuple[str, KeyMapping]:
    if (source, model) in KEY_MAPPINGS:
        return model, KEY_MAPPINGS[(source, model)]
    for (src, ours), mapping in KEY_MAPPINGS.items():
        if src == source and mapping.source_model == model:
            return ours, mapping
    sources = sorted({src for src, _ in KEY_MAPPINGS})
    if source not in sources:
        raise ConfigError(f"unknown weight source {source!r}; known: {', '.join(sources)}")
    known = ", ".join(sorted(ours for src, ours in KEY_MAPPINGS if src == source))
    raise ConfigError(f"no conversion from {source} for model {model!r}; known: {known}")


def supported_conversions() -> list[tuple[str, str, str]]:
    """``(source, cnnzoo model, source model)`` for every known conversion."""
    return [(src, ours, m.source_model) for (src, ours), m in sorted(KEY_MAPPINGS.items())]


def convert(state_dict: Mapping[str, Tensor], source: str = "timm", model: str = "inception_v4") -> OrderedDict:
    """``state_dict`` of ``source``'s model -> a state dict cnnzoo's ``model`` loads strictly.

    ``model`` is the cnnzoo model name (or the source's own name for it).  Unknown pairs
    raise :class:`~cnnzoo.errors.ConfigError`.
    """
    if not isinstance(state_dict, Mapping):
        raise ConfigError(f"convert() needs a state dict (a mapping of names to tensors), got {type(state_dict).__name__}")
    _, mapping = _resolve(source, model)
    return mapping.apply(state_dict)


__all__ = ["KeyMapping", "KEY_MAPPINGS", "convert", "supported_conversions"]
