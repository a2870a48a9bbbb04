"""``cnnzoo experiment batchnorm``: does batch normalisation make a CNN converge in fewer steps?

The brief (000 and 001, experiment 4) asks for batch normalisation computed from the
mini-batch moments with a moving average for test time, and for "a 3-layer CNN on MNIST with
and without BN, comparing the steps to converge": Ioffe & Szegedy (2015), Section 4.1 and
Figure 1(a), where the BN network reaches a higher test accuracy in far fewer steps, and
Section 4.2.1, where BN lets the learning rate grow ("increase learning rate").

The experiment trains ``cnn3`` (:mod:`cnnzoo.models.simple_cnn`: three 3x3 conv / ReLU /
max-pool stages, 32-64-128 filters, global average pooling, one linear layer) once per
variant, from the same initial weights (same seed, same parameters but the BN ones), on the
same images in the same order:

=============  =========================================================================
``none``       no normalisation, convolutions with a bias, learning rate ``L``
``bn``         :class:`~cnnzoo.layers.batchnorm.BatchNorm2dFromEquations` after every
               convolution (Algorithms 1 and 2 written out; no conv bias), rate ``L``
``bn-lr5x``    the same BN net at ``5 L`` (Section 4.2.1)
``none-lr5x``  the unnormalised net at ``5 L``: slower, or it diverges; a diverging run
               is recorded as such (the engine stops at the first non-finite loss)
``bn-torch``   (not in the default list) ``nn.BatchNorm2d`` instead of the equations:
               should give the same curve as ``bn``, up to floating-point rounding
=============  =========================================================================

Any ``{none,bn,bn-torch}-lrNx`` works (the paper also tries 30x, Section 4.2.2).

The optimiser is plain SGD with momentum 0.9, a constant learning rate and no weight decay:
a schedule or regularisation would change the speed of every variant in its own way and
blur the one difference under test.  Augmentation is off for the same reason (and the
paper's MNIST experiment has none).  Batches of 60 images, as in Section 4.1.  The base rate
``L = 0.05`` is, of 0.01, 0.05 and 0.25 tried on Fashion-MNIST, the largest at which the
unnormalised net trains: at 5x (0.25) its loss became NaN within the first 100 steps, while
the BN net trained at 0.25 a little faster than at 0.05 (300-step trials).  So ``none`` is a fair, well-tuned baseline,
and the 5x variants ask the paper's question: does BN let the rate go past that limit?

"Steps to converge" needs points finer than epochs over 54,000 images: each "epoch" here is
a pass over ``--limit-train`` images (6,000 by default, a seeded random subset of the
training split), i.e. 100 steps of 60, and the validation top-1 (``--limit-val`` images of the
held-out split) is measured after each, so every ``metrics.csv`` row is a point every 100
steps.  The report, for each variant: the first step at which validation top-1 reaches each
``--targets`` level (80%, 85% and 88% on Fashion-MNIST by default; 97/98/99% on MNIST), the
last validation top-1, the best one, the test top-1 of the best-validation weights (the
whole test set), and the training time per step.

Everything is in ``OUT`` (default ``runs/experiment-batchnorm``): one run directory per
variant (``config.yaml``, ``metrics.csv``, checkpoints), ``results.csv``, ``results.md`` and
``batchnorm.png`` (validation top-1 and training loss against the step, all variants in one
figure, like the paper's Figure 1(a)).  ``OUT/run.json`` records the training settings (a run
directory of kind ``experiment:batchnorm``), ``OUT/diverged.json`` the variants whose loss became
NaN (the engine leaves no run directory for a run that fails before its first checkpoint).
Started again with the same command, finished and diverged variants are reused and an
interrupted one resumes; other training settings in the same folder are refused, naming the
keys that differ.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from cnnzoo.errors import ConfigError
from cnnzoo.experiments import _runs
from cnnzoo.experiments._runs import float_list, int_list, markdown_table, percent, run_history, run_results

#: variant name prefix -> ``cnn3``'s ``norm`` option
NORM_OF_VARIANT = {"none": "none", "bn": "bn", "bn-torch": "bn_torch"}
DEFAULT_VARIANTS = ("none", "bn", "bn-lr5x", "none-lr5x")
#: validation top-1 levels for "steps to target", per data set (others: FALLBACK_TARGETS)
DEFAULT_TARGETS = {"fashion-mnist": (0.80, 0.85, 0.88), "mnist": (0.97, 0.98, 0.99)}
FALLBACK_TARGETS = (0.5, 0.6, 0.7)
#: the training flags (from TrainConfig) and notes for their help; defaults: run_batchnorm_experiment's
TRAINING_FLAGS = {
    "data": "mnist as in the paper", "data_dir": "", "lr": "the base rate L, constant", "momentum": "",
    "batch_size": "60 as in the paper", "epochs": "passes over the --limit-train images, one validation point each",
    "limit_train": "100 steps of 60 between validation points", "limit_val": "", "seed": "", "device": "",
    "threads": "",
}  # fmt: skip

_VARIANT_PATTERN = re.compile(r"^(none|bn|bn-torch)(?:-lr(\d+(?:\.\d+)?(?:e\d+)?)x)?$")


@dataclass(frozen=True)
class Variant:
    """One training of the experiment: which normalisation, at which multiple of the base rate."""

    name: str
    norm: str
    lr_factor: float

    @property
    def label(self) -> str:
        kind = {"none": "no BN", "bn": "BN (equations)", "bn_torch": "BN (nn.BatchNorm2d)"}[self.norm]
        return kind if self.lr_factor == 1 else f"{kind}, {self.lr_factor:g}x lr"


def parse_variant(name: str) -> Variant:
    """``"bn-lr5x"`` -> ``Variant("bn-lr5x", norm="bn", lr_factor=5.0)``; a ConfigError for anything else."""
    match = _VARIANT_PATTERN.match(name.strip())
    if not match or (match.group(2) is not None and float(match.group(2)) <= 0):
        raise ConfigError(
            f"unknown variant {name!r}; give none, bn or bn-torch, optionally with a learning-rate "
            f"multiple -lrNx (e.g. bn-lr5x); default {','.join(DEFAULT_VARIANTS)}"
        )
    return Variant(name.strip(), NORM_OF_VARIANT[match.group(1)], float(match.group(2) or 1))


def default_targets(data: str) -> tuple[float, ...]:
    base = data.split(":", 1)[0].strip().lower()
    return DEFAULT_TARGETS.get(base, FALLBACK_TARGETS)


def steps_to_target(history: Sequence[dict[str, float]], target: float, key: str = "val_top1") -> int | None:
    """The ``step`` of the first ``metrics.csv`` row whose ``key`` reaches ``target``; None if none does."""
    for row in history:
        value = row.get(key)
        if value is not None and not math.isnan(value) and value >= target:
            return int(row["step"])
    return None


@dataclass
class VariantResult:
    """What one variant's run gave, read back from its run directory."""

    variant: Variant
    lr: float
    run_dir: Path
    history: list[dict[str, float]] = field(default_factory=list)
    #: the step whose loss was not finite, when the run diverged
    diverged_at: int | None = None
    test_top1: float | None = None

    @property
    def diverged(self) -> bool:
        return self.diverged_at is not None

    @property
    def steps(self) -> int:
        return int(self.history[-1]["step"]) if self.history else 0

    @property
    def last_val_top1(self) -> float | None:
        return self.history[-1].get("val_top1") if self.history else None

    @property
    def best_val_top1(self) -> float | None:
        values = [r["val_top1"] for r in self.history if not math.isnan(r.get("val_top1", math.nan))]
        return max(values) if values else None

    @property
    def ms_per_step(self) -> float | None:
        # the engine's "seconds" is the training time of the epoch (evaluation excluded)
        seconds = sum(r.get("seconds", 0.0) for r in self.history)
        return 1000 * seconds / self.steps if self.steps else None


