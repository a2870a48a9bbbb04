"""``cnnzoo experiment transfer``: 001's claims about transfer learning, measured offline.

001 says transfer learning gives a good result fast and good results on small data sets, and
names three ways to do it.  The experiment (no download: one data set split in two):

1. **pretrain** a network (LeNet-5 by default) on Fashion-MNIST classes 0-4 (T-shirt/top,
   Trouser, Pullover, Dress, Coat), all their training images;
2. on classes 5-9 (Sandal, Shirt, Sneaker, Bag, Ankle boot), with only ``N`` labelled
   training images per class (10, 50, 500 by default), train four ways for the same
   epochs: **scratch** (random initialisation), **all** (pretrained weights, every
   parameter trains), **last** (only the last layer below the head and a new head train:
   LeNet-5's F6 and output layer) and **new-fc** (the whole pretrained network, its
   5-class output layer included, stays frozen; one new fully connected layer on top
   trains); and, to tell the two frozen variants apart, **head** (mode last with
   ``last_k=0``: everything frozen but a new output layer that replaces the old one and
   reads the 84 features of F6, where new-fc reads the old head's 5 outputs);
3. report the test top-1 (the whole test set of classes 5-9, with the weights of the best
   validation epoch), the first epoch whose validation top-1 reaches a target (one per size:
   by default 75%, 85% and 93% for 10, 50 and 500 images per class, levels that the best
   methods reach at each size), and plot them.

The validation images (``--val-per-class``, 100 by default) are other training images of
classes 5-9; the same data, normalisation (the whole training set's) and schedule serve
every method.  Everything is in ``OUT`` (default ``runs/experiment-transfer``): one run
directory per training, ``results.csv``, ``results.md`` and ``transfer.png``; ``run.json``
records the settings (a run directory of kind ``experiment:transfer``).  Started again with
the same command, a run that finished is not run again and an interrupted one (the pretraining
too) resumes from its last checkpoint, so an interrupted experiment continues where it
stopped; other settings in the same folder are refused, naming the keys that differ.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from cnnzoo.errors import ConfigError
from cnnzoo.experiments import _runs
from cnnzoo.experiments._runs import float_list, int_list

METHODS = ("scratch", "all", "last", "head", "new-fc")
METHOD_LABELS = {
    "scratch": "from scratch",
    "all": "pretrained, train all (1)",
    "last": "pretrained, train last_k layers + new head (2)",
    "head": "pretrained, train a new head only (2, last_k=0)",
    "new-fc": "pretrained, frozen + new FC on top (3)",
}


@dataclass
class RunRecord:
    """One training of the experiment."""

    method: str
    per_class: int
    seed: int
    test_top1: float
    best_val_top1: float
    epochs_to_target: int | None
    val_top1: list[float] = field(default_factory=list)
    seconds: float = 0.0
    trainable_params: int = 0
    total_params: int = 0


DEFAULT_SIZES = (10, 50, 500)
DEFAULT_TARGETS = (0.75, 0.85, 0.93)
#: the training flags (from TrainConfig) and notes for their help; defaults: run_transfer_experiment's
TRAINING_FLAGS = {"data": "", "data_dir": "", "epochs": "of every few-label training",
                  "batch_size": "", "lr": "SGD, of the few-label trainings", "device": "", "threads": ""}  # fmt: skip
#: the recipe of every training of the experiment (the pretraining too)
RECIPE = dict(momentum=0.9, weight_decay=5e-4, schedule="cosine", optimizer="sgd")


def targets_for(target: float | Sequence[float] | dict, sizes: Sequence[int]) -> dict[int, float]:
    """``{size: validation top-1 target}`` from one target or one per size."""
    if isinstance(target, dict):
        values = [target[n] for n in sizes]
    elif isinstance(target, (int, float)):
        values = [float(target)] * len(sizes)
    else:
        values = [float(t) for t in target]
        if len(values) == 1:
            values = values * len(sizes)
        if len(values) != len(sizes):
            raise ConfigError(f"give one target or one per size: {len(values)} targets for {len(sizes)} sizes")
    bad = [t for t in values if not 0 < t <= 1]
    if bad:
        raise ConfigError(f"a target is a validation top-1 fraction in (0, 1], got {bad[0]}")
    return dict(zip(sizes, values))


def epochs_to_target(val_top1: Sequence[float], target: float) -> int | None:
    """The first epoch (1-based) whose validation top-1 reaches ``target``; None if none does."""
    for epoch, value in enumerate(val_top1, start=1):
        if value is not None and not math.isnan(value) and value >= target:
            return epoch
    return None


def _span(text: str) -> str:
    return text.replace(",", "_").replace(" ", "")


# ------------------------------------------------------------------------------------------
# the experiment
# ------------------------------------------------------------------------------------------


def run_transfer_experiment(
    *,
    data: str = "fashion-mnist",
    data_dir: str | None = None,
    model: str = "lenet5",
    source_classes: str = "0-4",
    target_classes: str = "5-9",
    sizes: Sequence[int] = DEFAULT_SIZES,
    val_per_class: int = 100,
    pretrain_epochs: int = 5,
    pretrain_lr: float = 0.05,
    epochs: int = 20,
    batch_size: int = 16,
    lr: float = 0.02,
    last_k: int = 1,
    target: float | Sequence[float] = DEFAULT_TARGETS,
    seeds: Sequence[int] = (0,),
    methods: Sequence[str] = METHODS,
    out: str | Path = "runs/experiment-transfer",
    device: str = "auto",
    threads: int | None = 1,
    log: Callable[[str], None] = print,
) -> list[RunRecord]:
    """Run the experiment (module docstring); returns one :class:`RunRecord` per training."""
    from cnnzoo.data import load_dataset
    from cnnzoo.train.engine import torch_threads
    from cnnzoo.transfer.data import parse_classes

    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ConfigError(f"unknown method {bad[0]!r}; choose from {', '.join(METHODS)}")
    if not sizes or min(sizes) < 1:
        raise ConfigError(f"sizes must be positive numbers of images per class, got {list(sizes)}")
    targets = targets_for(target, sizes)
    full = load_dataset(data, data_dir=data_dir, val_fraction=0.1, seed=0)
    source = parse_classes(source_classes, full.classes)
    target_ids = parse_classes(target_classes, full.classes)
    if set(source) & set(target_ids):
        raise ConfigError("the pretraining and the target classes overlap: the experiment needs unseen classes")
    # the runs' names hold the method, the size and the seed; the rest must be shared by the folder's runs
    settings = dict(data=data, model=model, source_classes=source_classes, target_classes=target_classes,
                    val_per_class=val_per_class, pretrain_epochs=pretrain_epochs, pretrain_lr=pretrain_lr,
                    epochs=epochs, batch_size=batch_size, lr=lr, last_k=last_k)  # fmt: skip
    exp = _runs.ExperimentDir.open(out, "transfer", settings)
    execution = dict(device=device, threads=threads, progress=False, data_dir=data_dir)
    records: list[RunRecord] = []
    with torch_threads(threads):
        for seed in seeds:
            pre_dir = _pretrain(exp, model, full, source, source_classes, seed, pretrain_epochs, pretrain_lr,
                                execution, log)  # fmt: skip
            for per_class in sizes:
                records += _few_labels(exp, model, full, target_ids, pre_dir, per_class, val_per_class, seed, methods,
                                       targets[per_class], dict(epochs=epochs, batch_size=batch_size, lr=lr),
                                       last_k, execution, log)  # fmt: skip
    write_results(records, exp.path, sizes, targets, methods)
    return records


def _pretrain(exp: _runs.ExperimentDir, model: str, full, source: list[int], source_classes: str, seed: int,
              epochs: int, lr: float, execution: dict, log: Callable[[str], None]) -> Path:  # fmt: skip
    """1. the network trained on the source classes (reused when finished, resumed when not); its run directory."""
    from cnnzoo.train import fit
    from cnnzoo.transfer.data import class_subset

    pre_dir = exp / f"pretrain-{model}-seed{seed}"
    bundle = class_subset(full, source, seed=seed)
    config = dict(RECIPE, model=model, data=bundle.name, epochs=epochs, batch_size=128, lr=lr, seed=seed)

    def train(resume: bool):
        log(f"pretraining {model} on {bundle.name}: {len(bundle.train)} images, {epochs} epochs")
        return fit(model, bundle=bundle, out=str(pre_dir), resume=resume, verbose=False,
                   **execution, **{k: v for k, v in config.items() if k != "model"})  # fmt: skip

    _runs.train_once(pre_dir, train, wanted=config, log=log, what=f"pretraining {model} (seed {seed})")
    top1 = _runs.run_results(pre_dir)["top1"]
    log(f"pretrained {model} (seed {seed}): test top-1 {100 * top1:.2f}% on classes {source_classes}")
    return pre_dir


def _few_labels(exp: _runs.ExperimentDir, model: str, full, target_ids: list[int], pre_dir: Path, per_class: int,
                val_per_class: int, seed: int, methods: Sequence[str], target: float, training: dict, last_k: int,
                execution: dict, log: Callable[[str], None]) -> list[RunRecord]:  # fmt: skip
    """2. few labelled images of the target classes, every method; one record each (``experiment.json``)."""
    from cnnzoo.transfer.data import class_subset

    bundle = class_subset(full, target_ids, per_class=per_class, val_per_class=val_per_class, seed=seed)
    records = []
    for method in methods:
        run_dir = exp / f"{method}-{per_class}pc-seed{seed}"
        record_file = run_dir / "experiment.json"
        if record_file.exists():
            record = RunRecord(**json.loads(record_file.read_text()))
        else:
            _train_one(method, model, bundle, pre_dir, run_dir, dict(RECIPE, seed=seed, **training), last_k,
                       execution, log)  # fmt: skip
            record = read_run(method, per_class, seed, run_dir)
            _runs.write_text(record_file, json.dumps(asdict(record), indent=2))
        record.epochs_to_target = epochs_to_target(record.val_top1, target)
        records.append(record)
        reached = record.epochs_to_target or "-"
        log(f"{per_class:>4} per class  {method:<8} test top-1 {100 * record.test_top1:6.2f}%  "
            f"epochs to {100 * target:.0f}% val: {reached}  ({record.seconds:.0f} s)")
    return records


def _train_one(method: str, model: str, bundle, pre_dir: Path, run_dir: Path, config: dict, last_k: int,
               execution: dict, log: Callable[[str], None]) -> None:  # fmt: skip
    """One method's training into ``run_dir`` (reused when finished, resumed when not)."""
    from cnnzoo.train import fit
    from cnnzoo.transfer.commands import finetune

    wanted = dict(config, data=bundle.name)

    def train(resume: bool):
        settings = dict(config, out=str(run_dir), resume=resume, verbose=False, **execution)
        if method == "scratch":
            return fit(model, data=bundle.name, bundle=bundle, **settings)
        mode, k = ("last", 0) if method == "head" else (method, last_k)
        return finetune(str(pre_dir), bundle.name, mode, last_k=k, reset_head=True, bundle=bundle, **settings)

    kind = "train" if method == "scratch" else "finetune"
    _runs.train_once(run_dir, train, wanted=wanted, kind=kind, log=log, what=f"{method} ({run_dir.name})")


