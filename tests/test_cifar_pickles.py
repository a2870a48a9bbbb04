"""CIFAR's pickles are read by a restricted unpickler: real batches load, crafted ones run nothing."""

from __future__ import annotations

import builtins
import io
import os
import pickle
import struct

import numpy as np
import pytest
import torch

from cnnzoo.data import DataError, load_dataset
from cnnzoo.data.cifar import CifarUnpickler, _unpickle
from test_data import make_cifar10, no_system_data  # noqa: F401 - the autouse fixture applies here too

CLASSES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]


class Python2Pickler(pickle._Pickler):
    """Protocol 2 as Python 2's cPickle wrote the official files: ``str`` as (SHORT_)BINSTRING opcodes
    (read back as bytes with ``encoding="bytes"``), numpy's module spelled ``numpy.core``."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj):
        data = obj.encode("latin-1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str

    def save_global(self, obj, name=None):
        module, name = obj.__module__, name or obj.__name__
        if module.startswith("numpy._core"):
            module = "numpy.core" + module[len("numpy._core") :]
        self.write(pickle.GLOBAL + f"{module}\n{name}\n".encode())
        self.memoize(obj)

    dispatch[type] = save_global


def python2_dumps(obj) -> bytes:
    f = io.BytesIO()
    Python2Pickler(f, protocol=2).dump(obj)
    return f.getvalue()


WRITERS = {
    "python2-protocol2": python2_dumps,  # the official files
    "protocol2": lambda obj: pickle.dumps(obj, protocol=2),  # bytes via _codecs.encode
    "protocol4": lambda obj: pickle.dumps(obj, protocol=4),
    "protocol5": lambda obj: pickle.dumps(obj, protocol=5),  # arrays via numpy's _frombuffer
}


def write_official_cifar10(directory, dumps, per_batch=4, seed=0):
    """A tiny cifar-10-batches-py with every entry the official files hold (Python ints, byte strings)."""
    rng = np.random.default_rng(seed)
    folder = directory / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        d = {
            b"batch_label": f"training batch {i + 1} of 5".encode() if i < 5 else b"testing batch 1 of 1",
            b"labels": [int(v) for v in rng.integers(0, 10, per_batch)],
            b"data": rng.integers(0, 256, (per_batch, 3072)).astype(np.uint8),
            b"filenames": [f"img_{i}_{k}.png".encode() for k in range(per_batch)],
        }
        batches[name] = d
        (folder / name).write_bytes(dumps(d))
    meta = {b"num_cases_per_batch": per_batch, b"label_names": CLASSES, b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(dumps(meta))
    return folder, batches


@pytest.mark.filterwarnings("error::DeprecationWarning")  # numpy.core is resolved without numpy 2's warning
@pytest.mark.parametrize("writer", list(WRITERS))
def test_official_format_loads(tmp_path, writer):
    folder, batches = write_official_cifar10(tmp_path, WRITERS[writer])
    b = load_dataset("cifar10", data_dir=tmp_path, download=False, val_fraction=0.0)
    assert b.source == str(folder) and b.classes == [c.decode() for c in CLASSES]
    assert len(b.train) == 20 and len(b.test) == 4
    for k, row in enumerate(batches["test_batch"][b"data"]):
        assert torch.equal(b.test.images[k], torch.from_numpy(row.reshape(3, 32, 32)))
    assert b.test.labels.tolist() == batches["test_batch"][b"labels"]


def test_python2_pickle_names_numpy_core(tmp_path):
    """The imitation of the official files is faithful: numpy.core globals, no _codecs, bytes strings."""
    data = python2_dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [1]})
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in data and b"_codecs" not in data
    (tmp_path / "b").write_bytes(data)
    d = _unpickle(tmp_path / "b")
    assert d["data"].shape == (1, 3072) and d["labels"] == [1]


class RunsShell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class RunsEval:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (builtins.eval, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


ATTACKS = [(RunsShell, f"{os.system.__module__}.system"), (RunsEval, "builtins.eval")]  # os.system is posix.system


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
@pytest.mark.parametrize("attack, refused", ATTACKS)
@pytest.mark.parametrize("victim", ["data_batch_1", "test_batch", "batches.meta"])
def test_crafted_batch_runs_nothing(tmp_path, attack, refused, protocol, victim):
    folder, _ = make_cifar10(tmp_path)
    marker = tmp_path / "marker"
    payload = {b"data": np.zeros((6, 3072), np.uint8), b"labels": [0] * 6, b"x": attack(marker)}
    (folder / victim).write_bytes(pickle.dumps(payload, protocol=protocol))
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", data_dir=tmp_path, download=False)
    msg = str(e.value)
    assert not marker.exists()
    assert "\n" not in msg
    assert msg == f"{folder / victim} is not a CIFAR batch: it references {refused}, which a CIFAR batch never holds"


def test_other_numpy_globals_and_codecs_are_refused(tmp_path):
    path = tmp_path / "data_batch_1"
    # a numpy function that is not part of rebuilding an array
    path.write_bytes(b"\x80\x02cnumpy\nload\nq\x00X\x01\x00\x00\x00xq\x01\x85q\x02Rq\x03.")
    with pytest.raises(DataError, match=r"references numpy\.load, which a CIFAR batch never holds"):
        _unpickle(path)
    # _codecs.encode only as protocol 2 uses it (latin-1 text -> bytes)
    path.write_bytes(b"\x80\x02c_codecs\nencode\nq\x00X\x03\x00\x00\x00abcX\x05\x00\x00\x00rot13\x86q\x01R.")
    with pytest.raises(DataError, match=r"_codecs\.encode with 'rot13'"):
        _unpickle(path)
    path.write_bytes(b"\x80\x02c_codecs\nencode\nq\x00X\x03\x00\x00\x00abcX\x06\x00\x00\x00latin1\x86q\x01R.")
    assert CifarUnpickler(open(path, "rb"), path).load() == b"abc"
    # persistent ids are not resolved either
    path.write_bytes(b"\x80\x02X\x01\x00\x00\x00xQ.")
    with pytest.raises(DataError, match="persistent reference"):
        _unpickle(path)
