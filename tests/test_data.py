"""Data sets in their official formats: tiny files written to tmp_path and read back; error messages."""

from __future__ import annotations

import gzip
import pickle
import struct
import zlib

import numpy as np
import pytest
import torch

from cnnzoo.data import DataError, load_dataset
from cnnzoo.data import base as data_base
from cnnzoo.data.idx import FASHION_MNIST_CLASSES, read_idx
from cnnzoo.errors import CnnzooError


@pytest.fixture(autouse=True)
def no_system_data(monkeypatch, tmp_path):
    """Keep the machine's real data sets and caches out of these tests."""
    monkeypatch.setattr(data_base, "SYSTEM_DATA_DIRS", [tmp_path / "system"])
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("CNNZOO_DATA_DIR", raising=False)


# ----------------------------------------------------------------------------------- writers


def write_idx(path, array: np.ndarray, compress: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as f:
            f.write(raw)
    else:
        path.write_bytes(raw)


def make_idx_set(directory, n_train=40, n_test=20, compress=True, seed=0):
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": np.arange(n_test) % 10,
    }
    for stem, array in arrays.items():
        write_idx(directory / stem, array, compress)
    return arrays


def make_cifar10(directory, per_batch=6, seed=0):
    rng = np.random.default_rng(seed)
    folder = directory / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        d = {
            b"data": rng.integers(0, 256, (per_batch, 3072)).astype(np.uint8),
            b"labels": list(rng.integers(0, 10, per_batch)),
        }
        batches[name] = d
        (folder / name).write_bytes(pickle.dumps(d))
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}))
    return folder, batches


# ----------------------------------------------------------------------------------- idx


@pytest.mark.parametrize("compress", [True, False])
def test_fashion_mnist_idx_roundtrip(tmp_path, compress):
    arrays = make_idx_set(tmp_path / "fm", compress=compress)
    b = load_dataset("fashion-mnist", data_dir=tmp_path / "fm", download=False, val_fraction=0.25, seed=1)
    assert b.name == "fashion-mnist" and b.classes == FASHION_MNIST_CLASSES
    assert b.in_chans == 1 and b.image_size == (28, 28)
    assert len(b.train) == 30 and len(b.val) == 10 and len(b.test) == 20
    assert b.train.images.dtype == torch.uint8 and b.train.images.shape[1:] == (1, 28, 28)
    # the official test set comes back unchanged, in order
    assert torch.equal(b.test.images[:, 0], torch.from_numpy(arrays["t10k-images-idx3-ubyte"].astype(np.uint8)))
    assert torch.equal(b.test.labels, torch.from_numpy(arrays["t10k-labels-idx1-ubyte"]))
    # train + val are exactly the training file, disjointly
    all_train = torch.from_numpy(arrays["train-images-idx3-ubyte"].astype(np.uint8)).flatten(1)
    got = torch.cat([b.train.images, b.val.images]).flatten(1)
    assert sorted(map(tuple, got.tolist())) == sorted(map(tuple, all_train.tolist()))
    # stratified: every class gives one of its four images to validation
    assert torch.bincount(b.val.labels, minlength=10).tolist() == [1] * 10
    # stats computed on the training split, in [0, 1] units
    x = b.train.images.double() / 255
    assert b.mean[0] == pytest.approx(x.mean().item(), rel=1e-6)
    assert b.std[0] == pytest.approx(x.std(unbiased=False).item(), rel=1e-5)


def test_validation_split_is_seeded(tmp_path):
    make_idx_set(tmp_path / "fm")
    a = load_dataset("fashion-mnist", data_dir=tmp_path / "fm", download=False, seed=3, val_fraction=0.25)
    b = load_dataset("fashion-mnist", data_dir=tmp_path / "fm", download=False, seed=3, val_fraction=0.25)
    c = load_dataset("fashion-mnist", data_dir=tmp_path / "fm", download=False, seed=4, val_fraction=0.25)
    assert torch.equal(a.val.images, b.val.images)
    assert not torch.equal(a.val.images, c.val.images)


