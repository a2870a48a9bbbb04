"""What the experiments share: their output folder, their runs, their flags and their plot.

An experiment is its variants, one training run each, and a table and a plot made from them:

* :class:`ExperimentDir`: the output folder (``--out``) is a run directory
  (:class:`~cnnzoo.rundir.RunDir`) of kind ``experiment:NAME`` whose ``run.json`` records the
  settings the experiment's runs are trained with.  Running the experiment again into the same
  folder with other settings is refused, naming the keys that differ
  (:func:`~cnnzoo.rundir.check_same_settings`); with the same settings it continues.
* :func:`train_once`: one variant's training in its own run directory below that folder.  A
  finished run is reused (when its ``config.yaml`` has the settings asked for now), an
  unfinished one is continued with ``fit(..., resume=True)`` (from its last checkpoint, or
  from scratch when it has none yet), nothing is deleted.  A run stopped by Ctrl-C or
  SIGTERM stops the experiment with :class:`ExperimentInterrupted` and the signal's exit code
  (128 + its number), also when the signal came after the last training step.
* :func:`add_training_flags` / :func:`training_values`: the training flags (``--epochs``,
  ``--lr``, ``--data``, ...) generated from :class:`~cnnzoo.train.config.TrainConfig`, with the
  experiment's own defaults (read from its ``run_*_experiment`` function's signature).
* :func:`figure`: a matplotlib figure on the Agg backend, saved atomically when the block ends.
"""

from __future__ import annotations

import argparse
import csv
import inspect
import io
import json
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from cnnzoo.errors import CnnzooError, ConfigError
from cnnzoo.rundir import OutputDirError, RunDir, atomic_write_bytes, check_same_settings, read_record


class ExperimentInterrupted(CnnzooError):
    """A training stopped by Ctrl-C or SIGTERM; its checkpoint lets the same command resume it."""

    def __init__(self, message: str, exit_code: int = 130) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# ------------------------------------------------------------------------------------------
# the experiment's folder
# ------------------------------------------------------------------------------------------


class ExperimentDir:
    """The output folder of one experiment (see the module docstring).

    >>> exp = ExperimentDir.open("runs/experiment-batchnorm", "batchnorm", {"lr": 0.05})  # doctest: +SKIP
    >>> exp / "bn"                      # a variant's run directory        # doctest: +SKIP
    """

    def __init__(self, run: RunDir, name: str, settings: dict[str, Any]) -> None:
        self.run = run
        self.name = name
        #: the settings in ``run.json`` (those of earlier calls too)
        self.settings = settings

    @property
    def path(self) -> Path:
        return self.run.path

    def __truediv__(self, name: str) -> Path:
        return self.run.path / name

    def __fspath__(self) -> str:
        return str(self.run.path)

    @classmethod
    def open(cls, out: str | Path, name: str, settings: dict[str, Any], *, check: bool = True) -> "ExperimentDir":
        """Create or continue the experiment in ``out``; refuse other settings (``check``) or other folders.

        The settings are merged into those already recorded: a key one call does not give (one
        that only some variants have) is kept and compared the next time it is given, a key not
        recorded yet is added.  ``check=False`` is for an experiment that reuses nothing (its
        table is recomputed every time).
        """
        kind = f"experiment:{name}"
        target = Path(out)
        record = read_record(target) if target.is_dir() else None
        if record is not None and record["kind"] != kind:
            raise OutputDirError(f"{target} holds a {record['kind']} run, not the {name} experiment; "
                                 "choose another --out")  # fmt: skip
        saved = dict((record or {}).get("settings") or {})
        wanted = json.loads(json.dumps(settings))  # tuples as lists: what run.json will hold
        if check and record is not None:
            check_same_settings(saved, {k: v for k, v in wanted.items() if k in saved},
                                f"the {name} experiment in {target}",
                                advice="choose another --out, or delete that folder to start again")  # fmt: skip
        run = RunDir.open(target, kind, resume=record is not None)
        merged = {**saved, **wanted}
        run.start({"settings": merged})
        return cls(run, name, merged)

    def read_json(self, name: str, default: Any = None) -> Any:
        """``name`` in the folder as JSON; ``default`` when there is no such file."""
        return self.run.read_json(name) if (self.path / name).is_file() else default

    def write_json(self, name: str, value: Any) -> Path:
        return self.run.write_json(name, value)


# ------------------------------------------------------------------------------------------
# one variant's training
# ------------------------------------------------------------------------------------------


def finished(run_dir: Path) -> bool:
    """True when the run in ``run_dir`` ended and was evaluated (the engine writes results.json last)."""
    return RunDir(run_dir, "train").finished


def run_history(run_dir: Path) -> list[dict[str, float]]:
    """The per-epoch rows of ``run_dir/metrics.csv`` (numbers, not strings)."""
    from cnnzoo.train.metrics import read_metrics_csv

    return read_metrics_csv(Path(run_dir) / "metrics.csv")


