"""``cnnzoo experiment lesion``: residual nets behave like ensembles of shallow nets (brief, experiment 8).

000 presents Veit, Wilber & Belongie 2016, "Residual Networks Behave Like Ensembles of
Relatively Shallow Networks": a residual net unrolls into many paths of different lengths,
so, like an ensemble, it should survive losing a few of its members.  Their lesion study
(Section 4) tests that at test time, on a trained net, without retraining:

(a) **delete one block** (Fig. 3).  Deleting a block of a residual net leaves its shortcut:
    half of the paths survive and the error barely moves.  In a net without shortcuts (their
    VGG-15, here the plain twin of the residual net, e.g. ``plain56``) the block is on the only
    path and the error jumps to chance;
(b) **delete k blocks** at random (Fig. 5a): the residual net's error rises smoothly with k,
    as an ensemble's does when members leave;
(c) **reorder**: k random swaps of two blocks of the same stage (Fig. 5b): again a smooth rise.

What runs here: the residual net (``--model``, default ``resnet56``) and its plain twin
(``--plain``, default the ``plainNN`` of a ``resnetNN``) are trained the same way (by default
on 8000 Fashion-MNIST images at 28x28 for 3 epochs, SGD 0.1 with a cosine schedule after one
warm-up epoch, :func:`residual_training`), or taken from finished ``cnnzoo train`` run
directories (``--from``, ``--plain-from``).  Each lesion acts on a deep copy of the trained
net in eval mode, and is measured as the test error on the same test images for both nets
(``--limit-test``, 1000 by default; 0 means the whole test set).

Only blocks whose output has their input's shape can go (:meth:`ResidualNet.delete_blocks`);
for (a) the residual net's downsampling blocks are also "deleted" Veit's way, by switching off
their residual branch so that only the (zero-padded, strided) shortcut carries the signal;
the plain net has no shortcut there, so its downsampling blocks stay.  (b) draws k of the
deletable blocks, k = 1 .. ``--max-k`` (8), ``--draws`` (5) times per k; (c) draws k swaps,
each of two deletable blocks of one stage.  The draws depend only on the seed, k and the draw,
so both nets lose the same block positions.

Everything goes to ``OUT`` (default ``runs/experiment-lesion``, a run directory of kind
``experiment:lesion`` whose ``run.json`` records the training settings): the training run
directories (a finished one is reused, an interrupted one resumed; other training settings in
the same folder are refused, naming the keys), ``results.csv`` (one row per evaluated lesion),
``results.md`` (the tables) and ``lesion.png`` (the three panels).
"""

from __future__ import annotations

import argparse
import copy
import random
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from cnnzoo.errors import ConfigError
from cnnzoo.experiments import _runs
from cnnzoo.experiments._runs import markdown_table
from cnnzoo.models.resnet import ResidualNet

#: the training flags (from TrainConfig) and notes for their help; defaults: run_lesion_experiment's
TRAINING_FLAGS = {"data": "fashion-mnist, or the --from run's", "data_dir": "", "epochs": "", "batch_size": "",
                  "lr": "SGD, cosine schedule", "input_size": "", "seed": "", "device": "", "threads": ""}  # fmt: skip
#: the values ``--plain`` takes besides a model name
PLAIN_AUTO, PLAIN_NONE = "auto", "none"

#: lesion kinds, in the order of the report
BASELINE, DELETE_ONE, BYPASS_DOWNSAMPLING, DELETE_K, SWAP_K = (
    "none", "delete-one", "bypass-downsampling", "delete-k", "swap-k",
)  # fmt: skip


@dataclass
class Lesion:
    """One lesioned net and its test error."""

    net: str  # model name
    role: str  # "residual" or "plain"
    kind: str  # one of the lesion kinds above
    k: int  # blocks deleted or pairs swapped (0 for the intact net)
    draw: int  # which random draw (0 when nothing is random)
    blocks: str  # what was removed or swapped, by block name
    position: int | None  # (a): 1-based position of the block in the net
    error: float


@dataclass
class StudiedNet:
    """A trained net under study and what the report needs to know about it."""

    role: str
    name: str
    run_dir: Path
    block_names: list[str]
    deletable: list[int]
    downsampling: list[int]
    baseline_error: float