def test_limits_and_no_validation(tmp_path):
    make_idx_set(tmp_path / "fm")
    b = load_dataset(
        "fashion-mnist", data_dir=tmp_path / "fm", download=False, val_fraction=0.0, limit_train=7, limit_val=5
    )
    assert b.val is None and len(b.train) == 7 and len(b.test) == 5  # limit_test defaults to limit_val
    b = load_dataset("fashion-mnist", data_dir=tmp_path / "fm", download=False, limit_val=5, limit_test=3)
    assert len(b.test) == 3 and len(b.val) == 4


def test_search_order_env_then_system(tmp_path, monkeypatch):
    make_idx_set(tmp_path / "system" / "mnist", seed=1)
    b = load_dataset("mnist", download=False)
    assert b.source == str(tmp_path / "system" / "mnist") and b.classes == [str(i) for i in range(10)]
    make_idx_set(tmp_path / "env" / "mnist", seed=2)
    monkeypatch.setenv("CNNZOO_DATA_DIR", str(tmp_path / "env"))
    assert load_dataset("mnist", download=False).source == str(tmp_path / "env" / "mnist")
    # data_dir beats both; a torchvision download layout (ROOT/MNIST/raw) is found too
    make_idx_set(tmp_path / "mine" / "MNIST" / "raw", seed=3, compress=False)
    assert load_dataset("mnist", data_dir=tmp_path / "mine", download=False).source == str(
        tmp_path / "mine" / "MNIST" / "raw"
    )


def test_missing_data_names_files_and_places(tmp_path):
    (tmp_path / "nowhere").mkdir()  # exists but holds no files (a missing data_dir: test_data_registry.py)
    with pytest.raises(DataError) as e:
        load_dataset("fashion-mnist", data_dir=tmp_path / "nowhere", download=False)
    msg = str(e.value)
    assert isinstance(e.value, CnnzooError) and "\n" not in msg
    assert "train-images-idx3-ubyte" in msg and "t10k-labels-idx1-ubyte" in msg
    assert str(tmp_path / "nowhere") in msg and str(tmp_path / "system" / "fashion-mnist") in msg
    assert str(tmp_path / "cache" / "cnnzoo" / "fashion-mnist") in msg


def test_incomplete_data_is_reported(tmp_path):
    make_idx_set(tmp_path / "fm")
    (tmp_path / "fm" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"incomplete \(missing t10k-labels-idx1-ubyte"):
        load_dataset("fashion-mnist", data_dir=tmp_path / "fm", download=False)


def test_truncated_idx_file(tmp_path):
    make_idx_set(tmp_path / "fm", compress=False)
    path = tmp_path / "fm" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="train-images-idx3-ubyte is incomplete") as e:
        load_dataset("fashion-mnist", data_dir=tmp_path / "fm", download=False)
    assert "\n" not in str(e.value)
    path.write_bytes(b"garbage!")
    with pytest.raises(DataError, match="not an idx file"):
        read_idx(path)


# ----------------------------------------------------------------------------------- CIFAR


def test_cifar10_pickles_roundtrip(tmp_path):
    folder, batches = make_cifar10(tmp_path)
    b = load_dataset("cifar10", data_dir=tmp_path, download=False, val_fraction=0.0)
    assert b.classes[0] == "airplane" and b.classes[9] == "truck" and b.in_chans == 3
    assert len(b.train) == 30 and len(b.test) == 6 and b.source == str(folder)
    # the 3072 bytes are the R, G and B planes, row-major
    row = batches["test_batch"][b"data"][2]
    assert torch.equal(b.test.images[2], torch.from_numpy(row.reshape(3, 32, 32)))
    assert b.test.labels.tolist() == [int(v) for v in batches["test_batch"][b"labels"]]


