"""The table of trained weights that ship with cnnzoo, read without torch.

``weights/pretrained.json`` holds one entry per *tag* (``lenet5.fashion_mnist``: the
architecture's registered name, a dot, the pretrained configuration, timm's convention):

* ``spec``: the architecture's :class:`~cnnzoo.modelspec.ModelSpec` record (builder, options,
  classes, channels, transforms), what :meth:`ModelSpec.build` rebuilds;
* ``file``, ``sha256``, ``dtype``, ``bytes``: the safetensors file beside the table, its hash
  (checked on every load) and how its tensors are stored (``float16`` files are upcast to
  float32 when loaded); ``file`` is null for the larger nets whose weights are not shipped
  (their rows still give the command that trains them and the size they would take);
* ``run``: what a run's ``run.json`` says about the data (data set, classes, channels, stored
  and input size, mean/std) and ``config``: the run's resolved training configuration;
* ``test_top1`` (percent, what ``cnnzoo eval TAG`` gives on the whole test split, in float32
  on the stored weights), ``params``, ``command`` (the exact training command), ``machine``
  (``lscpu``'s model name), ``date`` and ``train_seconds``.

Entries are written by :mod:`cnnzoo.pretrained.ship`; this module only reads them.
"""

from __future__ import annotations

import difflib
import fnmatch
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from cnnzoo.errors import CnnzooError, ConfigError

#: where the shipped weights and their table live (tests point it at a copy)
WEIGHTS_DIR = Path(__file__).parent / "weights"
TABLE_FILE = "pretrained.json"
FORMAT = "cnnzoo-pretrained-1"
#: the ``dtype`` of an entry whose file is a Deep Compression ``model.dcz`` (decoded when loaded)
DEEP_COMPRESSION = "deep-compression"

#: ``name.tag``: a registered name, one dot, a tag of letters, digits and underscores
_TAG_FORM = re.compile(r"^([A-Za-z0-9_]+)\.([A-Za-z0-9_]+)$")
#: file suffixes that are never tags: a missing ``weights.pth`` is a missing file, not an unknown tag
_FILE_SUFFIXES = {"pth", "pt", "bin", "ckpt", "safetensors", "onnx", "png", "jpg", "jpeg", "json", "yaml", "yml"}


class PretrainedError(CnnzooError):
    """Shipped weights that are unknown, not shipped, or damaged."""


class UnknownTagError(PretrainedError, ConfigError):
    """A pretrained tag that is not in the table."""


def weights_dir() -> Path:
    return Path(WEIGHTS_DIR)


def read_table(folder: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    """``{tag: entry}`` from the table (an empty table when there is no file yet)."""
    file = Path(folder or weights_dir()) / TABLE_FILE
    if not file.is_file():
        return {}
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise PretrainedError(f"cannot read the pretrained table {file}: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("weights"), dict):
        raise PretrainedError(f"{file} is not a cnnzoo pretrained table")
    return dict(data["weights"])


def table_bytes(entries: dict[str, dict[str, Any]]) -> bytes:
    """The table file's content for ``entries`` (sorted by tag, one stable layout)."""
    data = {"format": FORMAT, "weights": {tag: entries[tag] for tag in sorted(entries)}}
    return (json.dumps(data, indent=1) + "\n").encode()


def split_tag(text: str) -> tuple[str, str | None]:
    """``"resnet20.fashion_mnist"`` -> ``("resnet20", "fashion_mnist")``; a plain name -> ``(name, None)``."""
    match = _TAG_FORM.match(str(text))
    return (match.group(1), match.group(2)) if match else (str(text), None)


def looks_like_tag(text) -> bool:
    """True for the ``name.tag`` form when ``text`` is not an existing file or folder (those win)."""
    text = str(text)
    tag = split_tag(text)[1]
    return tag is not None and tag.lower() not in _FILE_SUFFIXES and not os.path.exists(text)


def list_pretrained(pattern: str = "*", *, shipped: bool = True) -> list[str]:
    """The pretrained tags matching a shell-style wildcard, sorted (timm's ``list_pretrained``).

    ``shipped=False`` adds the table's rows whose weights are not shipped (the larger nets).
    """
    return sorted(tag for tag, entry in read_table().items()
                  if fnmatch.fnmatchcase(tag, pattern) and (entry.get("file") or not shipped))  # fmt: skip


def _known(entries: dict[str, dict[str, Any]]) -> str:
    shipped = [tag for tag, entry in sorted(entries.items()) if entry.get("file")]
    return ", ".join(shipped) if shipped else "none yet"


def pretrained_entry(tag: str, *, need_weights: bool = True) -> dict[str, Any]:
    """The table's entry for ``tag``; an unknown tag (or, with ``need_weights``, one not shipped) is one line."""
    entries = read_table()
    entry = entries.get(tag)
    if entry is None:
        close = difflib.get_close_matches(tag, entries, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}? " if close else ""
        raise UnknownTagError(f"no pretrained weights {tag!r}; {hint}shipped: {_known(entries)} "
                              "(see cnnzoo.list_pretrained())")  # fmt: skip
    if need_weights and not entry.get("file"):
        size = entry.get("bytes")
        how = f" ({size / 1e6:.2f} MB as {entry.get('dtype', 'float32')})" if size else ""
        raise PretrainedError(f"the weights of {tag} are not shipped{how}; train them with: {entry.get('command')}")
    return dict(entry, tag=tag)


def tag_for_name(name: str) -> str:
    """The one shipped tag of model ``name`` (``pretrained=True`` without a tag); else a one-line error."""
    entries = read_table()
    tags = sorted(tag for tag, entry in entries.items() if entry.get("file") and split_tag(tag)[0] == name)
    if len(tags) == 1:
        return tags[0]
    if tags:
        raise UnknownTagError(f"{name} has several pretrained weights: {', '.join(tags)}; name one")
    raise UnknownTagError(f"no pretrained weights for {name}; shipped: {_known(entries)}")


def weights_file(entry: dict[str, Any]) -> Path:
    return weights_dir() / entry["file"]


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_checked_bytes(entry: dict[str, Any]) -> bytes:
    """The shipped file's bytes, read once and checked against the table's sha256 (a damaged file is one line)."""
    path = weights_file(entry)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PretrainedError(f"the weights of {entry['tag']} ({path}) cannot be read: "
                              f"{' '.join(str(exc).split())}; reinstall cnnzoo") from None  # fmt: skip
    digest = sha256_of(data)
    if digest != entry["sha256"]:
        raise PretrainedError(f"the weights of {entry['tag']} ({path}) are damaged: sha256 {digest[:12]}... "
                              f"differs from the table's {entry['sha256'][:12]}...; reinstall cnnzoo")  # fmt: skip
    return data


__all__ = [
    "PretrainedError",
    "UnknownTagError",
    "list_pretrained",
    "looks_like_tag",
    "pretrained_entry",
    "read_table",
    "split_tag",
    "tag_for_name",
]
