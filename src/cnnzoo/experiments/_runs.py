"""What the experiments that compare training runs share.

An experiment trains several networks the same way and compares their ``metrics.csv``.  Each
training gets its own run directory under the experiment's output folder; a run whose
``results.json`` exists finished, so an interrupted experiment, started again with the same
command, trains only what is missing (a run left half-way is resumed from its last
checkpoint by the engine's ``--resume``).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any, Callable, Sequence

from cnnzoo.errors import CnnzooError


class ExperimentInterrupted(CnnzooError):
    """A training stopped by Ctrl-C or SIGTERM; its checkpoint lets the same command resume it."""

    def __init__(self, message: str, exit_code: int = 130) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def finished(run_dir: Path) -> bool:
    """True when the run in ``run_dir`` ended and was evaluated (the engine writes results.json last)."""
    return (Path(run_dir) / "results.json").is_file()


def run_history(run_dir: Path) -> list[dict[str, float]]:
    """The per-epoch rows of ``run_dir/metrics.csv`` (numbers, not strings)."""
    from cnnzoo.train.metrics import read_metrics_csv

    return read_metrics_csv(Path(run_dir) / "metrics.csv")


def run_results(run_dir: Path) -> dict[str, Any]:
    """``run_dir/results.json``: the final evaluation (split, top1, top5, best_epoch, ...)."""
    return json.loads((Path(run_dir) / "results.json").read_text())


def train_once(run_dir: Path, train: Callable[..., Any], log: Callable[[str], None] = print, what: str = "") -> bool:
    """Call ``train(resume=...)`` unless the run in ``run_dir`` already finished; True if it trained.

    ``train`` must write its run into ``run_dir``; it is told ``resume=True`` when a
    checkpoint of an unfinished earlier attempt is there, so nothing already trained is lost.
    When it returns the engine's :class:`~cnnzoo.train.FitResult` and that says the run was
    interrupted (Ctrl-C, SIGTERM: the engine saved a checkpoint and returned), the experiment
    stops with :class:`ExperimentInterrupted` and the signal's exit code.
    """
    run_dir = Path(run_dir)
    if finished(run_dir):
        log(f"{what or run_dir.name}: already trained ({run_dir}), reusing it")
        return False
    resume = (run_dir / "last.state.pt").is_file()
    if resume:
        log(f"{what or run_dir.name}: resuming the unfinished run in {run_dir}")
    elif run_dir.exists():  # stopped before its first checkpoint: nothing to keep
        shutil.rmtree(run_dir)
    result = train(resume=resume)
    if getattr(result, "status", None) == "interrupted":
        raise ExperimentInterrupted(f"{what or run_dir.name}: training interrupted ({result.signal}); run the same "
                                    "command again to continue where it stopped", result.exit_code)  # fmt: skip
    return True


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


def int_list(text: str) -> list[int]:
    """argparse type: ``"10,50,500"`` -> ``[10, 50, 500]``."""
    return _number_list(text, int, "comma-separated integers")


def float_list(text: str) -> list[float]:
    """argparse type: ``"0.8,0.85"`` -> ``[0.8, 0.85]``."""
    return _number_list(text, float, "comma-separated numbers")


def _number_list(text: str, kind: type, what: str) -> list:
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one value")
    return values