@dataclass
class LesionReport:
    nets: list[StudiedNet]
    lesions: list[Lesion]
    num_classes: int
    test_images: int
    data: str
    summary: str = ""
    files: list[Path] = field(default_factory=list)

    def chance_error(self) -> float:
        return 1.0 - 1.0 / self.num_classes


# ------------------------------------------------------------------------------------------
# lesions on a copy of a net
# ------------------------------------------------------------------------------------------


def deletable_blocks(model) -> list[int]:
    """Positions (0-based) of the blocks whose output has their input's shape."""
    return [i for i, block in enumerate(model.residual_blocks()) if block.keeps_shape]


def swappable_pairs(model) -> list[tuple[int, int]]:
    """Pairs of deletable blocks in the same stage: swapping them keeps every shape."""
    blocks = model.residual_blocks()
    keep = deletable_blocks(model)
    return [(i, j) for a, i in enumerate(keep) for j in keep[a + 1:] if blocks[i].stage_index == blocks[j].stage_index]


def without_blocks(model, indices: Sequence[int]):
    """A deep copy of ``model`` with the blocks at ``indices`` deleted; ``model`` is untouched."""
    lesioned = copy.deepcopy(model)
    lesioned.delete_blocks(list(indices))
    return lesioned


def with_swaps(model, swaps: Sequence[tuple[int, int]]):
    """A deep copy of ``model`` whose blocks at each pair of positions trade places, in order."""
    lesioned = copy.deepcopy(model)
    blocks = lesioned.residual_blocks()
    for i, j in swaps:
        blocks[i], blocks[j] = blocks[j], blocks[i]
    lesioned.set_residual_blocks(blocks)
    return lesioned


def with_branch_off(model, index: int):
    """A deep copy of ``model`` whose block ``index`` computes only its shortcut.

    How Veit et al. delete a downsampling block (its output cannot be its input): the
    residual branch is switched off and the shortcut, here the strided, zero-padded identity
    of option A, carries the signal alone.  Zeroing the branch's last batch norm (scale and
    shift; post-activation blocks) or its last convolution (pre-activation blocks) makes the
    branch output exactly zero; for a block that keeps its shape this equals deleting it.
    """
    from torch import nn

    lesioned = copy.deepcopy(model)
    block = lesioned.residual_blocks()[index]
    if not getattr(block, "residual", True):
        raise ConfigError(f"block {index} has no shortcut: switching its branch off would cut the net")
    if hasattr(block, "last_bn"):  # post-activation: the branch ends in a batch norm
        last = block.last_bn()
        last.weight.data.zero_()
        last.bias.data.zero_()
    else:  # pre-activation: the branch ends in a convolution (registered after the others)
        shortcut = getattr(block, "downsample", None)
        in_shortcut = {id(m) for m in shortcut.modules()} if shortcut is not None else set()
        convs = [m for m in block.modules() if isinstance(m, nn.Conv2d) and id(m) not in in_shortcut]
        convs[-1].weight.data.zero_()
        if convs[-1].bias is not None:
            convs[-1].bias.data.zero_()
    return lesioned


def random_deletion(deletable: Sequence[int], k: int, seed: int, draw: int) -> list[int]:
    """k of the deletable positions, drawn from ``(seed, k, draw)`` alone (same for both nets)."""
    rng = random.Random(f"lesion-delete-{seed}-{k}-{draw}")
    return sorted(rng.sample(list(deletable), k))


def random_swaps(pairs: Sequence[tuple[int, int]], k: int, seed: int, draw: int) -> list[tuple[int, int]]:
    """k swaps, each a pair drawn at random (with replacement) from ``pairs``."""
    rng = random.Random(f"lesion-swap-{seed}-{k}-{draw}")
    return [rng.choice(list(pairs)) for _ in range(k)]


# ------------------------------------------------------------------------------------------
# evaluation
# ------------------------------------------------------------------------------------------


def top1_error(model, batches, device, num_classes: int, channels_last: bool = False) -> float:
    """Top-1 error of ``model`` (eval mode) on ``batches`` (an iterable of ``(images, labels)``)."""
    import torch

    from cnnzoo.train.engine import evaluate

    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    meter = evaluate(model, batches, device, num_classes, channels_last=channels_last)
    return 1.0 - meter.top1_acc


