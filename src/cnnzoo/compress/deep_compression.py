"""Deep Compression (Han, Mao & Dally, ICLR 2016): prune, share weights, Huffman-code.

``cnnzoo deep-compress RUN --out DIR`` runs the paper's three stages on a trained run and writes
a new run directory (the source run is only read):

1. **Pruning** (Section 2): in every convolution and fully connected layer the smallest-magnitude
   weights are removed (the paper's per-layer shares for its own models, Tables 1-2, else
   ``--prune-ratio`` in every layer), then the net is retrained with the masks kept.  The masks
   are a :class:`KeepMasks` callback that zeroes the pruned weights again after every optimizer
   step: the checkpoint stays an ordinary state dict (``load_run`` needs no transform, ``summary``
   and ``export`` see ordinary layers) and there is no second copy of the weights, as
   ``torch.nn.utils.prune``'s ``weight_orig`` would be.  Sub-run ``DIR/prune``.
2. **Trained quantization** (Section 3): k-means per layer into ``2^--bits-conv`` (8 in the paper)
   or ``2^--bits-fc`` (5) shared values, centroids fine-tuned through a parametrization whose
   parameter is the codebook (:mod:`cnnzoo.compress.weight_sharing`).  Sub-run ``DIR/share``.
   A centroid's gradient sums its cluster's (Eq. 3), so this retraining's lr defaults to the
   pruning's divided by the largest layer's mean cluster size (``--share-lr`` sets it).
3. **Huffman coding** (Section 4) of the cluster indices and of the sparse index differences
   (:mod:`cnnzoo.compress.huffman`) into ``DIR/model.dcz``.

Both retrainings are :func:`cnnzoo.train.engine.fit` with the source run's data and settings
(every ``cnnzoo train`` flag overrides them; ``--epochs`` is each retraining's length, ``--lr``
defaults to a tenth of the source's: the net is fine-tuned, not trained anew).

The sparse structure (Section 2, Figure 2): the layer's weights are read in the order of the
flattened tensor and each kept weight stores the distance from the previous one in
``index_bits`` bits (8 for convolutions, 5 for fully connected layers, the paper's widths); a gap
beyond ``2^index_bits`` is bridged by filler entries of the largest gap whose weight is a filler
symbol of its own (the paper's "filler zero"; it does not take one of the ``2^bits`` centroids).

The file ``model.dcz``: 8 magic bytes, the header's length (4 bytes, little-endian), the header
(zlib-compressed JSON: every state-dict entry's name, shape and byte counts, the payload's length
and CRC-32), then the payload.  Shared layers store their float32 codebook, the two code tables
(4-bit code lengths) and the two bit streams; every other tensor (biases, batch norm, LeNet's
subsampling coefficients) is stored plainly.  :func:`decode_model` checks all of it: a truncated
or corrupt file is a one-line :class:`CompressedFileError`.

The result ``DIR`` is a run directory: its ``best`` checkpoint holds the dense weights decoded
from ``DIR/model.dcz`` (decoded from the written file, and equal to the fine-tuned shared weights
bit for bit), so ``load_run``, ``cnnzoo eval``, ``summary``, ``bench`` and ``export`` take it.
``--resume --out DIR`` continues an interrupted compression: a finished stage is reused, an
interrupted one resumes from its last checkpoint, and the encoding (cheap, deterministic) is redone;
on a finished compression it decodes ``model.dcz`` again and checks it against the run's model.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from cnnzoo.compress import huffman
from cnnzoo.compress.weight_sharing import codebook_of, share_weights, shared_layers
from cnnzoo.errors import CnnzooError, ConfigError
from cnnzoo.modelspec import spec_of
from cnnzoo.rundir import RUN_FILE, RESULTS_FILE, RunDir, check_same_settings, default_path, writable_file
from cnnzoo.train.trainer import Callback

__all__ = [
    "PAPER_TABLES", "CompressedFileError", "DeepCompressionResult", "KeepMasks", "LayerReport", "decode_model",
    "deep_compress", "deep_compress_command", "encode_model", "format_table", "prunable_layers",
]  # fmt: skip

#: the paper's sparse-index widths (Section 2): "8 bits for conv layer and 5 bits for fc layer"
INDEX_BITS_CONV, INDEX_BITS_FC = 8, 5

#: ``--prune-ratio``'s default for models the paper does not list
DEFAULT_PRUNE_RATIO = 0.9

#: the retrainings' learning rate, as a share of the source run's (unless --lr is given)
RETRAIN_LR_FACTOR = 0.1

MAGIC = b"CNNZDCZ1"
FORMAT = "cnnzoo-dcz-1"
_STAGES = ("prune", "share")

#: the source run's settings the retrainings keep (what it learned on, and how)
INHERITED_KEYS = (
    "data", "data_dir", "download", "val_fraction", "limit_train", "limit_val", "skip_bad_images", "input_size",
    "crop_padding", "flip", "random_erasing", "batch_size", "optimizer", "momentum", "nesterov", "weight_decay",
    "no_decay_norm_bias", "rmsprop_decay", "eps", "betas", "label_smoothing", "aux_weight", "grad_clip",
    "tta_flip", "seed", "amp", "channels_last",
)  # fmt: skip


@dataclass(frozen=True)
class PaperTable:
    """A model's per-layer figures in Han et al. 2016: the share of weights kept after pruning."""

    source: str
    kept: dict[str, float]  # module name -> share kept
    labels: dict[str, str]  # module name -> the paper's layer name
    compression: float  # the paper's total compression rate (P+Q+H)


