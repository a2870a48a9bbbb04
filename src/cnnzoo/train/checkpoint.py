"""Checkpoints that survive a kill at any moment.

A checkpoint ``TAG`` (``last`` or ``best``) in a run directory is two files:

* ``TAG.safetensors``: the model's weights and buffers (the ``state_dict``), readable
  by any safetensors tool without running pickle;
* ``TAG.state.pt``: everything else needed to continue exactly (optimizer, schedule,
  RNG states, epoch, step, history, configuration), made only of tensors and plain
  Python values so that ``torch.load(path, weights_only=True)`` reads it.

Each file is written to a temporary file in the same directory, flushed to disk and
moved over the old one with ``os.replace`` (atomic on POSIX): a kill leaves either
the old or the new file, never a half-written one.  Both files carry the same random
``checkpoint_id``; a pair from two different saves (a kill between the two renames)
is reported as incomplete instead of being silently mixed.
"""

from __future__ import annotations

import io
import random
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnzoo.errors import CnnzooError
from cnnzoo.rundir import atomic_write_bytes  # noqa: F401 - one copy, in the run directory module

WEIGHTS_SUFFIX = ".safetensors"
STATE_SUFFIX = ".state.pt"


class CheckpointError(CnnzooError):
    """A checkpoint that is missing, corrupt or incomplete."""


def weights_to_bytes(state_dict: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    from safetensors.torch import save

    tensors = {}
    for key, value in state_dict.items():
        tensor = value.detach().cpu()
        # safetensors refuses shared storage (tied weights): give each entry its own copy
        tensors[key] = tensor.clone().contiguous()
    return save(tensors, metadata=metadata)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside DistributedDataParallel and torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def rng_states() -> dict[str, Any]:
    """Every random generator training touches, in a weights_only-loadable form."""
    np_state = np.random.get_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": _to_lists(random.getstate()),
        "numpy": {
            "kind": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    random.setstate(_to_tuples(states["python"]))
    np_state = states["numpy"]
    np.random.set_state(
        (
            np_state["kind"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    if "cuda" in states and torch.cuda.is_available():
        cuda_states = states["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


def _to_lists(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_to_lists(v) for v in value]
    return value


def _to_tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_to_tuples(v) for v in value)
    return value


def paths(run_dir: Path, tag: str) -> tuple[Path, Path]:
    run_dir = Path(run_dir)
    return run_dir / f"{tag}{WEIGHTS_SUFFIX}", run_dir / f"{tag}{STATE_SUFFIX}"


def save_checkpoint(run_dir: Path, tag: str, model: nn.Module, state: dict[str, Any]) -> Path:
    """Write ``TAG.safetensors`` and ``TAG.state.pt`` atomically; returns the weights path."""
    weights_path, state_path = paths(run_dir, tag)
    checkpoint_id = uuid.uuid4().hex
    metadata = {"checkpoint_id": checkpoint_id, "format": "cnnzoo-1"}
    if "epoch" in state:
        metadata["epoch"] = str(state["epoch"])
    weights = weights_to_bytes(unwrap(model).state_dict(), metadata)
    buffer = io.BytesIO()
    torch.save({**state, "checkpoint_id": checkpoint_id, "format": "cnnzoo-1"}, buffer)
    # state first, weights second: both renames are atomic, and the shared id catches a
    # kill between them
    atomic_write_bytes(state_path, buffer.getvalue())
    atomic_write_bytes(weights_path, weights)
    return weights_path


def load_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file; a damaged file is a :class:`CheckpointError`."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint weights {path} not found")
    try:
        tensors = {}
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            for key in handle.keys():
                tensors[key] = handle.get_tensor(key)
    except Exception as exc:  # safetensors raises several error types for damaged files
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({_short(exc)})") from None
    return tensors, metadata


def load_state(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint state {path} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip errors of a damaged file
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({_short(exc)})") from None
    if not isinstance(state, dict) or state.get("format") != "cnnzoo-1":
        raise CheckpointError(f"{path} is not a cnnzoo checkpoint state file")
    return state


def load_checkpoint(run_dir: Path, tag: str = "last") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The weights and state of checkpoint ``tag``, checked to come from the same save."""
    weights_path, state_path = paths(run_dir, tag)
    if not weights_path.exists() and not state_path.exists():
        raise CheckpointError(f"no checkpoint {tag!r} in {run_dir}")
    tensors, metadata = load_weights(weights_path)
    state = load_state(state_path)
    if metadata.get("checkpoint_id") != state.get("checkpoint_id"):
        raise CheckpointError(
            f"checkpoint {tag!r} in {run_dir} is incomplete: {weights_path.name} and "
            f"{state_path.name} come from different saves"
        )
    return tensors, state


def load_model_weights(model: nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Load a checkpoint's tensors into ``model`` strictly, as a one-line error on mismatch."""
    target = unwrap(model)
    own = target.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:3])}{' ...' if len(unexpected) > 3 else ''}")
        raise CheckpointError(f"{source} does not fit this model: {'; '.join(parts)}")
    for key, value in tensors.items():
        if own[key].shape != value.shape:
            raise CheckpointError(
                f"{source} does not fit this model: {key} has shape {tuple(value.shape)}, "
                f"the model {tuple(own[key].shape)}"
            )
    target.load_state_dict(tensors, strict=True)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) < 120 else text[:117] + "..."
