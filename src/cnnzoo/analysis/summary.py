"""Per-layer analysis: output shape, params, multiply-adds, activation memory, receptive field.

One forward pass of a single image (eval mode, no gradients) is traced twice over:

* module hooks give each layer call its row (name, type, kernel/stride/padding, output
  shape, parameters);
* a :class:`~torch.overrides.TorchFunctionMode` sees every tensor operation, including
  the functional ones inside blocks (``torch.cat`` of an Inception module, the residual
  addition), and attributes it to the layers running at that moment.  It counts

  - multiply-adds of convolutions (also transposed and deformable) and fully connected
    layers, as the papers count them (bias additions excluded);
  - other element operations (batch norm, pooling, activations, additions), listed
    separately and never mixed into the multiply-adds;
  - activations: every tensor an operation creates in new memory.  Operations that
    work in place (``ReLU(inplace=True)``) or return views (flatten, dropout in eval
    mode) create none, which is what a forward pass really stores;
  - the receptive field and effective stride (jump) of every 4-D tensor, propagated
    through the operations: ``r_out = r_in + (k - 1) * dilation * j_in`` and
    ``j_out = j_in * stride`` for convolutions and pooling, the largest of the inputs
    for element-wise operations and concatenation, and "global" after global pooling
    or a fully connected layer.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from cnnzoo.errors import ConfigError, InputSizeError

GLOBAL = "global"

_CONV_OPS = {"conv1d", "conv2d", "conv3d"}
_CONV_TRANSPOSE_OPS = {"conv_transpose1d", "conv_transpose2d", "conv_transpose3d"}
_LINEAR_OPS = {"linear", "addmm", "mm", "matmul", "bmm"}
_POOL_OPS = {"max_pool2d", "avg_pool2d", "max_pool2d_with_indices", "lp_pool2d"}
_ADAPTIVE_POOL_OPS = {"adaptive_avg_pool2d", "adaptive_max_pool2d", "adaptive_max_pool2d_with_indices"}
_NORM_OPS = {"batch_norm", "instance_norm", "layer_norm", "group_norm", "local_response_norm"}


@dataclass
class LayerRow:
    """One layer call (or, with ``depth``, one block with everything inside it)."""

    name: str
    type: str
    depth: int
    output_shape: tuple[int, ...] | None
    kernel: str = ""  # e.g. "3x3/2 p1" for a conv or pool
    params: int = 0
    trainable_params: int = 0
    macs: int = 0
    other_ops: int = 0
    activations: int = 0
    activation_bytes: int = 0
    #: int for square fields, (h, w) otherwise, "global" after global pooling / FC, None if not 2-D
    receptive_field: Any = None
    effective_stride: Any = None

    @property
    def flops(self) -> int:
        return 2 * self.macs


@dataclass
class Summary:
    """Rows and totals of one analysed forward pass (per image)."""

    model_name: str
    input_size: tuple[int, ...]
    rows: list[LayerRow]
    total_params: int
    trainable_params: int
    total_macs: int
    total_other_ops: int
    activation_count: int  # input + every tensor created in new memory
    activation_bytes: int
    param_bytes: int
    buffer_bytes: int
    depth: int | None = None
    #: parameters of layers the traced (eval-mode) forward never ran, e.g. auxiliary heads
    idle_params: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def non_trainable_params(self) -> int:
        return self.total_params - self.trainable_params

    @property
    def total_flops(self) -> int:
        """FLOPs counted as 2 x multiply-adds (the convention of FlopCounterMode)."""
        return 2 * self.total_macs

    def row(self, name: str) -> LayerRow:
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(name)

    # ----------------------------------------------------------------- output
    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "input_size": list(self.input_size),
            "counted": COUNTING_NOTE,
            "totals": {
                "params": self.total_params,
                "trainable_params": self.trainable_params,
                "non_trainable_params": self.non_trainable_params,
                "macs": self.total_macs,
                "flops": self.total_flops,
                "other_ops": self.total_other_ops,
                "activations": self.activation_count,
                "activation_bytes": self.activation_bytes,
                "param_bytes": self.param_bytes,
                "buffer_bytes": self.buffer_bytes,
            },
            "rows": [_row_dict(row) for row in self.rows],
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(_row_dict(self.rows[0]).keys()) if self.rows else [])
        writer.writeheader()
        for row in self.rows:
            writer.writerow(_row_dict(row))
        return buffer.getvalue()

    def _table_rows(self) -> tuple[list[str], list[list[str]]]:
        show_trainable = self.trainable_params != self.total_params
        header = ["layer", "type", "kernel", "output", "params"]
        header += ["trainable"] if show_trainable else []
        header += ["MACs", "activations", "RF", "jump"]
        body = []
        for row in self.rows:
            cells = [
                row.name,
                row.type,
                row.kernel,
                _shape(row.output_shape),
                _human(row.params),
            ]
            cells += [_human(row.trainable_params)] if show_trainable else []
            cells += [_human(row.macs), _human(row.activations), _field(row.receptive_field),
                      _field(row.effective_stride)]
            body.append(cells)
        return header, body

    def totals_lines(self) -> list[str]:
        lines = [
            f"params: {self.total_params:,} ({_human(self.total_params)}); "
            f"trainable {self.trainable_params:,}, non-trainable {self.non_trainable_params:,}",
            f"multiply-adds: {self.total_macs:,} ({_human(self.total_macs)}MACs); "
            f"FLOPs = 2 x MACs = {_human(self.total_flops)}",
            f"other ops (BN, pooling, activations, additions; not in MACs): {_human(self.total_other_ops)}",
            f"forward activations: {self.activation_count:,} values = {_mib(self.activation_bytes)} per image "
            "(input included; in-place ops and views store nothing)",
            f"parameter memory: {_mib(self.param_bytes)} (+ {_mib(self.buffer_bytes)} buffers)",
        ]
        return lines + self.notes

    def to_table(self) -> str:
        header, body = self._table_rows()
        widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(header)]
        left = {0, 1, 2, 3}

        def fmt(cells: list[str]) -> str:
            return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

        rule = "-" * len(fmt(header))
        title = f"{self.model_name}  input {'x'.join(map(str, self.input_size))}"
        out = [title, rule, fmt(header), rule, *(fmt(r) for r in body), rule, *self.totals_lines()]
        out.append(f"counted: {COUNTING_NOTE}")
        return "\n".join(out)

    def to_markdown(self) -> str:
        header, body = self._table_rows()
        out = [f"**{self.model_name}**, input {'x'.join(map(str, self.input_size))}", ""]
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "|".join("---" for _ in header) + "|")
        out += ["| " + " | ".join(c.strip() or " " for c in r) + " |" for r in body]
        out.append("")
        out += [f"- {line}" for line in self.totals_lines()]
        out.append(f"- counted: {COUNTING_NOTE}")
        return "\n".join(out)

    def format(self, fmt: str = "table") -> str:
        formats = {"table": self.to_table, "markdown": self.to_markdown, "csv": self.to_csv, "json": self.to_json}
        if fmt not in formats:
            raise ConfigError(f"unknown format {fmt!r}; choose from {', '.join(formats)}")
        return formats[fmt]()

    def __str__(self) -> str:
        return self.to_table()


COUNTING_NOTE = (
    "MACs are the multiply-adds of convolution and fully connected layers, bias excluded, as the "
    "papers count them; batch norm, pooling, activations and additions are 'other ops'"
)


# --------------------------------------------------------------------------- tracing
@dataclass
class _Call:
    """One module call being traced."""

    name: str
    module: nn.Module
    depth: int
    first_call: bool
    output: Any = None
    own: dict[str, int] = field(default_factory=lambda: dict(macs=0, other_ops=0, activations=0, bytes=0))
    inclusive: dict[str, int] = field(default_factory=lambda: dict(macs=0, other_ops=0, activations=0, bytes=0))


class _Tracer(TorchFunctionMode):
    """Counts ops, activations and receptive fields, attributing them to running modules."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[_Call] = []
        self.fields: dict[int, tuple[Tensor, tuple, tuple]] = {}  # id -> (tensor, rf(h,w), jump(h,w))
        self.storages: set[int] = set()
        self.total = dict(macs=0, other_ops=0, activations=0, bytes=0)

    # receptive-field tags -----------------------------------------------------
    def tag(self, tensor: Tensor, rf: tuple, jump: tuple) -> None:
        self.fields[id(tensor)] = (tensor, rf, jump)

    def field_of(self, tensor: Any) -> tuple | None:
        entry = self.fields.get(id(tensor))
        return (entry[1], entry[2]) if entry is not None and entry[0] is tensor else None

    def _note_storage(self, tensor: Tensor) -> None:
        self.storages.add(tensor.untyped_storage().data_ptr())

    # the hook ------------------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        if name in ("__get__", "__set__", "size", "dim", "numel", "__len__"):
            return result
        inputs = [a for a in _flat(args) + _flat(kwargs.values()) if isinstance(a, Tensor)]
        outputs = [o for o in _flat([result]) if isinstance(o, Tensor)]
        if not outputs:
            return result
        counts = dict(macs=_macs(name, args, kwargs, inputs, outputs), other_ops=0, activations=0, bytes=0)
        counts["other_ops"] = _other_ops(name, args, kwargs, outputs) if not counts["macs"] else 0
        input_storages = {t.untyped_storage().data_ptr() for t in inputs}
        for out in outputs:
            ptr = out.untyped_storage().data_ptr()
            if ptr not in input_storages and ptr not in self.storages:
                counts["activations"] += out.numel()
                counts["bytes"] += out.numel() * out.element_size()
                self.storages.add(ptr)
        for key, value in counts.items():
            self.total[key] += value
            for call in self.stack:
                call.inclusive[key] += value
            if self.stack:
                self.stack[-1].own[key] += value
        self._propagate_field(name, args, kwargs, inputs, outputs)
        return result

    def _propagate_field(self, name, args, kwargs, inputs, outputs) -> None:
        source = [f for f in (self.field_of(t) for t in inputs) if f is not None]
        if not source:
            return
        if name in _LINEAR_OPS or any(f[0] == GLOBAL for f in source):
            for out in outputs:
                self.tag(out, GLOBAL, GLOBAL)
            return
        rf = tuple(max(f[0][i] for f in source) for i in range(2))
        jump = tuple(max(f[1][i] for f in source) for i in range(2))
        main = outputs[0]
        if name in _CONV_OPS and main.dim() == 4:
            weight = args[1] if len(args) > 1 else kwargs["weight"]
            stride, dilation = _pair(_arg(args, kwargs, 3, "stride", 1)), _pair(_arg(args, kwargs, 5, "dilation", 1))
            kernel = tuple(weight.shape[-2:])
            rf, jump = _grow(rf, jump, kernel, stride, dilation)
        elif name == "deform_conv2d":
            # torchvision's operator: (input, weight, offset, mask, bias, stride_h, stride_w,
            # pad_h, pad_w, dilation_h, dilation_w, ...); the receptive field is that of
            # the sampling grid at zero offset
            weight, stride, dilation = args[1], (args[5], args[6]), (args[9], args[10])
            rf, jump = _grow(rf, jump, tuple(weight.shape[-2:]), stride, dilation)
        elif name in _CONV_TRANSPOSE_OPS and main.dim() == 4:
            weight = args[1] if len(args) > 1 else kwargs["weight"]
            stride = _pair(_arg(args, kwargs, 3, "stride", 1))
            kernel = tuple(weight.shape[-2:])
            # an output pixel reads ceil(k / s) input pixels; the grid gets s times finer
            rf = tuple(rf[i] + (math.ceil(kernel[i] / stride[i]) - 1) * jump[i] for i in range(2))
            jump = tuple(jump[i] / stride[i] for i in range(2))
        elif name in _POOL_OPS and main.dim() == 4:
            kernel = _pair(_arg(args, kwargs, 1, "kernel_size", 1))
            stride = _pair(_arg(args, kwargs, 2, "stride", None) or kernel)
            dilation = _pair(_arg(args, kwargs, 4, "dilation", 1)) if name.startswith("max") else (1, 1)
            rf, jump = _grow(rf, jump, kernel, stride, dilation)
        elif name in _ADAPTIVE_POOL_OPS and main.dim() == 4:
            in_hw, out_hw = inputs[0].shape[-2:], main.shape[-2:]
            if tuple(out_hw) == (1, 1):
                rf, jump = GLOBAL, GLOBAL
            else:
                kernel = tuple(math.ceil(in_hw[i] / out_hw[i]) for i in range(2))
                stride = tuple(max(in_hw[i] // out_hw[i], 1) for i in range(2))
                rf, jump = _grow(rf, jump, kernel, stride, (1, 1))
        elif name in ("interpolate", "upsample", "upsample_bilinear", "upsample_nearest") and main.dim() == 4:
            in_hw, out_hw = inputs[0].shape[-2:], main.shape[-2:]
            jump = tuple(jump[i] * in_hw[i] / out_hw[i] for i in range(2))
        for out in outputs:
            self.tag(out, rf, jump)


def _grow(rf, jump, kernel, stride, dilation):
    rf = tuple(rf[i] + (kernel[i] - 1) * dilation[i] * jump[i] for i in range(2))
    jump = tuple(jump[i] * stride[i] for i in range(2))
    return rf, jump


def _macs(name, args, kwargs, inputs, outputs) -> int:
    out = outputs[0]
    batch = out.shape[0] if out.dim() > 1 else 1
    if name in _CONV_OPS or name == "deform_conv2d":
        weight = args[1] if len(args) > 1 else kwargs["weight"]
        # weight: (C_out, C_in / groups, k...): each output value needs C_in/groups * prod(k)
        return out.numel() // batch * math.prod(weight.shape[1:])
    if name in _CONV_TRANSPOSE_OPS:
        x, weight = inputs[0], (args[1] if len(args) > 1 else kwargs["weight"])
        # weight: (C_in, C_out / groups, k...): each input value meets C_out/groups * prod(k)
        return x.numel() // x.shape[0] * math.prod(weight.shape[1:])
    if name == "linear":
        weight = args[1] if len(args) > 1 else kwargs["weight"]
        return out.numel() // batch * weight.shape[1]
    if name in ("addmm", "mm", "matmul", "bmm"):
        matrices = [t for t in inputs if t.dim() >= 2]
        if len(matrices) >= 2:  # (..., M, K) @ (..., K, N): K multiply-adds per output value
            return out.numel() // batch * matrices[-2].shape[-1]
    return 0


def _other_ops(name, args, kwargs, outputs) -> int:
    out = outputs[0]
    per_image = out.numel() // (out.shape[0] if out.dim() > 1 else 1)
    if name in _POOL_OPS:
        return per_image * math.prod(_pair(_arg(args, kwargs, 1, "kernel_size", 1)))
    if name in _ADAPTIVE_POOL_OPS:
        x = args[0]
        return x.numel() // x.shape[0]
    if name in _NORM_OPS:
        return 2 * per_image  # scale and shift once folded into the running statistics
    if name in ("flatten", "view", "reshape", "cat", "concat", "dropout", "contiguous", "transpose",
                "permute", "chunk", "split", "narrow", "__getitem__", "clone", "to", "pad"):
        return 0
    return per_image  # activations and element-wise arithmetic: one op per element


def _flat(values: Iterable) -> list:
    flat = []
    for value in values:
        if isinstance(value, (list, tuple)):
            flat.extend(_flat(value))
        elif isinstance(value, dict):
            flat.extend(_flat(value.values()))
        else:
            flat.append(value)
    return flat


def _arg(args, kwargs, index, key, default):
    if key in kwargs:
        return kwargs[key]
    return args[index] if len(args) > index else default


def _pair(value) -> tuple[int, int]:
    if isinstance(value, (list, tuple)):
        return (value[0], value[0]) if len(value) == 1 else (value[0], value[1])
    return (value, value)


def _first_tensor(output: Any) -> Tensor | None:
    for value in _flat([output]):
        if isinstance(value, Tensor):
            return value
    return None


def _kernel_text(module: nn.Module) -> str:
    kernel = getattr(module, "kernel_size", None)
    if kernel is None:
        return ""
    k = _pair(kernel)
    s = _pair(getattr(module, "stride", None) or kernel)
    p = getattr(module, "padding", 0)
    text = f"{k[0]}x{k[1]}/{s[0] if s[0] == s[1] else f'{s[0]}x{s[1]}'}"
    if isinstance(p, str):
        text += f" {p}"
    elif _pair(p) != (0, 0):
        pp = _pair(p)
        text += f" p{pp[0] if pp[0] == pp[1] else f'{pp[0]}x{pp[1]}'}"
    dilation = _pair(getattr(module, "dilation", 1))
    if dilation != (1, 1):
        text += f" d{dilation[0]}"
    groups = getattr(module, "groups", 1)
    if groups != 1:
        text += f" g{groups}"
    if getattr(module, "ceil_mode", False):
        text += " ceil"
    return text


def _square(value):
    if value is None or value == GLOBAL:
        return value
    h, w = value
    h, w = (int(h) if float(h).is_integer() else h), (int(w) if float(w).is_integer() else w)
    return h if h == w else (h, w)


# --------------------------------------------------------------------------- API
def parse_input_size(text: str | Iterable[int]) -> tuple[int, int, int]:
    """``"3x224x224"`` (or ``"224"``, ``"224x224"`` with 3 channels) -> ``(3, 224, 224)``."""
    if not isinstance(text, str):
        size = tuple(int(v) for v in text)
    else:
        try:
            size = tuple(int(v) for v in text.lower().replace(",", "x").split("x"))
        except ValueError:
            raise ConfigError(f"malformed input size {text!r}; write CxHxW, e.g. 3x224x224") from None
    if len(size) == 1:
        size = (3, size[0], size[0])
    elif len(size) == 2:
        size = (3, *size)
    if len(size) != 3 or min(size) < 1:
        raise ConfigError(f"malformed input size {text!r}; write CxHxW with positive numbers, e.g. 3x224x224")
    return size


def summary(model: nn.Module | str, input_size=None, depth: int | None = None, **model_options) -> Summary:
    """Analyse one forward pass of a single image through ``model``.

    ``model`` is a module or a registered name (built with ``model_options``);
    ``input_size`` is ``(C, H, W)`` or ``"CxHxW"``, defaulting to the registry's.
    ``depth=None`` lists every layer; ``depth=N`` folds everything below depth N
    (``features.0`` is depth 2) into its block's row.
    """
    from cnnzoo.registry import create_model, model_info

    name = model if isinstance(model, str) else getattr(model, "model_name", type(model).__name__)
    info = None
    if isinstance(model, str) or hasattr(model, "model_name"):
        info = model_info(name)
    if input_size is None:
        if info is None:
            raise ConfigError(f"give the input size for {name} (e.g. (3, 224, 224))")
        input_size = info.input_size
    input_size = parse_input_size(input_size)
    if depth is not None and depth < 1:
        raise ConfigError(f"depth must be at least 1, got {depth}")
    if isinstance(model, str):
        model = create_model(name, in_chans=input_size[0], **model_options)
    if info is not None:
        info.check_input_size(input_size[1], input_size[2])
    in_chans = getattr(model, "in_chans", None)
    if in_chans is not None and in_chans != input_size[0]:
        raise InputSizeError(f"{name} was built for {in_chans} input channels, got an input with {input_size[0]}")
    return _trace(model, name, input_size, depth)


def _row(tracer: _Tracer, name: str, label: str, depth: int, module: nn.Module, output: Any,
         params: list[Tensor], stats: dict[str, int]) -> LayerRow:
    out = _first_tensor(output)
    field = tracer.field_of(out) if out is not None else None
    spatial = field is not None and (out.dim() == 4 or field[0] == GLOBAL)
    return LayerRow(
        name=name,
        type=label,
        depth=depth,
        output_shape=tuple(out.shape[1:]) if out is not None else None,
        kernel=_kernel_text(module),
        params=sum(p.numel() for p in params),
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        macs=stats["macs"],
        other_ops=stats["other_ops"],
        activations=stats["activations"],
        activation_bytes=stats["bytes"],
        receptive_field=_square(field[0]) if spatial else None,
        effective_stride=_square(field[1]) if spatial else None,
    )


def _leaf_rows(calls: list[_Call], tracer: _Tracer) -> list[LayerRow]:
    """A row per leaf layer call, plus blocks with parameters or operations of their own
    (a concatenation, a residual addition), labelled "(own ops)"."""
    rows = []
    for call in calls:
        has_children = next(call.module.children(), None) is not None
        own_params = list(call.module.parameters(recurse=False))
        if has_children and not own_params and not any(call.own.values()):
            continue
        params = own_params if has_children else list(call.module.parameters())
        label = type(call.module).__name__ + (" (own ops)" if has_children else "")
        rows.append(_row(tracer, call.name, label, call.depth, call.module, call.output,
                         params if call.first_call else [], call.own))
    return rows


def _block_rows(model: nn.Module, calls: list[_Call], tracer: _Tracer, depth: int) -> list[LayerRow]:
    """One row per module at ``depth`` (and per shallower leaf), everything inside summed.

    Grouping is by name, not by call, because a block may be run piecewise (VGG's head
    runs ``classifier[:-1]`` and then ``classifier[-1]``).
    """
    groups: dict[str, list[_Call]] = {}
    for call in calls:
        if call.depth < depth and next(call.module.children(), None) is not None:
            continue  # a shallower block: its children's rows stand for it
        key = ".".join(call.name.split(".")[:depth])
        groups.setdefault(key, []).append(call)
    rows = []
    for key, members in groups.items():
        module = model.get_submodule(key)
        whole = [c for c in members if c.name == key]
        stats = dict(macs=0, other_ops=0, activations=0, bytes=0)
        for call in whole or members:  # a whole call already includes its children
            for k in stats:
                stats[k] += (call.inclusive if whole else call.own)[k]
        output = (whole or members)[-1].output
        first = (whole or members)[0].first_call
        rows.append(_row(tracer, key, type(module).__name__, key.count(".") + 1, module, output,
                         list(module.parameters()) if first else [], stats))
    return rows


def _trace(model: nn.Module, name: str, input_size: tuple[int, int, int], depth: int | None) -> Summary:
    tracer = _Tracer()
    calls: list[_Call] = []
    seen: set[int] = set()
    names = {id(m): n for n, m in model.named_modules()}
    handles = []

    def pre_hook(module, _inputs):
        module_name = names.get(id(module), "")
        call = _Call(module_name, module, module_name.count(".") + 1 if module_name else 0, id(module) not in seen)
        seen.add(id(module))
        tracer.stack.append(call)
        calls.append(call)

    def post_hook(module, _inputs, output):
        call = tracer.stack.pop()
        call.output = output

    for module in model.modules():
        handles.append(module.register_forward_pre_hook(pre_hook))
        handles.append(module.register_forward_hook(post_hook))
    was_training = model.training
    try:
        parameter = next(model.parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
        x = torch.randn(1, *input_size, device=device)
        model.eval()
        with torch.no_grad(), tracer:
            tracer.tag(x, (1, 1), (1, 1))
            tracer._note_storage(x)
            model(x)
    except RuntimeError as exc:
        message = str(exc).strip().splitlines()[0]
        raise InputSizeError(f"{name} cannot take a {'x'.join(map(str, input_size))} input: {message}") from None
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()

    rows = [LayerRow(name="input", type="Input", depth=0, output_shape=tuple(input_size),
                     activations=math.prod(input_size), activation_bytes=4 * math.prod(input_size),
                     receptive_field=1, effective_stride=1)]
    rows += _leaf_rows(calls[1:], tracer) if depth is None else _block_rows(model, calls[1:], tracer, depth)
    parameters = list(model.parameters())
    input_count = math.prod(input_size)
    ran = {id(call.module) for call in calls}
    idle = {id(p): p for m in model.modules() if id(m) not in ran for p in m.parameters(recurse=False)}
    notes = []
    if idle:
        count = sum(p.numel() for p in idle.values())
        notes.append(f"{count:,} of the params are in layers that did not run in eval mode "
                     "(e.g. auxiliary classifiers); they are in the totals, not in any row")
    return Summary(
        model_name=name,
        input_size=tuple(input_size),
        rows=rows,
        total_params=sum(p.numel() for p in parameters),
        trainable_params=sum(p.numel() for p in parameters if p.requires_grad),
        total_macs=tracer.total["macs"],
        total_other_ops=tracer.total["other_ops"],
        activation_count=input_count + tracer.total["activations"],
        activation_bytes=4 * input_count + tracer.total["bytes"],
        param_bytes=sum(p.numel() * p.element_size() for p in parameters),
        buffer_bytes=sum(b.numel() * b.element_size() for b in model.buffers()),
        depth=depth,
        idle_params=sum(p.numel() for p in idle.values()),
        notes=notes,
    )


# --------------------------------------------------------------------------- formatting
def _human(value: float) -> str:
    if value == 0:
        return "0"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{unit}"
    return str(int(value))


def _mib(num_bytes: int) -> str:
    return f"{num_bytes / 2**20:.2f} MiB"


def _shape(shape) -> str:
    return "x".join(map(str, shape)) if shape else ""


def _field(value) -> str:
    if value is None:
        return ""
    if isinstance(value, tuple):
        return "x".join(f"{v:g}" for v in value)
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


def _row_dict(row: LayerRow) -> dict[str, Any]:
    data = asdict(row)
    data["output_shape"] = _shape(row.output_shape)
    data["receptive_field"] = _field(row.receptive_field)
    data["effective_stride"] = _field(row.effective_stride)
    data["flops"] = row.flops
    return data