def run_results(run_dir: Path) -> dict[str, Any]:
    """``run_dir/results.json``: the final evaluation (split, top1, top5, best_epoch, ...)."""
    return RunDir(run_dir, "train").read_json("results.json")


def train_once(run_dir: Path, train: Callable[..., Any], *, wanted: dict[str, Any] | None = None, kind: str = "train",
               log: Callable[[str], None] = print, what: str = "") -> bool:  # fmt: skip
    """``train(resume=...)`` unless the run in ``run_dir`` already finished; True if it trained.

    ``train`` writes its run into ``run_dir`` with the engine (``fit`` or ``finetune``, of run
    kind ``kind``) and returns its ``FitResult``.  ``resume`` is True
    when ``run_dir`` holds a run of that kind (continued from its last checkpoint, or from
    scratch without one); a finished run is reused only when its ``config.yaml`` matches
    ``wanted`` (configuration keys).  A run stopped by a signal, or one that a signal reached
    after its last step (``FitResult.signal``), raises :class:`ExperimentInterrupted` with the
    signal's exit code.
    """
    run_dir = Path(run_dir)
    what = what or run_dir.name
    if finished(run_dir):
        if wanted is not None:
            check_finished_run(run_dir, wanted)
        log(f"{what}: already trained ({run_dir}), reusing it")
        return False
    record = read_record(run_dir) if run_dir.is_dir() else None
    resume = record is not None and record["kind"] == kind
    if resume:
        start = "its last checkpoint" if RunDir(run_dir, kind).has_checkpoint() else "the start (no checkpoint yet)"
        log(f"{what}: resuming the unfinished run in {run_dir} from {start}")
    result = train(resume=resume)
    name = getattr(result, "signal", None)
    if name is None and getattr(result, "status", None) == "interrupted":
        name = "a signal on another process"
    if name is not None:
        raise ExperimentInterrupted(f"{what}: training interrupted ({name}); run the same command again to "
                                    "continue where it stopped", result.exit_code)  # fmt: skip
    return True


def check_finished_run(run_dir: Path, wanted: dict[str, Any]) -> None:
    """Refuse to reuse the finished run in ``run_dir`` when its ``config.yaml`` differs from ``wanted``."""
    from cnnzoo.train.config import RESUME_FREE_KEYS, check_keys, read_config, to_dict

    saved = to_dict(read_config(Path(run_dir) / "config.yaml"))
    check_same_settings(saved, check_keys(wanted, "option"), f"the finished run in {run_dir}",
                        ignore=RESUME_FREE_KEYS | {"recipe"},
                        advice="choose another --out, or delete that run to train it again")  # fmt: skip


# ------------------------------------------------------------------------------------------
# the training flags, generated from the configuration
# ------------------------------------------------------------------------------------------

#: configuration keys whose value 0 on an experiment's command line means "none" (no limit, no clipping)
ZERO_MEANS_NONE = ("limit_train", "limit_val", "grad_clip")
_ZERO_NOTES = {"limit_train": "0: all", "limit_val": "0: all", "grad_clip": "0: no clipping"}


def experiment_defaults(function: Callable, keys: Iterable[str]) -> dict[str, Any]:
    """The default of each of ``keys`` in ``function``'s signature (the experiment's ``run_*`` function)."""
    parameters = inspect.signature(function).parameters
    return {key: parameters[key].default for key in keys}


def add_training_flags(parser: argparse.ArgumentParser, function: Callable, flags: dict[str, str], *,
                       out: str) -> None:  # fmt: skip
    """The flags of the configuration keys ``flags`` (help from :class:`~cnnzoo.train.config.TrainConfig`), ``--out``.

    ``flags`` maps each key to a note for its help ("" for none); the help shows the
    experiment's default (``function``'s) instead of the configuration's.
    """
    from cnnzoo.train.config import add_config_flags

    defaults = experiment_defaults(function, flags)
    extra = {key: "; ".join(n for n in (note, _ZERO_NOTES.get(key, "")) if n) for key, note in flags.items()}
    add_config_flags(parser, keys=list(flags), recipe=False)
    for action in parser._actions:
        if action.dest in defaults:
            text = re.sub(r"\(default: [^()]*\)$", "", action.help or "").rstrip()
            shown = _shown(defaults[action.dest])
            if defaults[action.dest] is None and ("(default" in text or extra[action.dest]):
                shown = ""  # the help says it already ("(default: the usual places)"), or the note does
            shown = "; ".join(part for part in (shown, extra[action.dest]) if part)
            action.help = f"{text} (default: {shown})" if shown else text
        elif action.dest == "set":
            action.help = "one of the training keys above, e.g. --set lr=0.1 (repeatable)"
    parser.add_argument("--out", default=out, metavar="DIR",
                        help=f"output folder: the experiment's runs, tables and plot (default {out}); the same "
                        "command again continues the experiment in it")  # fmt: skip


