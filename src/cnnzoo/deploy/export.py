"""ONNX export through the exporter PyTorch defaults to, checked with ONNX Runtime.

The net is captured with :func:`torch.export.export`, the few ATen operators onnxscript's
torchlib cannot translate are decomposed (adaptive max pooling, SPP-net's pyramid), and
``torch.onnx.export(..., dynamo=True)`` translates the graph.  The batch axis is a dynamic
dimension named ``batch`` unless ``dynamic_batch=False``; the example batch is 2, since
torch.export specialises a dimension whose example size is 0 or 1.

The exporter is chatty (progress, warnings, the captured graph when it fails): its output is
held back, and a failure becomes one :class:`ExportError` line that names the step and the
cause.  The file is written atomically and never over an existing one.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import warnings
from pathlib import Path

import torch
from torch import nn

from cnnzoo.errors import CnnzooError, InputSizeError
from cnnzoo.rundir import atomic_write_bytes, new_file

#: the opset the exporter translates to; others go through ONNX's version converter
EXPORTER_OPSET = 18
#: the example batch of a dynamic-batch export (torch.export specialises sizes 0 and 1)
DYNAMIC_EXAMPLE_BATCH = 2


class ExportError(CnnzooError):
    """A model that cannot be exported (or whose export ONNX Runtime cannot run), in one line."""


def export_onnx(model: nn.Module, path: str | os.PathLike, input_size: tuple[int, int, int], *,
                opset: int | None = None, dynamic_batch: bool = True, batch_size: int = 1) -> Path:  # fmt: skip
    """Write ``model`` (in eval mode) as an ONNX file at ``path`` and return the path.

    ``input_size`` is ``(C, H, W)``.  With ``dynamic_batch`` (the default) the graph's batch
    axis is the named dimension ``batch``; otherwise it is fixed at ``batch_size``.  ``opset``
    defaults to the exporter's own (18).  An existing file is refused, and the model's
    training mode is restored afterwards.
    """
    path = new_file(path, "ONNX file")
    if opset is not None and not 7 <= opset <= _onnx_opset_max():
        raise ExportError(f"--opset must be between 7 and {_onnx_opset_max()} (what this onnx knows), got {opset}")
    if batch_size < 1:
        raise ExportError(f"the batch size must be >= 1, got {batch_size}")
    batch = DYNAMIC_EXAMPLE_BATCH if dynamic_batch else batch_size
    example = torch.randn(batch, *input_size, generator=torch.Generator().manual_seed(0))
    dynamic_shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
    was_training = model.training
    model.eval()
    try:
        _check_input(model, example)
        with _quiet():
            captured = _capture(model, example, dynamic_shapes)
            program = torch.onnx.export(captured, (example,), dynamo=True, opset_version=opset,
                                        input_names=["input"], verbose=False)  # fmt: skip
    except torch.onnx.OnnxExporterError as exc:
        raise ExportError(f"cannot export {type(model).__name__} to ONNX: {_cause(exc)}") from None
    finally:
        model.train(was_training)
    proto = program.model_proto
    if dynamic_batch:
        _name_batch_axis(proto)
    written = _default_opset(proto)
    if opset is not None and written != opset:
        # the exporter keeps its own opset, with a logged warning, when ONNX's converter fails
        raise ExportError(f"cannot convert {type(model).__name__}'s graph to opset {opset} "
                          f"(the exporter writes {EXPORTER_OPSET}; try --opset {EXPORTER_OPSET} or above)")  # fmt: skip
    try:
        data = proto.SerializeToString()
    except ValueError as exc:  # protobuf's 2 GB limit; the zoo's largest net is about 0.6 GB
        raise ExportError(f"cannot write {type(model).__name__} as one ONNX file: {exc}") from None
    atomic_write_bytes(path, data)
    return path


def onnxruntime_session(path: str | os.PathLike, threads: int | None = None, *, denormals_as_zero: bool = False,
                        spinning: bool = True):  # fmt: skip
    """An ONNX Runtime CPU session for the file (``threads``: intra-op threads, default ORT's;
    ``denormals_as_zero``: flush denormal floats, as ``cnnzoo bench`` does for torch).

    ``spinning=False`` stops ORT's worker threads from busy-waiting after each run: left on,
    they take the cores from whatever runs next in the process (the eager baseline that
    ``cnnzoo bench`` interleaves, the rest of an evaluation), which made the baseline look up
    to 1.5x slower on the loaded 2-core machine.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    if denormals_as_zero:
        options.add_session_config_entry("session.set_denormal_as_zero", "1")
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ORT raises its own untyped errors (Fail, InvalidGraph, ...)
        raise ExportError(f"ONNX Runtime cannot load {path}: {_first_line(exc)}") from None


def onnx_difference(model: nn.Module, path: str | os.PathLike, input_size: tuple[int, int, int],
                    batch_sizes: tuple[int, ...] = (1, 3)) -> tuple[float, float]:  # fmt: skip
    """The largest absolute and relative difference between ONNX Runtime and eager ``model``.

    Both run random inputs of each batch size in ``batch_sizes``; the relative difference is
    the absolute one divided by the largest eager output.
    """
    session = onnxruntime_session(path)
    name = session.get_inputs()[0].name
    generator = torch.Generator().manual_seed(1)
    was_training = model.training
    model.eval()
    worst_abs = worst_rel = 0.0
    try:
        for batch in batch_sizes:
            x = torch.randn(batch, *input_size, generator=generator)
            with torch.no_grad():
                expected = _tensors(model(x))
            try:
                actual = session.run(None, {name: x.numpy()})
            except Exception as exc:  # noqa: BLE001 - as above
                raise ExportError(f"ONNX Runtime cannot run {path} at batch {batch}: {_first_line(exc)}") from None
            if len(actual) != len(expected):
                raise ExportError(f"{path} gives {len(actual)} outputs, the model {len(expected)}")
            for want, got in zip(expected, actual):
                got = torch.from_numpy(got)
                if got.shape != want.shape:
                    raise ExportError(f"{path} gives shape {tuple(got.shape)} at batch {batch}, the model "
                                      f"{tuple(want.shape)}; export with --static-batch")  # fmt: skip
                diff = float((got - want).abs().max()) if want.numel() else 0.0
                worst_abs = max(worst_abs, diff)
                worst_rel = max(worst_rel, diff / max(float(want.abs().max()), 1e-12) if want.numel() else 0.0)
    finally:
        model.train(was_training)
    return worst_abs, worst_rel


