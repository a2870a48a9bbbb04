"""``cnnzoo experiment nas``: RL against random search, and the best child against ResNet-20.

Issue 15, items 5 and 6, after Zoph & Le 2017 ("Neural Architecture Search with Reinforcement
Learning", ICLR, arXiv:1611.01578).  The paper's claim (Sec. 4.1, Figure 6 of its appendix) is
that the REINFORCE-trained controller finds better children than random search of the same
space at the same number of trials.  The paper trained 12,800 children on 800 GPUs (3.65% error
on CIFAR-10); here the question is asked at a CPU budget:

1. **The searches.**  One search per controller of ``--controllers`` (default ``rl,random``)
   and seed of ``--seeds`` (default ``0,1``), each in ``OUT/search-CONTROLLER-seedS`` through
   :func:`cnnzoo.search.runner.run_search`: ``--trials`` children of ``--depth`` layers, each
   trained ``--epochs`` on a seeded subset of ``--limit-train`` training images and rewarded with
   its validation top-1 (never the test split).  Both controllers of a seed see the same data
   split and child recipe, so only the controller differs.  By default the children are held to
   ResNet-20's multiply-adds at the data's size (``--max-macs resnet20``; a child over it is
   sampled again), so the final comparison is at similar cost.
2. **The winner.**  The architecture with the highest validation top-1 over every search (ties:
   the first search in the order above, then the earlier trial) is trained from scratch
   "fully" -- ``--final-epochs`` on ``--final-limit-train`` images (0: all) -- as a
   ``nas_child`` spec (``load_run`` rebuilds it), and ``resnet20`` (He et al. 2016's CIFAR net,
   at the data's own size) with the identical recipe: the children's (SGD, Nesterov momentum 0.9,
   weight decay 1e-4, cosine schedule; :data:`cnnzoo.search.trial.CHILD_RECIPE`) with the same
   batch size and learning rate, the same data split and seed (the first of ``--seeds``).  The
   test split is used here only, once, with each net's best validation weights.

Everything goes to ``OUT`` (default ``runs/experiment-nas``; a run directory of kind
``experiment:nas`` whose ``run.json`` records the settings): the searches, the run directories
``winner`` and ``resnet20``, ``results.md`` (a table per search, one per controller with the mean
and spread over seeds, the winner against ResNet-20, and verdicts computed from the numbers),
``results.csv`` and ``reward.png`` (reward against trial: per controller the mean over seeds of a
running mean with the min-max band over seeds, and the running best dashed).  The same command
again continues where it stopped: a finished search is reused (no new trial), an unfinished one
resumes (``run_search(resume=True)``), a finished training is reused and an unfinished one
resumes; other settings in the same folder are refused, naming the keys that differ.
"""

from __future__ import annotations

import argparse
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from cnnzoo.errors import CnnzooError, ConfigError
from cnnzoo.experiments import _runs, register_experiment

DEFAULT_CONTROLLERS = ("rl", "random")
DEFAULT_SEEDS = (0, 1)
# The default budget is the proposed measurement's (docs/experiments.md): on the 2-core machine a
# child of 6 layers within ResNet-20's multiply-adds trains 2 epochs of 4,000 images in ~25-40 s on one thread
# (2 trials timed with 13-16M multiply-adds while the other core was busy); see the docstring for the rest.
DEFAULT_TRIALS = 24
DEFAULT_EPOCHS = 2
DEFAULT_LIMIT_TRAIN = 4000
DEFAULT_DEPTH = 6
DEFAULT_FINAL_EPOCHS = 10
DEFAULT_FINAL_LIMIT_TRAIN = 10000
#: the children's batch size and peak learning rate (the search's defaults)
DEFAULT_BATCH_SIZE = 64
DEFAULT_LR = 0.05
#: the share of the training images held out for the reward (the search's default)
VAL_FRACTION = 0.1
#: the baseline net, and the word --max-macs takes for "its multiply-adds"
BASELINE = "resnet20"
#: trials in the running mean of reward.png
RUNNING_WINDOW = 8
SEARCH_FOLDER = "search-{controller}-seed{seed}"
WINNER_FOLDER = "winner"
CONTROLLER_LABELS = {"rl": "RL (REINFORCE)", "random": "random"}
COLOURS = {"rl": "tab:blue", "random": "tab:orange"}


