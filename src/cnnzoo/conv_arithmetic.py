"""Output sizes of convolution and pooling, from the formula of the brief (004).

    out = floor((in + 2 * pad - dilation * (kernel - 1) - 1) / stride) + 1

(with dilation 1 this is the lecture's ``floor((in - ks + 2 * pad) / stride) + 1``).
Convolution always rounds down: a window that would run past the (padded) border is
dropped.  Caffe's pooling rounds up ("ceil mode"): the last window may hang over the
border and is pooled over the part inside the image; that is 004's Q1.  As in Caffe
and PyTorch, a last window that would start entirely in the padding is dropped.

Plain arithmetic, no torch: ``cnnzoo shape`` uses it directly (``cnnzoo.analysis.shape``
re-exports it, but importing ``cnnzoo.analysis`` imports torch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cnnzoo.errors import ConfigError


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Output side of a convolution (always rounded down)."""
    return _output_size(size, kernel, stride, padding, dilation, ceil_mode=False)


def pool_output_size(size: int, kernel: int, stride: int | None = None, padding: int = 0,
                     dilation: int = 1, ceil_mode: bool = False) -> int:
    """Output side of a pooling layer; ``ceil_mode=True`` is Caffe's rounding up."""
    return _output_size(size, kernel, stride or kernel, padding, dilation, ceil_mode)


def _output_size(size: int, kernel: int, stride: int, padding: int, dilation: int, ceil_mode: bool) -> int:
    for label, value, least in (("size", size, 1), ("kernel", kernel, 1), ("stride", stride, 1),
                                ("padding", padding, 0), ("dilation", dilation, 1)):
        if value < least:
            raise ConfigError(f"{label} must be at least {least}, got {value}")
    span = dilation * (kernel - 1) + 1
    if span > size + 2 * padding:
        raise ConfigError(f"a {span}-pixel window does not fit in a {size}-pixel input padded by {padding}")
    steps = (size + 2 * padding - span) / stride
    out = (math.ceil(steps) if ceil_mode else math.floor(steps)) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1  # the last window would start in the padding: dropped
    return out


@dataclass(frozen=True)
class LayerSpec:
    kind: str  # "conv" or "pool"
    kernel: int
    stride: int
    padding: int = 0
    dilation: int = 1

    def describe(self) -> str:
        text = f"{self.kind} {self.kernel}x{self.kernel}/{self.stride} pad {self.padding}"
        return text + (f" dilation {self.dilation}" if self.dilation != 1 else "")


def parse_layer(text: str) -> LayerSpec:
    """``conv:K[/S[/P[/D]]]`` or ``pool:K[/S[/P]]``, e.g. ``conv:11/4/0``, ``pool:3/2``."""
    kind, _, numbers = text.partition(":")
    try:
        values = [int(v) for v in numbers.split("/")] if numbers else []
    except ValueError:
        values = []
    if kind not in ("conv", "pool") or not 1 <= len(values) <= (4 if kind == "conv" else 3):
        raise ConfigError(f"malformed layer {text!r}; write conv:K[/S[/P[/D]]] or pool:K[/S[/P]], e.g. conv:11/4/0")
    kernel = values[0]
    stride = values[1] if len(values) > 1 else (1 if kind == "conv" else kernel)
    padding = values[2] if len(values) > 2 else 0
    dilation = values[3] if len(values) > 3 else 1
    return LayerSpec(kind, kernel, stride, padding, dilation)


def explain_chain(size: int, layers: list[LayerSpec], ceil_mode: bool = False) -> tuple[list[str], int]:
    """One line per layer showing the formula with its numbers; returns (lines, final size)."""
    lines = [f"input: {size}"]
    for layer in layers:
        span = layer.dilation * (layer.kernel - 1) + 1
        formula = f"({size} + 2*{layer.padding} - {span}) / {layer.stride}"
        if layer.kind == "conv":
            out = conv_output_size(size, layer.kernel, layer.stride, layer.padding, layer.dilation)
            lines.append(f"{layer.describe()}: floor({formula}) + 1 = {out}")
        else:
            down = pool_output_size(size, layer.kernel, layer.stride, layer.padding, layer.dilation, False)
            up = pool_output_size(size, layer.kernel, layer.stride, layer.padding, layer.dilation, True)
            out = up if ceil_mode else down
            rounding = "ceil" if ceil_mode else "floor"
            line = f"{layer.describe()}: {rounding}({formula}) + 1 = {out}"
            if up != down:
                other = "floor (PyTorch default)" if ceil_mode else "ceil (Caffe)"
                line += f"   [{other} gives {down if ceil_mode else up}]"
            lines.append(line)
        size = out
    return lines, size


ROUNDING_NOTE = (
    "Convolution rounds down: a window that would cross the padded border is dropped. Caffe's pooling "
    "rounds up (ceil mode): the last window may hang over the border and pools only what is inside. "
    "PyTorch pools with floor unless ceil_mode=True."
)