#: the paper's own models (registered as ``lenet_300_100``, ``lenet5_caffe`` and ``alexnet``)
PAPER_TABLES: dict[str, PaperTable] = {
    "lenet_300_100": PaperTable(
        "Han et al. 2016, Table 1", kept={"ip1": 0.08, "ip2": 0.09, "ip3": 0.26},
        labels={"ip1": "ip1", "ip2": "ip2", "ip3": "ip3"}, compression=40.0,
    ),
    "lenet5_caffe": PaperTable(
        "Han et al. 2016, Table 2", kept={"features.conv1": 0.66, "features.conv2": 0.12, "ip1": 0.08, "ip2": 0.19},
        labels={"features.conv1": "conv1", "features.conv2": "conv2", "ip1": "ip1", "ip2": "ip2"}, compression=39.0,
    ),
    # Table 4's shares (Han, Pool et al. 2015, Table 2) for Caffe's two-tower AlexNet, applied layer by
    # layer to the one-tower net of torchvision's layout (64-192-384-256-256 kernels): the shares are
    # the paper's, the layer sizes are not
    "alexnet": PaperTable(
        "Han et al. 2016, Table 4",
        kept={"features.0": 0.84, "features.3": 0.38, "features.6": 0.35, "features.8": 0.37, "features.10": 0.37,
              "classifier.1": 0.09, "classifier.4": 0.09, "classifier.6": 0.25},
        labels={"features.0": "conv1", "features.3": "conv2", "features.6": "conv3", "features.8": "conv4",
                "features.10": "conv5", "classifier.1": "fc6", "classifier.4": "fc7", "classifier.6": "fc8"},
        compression=35.0,
    ),
}  # fmt: skip


class CompressedFileError(CnnzooError):
    """A compressed model file that is truncated, corrupt or of another format."""


# ------------------------------------------------------------------------------------------
# stage 1: magnitude pruning, masks kept while retraining
# ------------------------------------------------------------------------------------------


def prunable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The convolutions and fully connected layers (the layers of the paper's tables), by module name."""
    return {name: module for name, module in model.named_modules()
            if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)) and module.weight.dim() >= 2}  # fmt: skip


def is_fully_connected(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear)


def parse_prune_ratio(value: float | str | None) -> tuple[float | None, dict[str, float]]:
    """``0.9`` or ``"0.9,features.0=0.5,f6=0.95"``: the ratio of every layer, and per-layer exceptions.

    A layer takes the exception of the longest name that is it or one of its parents
    (``features.4`` covers LeNet-5's sixteen C3 maps ``features.4.maps.*``).
    """
    if value is None or isinstance(value, (int, float)):
        return (None if value is None else float(value)), {}
    default, exceptions = None, {}
    for part in str(value).split(","):
        name, sep, number = part.strip().rpartition("=")
        try:
            ratio = float(number)
        except ValueError:
            raise ConfigError(f"--prune-ratio: cannot read {part.strip()!r}; write R or R,LAYER=R,...") from None
        if sep:
            exceptions[name.strip()] = ratio
        else:
            default = ratio
    return default, exceptions