# ------------------------------------------------------------------------------------------
# the experiment
# ------------------------------------------------------------------------------------------


def run_batchnorm_experiment(
    *,
    data: str = "fashion-mnist",
    data_dir: str | None = None,
    variants: Sequence[str] = DEFAULT_VARIANTS,
    lr: float = 0.05,
    momentum: float = 0.9,
    batch_size: int = 60,
    epochs: int = 15,
    limit_train: int | None = 6000,
    limit_val: int | None = 2000,
    limit_test: int | None = None,
    targets: Sequence[float] | None = None,
    widths: Sequence[int] = (32, 64, 128),
    seed: int = 0,
    out: str | Path = "runs/experiment-batchnorm",
    device: str = "auto",
    threads: int | None = 2,
    log: Callable[[str], None] = print,
) -> list[VariantResult]:
    """Run the experiment (module docstring); returns one :class:`VariantResult` per variant."""
    chosen = [parse_variant(v) for v in variants]
    if not chosen:
        raise ConfigError("give at least one variant")
    if len({v.name for v in chosen}) != len(chosen):
        raise ConfigError(f"a variant is named twice: {', '.join(v.name for v in chosen)}")
    targets = tuple(targets) if targets else default_targets(data)
    _check_targets(targets)
    if lr <= 0 or batch_size < 1 or epochs < 1:
        raise ConfigError(f"need lr > 0, batch size >= 1 and epochs >= 1, got {lr}, {batch_size}, {epochs}")
    # what decides what a variant trains: the folder's runs must share it
    settings = dict(data=data, lr=lr, momentum=momentum, batch_size=batch_size, epochs=epochs,
                    limit_train=limit_train, limit_val=limit_val, limit_test=limit_test,
                    widths=[int(w) for w in widths], seed=seed)  # fmt: skip
    from cnnzoo.train.engine import torch_threads

    exp = _runs.ExperimentDir.open(out, "batchnorm", settings)
    with torch_threads(threads):
        results = _run_variants(exp, chosen, settings, data_dir, device, threads, log)
    write_results(results, exp.path, targets)
    return results