def test_cifar100_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for part, n in (("train", 12), ("test", 4)):
        d = {b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8), b"fine_labels": list(range(90, 90 + n % 10)) * 0
             + [int(v) for v in rng.integers(0, 100, n)], b"coarse_labels": [0] * n}  # fmt: skip
        (folder / part).write_bytes(pickle.dumps(d))
    (folder / "meta").write_bytes(pickle.dumps({b"fine_label_names": [f"c{i}".encode() for i in range(100)]}))
    b = load_dataset("cifar100", data_dir=tmp_path, download=False, val_fraction=0.25)
    assert b.num_classes == 100 and b.classes[42] == "c42"
    assert len(b.train) + len(b.val) == 12 and len(b.test) == 4


def test_cifar_incomplete_and_corrupt(tmp_path):
    folder, _ = make_cifar10(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match="incomplete.*data_batch_3"):
        load_dataset("cifar10", data_dir=tmp_path, download=False)
    (folder / "data_batch_3").write_bytes(b"\x80\x04not a pickle")
    with pytest.raises(DataError, match="cannot read CIFAR batch .*data_batch_3") as e:
        load_dataset("cifar10", data_dir=tmp_path, download=False)
    assert "\n" not in str(e.value)


# ----------------------------------------------------------------------------------- synthetic / names


def test_synthetic_options_and_determinism():
    a = load_dataset("synthetic:classes=4,size=12,channels=1,train=40,test=8", val_fraction=0.25)
    b = load_dataset("synthetic:classes=4,size=12,channels=1,train=40,test=8", val_fraction=0.25)
    assert a.num_classes == 4 and a.in_chans == 1 and a.image_size == (12, 12)
    assert len(a.train) == 30 and len(a.val) == 10 and len(a.test) == 8
    assert torch.equal(a.train.images, b.train.images)
    with pytest.raises(DataError, match="bad synthetic option"):
        load_dataset("synthetic:colour=3")


def test_synthetic_classes_are_separable():
    """A nearest-class-mean classifier on the raw pixels beats chance by far: the images carry structure."""
    b = load_dataset("synthetic:train=400,test=200", val_fraction=0.0)
    x, y = b.train.images.flatten(1).float(), b.train.labels
    means = torch.stack([x[y == c].mean(0) for c in range(b.num_classes)])
    xt = b.test.images.flatten(1).float()
    xt, means = xt - xt.mean(1, keepdim=True), means - means.mean(1, keepdim=True)
    pred = (xt @ means.T).argmax(1)
    assert (pred == b.test.labels).float().mean() > 0.8


def test_unknown_dataset():
    with pytest.raises(DataError, match="unknown data set 'imagenette'"):
        load_dataset("imagenette")


# ----------------------------------------------------------------------------------- MAT files


def _mat_element(mtype: int, data: bytes) -> bytes:
    if len(data) <= 4 and mtype != 14:  # "small data element": count and data packed in 8 bytes
        return struct.pack("<HH", mtype, len(data)) + data.ljust(4, b"\0")
    return struct.pack("<II", mtype, len(data)) + data + b"\0" * (-len(data) % 8)


def write_mat(path, arrays: dict, compress: bool = True) -> None:
    """A minimal MATLAB level-5 writer (double arrays, row vectors for 1-D input)."""
    body = b""
    for name, value in arrays.items():
        arr = np.asarray(value, dtype=np.float64)
        arr = arr[None, :] if arr.ndim == 1 else arr
        matrix = _mat_element(14, _mat_element(6, struct.pack("<II", 6, 0)) + _mat_element(5, struct.pack(f"<{arr.ndim}i", *arr.shape))
                              + _mat_element(1, name.encode()) + _mat_element(9, arr.tobytes(order="F")))  # fmt: skip
        if compress:
            z = zlib.compress(matrix)
            body += struct.pack("<II", 15, len(z)) + z
        else:
            body += matrix
    header = (
        b"MATLAB 5.0 MAT-file, written by cnnzoo tests".ljust(116, b" ") + b"\0" * 8 + struct.pack("<H", 0x0100) + b"IM"
    )
    path.write_bytes(header + body)