def study_net(model, batches, *, role: str, name: str, run_dir: Path, device, num_classes: int,
              max_k: int, draws: int, seed: int, channels_last: bool = False,
              log: Callable[[str], None] = print) -> tuple[StudiedNet, list[Lesion]]:  # fmt: skip
    """Every lesion of the experiment on ``model``; the model itself is never changed."""
    model.eval()
    blocks = model.residual_blocks()
    names = model.block_names()
    deletable = deletable_blocks(model)
    downsampling = [i for i, b in enumerate(blocks) if not b.keeps_shape]

    def error(net) -> float:
        return top1_error(net, batches, device, num_classes, channels_last)

    start = time.perf_counter()
    baseline = error(model)
    lesions = [Lesion(name, role, BASELINE, 0, 0, "", None, baseline)]
    log(f"{name}: {len(blocks)} blocks ({len(deletable)} deletable), intact test error {100 * baseline:.2f}%")

    # (a) one block at a time (Veit Fig. 3)
    for index in range(len(blocks)):
        if index in deletable:
            lesions.append(Lesion(name, role, DELETE_ONE, 1, 0, names[index], index + 1,
                                  error(without_blocks(model, [index]))))  # fmt: skip
        elif getattr(blocks[index], "residual", False):
            lesions.append(Lesion(name, role, BYPASS_DOWNSAMPLING, 1, 0, names[index], index + 1,
                                  error(with_branch_off(model, index))))  # fmt: skip
    singles = [x.error for x in lesions if x.kind == DELETE_ONE]
    if singles:
        log(f"{name}: deleting one block: median test error {100 * statistics.median(singles):.2f}% "
            f"({time.perf_counter() - start:.0f} s so far)")  # fmt: skip

    # (b) k random blocks at once (Fig. 5a)
    for k in range(1, min(max_k, len(deletable)) + 1):
        for draw in range(draws):
            chosen = random_deletion(deletable, k, seed, draw)
            lesions.append(Lesion(name, role, DELETE_K, k, draw, "+".join(names[i] for i in chosen), None,
                                  error(without_blocks(model, chosen))))  # fmt: skip

    # (c) k random swaps within a stage (Fig. 5b)
    pairs = swappable_pairs(model)
    if pairs:
        for k in range(1, max_k + 1):
            for draw in range(draws):
                swaps = random_swaps(pairs, k, seed, draw)
                described = " ".join(f"{names[i]}<->{names[j]}" for i, j in swaps)
                lesions.append(Lesion(name, role, SWAP_K, k, draw, described, None, error(with_swaps(model, swaps))))
    else:
        log(f"{name}: no two deletable blocks share a stage: nothing to reorder")
    log(f"{name}: {len(lesions)} evaluations in {time.perf_counter() - start:.0f} s")
    studied = StudiedNet(role, name, Path(run_dir), names, deletable, downsampling, baseline)
    return studied, lesions


# ------------------------------------------------------------------------------------------
# the experiment
# ------------------------------------------------------------------------------------------


def plain_twin(model_name: str) -> str | None:
    """``resnet56`` -> ``plain56`` when that model is registered, else None."""
    from cnnzoo.errors import UnknownModelError
    from cnnzoo.registry import model_info

    match = re.fullmatch(r"resnet(\d+)", model_name)
    if not match:
        return None
    twin = f"plain{match.group(1)}"
    try:
        model_info(twin)
    except UnknownModelError:
        return None
    return twin


def residual_training(*, data: str, epochs: int, batch_size: int, lr: float, train_size: int | None,
                      limit_val: int | None, seed: int, input_size: list[int] | None) -> dict:  # fmt: skip
    """How this experiment and ``path-lengths`` train their residual nets: the keys of ``fit``.

    SGD with momentum 0.9 and weight decay 5e-4 (He et al. 2016, Section 4.2), a cosine schedule
    after one warm-up epoch.  The warm-up is He et al.'s remedy for ResNet-110, whose 0.1 start
    "is slightly too large to start converging": on 8000 images for 3 epochs ResNet-56 without
    it ends at 50.6% test top-1 (its first epoch's loss above chance), with it at 80.3%
    (Fashion-MNIST, seed 0, 2-core Xeon; docs/results.md).
    """
    return dict(data=data, epochs=epochs, batch_size=batch_size, lr=lr, momentum=0.9, weight_decay=5e-4,
                schedule="cosine", warmup_epochs=1.0, optimizer="sgd", limit_train=train_size or None,
                limit_val=limit_val or None, seed=seed, channels_last=True,
                input_size=list(input_size) if input_size else None)  # fmt: skip