@dataclass(frozen=True)
class SearchSummary:
    """One finished search, read from what :func:`~cnnzoo.search.runner.run_search` returned."""

    controller: str
    seed: int
    folder: Path
    rows: list[dict[str, Any]]  # trials.csv's rows as run_search keeps them, in trial order
    best: dict[str, Any] | None  # the search's best.json

    @property
    def rewards(self) -> list[float | None]:
        """Each trial's reward (validation top-1), None for a failed trial."""
        return [r["val_top1"] if r["status"] == "ok" else None for r in self.rows]

    @property
    def ok(self) -> int:
        return sum(value is not None for value in self.rewards)

    @property
    def best_val_top1(self) -> float | None:
        return None if self.best is None else self.best["val_top1"]

    @property
    def last_quarter_reward(self) -> float | None:
        """The mean reward of the last quarter of the trials (rounded up: at least one trial)."""
        rewards = self.rewards
        tail = [r for r in rewards[len(rewards) - math.ceil(len(rewards) / 4):] if r is not None]
        return statistics.fmean(tail) if tail else None

    @property
    def seconds(self) -> float:
        """The children's training time, summed (what the trials cost, not the wall time with workers)."""
        return sum(r["seconds"] or 0.0 for r in self.rows)


@dataclass(frozen=True)
class FinalRow:
    """One of the two fully trained nets, read back from its run directory."""

    name: str  # "winner" or "resnet20"
    model: str
    architecture: str  # the child's text; "" for ResNet-20
    source: str  # where the winner was found ("search-rl-seed0, trial 7"); "" for ResNet-20
    search_val_top1: float | None  # the winner's reward in its search
    params: int
    macs: int
    best_val_top1: float | None
    best_epoch: int | None
    test_top1: float | None
    epochs: int
    seconds: float


@dataclass(frozen=True)
class NasResults:
    searches: list[SearchSummary]
    winner: SearchSummary  # the search the winner came from
    finals: list[FinalRow]  # the winner, then ResNet-20
    max_macs: int | None
    verdict: str
    final_verdict: str


# ------------------------------------------------------------------------------------------
# the settings
# ------------------------------------------------------------------------------------------


def parse_controllers(text: str | Sequence[str]) -> list[str]:
    """``"rl,random"`` -> ``["rl", "random"]`` (repeats dropped); an unknown or no controller is a ConfigError."""
    from cnnzoo.search.controller import CONTROLLERS

    names = [n.strip() for n in text.split(",")] if isinstance(text, str) else [str(n).strip() for n in text]
    names = list(dict.fromkeys(n for n in names if n))
    if not names:
        raise ConfigError(f"--controllers: give at least one of {', '.join(CONTROLLERS)}")
    for name in names:
        if name not in CONTROLLERS:
            raise ConfigError(f"--controllers: unknown controller {name!r}; choose from {', '.join(CONTROLLERS)}")
    return names


def parse_seeds(text: str | Sequence[int]) -> list[int]:
    """``"0,1"`` -> ``[0, 1]`` (repeats dropped); no seed, or one that is not an integer, is a ConfigError."""
    parts = [p.strip() for p in text.split(",")] if isinstance(text, str) else list(text)
    try:
        seeds = [int(p) for p in parts if p != ""]
    except (TypeError, ValueError):
        raise ConfigError(f"--seeds: expected comma-separated integers, got {text!r}") from None
    if not seeds:
        raise ConfigError("--seeds: give at least one seed, e.g. --seeds 0,1")
    return list(dict.fromkeys(seeds))


def parse_max_macs(text: str) -> int | str | None:
    """``--max-macs``: ``resnet20`` (ResNet-20's multiply-adds at the data's size), a count (``3e7``), 0 for none."""
    if text.strip().lower() == BASELINE:
        return BASELINE
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        value = -1.0
    if not value.is_integer() or value < 0:
        raise ConfigError(f"--max-macs: expected {BASELINE}, a whole count such as 3e7, or 0 (no limit); got {text!r}")
    return int(value) or None


def baseline_cost(bundle) -> tuple[tuple[int, int], int, int]:
    """The input size both nets train at, and ResNet-20's ``(params, macs)`` there: ``(size, params, macs)``."""
    from cnnzoo.analysis import summary
    from cnnzoo.registry import create_model, model_info
    from cnnzoo.train.engine import choose_input_size

    data_size = tuple(bundle.image_size) if bundle.image_size else None
    size = choose_input_size(model_info(BASELINE), data_size, None)
    net = create_model(BASELINE, num_classes=len(bundle.classes), in_chans=int(bundle.in_chans))
    counted = summary(net, (int(bundle.in_chans), *size))
    return size, counted.total_params, counted.total_macs