def kept_shares(model_name: str, layers: dict[str, nn.Module], prune_ratio: float | str | None) -> dict[str, float]:
    """The share of weights each layer keeps: the paper's where it lists the model, else ``1 - prune_ratio``."""
    default, exceptions = parse_prune_ratio(prune_ratio)
    table = PAPER_TABLES.get(model_name)
    if default is None and not exceptions and table is not None and set(table.kept) == set(layers):
        return dict(table.kept)
    ratio = DEFAULT_PRUNE_RATIO if default is None else default
    unknown = [name for name in exceptions if not any(n == name or n.startswith(name + ".") for n in layers)]
    if unknown:
        raise ConfigError(f"--prune-ratio: {model_name} has no layer {unknown[0]!r} (layers: {', '.join(layers)})")
    shares = {}
    for name in layers:
        covering = [p for p in exceptions if name == p or name.startswith(p + ".")]
        layer_ratio = exceptions[max(covering, key=len)] if covering else ratio
        if not 0.0 <= layer_ratio < 1.0:
            raise ConfigError(f"--prune-ratio must be in [0, 1), got {layer_ratio}")
        shares[name] = 1.0 - layer_ratio
    return shares


def magnitude_prune(layers: dict[str, nn.Module], kept: dict[str, float]) -> None:
    """Zero all but the largest-magnitude ``kept[name]`` share of each layer's weights (at least one)."""
    with torch.no_grad():
        for name, module in layers.items():
            weight = module.weight
            keep = max(1, round(kept[name] * weight.numel()))
            if keep >= weight.numel():
                continue
            # the keep-th largest magnitude is the threshold; ties at it broken by position (exact count)
            order = torch.argsort(weight.abs().reshape(-1), descending=True, stable=True)
            mask = torch.zeros(weight.numel(), dtype=torch.bool, device=weight.device)
            mask[order[:keep]] = True
            weight.masked_fill_(~mask.reshape(weight.shape), 0.0)


class KeepMasks(Callback):
    """Retraining with the masks kept (Section 2): pruned weights are zeroed again after every step.

    The masks are read from the weights when training starts (after a resumed checkpoint is
    loaded: the callback runs after the checkpoint callback): pruning left those exactly zero.
    """

    def __init__(self, layer_names: list[str]) -> None:
        self.layer_names = list(layer_names)
        self.masks: dict[str, torch.Tensor] = {}

    def on_fit_start(self, trainer) -> None:
        from cnnzoo.train.checkpoint import unwrap

        model = unwrap(trainer.model)
        self.weights = {name: model.get_submodule(name).weight for name in self.layer_names}
        self.masks = {name: weight.detach() != 0 for name, weight in self.weights.items()}

    def on_step_end(self, trainer, batch: int, loss: float) -> None:
        with torch.no_grad():
            for name, weight in self.weights.items():
                weight.masked_fill_(~self.masks[name], 0.0)


# ------------------------------------------------------------------------------------------
# stage 3: the compressed file
# ------------------------------------------------------------------------------------------

_DTYPES = {str(t).removeprefix("torch."): t for t in (torch.float32, torch.float16, torch.bfloat16, torch.float64,
                                                     torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8,
                                                     torch.bool)}  # fmt: skip


@dataclass
class LayerReport:
    """One row of the per-layer table (the columns of the paper's Tables 1-5)."""

    name: str
    kind: str  # "conv", "fc", or "plain" (stored as it is)
    weights: int
    kept: int
    bits: int = 0  # the codebook's index bits: at most 2^bits shared values
    clusters: int = 0
    index_bits: int = 0
    weight_stream_bytes: int = 0
    index_stream_bytes: int = 0
    stored_bytes: int = 0  # everything the layer takes in the file
    paper_kept: float | None = None

    @property
    def fp32_bytes(self) -> int:
        return 4 * self.weights

    @property
    def ratio(self) -> float:
        return self.fp32_bytes / self.stored_bytes if self.stored_bytes else math.inf

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fp32_bytes": self.fp32_bytes, "ratio": self.ratio}


def _sparse_entries(indices: np.ndarray, mask: np.ndarray, clusters: int, index_bits: int):
    """Section 2's relative indices: ``(symbols, gap_codes)`` with filler entries where a gap is too long.

    Entry ``i`` lies ``gap_codes[i] + 1`` positions after the previous one (the first after position
    -1); a filler (symbol ``clusters``) bridges ``2^index_bits`` positions and holds no weight.
    """
    positions = np.flatnonzero(mask)
    gaps = np.diff(positions, prepend=-1)
    bound = 1 << index_bits
    fillers = (gaps - 1) // bound
    ends = np.cumsum(fillers + 1) - 1
    total = int(ends[-1]) + 1 if len(ends) else 0
    symbols = np.full(total, clusters, dtype=np.int64)
    gap_codes = np.full(total, bound - 1, dtype=np.int64)
    symbols[ends] = indices[positions]
    gap_codes[ends] = gaps - fillers * bound - 1
    return symbols, gap_codes


