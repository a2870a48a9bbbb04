"""The search loop: sample children, train them on workers, reward the controller; resumable at any moment.

Zoph & Le (2017, Sec. 3.2, 3.4): a controller samples a child architecture, the child is trained
and its validation accuracy is the controller's reward; many children train at once, each
reward updating the controller when it comes in.  :func:`run_search` is that loop, with

* the children trained by the one engine (:func:`cnnzoo.search.trial.run_trial` calls ``fit``),
  each into its own run directory ``SEARCH/trials/NNNN``;
* the workers of :mod:`cnnzoo.search.workers` (this process, local processes, or Ray);
* an optional budget: a child over ``max_params`` / ``max_macs`` is not trained, the controller
  samples again (at most :data:`MAX_SAMPLES_PER_TRIAL` times in a row), and a budget no child of
  the space meets is refused before any work (:func:`cnnzoo.search.budget.check_admits`).

The search directory
--------------------

``search.json``
    the settings, written before any work; ``--resume`` refuses others, naming the keys
    (how the search runs, ``workers``, ``threads``, ``ray``, may change).
``state.json`` + ``controller.safetensors``
    the loop's state: the next trial number, the trials in flight (number, tokens,
    architecture, cost, attempts), every recorded trial's result, and the controller
    (parameters, optimiser moments, generator state; its JSON meta in the file's metadata).
    Both are written atomically after every dispatch and every recorded trial.
``trials.csv``, ``best.json``
    derived from ``state.json`` (rewritten after every recorded trial); ``best.json`` names
    the best trial and its run directory (:func:`best_run_dir`).
``trials/NNNN/``
    each trial's run directory (``load_run`` rebuilds the child from it).
``reward.png``
    the reward of every trial and the running best, drawn when the search ends.

Resume: state.json is the commit point
---------------------------------------

Two files cannot be replaced together atomically, so ``state.json`` is written first and counts
the controller events it includes (``generation``: one per sample that became a trial, one per
reward fed back) and names the last one; ``controller.safetensors`` carries the generation it
was saved at.  A ``kill -9`` between the two leaves the controller one event behind, and
``--resume`` replays that event (the sample again, the controller's generator being saved with
it, or the update with the recorded reward): no recorded trial is lost or repeated, and the
trials in flight (numbered and saved before they were dispatched) are re-run with the same
architecture, their partial run directories replaced.  With one worker the resumed search
samples exactly the architectures an uninterrupted one would have.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from cnnzoo.errors import CnnzooError, ConfigError
from cnnzoo.rundir import (OutputDirError, atomic_write_bytes, check_creatable, check_same_settings, json_text,
                           read_json_file)
from cnnzoo.search.trial import CHILD_MODEL, TrialJob, child_spec, run_trial, search_data

FORMAT = "cnnzoo-search-1"
SEARCH_FILE = "search.json"
STATE_FILE = "state.json"
CONTROLLER_FILE = "controller.safetensors"
TRIALS_FILE = "trials.csv"
BEST_FILE = "best.json"
PLOT_FILE = "reward.png"
TRIALS_DIR = "trials"

TRIAL_COLUMNS = ("trial", "architecture", "params", "macs", "val_top1", "seconds", "worker", "status", "error")

#: the settings of a search (what it searches and how children train), with their defaults;
#: ``--resume`` compares them with the saved ones.  ``space`` (the SearchSpace's to_dict) is one too.
SETTING_DEFAULTS: dict[str, Any] = {
    "data": "fashion-mnist",
    "controller": "rl",
    "trials": 20,
    "epochs": 2,
    "limit_train": None,
    "val_fraction": 0.1,
    "batch_size": 64,
    "lr": 0.05,
    "max_macs": None,
    "max_params": None,
    "seed": 0,
}

#: a sample over the budget is drawn again, at most this many times in a row for one trial
MAX_SAMPLES_PER_TRIAL = 200
#: a trial whose worker dies is run again this many times before it is recorded as failed
RETRIES_AFTER_DEATH = 1


@dataclass
class SearchResult:
    """What :func:`run_search` returns: the search directory, every recorded trial, the best one."""

    out: Path
    trials: list[dict[str, Any]]
    best: dict[str, Any] | None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def best_run_dir(self) -> Path | None:
        return self.out / self.best["run_dir"] if self.best else None


def run_search(
    out,
    *,
    data: str | None = None,
    controller: str | None = None,
    trials: int | None = None,
    epochs: int | None = None,
    limit_train: int | None = None,
    val_fraction: float | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    max_macs: int | None = None,
    max_params: int | None = None,
    seed: int | None = None,
    space=None,
    data_dir: str | None = None,
    download: bool | None = None,
    workers: int | None = None,
    threads: int | None = None,
    ray: str | None = None,
    resume: bool = False,
    trial_fn: Callable = run_trial,
    log: Callable[[str], None] | None = None,
) -> SearchResult:
    """Search ``space`` for ``trials`` children; see the module docstring.

    ``space`` is a :class:`~cnnzoo.search.space.SearchSpace` or a dict of some of its settings
    (``{"depth": 3}``).  A setting left None (or out of the dict) takes its default
    (:data:`SETTING_DEFAULTS`, ``SearchSpace()``'s) in a new search, and the saved value when
    ``resume`` continues one; one given differently from the saved value is a one-line error
    naming the keys.
    ``workers``: trials at once (0: in this process; default 1, with ``ray`` the cluster's
    CPUs); ``threads``: CPU threads of the whole search, shared out among them (default: this
    machine's CPUs, with ``ray`` the cluster's); ``ray``: the address of an existing Ray
    cluster.  ``data_dir`` and ``download`` say where the data is found (on ``resume``, by default
    as before).  ``trial_fn(job) -> record`` trains one child (:func:`run_trial`; tests pass
    others).  A user's mistake raises a one-line :class:`~cnnzoo.errors.CnnzooError` before
    anything is written.
    """
    from cnnzoo.search.space import SearchSpace

    say = log or (lambda text: print(text, flush=True))
    folder = Path(out)
    given = {"data": data, "controller": controller, "trials": trials, "epochs": epochs, "limit_train": limit_train,
             "val_fraction": val_fraction, "batch_size": batch_size, "lr": lr, "max_macs": max_macs,
             "max_params": max_params, "seed": seed}  # fmt: skip
    given = {key: value for key, value in given.items() if value is not None}
    if isinstance(space, SearchSpace):
        space = space.to_dict()
    elif space is not None and not isinstance(space, dict):
        raise ConfigError(f"space must be a SearchSpace or a dict of its settings, got {type(space).__name__}")
    space = {key: list(value) if isinstance(value, tuple) else value for key, value in (space or {}).items()}
    _check_how(workers, threads)
    if resume:
        saved = _read_search(folder)
        # the space's settings are compared one by one (space.depth, ...): a resumed search may
        # repeat some of them without the others
        check_same_settings(_flat(saved["settings"]), _flat({**given, "space": space}),
                            f"--resume: the search in {folder}", advice="start a new search (another --out) instead")
        settings = saved["settings"]
        # where the data is found may change (another machine); not given, it is where it was found before
        source = saved.get("data_source") or {}
        data_dir = data_dir if data_dir is not None else source.get("data_dir")
        download = download if download is not None else source.get("download", True)
    else:
        _check_new_folder(folder)
        settings = {**SETTING_DEFAULTS, **given, "space": SearchSpace.from_dict(space).to_dict()}
        _check_settings(settings)
    if ray:
        from cnnzoo.search.workers import check_ray_answers

        check_ray_answers(ray)  # before any work: a dead address is one line
    search = _Search(folder, settings, data_dir, True if download is None else download, say)
    search.prepare()  # the data, the budget check: still nothing written
    from cnnzoo.search.workers import open_workers

    pool = open_workers(workers, threads, ray, trial_fn)
    try:
        search.start(resume)
        search.loop(pool)
    except KeyboardInterrupt:
        recorded = len(getattr(search, "state", {}).get("results", []))
        search.say(f"interrupted: {recorded} of {search.settings['trials']} trials recorded; "
                   f"continue with: cnnzoo search --out {folder} --resume")  # fmt: skip
        raise
    finally:
        pool.close()
    return search.finish()


def best_run_dir(path) -> Path | None:
    """The run directory of the best trial of the search in ``path``; None when ``path`` holds no search.

    A search without a successful trial yet is a one-line :class:`~cnnzoo.errors.CnnzooError`.
    """
    folder = Path(path)
    if not (folder / SEARCH_FILE).is_file():
        return None
    file = folder / BEST_FILE
    if not file.is_file():
        raise CnnzooError(f"the search in {folder} has no successful trial yet (no {BEST_FILE}); "
                          f"continue it with cnnzoo search --out {folder} --resume")  # fmt: skip
    best = read_json_file(file)
    return folder / best["run_dir"]


# ------------------------------------------------------------------------------------------
# checks before any work
# ------------------------------------------------------------------------------------------


def _flat(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings with the space's spelled out as ``space.KEY``."""
    flat = {key: value for key, value in settings.items() if key != "space"}
    flat.update({f"space.{key}": value for key, value in (settings.get("space") or {}).items()})
    return flat


def _positive(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _check_how(workers: int | None, threads: int | None) -> None:
    if workers is not None and not (isinstance(workers, int) and workers >= 0):
        raise ConfigError(f"--workers must be 0 (in this process) or more, got {workers!r}")
    if threads is not None and not _positive(threads):
        raise ConfigError(f"--threads must be >= 1, got {threads!r}")


def _check_settings(settings: dict[str, Any]) -> None:
    from cnnzoo.search.controller import CONTROLLERS

    if settings["controller"] not in CONTROLLERS:
        raise ConfigError(f"unknown controller {settings['controller']!r}; choose {' or '.join(CONTROLLERS)}")
    for key in ("trials", "epochs", "batch_size"):
        if not _positive(settings[key]):
            raise ConfigError(f"--{key.replace('_', '-')} must be >= 1, got {settings[key]!r}")
    for key in ("limit_train", "max_macs", "max_params"):
        if settings[key] is not None and not _positive(settings[key]):
            raise ConfigError(f"--{key.replace('_', '-')} must be >= 1, got {settings[key]!r}")
    fraction = settings["val_fraction"]
    if not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise ConfigError(f"--val-fraction must be in (0, 1): the reward is the validation top-1; got {fraction!r}")
    if not isinstance(settings["lr"], (int, float)) or not (settings["lr"] > 0 and math.isfinite(settings["lr"])):
        raise ConfigError(f"--lr must be a positive number, got {settings['lr']!r}")
    if not isinstance(settings["seed"], int):
        raise ConfigError(f"--seed must be an integer, got {settings['seed']!r}")


def _check_new_folder(folder: Path) -> None:
    """A new search goes into a new or empty folder: a user's files are never overwritten."""
    if folder.exists() and not folder.is_dir():
        raise OutputDirError(f"{folder} is a file, not a search directory; choose another --out")
    if folder.is_dir() and any(folder.iterdir()):
        if (folder / SEARCH_FILE).is_file():
            raise OutputDirError(f"{folder} already holds a search: pass --resume to continue it, or choose another "
                                 "--out")  # fmt: skip
        raise OutputDirError(f"{folder} already exists and is not empty; choose another --out (nothing was written)")
    check_creatable(folder)


def _read_search(folder: Path) -> dict[str, Any]:
    if not (folder / SEARCH_FILE).is_file():
        what = "does not exist" if not folder.exists() else f"holds no search ({SEARCH_FILE})"
        raise OutputDirError(f"--resume: {folder} {what}")
    saved = read_json_file(folder / SEARCH_FILE)
    if not isinstance(saved, dict) or saved.get("format") != FORMAT or not isinstance(saved.get("settings"), dict):
        raise OutputDirError(f"{folder / SEARCH_FILE} is not a cnnzoo search record")
    return saved


def _write_json(file: Path, value: Any) -> None:
    atomic_write_bytes(file, json_text(value).encode())


# ------------------------------------------------------------------------------------------
# the search
# ------------------------------------------------------------------------------------------


class _Search:
    """One search directory being worked on: its settings, controller, state and derived files."""

    def __init__(self, folder: Path, settings: dict[str, Any], data_dir, download: bool, say) -> None:
        from cnnzoo.search.space import SearchSpace

        self.folder = folder
        self.settings = settings
        self.space = SearchSpace.from_dict(settings["space"])
        self.data_dir, self.download = data_dir, download
        self.say = say
        self.costs: dict[str, tuple[int, int]] = {}

    # -- before any work ------------------------------------------------------------------
    def prepare(self) -> None:
        """Load the data (its classes, channels and size price the children) and check the budget."""
        from cnnzoo.registry import model_info
        from cnnzoo.search.budget import check_admits
        from cnnzoo.train.engine import choose_input_size

        s = self.settings
        bundle = search_data(s["data"], self.data_dir, self.download, s["val_fraction"], s["seed"], s["limit_train"])
        if bundle.val is None or len(bundle.val) == 0:
            raise ConfigError(f"{s['data']} gives no validation split: the reward is the validation top-1 "
                              "(raise --val-fraction)")  # fmt: skip
        self.in_chans, self.num_classes = int(bundle.in_chans), len(bundle.classes)
        data_size = tuple(bundle.image_size) if bundle.image_size else None
        self.input_size = choose_input_size(model_info(CHILD_MODEL), data_size, None)
        check_admits(self.space, s["max_params"], s["max_macs"], self.in_chans, self.num_classes, self.input_size)

    def cost(self, architecture) -> tuple[int, int]:
        from cnnzoo.search.budget import child_cost

        key = str(architecture)
        if key not in self.costs:
            params, macs = child_cost(architecture, self.in_chans, self.num_classes, self.input_size)
            self.costs[key] = (int(params), int(macs))
        return self.costs[key]

    # -- the state ------------------------------------------------------------------------
    def start(self, resume: bool) -> None:
        from cnnzoo.search.controller import make_controller

        self.controller = make_controller(self.settings["controller"], self.space, self.settings["seed"])
        if resume:
            self._load_state()
            recorded, again = len(self.state["results"]), len(self.state["in_flight"])
            self.say(f"resuming the search in {self.folder}: {recorded} of {self.settings['trials']} trials recorded, "
                     f"{again} to re-run")  # fmt: skip
            return
        try:
            (self.folder / TRIALS_DIR).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputDirError(f"cannot write to search directory {self.folder}: {exc.strerror or exc}") from None
        _write_json(self.folder / SEARCH_FILE, {
            "format": FORMAT, "settings": self.settings,
            "data_source": {"data_dir": self.data_dir, "download": self.download},  # not settings: may change
            "data": {"in_chans": self.in_chans, "num_classes": self.num_classes, "input_size": list(self.input_size)},
        })  # fmt: skip
        self.state: dict[str, Any] = {"format": FORMAT, "generation": 0, "last_event": None, "next_trial": 1,
                                      "in_flight": [], "results": []}  # fmt: skip
        self._save(controller_changed=True)

    def _save(self, controller_changed: bool) -> None:
        """state.json (the commit point), then the controller when it changed (module docstring)."""
        _write_json(self.folder / STATE_FILE, self.state)
        if controller_changed:
            from safetensors.torch import save

            tensors, meta = self.controller.state()
            metadata = {"format": FORMAT, "generation": str(self.state["generation"]), "meta": json.dumps(meta)}
            contiguous = {name: tensor.detach().contiguous() for name, tensor in tensors.items()}
            atomic_write_bytes(self.folder / CONTROLLER_FILE, save(contiguous, metadata=metadata))

    def _load_state(self) -> None:
        state = read_json_file(self.folder / STATE_FILE)
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise OutputDirError(f"{self.folder / STATE_FILE} is not a cnnzoo search state")
        self.state = state
        wanted = int(state["generation"])
        saved = self._load_controller()
        if saved == wanted - 1 and state.get("last_event"):
            # killed between state.json and controller.safetensors: replay the event state.json records
            self._replay(state["last_event"])
            self._save(controller_changed=True)
        elif saved != wanted:
            raise OutputDirError(f"{self.folder}: {STATE_FILE} (generation {wanted}) and {CONTROLLER_FILE} (generation "
                                 f"{saved}) do not belong together; was the folder changed by hand?")  # fmt: skip

    def _load_controller(self) -> int:
        """Load controller.safetensors into the controller; its generation (0, the fresh one, when missing)."""
        file = self.folder / CONTROLLER_FILE
        if not file.is_file():
            return 0
        from safetensors import safe_open
        from safetensors.torch import load_file

        try:
            with safe_open(str(file), framework="pt") as handle:
                metadata = handle.metadata() or {}
            tensors = load_file(str(file))
            generation = int(metadata["generation"])
            meta = json.loads(metadata["meta"])
        except Exception as exc:  # a damaged file: say which
            raise OutputDirError(f"cannot read {file}: {' '.join(str(exc).split()) or type(exc).__name__}") from None
        self.controller.load_state(tensors, meta)
        return generation

    def _replay(self, event: dict[str, Any]) -> None:
        number = event["trial"]
        if event["kind"] == "sample":
            entry = next(e for e in self.state["in_flight"] + self.state["results"] if e["trial"] == number)
            sample, _, _ = self._sample()
            if list(sample.tokens) != list(entry["tokens"]):
                raise OutputDirError(f"{self.folder}: replaying trial {number}'s sample gave another architecture; "
                                     "the controller does not continue exactly")  # fmt: skip
        else:
            row = next(r for r in self.state["results"] if r["trial"] == number)
            self.controller.update(list(row["tokens"]), float(row["val_top1"]))

    # -- sampling and dispatch --------------------------------------------------------------
    def _sample(self):
        """A sample within the budget (the controller samples again while it is over it)."""
        from cnnzoo.search.budget import within

        s = self.settings
        for _ in range(MAX_SAMPLES_PER_TRIAL):
            sample = self.controller.sample()
            params, macs = self.cost(sample.arch)
            if within((params, macs), s["max_params"], s["max_macs"]):
                return sample, params, macs
        limits = ", ".join(f"{key.replace('_', '-')} {s[key]:,}" for key in ("max_params", "max_macs") if s[key])
        raise ConfigError(f"the controller sampled {MAX_SAMPLES_PER_TRIAL} children in a row over the budget "
                          f"({limits}); raise the budget or make the space smaller")  # fmt: skip

    def _new_trial(self) -> dict[str, Any]:
        sample, params, macs = self._sample()
        number = self.state["next_trial"]
        entry = {"trial": number, "tokens": [int(t) for t in sample.tokens], "architecture": str(sample.arch),
                 "params": params, "macs": macs, "attempts": 0}  # fmt: skip
        self.state["next_trial"] = number + 1
        self.state["in_flight"].append(entry)
        self.state["generation"] += 1
        self.state["last_event"] = {"kind": "sample", "trial": number}
        self._save(controller_changed=True)  # saved before it is dispatched
        return entry

    def _job(self, entry: dict[str, Any], threads: int | None) -> TrialJob:
        s = self.settings
        out = (self.folder / TRIALS_DIR / f"{entry['trial']:04d}").resolve()
        if out.exists():  # a partial run of a trial in flight when the search stopped: replaced
            shutil.rmtree(out)
        return TrialJob(number=entry["trial"], architecture=entry["architecture"], out=str(out), data=s["data"],
                        data_dir=self.data_dir, download=self.download, epochs=s["epochs"],
                        limit_train=s["limit_train"], val_fraction=s["val_fraction"], batch_size=s["batch_size"],
                        lr=s["lr"], seed=s["seed"], threads=threads)  # fmt: skip

    def loop(self, pool) -> None:
        total = self.settings["trials"]
        queue = sorted(self.state["in_flight"], key=lambda e: e["trial"])  # re-run first, in order
        self.say(f"searching {total} children with the {self.settings['controller']} controller on "
                 f"{pool.describe()}; search directory {self.folder}")  # fmt: skip
        while True:
            while pool.free > 0 and (queue or self.state["next_trial"] <= total):
                entry = queue.pop(0) if queue else self._new_trial()
                pool.submit(self._job(entry, pool.threads))
            if not pool.busy:
                return
            for finished in pool.wait():
                retry = self._finished(finished)
                if retry is not None:
                    queue.insert(0, retry)

    def _finished(self, finished) -> dict[str, Any] | None:
        """Record a trial that came back; a trial to run again when its worker died (or it was interrupted)."""
        number = finished.job.number
        entry = next(e for e in self.state["in_flight"] if e["trial"] == number)
        record = finished.record or {}
        if finished.died or record.get("status") == "interrupted":
            why = finished.died or record.get("error") or "interrupted"
            if entry["attempts"] < RETRIES_AFTER_DEATH:
                entry["attempts"] += 1
                self._save(controller_changed=False)
                self.say(f"trial {number}: {why}; running it again")
                return entry
            record = {"status": "failed", "error": f"{why} (after {entry['attempts'] + 1} attempts)",
                      "worker": record.get("worker", ""), "seconds": record.get("seconds")}  # fmt: skip
        row = {**entry, "val_top1": record.get("val_top1"), "seconds": record.get("seconds"),
               "worker": record.get("worker", ""), "status": record.get("status", "failed"),
               "error": record.get("error", ""), "run_dir": f"{TRIALS_DIR}/{number:04d}"}  # fmt: skip
        if row["status"] != "ok":
            row["val_top1"] = None
        self.state["in_flight"].remove(entry)
        self.state["results"].append(row)
        changed = row["status"] == "ok"
        if changed:
            # only a measured accuracy is a reward: a failed trial (a dead worker, a diverging
            # child) says nothing about how well the architecture learns, so the controller is
            # not updated for it (REINFORCE would otherwise be taught the failure, not the accuracy)
            self.controller.update(list(row["tokens"]), float(row["val_top1"]))
            self.state["generation"] += 1
            self.state["last_event"] = {"kind": "update", "trial": number}
        self._save(controller_changed=changed)
        self._write_derived()
        self.say(self._line(row))
        return None

    def _line(self, row: dict[str, Any]) -> str:
        total = self.settings["trials"]
        head = f"trial {row['trial']:>{len(str(total))}}/{total}"
        if row["status"] == "ok":
            result = f"val top-1 {100 * row['val_top1']:6.2f}%"
        else:
            result = f"failed: {row['error']}"
        seconds = f"{row['seconds']:.1f} s" if row.get("seconds") is not None else "- s"
        return (f"{head}  {result}  {row['params']:,} params  {row['macs']:,} MACs  {seconds}  "
                f"{row['worker'] or '-'}  {row['architecture']}")  # fmt: skip

    # -- what the state gives -------------------------------------------------------------
    def rows(self) -> list[dict[str, Any]]:
        return sorted(self.state["results"], key=lambda r: r["trial"])

    def best(self) -> dict[str, Any] | None:
        ok = [r for r in self.rows() if r["status"] == "ok"]
        if not ok:
            return None
        top = max(ok, key=lambda r: (r["val_top1"], -r["trial"]))  # ties: the earlier trial
        return {"trial": top["trial"], "architecture": top["architecture"], "val_top1": top["val_top1"],
                "params": top["params"], "macs": top["macs"], "run_dir": top["run_dir"],
                "spec": child_spec(top["architecture"]).to_dict()}  # fmt: skip

    def _write_derived(self) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=TRIAL_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in self.rows():
            writer.writerow({**row, "val_top1": "" if row["val_top1"] is None else f"{row['val_top1']:.6f}",
                             "seconds": "" if row["seconds"] is None else f"{row['seconds']:.2f}"})  # fmt: skip
        atomic_write_bytes(self.folder / TRIALS_FILE, buffer.getvalue().encode())
        best = self.best()
        if best is not None:
            _write_json(self.folder / BEST_FILE, best)

    def finish(self) -> SearchResult:
        self._write_derived()
        rows = self.rows()
        plot_rewards(rows, self.folder / PLOT_FILE, title=f"{self.settings['controller']} search on "
                     f"{self.settings['data'].split(':', 1)[0]}")  # fmt: skip
        best = self.best()
        failed = sum(r["status"] != "ok" for r in rows)
        note = f" ({failed} failed)" if failed else ""
        if best is None:
            self.say(f"no trial succeeded{note}; see the error column of {self.folder / TRIALS_FILE}")
        else:
            self.say(f"best of {len(rows)} trials{note}: trial {best['trial']}, val top-1 "
                     f"{100 * best['val_top1']:.2f}%, {best['params']:,} params, {best['macs']:,} MACs: "
                     f"{best['architecture']}")  # fmt: skip
            self.say(f"next: cnnzoo train {self.folder} --epochs N  (retrains the best architecture from scratch; "
                     f"its trial run: {self.folder / best['run_dir']})")  # fmt: skip
        return SearchResult(self.folder, rows, best, dict(self.settings))


def plot_rewards(rows: list[dict[str, Any]], path: Path, title: str = "") -> None:
    """``reward.png``: each trial's reward (validation top-1) against its number, and the running best."""
    from cnnzoo.train.plots import pyplot_agg, save_png

    plt = pyplot_agg()
    fig, ax = plt.subplots(figsize=(7, 4))
    ok = [r for r in rows if r["status"] == "ok"]
    failed = [r for r in rows if r["status"] != "ok"]
    if ok:
        ax.plot([r["trial"] for r in ok], [100 * r["val_top1"] for r in ok], "o", alpha=0.6, label="trial")
        best, xs, ys = -1.0, [], []
        for r in ok:
            best = max(best, r["val_top1"])
            xs.append(r["trial"])
            ys.append(100 * best)
        ax.step(xs, ys, where="post", label="best so far")
    if failed:
        ax.plot([r["trial"] for r in failed], [0.0] * len(failed), "x", color="red", label="failed")
    ax.set(xlabel="trial", ylabel="validation top-1 (%)", title=title or "reward against trial")
    ax.grid(alpha=0.3)
    if ok or failed:
        ax.legend()
    save_png(fig, path)
    plt.close(fig)