def _run_variants(exp: _runs.ExperimentDir, chosen: Sequence[Variant], settings: dict[str, Any],
                  data_dir: str | None, device: str, threads: int | None, log) -> list[VariantResult]:  # fmt: skip
    from cnnzoo.data import load_dataset

    data, batch_size, seed = settings["data"], settings["batch_size"], settings["seed"]
    limit_train, limit_val, limit_test = settings["limit_train"], settings["limit_val"], settings["limit_test"]
    # one copy of the data for every variant; the whole test set unless limited (load_dataset
    # would otherwise limit the test split like the validation split)
    bundle = load_dataset(data, data_dir=data_dir, val_fraction=0.1, seed=seed, limit_train=limit_train,
                          limit_val=limit_val, limit_test=limit_test or sys.maxsize)  # fmt: skip
    if bundle.val is None or not len(bundle.val):
        raise ConfigError("the experiment measures validation top-1: the validation split is empty")
    steps_per_epoch = math.ceil(len(bundle.train) / batch_size)
    test_images = len(bundle.test) if bundle.test is not None else 0
    log(f"{bundle.name}: {len(bundle.train)} training images ({steps_per_epoch} steps of {batch_size} per epoch), "
        f"{len(bundle.val)} validation, {test_images} test")

    results = []
    for variant in chosen:
        run_dir = exp / variant.name
        variant_lr = settings["lr"] * variant.lr_factor
        config = _variant_config(variant, variant_lr, settings, bundle)
        if variant.name not in exp.read_json(DIVERGED_FILE, {}):
            what = f"{variant.name} ({variant.label}, lr {variant_lr:g})"

            def train(resume: bool, variant=variant, run_dir=run_dir, config=config):
                return _train_variant(exp, variant, config, run_dir, bundle, resume, device, threads, log)

            if not _runs.finished(run_dir):
                log(f"training {what}")
            _runs.train_once(run_dir, train, wanted=config, log=log, what=what)
        result = read_variant(variant, variant_lr, run_dir, exp.read_json(DIVERGED_FILE, {}).get(variant.name))
        results.append(result)
        if result.diverged:
            log(f"{variant.name}: diverged at step {result.diverged_at}")
        else:
            log(f"{variant.name}: {result.steps} steps, last val top-1 {percent(result.last_val_top1)}, "
                f"test top-1 {percent(result.test_top1)}")
    return results


