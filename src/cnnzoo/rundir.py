"""The run directory: one folder per training (or fine-tuning, experiment, pruning, ...).

Every command that writes results goes through :class:`RunDir`, which owns

* the default name (``runs/<parts>-<timestamp>``);
* the refusal to write into a folder that is not a run of this kind, or that holds another
  run, unless ``--resume`` says so: a user's files are never overwritten;
* creating the folder only when the run really starts (:meth:`RunDir.start`); a run that
  fails before its first checkpoint removes what it created (:meth:`RunDir.abandon`);
* resume and "already finished" detection (``last`` checkpoint, ``results.json``);
* the settings guard that names the keys that differ (:func:`check_same_settings`);
* atomic writes (a temporary file, fsync, ``os.replace``) with the user's umask.

A run's identity is ``run.json``: its ``kind`` ("train", "finetune", "experiment:NAME"), the
format and, for trainings, the model record (:class:`~cnnzoo.modelspec.ModelSpec`) and what the
net was trained on; :func:`load_run` rebuilds the trained model from it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

from cnnzoo.errors import CnnzooError, ConfigError

RUN_FILE = "run.json"
RESULTS_FILE = "results.json"
FORMAT = "cnnzoo-run-1"


class OutputDirError(CnnzooError):
    """The run directory cannot be written, or already holds something else."""


class SettingsChanged(ConfigError):
    """A run is continued or reused with other settings than it was made with."""

    def __init__(self, message: str, keys: list[str]) -> None:
        super().__init__(message)
        self.keys = keys


# ------------------------------------------------------------------------------------------
# atomic writes with the user's umask
# ------------------------------------------------------------------------------------------


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace``: a kill leaves the old or the new file.

    ``mkstemp`` creates its file 0600; the finished file gets ``0666 & ~umask`` like any
    file the user creates (0644 under the usual 022).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def writable_file(path: str | os.PathLike, what: str = "output file") -> Path:
    """Check, before any work, that ``path`` can be written as a file (one-line error otherwise)."""
    path = Path(path)
    if path.is_dir():
        raise OutputDirError(f"{what} {path} is a directory; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputDirError(f"cannot write {what} {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise OutputDirError(f"cannot write {what} {path}: permission denied")
    return path


def new_file(path: str | os.PathLike, what: str = "output file") -> Path:
    """:func:`writable_file`, and nothing there yet: a user's file is never overwritten."""
    path = writable_file(path, what)
    if path.exists():
        raise OutputDirError(f"{path} already exists; remove it or choose another file name")
    return path


# ------------------------------------------------------------------------------------------
# the run directory
# ------------------------------------------------------------------------------------------