# ------------------------------------------------------------------------------------------
# the experiment
# ------------------------------------------------------------------------------------------


def run_nas_experiment(
    *,
    data: str = "fashion-mnist",
    data_dir: str | None = None,
    controllers: str | Sequence[str] = DEFAULT_CONTROLLERS,
    seeds: str | Sequence[int] = DEFAULT_SEEDS,
    trials: int = DEFAULT_TRIALS,
    epochs: int = DEFAULT_EPOCHS,
    limit_train: int | None = DEFAULT_LIMIT_TRAIN,
    max_macs: int | str | None = BASELINE,
    depth: int = DEFAULT_DEPTH,
    batch_size: int = DEFAULT_BATCH_SIZE,
    lr: float = DEFAULT_LR,
    final_epochs: int = DEFAULT_FINAL_EPOCHS,
    final_limit_train: int | None = DEFAULT_FINAL_LIMIT_TRAIN,
    workers: int | None = None,
    threads: int | None = None,
    out: str | Path = "runs/experiment-nas",
    log: Callable[[str], None] = print,
) -> NasResults:
    """Run the searches, train the winner and ResNet-20, write the report; see the module docstring.

    ``limit_train`` / ``final_limit_train`` of None (or 0) keep every training image;
    ``max_macs``: a count, ``"resnet20"`` or None (no budget).  ``workers`` and ``threads`` say
    how the searches run (:func:`~cnnzoo.search.runner.run_search`'s; they may change between
    calls), ``threads`` also the final trainings' torch threads.  Every mistake a user can make
    is a one-line :class:`~cnnzoo.errors.CnnzooError` before anything is written.
    """
    controllers, seeds = parse_controllers(controllers), parse_seeds(seeds)
    if isinstance(max_macs, str):
        max_macs = parse_max_macs(max_macs)
    limit_train, final_limit_train = limit_train or None, final_limit_train or None
    _runs.check_at_least(("--trials", trials, 1), ("--epochs", epochs, 1), ("--depth", depth, 1),
                         ("--final-epochs", final_epochs, 1), ("--batch-size", batch_size, 1),
                         *[(flag, n, 1) for flag, n in (("--limit-train", limit_train),
                                                        ("--final-limit-train", final_limit_train)) if n])  # fmt: skip
    if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
        raise ConfigError(f"--lr must be a positive number, got {lr!r}")
    if workers is not None and workers < 0:
        raise ConfigError(f"--workers must be 0 (in this process) or more, got {workers}")
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")

    final_seed = seeds[0]
    bundle = _final_data(data, data_dir, final_seed, final_limit_train)  # a missing data set: before any write
    input_size, baseline_params, baseline_macs = baseline_cost(bundle)
    budget = baseline_macs if max_macs == BASELINE else max_macs
    _check_budget(depth, budget, bundle, input_size)
    recipe = final_recipe(final_epochs, batch_size, lr, final_seed, final_limit_train)
    settings = dict(data=data, controllers=controllers, seeds=seeds, trials=trials, epochs=epochs,
                    limit_train=limit_train, max_macs=budget, depth=depth, batch_size=batch_size, lr=lr,
                    val_fraction=VAL_FRACTION, final_epochs=final_epochs,
                    final_limit_train=final_limit_train)  # fmt: skip
    exp = _runs.ExperimentDir.open(out, "nas", settings)
    log(f"nas: {len(controllers) * len(seeds)} searches ({', '.join(controllers)} x seeds "
        f"{', '.join(map(str, seeds))}) of {trials} children ({depth} layers, {epochs} epochs on "
        f"{limit_train or 'all'} training images"
        f"{f', at most {budget:,} multiply-adds' if budget else ''}) in {exp.path}")  # fmt: skip
    searches = [
        _search(exp.path / SEARCH_FOLDER.format(controller=controller, seed=seed), controller, seed, log,
                data=data, data_dir=data_dir, trials=trials, epochs=epochs, limit_train=limit_train,
                val_fraction=VAL_FRACTION, batch_size=batch_size, lr=lr, max_macs=budget, space={"depth": depth},
                workers=workers, threads=threads)  # fmt: skip
        for controller in controllers
        for seed in seeds
    ]
    winner = choose_winner(searches)
    architecture = winner.best["architecture"]
    log(f"nas: the winner is {winner.folder.name}'s trial {winner.best['trial']} (validation top-1 "
        f"{_runs.percent(winner.best_val_top1)}): {architecture}; training it and {BASELINE} for {final_epochs} "
        f"epochs on {len(bundle.train)} images")  # fmt: skip
    _train_finals(exp, architecture, bundle, recipe, threads, log)
    finals = [
        final_row(exp / WINNER_FOLDER, WINNER_FOLDER, architecture=architecture,
                  source=f"{winner.folder.name}, trial {winner.best['trial']}", search_val_top1=winner.best_val_top1),
        final_row(exp / BASELINE, BASELINE),
    ]  # fmt: skip
    results = NasResults(searches, winner, finals, budget, verdict(searches), final_verdict(finals))
    write_results(results, exp.path, data)
    return results