def _check_targets(targets: Sequence[float]) -> None:
    bad = [t for t in targets if not 0 < t <= 1]
    if bad:
        raise ConfigError(f"a target is a validation top-1 fraction in (0, 1], got {bad[0]}")


#: ``OUT/diverged.json``: ``{variant: {"epoch", "batch", "step", "loss", "message"}}``
DIVERGED_FILE = "diverged.json"


def _variant_config(variant: Variant, lr: float, settings: dict[str, Any], bundle) -> dict[str, Any]:
    """The configuration keys of one variant's training (also what a finished run must match)."""
    return dict(model="cnn3", data=bundle.name, model_kwargs={"norm": variant.norm, "widths": settings["widths"]},
                epochs=settings["epochs"], batch_size=settings["batch_size"], lr=lr, optimizer="sgd",
                momentum=settings["momentum"], weight_decay=0.0, schedule="constant", crop_padding=0, flip=False,
                seed=settings["seed"])  # fmt: skip


def _train_variant(exp: _runs.ExperimentDir, variant: Variant, config: dict[str, Any], run_dir: Path, bundle,
                   resume: bool, device: str, threads: int | None, log: Callable[[str], None]):  # fmt: skip
    """Train one variant; returns the engine's FitResult, or None when the loss diverged (recorded)."""
    from cnnzoo.train import TrainingDiverged, fit

    try:
        return fit(config["model"], bundle=bundle, out=str(run_dir), resume=resume,
                   device=device, threads=threads, progress=False, log=lambda text: log(f"  [{variant.name}] {text}"),
                   **{k: v for k, v in config.items() if k != "model"})  # fmt: skip
    except TrainingDiverged as exc:
        # a result of the experiment, not a failure of it: record where (in the experiment's
        # folder: a run that diverges before its first checkpoint leaves no run directory), keep going
        diverged = exp.read_json(DIVERGED_FILE, {})
        loss = exc.loss if math.isfinite(exc.loss) else str(exc.loss)  # JSON has no NaN
        diverged[variant.name] = {"epoch": exc.epoch, "batch": exc.batch, "step": exc.step, "loss": loss,
                                  "message": str(exc)}  # fmt: skip
        exp.write_json(DIVERGED_FILE, diverged)
        log(f"  [{variant.name}] diverged at step {exc.step}: {exc}")


def read_variant(variant: Variant, lr: float, run_dir: Path, diverged: dict | None = None) -> VariantResult:
    """A variant's result from its run directory (``metrics.csv``, ``results.json``) and its divergence record."""
    result = VariantResult(variant, lr, run_dir)
    if (run_dir / "metrics.csv").is_file():
        result.history = run_history(run_dir)
    if diverged is not None:
        result.diverged_at = int(diverged["step"])
    elif _runs.finished(run_dir):
        final = run_results(run_dir)
        result.test_top1 = float(final["top1"]) if final.get("split") == "test" else None
    return result


# ------------------------------------------------------------------------------------------
# reporting
# ------------------------------------------------------------------------------------------


def _steps_cell(result: VariantResult, target: float) -> str:
    step = steps_to_target(result.history, target)
    if step is not None:
        return f"{step:,}"
    return "diverged" if result.diverged else "not reached"