def encode_model(model: nn.Module, bits: dict[str, int] | None = None) -> tuple[bytes, list[LayerReport]]:
    """``model`` (its shared layers parametrized by stage 2) as ``model.dcz`` bytes, and the per-layer table.

    Every entry of the model's plain state dict is in the file: a shared layer's weight as
    codebook + Huffman-coded indices and gaps, everything else as its raw bytes.  ``bits`` (module
    name -> the bits asked for) labels the table; by default the bits the codebook needs.
    """
    shared = shared_layers(model)
    plain_state = dense_state_dict(model)
    name = getattr(spec_of(model), "name", None)
    paper = PAPER_TABLES.get(name or "")
    entries, parts, reports = [], [], []
    for key, tensor in plain_state.items():
        module_name = key.removesuffix(".weight")
        if key.endswith(".weight") and module_name in shared:
            module = shared[module_name]
            codebook, indices, mask = codebook_of(module)
            fc = is_fully_connected(module)
            index_bits = INDEX_BITS_FC if fc else INDEX_BITS_CONV
            clusters = len(codebook)
            symbols, gap_codes = _sparse_entries(indices.reshape(-1).cpu().numpy(), mask.reshape(-1).cpu().numpy(),
                                                 clusters, index_bits)  # fmt: skip
            symbol_lengths = huffman.code_lengths(np.bincount(symbols, minlength=clusters + 1))
            gap_lengths = huffman.code_lengths(np.bincount(gap_codes, minlength=1 << index_bits))
            blobs = [codebook.to(torch.float32).cpu().numpy().astype("<f4").tobytes(),
                     huffman.pack_lengths(symbol_lengths), huffman.encode(symbols, symbol_lengths),
                     huffman.pack_lengths(gap_lengths), huffman.encode(gap_codes, gap_lengths)]  # fmt: skip
            layer_bits = (bits or {}).get(module_name) or max(1, math.ceil(math.log2(clusters)))
            entries.append({"name": key, "shape": list(tensor.shape), "clusters": clusters,
                            "index_bits": index_bits, "kept": int(mask.sum()), "entries": int(len(symbols)),
                            "parts": [len(b) for b in blobs]})  # fmt: skip
            parts += blobs
            reports.append(LayerReport(
                key.removesuffix(".weight"), "fc" if fc else "conv", tensor.numel(), int(mask.sum()), layer_bits, clusters,
                index_bits, len(blobs[2]), len(blobs[4]), sum(len(b) for b in blobs),
                paper.kept.get(module_name) if paper else None,
            ))  # fmt: skip
        else:
            blob = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
            entries.append({"name": key, "shape": list(tensor.shape), "dtype": str(tensor.dtype).removeprefix("torch."),
                            "parts": [len(blob)]})  # fmt: skip
            parts.append(blob)
    payload = b"".join(parts)
    header = zlib.compress(json.dumps({"format": FORMAT, "payload_bytes": len(payload),
                                       "payload_crc32": zlib.crc32(payload), "tensors": entries},
                                      separators=(",", ":")).encode(), 9)  # fmt: skip
    plain_entries = [e for e in entries if "dtype" in e]
    plain_bytes = sum(e["parts"][0] for e in plain_entries)
    reports.append(LayerReport(f"plain tensors ({len(plain_entries)})", "plain",
                               sum(math.prod(e["shape"]) for e in plain_entries if e["dtype"] == "float32"),
                               0, stored_bytes=plain_bytes))  # fmt: skip
    reports.append(LayerReport("header", "plain", 0, 0, stored_bytes=len(MAGIC) + 4 + len(header)))
    return MAGIC + struct.pack("<I", len(header)) + header + payload, reports