def check_residual_model(name: str, what: str) -> None:
    """An unknown model name, or one without residual blocks, is a one-line error before any work."""
    import torch

    from cnnzoo.registry import create_model, model_info

    model_info(name)  # UnknownModelError, one line
    with torch.device("meta"):  # shapes only, no memory, no initialisation
        net = create_model(name)
    if not isinstance(net, ResidualNet):
        raise ConfigError(f"{what} {name} has no residual blocks to delete: "
                          "choose a ResNet-style model (e.g. resnet56, plain56, preact_resnet18)")  # fmt: skip


def run_config(run_dir: Path):
    """The configuration of a finished ``cnnzoo train`` run, or a one-line error."""
    from cnnzoo.errors import CnnzooError
    from cnnzoo.train.config import read_config

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CnnzooError(f"run directory {run_dir} not found")
    config = read_config(run_dir / "config.yaml")
    if not any((run_dir / f"{tag}.safetensors").is_file() for tag in ("best", "last")):
        raise CnnzooError(f"{run_dir} has no best.safetensors or last.safetensors: is the run finished?")
    return config


def run_lesion_experiment(
    *,
    model: str = "resnet56",
    plain: str | None = PLAIN_AUTO,
    from_run: str | Path | None = None,
    plain_from: str | Path | None = None,
    data: str | None = None,
    data_dir: str | None = None,
    train_size: int | None = 8000,
    epochs: int = 3,
    batch_size: int = 128,
    lr: float = 0.1,
    input_size: list[int] | None = None,
    limit_test: int | None = 1000,
    max_k: int = 8,
    draws: int = 5,
    out: str | Path = "runs/experiment-lesion",
    device: str = "auto",
    threads: int | None = 2,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> LesionReport:
    """Train (or load) the residual net and its plain twin and run the lesions (module docstring)."""
    from cnnzoo.train import engine
    from cnnzoo.train.runs import load_run

    _runs.check_at_least(("--epochs", epochs, 1), ("--batch-size", batch_size, 1), ("--max-k", max_k, 1),
                         ("--draws", draws, 1), ("--limit-test", limit_test or 0, 0),
                         ("--train-size", train_size or 0, 0))  # fmt: skip

    # which nets, and where each comes from: a finished run, or a training here
    sources: list[tuple[str, str, Path | None]] = []  # (role, model name, run dir to load or None)
    if from_run is not None:
        config = run_config(Path(from_run))
        sources.append(("residual", config.model, Path(from_run)))
        data = data or config.data
    else:
        check_residual_model(model, "--model")
        sources.append(("residual", model, None))
    residual_name = sources[0][1]
    if plain_from is not None:
        config = run_config(Path(plain_from))
        sources.append(("plain", config.model, Path(plain_from)))
        data = data or config.data
    elif plain not in (None, PLAIN_NONE):
        name = plain_twin(residual_name) if plain == PLAIN_AUTO else plain
        if name is None:
            raise ConfigError(f"no plain twin known for {residual_name}: give --plain MODEL, "
                              "--plain-from RUN_DIR or --plain none")  # fmt: skip
        check_residual_model(name, "--plain")
        sources.append(("plain", name, None))
    data = data or "fashion-mnist"
    for role, name, run_dir in sources:
        trained_on = run_config(run_dir).data if run_dir is not None else data
        if trained_on != data:
            raise ConfigError(f"{run_dir} was trained on {trained_on}, the experiment uses {data}: "
                              "both nets must be tested on the same data")  # fmt: skip

    # what the nets trained here are trained with: the folder's runs must share it
    training = residual_training(data=data, epochs=epochs, batch_size=batch_size, lr=lr, train_size=train_size,
                                 limit_val=limit_test, seed=seed, input_size=input_size)  # fmt: skip
    trains = any(run_dir is None for _, _, run_dir in sources)
    settings = training if trains else dict(data=data, limit_test=limit_test or None)
    exp = _runs.ExperimentDir.open(out, "lesion", settings)
    with engine.torch_threads(threads):
        # 1. train what was not given
        run_dirs = [run_dir or train_net(exp, name, training, data_dir, device, threads, log)
                    for _, name, run_dir in sources]  # fmt: skip

        # 2. the test images, the same for both nets
        dev = engine.resolve_device(device)
        bundle = engine.load_dataset(data, data_dir=data_dir or run_config(run_dirs[0]).data_dir, val_fraction=0.1,
                                     seed=seed, limit_test=limit_test or None)  # fmt: skip
        if bundle.test is None or len(bundle.test) == 0:
            raise ConfigError(f"{data} has no test split")
        num_classes = len(bundle.classes)

        # 3. the lesions, net by net
        nets, lesions = [], []
        for (role, name, _), run_dir in zip(sources, run_dirs):
            run = load_run(run_dir, "best", device)
            meta = run.meta
            if meta["num_classes"] != num_classes or meta["in_chans"] != bundle.in_chans:
                raise ConfigError(f"{run_dir}: the net takes {meta['in_chans']}-channel images of "
                                  f"{meta['num_classes']} classes, {data} has {bundle.in_chans} "
                                  f"and {num_classes}")  # fmt: skip
            if not isinstance(run.model, ResidualNet):
                raise ConfigError(f"{run_dir}: {meta['model']} has no residual blocks to delete")
            loader = engine.make_loader(bundle.test, batch_size=256, train=False, device=dev,
                                        input_size=tuple(meta["input_size"]), augment=None, mean=meta["mean"],
                                        std=meta["std"], seed=seed)  # fmt: skip
            batches = list(loader)  # prepared once, reused by every lesion
            studied, found = study_net(run.model, batches, role=role, name=meta["model"], run_dir=run_dir, device=dev,
                                       num_classes=num_classes, max_k=max_k, draws=draws, seed=seed,
                                       channels_last=dev.type == "cpu", log=log)  # fmt: skip
            nets.append(studied)
            lesions.extend(found)

    report = LesionReport(nets, lesions, num_classes, len(bundle.test), bundle.name)
    report.summary = summary_line(report)
    report.files = write_results(report, exp.path)
    return report


def train_net(exp: _runs.ExperimentDir, name: str, training: dict, data_dir: str | None, device: str,
               threads: int | None, log: Callable[[str], None]) -> Path:  # fmt: skip
    """Train ``name`` into ``OUT/train-NAME`` (reused when finished, resumed when not); its run directory."""
    from cnnzoo.train import fit

    run_dir = exp / f"train-{name}"
    wanted = dict(training, model=name)

    def train(resume: bool):
        log(f"training {name} on {training['data']}: {training['limit_train'] or 'all'} images, "
            f"{training['epochs']} epochs")  # fmt: skip
        return fit(name, resume=resume, log=log, out=str(run_dir), data_dir=data_dir,
                   device=device, threads=threads, progress=False, **training)  # fmt: skip

    _runs.train_once(run_dir, train, wanted=wanted, log=log, what=name)
    return run_dir


# ------------------------------------------------------------------------------------------
# reporting
# ------------------------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{100 * values[0]:.2f}%"
    return f"{100 * statistics.mean(values):.2f} ± {100 * statistics.stdev(values):.2f}%"


def _of(report: LesionReport, net: StudiedNet, kind: str, k: int | None = None) -> list[Lesion]:
    return [x for x in report.lesions if x.net == net.name and x.role == net.role and x.kind == kind
            and (k is None or x.k == k)]  # fmt: skip


def baseline_table(report: LesionReport) -> str:
    rows = [[net.name, net.role, len(net.block_names), len(net.deletable), report.test_images,
             _pct(net.baseline_error)] for net in report.nets]  # fmt: skip
    rows.append(["(chance)", "", "", "", "", _pct(report.chance_error())])
    return markdown_table(["net", "role", "blocks", "deletable", "test images", "test error"], rows)


def single_block_table(report: LesionReport) -> str:
    """Veit Fig. 3 as a table: one row per block position, the error with that block deleted."""
    longest = max(report.nets, key=lambda n: len(n.block_names))
    header = ["position", "block"] + [f"{net.name} error" for net in report.nets]
    rows = []
    for index, block in enumerate(longest.block_names):
        row = [index + 1, block]
        for net in report.nets:
            found = [x for x in report.lesions if x.net == net.name and x.role == net.role and x.position == index + 1]
            if found:
                mark = " (branch off)" if found[0].kind == BYPASS_DOWNSAMPLING else ""
                row.append(_pct(found[0].error) + mark)
            else:
                row.append("- (changes shape)" if index < len(net.block_names) else "")
        rows.append(row)
    rows.append(["", "intact"] + [_pct(net.baseline_error) for net in report.nets])
    medians = [[x.error for x in _of(report, net, DELETE_ONE)] for net in report.nets]
    rows.append(["", "median, one block deleted"] + [_pct(statistics.median(m)) if m else "-" for m in medians])
    return markdown_table(header, rows, align="ll" + "r" * len(report.nets))


def k_table(report: LesionReport, kind: str) -> str:
    """Mean ± std of the error over the draws, per k (Veit Fig. 5)."""
    ks = sorted({x.k for x in report.lesions if x.kind == kind})
    header = ["k"] + [f"{net.name} error (mean ± std)" for net in report.nets]
    rows = [[0] + [_pct(net.baseline_error) for net in report.nets]]
    for k in ks:
        rows.append([k] + [_mean_std([x.error for x in _of(report, net, kind, k)]) for net in report.nets])
    return markdown_table(header, rows)


def summary_line(report: LesionReport) -> str:
    """One line, from the numbers: what deleting one block does to each net."""
    parts = []
    chance = report.chance_error()
    for net in report.nets:
        singles = [x.error for x in _of(report, net, DELETE_ONE)]
        if not singles:
            continue
        median = statistics.median(singles)
        if net.role == "residual":
            parts.append(f"deleting one block of {net.name}: median error {100 * (median - net.baseline_error):+.1f} "
                         f"points (intact {_pct(net.baseline_error)}, worst {_pct(max(singles))})")  # fmt: skip
        else:
            parts.append(f"of {net.name}: median error {_pct(median)} (intact {_pct(net.baseline_error)}, "
                         f"chance {100 * chance:.0f}%)")  # fmt: skip
    residual = next((n for n in report.nets if n.role == "residual"), None)
    if residual is not None:
        for kind, what in ((DELETE_K, "blocks deleted"), (SWAP_K, "swaps")):
            rows = _of(report, residual, kind)
            if rows:
                k = max(x.k for x in rows)
                parts.append(f"{k} {what}: {residual.name} {_pct(statistics.mean(x.error for x in rows if x.k == k))}")
    return "; ".join(parts)


def format_report(report: LesionReport) -> str:
    sections = [
        f"# Lesion study (Veit et al. 2016) on {report.data}, {report.test_images} test images",
        "## Intact nets\n\n" + baseline_table(report),
        "## (a) Deleting one block (Veit Fig. 3)\n\nTest error with only that block removed. "
        "\"branch off\": a downsampling block of the residual net, its residual branch switched off "
        "and its shortcut kept.\n\n" + single_block_table(report),
        "## (b) Deleting k random blocks (Veit Fig. 5a)\n\n" + k_table(report, DELETE_K),
    ]
    if any(x.kind == SWAP_K for x in report.lesions):
        sections.append("## (c) k random swaps of two blocks of one stage (Veit Fig. 5b)\n\n" + k_table(report, SWAP_K))
    sections.append("summary: " + report.summary)
    return "\n\n".join(sections) + "\n"


def write_results(report: LesionReport, out: Path) -> list[Path]:
    out = Path(out)
    csv_path, md_path, png_path = out / "results.csv", out / "results.md", out / "lesion.png"
    _runs.write_csv(csv_path, ["net", "role", "lesion", "k", "draw", "position", "blocks", "test_error", "test_top1"],
                    [[x.net, x.role, x.kind, x.k, x.draw, x.position or "", x.blocks, f"{x.error:.4f}",
                      f"{1 - x.error:.4f}"] for x in report.lesions])  # fmt: skip
    _runs.write_text(md_path, format_report(report))
    plot_results(report, png_path)
    return [csv_path, md_path, png_path]


def plot_results(report: LesionReport, path: Path) -> Path:
    """Three panels like Veit's: error per deleted block; error vs k deleted; error vs k swaps."""
    with _runs.figure(path, 1, 3, figsize=(15, 4.2)) as (fig, axes):
        _draw(report, axes)
    return path


def _draw(report: LesionReport, axes) -> None:
    colours = {"residual": "tab:blue", "plain": "tab:red"}
    ax = axes[0]
    for net in report.nets:
        colour = colours.get(net.role, "tab:gray")
        rows = _of(report, net, DELETE_ONE)
        ax.plot([x.position for x in rows], [100 * x.error for x in rows], "o", color=colour, markersize=4,
                label=f"{net.name}, one block deleted")  # fmt: skip
        bypass = _of(report, net, BYPASS_DOWNSAMPLING)
        if bypass:
            ax.plot([x.position for x in bypass], [100 * x.error for x in bypass], "x", color=colour, markersize=7,
                    label=f"{net.name}, downsampling branch off")  # fmt: skip
        ax.axhline(100 * net.baseline_error, color=colour, linestyle="--", linewidth=1, label=f"{net.name} intact")
    longest = max(report.nets, key=lambda n: len(n.block_names))
    for index in longest.downsampling:  # stage boundaries
        ax.axvline(index + 0.5, color="black", alpha=0.15)
    ax.set_xlabel("deleted block (position)")
    ax.set_title("(a) deleting one block (Veit Fig. 3)")
    panels = ((axes[1], DELETE_K, "(b) deleting k blocks (Fig. 5a)", "blocks deleted"),
              (axes[2], SWAP_K, "(c) reordering: k swaps (Fig. 5b)", "swaps within a stage"))  # fmt: skip
    for ax, kind, title, xlabel in panels:
        for net in report.nets:
            rows = _of(report, net, kind)
            if not rows:
                continue
            ks = sorted({x.k for x in rows})
            errors = [[100 * x.error for x in rows if x.k == k] for k in ks]
            means = [statistics.mean(e) for e in errors]
            stds = [statistics.stdev(e) if len(e) > 1 else 0.0 for e in errors]
            ax.errorbar([0] + ks, [100 * net.baseline_error] + means, yerr=[0.0] + stds, marker="o", capsize=3,
                        color=colours.get(net.role, "tab:gray"), label=net.name)  # fmt: skip
        ax.set_xlabel(xlabel)
        ax.set_title(title)
    for ax in axes:
        ax.axhline(100 * report.chance_error(), color="black", linestyle=":", linewidth=1, label="chance")
        ax.set_ylabel("test error (%)")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)