def _check_budget(depth: int, budget: int | None, bundle, input_size: tuple[int, int]) -> None:
    """The space and the multiply-add limit, checked as each search will check them, but before anything is
    written (the children are priced at the size they train at, as the final nets are)."""
    from cnnzoo.search.budget import check_admits
    from cnnzoo.search.space import SearchSpace

    check_admits(SearchSpace(depth=depth), None, budget, int(bundle.in_chans), len(bundle.classes), input_size)


def final_recipe(epochs: int, batch_size: int, lr: float, seed: int, limit_train: int | None) -> dict[str, Any]:
    """The training keys of both final runs: the children's recipe, longer, on more images."""
    from cnnzoo.search.trial import CHILD_RECIPE

    return dict(CHILD_RECIPE, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, limit_train=limit_train,
                val_fraction=VAL_FRACTION)  # fmt: skip


def _final_data(data: str, data_dir: str | None, seed: int, limit_train: int | None):
    """The final trainings' data: one bundle for both nets (the same subset, split and test images)."""
    import sys

    from cnnzoo.data import load_dataset

    return load_dataset(data, data_dir=data_dir, val_fraction=VAL_FRACTION, seed=seed, limit_train=limit_train,
                        limit_test=sys.maxsize)  # fmt: skip


def _search(folder: Path, controller: str, seed: int, log: Callable[[str], None], **settings) -> SearchSummary:
    """One search: continued when ``folder`` holds one (a finished one records nothing new), else started."""
    from cnnzoo.search.runner import SEARCH_FILE, run_search

    resume = (folder / SEARCH_FILE).is_file()
    tag = f"[{controller} seed {seed}]"
    log(f"{folder.name}: {'continuing the search in' if resume else 'searching into'} {folder}")
    result = run_search(folder, controller=controller, seed=seed, resume=resume,
                        log=lambda text: log(f"  {tag} {text}"), **settings)  # fmt: skip
    return SearchSummary(controller, seed, folder, list(result.trials), result.best)


def choose_winner(searches: Sequence[SearchSummary]) -> SearchSummary:
    """The search holding the highest validation top-1 (ties: the earlier search; within one, its best.json's
    rule, the earlier trial).  Validation only: the test split never chooses."""
    found = [s for s in searches if s.best is not None]
    if not found:
        raise CnnzooError("no child of any search trained successfully; see the error column of each search's "
                          "trials.csv")  # fmt: skip
    return max(found, key=lambda s: s.best_val_top1)  # max keeps the first of equal maxima: the earliest search


def _train_finals(exp: _runs.ExperimentDir, architecture: str, bundle, recipe: dict[str, Any], threads: int | None,
                  log: Callable[[str], None]) -> None:  # fmt: skip
    from cnnzoo.search.trial import CHILD_MODEL, child_spec
    from cnnzoo.train import fit

    nets = {WINNER_FOLDER: (child_spec(architecture), {"model": CHILD_MODEL, "model_kwargs": {"arch": architecture}}),
            BASELINE: (BASELINE, {"model": BASELINE})}  # fmt: skip
    for name, (model, identity) in nets.items():

        def train(resume: bool, model=model, name=name):
            return fit(model, bundle=bundle, out=str(exp / name), resume=resume, verbose=True, threads=threads,
                       progress=False, log=lambda text: log(f"  [{name}] {text}"), data=bundle.name,
                       **recipe)  # fmt: skip

        _runs.train_once(exp / name, train, wanted=dict(recipe, data=bundle.name, **identity), log=log, what=name)