@pytest.mark.parametrize("compress", [True, False])
def test_matfile_reader(tmp_path, compress):
    from cnnzoo.data.matfile import MatFileError, loadmat

    grid = np.arange(6, dtype=np.float64).reshape(2, 3)
    write_mat(tmp_path / "a.mat", {"trn1": [3, 1, 2], "labels": np.arange(1, 11), "grid": grid}, compress)
    m = loadmat(tmp_path / "a.mat")
    assert m["trn1"].ravel().tolist() == [3, 1, 2]
    assert m["labels"].shape == (1, 10) and m["labels"].ravel().tolist() == list(range(1, 11))
    assert np.array_equal(m["grid"], grid)  # column-major storage read back in the right order
    (tmp_path / "b.mat").write_bytes(b"not a mat file" * 20)
    with pytest.raises(MatFileError):
        loadmat(tmp_path / "b.mat")


# ----------------------------------------------------------------------------------- image folders

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]


def solid_image(path, colour, size=(20, 14)):
    from PIL import Image

    Image.new("RGB", size, colour).save(path)


def make_tree(root, classes, per_class, ext=".png"):
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            solid_image(root / name / f"img{i}{ext}", COLOURS[c], size=(16 + 3 * i, 12 + 2 * c))


def test_imagefolder_train_val_and_labels(tmp_path):
    from cnnzoo.data import make_loader

    make_tree(tmp_path / "train", ["cat", "ant", "bee"], per_class=6)
    make_tree(tmp_path / "val", ["cat", "ant", "bee"], per_class=2, ext=".jpg")
    b = load_dataset(f"imagefolder:{tmp_path}", val_fraction=1 / 3, seed=0)
    assert b.classes == ["ant", "bee", "cat"] and b.in_chans == 3 and b.image_size == (224, 224)
    assert len(b.train) == 12 and len(b.val) == 6 and len(b.test) == 6  # val/ is the official held-out set
    for split, train in ((b.train, True), (b.test, False)):
        loader = make_loader(split, batch_size=4, train=train, input_size=(8, 8), augment={"flip": True},
                             mean=b.mean, std=b.std, num_workers=0)  # fmt: skip
        n = 0
        for x, y in loader:
            assert x.shape == (len(y), 3, 8, 8)
            # solid colour images: every pixel of a sample is its class colour (make_tree's order), normalised
            colour_index = {"cat": 0, "ant": 1, "bee": 2}
            want = torch.tensor([COLOURS[colour_index[b.classes[int(k)]]] for k in y]).float() / 255
            want = (want - torch.tensor(b.mean)) / torch.tensor(b.std)
            torch.testing.assert_close(x.mean(dim=(2, 3)), want, rtol=0, atol=0.02)  # JPEG rounding
            n += len(y)
        assert n == len(split)


def test_imagefolder_workers_do_not_change_the_crops(tmp_path):
    from PIL import Image

    from cnnzoo.data import make_loader

    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (24, 30, 3), dtype=np.uint8)).save(tmp_path / c / f"{i}.png")
    b = load_dataset(f"imagefolder:{tmp_path}", val_fraction=0.0)
    assert b.test is None and len(b.train) == 8
    runs = []
    for workers in (0, 2):
        loader = make_loader(
            b.train, batch_size=3, train=True, input_size=12, augment={"flip": True}, num_workers=workers, seed=4
        )
        loader.set_epoch(2)
        runs.append([(x, y) for x, y in loader])
    for (x0, y0), (x2, y2) in zip(*runs, strict=True):
        assert torch.equal(y0, y2) and torch.equal(x0, x2)
    # the random-resized crops differ from the plain evaluation view
    ev = torch.cat([x for x, _ in make_loader(b.train, batch_size=8, train=False, input_size=12, num_workers=0)])
    tr = torch.cat([x for x, _ in runs[0]])
    assert not torch.allclose(tr, ev[torch.cat([y for _, y in runs[0]]).argsort().argsort()], atol=1e-3)