def onnx_batch_axis(path: str | os.PathLike) -> int | str:
    """The ONNX file's input batch dimension: a number if fixed, the dimension's name if dynamic."""
    import onnx

    dim = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim[0]
    return dim.dim_value if dim.HasField("dim_value") else dim.dim_param


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


def _capture(model: nn.Module, example: torch.Tensor, dynamic_shapes) -> torch.export.ExportedProgram:
    """``torch.export`` of the net, with the decompositions ONNX's translation lacks.

    The ONNX exporter would run torch.export itself; it is run here so that the captured
    graph can take :data:`_DECOMPOSITIONS` first.
    """
    try:
        captured = torch.export.export(model, (example,), dynamic_shapes=dynamic_shapes)
    except Exception as exc:  # noqa: BLE001 - torch.export fails in many types (UserError, guard and constraint errors)
        raise ExportError(f"cannot capture {type(model).__name__} with torch.export: {_first_line(exc)}") from None
    return captured.run_decompositions(_DECOMPOSITIONS)


def _adaptive_max_pool2d(x: torch.Tensor, output_size) -> tuple[torch.Tensor, torch.Tensor]:
    """``aten.adaptive_max_pool2d`` as slices and ``amax``, for a static height and width.

    onnxscript's torchlib has no translation for it (ONNX has only global max pooling), and
    SPP-net's pyramid (layers/spp.py) is made of it.  Bin ``i`` of ``n`` over ``a`` pixels spans
    ``[floor(i a / n), ceil((i + 1) a / n))``, PyTorch's definition; the indices are flat
    ``h * W + w`` positions in each plane, as PyTorch returns them.
    """
    height, width = int(x.shape[-2]), int(x.shape[-1])
    out_h, out_w = output_size
    values, indices = [], []
    for i in range(out_h):
        top, bottom = i * height // out_h, -(-(i + 1) * height // out_h)
        row_values, row_indices = [], []
        for j in range(out_w):
            left, right = j * width // out_w, -(-(j + 1) * width // out_w)
            region = x[..., top:bottom, left:right].flatten(-2)
            best, at = region.max(dim=-1)
            row_values.append(best)
            row_indices.append((top + at // (right - left)) * width + left + at % (right - left))
        values.append(torch.stack(row_values, -1))
        indices.append(torch.stack(row_indices, -1))
    return torch.stack(values, -2), torch.stack(indices, -2)


_DECOMPOSITIONS = {torch.ops.aten.adaptive_max_pool2d.default: _adaptive_max_pool2d}


def _check_input(model: nn.Module, example: torch.Tensor) -> None:
    """One eager forward: an input the net cannot take is a one-line error, not the exporter's."""
    size = "x".join(map(str, example.shape[1:]))
    in_chans = getattr(model, "in_chans", None)
    if in_chans is not None and in_chans != example.shape[1]:
        raise InputSizeError(f"{type(model).__name__} was built for {in_chans} input channels, got a {size} input")
    try:
        with torch.no_grad():
            model(example)
    except RuntimeError as exc:  # as cnnzoo.analysis.summary does: the net's own shape error, in one line
        raise InputSizeError(f"{type(model).__name__} cannot take a {size} input: {_first_line(exc)}") from None


def _onnx_opset_max() -> int:
    import onnx

    return onnx.defs.onnx_opset_version()


def _name_batch_axis(proto) -> None:
    """Call the batch dimension ``batch`` (from an ExportedProgram the exporter writes the
    symbol's name, ``s77``), wherever the graph's inputs, outputs and values use it."""
    symbol = proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param
    if not symbol:
        return
    for value in (*proto.graph.input, *proto.graph.output, *proto.graph.value_info):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param == symbol:
                dim.dim_param = "batch"


def _default_opset(proto) -> int:
    return next((entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx")), 0)


def _tensors(output) -> list[torch.Tensor]:
    """A model's output as a list of tensors (a tensor, or a tuple/list/dict of them)."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):
        output = list(output.values())
    return [t for item in output for t in _tensors(item)]


@contextlib.contextmanager
def _quiet():
    """Hold back the exporter's prints, warnings and log records (a failure is reported by us)."""
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):  # fmt: skip
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)  # the exporter colours its messages


def _first_line(exc: BaseException) -> str:
    text = " ".join(_plain(str(exc)).split("\n", 1)[0].split())
    return (text or type(exc).__name__)[:300]


def _cause(exc: BaseException) -> str:
    """The exporter's message names the step; the cause is its "Exception summary" line."""
    text = _plain(str(exc))
    marker = "## Exception summary"
    if marker in text:
        summary = [line for line in text.split(marker, 1)[1].splitlines() if line.strip()]
        if summary:
            return " ".join(summary[0].split())[:300]
    root = exc.__cause__ or exc
    return _first_line(root)