def format_table(results: Sequence[VariantResult], targets: Sequence[float]) -> str:
    """Markdown: one row per variant, steps to each validation target and the final accuracies."""
    header = ["variant", "normalisation", "lr", *[f"steps to {100 * t:g}% val" for t in targets],
              "last val top-1", "best val top-1", "test top-1", "steps", "train ms/step"]  # fmt: skip
    rows = []
    for r in results:
        last = f"diverged at step {r.diverged_at:,}" if r.diverged else percent(r.last_val_top1)
        ms = f"{r.ms_per_step:.0f}" if r.ms_per_step is not None else "-"
        rows.append([r.variant.name, r.variant.label, f"{r.lr:g}", *[_steps_cell(r, t) for t in targets],
                     last, percent(r.best_val_top1), percent(r.test_top1), f"{r.steps:,}", ms])  # fmt: skip
    return markdown_table(header, rows, align="lll" + "r" * (len(header) - 3))


def findings(results: Sequence[VariantResult], targets: Sequence[float]) -> list[str]:
    """Sentences for results.md: how many fewer steps than ``none``; how close ``bn`` and ``bn-torch`` are."""
    lines = []
    by_name = {r.variant.name: r for r in results}
    baseline = by_name.get("none")
    if baseline is not None:
        for r in results:
            if r is baseline:
                continue
            parts = []
            for t in targets:
                ours, theirs = steps_to_target(r.history, t), steps_to_target(baseline.history, t)
                if ours is not None and theirs is not None:
                    parts.append(f"{100 * t:g}% at step {ours:,} vs {theirs:,} ({_ratio(theirs, ours)})")
                elif ours is not None:
                    parts.append(f"{100 * t:g}% at step {ours:,}, none not within its run")
                elif theirs is not None:
                    parts.append(f"{100 * t:g}% not within the run, none at step {theirs:,}")
            if r.diverged:
                parts.append(f"diverged at step {r.diverged_at:,}")
            if parts:
                lines.append(f"- {r.variant.name} against none: " + "; ".join(parts) + ".")
    ours, theirs = by_name.get("bn"), by_name.get("bn-torch")
    if ours is not None and theirs is not None and ours.history and theirs.history:
        pairs = [(a["val_top1"], b["val_top1"]) for a, b in zip(ours.history, theirs.history)]
        gap = max(abs(a - b) for a, b in pairs)
        lines.append(f"- bn (from the equations) and bn-torch (nn.BatchNorm2d): validation top-1 differs by at most "
                     f"{100 * gap:.2f} points over {len(pairs)} evaluations; test top-1 {percent(ours.test_top1)} "
                     f"vs {percent(theirs.test_top1)} (float32 rounding, grown by training: in float64 the two "
                     "give the same weights to ~1e-13).")  # fmt: skip
    return lines


def _ratio(baseline_steps: int, steps: int) -> str:
    if baseline_steps == steps:
        return "as many steps"
    if baseline_steps > steps:
        return f"{baseline_steps / steps:.1f}x fewer steps"
    return f"{steps / baseline_steps:.1f}x more steps"


def write_results(results: Sequence[VariantResult], out: Path, targets: Sequence[float]) -> None:
    out = Path(out)
    header = ["variant", "norm", "lr", "status", "diverged_at_step", *[f"steps_to_{100 * t:g}" for t in targets],
              "last_val_top1", "best_val_top1", "test_top1", "steps", "train_ms_per_step"]  # fmt: skip
    rows = []
    for r in results:
        reached = [steps_to_target(r.history, t) for t in targets]
        rows.append([r.variant.name, r.variant.norm, r.lr, "diverged" if r.diverged else "finished",
                     r.diverged_at if r.diverged else "", *["" if s is None else s for s in reached],
                     _number(r.last_val_top1), _number(r.best_val_top1), _number(r.test_top1), r.steps,
                     "" if r.ms_per_step is None else f"{r.ms_per_step:.1f}"])  # fmt: skip
    _runs.write_csv(out / "results.csv", header, rows)
    every = next((int(r.history[0]["step"]) for r in results if r.history), None)
    text = [
        f"Validation top-1 after every pass over the training subset ({every or '?'} steps); \"steps to X%\" is the",
        "first such point at or above X%. Test top-1: the weights of the best validation point, on the test set.",
        "A diverged run stopped at its first non-finite loss.",
        "",
        format_table(results, targets),
    ]
    notes = findings(results, targets)
    if notes:
        text += ["", *notes]
    _runs.write_text(out / "results.md", "\n".join(text) + "\n")
    plot_results(results, out / "batchnorm.png", targets)