def training_experiment(name: str, help: str, function: Callable, flags: dict[str, str],
                        arguments: Callable[[argparse.ArgumentParser], None]):  # fmt: skip
    """Register ``cnnzoo experiment NAME`` for an experiment that trains: decorates ``run(args, training)``.

    Its flags are ``arguments(parser)``'s (the experiment's own), then the training ``flags``
    and ``--out`` (default ``runs/experiment-NAME``; :func:`add_training_flags`); ``training``
    is :func:`training_values`.
    """
    from cnnzoo.experiments import register_experiment

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        arguments(parser)
        add_training_flags(parser, function, flags, out=f"runs/experiment-{name}")

    def decorator(run: Callable[[argparse.Namespace, dict[str, Any]], int]):
        def command(args: argparse.Namespace) -> int:
            return run(args, training_values(args, function, flags))

        register_experiment(name, help, add_arguments)(command)
        return run

    return decorator


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return "x".join(map(str, value))
    return str(value)


def training_values(args: argparse.Namespace, function: Callable, keys: Iterable[str]) -> dict[str, Any]:
    """The values of the training flags, ``function``'s default for each one not given; checked.

    0 means None for :data:`ZERO_MEANS_NONE`; an input size ``N`` is ``[N, N]``; a value out of
    range (a negative limit, ``--lr 0``, an unknown ``--optimizer``) is a one-line ConfigError.
    """
    from cnnzoo.train.config import overrides_from_args, resolve

    given = overrides_from_args(args)
    given.pop("out", None)
    keys = list(keys)
    extra = sorted(set(given) - set(keys))
    if extra:
        raise ConfigError(f"--set {extra[0]}: this experiment sets it itself; it takes "
                          f"{', '.join(k.replace('_', '-') for k in keys)}")  # fmt: skip
    values = {**experiment_defaults(function, keys), **given}
    for key in ZERO_MEANS_NONE:
        if key in values and values[key] is not None:
            if values[key] < 0:
                raise ConfigError(f"--{key.replace('_', '-')} must be >= 0 ({_ZERO_NOTES[key]}), got {values[key]}")
            values[key] = values[key] or None
    if values.get("input_size") is not None:
        size = [int(v) for v in values["input_size"]]
        values["input_size"] = size * 2 if len(size) == 1 else size
    resolve(None, {**values, "model": "experiment"})  # the configuration's own range checks
    return values


# ------------------------------------------------------------------------------------------
# tables, files and the plot
# ------------------------------------------------------------------------------------------


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """A Markdown table; ``align`` has one letter per column, ``l`` or ``r`` (default: first left, rest right)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(str(h) for h in header) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def percent(value: float | None, digits: int = 2) -> str:
    """``0.9234`` -> ``"92.34%"``; None -> ``"-"``."""
    return "-" if value is None else f"{100 * value:.{digits}f}%"


def write_text(path: Path, text: str) -> Path:
    """``text`` into ``path`` atomically (a kill leaves the old file or the new one)."""
    atomic_write_bytes(Path(path), text.encode())
    return Path(path)


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """A CSV file with ``header`` and ``rows``, written atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return write_text(path, buffer.getvalue())


@contextmanager
def figure(path: Path, nrows: int = 1, ncols: int = 1, *, dpi: int = 120, **subplots) -> Iterator[tuple[Any, Any]]:
    """``with figure(path, 1, 2, figsize=(11, 4)) as (fig, axes):`` draw; the PNG is saved when the block ends.

    matplotlib on the Agg backend (no display), ``tight_layout``, written atomically; the
    figure is closed also when drawing fails (and then nothing is written).
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, ncols, **subplots)
    try:
        yield fig, axes
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi)
        atomic_write_bytes(Path(path), buffer.getvalue())
    finally:
        plt.close(fig)


# ------------------------------------------------------------------------------------------
# argparse types
# ------------------------------------------------------------------------------------------


def check_at_least(*limits: tuple[str, int, int]) -> None:
    """``(flag, value, lowest)`` triples: the first value below its lowest is a one-line error."""
    for flag, value, low in limits:
        if value < low:
            raise ConfigError(f"{flag} must be >= {low}, got {value}")


def int_list(text: str) -> list[int]:
    """argparse type: ``"10,50,500"`` -> ``[10, 50, 500]``."""
    return _number_list(text, int, "comma-separated integers")


def float_list(text: str) -> list[float]:
    """argparse type: ``"0.8,0.85"`` -> ``[0.8, 0.85]``."""
    return _number_list(text, float, "comma-separated numbers")


def image_limit(text: str) -> int | None:
    """argparse type: a number of images, ``0`` for all of them (None)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of images (0: all), got {text!r}")
    return value or None


def _number_list(text: str, kind: type, what: str) -> list:
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one value")
    return values