def final_row(run_dir: Path, name: str, *, architecture: str = "", source: str = "",
              search_val_top1: float | None = None) -> FinalRow:  # fmt: skip
    """The table row of a finished final run; params and MACs of the rebuilt net at its trained input size."""
    from cnnzoo.analysis import summary
    from cnnzoo.train.runs import load_run

    loaded = load_run(run_dir, device="cpu")
    counted = summary(loaded.model, (int(loaded.meta["in_chans"]), *loaded.meta["input_size"]))
    results = _runs.run_results(run_dir)
    history = _runs.run_history(run_dir)
    return FinalRow(
        name=name, model=loaded.meta["model"], architecture=architecture, source=source,
        search_val_top1=search_val_top1, params=counted.total_params, macs=counted.total_macs,
        best_val_top1=results.get("best_val_top1"), best_epoch=results.get("best_epoch"),
        test_top1=results["top1"] if results.get("split") == "test" else None,
        epochs=len(history), seconds=sum(row["seconds"] for row in history),
    )  # fmt: skip


# ------------------------------------------------------------------------------------------
# the numbers: per controller, and the verdicts
# ------------------------------------------------------------------------------------------


def spread(values: Sequence[float | None]) -> tuple[float, float, float] | None:
    """``(mean, min, max)`` over the seeds that have a value; None when none has."""
    present = [v for v in values if v is not None]
    return (statistics.fmean(present), min(present), max(present)) if present else None


def by_controller(searches: Sequence[SearchSummary]) -> dict[str, list[SearchSummary]]:
    grouped: dict[str, list[SearchSummary]] = {}
    for search in searches:
        grouped.setdefault(search.controller, []).append(search)
    return grouped


def ahead_beyond_spread(rl: Sequence[float | None], random: Sequence[float | None]) -> str | None:
    """``"rl"`` or ``"random"`` when that controller's values (one per seed) are all above the other's (the two
    min-max ranges do not overlap); None when they overlap, a side has fewer than two seeds or no value."""
    a, b = spread(rl), spread(random)
    if a is None or b is None or len(rl) < 2 or len(random) < 2:
        return None
    if a[1] > b[2]:
        return "rl"
    if a[2] < b[1]:
        return "random"
    return None


def compare(what: str, rl: Sequence[float | None], random: Sequence[float | None]) -> str:
    """``rl``'s values against ``random``'s (one per seed) as a phrase: the means, the difference, and whether it
    is beyond the seeds' spread (:func:`ahead_beyond_spread`)."""
    a, b = spread(rl), spread(random)
    if a is None or b is None:
        return f"{what}: not measured (no successful trial)"
    head = f"{what} {_runs.percent(a[0])} vs {_runs.percent(b[0])} ({100 * (a[0] - b[0]):+.2f} points"
    if len(rl) < 2 or len(random) < 2:
        return f"{head}; one seed, no spread to judge it by)"
    ahead = ahead_beyond_spread(rl, random)
    if ahead is None:
        return f"{head}, within the seeds' spread: the min-max ranges overlap)"
    return f"{head}, {'RL' if ahead == 'rl' else 'random'} ahead beyond the seeds' spread)"


def verdict(searches: Sequence[SearchSummary]) -> str:
    """One line: does RL beat random here, by how much, within the seeds' spread?

    The outcome is decided by the best validation top-1 each search found (what a search is for); the mean
    reward of the last quarter of its trials (whether the controller learned to sample better children,
    Zoph & Le's running average) is reported beside it.
    """
    grouped = by_controller(searches)
    if not ("rl" in grouped and "random" in grouped):
        return f"only {', '.join(grouped)} searched: nothing to compare (give --controllers rl,random)"
    rl, random = grouped["rl"], grouped["random"]
    rl_best, random_best = [s.best_val_top1 for s in rl], [s.best_val_top1 for s in random]
    best = compare("best validation top-1", rl_best, random_best)
    rl_late, random_late = [s.last_quarter_reward for s in rl], [s.last_quarter_reward for s in random]
    late = compare("mean reward of the last quarter of trials", rl_late, random_late)
    ahead, late_ahead = ahead_beyond_spread(rl_best, random_best), ahead_beyond_spread(rl_late, random_late)
    outcome = {"rl": "RL beats random", "random": "random beats RL", None: "no clear winner"}[ahead]
    if ahead is not None and late_ahead not in (None, ahead):
        # the best child says one thing, the late rewards (what the controller learned to sample) the
        # opposite: the better best-of-N is then luck of the draw, not learning
        outcome = (f"mixed: {'RL' if ahead == 'rl' else 'random'} found the best child, but "
                   f"{'random' if ahead == 'rl' else 'RL'} sampled better children late")  # fmt: skip
    seeds = f"{len(rl)} vs {len(random)} seeds" if len(rl) != len(random) else f"{len(rl)} seed{'s' * (len(rl) != 1)}"
    return f"RL against random over {seeds} ({outcome} at this budget): {best}; {late}"