def _number(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.4f}"


def plot_results(results: Sequence[VariantResult], path: Path, targets: Sequence[float]) -> Path:
    """Validation top-1 and training loss against the step, one line per variant (Figure 1(a))."""
    with _runs.figure(path, 1, 2, figsize=(11, 4.2)) as (fig, (ax_acc, ax_loss)):
        _draw(results, targets, fig, ax_acc, ax_loss)
    return Path(path)


def _draw(results: Sequence[VariantResult], targets: Sequence[float], fig, ax_acc, ax_loss) -> None:
    for r in results:
        label = f"{r.variant.name}: {r.variant.label}, lr {r.lr:g}"
        if r.diverged:
            label += f" (diverged at step {r.diverged_at:,})"
        steps = [row["step"] for row in r.history]
        (line,) = ax_acc.plot(steps, [100 * row["val_top1"] for row in r.history], marker=".", label=label)
        # the epoch's mean training loss, plotted at the epoch's last step
        ax_loss.plot(steps, [row["train_loss"] for row in r.history], marker=".", color=line.get_color(), label=label)
        if r.diverged:
            ax_acc.axvline(r.diverged_at, color=line.get_color(), linestyle="--", linewidth=1)
    for t in targets:
        ax_acc.axhline(100 * t, color="black", linestyle=":", linewidth=0.8)
    ax_acc.set(xlabel="training step (batch)", ylabel="validation top-1 (%)", title="validation accuracy")
    ax_loss.set(xlabel="training step (batch)", ylabel="training loss (epoch mean)", title="training loss")
    first_losses = [r.history[0]["train_loss"] for r in results if r.history and not r.diverged]
    if first_losses:  # a run blowing up before it diverged would flatten every other curve
        ax_loss.set_ylim(0, 1.2 * max(first_losses))
    for ax in (ax_acc, ax_loss):
        ax.grid(alpha=0.3)
    ax_acc.legend(fontsize=7)
    fig.suptitle("cnn3 with and without batch normalisation")


# ------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                   help="comma-separated: none, bn, bn-torch, each optionally -lrNx for N times --lr "
                   f"(default {','.join(DEFAULT_VARIANTS)})")  # fmt: skip
    p.add_argument("--limit-test", type=_runs.image_limit, default=None,
                   help="test images (default: the whole test set; 0: all)")  # fmt: skip
    p.add_argument("--targets", type=float_list, default=None,
                   help="validation top-1 levels for 'steps to target', comma-separated fractions "
                   "(default 0.80,0.85,0.88 on fashion-mnist, 0.97,0.98,0.99 on mnist)")  # fmt: skip
    p.add_argument("--widths", type=int_list, default=[32, 64, 128],
                   help="filters of the three convs (default 32,64,128)")  # fmt: skip


@_runs.training_experiment(
    "batchnorm",
    "a 3-layer CNN with and without batch norm (and at 5x the learning rate): steps to reach validation targets",
    run_batchnorm_experiment, TRAINING_FLAGS, add_arguments,
)  # fmt: skip
def run(args: argparse.Namespace, training: dict[str, Any]) -> int:
    targets = args.targets or default_targets(training["data"])
    variants = [v for v in args.variants.split(",") if v.strip()]
    results = run_batchnorm_experiment(variants=variants, limit_test=args.limit_test, targets=targets,
                                       widths=args.widths, out=args.out, **training)  # fmt: skip
    print()
    print(format_table(results, targets))
    notes = findings(results, targets)
    if notes:
        print("\n" + "\n".join(notes))
    print(f"\nwritten: {Path(args.out) / 'results.md'}, results.csv, batchnorm.png")
    return 0
