"""``cnnzoo experiment degradation``: plain vs residual nets of 20 and 56 layers.

The brief's experiment 7, after He et al. 2016 ("Deep Residual Learning for Image
Recognition"), Section 4.2 and Figure 6: on CIFAR-10 the 56-layer *plain* net has a higher
**training** error than the 20-layer plain net (the "degradation problem": not overfitting,
since it is the training error that rises; the deeper net is harder to optimise), while
the residual nets get better with depth (ResNet-56 below ResNet-20).

The experiment trains ``plain{d}`` and ``resnet{d}`` for every depth ``d`` of ``--depths``
(default 20 and 56) with one identical recipe, the paper's compressed to a CPU budget:

* the CIFAR nets of Section 4.2 (a 3x3 conv, then 3n basic blocks on 16, 32 and 64
  filters, global average pooling, fc; ``6n + 2`` layers; option A shortcuts, so a ResNet
  and its plain twin have exactly the same parameters; batch norm in both, as in the paper);
* SGD with momentum 0.9, weight decay 1e-4, batch 128, learning rate 0.1 divided by 10 at
  50% and 75% of training (the paper: 32k and 48k of 64k iterations); the data set's
  default augmentation (random crop from a padded image and horizontal flip; 4-pixel
  padding on CIFAR as in the paper, 2 on 28x28 Fashion-MNIST);
* by default on Fashion-MNIST (the offline data set) at its own 28x28 (the nets are fully
  convolutional with global pooling, so any size works and 28x28 is the fastest), a seeded
  subset of 4,000 training images, 10 epochs, 1,000 validation images carved from the
  training set and the whole test set: about 25 minutes on 2 CPU threads.  ``--data
  cifar10 --limit-train 0 --limit-val 0 --epochs 182`` is the paper's setting (45k/5k split,
  352 steps an epoch, ~64k iterations) when the CIFAR-10 files are there.

Measured, per net: the **final training error** (the last epoch's, as the engine logs it:
averaged over that epoch's batches in train mode, with augmentation and the weights still
changing, which is also what the thin curves of the paper's Figure 6 show), the best
**validation error** (and its epoch), the **test error** with the weights of the best
validation epoch, and the parameters.  Everything goes to ``OUT`` (default
``runs/experiment-degradation``): one run directory per net (``plain20``, ``resnet20``, ...),
``results.md`` and ``results.csv`` (the table), and ``degradation.png`` in the style of
Figure 6 (left the plain nets, right the residual ones; training error dashed, validation
error solid, in % against the epoch).  The table is printed with a one-line verdict computed
from the numbers.  ``OUT/run.json`` records the settings (a run directory of kind ``experiment:degradation``):
started again with the same command, a run that finished is reused and a run left half-way
resumes, so an interrupted experiment continues where it stopped; other settings in the same
folder are refused, naming the keys that differ.  Ctrl-C stops the experiment (exit code 130)
after the current training saved its checkpoint.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

from cnnzoo.errors import ConfigError
from cnnzoo.experiments import _runs

DEFAULT_DEPTHS = (20, 56)
#: the two kinds of net, in the order of the figure's panels and of the table
KINDS = ("plain", "resnet")
KIND_LABELS = {"plain": "plain", "resnet": "residual (ResNet)"}

# The default budget, sized on the 2-core development machine: ResNet-20 trains ~280 img/s
# at 28x28 with 2 threads and channels_last, the 56-layer nets ~3x slower, so one epoch of the
# four nets costs ~0.03 s per training image: 4,000 images x 10 epochs is ~20 minutes of
# training, plus the validation after each epoch and the final test.
DEFAULT_LIMIT_TRAIN = 4000
DEFAULT_LIMIT_VAL = 1000
DEFAULT_EPOCHS = 10
DEFAULT_BATCH_SIZE = 128
DEFAULT_LR = 0.1
#: the training flags (from TrainConfig) and notes for their help; defaults: run_degradation_experiment's
TRAINING_FLAGS = {
    "data": "cifar10 is the paper's", "data_dir": "", "epochs": "the lr drops /10 at 50%% and 75%% of them",
    "limit_train": "", "limit_val": "carved from the training set", "batch_size": "the paper's", "lr": "the paper's",
    "input_size": "", "seed": "", "threads": "", "device": "",
}  # fmt: skip


@dataclass(frozen=True)
class DegradationRow:
    """One trained net, read back from its run directory."""

    model: str
    kind: str  # "plain" or "resnet"
    depth: int
    final_train_error: float
    best_val_error: float | None
    best_epoch: int | None
    test_error: float | None
    params: int
    epochs: int
    images_per_s: float
    seconds: float


# ------------------------------------------------------------------------------------------
# the recipe and the depths
# ------------------------------------------------------------------------------------------


def registered_depths() -> list[int]:
    """Depths that have both a plain and a residual CIFAR net registered (20, 32, 44, 56, 110)."""
    from cnnzoo.registry import list_models

    def depths(prefix: str) -> set[int]:
        return {int(name[len(prefix):]) for name in list_models(prefix + "*") if name[len(prefix):].isdigit()}

    return sorted(depths("plain") & depths("resnet"))


def check_depths(depths: Sequence[int]) -> list[int]:
    """The depths, sorted without repeats; a depth without a plain/residual pair is a ConfigError."""
    if not depths:
        raise ConfigError("give at least one depth, e.g. --depths 20,56")
    known = registered_depths()
    for depth in depths:
        if depth not in known:
            rule = "" if (depth - 2) % 6 == 0 and depth > 2 else " (the CIFAR nets have 6n+2 layers)"
            raise ConfigError(
                f"depth {depth}: no plain{depth}/resnet{depth} pair{rule}; "
                f"the registered depths are {', '.join(map(str, known))}"
            )
    return sorted(set(depths))


def paper_recipe(epochs: int, batch_size: int = DEFAULT_BATCH_SIZE, lr: float = DEFAULT_LR) -> dict:
    """The training keys of Section 4.2, with the schedule's milestones scaled to ``epochs``."""
    if epochs < 1:
        raise ConfigError(f"epochs must be >= 1, got {epochs}")
    return dict(
        optimizer="sgd", momentum=0.9, nesterov=False, weight_decay=1e-4, no_decay_norm_bias=False,
        lr=lr, batch_size=batch_size, epochs=epochs,
        # "divide it by 10 at 32k and 48k iterations, and terminate training at 64k": 50% and
        # 75% of training.  In epochs (fractions allowed), so the schedule fits any data size.
        schedule="multistep", schedule_unit="epoch", milestones=[0.5 * epochs, 0.75 * epochs], gamma=0.1,
        warmup_epochs=0.0, label_smoothing=0.0, tta_flip=False,
    )  # fmt: skip