def default_path(*parts: str, root: str | os.PathLike = "runs") -> Path:
    """``runs/<part>-<part>-YYYYmmdd-HHMMSS`` (a data set's ``name:arg`` keeps only its name)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    clean = [str(p).split(":", 1)[0] for p in parts if p]
    return Path(root) / "-".join([*clean, stamp])


def read_record(folder: Path) -> dict[str, Any] | None:
    """``folder/run.json`` as a dict; None when there is none; a one-line error when it is damaged."""
    file = Path(folder) / RUN_FILE
    if not file.is_file():
        return None
    try:
        record = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise OutputDirError(f"cannot read {file}: {' '.join(str(exc).split())}") from None
    if not isinstance(record, dict):
        raise OutputDirError(f"{file} is not a cnnzoo run record")
    record.setdefault("kind", "train")  # runs written before kinds were recorded were trainings
    return record


class RunDir:
    """One run's folder; see the module docstring.

    >>> run = RunDir.open("runs/x", kind="train", resume=False)    # doctest: +SKIP
    >>> run.start({"model": ...})         # the folder exists from here on  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike, kind: str, resuming: bool = False) -> None:
        self.path = Path(path)
        self.kind = kind
        #: True when this call continues an existing run
        self.resuming = resuming
        self._created: list[Path] = []  # folders this call made, innermost last

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    # -- opening --------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike | None, kind: str, *, resume: bool = False,
             default_parts: Iterable[str] = (), latest: str | None = None) -> "RunDir":  # fmt: skip
        """Check ``path`` for a run of ``kind`` (nothing is created yet).

        Without ``resume`` the folder must not exist, be empty, or be a run of ``kind`` that
        never got past its start (no checkpoint, no results).  With ``resume`` it must hold
        a run of ``kind``; without a path, ``latest`` is a glob under ``runs/`` whose newest
        resumable match is taken.
        """
        if path is None and resume and latest:
            return cls(_latest(latest, kind), kind, resuming=True)
        target = Path(path) if path is not None else default_path(*default_parts)
        if target.exists() and not target.is_dir():
            raise OutputDirError(f"{target} is a file, not a run directory; choose another --out")
        record = read_record(target) if target.is_dir() else None
        busy = target.is_dir() and any(target.iterdir())
        if resume:
            if record is None:
                what = "does not exist" if not target.exists() else "is not a cnnzoo run directory"
                raise OutputDirError(f"--resume: no checkpoint in {target}: the folder {what}")
            if record["kind"] != kind:
                raise OutputDirError(f"--resume: {target} holds a {record['kind']} run, not a {kind} run")
            return cls(target, kind, resuming=True)
        if busy:
            if record is None:
                raise OutputDirError(f"{target} already exists and is not a cnnzoo run directory; "
                                     "choose another --out (nothing was written)")  # fmt: skip
            if record["kind"] != kind:
                raise OutputDirError(f"{target} holds a {record['kind']} run; choose another --out")
            raise OutputDirError(f"{target} already holds a run: pass --resume to continue it, or choose another --out")
        check_creatable(target)
        return cls(target, kind)

    # -- state ----------------------------------------------------------------------------
    @property
    def record(self) -> dict[str, Any] | None:
        return read_record(self.path)

    def has_checkpoint(self, tag: str = "last") -> bool:
        return (self.path / f"{tag}.state.pt").is_file()

    @property
    def finished(self) -> bool:
        """The run ended and was evaluated (``results.json`` is written last)."""
        return (self.path / RESULTS_FILE).is_file()

    # -- writing --------------------------------------------------------------------------
    def start(self, record: dict[str, Any]) -> None:
        """Create the folder (when new) and write ``run.json``; from here on the run exists."""
        if not self.path.exists():
            missing = []
            folder = self.path
            while not folder.exists():
                missing.append(folder)
                folder = folder.parent
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OutputDirError(f"cannot write to output directory {self.path}: {exc.strerror or exc}") from None
            self._created = list(reversed(missing))
        probe = self.path / f".write-test-{os.getpid()}"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            self.abandon()
            raise OutputDirError(f"cannot write to output directory {self.path}: {exc.strerror or exc}") from None
        full = {"format": FORMAT, **(self.record or {}), **record}
        full["kind"] = self.kind
        self.write_json(RUN_FILE, full)

    def abandon(self) -> None:
        """After a failed start: remove the folders this call created, if nothing worth keeping is in them."""
        if not self._created or self.has_checkpoint():
            return
        shutil.rmtree(self._created[0], ignore_errors=True)
        self._created = []

    def write_bytes(self, name: str, data: bytes) -> Path:
        atomic_write_bytes(self.path / name, data)
        return self.path / name

    def write_text(self, name: str, text: str) -> Path:
        return self.write_bytes(name, text.encode())

    def write_json(self, name: str, value: Any) -> Path:
        return self.write_text(name, json_text(value))

    def read_json(self, name: str) -> Any:
        return read_json_file(self.path / name, f"is {self.path} a cnnzoo run directory?")


def json_text(value: Any) -> str:
    """``value`` as the JSON every cnnzoo record file holds (indented, a final newline)."""
    return json.dumps(value, indent=2) + "\n"


def read_json_file(file: Path, hint: str = "") -> Any:
    """The JSON in ``file``; a missing or unreadable file is a one-line :class:`OutputDirError` (``hint`` added)."""
    try:
        return json.loads(Path(file).read_text())
    except FileNotFoundError:
        raise OutputDirError(f"{file} not found{': ' + hint if hint else ''}") from None
    except (OSError, ValueError) as exc:
        raise OutputDirError(f"cannot read {file}: {' '.join(str(exc).split())}") from None


def check_creatable(target: Path) -> None:
    """The folder ``target`` can be made (or written) here; checked before any work."""
    folder = target
    while not folder.exists():
        if folder.parent == folder:
            break
        folder = folder.parent
    if not folder.is_dir():
        raise OutputDirError(f"cannot write to output directory {target}: {folder} is not a directory")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputDirError(f"cannot write to output directory {target}: permission denied on {folder}")


def _latest(pattern: str, kind: str) -> Path:
    candidates = sorted(p for p in Path("runs").glob(pattern) if (p / "last.state.pt").is_file())
    candidates = [p for p in candidates if (read_record(p) or {}).get("kind") == kind]
    if not candidates:
        raise OutputDirError(f"--resume: no {kind} run matching runs/{pattern}; give its directory with --out")
    return candidates[-1]


# ------------------------------------------------------------------------------------------
# the settings guard
# ------------------------------------------------------------------------------------------


def differing(saved: dict[str, Any], wanted: dict[str, Any], ignore: Iterable[str] = ()) -> list[str]:
    """The keys of ``wanted`` whose value differs from ``saved``'s (numbers compared as numbers)."""
    skip = set(ignore)
    return sorted(k for k, v in wanted.items() if k not in skip and _normal(saved.get(k)) != _normal(v))


def check_same_settings(saved: dict[str, Any], wanted: dict[str, Any], where: str, ignore: Iterable[str] = (),
                        advice: str = "start a new run (another --out) instead") -> None:  # fmt: skip
    """Raise :class:`SettingsChanged` naming every key whose value differs from the saved one."""
    keys = differing(saved, wanted, ignore)
    if keys:
        details = ", ".join(f"{k} ({saved.get(k)!r} -> {wanted[k]!r})" for k in keys)
        raise SettingsChanged(f"{where} was made with other settings: {details}; {advice}", keys)


def _normal(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_normal(v) for v in value]
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    return value
