"""How a training runs fast on the machine at hand: precision, memory format, compilation.

* **bf16 autocast** (``amp``): ``auto`` (the default) trains in bfloat16 where the hardware has
  it — a CUDA GPU with bf16, or a CPU with AMX or AVX512-BF16 instructions, where the matrix
  units roughly double the speed — and in fp32 elsewhere.  ``bf16`` asked for on a CPU without
  those instructions falls back to fp32 with a warning: emulated bf16 is slower than fp32.
  The start of every run says which is in use.
* **channels-last** (``channels_last``): ``auto`` turns it on where it is measured to help
  (convolutions on a CPU: oneDNN's kernels work in NHWC; docs/results.md, "CPU speed-ups").
* **torch.compile** (``compile``): when compiling fails (no C compiler, an unsupported
  operation), the run goes on eagerly with a warning that names the cause.

Each is measured as a ratio by ``benchmarks/cpu_speed.py``.
"""

from __future__ import annotations

import functools
from typing import Callable

import torch
from torch import nn

#: what ``amp`` and ``channels_last`` may say
AMP_MODES = ("auto", "bf16", "none")


def cpu_model_name() -> str:
    """The CPU's model name as ``lscpu`` shows it (for benchmark reports)."""
    import platform

    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


@functools.lru_cache(maxsize=None)
def cpu_bf16_instructions() -> str | None:
    """The CPU's bf16 matrix instructions ("amx_bf16", "avx512_bf16"), or None."""
    try:
        flags = open("/proc/cpuinfo").read().split()
    except OSError:  # not Linux: ask oneDNN
        flags = []
    for name in ("amx_bf16", "avx512_bf16"):
        if name in flags:
            return name
    try:
        if not flags and torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return "onednn bf16"
    except (AttributeError, RuntimeError):
        pass
    return None


def resolve_amp(requested: str, device: torch.device, warn: Callable[[str], None]) -> tuple[str, str]:
    """``(amp in use, why)`` for ``requested`` ("auto", "bf16" or "none") on ``device``."""
    if requested == "none":
        return "none", "fp32 (amp none)"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", "bf16 autocast (this GPU supports bfloat16)"
        if requested == "bf16":
            warn("amp bf16: this GPU does not support bfloat16; training in fp32")
        return "none", "fp32 (this GPU has no bfloat16)"
    instructions = cpu_bf16_instructions() if device.type == "cpu" else None
    if instructions:
        return "bf16", f"bf16 autocast (the CPU has {instructions})"
    if requested == "bf16":
        warn(f"amp bf16: this {device.type.upper()} has no bf16 instructions (AMX or AVX512-BF16), where bf16 "
             "is slower than fp32; training in fp32")  # fmt: skip
    return "none", "fp32 (no bf16 instructions on this CPU)"


def resolve_channels_last(requested: bool | None, device: torch.device) -> bool:
    """``channels_last``: None (auto) means on for a CPU, where oneDNN's convolutions are NHWC."""
    if requested is not None:
        return bool(requested)
    return device.type == "cpu"


class CompiledWithFallback(nn.Module):
    """``torch.compile(model)`` that falls back to ``model`` itself when compiling fails.

    Compilation happens on the first call; if it raises, a warning names the cause and every
    later call runs eagerly.  Parameters and state are ``model``'s (nothing is copied).
    """

    def __init__(self, model: nn.Module, warn: Callable[[str], None]) -> None:
        super().__init__()
        self.module = model
        self._warn = warn
        try:
            self._compiled = torch.compile(model)
        except Exception as exc:  # torch.compile itself refuses (an old platform)
            self._fallback(exc)

    def _fallback(self, exc: BaseException) -> None:
        cause = " ".join(str(exc).split())[:200] or type(exc).__name__
        self._warn(f"--compile failed ({type(exc).__name__}: {cause}); training without compilation")
        self._compiled = None

    def forward(self, *args, **kwargs):
        if self._compiled is not None:
            try:
                return self._compiled(*args, **kwargs)
            except Exception as exc:  # compile errors surface on the first call
                if not _is_compile_error(exc):
                    raise
                self._fallback(exc)
        return self.module(*args, **kwargs)


def _is_compile_error(exc: BaseException) -> bool:
    """Errors from the compiler stack (dynamo, inductor, a missing C compiler), not from the model."""
    module = type(exc).__module__ or ""
    if module.startswith(("torch._dynamo", "torch._inductor", "torch.fx")):
        return True
    text = str(exc).lower()
    return any(word in text for word in ("compile", "inductor", "dynamo", "triton", "c++", "gcc", "cc1"))