# ------------------------------------------------------------------------------------------
# the experiment
# ------------------------------------------------------------------------------------------


def run_degradation_experiment(
    *,
    data: str = "fashion-mnist",
    data_dir: str | None = None,
    depths: Sequence[int] = DEFAULT_DEPTHS,
    epochs: int = DEFAULT_EPOCHS,
    limit_train: int | None = DEFAULT_LIMIT_TRAIN,
    limit_val: int | None = DEFAULT_LIMIT_VAL,
    limit_test: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    lr: float = DEFAULT_LR,
    input_size: Sequence[int] | None = None,
    seed: int = 0,
    threads: int | None = 2,
    device: str = "auto",
    out: str | Path = "runs/experiment-degradation",
    log: Callable[[str], None] = print,
) -> list[DegradationRow]:
    """Train ``plain{d}`` and ``resnet{d}`` for every depth the same way; one row per net.

    ``limit_*`` of None (or 0) keep the whole split.  Writes the run directories, ``results.md``,
    ``results.csv`` and ``degradation.png`` into ``out``.
    """
    from cnnzoo.train.engine import torch_threads

    depths = check_depths(depths)
    recipe = paper_recipe(epochs, batch_size, lr)
    limit_train, limit_val, limit_test = (n or None for n in (limit_train, limit_val, limit_test))
    # what every net is trained with: the folder's runs must share it
    common = dict(recipe, seed=seed, limit_train=limit_train, limit_val=limit_val, val_fraction=0.1,
                  input_size=list(input_size) if input_size else None, channels_last=True)  # fmt: skip
    exp = _runs.ExperimentDir.open(out, "degradation", dict(common, data=data, limit_test=limit_test))
    models = [f"{kind}{depth}" for depth in depths for kind in KINDS]
    with torch_threads(threads):
        _train_all(exp, models, common, data, data_dir, limit_test, device, threads, log)
    rows = [row_from_run(exp / model) for model in models]
    write_results(rows, exp.path, {row.model: _runs.run_history(exp / row.model) for row in rows})
    return rows