# ------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = ("Veit, Wilber & Belongie 2016, Section 4: trains (or loads) a residual net and its plain "
                "twin, then measures the test error after deleting one block, k random blocks, or k random "
                "swaps of blocks within a stage. Writes results.md, results.csv and lesion.png to --out.")  # fmt: skip
    p.add_argument("--model", default="resnet56", help="residual net to train (default resnet56)")
    p.add_argument("--plain", default=PLAIN_AUTO,
                   help="net without shortcuts to compare with (default: the twin, plainNN of resnetNN; "
                   "'none' to skip)")  # fmt: skip
    p.add_argument("--from", dest="from_run", metavar="RUN_DIR",
                   help="use this finished `cnnzoo train` run as the residual net "
                   "instead of training --model")  # fmt: skip
    p.add_argument("--plain-from", metavar="RUN_DIR", help="use this finished run as the plain net")
    p.add_argument("--train-size", type=int, default=8000,
                   help="training images, a seeded random subset (default 8000; 0 = all)")  # fmt: skip
    p.add_argument("--limit-test", type=int, default=1000,
                   help="test images every lesion is measured on (default 1000; 0 = the whole test set)")  # fmt: skip
    p.add_argument("--max-k", type=int, default=8, help="largest number of deleted blocks / swaps (default 8)")
    p.add_argument("--draws", type=int, default=5, help="random draws per k (default 5)")


@_runs.training_experiment(
    "lesion",
    "residual nets as ensembles (Veit et al. 2016): delete one block, delete or reorder k, vs the plain twin",
    run_lesion_experiment, TRAINING_FLAGS, add_arguments,
)  # fmt: skip
def run(args: argparse.Namespace, training: dict) -> int:
    sources = dict(model=args.model, plain=args.plain, from_run=args.from_run, plain_from=args.plain_from)
    report = run_lesion_experiment(train_size=args.train_size, limit_test=args.limit_test, max_k=args.max_k,
                                   draws=args.draws, out=args.out, **sources, **training)  # fmt: skip
    print()
    print(format_report(report))
    print("written: " + ", ".join(str(p) for p in report.files))
    return 0