def read_run(method: str, per_class: int, seed: int, run_dir: Path) -> RunRecord:
    """One training's record, from its run directory (``metrics.csv``, ``results.json``, ``run.json``)."""
    from cnnzoo.rundir import read_record

    history = _runs.run_history(run_dir)
    results = _runs.run_results(run_dir)
    transfer = (read_record(run_dir) or {}).get("transfer")
    if transfer is None:
        from cnnzoo.train.checkpoint import load_weights

        tensors, _ = load_weights(run_dir / "best.safetensors")
        total = sum(t.numel() for k, t in tensors.items() if not k.endswith(("running_mean", "running_var",
                                                                             "num_batches_tracked")))  # fmt: skip
        trainable = total
    else:
        total, trainable = transfer["total_params"], transfer["trainable_params"]
    return RunRecord(
        method=method, per_class=per_class, seed=seed,
        test_top1=float(results["top1"]) if results.get("split") == "test" else 0.0,
        best_val_top1=float(results.get("best_val_top1") or 0.0), epochs_to_target=None,
        val_top1=[float(row.get("val_top1", math.nan)) for row in history],
        seconds=float(sum(row.get("seconds", 0.0) for row in history)), trainable_params=int(trainable),
        total_params=int(total),
    )  # fmt: skip


# ------------------------------------------------------------------------------------------
# reporting
# ------------------------------------------------------------------------------------------