def _train_all(exp: _runs.ExperimentDir, models: Sequence[str], common: dict, data: str, data_dir: str | None,
               limit_test: int | None, device: str, threads: int | None, log: Callable[[str], None]):  # fmt: skip
    from cnnzoo.data import load_dataset
    from cnnzoo.train import fit

    # One bundle for every net: the same training subset, validation split, test images and
    # normalisation.  (load_dataset's test limit defaults to the validation limit, so the whole
    # test set is asked for explicitly.)
    bundle = load_dataset(data, data_dir=data_dir, val_fraction=0.1, seed=common["seed"],
                          limit_train=common["limit_train"], limit_val=common["limit_val"],
                          limit_test=limit_test or sys.maxsize)  # fmt: skip
    milestones = common["milestones"]
    log(f"degradation: {', '.join(models)} on {bundle.name} ({len(bundle.train)} train, "
        f"{len(bundle.val) if bundle.val is not None else 0} val, {len(bundle.test) if bundle.test is not None else 0} "
        f"test images), {common['epochs']} epochs of batch {common['batch_size']}, lr {common['lr']} /10 at epochs "
        f"{milestones[0]:g} and {milestones[1]:g}")  # fmt: skip
    for model in models:
        config = dict(common, model=model, data=bundle.name)

        def train(resume: bool, model=model):
            return fit(model, bundle=bundle, out=str(exp / model), resume=resume, verbose=True,
                       device=device, threads=threads, progress=False, log=lambda text: log(f"  [{model}] {text}"),
                       data=bundle.name, **common)  # fmt: skip

        _runs.train_once(exp / model, train, wanted=config, log=log, what=model)


def row_from_run(run_dir: Path) -> DegradationRow:
    """The table row of one finished run, from its ``metrics.csv``, ``results.json`` and ``run.json``."""
    from cnnzoo.registry import create_model

    run_dir = Path(run_dir)
    history = _runs.run_history(run_dir)
    results = _runs.run_results(run_dir)
    meta = json.loads((run_dir / "run.json").read_text())
    model = meta["model"]
    kind = next(k for k in KINDS if model.startswith(k))
    net = create_model(model, num_classes=meta["num_classes"], in_chans=meta["in_chans"])
    best_val = results.get("best_val_top1")
    return DegradationRow(
        model=model, kind=kind, depth=int(model[len(kind):]),
        final_train_error=1.0 - history[-1]["train_top1"],
        best_val_error=None if best_val is None else 1.0 - best_val,
        best_epoch=results.get("best_epoch"),
        test_error=1.0 - results["top1"] if results.get("split") == "test" else None,
        params=sum(p.numel() for p in net.parameters()),
        epochs=len(history),
        images_per_s=statistics.mean(row["images_per_s"] for row in history),
        seconds=sum(row["seconds"] for row in history),
    )  # fmt: skip


# ------------------------------------------------------------------------------------------
# reporting
# ------------------------------------------------------------------------------------------


def verdict(train_errors: Mapping[str, float]) -> str:
    """One line from the final training errors (``{"plain20": 0.12, "resnet56": 0.08, ...}``).

    Compares the shallowest and the deepest depth of each kind: the paper's claims are that the
    deeper plain net trains *worse* (degradation) and the deeper residual net no worse.
    """
    depths = sorted({int(name[len(kind):]) for name in train_errors for kind in KINDS if name.startswith(kind)})
    if len(depths) < 2:
        return "one depth only: nothing to compare (give two depths, e.g. --depths 20,56)"
    shallow, deep = depths[0], depths[-1]
    p_shallow, p_deep = train_errors[f"plain{shallow}"], train_errors[f"plain{deep}"]
    r_shallow, r_deep = train_errors[f"resnet{shallow}"], train_errors[f"resnet{deep}"]
    pct = _runs.percent
    if p_deep > p_shallow:
        plain = f"degradation: plain{deep} training error {pct(p_deep)} > plain{shallow} {pct(p_shallow)}"
    else:
        plain = (f"no degradation in this run: plain{deep} training error {pct(p_deep)} <= "
                 f"plain{shallow} {pct(p_shallow)}")  # fmt: skip
    if r_deep <= r_shallow:
        residual = f"residual: resnet{deep} {pct(r_deep)} <= resnet{shallow} {pct(r_shallow)}"
    else:
        residual = (f"residual: resnet{deep} {pct(r_deep)} > resnet{shallow} {pct(r_shallow)}, "
                    "the deeper ResNet did not train better in this run")  # fmt: skip
    agrees = p_deep > p_shallow and r_deep <= r_shallow
    return f"{plain}; {residual} ({'as in' if agrees else 'unlike'} the paper's Figure 6)"


TABLE_HEADER = ("net", "depth", "shortcuts", "final training error", "best validation error (epoch)",
                "test error", "params", "train img/s")  # fmt: skip


def format_table(rows: Sequence[DegradationRow]) -> str:
    """Markdown: one row per net, the plain nets first (the figure's left panel), then the residual ones."""
    body = []
    for row in _ordered(rows):
        best = "-" if row.best_val_error is None else f"{_runs.percent(row.best_val_error)} ({row.best_epoch})"
        body.append([row.model, row.depth, "none" if row.kind == "plain" else "identity (A)",
                     _runs.percent(row.final_train_error), best, _runs.percent(row.test_error), f"{row.params:,}",
                     f"{row.images_per_s:.0f}"])  # fmt: skip
    return _runs.markdown_table(TABLE_HEADER, body, align="lrlrrrrr")