def final_verdict(finals: Sequence[FinalRow]) -> str:
    """One line: the searched net against ResNet-20 on the test split, with their costs."""
    winner, baseline = finals
    if winner.test_top1 is None or baseline.test_top1 is None:
        return "test top-1 not measured (the data set has no test split)"
    difference = 100 * (winner.test_top1 - baseline.test_top1)
    relation = "above" if difference > 0 else "below" if difference < 0 else "level with"
    return (f"the searched net's test top-1 {_runs.percent(winner.test_top1)} is {abs(difference):.2f} points "
            f"{relation} ResNet-20's {_runs.percent(baseline.test_top1)}, with {winner.params / baseline.params:.2f}x "
            f"its parameters and {winner.macs / baseline.macs:.2f}x its multiply-adds")  # fmt: skip


# ------------------------------------------------------------------------------------------
# reporting
# ------------------------------------------------------------------------------------------


def search_table(searches: Sequence[SearchSummary]) -> str:
    body = []
    for s in searches:
        best = "-" if s.best is None else f"{_runs.percent(s.best_val_top1)} (trial {s.best['trial']})"
        failed = len(s.rows) - s.ok
        body.append([CONTROLLER_LABELS.get(s.controller, s.controller), s.seed,
                     f"{len(s.rows)}{f' ({failed} failed)' if failed else ''}", best,
                     _runs.percent(s.last_quarter_reward), f"{s.seconds:.0f}",
                     "-" if s.best is None else f"`{s.best['architecture']}`"])  # fmt: skip
    header = ("controller", "seed", "trials", "best val top-1", "last-quarter mean reward", "seconds",
              "best architecture")  # fmt: skip
    return _runs.markdown_table(header, body, align="lrrrrrl")


def _mean_and_range(values: Sequence[float | None]) -> str:
    found = spread(values)
    if found is None:
        return "-"
    mean, low, high = found
    return f"{_runs.percent(mean)} ({_runs.percent(low)}-{_runs.percent(high)})"


def controller_table(searches: Sequence[SearchSummary]) -> str:
    body = []
    for controller, group in by_controller(searches).items():
        body.append([CONTROLLER_LABELS.get(controller, controller), len(group),
                     _mean_and_range([s.best_val_top1 for s in group]),
                     _mean_and_range([s.last_quarter_reward for s in group]),
                     f"{statistics.fmean(s.seconds for s in group):.0f}"])  # fmt: skip
    header = ("controller", "seeds", "best val top-1: mean (min-max)", "last-quarter reward: mean (min-max)",
              "seconds per search")  # fmt: skip
    return _runs.markdown_table(header, body)


def final_table(finals: Sequence[FinalRow]) -> str:
    body = []
    for r in finals:
        net = f"searched child (`{r.architecture}`, from {r.source})" if r.architecture else r.model
        best = "-" if r.best_val_top1 is None else f"{_runs.percent(r.best_val_top1)} (epoch {r.best_epoch})"
        body.append([net, f"{r.params:,}", f"{r.macs:,}", _runs.percent(r.search_val_top1), best,
                     _runs.percent(r.test_top1), r.epochs, f"{r.seconds:.0f}"])  # fmt: skip
    header = ("net", "params", "multiply-adds", "val top-1 in its search", "best val top-1 (epoch)", "test top-1",
              "epochs", "seconds")  # fmt: skip
    return _runs.markdown_table(header, body)


CSV_HEADER = ("row", "controller", "seed", "trials", "ok_trials", "best_trial", "architecture", "params", "macs",
              "best_val_top1", "last_quarter_reward", "test_top1", "seconds")  # fmt: skip


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