def dense_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model``'s state dict with every shared layer's weight as the dense tensor it computes."""
    from torch.nn.utils import parametrize

    shared = shared_layers(model)
    state = {}
    for key, value in model.state_dict().items():
        module_name, _, rest = key.partition(".parametrizations.weight.")
        if rest and module_name in shared:
            if rest == "original":
                with torch.no_grad(), parametrize.cached():
                    state[f"{module_name}.weight"] = shared[module_name].weight.detach().clone()
            continue  # the indices and mask are in the dense weight
        state[key] = value
    return state


def decode_model(source: str | Path | bytes) -> dict[str, torch.Tensor]:
    """The dense state dict stored in a ``model.dcz`` file (a path or its bytes), every part checked."""
    where = "compressed data" if isinstance(source, (bytes, bytearray)) else str(source)
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise CompressedFileError(f"cannot read compressed model {source}: {exc.strerror or exc}") from None

    def bad(what: str) -> CompressedFileError:
        return CompressedFileError(f"{where}: {what}")

    if len(data) < len(MAGIC) + 4:
        raise bad("truncated (no header)" if data[: len(MAGIC)] == MAGIC[: len(data)] else "not a cnnzoo compressed model")
    if data[: len(MAGIC)] != MAGIC:
        raise bad("not a cnnzoo compressed model (wrong magic bytes)")
    (header_length,) = struct.unpack("<I", data[len(MAGIC) : len(MAGIC) + 4])
    start = len(MAGIC) + 4 + header_length
    if start > len(data):
        raise bad(f"truncated ({len(data)} bytes; its header alone takes {start})")
    try:
        header = json.loads(zlib.decompress(data[len(MAGIC) + 4 : start]))
        tensors, payload_bytes, crc = header["tensors"], int(header["payload_bytes"]), int(header["payload_crc32"])
    except (zlib.error, ValueError, KeyError, TypeError):
        raise bad("corrupt header") from None
    if header.get("format") != FORMAT:
        raise bad(f"format {header.get('format')!r}, not {FORMAT}")
    payload = data[start:]
    if len(payload) < payload_bytes:
        raise bad(f"truncated ({len(data)} bytes of {start + payload_bytes})")
    if len(payload) > payload_bytes:
        raise bad(f"corrupt ({len(payload) - payload_bytes} bytes after the end of its data)")
    if zlib.crc32(payload) != crc:
        raise bad("corrupt (checksum mismatch)")
    state: dict[str, torch.Tensor] = {}
    offset = 0
    try:
        for entry in tensors:
            sizes = [int(n) for n in entry["parts"]]
            blobs = []
            for size in sizes:
                blobs.append(payload[offset : offset + size])
                offset += size
            if offset > len(payload):
                raise bad("corrupt (its parts run past its data)")
            shape = [int(n) for n in entry["shape"]]
            name = str(entry["name"])
            if "dtype" in entry:
                state[name] = _plain_tensor(blobs[0], entry["dtype"], shape, bad, name)
            else:
                state[name] = _shared_tensor(blobs, entry, shape, bad, name)
    except huffman.HuffmanError as exc:
        raise bad(f"corrupt ({exc})") from None
    except (KeyError, TypeError, ValueError):
        raise bad("corrupt header (a malformed tensor entry)") from None
    if offset != len(payload):
        raise bad("corrupt (its parts do not add up to its data)")
    return state


def _plain_tensor(blob: bytes, dtype_name: str, shape: list[int], bad, name: str) -> torch.Tensor:
    dtype = _DTYPES.get(dtype_name)
    if dtype is None:
        raise bad(f"corrupt ({name}: unknown dtype {dtype_name!r})")
    itemsize = torch.empty((), dtype=dtype).element_size()
    if len(blob) != itemsize * math.prod(shape):
        raise bad(f"corrupt ({name}: {len(blob)} bytes for shape {shape})")
    if not blob:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(bytearray(blob), dtype=dtype).reshape(shape).clone()


def _shared_tensor(blobs: list[bytes], entry: dict, shape: list[int], bad, name: str) -> torch.Tensor:
    clusters, index_bits = int(entry["clusters"]), int(entry["index_bits"])
    kept, count = int(entry["kept"]), int(entry["entries"])
    if len(blobs) != 5 or clusters < 1 or not 1 <= index_bits <= 16 or len(blobs[0]) != 4 * clusters:
        raise bad(f"corrupt ({name}: malformed shared-weight entry)")
    codebook = np.frombuffer(blobs[0], dtype="<f4")
    symbols = huffman.decode(blobs[2], huffman.unpack_lengths(blobs[1], clusters + 1, f"{name}'s index code"), count,
                             f"{name}'s weight indices")  # fmt: skip
    gaps = huffman.decode(blobs[4], huffman.unpack_lengths(blobs[3], 1 << index_bits, f"{name}'s gap code"), count,
                          f"{name}'s index differences") + 1  # fmt: skip
    positions = np.cumsum(gaps) - 1
    real = symbols < clusters
    size = math.prod(shape)
    if int(real.sum()) != kept or (count and positions[-1] >= size) or (count and not real[-1]):
        raise bad(f"corrupt ({name}: its sparse structure does not fit shape {shape})")
    dense = np.zeros(size, dtype=np.float32)
    dense[positions[real]] = codebook[symbols[real]]
    return torch.from_numpy(dense).reshape(shape)


def format_table(reports: list[LayerReport], fp32_total: int, paper: PaperTable | None = None) -> str:
    """The per-layer table in the shape of the paper's Tables 1-5, a total line and ``compression: N.Nx``."""
    header = ["layer", "#weights", "kept %", "paper %", "bits", "w bits (H)", "idx bits", "idx bits (H)",
              "stored B", "ratio"]  # fmt: skip
    if paper is None:
        header.remove("paper %")
    rows = []
    for r in reports:
        label = paper.labels.get(r.name, r.name) if paper else r.name
        if r.kind == "plain":
            cells = [label, f"{r.weights:,}" if r.weights else "", "", "", "", "", "", "", f"{r.stored_bytes:,}", ""]
        else:
            bits_h = 8 * r.weight_stream_bytes / r.kept if r.kept else 0.0
            idx_h = 8 * r.index_stream_bytes / r.kept if r.kept else 0.0
            paper_cell = f"{100 * r.paper_kept:.0f}" if r.paper_kept is not None else ""
            cells = [label, f"{r.weights:,}", f"{100 * r.kept / r.weights:.1f}", paper_cell, f"{r.bits}",
                     f"{bits_h:.1f}", f"{r.index_bits}", f"{idx_h:.1f}", f"{r.stored_bytes:,}", f"{r.ratio:.1f}x"]  # fmt: skip
        if paper is None:
            del cells[3]
        rows.append(cells)
    layers = [r for r in reports if r.kind != "plain"]
    weights = sum(r.weights for r in layers)
    kept = sum(r.kept for r in layers)
    stored = sum(r.stored_bytes for r in reports)
    total = ["total", f"{weights:,}", f"{100 * kept / weights:.1f}" if weights else "", "", "", "", "", "",
             f"{stored:,}", f"{fp32_total / stored:.1f}x"]  # fmt: skip
    if paper is None:
        del total[3]
    else:
        total[3] = f"{paper.compression:.0f}x"
    widths = [max(len(str(row[i])) for row in [header, *rows, total]) for i in range(len(header))]

    def line(cells):
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    rule = "-" * len(line(header))
    text = [line(header), rule, *map(line, rows), rule, line(total)]
    if paper is not None:
        text.append(f"(paper %: weights kept in {paper.source}; its total compression in the total line)")
    text.append(f"compression: {fp32_total / stored:.1f}x ({stored:,} bytes stored, fp32 safetensors {fp32_total:,})")
    return "\n".join(text)