def _ordered(rows: Sequence[DegradationRow]) -> list[DegradationRow]:
    return sorted(rows, key=lambda r: (KINDS.index(r.kind), r.depth))


CSV_HEADER = ("model", "kind", "depth", "final_train_error", "best_val_error", "best_epoch", "test_error",
              "params", "epochs", "images_per_s", "seconds")  # fmt: skip


def write_results(rows: Sequence[DegradationRow], out: Path, histories: Mapping[str, list[dict]]) -> None:
    """``results.md`` (table and verdict), ``results.csv`` and ``degradation.png`` in ``out``."""
    out = Path(out)
    _runs.write_csv(out / "results.csv", CSV_HEADER, [
        [r.model, r.kind, r.depth, _number(r.final_train_error), _number(r.best_val_error),
         "" if r.best_epoch is None else r.best_epoch, _number(r.test_error), r.params, r.epochs,
         f"{r.images_per_s:.1f}", f"{r.seconds:.1f}"] for r in _ordered(rows)])  # fmt: skip
    line = verdict({r.model: r.final_train_error for r in rows})
    note = ("Training error: the last epoch's, measured during that epoch in train mode with augmentation "
            "(as the thin curves of He et al. 2016, Figure 6). Test error: with the weights of the best "
            "validation epoch.")  # fmt: skip
    _runs.write_text(out / "results.md", f"{format_table(rows)}\n\n{line}\n\n{note}\n")
    plot_figure6(histories, out / "degradation.png")


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


def plot_figure6(histories: Mapping[str, list[dict]], path: Path) -> Path:
    """Figure 6 of the paper: error (%) against the epoch, plain nets left, residual nets right.

    Training error dashed, validation error solid (the paper draws its test error solid; here
    the test split is only measured once, at the end), one colour per depth.
    """
    with _runs.figure(path, 1, 2, dpi=110, figsize=(11, 4.2), sharey=True) as (fig, axes):
        _draw_figure6(histories, fig, axes)
    return Path(path)


def _draw_figure6(histories: Mapping[str, list[dict]], fig, axes) -> None:
    from matplotlib.ticker import MaxNLocator

    depths = sorted({int(name[len(k):]) for name in histories for k in KINDS if name.startswith(k)})
    colours = dict(zip(depths, ("tab:orange", "tab:blue", "tab:green", "tab:red", "tab:purple", "tab:brown")))
    for ax, kind in zip(axes, KINDS):
        for depth in depths:
            rows = histories.get(f"{kind}{depth}")
            if not rows:
                continue
            name = f"{kind}-{depth}" if kind == "plain" else f"ResNet-{depth}"
            for key, style, what in (("train_top1", "--", "train"), ("val_top1", "-", "val")):
                points = [(r["epoch"], 100 * (1 - r[key])) for r in rows if not math.isnan(r.get(key, math.nan))]
                if points:
                    xs, ys = zip(*points)
                    ax.plot(xs, ys, style, color=colours[depth], linewidth=1.0 if what == "train" else 2.0,
                            marker="." if len(xs) < 30 else None, label=f"{name} {what}")  # fmt: skip
        ax.set(xlabel="epoch", title=f"{KIND_LABELS[kind]} nets")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("error (%)")
    fig.suptitle("training error (dashed) and validation error (solid), after He et al. 2016, Figure 6")


# ------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--depths", type=_runs.int_list, default=list(DEFAULT_DEPTHS),
                   help="comma-separated depths, each with a plain and a residual net: 20, 32, 44, 56, 110 "
                   "(default 20,56)")  # fmt: skip
    p.add_argument("--limit-test", type=_runs.image_limit, default=None,
                   help="test images (default: the whole test set; 0: all)")  # fmt: skip


@_runs.training_experiment(
    "degradation",
    "plain vs residual nets of 20 and 56 layers: the deeper plain net trains worse, the deeper ResNet better",
    run_degradation_experiment, TRAINING_FLAGS, add_arguments,
)  # fmt: skip
def run(args: argparse.Namespace, training: dict) -> int:
    rows = run_degradation_experiment(depths=args.depths, limit_test=args.limit_test, out=args.out, **training)
    print()
    print(format_table(rows))
    print()
    print(verdict({r.model: r.final_train_error for r in rows}))
    print("(training error: the last epoch's, in train mode with augmentation, as in Figure 6's thin curves)")
    print(f"\nwritten: {Path(args.out) / 'results.md'}, results.csv, degradation.png")
    return 0