def _cell(values: list[float]) -> str:
    if len(values) == 1:
        return f"{100 * values[0]:.1f}%"
    return f"{100 * statistics.mean(values):.1f} ± {100 * statistics.stdev(values):.1f}%"


def _epochs_cell(values: list[int | None]) -> str:
    reached = [v for v in values if v is not None]
    if not reached:
        return "not reached"
    text = f"{statistics.mean(reached):.1f}".rstrip("0").rstrip(".")
    return text if len(reached) == len(values) else f"{text} ({len(reached)}/{len(values)} runs)"


def format_table(records: list[RunRecord], sizes: Sequence[int], target: float | Sequence[float] | dict,
                 methods: Sequence[str] = METHODS) -> str:  # fmt: skip
    """Markdown: one row per method, test top-1 and epochs to the validation target per size."""
    targets = targets_for(target, sizes)
    header = "| method | trainable params |" + "".join(
        f" {n}/class: test top-1 | epochs to {100 * targets[n]:.0f}% |" for n in sizes
    )
    rule = "|---|---:|" + "---:|---:|" * len(sizes)
    lines = [header, rule]
    for method in methods:
        rows = [r for r in records if r.method == method]
        if not rows:
            continue
        cells = [METHOD_LABELS[method], f"{rows[0].trainable_params:,} of {rows[0].total_params:,}"]
        for n in sizes:
            chosen = [r for r in rows if r.per_class == n]
            cells.append(_cell([r.test_top1 for r in chosen]) if chosen else "-")
            reached = [epochs_to_target(r.val_top1, targets[n]) for r in chosen]
            cells.append(_epochs_cell(reached) if chosen else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_results(records: list[RunRecord], out: Path, sizes: Sequence[int], target: float | Sequence[float] | dict,
                  methods: Sequence[str] = METHODS) -> None:  # fmt: skip
    targets = targets_for(target, sizes)
    header = ["method", "per_class", "seed", "test_top1", "best_val_top1", "target", "epochs_to_target", "seconds",
              "trainable_params", "total_params", "val_top1_per_epoch"]  # fmt: skip
    rows = []
    for r in records:
        reached = epochs_to_target(r.val_top1, targets[r.per_class])
        rows.append([r.method, r.per_class, r.seed, f"{r.test_top1:.4f}", f"{r.best_val_top1:.4f}",
                     targets[r.per_class], reached if reached is not None else "", f"{r.seconds:.1f}",
                     r.trainable_params, r.total_params, " ".join(f"{v:.4f}" for v in r.val_top1)])  # fmt: skip
    _runs.write_csv(Path(out) / "results.csv", header, rows)
    _runs.write_text(Path(out) / "results.md", format_table(records, sizes, targets, methods) + "\n")
    plot_results(records, out / "transfer.png", sizes, targets, methods)


def plot_results(records: list[RunRecord], path: Path, sizes: Sequence[int], target: float | Sequence[float] | dict,
                 methods: Sequence[str] = METHODS) -> Path:  # fmt: skip
    """Test top-1 against labelled images per class, and the validation curves per size."""
    targets = targets_for(target, sizes)
    with _runs.figure(path, 1, 1 + len(sizes), figsize=(4.2 * (1 + len(sizes)), 3.8)) as (fig, axes):
        _draw(records, axes, sizes, targets, methods)
    return path


def _draw(records: list[RunRecord], axes, sizes: Sequence[int], targets: dict[int, float],
          methods: Sequence[str]) -> None:  # fmt: skip
    colours = dict(zip(METHODS, ("tab:gray", "tab:blue", "tab:green", "tab:purple", "tab:orange")))
    ax = axes[0]
    for method in methods:
        xs, ys, errs = [], [], []
        for n in sizes:
            values = [r.test_top1 for r in records if r.method == method and r.per_class == n]
            if values:
                xs.append(n)
                ys.append(100 * statistics.mean(values))
                errs.append(100 * statistics.stdev(values) if len(values) > 1 else 0.0)
        if xs:
            ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=3, label=METHOD_LABELS[method], color=colours[method])
    ax.set_xscale("log")
    ax.set_xlabel("labelled training images per class")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title("accuracy on the new classes")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    for ax, n in zip(axes[1:], sizes):
        for method in methods:
            runs = [r for r in records if r.method == method and r.per_class == n and r.val_top1]
            if not runs:
                continue
            length = min(len(r.val_top1) for r in runs)
            mean = [100 * statistics.mean(r.val_top1[i] for r in runs) for i in range(length)]
            ax.plot(range(1, length + 1), mean, marker=".", color=colours[method], label=method)
        ax.axhline(100 * targets[n], color="black", linestyle=":", linewidth=1)
        ax.set_title(f"{n} images per class: validation top-1")
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation top-1 (%)")
        ax.grid(alpha=0.3)