def test_unreadable_image_named_or_skipped(tmp_path):
    from cnnzoo.data import make_loader

    make_tree(tmp_path / "train", ["a", "b"], per_class=3)
    bad = tmp_path / "train" / "b" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    b = load_dataset(f"imagefolder:{tmp_path}", val_fraction=0.0)
    loader = make_loader(b.train, batch_size=4, train=False, input_size=8, num_workers=0)
    with pytest.raises(DataError, match="cannot read image .*broken.jpg") as e:
        list(loader)
    assert "\n" not in str(e.value) and "--skip-bad-images" in str(e.value)
    loader = make_loader(b.train, batch_size=4, train=False, input_size=8, num_workers=0, skip_bad_images=True)
    with pytest.warns(UserWarning, match="broken.jpg"):
        labels = torch.cat([y for _, y in loader])
    assert len(labels) == 6
    # the flag given to load_dataset reaches the loaders too
    b = load_dataset(f"imagefolder:{tmp_path}", val_fraction=0.0, skip_bad_images=True)
    with pytest.warns(UserWarning, match="skipping: cannot read image .*broken.jpg"):
        assert len(torch.cat([y for _, y in make_loader(b.train, batch_size=4, input_size=8, num_workers=0)])) == 6


def test_imagenet_needs_train_and_val(tmp_path):
    make_tree(tmp_path / "train", ["n01", "n02"], per_class=1)
    with pytest.raises(DataError, match="imagenet: need .*val"):
        load_dataset(f"imagenet:{tmp_path}")
    make_tree(tmp_path / "val", ["n01", "n03"], per_class=1)
    with pytest.raises(DataError, match="class folders not in the training set: n03"):
        load_dataset(f"imagenet:{tmp_path}")
    with pytest.raises(DataError, match="directory .*nothing not found"):
        load_dataset(f"imagefolder:{tmp_path / 'nothing'}")


def test_preprocess_image_for_prediction(tmp_path):
    from cnnzoo.data import preprocess_image

    solid_image(tmp_path / "big.png", (255, 0, 0), size=(300, 200))
    x = preprocess_image(tmp_path / "big.png", 3, (32, 32), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    assert x.shape == (1, 3, 32, 32)
    torch.testing.assert_close(x.mean(dim=(0, 2, 3)), torch.tensor([1.0, -1.0, -1.0]))
    from PIL import Image

    Image.new("L", (28, 28), 255).save(tmp_path / "digit.png")
    x = preprocess_image(tmp_path / "digit.png", 1, (32, 32), mean=(0.0,), std=(1.0,))
    assert x.shape == (1, 1, 32, 32) and x[0, 0, 2:30, 2:30].min() == 1.0 and x[0, 0, 0].max() == 0.0  # padded


# ----------------------------------------------------------------------------------- Oxford flowers


def _write_many(paths, data: bytes):
    for p in paths:
        p.write_bytes(data)


@pytest.fixture
def tiny_jpeg(tmp_path):
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 6), (10, 200, 30)).save(buf, format="JPEG")
    return buf.getvalue()


def test_flowers17_archive_layout(tmp_path, tiny_jpeg):
    from cnnzoo.data.flowers import FLOWERS17_CLASSES

    jpg = tmp_path / "17flowers" / "jpg"
    jpg.mkdir(parents=True)
    _write_many([jpg / f"image_{i:04d}.jpg" for i in range(1, 1361)], tiny_jpeg)
    b = load_dataset("flowers17", data_dir=tmp_path / "17flowers", val_fraction=0.25)
    assert b.classes == FLOWERS17_CLASSES and b.num_classes == 17
    # seeded split: 20 test images per class, the rest split 3:1 into train/val
    assert len(b.test) == 340 and torch.bincount(b.test.labels, minlength=17).tolist() == [20] * 17
    assert len(b.train) == 765 and len(b.val) == 255
    label_of = {path: label for path, label in b.train.samples + b.val.samples + b.test.samples}
    assert label_of[str(jpg / "image_0080.jpg")] == 0 and label_of[str(jpg / "image_0081.jpg")] == 1
    assert label_of[str(jpg / "image_1360.jpg")] == 16
    # the official splits win when datasplits.mat is there
    write_mat(tmp_path / "17flowers" / "datasplits.mat", {"trn1": [1, 81, 161], "val1": [2, 82], "tst1": [3, 1360]})
    b = load_dataset("flowers17", data_dir=tmp_path / "17flowers")
    assert [len(b.train), len(b.val), len(b.test)] == [3, 2, 2]
    assert b.train.labels.tolist() == [0, 1, 2] and b.test.labels.tolist() == [0, 16]


