"""The registered models' metadata without torch: ``cnnzoo/models/index.json``.

``cnnzoo list`` and ``cnnzoo info`` need every model's name, family, paper, default input
and size limits.  The registry learns them by importing the model files, which import torch
(seconds and hundreds of MB).  The index holds the same records as JSON, generated from the
live registry; ``list_models(..., from_index=True)`` and ``model_info(..., from_index=True)``
read it.  After adding a model or changing its ``@register_model`` arguments or first
docstring line, regenerate it::

    python -m cnnzoo.model_index           # rewrites src/cnnzoo/models/index.json
    python -m cnnzoo.model_index --check   # exit 1, saying what differs, if it is out of date

``tests/test_cli_fast.py`` fails while the shipped file differs from the live registry.  At
run time, when the file is missing or unreadable, or the family modules in ``cnnzoo/models/``
are not the ones it was built from (a new family file), :func:`load_index` prints a one-line
note and falls back to the live registry, so the answer is right, only slower.

Only models whose builders live in ``cnnzoo.models.*`` are indexed: a model registered at run
time (a test's, a plug-in's) is known to the live registry only.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Mapping

from cnnzoo.registry import ModelInfo, Paper, ReportedAccuracy, family_module_names

MODELS_DIR = Path(__file__).resolve().parent / "models"
INDEX_PATH = MODELS_DIR / "index.json"
#: the command that rewrites the index (named in every message about a stale one)
REGENERATE = "python -m cnnzoo.model_index"
FORMAT = 1

_loaded: Mapping[str, ModelInfo] | None = None


def _record_keys() -> list[str]:
    """The ``ModelInfo`` fields an index record holds: every compared field but the name."""
    return [f.name for f in dataclasses.fields(ModelInfo) if f.compare and f.name != "name"]


def build_index() -> dict:
    """The index as the live registry gives it (imports every model file, hence torch)."""
    from cnnzoo.registry import _REGISTRY, _ensure_models_imported

    _ensure_models_imported()
    models = {}
    for name in sorted(_REGISTRY):
        info = _REGISTRY[name]
        if not getattr(info.builder, "__module__", "").startswith("cnnzoo.models."):
            continue  # registered at run time, not shipped
        record = {}
        for key in _record_keys():
            value = getattr(info, key)
            if isinstance(value, (Paper, ReportedAccuracy)):
                value = dataclasses.asdict(value)
            elif isinstance(value, tuple):
                value = list(value)
            record[key] = value
        models[name] = record
    return {
        "generated_by": REGENERATE,
        "format": FORMAT,
        "family_modules": family_module_names(MODELS_DIR),
        "models": models,
    }


def render(index: dict) -> str:
    """The file's text: one line per model (a new model is a one-line diff), UTF-8."""

    def dump(value) -> str:
        return json.dumps(value, ensure_ascii=False)

    header = [f" {dump(key)}: {dump(value)}," for key, value in index.items() if key != "models"]
    models = ",\n".join(f"  {dump(name)}: {dump(record)}" for name, record in index["models"].items())
    return "\n".join(["{", *header, ' "models": {', models, " }", "}"]) + "\n"


def _records(data: dict) -> dict[str, ModelInfo]:
    records = {}
    for name, record in data["models"].items():
        fields = dict(record)
        fields["paper"] = Paper(**fields["paper"])
        fields["input_size"] = tuple(fields["input_size"])
        if fields.get("reported") is not None:
            fields["reported"] = ReportedAccuracy(**fields["reported"])
        records[name] = ModelInfo(name=name, **fields)
    return records


def _read() -> Mapping[str, ModelInfo]:
    try:
        data = json.loads(INDEX_PATH.read_text(encoding="utf-8"))
        now = family_module_names(MODELS_DIR)
        if data.get("format") != FORMAT:
            problem = f"format {data.get('format')!r}, expected {FORMAT}"
        elif data["family_modules"] != now:
            new = sorted(set(now) - set(data["family_modules"]))
            gone = sorted(set(data["family_modules"]) - set(now))
            problem = "family modules changed: " + ", ".join(
                [f"new {', '.join(new)}"] * bool(new) + [f"gone {', '.join(gone)}"] * bool(gone)
            )
        else:
            return _records(data)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        problem = f"unreadable: {exc}"
    print(
        f"cnnzoo: note: the model index {INDEX_PATH} is out of date ({problem}); reading the model "
        f"files instead (slower); regenerate it with `{REGENERATE}`",
        file=sys.stderr,
    )
    from cnnzoo.registry import _REGISTRY, _ensure_models_imported

    _ensure_models_imported()
    return _REGISTRY


def load_index() -> Mapping[str, ModelInfo]:
    """Every shipped model's record (``builder`` is None), read once per process, without torch."""
    global _loaded
    if _loaded is None:
        _loaded = _read()
    return _loaded


def differences(path: Path = INDEX_PATH) -> list[str]:
    """What differs between the file at ``path`` and the live registry (empty: in sync)."""
    want_text = render(build_index())
    want = json.loads(want_text)
    try:
        have_text = path.read_text(encoding="utf-8")
        have = json.loads(have_text)
    except (OSError, ValueError) as exc:
        return [f"cannot read it: {exc}"]
    if not isinstance(have, dict) or not isinstance(have.get("models"), dict):
        return ["it has no 'models' table"]
    problems = []
    wanted, held = want["models"], have["models"]
    for label, names in (
        ("registered but not in the index", sorted(set(wanted) - set(held))),
        ("in the index but not registered", sorted(set(held) - set(wanted))),
        ("records that differ", sorted(n for n in set(wanted) & set(held) if wanted[n] != held[n])),
        ("header fields that differ", sorted(k for k in want if k != "models" and want[k] != have.get(k))),
    ):
        if names:
            problems.append(f"{label}: {', '.join(names)}")
    if not problems and have_text != want_text:
        problems.append("same records, other formatting")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=REGENERATE, description=f"Regenerate {INDEX_PATH.name}, the torch-free metadata of every model."
    )
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if the index is out of date")
    parser.add_argument("--path", type=Path, default=INDEX_PATH, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.check:
        problems = differences(args.path)
        for problem in problems:
            print(f"{args.path}: {problem}", file=sys.stderr)
        if problems:
            print(f"regenerate it with `{REGENERATE}`", file=sys.stderr)
            return 1
        print(f"{args.path} is up to date")
        return 0
    index = build_index()
    args.path.write_text(render(index), encoding="utf-8")
    print(f"wrote {args.path} ({len(index['models'])} models)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
