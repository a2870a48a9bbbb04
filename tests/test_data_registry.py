"""The data-set registry: names and helps without torch, one file per data set, no import cycle in data/."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import cnnzoo.data
from cnnzoo.data import DATASETS, DataError, load_dataset
from cnnzoo.data import registry as data_registry
from cnnzoo.data.registry import dataset_help, dataset_info, dataset_names, default_augment, register_dataset
from cnnzoo.errors import CnnzooError
from test_data import make_cifar10, make_idx_set, no_system_data  # noqa: F401 - the autouse fixture applies here

DATA_PACKAGE = Path(cnnzoo.data.__file__).parent
OLD_NAMES = ["fashion-mnist", "mnist", "cifar10", "cifar100", "flowers17", "flowers102", "imagefolder", "imagenet",
             "synthetic"]  # fmt: skip
HEAVY = ("torch", "torchvision", "numpy", "PIL", "scipy")
TINY = "synthetic:classes=3,channels=1,size=8,train=30,test=12"


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


# ----------------------------------------------------------------------------------- listing without torch


def test_listing_imports_nothing_heavy():
    """Importing the registry and listing adds no torch/numpy/PIL beyond what ``import cnnzoo`` loads."""
    run = _python("""
        import json, sys
        import cnnzoo
        before = set(sys.modules)
        from cnnzoo.data.registry import dataset_help, dataset_names
        names, helps = dataset_names(), dataset_help()
        print(json.dumps({"names": list(names), "helps": helps, "added": sorted(set(sys.modules) - before)}))
    """)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    heavy = [m for m in out["added"] if m.split(".")[0] in HEAVY]
    assert heavy == [], f"listing the data sets imported {heavy[:5]}"
    assert set(OLD_NAMES) <= set(out["names"]) and list(out["helps"]) == out["names"]
    assert all(h.strip() and "\n" not in h for h in out["helps"].values())


def test_listing_without_torch_at_all():
    """The brief's check, verbatim; it can only hold once ``import cnnzoo`` itself does not import torch."""
    if _python("import sys, cnnzoo; sys.exit('torch' in sys.modules)").returncode:
        pytest.skip("`import cnnzoo` imports torch by itself (cnnzoo/__init__.py): not the data package's doing")
    run = _python("import sys; from cnnzoo.data.registry import dataset_names; print(dataset_names()); "
                  "assert 'torch' not in sys.modules")  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "fashion-mnist" in run.stdout


# ----------------------------------------------------------------------------------- import graph