def csv_rows(results: NasResults) -> list[list[Any]]:
    """One row per search (``row`` = ``search``), then the two final runs (``row`` = ``winner``, ``resnet20``)."""
    rows = []
    for s in results.searches:
        best = s.best or {}
        rows.append(["search", s.controller, s.seed, len(s.rows), s.ok, best.get("trial", ""),
                     best.get("architecture", ""), best.get("params", ""), best.get("macs", ""),
                     _number(s.best_val_top1), _number(s.last_quarter_reward), "", f"{s.seconds:.1f}"])  # fmt: skip
    for r in results.finals:
        rows.append([r.name, "", "", "", "", "", r.architecture, r.params, r.macs, _number(r.best_val_top1), "",
                     _number(r.test_top1), f"{r.seconds:.1f}"])  # fmt: skip
    return rows


def report(results: NasResults, data: str) -> str:
    """``results.md``: the tables and the two verdicts."""
    budget = f"at most {results.max_macs:,} multiply-adds" if results.max_macs else "no multiply-add limit"
    return "\n".join([
        f"## Searches on {data.split(':', 1)[0]} ({budget})", "",
        search_table(results.searches), "",
        "Reward: a child's best validation top-1 after its short training (never the test split). "
        "Seconds: the children's training time, summed.", "",
        "## Per controller (mean and min-max over seeds)", "",
        controller_table(results.searches), "",
        results.verdict, "",
        f"## The best architecture, fully trained, against {BASELINE}", "",
        final_table(results.finals), "",
        results.final_verdict, "",
        "Chosen by validation top-1 over every search; both nets trained with the same recipe, data and seed; "
        "test top-1 with each net's best validation weights.", "",
    ])  # fmt: skip


def write_results(results: NasResults, out: Path, data: str) -> None:
    """``results.md``, ``results.csv`` and ``reward.png`` in ``out``."""
    out = Path(out)
    _runs.write_csv(out / "results.csv", CSV_HEADER, csv_rows(results))
    _runs.write_text(out / "results.md", report(results, data))
    plot_rewards(results.searches, out / "reward.png", title=f"reward against trial on {data.split(':', 1)[0]}")


def running_mean(rewards: Sequence[float | None], window: int = RUNNING_WINDOW) -> list[float | None]:
    """At each trial, the mean reward of the successful trials among the last ``window`` (None: none there)."""
    means: list[float | None] = []
    for end in range(1, len(rewards) + 1):
        recent = [r for r in rewards[max(0, end - window):end] if r is not None]
        means.append(statistics.fmean(recent) if recent else None)
    return means


def running_best(rewards: Sequence[float | None]) -> list[float | None]:
    """At each trial, the best reward so far (None until the first successful trial)."""
    best, series = None, []
    for reward in rewards:
        if reward is not None and (best is None or reward > best):
            best = reward
        series.append(best)
    return series


def across_seeds(series: Sequence[Sequence[float | None]]) -> list[tuple[int, float, float, float]]:
    """``(trial, mean, min, max)`` over the seeds' series at every trial where at least one seed has a value."""
    points = []
    for index in range(max((len(s) for s in series), default=0)):
        found = spread([s[index] if index < len(s) else None for s in series])
        if found is not None:
            points.append((index + 1, *found))
    return points


def plot_rewards(searches: Sequence[SearchSummary], path: Path, title: str = "",
                 window: int = RUNNING_WINDOW) -> Path:  # fmt: skip
    """reward.png: per controller the mean over seeds of the running mean (the min-max band over seeds), and the
    mean running best dashed; reward in % against the trial number."""
    from matplotlib.ticker import MaxNLocator

    with _runs.figure(path, figsize=(8, 4.5)) as (fig, ax):
        for controller, group in by_controller(searches).items():
            colour = COLOURS.get(controller)
            label = CONTROLLER_LABELS.get(controller, controller)
            means = across_seeds([running_mean(s.rewards, window) for s in group])
            if means:
                xs, mean, low, high = zip(*means)
                ax.plot(xs, [100 * v for v in mean], "-", color=colour, linewidth=2,
                        label=f"{label}: running mean of {window} trials")  # fmt: skip
                ax.fill_between(xs, [100 * v for v in low], [100 * v for v in high], color=colour, alpha=0.2,
                                label=f"{label}: min-max over {len(group)} seed{'s' if len(group) != 1 else ''}")
            bests = across_seeds([running_best(s.rewards) for s in group])
            if bests:
                xs, mean, _, _ = zip(*bests)
                ax.plot(xs, [100 * v for v in mean], "--", color=colour, linewidth=1.2, label=f"{label}: best so far")
        ax.set(xlabel="trial", ylabel="validation top-1 (%)", title=title or "reward against trial")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    return Path(path)


