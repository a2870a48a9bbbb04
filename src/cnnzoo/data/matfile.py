"""A minimal reader for MATLAB level-5 ``.mat`` files holding numeric arrays.

The Oxford flower data sets describe their labels and splits in such files (``imagelabels.mat``,
``setid.mat``, ``datasplits.mat``).  scipy reads them too (``scipy.io.loadmat``) and is used when
installed; this reader covers what those files need without the dependency.

Format (MathWorks, "MAT-File Format", level 5): a 128-byte header (text, subsystem offset,
version, the endian indicator ``IM``/``MI``), then data elements, each an 8-byte tag (type,
byte count) followed by the data padded to 8 bytes, or a "small" element packing a count of at
most 4 bytes into the tag.  A ``miCOMPRESSED`` element is a zlib stream holding one element; a
``miMATRIX`` holds array flags, dimensions, the name and the real part (column-major).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

MI_MATRIX, MI_COMPRESSED = 14, 15
_NUMERIC = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8", 13: "u8"}
_NUMERIC_CLASSES = set(range(6, 16))  # mxDOUBLE_CLASS .. mxUINT64_CLASS


class MatFileError(ValueError):
    """Not a level-5 MAT file, or one this reader cannot follow."""


def _elements(buf: bytes, endian: str):
    """Yield ``(type, payload)`` for each data element in ``buf``."""
    pos = 0
    while pos + 8 <= len(buf):
        first, second = struct.unpack_from(endian + "II", buf, pos)
        if first >> 16:  # small data element: count in the upper half, data in the second word
            mtype, nbytes = first & 0xFFFF, first >> 16
            yield mtype, buf[pos + 4 : pos + 4 + nbytes]
            pos += 8
            continue
        mtype, nbytes = first, second
        payload = buf[pos + 8 : pos + 8 + nbytes]
        if len(payload) < nbytes:
            raise MatFileError("truncated data element")
        yield mtype, payload
        pos += 8 + (nbytes if mtype == MI_COMPRESSED else (nbytes + 7) // 8 * 8)


def _matrix(payload: bytes, endian: str) -> tuple[str, np.ndarray | None]:
    parts = list(_elements(payload, endian))
    if len(parts) < 3:
        raise MatFileError("malformed matrix element")
    flags = struct.unpack_from(endian + "I", parts[0][1])[0]
    mclass = flags & 0xFF
    name = parts[2][1].decode("latin-1")
    if mclass not in _NUMERIC_CLASSES or len(parts) < 4:
        return name, None  # cells, structs, strings: not needed here
    dims = np.frombuffer(parts[1][1], dtype=endian + "i4")
    dtype_code, data = parts[3]
    if dtype_code not in _NUMERIC:
        raise MatFileError(f"unsupported numeric type {dtype_code} in {name!r}")
    values = np.frombuffer(data, dtype=endian + _NUMERIC[dtype_code])
    if values.size != int(np.prod(dims)):
        raise MatFileError(f"array {name!r}: {values.size} values for dimensions {tuple(dims)}")
    return name, values.reshape(tuple(dims), order="F")


def loadmat(path: str | Path) -> dict[str, np.ndarray]:
    """The numeric arrays of a level-5 MAT file, by variable name (scipy's ``loadmat`` if installed)."""
    try:
        import scipy.io

        raw = scipy.io.loadmat(str(path))
        return {k: np.asarray(v) for k, v in raw.items() if not k.startswith("__")}
    except ImportError:
        pass
    except Exception as e:  # noqa: BLE001 - scipy's own errors: report in our terms
        raise MatFileError(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    data = Path(path).read_bytes()
    if len(data) < 128:
        raise MatFileError("shorter than the 128-byte MAT header")
    indicator = data[126:128]
    if indicator == b"IM":
        endian = "<"
    elif indicator == b"MI":
        endian = ">"
    else:
        raise MatFileError("not a level-5 MAT file (no endian indicator); v7.3 (HDF5) files need h5py")
    out: dict[str, np.ndarray] = {}
    for mtype, payload in _elements(data[128:], endian):
        if mtype == MI_COMPRESSED:
            try:
                inner = zlib.decompress(payload)
            except zlib.error as e:
                raise MatFileError(f"corrupt compressed element: {e}") from None
            elements = list(_elements(inner, endian))
        else:
            elements = [(mtype, payload)]
        for t, p in elements:
            if t == MI_MATRIX:
                name, array = _matrix(p, endian)
                if array is not None:
                    out[name] = array
    return out
