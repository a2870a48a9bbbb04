"""The search space of Zoph & Le (2017), Sections 3.1-3.3 and 4.1, as data; architectures as text.

A child network is a stack of ``depth`` convolutional layers.  For every layer the controller picks
(Sec. 3.1, Fig. 2; the values are Sec. 4.1's CIFAR-10 space):

* a filter height in {1, 3, 5, 7} and a filter width in {1, 3, 5, 7},
* a number of filters in {24, 36, 48, 64},
* a stride (Sec. 4.1 runs one set of experiments with strides fixed to 1 and one with strides
  predicted; the paper predicts a stride height and a stride width, this space one square stride),
* and, through the layer's *anchor point*, which earlier layers feed it (Sec. 3.3: "At layer N, we
  add an anchor point which has N - 1 content-based sigmoids to indicate the previous layers that
  need to be connected").

The depth is fixed per space (the paper grows it during the search, from 6 layers by 2 every 1,600
samples, Sec. 4.1; a growing depth is a sequence of spaces here).  How a child is compiled into a
network (which input a layer with no chosen input reads, what reaches the classifier, how maps of
different sizes are concatenated) is :mod:`cnnzoo.models.nas`'s docstring.

The architecture text
---------------------

``str(arch)`` is one line that a shell, YAML (``-o arch=...``), CSV and JSON all keep as it is: no
spaces, quotes, commas or shell metacharacters.  Layers are separated by ``/``; a layer is
``FHxFW:FILTERS``, then ``:sSTRIDE`` when the stride is not 1, then ``@J+K`` naming the (1-based)
earlier layers that feed it, none meaning the image::

    3x3:24/3x3:36:s2@1/5x5:48@2/3x3:48:s2@2+3

:meth:`Architecture.parse` also reads the interface's first spelling, ``3x3:36 | 5x5:48<1 | 7x1:64:s2<1,2``
(layers separated by ``|``, inputs after ``<`` separated by commas), which needs quotes on a command line.

Tokens
------

A controller emits one decision per :class:`Step` (:meth:`SearchSpace.steps`, in order); a
categorical step's token is the index of its value in ``choices``, an anchor step at layer N gives
N - 1 tokens of 0/1 (does layer j = 1 .. N - 1 feed layer N?).  :meth:`SearchSpace.decode` turns the
flat token list into an :class:`Architecture`, :meth:`SearchSpace.encode` back.

This module imports no torch.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from cnnzoo.errors import ConfigError

#: the decision kinds, in the order a layer's steps come (the anchor last: its hidden state then
#: summarises the layer it belongs to, Sec. 3.3's h_N)
STEP_KINDS = ("filter_height", "filter_width", "filters", "stride", "anchor")

_SPACE_TUPLES = {"filter_height": "filter_heights", "filter_width": "filter_widths", "filters": "filters",
                 "stride": "strides"}  # fmt: skip


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


@dataclass(frozen=True)
class LayerChoice:
    """One convolutional layer of a child: filter size, filters, stride and the layers feeding it."""

    filter_height: int
    filter_width: int
    filters: int
    stride: int = 1
    #: 1-based numbers of earlier layers whose outputs are concatenated as this layer's input;
    #: () = the image (Sec. 3.3).  Kept sorted.
    inputs: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        inputs = self.inputs
        if isinstance(inputs, (list, tuple)):
            inputs = tuple(sorted(inputs)) if all(_positive_int(j) for j in inputs) else tuple(inputs)
        object.__setattr__(self, "inputs", inputs)

    def text(self) -> str:
        """``FHxFW:FILTERS[:sSTRIDE][@J+K]`` (the module docstring)."""
        out = f"{self.filter_height}x{self.filter_width}:{self.filters}"
        if self.stride != 1:
            out += f":s{self.stride}"
        if self.inputs:
            out += "@" + "+".join(str(j) for j in self.inputs)
        return out


_LAYER_TEXT = re.compile(
    r"^(?P<fh>\d+)\s*x\s*(?P<fw>\d+)\s*:\s*(?P<filters>\d+)"
    r"(?:\s*:\s*s(?P<stride>\d+))?"
    r"(?:\s*[@<]\s*(?P<inputs>\d+(?:\s*[+,]\s*\d+)*))?$"
)
_LAYER_FORMAT = "write FHxFW:FILTERS[:sSTRIDE][@J+K], e.g. 5x5:48:s2@1+3"


@dataclass(frozen=True)
class Architecture:
    """A child network: its layers in order (checked for sanity only; the space decides the rest)."""

    layers: tuple[LayerChoice, ...]

    def __post_init__(self) -> None:
        layers = tuple(self.layers)
        object.__setattr__(self, "layers", layers)
        if not layers:
            raise ConfigError("an architecture needs at least one layer")
        for number, layer in enumerate(layers, start=1):
            if not isinstance(layer, LayerChoice):
                raise ConfigError(f"architecture layer {number} is not a LayerChoice: {layer!r}")
            for name in ("filter_height", "filter_width", "filters", "stride"):
                value = getattr(layer, name)
                if not _positive_int(value):
                    raise ConfigError(f"architecture layer {number}: {name} must be a positive integer, got {value!r}")
            inputs = layer.inputs
            if not isinstance(inputs, tuple) or not all(_positive_int(j) for j in inputs):
                raise ConfigError(f"architecture layer {number}: inputs must be layer numbers >= 1, got {inputs!r}")
            if len(set(inputs)) != len(inputs):
                raise ConfigError(f"architecture layer {number} names an input layer twice: {list(inputs)}")
            later = [j for j in inputs if j >= number]
            if later:
                raise ConfigError(f"architecture layer {number} can only read earlier layers (1..{number - 1}), "
                                  f"not {later[0]}")  # fmt: skip

    def __str__(self) -> str:
        return "/".join(layer.text() for layer in self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    @classmethod
    def parse(cls, text: str) -> "Architecture":
        """The architecture ``text`` describes (module docstring); a one-line ConfigError naming the bad layer."""
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"an architecture is text such as '3x3:36/5x5:48@1', got {text!r}")
        if "\n" in text or "\r" in text:
            raise ConfigError("an architecture is one line of text")
        parts = re.split(r"[/|]", text)
        layers = []
        for number, part in enumerate(parts, start=1):
            match = _LAYER_TEXT.match(part.strip())
            if match is None:
                raise ConfigError(f"architecture layer {number} {part.strip()!r}: {_LAYER_FORMAT}")
            inputs = match["inputs"]
            layers.append(LayerChoice(
                filter_height=int(match["fh"]), filter_width=int(match["fw"]), filters=int(match["filters"]),
                stride=int(match["stride"]) if match["stride"] is not None else 1,
                inputs=tuple(int(j) for j in re.split(r"\s*[+,]\s*", inputs)) if inputs else (),
            ))  # fmt: skip
        return cls(tuple(layers))

    def consumed(self) -> set[int]:
        """Numbers of the layers some later layer reads."""
        return {j for layer in self.layers for j in layer.inputs}

    def unconsumed(self) -> list[int]:
        """Numbers of the layers no later layer reads: concatenated, they reach the classifier (Sec. 3.3)."""
        taken = self.consumed()
        return [n for n in range(1, len(self.layers) + 1) if n not in taken]


@dataclass(frozen=True)
class Step:
    """One decision of the controller, in order."""

    kind: str  # one of STEP_KINDS
    layer: int  # 1-based
    #: a categorical step's values; () for an anchor step
    choices: tuple = ()

    @property
    def num_tokens(self) -> int:
        """Tokens this step emits: 1 for a categorical step, ``layer - 1`` binary ones for an anchor."""
        return self.layer - 1 if self.kind == "anchor" else 1

    @property
    def num_choices(self) -> int:
        """Values one token of this step can take: ``len(choices)``, or 2 (no/yes) for an anchor."""
        return 2 if self.kind == "anchor" else len(self.choices)


@dataclass(frozen=True)
class SearchSpace:
    """What a controller may emit: the values of each decision, the depth, and whether skips exist."""

    depth: int = 6
    filter_heights: tuple[int, ...] = (1, 3, 5, 7)
    filter_widths: tuple[int, ...] = (1, 3, 5, 7)
    filters: tuple[int, ...] = (24, 36, 48, 64)
    #: a single value means no stride step (and likewise for the other tuples)
    strides: tuple[int, ...] = (1, 2)
    #: False: a plain chain (layer 1 reads the image, layer N layer N - 1), no anchor steps
    skips: bool = True
    _steps: tuple[Step, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _positive_int(self.depth):
            raise ConfigError(f"the search space's depth must be a positive integer, got {self.depth!r}")
        if not isinstance(self.skips, bool):
            raise ConfigError(f"the search space's skips is true or false, got {self.skips!r}")
        for name in _SPACE_TUPLES.values():
            values = getattr(self, name)
            if isinstance(values, int) and not isinstance(values, bool):
                values = (values,)
            if not isinstance(values, (list, tuple)) or not values or not all(_positive_int(v) for v in values):
                raise ConfigError(f"the search space's {name} must be positive integers, got {values!r}")
            if len(set(values)) != len(values):
                raise ConfigError(f"the search space's {name} lists a value twice: {list(values)}")
            object.__setattr__(self, name, tuple(values))
        object.__setattr__(self, "_steps", tuple(self._make_steps()))

    # ----------------------------------------------------------------------- decisions
    def _make_steps(self) -> list[Step]:
        steps = []
        for layer in range(1, self.depth + 1):
            for kind, name in _SPACE_TUPLES.items():
                values = getattr(self, name)
                if len(values) > 1:  # a single value is no decision
                    steps.append(Step(kind, layer, values))
            if self.skips:
                # layer 1's anchor makes no decision but its hidden state is h_1 for the later anchors
                steps.append(Step("anchor", layer))
        return steps

    def steps(self) -> list[Step]:
        """Every decision of one child, in the order a controller makes them."""
        return list(self._steps)

    @property
    def num_tokens(self) -> int:
        """Length of one child's flat token list."""
        return sum(step.num_tokens for step in self._steps)

    def decode(self, tokens: Sequence[int]) -> Architecture:
        """The architecture a flat token list describes (a ConfigError for a list this space cannot emit)."""
        tokens = list(tokens)
        if len(tokens) != self.num_tokens:
            raise ConfigError(f"this search space takes {self.num_tokens} tokens per child, got {len(tokens)}")
        values: list[dict[str, Any]] = [
            {kind: getattr(self, name)[0] for kind, name in _SPACE_TUPLES.items()} for _ in range(self.depth)
        ]
        position = 0
        for step in self._steps:
            chunk = tokens[position : position + step.num_tokens]
            position += step.num_tokens
            for token in chunk:
                if not (isinstance(token, int) and not isinstance(token, bool) and 0 <= token < step.num_choices):
                    raise ConfigError(f"token {token!r} of layer {step.layer}'s {step.kind} is not in 0..{step.num_choices - 1}")  # fmt: skip
            if step.kind == "anchor":
                values[step.layer - 1]["inputs"] = tuple(j for j, bit in enumerate(chunk, start=1) if bit)
            else:
                values[step.layer - 1][step.kind] = step.choices[chunk[0]]
        layers = []
        for number, v in enumerate(values, start=1):
            inputs = v.get("inputs", ()) if self.skips else ((number - 1,) if number > 1 else ())
            layers.append(LayerChoice(v["filter_height"], v["filter_width"], v["filters"], v["stride"], inputs))
        return Architecture(tuple(layers))

    def encode(self, arch: Architecture) -> list[int]:
        """The flat token list of ``arch``; a ConfigError naming the first value this space does not have."""
        self.check_contains(arch)
        tokens: list[int] = []
        for step in self._steps:
            layer = arch.layers[step.layer - 1]
            if step.kind == "anchor":
                tokens += [int(j in layer.inputs) for j in range(1, step.layer)]
            else:
                tokens.append(step.choices.index(getattr(layer, step.kind)))
        return tokens

    def check_contains(self, arch: Architecture) -> None:
        """A one-line ConfigError unless this space can emit ``arch``."""
        if len(arch.layers) != self.depth:
            raise ConfigError(f"the architecture has {len(arch.layers)} layers, the search space {self.depth}")
        for number, layer in enumerate(arch.layers, start=1):
            for kind, name in _SPACE_TUPLES.items():
                value, allowed = getattr(layer, kind), getattr(self, name)
                if value not in allowed:
                    raise ConfigError(f"architecture layer {number}: {kind} {value} is not in the search space "
                                      f"({', '.join(map(str, allowed))})")  # fmt: skip
            if not self.skips and layer.inputs != ((number - 1,) if number > 1 else ()):
                raise ConfigError(f"architecture layer {number} has skip connections; the search space has none")

    # ----------------------------------------------------------------------- the cheapest children
    def cheapest_children(self) -> list[Architecture]:
        """The children among which the cheapest (in parameters, in multiply-adds, and in both at
        once) always is, whatever the input size, channels and classes.

        Every layer takes the smallest filter size and number of filters and the largest stride.
        Then a layer costs least reading one earlier layer, and that layer best the one just before
        it (the smallest map), or reading the image; each chain of layers ends in an output that
        reaches the classifier.  With ``m`` layers reading the image, one long chain and ``m - 1``
        single layers is the cheapest arrangement for both counts; parameters grow linearly in ``m``
        and multiply-adds are concave in it, so the child ``m`` of the list, ``m = 1 .. depth``,
        is where a budget check has to look (``cnnzoo.search.budget.check_admits``).
        """
        if not self.skips:
            return [self.smallest()]
        cheapest = LayerChoice(min(self.filter_heights), min(self.filter_widths), min(self.filters), max(self.strides))
        children = []
        for sources in range(1, self.depth + 1):
            chain = self.depth - sources + 1  # layers 1..chain form the chain, the rest read the image
            layers = [LayerChoice(cheapest.filter_height, cheapest.filter_width, cheapest.filters, cheapest.stride,
                                  (n - 1,) if 1 < n <= chain else ()) for n in range(1, self.depth + 1)]  # fmt: skip
            children.append(Architecture(tuple(layers)))
        return children

    def smallest(self) -> Architecture:
        """The cheapest choices at every layer as a plain chain (with skips, the cheapest child of
        all is one of :meth:`cheapest_children`, which depends on the data's channels and classes)."""
        layers = [LayerChoice(min(self.filter_heights), min(self.filter_widths), min(self.filters), max(self.strides),
                              (n - 1,) if n > 1 else ()) for n in range(1, self.depth + 1)]  # fmt: skip
        return Architecture(tuple(layers))

    # ----------------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("_steps", None)
        return {key: list(value) if isinstance(value, tuple) else value for key, value in data.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SearchSpace":
        if not isinstance(data, dict):
            raise ConfigError(f"a search space is a mapping of its settings, got {data!r}")
        known = {"depth", "skips", *_SPACE_TUPLES.values()}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"the search space has no setting {unknown[0]!r} (settings: {', '.join(sorted(known))})")
        return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in data.items()})


__all__ = ["STEP_KINDS", "Architecture", "LayerChoice", "SearchSpace", "Step"]