def fp32_safetensors_bytes(state: dict[str, torch.Tensor]) -> int:
    """The size of ``state`` as an fp32 safetensors file (floating tensors as float32)."""
    from safetensors.torch import save

    tensors = {k: (v.to(torch.float32) if v.is_floating_point() else v).detach().cpu().contiguous().clone()
               for k, v in state.items()}  # fmt: skip
    return len(save(tensors))


# ------------------------------------------------------------------------------------------
# the pipeline
# ------------------------------------------------------------------------------------------


@dataclass
class DeepCompressionResult:
    run_dir: Path
    status: str  # "completed", or a stage's "stopped"/"interrupted"
    layers: list[LayerReport] = field(default_factory=list)
    stored_bytes: int = 0
    fp32_bytes: int = 0
    test_top1_before: float | None = None
    test_top1_after: float | None = None
    exit_code: int = 0

    @property
    def compression(self) -> float:
        return self.fp32_bytes / self.stored_bytes if self.stored_bytes else math.nan


def deep_compress(
    source: str | Path,
    *,
    prune_ratio: float | str | None = None,
    bits_conv: int = 8,
    bits_fc: int = 5,
    share_epochs: int | None = None,
    share_lr: float | None = None,
    recipe: str | None = None,
    verbose: bool = True,
    log: Callable[[str], None] | None = None,
    **overrides,
) -> DeepCompressionResult:
    """Deep-compress the trained run ``source`` into a new run directory (``out=``); see the module docstring.

    Every other keyword is a training configuration key for both retrainings, as for
    :func:`cnnzoo.train.fit` (``epochs``, ``lr``, ``out``, ``resume``, ...); ``share_epochs`` and
    ``share_lr`` set the weight-sharing retraining's apart (a centroid's gradient is the sum of
    its cluster's, about 117,000 weights in AlexNet's fc6: its lr defaults to the
    pruning's divided by the largest layer's mean cluster size).
    """
    from cnnzoo.train import checkpoint as ckpt
    from cnnzoo.train.config import read_config, to_dict
    from cnnzoo.train.runs import evaluate_run, load_run

    printer = log or (lambda text: print(text, flush=True))
    say = printer if verbose else (lambda text: None)
    for flag, value in (("--share-epochs", share_epochs), ("--share-lr", share_lr)):
        if value is not None and not value > 0:
            raise ConfigError(f"{flag} must be positive, got {value}")
    for flag, bits in (("--bits-conv", bits_conv), ("--bits-fc", bits_fc)):
        if not isinstance(bits, int) or not 1 <= bits <= 14:
            raise ConfigError(f"{flag} must be an integer from 1 to 14, got {bits}")
    if overrides.get("model_kwargs"):
        raise ConfigError("-o does not apply to deep-compress: the architecture is the source run's")
    overrides.pop("model_kwargs", None)
    out, resume = overrides.pop("out", None), bool(overrides.pop("resume", False))

    source_dir = Path(source)
    src = load_run(source_dir, device="cpu")
    from cnnzoo.quantization import refuse_quantized

    refuse_quantized(src.model, "cnnzoo deep-compress")
    spec = spec_of(src.model)
    model_name = spec.name if spec else str(src.meta.get("model"))
    layers = prunable_layers(src.model)
    if not layers:
        raise ConfigError(f"{source_dir}: the model has no convolution or fully connected layer to compress")
    kept = kept_shares(model_name, layers, prune_ratio)
    bits = {name: bits_fc if is_fully_connected(module) else bits_conv for name, module in layers.items()}
    settings = {"source": str(source_dir.resolve()), "kept": kept, "bits": bits}

    run = RunDir.open(out if out is not None else default_path(model_name, "deep-compress"), "deep-compress",
                      resume=resume)  # fmt: skip
    if resume:
        saved = (run.record or {}).get("deep_compression", {})
        check_same_settings({k: saved.get(k) for k in settings}, settings, f"--resume: the compression in {run}")
        if run.finished:
            return _check_finished(run, say)
    stage_overrides = {key: getattr(src.config, key) for key in INHERITED_KEYS}
    stage_overrides["lr"] = src.config.lr * RETRAIN_LR_FACTOR
    stage_overrides["input_size"] = list(src.meta["input_size"])  # what it ran at (a null in config.yaml: chosen)
    stage_overrides.update(overrides)
    record = {k: v for k, v in src.meta.items() if k not in ("kind", "format")}
    record["deep_compression"] = settings
    run.start(record)
    say(f"deep compression of {source_dir} ({model_name}) into {run}")
    try:
        # stage 1: prune, retrain with the masks kept
        model = src.model.train()
        magnitude_prune(prunable_layers(model), kept)
        result = _train_stage(model, run / "prune", "deep-compress-prune", [KeepMasks(list(layers))],
                              recipe, stage_overrides, resume, verbose, log, say)  # fmt: skip
        if result is not None and result.status != "completed":
            return _stopped(run, result, "pruning", say)
        # stage 2: k-means weight sharing per layer, centroids fine-tuned
        model = load_run(run / "prune", device="cpu").model.train()
        sizes, largest_cluster = {}, 1.0
        for name, module in prunable_layers(model).items():
            sharing = share_weights(module, bits[name])
            sizes[name] = len(module.parametrizations.weight.original)
            largest_cluster = max(largest_cluster, int(sharing.mask.sum()) / sizes[name])
        model.model_spec = spec.then("shared_weights", layers=sizes)
        share_overrides = dict(stage_overrides)
        if share_epochs is not None:
            share_overrides["epochs"] = share_epochs
        # Section 3.3: a centroid's gradient is the sum of its cluster's (Eq. 3), about 117,000
        # weights in AlexNet's fc6, so the pruning's lr moves it that many times as far as one
        # weight: the net collapsed to chance (docs/results.md).  Dividing by the largest layer's
        # mean cluster size moves no centroid further than the pruning moved a weight.
        share_overrides["lr"] = share_lr if share_lr is not None else share_overrides["lr"] / largest_cluster
        say(f"weight sharing: {largest_cluster:,.0f} weights per cluster in the largest layer, "
            f"lr {share_overrides['lr']:.3g}")  # fmt: skip
        result = _train_stage(model, run / "share", "deep-compress-share", [], recipe, share_overrides, resume,
                              verbose, log, say)  # fmt: skip
        if result is not None and result.status != "completed":
            return _stopped(run, result, "weight sharing", say)
    except BaseException:
        if not any((run / stage / "last.state.pt").is_file() for stage in _STAGES):
            run.abandon()  # nothing worth keeping: leave no folder behind
        raise

    # stage 3: Huffman coding; the run's model is what the written file decodes to
    shared = load_run(run / "share", device="cpu").model
    data, reports = encode_model(shared, bits)
    run.write_bytes("model.dcz", data)
    state = decode_model(run / "model.dcz")
    decoded = spec.build()
    ckpt.load_model_weights(decoded, state, str(run / "model.dcz"))
    share_config = read_config(run / "share" / "config.yaml")
    ckpt.save_checkpoint(run.path, "best", decoded, {"epoch": 0, "config": to_dict(share_config), "meta": record})
    run.write_bytes("config.yaml", (run / "share" / "config.yaml").read_bytes())

    fp32_total = fp32_safetensors_bytes(state)
    table = format_table(reports, fp32_total, PAPER_TABLES.get(model_name))
    run.write_text("compression.txt", table + "\n")
    writable_file(run / "confusion-source.png", "confusion matrix image")
    before = evaluate_run(source_dir, confusion_png=str(run / "confusion-source.png"), device="cpu")
    after = evaluate_run(run.path, device="cpu")
    result = DeepCompressionResult(run.path, "completed", reports, sum(r.stored_bytes for r in reports), fp32_total,
                                   before.top1, after.top1)  # fmt: skip
    say(table)
    say(f"test top-1: {100 * before.top1:.2f}% before, {100 * after.top1:.2f}% after "
        f"({100 * (after.top1 - before.top1):+.2f} points); compressed model: {run / 'model.dcz'}")  # fmt: skip
    run.write_json(RESULTS_FILE, {"compression": result.compression, "stored_bytes": result.stored_bytes,
                                  "fp32_safetensors_bytes": fp32_total, "test_top1_before": before.top1,
                                  "test_top1": after.top1, "layers": [r.to_dict() for r in reports]})  # fmt: skip
    return result


