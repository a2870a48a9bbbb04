"""The bit-packed file of a quantized net: ``weights.qpack``.

Each quantized layer is stored as its codes, 1 or 2 bits a weight (``numpy.packbits``), and
its codebook (the float32 values the codes stand for: per filter for XNOR-Net, BWN and two-bit,
per layer for BinaryConnect, TWN and TTQ); every other tensor of the deployed net (biases,
batch norm, the layers kept in full precision) is stored as it is.  The layout::

    b"CNNZQPK1"                magic and version
    uint64 little-endian       length of the header
    header                     UTF-8 JSON: the model spec, the scheme, each tensor's place
    payload                    the tensors' bytes, one after the other

The header records the payload's length and CRC-32, so a truncated or damaged file is a
one-line :class:`QPackError`, never a wrong net.  :func:`load_qpack` rebuilds the net from the
spec (the quantize transform included) and loads the decoded weights into its deployed form:
it computes what the trained quantized net computes.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from cnnzoo.errors import CnnzooError

MAGIC = b"CNNZQPK1"
FORMAT = "cnnzoo-qpack-1"


class QPackError(CnnzooError):
    """A packed-weights file that is missing, truncated, damaged or of another format."""


# ------------------------------------------------------------------------------------------
# codes <-> bits
# ------------------------------------------------------------------------------------------


def pack_codes(codes: np.ndarray, bits: int) -> bytes:
    """Integer codes ``0 .. 2**bits - 1``, most significant bit first, ``bits`` bits each."""
    shifts = np.arange(bits - 1, -1, -1, dtype=np.uint8)
    planes = (codes.astype(np.uint8).reshape(-1, 1) >> shifts) & 1
    return np.packbits(planes.reshape(-1)).tobytes()


def unpack_codes(data: bytes, count: int, bits: int) -> np.ndarray:
    """The inverse of :func:`pack_codes`: ``count`` codes."""
    planes = np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=count * bits).reshape(count, bits)
    weights = (1 << np.arange(bits - 1, -1, -1)).astype(np.int64)
    return planes.astype(np.int64) @ weights


def encode_layer(weight: Tensor, codebook: Tensor) -> np.ndarray:
    """Each deployed weight's index in its filter's codebook; a weight not in it is a bug, so it raises."""
    rows = weight.reshape(weight.shape[0], -1)
    book = codebook if codebook.shape[0] == rows.shape[0] else codebook.expand(rows.shape[0], -1)
    matches = rows.unsqueeze(-1) == book.unsqueeze(1)  # (filters, weights, levels)
    if not bool(matches.any(-1).all()):
        raise RuntimeError("a deployed weight is not one of its quantizer's values")
    return matches.to(torch.uint8).argmax(-1).reshape(-1).cpu().numpy()


def decode_layer(codes: np.ndarray, codebook: Tensor, shape: tuple[int, ...]) -> Tensor:
    book = codebook.expand(shape[0], -1) if codebook.shape[0] == 1 else codebook
    index = torch.from_numpy(codes.astype(np.int64)).reshape(shape[0], -1)
    return torch.gather(book, 1, index).reshape(shape)


def _raw(tensor: Tensor) -> bytes:
    return tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def _from_raw(data: bytes, dtype: str, shape: list[int]) -> Tensor:
    kind = getattr(torch, dtype, None)
    if not isinstance(kind, torch.dtype):
        raise QPackError(f"unknown tensor type {dtype!r}")
    flat = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.empty(0, dtype=torch.uint8)
    return flat.view(kind).reshape(shape).clone()


# ------------------------------------------------------------------------------------------
# the file
# ------------------------------------------------------------------------------------------


@dataclass
class PackReport:
    """What :func:`write_qpack` wrote and how it compares with fp32."""

    path: Path
    packed_bytes: int
    fp32_bytes: int
    quantized_weights: int
    quantized_fp32_bytes: int
    quantized_packed_bytes: int
    bits: int

    @property
    def ratio(self) -> float:
        return self.fp32_bytes / self.packed_bytes

    @property
    def layer_ratio(self) -> float:
        return self.quantized_fp32_bytes / max(1, self.quantized_packed_bytes)

    def describe(self) -> str:
        return (f"wrote {self.path}: {self.packed_bytes / 1e3:.1f} kB, {self.ratio:.1f}x smaller than the fp32 "
                f"safetensors ({self.fp32_bytes / 1e3:.1f} kB); the quantized layers' {self.quantized_weights} "
                f"weights {self.layer_ratio:.1f}x ({self.bits} bit{'s' if self.bits > 1 else ''} a weight "
                "plus scales), the full-precision layers as they are")  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {"packed_bytes": self.packed_bytes, "fp32_safetensors_bytes": self.fp32_bytes, "ratio": self.ratio,
                "quantized_weights": self.quantized_weights, "quantized_layers_ratio": self.layer_ratio,
                "bits": self.bits}  # fmt: skip


def pack_model(model: nn.Module) -> tuple[bytes, dict[str, int]]:
    """The packed bytes of a quantized net (parametrized, as trained) and the sizes behind the report."""
    from cnnzoo.modelspec import spec_of
    from cnnzoo.quantization.transform import QuantizedModel, deployed

    if not isinstance(model, QuantizedModel) or spec_of(model) is None:
        raise QPackError("only a quantized net built from a model spec can be packed")
    plain = deployed(model).cpu()
    state = plain.state_dict()
    chunks: list[bytes] = []
    offset = 0
    entries: list[dict[str, Any]] = []
    sizes = {"quantized_weights": 0, "quantized_packed_bytes": 0}

    def add(blob: bytes) -> dict[str, int]:
        nonlocal offset
        chunks.append(blob)
        place = {"offset": offset, "nbytes": len(blob)}
        offset += len(blob)
        return place

    quantized: dict[str, str] = {}
    with torch.no_grad():
        for name, layer in model.quantized_layers().items():
            path = model._quantized_paths[name]
            key = f"{path}.weight"
            quantizer = layer.parametrizations.weight[0]
            codebook = quantizer.codebook(layer.parametrizations.weight.original).detach().cpu().float()
            weight = state[key]
            codes = encode_layer(weight, codebook)
            code_place = add(pack_codes(codes, quantizer.bits))
            book_place = add(_raw(codebook))
            entries.append({"key": key, "layer": name, "kind": "codes", "shape": list(weight.shape),
                            "bits": quantizer.bits, "codes": code_place,
                            "codebook": {**book_place, "shape": list(codebook.shape)}})  # fmt: skip
            quantized[key] = name
            sizes["quantized_weights"] += weight.numel()
            sizes["quantized_packed_bytes"] += code_place["nbytes"] + book_place["nbytes"]
    for key, tensor in state.items():
        if key in quantized:
            continue
        entries.append({"key": key, "kind": "raw", "dtype": str(tensor.dtype).removeprefix("torch."),
                        "shape": list(tensor.shape), **add(_raw(tensor))})  # fmt: skip
    payload = b"".join(chunks)
    header = {"format": FORMAT, "spec": spec_of(model).to_dict(), "quantization": model.quantization,
              "payload_bytes": len(payload), "payload_crc32": zlib.crc32(payload), "tensors": entries}  # fmt: skip
    head = json.dumps(header, separators=(",", ":")).encode()
    sizes["fp32_bytes_of_quantized"] = 4 * sizes["quantized_weights"]
    return MAGIC + struct.pack("<Q", len(head)) + head + payload, sizes


def write_qpack(model: nn.Module, path) -> PackReport:
    """Pack ``model`` into ``path`` (atomically; an existing file is refused) and compare with fp32."""
    from cnnzoo.quantization.transform import deployed
    from cnnzoo.rundir import atomic_write_bytes, new_file
    from cnnzoo.train.checkpoint import weights_to_bytes

    path = new_file(path, "packed weights")
    data, sizes = pack_model(model)
    atomic_write_bytes(path, data)
    fp32 = len(weights_to_bytes({k: v.float() if v.is_floating_point() else v
                                 for k, v in deployed(model).state_dict().items()}, {}))  # fmt: skip
    return PackReport(path=path, packed_bytes=len(data), fp32_bytes=fp32, quantized_weights=sizes["quantized_weights"],
                      quantized_fp32_bytes=sizes["fp32_bytes_of_quantized"],
                      quantized_packed_bytes=sizes["quantized_packed_bytes"], bits=int(model.quantization["bits"]))


def read_qpack(path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """The header and the deployed state dict of a packed file; a bad file is a one-line :class:`QPackError`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise QPackError(f"packed weights {path} not found") from None
    except OSError as exc:
        raise QPackError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return _decode(data)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:  # a header that parses but does not fit
        raise QPackError(f"{path} is not a usable packed-weights file: damaged header ({type(exc).__name__})") from None
    except QPackError as exc:
        raise QPackError(f"{path} is not a usable packed-weights file: {exc}") from None