# ------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    search = p.add_argument_group("the searches")
    search.add_argument("--controllers", default=",".join(DEFAULT_CONTROLLERS), metavar="C,C",
                        help="comma-separated controllers: rl (LSTM + REINFORCE) and/or random "
                        f"(default {','.join(DEFAULT_CONTROLLERS)})")  # fmt: skip
    search.add_argument("--seeds", default=",".join(map(str, DEFAULT_SEEDS)), metavar="S,S,...",
                        help="comma-separated seeds; one search per controller and seed "
                        f"(default {','.join(map(str, DEFAULT_SEEDS))})")  # fmt: skip
    search.add_argument("--trials", type=int, default=DEFAULT_TRIALS, metavar="N",
                        help=f"children per search (default {DEFAULT_TRIALS})")
    search.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS,
                        help=f"training epochs of each child (default {DEFAULT_EPOCHS})")  # fmt: skip
    search.add_argument("--limit-train", type=_runs.image_limit, default=DEFAULT_LIMIT_TRAIN, metavar="N",
                        help=f"the children's seeded training subset (default {DEFAULT_LIMIT_TRAIN}; 0: all)")
    search.add_argument("--max-macs", default=BASELINE, metavar="M",
                        help=f"only children with at most M multiply-adds (e.g. 3e7); {BASELINE}: ResNet-20's at the "
                        f"data's size (the default); 0: no limit")  # fmt: skip
    search.add_argument("--depth", type=int, default=DEFAULT_DEPTH,
                        help=f"convolutional layers of a child (default {DEFAULT_DEPTH})")  # fmt: skip
    search.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                        help=f"batch size of the children and of the final runs (default {DEFAULT_BATCH_SIZE})")
    search.add_argument("--lr", type=float, default=DEFAULT_LR,
                        help="peak learning rate of the children and of the final runs (SGD, Nesterov momentum 0.9, "
                        f"weight decay 1e-4, cosine schedule; default {DEFAULT_LR})")  # fmt: skip
    final = p.add_argument_group("the final comparison")
    final.add_argument("--final-epochs", type=int, default=DEFAULT_FINAL_EPOCHS,
                       help=f"epochs of the winner's and ResNet-20's training (default {DEFAULT_FINAL_EPOCHS})")
    final.add_argument("--final-limit-train", type=_runs.image_limit, default=DEFAULT_FINAL_LIMIT_TRAIN, metavar="N",
                       help=f"their seeded training subset (default {DEFAULT_FINAL_LIMIT_TRAIN}; 0: all)")
    how = p.add_argument_group("data and how it runs (may change between calls)")
    how.add_argument("--data", default="fashion-mnist", help="data set (default fashion-mnist)")
    how.add_argument("--data-dir", help="where the data set's files are (default: the usual places)")
    how.add_argument("--workers", type=int, metavar="W",
                     help="children trained at once in each search (default 1; 0: in this process)")  # fmt: skip
    how.add_argument("--threads", type=int, metavar="T",
                     help="CPU threads of each search, shared among its W children, and of the final trainings "
                     "(default: this machine's CPUs)")  # fmt: skip
    p.add_argument("--out", default="runs/experiment-nas", metavar="DIR",
                   help="output folder: the searches, the final runs, results.md/csv and reward.png (default "
                   "runs/experiment-nas); the same command again continues the experiment in it")  # fmt: skip


@register_experiment(
    "nas",
    "Zoph & Le 2017 here: RL against random architecture search at the same budget and seeds, and the best "
    "child, fully trained, against ResNet-20",
    add_arguments,
)  # fmt: skip
def run(args: argparse.Namespace) -> int:
    results = run_nas_experiment(
        data=args.data, data_dir=args.data_dir, controllers=args.controllers, seeds=args.seeds, trials=args.trials,
        epochs=args.epochs, limit_train=args.limit_train, max_macs=args.max_macs, depth=args.depth,
        batch_size=args.batch_size, lr=args.lr, final_epochs=args.final_epochs,
        final_limit_train=args.final_limit_train, workers=args.workers, threads=args.threads, out=args.out,
    )  # fmt: skip
    print()
    print(search_table(results.searches))
    print()
    print(controller_table(results.searches))
    print()
    print(results.verdict)
    print()
    print(final_table(results.finals))
    print()
    print(results.final_verdict)
    print(f"\nwritten: {Path(args.out) / 'results.md'}, results.csv, reward.png")
    return 0