def test_flowers17_incomplete(tmp_path, tiny_jpeg):
    jpg = tmp_path / "jpg"
    jpg.mkdir()
    _write_many([jpg / f"image_{i:04d}.jpg" for i in range(1, 1000)], tiny_jpeg)
    with pytest.raises(DataError, match=r"incomplete \(missing image_1000.jpg and 360 more\)"):
        load_dataset("flowers17", data_dir=tmp_path)


def test_flowers102_torchvision_layout(tmp_path, tiny_jpeg):
    root = tmp_path / "flowers-102"
    (root / "jpg").mkdir(parents=True)
    _write_many([root / "jpg" / f"image_{i:05d}.jpg" for i in range(1, 7)], tiny_jpeg)
    write_mat(root / "imagelabels.mat", {"labels": [1, 1, 2, 2, 102, 3]})
    write_mat(root / "setid.mat", {"trnid": [1, 3], "valid": [2, 4], "tstid": [5, 6]}, compress=False)
    b = load_dataset("flowers102", data_dir=tmp_path, download=False)
    assert b.num_classes == 102 and b.classes[0] == "pink primrose"
    assert b.train.labels.tolist() == [0, 1] and b.val.labels.tolist() == [0, 1] and b.test.labels.tolist() == [101, 2]
    (root / "setid.mat").unlink()
    with pytest.raises(DataError, match=r"incomplete \(missing setid.mat\)"):
        load_dataset("flowers102", data_dir=tmp_path, download=False)


# ----------------------------------------------------------------------------------- downloads (faked)


def test_download_goes_to_the_cache(tmp_path, monkeypatch):
    """With download=True a missing set is fetched by torchvision's class into the cache (faked: no network)."""
    import torchvision.datasets as tvd

    calls = []

    class FakeFashionMNIST:
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            make_idx_set(tmp_path / "dl" / "FashionMNIST" / "raw")

    monkeypatch.setattr(tvd, "FashionMNIST", FakeFashionMNIST)
    (tmp_path / "dl").mkdir()  # a data_dir must exist, even as a download target
    b = load_dataset("fashion-mnist", data_dir=tmp_path / "dl", download=True)
    assert calls and calls[0][0] == str(tmp_path / "dl") and calls[0][2] is True
    assert b.source == str(tmp_path / "dl" / "FashionMNIST" / "raw") and len(b.test) == 20


def test_failed_download_is_one_line(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    class Offline:
        def __init__(self, root, train, download):
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://..., got URLError")

    monkeypatch.setattr(tvd, "MNIST", Offline)
    with pytest.raises(DataError) as e:
        load_dataset("mnist", download=True)
    msg = str(e.value)
    assert "\n" not in msg and "download into" in msg and "failed: Error downloading" in msg
    assert str(tmp_path / "cache" / "cnnzoo" / "mnist") in msg


def test_real_fashion_mnist_if_installed(monkeypatch):
    """The Debian package's files (dataset-fashion-mnist) parse: 60000 + 10000 images of 28x28."""
    from pathlib import Path

    if not (Path("/usr/share/datasets/fashion-mnist") / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("dataset-fashion-mnist is not installed")
    monkeypatch.setattr(data_base, "SYSTEM_DATA_DIRS", [Path("/usr/share/datasets")])
    b = load_dataset("fashion-mnist", download=False, val_fraction=0.1, limit_train=100)
    assert b.source == "/usr/share/datasets/fashion-mnist"
    assert len(b.val) == 6000 and len(b.test) == 10000 and len(b.train) == 100
    assert torch.bincount(b.test.labels).tolist() == [1000] * 10  # the official test set is balanced
    assert torch.bincount(b.val.labels).tolist() == [600] * 10  # the carved split is stratified