# ------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="lenet5", help="the network (default lenet5; e.g. resnet20 to scale up)")
    p.add_argument("--source-classes", default="0-4", help="pretraining classes (default 0-4)")
    p.add_argument("--target-classes", default="5-9", help="new classes (default 5-9)")
    p.add_argument("--sizes", type=int_list, default=list(DEFAULT_SIZES),
                   help="labelled training images per new class, comma-separated (default 10,50,500)")  # fmt: skip
    p.add_argument("--val-per-class", type=int, default=100, help="validation images per new class (default 100)")
    p.add_argument("--pretrain-epochs", type=int, default=5)
    p.add_argument("--pretrain-lr", type=float, default=0.05)
    p.add_argument("--last-k", type=int, default=1, help="mode last: layers below the head that train (default 1)")
    p.add_argument("--target", type=float_list, default=None,
                   help="validation top-1 for 'epochs to target': one value, or one per size "
                   "(default 0.75,0.85,0.93 for the default sizes, else 0.85)")  # fmt: skip
    p.add_argument("--seeds", type=int_list, default=[0], help="seeds, comma-separated (default 0)")
    p.add_argument("--methods", default=",".join(METHODS), help="subset of scratch,all,last,head,new-fc")


@_runs.training_experiment(
    "transfer",
    "transfer learning three ways vs from scratch: Fashion-MNIST classes 0-4 -> 5-9, 10/50/500 labels per class",
    run_transfer_experiment, TRAINING_FLAGS, add_arguments,
)  # fmt: skip
def run(args: argparse.Namespace, training: dict) -> int:
    target = args.target
    if target is None:
        target = list(DEFAULT_TARGETS) if list(args.sizes) == list(DEFAULT_SIZES) else [0.85]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    records = run_transfer_experiment(
        model=args.model, source_classes=args.source_classes, target_classes=args.target_classes, sizes=args.sizes,
        val_per_class=args.val_per_class, pretrain_epochs=args.pretrain_epochs, pretrain_lr=args.pretrain_lr,
        last_k=args.last_k, target=target, seeds=args.seeds, methods=methods, out=args.out, **training,
    )  # fmt: skip
    print()
    print(format_table(records, args.sizes, target, methods))
    print(f"\nwritten: {Path(args.out) / 'results.csv'}, results.md, transfer.png")
    return 0