def _decode(data: bytes) -> tuple[dict[str, Any], dict[str, Tensor]]:
    if data[: len(MAGIC)] != MAGIC:
        raise QPackError("it does not start with the cnnzoo qpack signature")
    start = len(MAGIC) + 8
    if len(data) < start:
        raise QPackError("truncated in its header")
    (head_len,) = struct.unpack("<Q", data[len(MAGIC) : start])
    if len(data) < start + head_len:
        raise QPackError("truncated in its header")
    try:
        header = json.loads(data[start : start + head_len].decode())
    except (UnicodeDecodeError, ValueError):
        raise QPackError("its header is damaged") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise QPackError(f"its format is {header.get('format') if isinstance(header, dict) else None!r}, not {FORMAT}")
    payload = data[start + head_len :]
    if len(payload) != header.get("payload_bytes"):
        raise QPackError(f"truncated: {len(payload)} of {header.get('payload_bytes')} payload bytes")
    if zlib.crc32(payload) != header.get("payload_crc32"):
        raise QPackError("its payload is damaged (CRC-32 mismatch)")
    state: dict[str, Tensor] = {}
    for entry in header["tensors"]:
        if entry["kind"] == "codes":
            shape = tuple(entry["shape"])
            count = int(np.prod(shape))
            book_place = entry["codebook"]
            codebook = _from_raw(_slice(payload, book_place), "float32", book_place["shape"])
            codes = unpack_codes(_slice(payload, entry["codes"]), count, int(entry["bits"]))
            if codes.size and int(codes.max()) >= codebook.shape[1]:
                raise QPackError(f"{entry['key']} has a code beyond its codebook")
            state[entry["key"]] = decode_layer(codes, codebook, shape)
        else:
            state[entry["key"]] = _from_raw(_slice(payload, entry), entry["dtype"], entry["shape"])
    return header, state


def _slice(payload: bytes, place: dict[str, int]) -> bytes:
    begin, size = int(place["offset"]), int(place["nbytes"])
    if begin < 0 or size < 0 or begin + size > len(payload):
        raise QPackError("a tensor lies outside the payload")
    return payload[begin : begin + size]


def load_qpack(path) -> nn.Module:
    """The deployed net of a packed file, in eval mode (weights decoded from their codes)."""
    from cnnzoo.modelspec import ModelSpec
    from cnnzoo.quantization.transform import deployed
    from cnnzoo.train.checkpoint import load_model_weights

    header, state = read_qpack(path)
    model = deployed(ModelSpec.from_dict(header["spec"]).build())
    load_model_weights(model, state, f"packed weights {path}")
    return model.eval()