def _module_name(path: Path) -> str:
    rel = path.relative_to(DATA_PACKAGE.parent.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, name: str, modules: set[str]) -> set[str]:
    """Every module of ``modules`` that ``path`` imports, at top level or inside functions."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # ``from pkg import sub`` imports the submodule; ``from pkg import attr`` the package
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in modules}
    found.discard(name)
    return found


def test_data_package_import_graph_is_acyclic():
    files = sorted(DATA_PACKAGE.rglob("*.py"))
    names = {_module_name(f): f for f in files}
    graph = {name: _imports(path, name, set(names)) for name, path in names.items()}
    assert graph["cnnzoo.data.folders"] >= {"cnnzoo.data.transform", "cnnzoo.data.epochs"}
    assert "cnnzoo.data.pipeline" not in graph["cnnzoo.data.folders"]
    # depth-first search for a back edge; report the cycle
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                pytest.fail("import cycle in cnnzoo.data: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


# ----------------------------------------------------------------------------------- registry


def test_registry_lists_the_old_names_and_helps():
    assert set(OLD_NAMES) <= set(dataset_names())
    assert DATASETS == dataset_names() and cnnzoo.data.DATASETS == dataset_names()
    from cnnzoo.data.datasets import DATASETS as again
    from cnnzoo.data.datasets import DEFAULT_AUGMENT, list_datasets

    assert again == list_datasets() == dataset_names()
    helps = dataset_help()
    assert list(helps) == list(dataset_names()) and all("\n" not in h for h in helps.values())
    # the augmentation each data set trained with before the registry
    assert DEFAULT_AUGMENT["mnist"] == {"crop_padding": 2, "flip": False}
    assert DEFAULT_AUGMENT["fashion-mnist"] == {"crop_padding": 2, "flip": True}
    assert DEFAULT_AUGMENT["cifar10"] == DEFAULT_AUGMENT["cifar100"] == {"crop_padding": 4, "flip": True}
    assert DEFAULT_AUGMENT["synthetic"] == {"crop_padding": 0, "flip": False}
    for name in ("flowers17", "flowers102", "imagefolder", "imagenet"):
        assert DEFAULT_AUGMENT[name] == {"flip": True}


def test_aliases_usage_and_default_augment():
    assert dataset_info("Fashion_MNIST").name == "fashion-mnist" and dataset_info("cifar-100").name == "cifar100"
    assert dataset_info("imagefolder:/some/where").usage == "imagefolder:PATH"
    assert dataset_info("synthetic").usage == "synthetic[:k=v,...]" and dataset_info("mnist").usage == "mnist"
    augment = default_augment("cifar10")
    augment["flip"] = False  # a fresh dict: the registry's stays
    assert default_augment("cifar10")["flip"] is True
    b = load_dataset(TINY, val_fraction=0.0)
    assert b.default_augment == default_augment("synthetic") and b.name == TINY


def test_unknown_name_is_one_line_with_a_suggestion():
    with pytest.raises(DataError) as e:
        load_dataset("fashion-mnsit")
    msg = str(e.value)
    assert isinstance(e.value, CnnzooError) and "\n" not in msg
    assert msg.startswith("unknown data set 'fashion-mnsit' (did you mean 'fashion-mnist'?); known: ")
    assert all(dataset_info(n).usage in msg for n in dataset_names()) and "imagefolder:PATH" in msg
    with pytest.raises(DataError, match=r"^unknown data set 'qqqq'; known: cifar10, "):
        load_dataset("qqqq")


def test_arguments_where_none_are_taken():
    with pytest.raises(DataError, match="data set mnist takes nothing after its name"):
        load_dataset("mnist:extra")
    with pytest.raises(DataError, match="imagefolder needs a directory: use --data imagefolder:PATH"):
        load_dataset("imagefolder")


def test_adding_a_data_set_is_adding_a_file(tmp_path, monkeypatch):
    """A module dropped into the sets package is found and loads through the registry."""
    import cnnzoo.data.sets as sets

    (tmp_path / "tiny_extra.py").write_text(textwrap.dedent('''
        from cnnzoo.data.registry import register_dataset

        @register_dataset("tiny-extra", aliases=("tinyx",), help="a test data set", default_augment={"flip": True})
        def load(request):
            import torch
            from cnnzoo.data.base import TensorSplit

            images = torch.arange(20 * 4 * 4, dtype=torch.int64).remainder(256).to(torch.uint8).view(20, 1, 4, 4)
            split = TensorSplit(images, torch.arange(20) % 2, ["even", "odd"])
            return request.finish(split, split.subset(torch.arange(4)), source="memory")
    '''))
    monkeypatch.setattr(sets, "__path__", [*sets.__path__, str(tmp_path)])
    monkeypatch.setattr(data_registry, "_REGISTRY", dict(data_registry._REGISTRY))
    monkeypatch.setattr(data_registry, "_ALIASES", dict(data_registry._ALIASES))
    monkeypatch.setattr(data_registry, "_discovered", False)
    monkeypatch.delitem(sys.modules, "cnnzoo.data.sets.tiny_extra", raising=False)
    try:
        assert "tiny-extra" in dataset_names() and dataset_help()["tiny-extra"] == "a test data set"
        b = load_dataset("TINYX", val_fraction=0.25, limit_val=3)
        assert b.name == "tiny-extra" and b.classes == ["even", "odd"] and b.default_augment == {"flip": True}
        assert len(b.train) == 15 and len(b.val) == 3 and len(b.test) == 3 and b.source == "memory"
    finally:
        sys.modules.pop("cnnzoo.data.sets.tiny_extra", None)


def test_register_dataset_refuses_clashes(monkeypatch):
    monkeypatch.setattr(data_registry, "_REGISTRY", dict(data_registry._REGISTRY))
    monkeypatch.setattr(data_registry, "_ALIASES", dict(data_registry._ALIASES))
    dataset_names()  # discovered before the clashes below

    def other(request):  # pragma: no cover - never loaded
        raise AssertionError

    with pytest.raises(ValueError, match="registered twice"):
        register_dataset("mnist", help="another mnist")(other)
    with pytest.raises(ValueError, match="already belongs to 'cifar10'"):
        register_dataset("cifar-ten", aliases=("cifar-10",), help="x")(other)
    with pytest.raises(ValueError, match="one-line help"):
        register_dataset("two-lines", help="a\nb")(other)
    with pytest.raises(ValueError, match="lower case"):
        register_dataset("Upper", help="x")(other)


# ----------------------------------------------------------------------------------- data_dir


@pytest.mark.parametrize("name", ["fashion-mnist", "mnist", "cifar10", "cifar100", "flowers17", "flowers102",
                                  "imagefolder", "synthetic"])  # fmt: skip
def test_missing_data_dir_is_an_error(tmp_path, monkeypatch, name):
    """A data_dir that does not exist is reported, not passed over for the default places."""
    make_idx_set(tmp_path / "system" / "fashion-mnist")  # would be found if data_dir were ignored
    make_idx_set(tmp_path / "system" / "mnist")
    import torchvision.datasets as tvd

    class NoDownload:
        def __init__(self, *args, **kwargs):
            raise AssertionError("no download may be tried")

    for cls in ("MNIST", "FashionMNIST", "CIFAR10", "CIFAR100", "Flowers102"):
        monkeypatch.setattr(tvd, cls, NoDownload)
    missing = tmp_path / "no" / "such" / "dir"
    for download in (False, True):
        with pytest.raises(DataError) as e:
            load_dataset(name, data_dir=missing, download=download)
        msg = str(e.value)
        assert msg.startswith(f"data directory {missing} does not exist") and "\n" not in msg
        if download and dataset_info(name).downloads:
            assert msg.endswith(f"(create it to download {name} into it)")
    assert not missing.exists()


def test_data_dir_that_is_a_file_or_lacks_the_files(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match=r"data directory .*file is not a directory"):
        load_dataset("mnist", data_dir=tmp_path / "file", download=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"^cifar10 not found: need cifar-10-batches-py/.*looked in .*empty") as e:
        load_dataset("cifar10", data_dir=tmp_path / "empty", download=False)
    assert "\n" not in str(e.value)
    make_cifar10(tmp_path / "empty")  # and once the files are there, the same data_dir works
    assert len(load_dataset("cifar10", data_dir=tmp_path / "empty", download=False, val_fraction=0.0).test) == 6


# ----------------------------------------------------------------------------------- limit_test default


def test_limit_test_defaults_to_limit_val_and_is_documented():
    b = load_dataset(TINY, val_fraction=0.5, limit_val=5)
    assert len(b.val) == 5 and len(b.test) == 5  # the compatibility default
    b = load_dataset(TINY, val_fraction=0.5, limit_val=5, limit_test=sys.maxsize)
    assert len(b.val) == 5 and len(b.test) == 12
    doc = " ".join(load_dataset.__doc__.split())
    assert "limit_test" in doc and "takes the value of** ``limit_val``" in doc and "sys.maxsize" in doc


# ----------------------------------------------------------------------------------- compatibility


def test_public_names_and_moved_internals_still_import():
    from cnnzoo.data import (  # noqa: F401
        AUGMENT_KEYS, BatchTransform, DataBundle, FolderSplit, TensorSplit, make_loader, preprocess_image,
    )  # fmt: skip
    from cnnzoo.data.base import DataError as base_error
    from cnnzoo.data.pipeline import AugmentParams, plan_batches, resolve_augment  # noqa: F401
    from cnnzoo.data.pipeline import BatchTransform as pipeline_transform
    from cnnzoo.data.transform import BatchTransform as transform

    assert base_error is DataError and pipeline_transform is transform is BatchTransform
    assert set(cnnzoo.data.__all__) <= set(dir(cnnzoo.data))
    with pytest.raises(AttributeError):
        cnnzoo.data.no_such_name  # noqa: B018