def _train_stage(model, folder: Path, kind: str, callbacks, recipe, overrides, resuming: bool, verbose, log, say):
    """One retraining in sub-run ``folder``; None when a resumed compression finds it finished."""
    from cnnzoo.train.config import RESUME_FREE_KEYS, read_config, to_dict
    from cnnzoo.train.engine import fit

    if resuming and (folder / RESULTS_FILE).is_file():
        saved = to_dict(read_config(folder / "config.yaml"))
        wanted = {k: v for k, v in overrides.items() if k not in RESUME_FREE_KEYS}
        check_same_settings(saved, wanted, f"--resume: the finished stage {folder}", advice="start a new compression")
        say(f"{kind}: reusing the finished stage {folder}")
        return None
    return fit(model, recipe=recipe, verbose=verbose, log=log, callbacks=callbacks, kind=kind,
               record={"deep_compression_stage": kind}, out=str(folder),
               resume=resuming and (folder / RUN_FILE).is_file(), **overrides)  # fmt: skip


def _check_finished(run: RunDir, say) -> DeepCompressionResult:
    """``--resume`` of a finished compression: decode its file again and check it against the run's model."""
    from cnnzoo.train import checkpoint as ckpt

    state = decode_model(run / "model.dcz")
    tensors, _ = ckpt.load_checkpoint(run.path, "best")
    if set(tensors) != set(state) or not all(torch.equal(tensors[k], state[k]) for k in state):
        raise CompressedFileError(f"{run / 'model.dcz'} does not decode to the run's model (best.safetensors)")
    results = run.read_json(RESULTS_FILE)
    say((run / "compression.txt").read_text().rstrip())
    say(f"{run} is finished; {run / 'model.dcz'} decodes to its model")
    return DeepCompressionResult(run.path, "completed", [], int(results["stored_bytes"]),
                                 int(results["fp32_safetensors_bytes"]), results.get("test_top1_before"),
                                 results.get("test_top1"))  # fmt: skip


def _stopped(run: RunDir, result, stage: str, say) -> DeepCompressionResult:
    say(f"{stage} {result.status}: continue the compression with --resume --out {run}")
    return DeepCompressionResult(run.path, result.status, exit_code=result.exit_code)


def deep_compress_command(args) -> int:
    """The handler of ``cnnzoo deep-compress`` (the parser is in :mod:`cnnzoo.compress.commands`)."""
    from cnnzoo.train.commands import train_overrides

    result = deep_compress(args.source, prune_ratio=args.prune_ratio, bits_conv=args.bits_conv, bits_fc=args.bits_fc,
                           share_epochs=args.share_epochs, share_lr=args.share_lr, recipe=args.recipe,
                           **train_overrides(args))  # fmt: skip
    return result.exit_code
