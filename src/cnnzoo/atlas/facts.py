"""What the atlas knows about one model: its summary, its block tree and its building blocks.

Each model is built and traced once (:func:`cnnzoo.summary` over every layer); the block
view of the diagram is folded from those rows rather than traced a second time, and the
result is cached as JSON, keyed by a fingerprint of the code that produced it (the model's
family module, the shared model, layer and analysis sources and the torch version), so a
rebuild only traces the models whose code changed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import cnnzoo
from cnnzoo.rundir import atomic_write_bytes


@dataclass
class ModelFacts:
    name: str
    input_size: tuple[int, int, int]
    totals: dict  # Summary.as_dict()["totals"]
    rows: list[dict]  # Summary.as_dict()["rows"]: one per layer call
    #: name -> class name of every module with children that ran (the diagram's blocks)
    containers: dict[str, str]
    blocks: list[str]  # slugs of the building blocks found in the module tree
    notes: list[str]
    idle_params: int = 0  # parameters of layers the eval-mode forward does not run (auxiliary heads)


def _digest(paths: list[Path], seed: str = "") -> str:
    digest = hashlib.sha256(seed.encode())
    for path in sorted(paths):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def code_fingerprint() -> str:
    """A hash of what every model's facts depend on: the shared sources (layers, analysis, the
    models' base and registry, this module and the block tests) and torch's version."""
    import torch

    package = Path(cnnzoo.__file__).parent
    shared = [*(package / "layers").glob("*.py"), *(package / "analysis").glob("*.py"), package / "models" / "base.py",
              package / "registry.py", package / "atlas" / "facts.py", package / "atlas" / "blocks.py"]  # fmt: skip
    return _digest(shared, torch.__version__)


def model_fingerprint(name: str, shared: str) -> str:
    """``shared`` (:func:`code_fingerprint`) combined with the source of the module that defines ``name``."""
    import sys

    module = sys.modules[cnnzoo.model_info(name).builder.__module__]
    return _digest([Path(module.__file__)], shared)


def compute_facts(name: str) -> ModelFacts:
    """Build ``name`` at its registered input size and trace it once."""
    from cnnzoo.atlas.blocks import blocks_in

    info = cnnzoo.model_info(name)
    model = cnnzoo.create_model(name)
    report = cnnzoo.summary(model, info.input_size)
    data = report.as_dict()
    ran = {row["name"] for row in data["rows"]}
    prefixes = {".".join(n.split(".")[:i]) for n in ran for i in range(1, n.count(".") + 1)}
    containers = {n: type(m).__name__ for n, m in model.named_modules() if n and n in prefixes}
    return ModelFacts(name, tuple(info.input_size), data["totals"], data["rows"], containers, blocks_in(model),
                      list(report.notes), report.idle_params)  # fmt: skip


def cached_facts(name: str, cache_dir: Path, fingerprint: str) -> ModelFacts | None:
    """The facts of ``name`` from ``cache_dir`` if the same code computed them, else None."""
    path = cache_dir / f"{name}.json"
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
        if saved.get("fingerprint") != fingerprint:
            return None
        facts = ModelFacts(**saved["facts"])
    except (ValueError, TypeError, KeyError):
        return None  # a damaged cache entry is recomputed
    facts.input_size = tuple(facts.input_size)
    return facts


def compute_and_cache(name: str, cache_dir: Path, fingerprint: str) -> ModelFacts:
    facts = compute_facts(name)
    cache_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(cache_dir / f"{name}.json",
                       json.dumps({"fingerprint": fingerprint, "facts": asdict(facts)}).encode())  # fmt: skip
    return facts


def _worker_start() -> None:
    import torch

    torch.set_num_threads(1)  # one thread per worker process, one worker per core


def load_all(names: list[str], cache_dir: Path, workers: int) -> dict[str, ModelFacts]:
    """The facts of every model: from the cache, the rest traced in ``workers`` processes."""
    shared = code_fingerprint()
    prints = {name: model_fingerprint(name, shared) for name in names}
    facts = {name: cached_facts(name, cache_dir, prints[name]) for name in names}
    missing = [name for name, f in facts.items() if f is None]
    if len(missing) > 1 and workers > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # fork, not spawn: spawn would re-run `python -m cnnzoo`'s __main__ in every child
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_start) as pool:
            done = pool.map(compute_and_cache, missing, [cache_dir] * len(missing), [prints[n] for n in missing])
            facts.update(zip(missing, done))
    else:
        facts.update((name, compute_and_cache(name, cache_dir, prints[name])) for name in missing)
    return facts
