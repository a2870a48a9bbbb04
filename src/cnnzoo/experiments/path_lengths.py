"""``cnnzoo experiment path-lengths``: short paths carry the gradient (Veit et al. 2016, Section 5).

000 ("短路径对梯度的贡献更大") presents Veit, Wilber & Belongie 2016, "Residual Networks
Behave Like Ensembles of Relatively Shallow Networks".  Unrolled, a net of ``n`` residual
blocks is ``2**n`` paths: each block is crossed either through its residual branch or through
its shortcut, and a path's *length* is the number of branches it goes through.  Section 5 and
Fig. 6 ask which of these paths the training gradient comes from:

(a) **the distribution of path lengths**: ``C(n, k)`` of the ``2**n`` paths have length k, a
    binomial distribution around ``n / 2`` (for their 54-block ResNet-110, 95% of the paths
    are 19 to 35 blocks long);
(b) **the gradient magnitude through one path of length k**, measured on the trained net: a
    training batch goes forward through the whole net; in the backward pass k randomly chosen
    blocks pass the gradient only through their residual branch and the other ``n - k`` only
    through their shortcut, so the gradient that arrives at the input is that of a single
    path of length k.  Its norm falls exponentially with k;
(c) **the total gradient per length**, (a) times (b): ``C(n, k)`` times the mean magnitude of
    one path of length k.  Veit et al. find that almost all of it comes from paths of 5 to 17
    blocks (ResNet-110), 0.45% of all paths: the effective paths are short.

How the backward pass is routed here: every residual block adds ``self.drop_path(branch)``
and ``self.shortcut(input)`` (:class:`~cnnzoo.layers.residual.ResidualBlock`); a deep copy of
the net gets a :class:`RouteGate` after its branch's drop-path and on its shortcut, identity
in the forward pass and, in the backward pass, passing the gradient or nothing as the current
route says.  The forward pass runs once per batch, through the whole net as in the paper;
each sampled route is one more backward pass over the kept graph (``retain_graph``), and a
closed gate stops the gradient altogether, so a short path costs little.  The model classes
are untouched.  A downsampling block (its shortcut the strided, zero-padded identity of
option A, or a projection) is one of the ``n`` blocks like any other, as in the paper's count
of 54 blocks for ResNet-110: a path crosses it either through its branch (counted) or through
that shortcut (not counted), so its shortcut is never cut, only chosen or not.

Measured like this: the loss is the cross-entropy summed over the batch, so that each image's
gradient is that of its own loss; the magnitude is the L2 norm of the gradient at the input
image, averaged over the images of the batch.  Batch norm uses batch statistics (train mode:
the gradient that training sees); dropout and drop-path, if the net has them, are off so that
every block is there to be routed.  ``--batches`` (8) random training batches of
``--grad-batch-size`` (32) images, ``--draws`` (10) random sets of k blocks per batch and k: 80
measurements for each k = 0 .. n (the paper takes 1000); for ``resnet56`` that is 2240 backward
passes, each through k of the 27 branches: about a minute on two CPU cores.

The net is ``--model`` (default ``resnet56``, 27 blocks) trained here like the lesion
experiment's (8000 Fashion-MNIST images at 28x28, 3 epochs, SGD 0.1 with a cosine schedule after
one warm-up epoch; a finished run is reused, an interrupted one resumed), or a finished ``cnnzoo train`` run
(``--from RUN_DIR``; ``runs/experiment-lesion/train-resnet56`` works too).  Everything goes to
``OUT`` (default ``runs/experiment-path-lengths``): the training run, ``results.csv`` (one row
per measurement), ``results.md`` (the table per length and the summary) and
``path_lengths.png`` (the three panels of Fig. 6).
"""

from __future__ import annotations

import argparse
import copy
import math
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnzoo.errors import ConfigError
from cnnzoo.experiments import _runs
from cnnzoo.experiments._runs import markdown_table
from cnnzoo.experiments.lesion import TRAINING_FLAGS, check_residual_model, residual_training, run_config, train_net
from cnnzoo.layers.drop_path import DropPath
from cnnzoo.models.resnet import ResidualNet

#: the central share of paths (a) and of the total gradient (c) whose range of lengths is reported
MASS = 0.95


@dataclass
class Measurement:
    """The gradient magnitude through one sampled path."""

    k: int  # blocks whose residual branch the path goes through
    batch: int  # which training batch
    draw: int  # which random set of k blocks
    blocks: tuple[int, ...]  # the k blocks (0-based positions)
    grad_norm: float  # mean over the batch of the L2 norm of the gradient at the input image


@dataclass
class LengthRow:
    """One path length: (a), (b) and (c) of Fig. 6."""

    k: int
    paths: int  # C(n, k)
    path_share: float  # C(n, k) / 2**n
    grad_mean: float
    grad_std: float
    measurements: int
    total_share: float = 0.0  # C(n, k) * grad_mean, as a share of the sum over k


@dataclass
class PathLengthReport:
    net: str
    run_dir: Path
    blocks: int
    data: str
    rows: list[LengthRow]
    measurements: list[Measurement]
    summary: str = ""
    files: list[Path] = field(default_factory=list)

    def path_range(self) -> tuple[int, int]:
        return central_range([r.path_share for r in self.rows])

    def gradient_range(self) -> tuple[int, int]:
        return central_range([r.total_share for r in self.rows])


# ------------------------------------------------------------------------------------------
# (a) how many paths of each length
# ------------------------------------------------------------------------------------------


def path_counts(blocks: int) -> list[int]:
    """``C(n, k)`` for k = 0 .. n: the paths through ``n`` blocks that cross k residual branches."""
    return [math.comb(blocks, k) for k in range(blocks + 1)]


def central_range(shares: Sequence[float], mass: float = MASS) -> tuple[int, int]:
    """The lengths from where the cumulative share first reaches ``(1 - mass) / 2`` to where it reaches ``(1 + mass) / 2``."""
    total = sum(shares)
    low_target, high_target = (1 - mass) / 2 * total, (1 + mass) / 2 * total
    running, low, high = 0.0, None, len(shares) - 1
    for k, share in enumerate(shares):
        running += share
        if low is None and running >= low_target:
            low = k
        if running >= high_target:
            high = k
            break
    return (low or 0), high


# ------------------------------------------------------------------------------------------
# (b) the gradient through one path
# ------------------------------------------------------------------------------------------


class _Route(torch.autograd.Function):
    """Identity forward; backward: the gradient if the gate is open, else nothing."""

    @staticmethod
    def forward(ctx, x: Tensor, gate: "RouteGate") -> Tensor:
        ctx.gate = gate  # read at backward time: one forward pass serves many routes
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        # None rather than zeros: autograd then skips everything behind a closed gate
        return (grad if ctx.gate.open else None), None


class RouteGate(nn.Module):
    """Identity in the forward pass; in the backward pass it passes the gradient only when ``open``."""

    def __init__(self) -> None:
        super().__init__()
        self.open = True

    def forward(self, x: Tensor) -> Tensor:
        return _Route.apply(x, self)

    def extra_repr(self) -> str:
        return f"open={self.open}"


class PathRouter:
    """A deep copy of a residual net whose backward pass can be routed through one path.

    ``router.route(chosen)``: the blocks at the positions in ``chosen`` pass the gradient only
    through their residual branch, all others only through their shortcut.  ``route(None)``
    opens every gate (the ordinary gradient, the sum over all paths).
    """

    def __init__(self, model) -> None:
        if not isinstance(model, ResidualNet):
            raise ConfigError(f"{type(model).__name__} has no residual blocks: nothing to route")
        self.model = copy.deepcopy(model)
        self.branch_gates, self.shortcut_gates = [], []
        for position, block in enumerate(self.model.residual_blocks()):
            if not getattr(block, "residual", False):
                raise ConfigError(f"block {position} has no shortcut (a plain net): every path goes through "
                                  "every block, so there is only one path length")  # fmt: skip
            branch, shortcut = RouteGate(), RouteGate()
            # the two places where a residual block's paths meet: drop_path(branch) + shortcut(input).
            # A downsampling block is routed like the others (Veit et al. count all 54 blocks of
            # ResNet-110): its shortcut, the zero-padded strided identity (option A) or a
            # projection, is the length-0 way across it and its branch the counted one.
            block.drop_path = nn.Sequential(block.drop_path, branch)
            block.downsample = shortcut if block.downsample is None else nn.Sequential(block.downsample, shortcut)
            self.branch_gates.append(branch)
            self.shortcut_gates.append(shortcut)
        self.blocks = len(self.branch_gates)
        # batch statistics as in training; every block present (no dropout, no drop-path draws)
        self.model.train()
        for module in self.model.modules():
            if isinstance(module, (nn.Dropout, DropPath)):
                module.eval()

    def route(self, chosen: Sequence[int] | None) -> None:
        chosen = None if chosen is None else set(chosen)
        for position, (branch, shortcut) in enumerate(zip(self.branch_gates, self.shortcut_gates)):
            branch.open = chosen is None or position in chosen
            shortcut.open = chosen is None or position not in chosen

    def input_gradient_norms(self, images, labels, routes: Sequence[Sequence[int] | None]) -> list[float]:
        """One forward pass of the batch, one backward pass per route: the mean per-image gradient norm at the input."""
        images = images.detach().clone().requires_grad_(True)
        loss = F.cross_entropy(self.model(images), labels, reduction="sum")  # each image's own gradient
        norms = []
        for route in routes:
            self.route(route)
            (grad,) = torch.autograd.grad(loss, images, retain_graph=True, allow_unused=True)
            norms.append(0.0 if grad is None else grad.flatten(1).norm(dim=1).mean().item())
        self.route(None)
        return norms


def random_blocks(blocks: int, k: int, seed: int, batch: int, draw: int) -> tuple[int, ...]:
    """k of the ``blocks`` positions, drawn from ``(seed, k, batch, draw)`` alone."""
    rng = random.Random(f"path-lengths-{seed}-{k}-{batch}-{draw}")
    return tuple(sorted(rng.sample(range(blocks), k)))


def measure_paths(model, batches, *, draws: int, seed: int = 0,
                  log: Callable[[str], None] = print) -> list[Measurement]:  # fmt: skip
    """(b): for every batch, every k = 0 .. n and every draw, the gradient through one random path of length k."""
    router = PathRouter(model)
    n = router.blocks
    found = []
    start = time.perf_counter()
    for batch, (images, labels) in enumerate(batches):
        plan = [(k, draw, random_blocks(n, k, seed, batch, draw)) for k in range(n + 1) for draw in range(draws)]
        norms = router.input_gradient_norms(images, labels, [blocks for _, _, blocks in plan])
        found += [Measurement(k, batch, draw, blocks, norm) for (k, draw, blocks), norm in zip(plan, norms)]
        log(f"batch {batch + 1}: {len(plan)} paths measured ({time.perf_counter() - start:.0f} s so far)")
    return found


def length_rows(blocks: int, measurements: Sequence[Measurement]) -> list[LengthRow]:
    """(a), (b) and (c) per length k = 0 .. n."""
    counts = path_counts(blocks)
    rows = []
    for k, count in enumerate(counts):
        norms = [m.grad_norm for m in measurements if m.k == k]
        mean = statistics.mean(norms) if norms else 0.0
        std = statistics.stdev(norms) if len(norms) > 1 else 0.0
        rows.append(LengthRow(k, count, count / 2**blocks, mean, std, len(norms)))
    total = sum(r.paths * r.grad_mean for r in rows)
    for row in rows:
        row.total_share = row.paths * row.grad_mean / total if total > 0 else 0.0
    return rows


def decay_per_block(rows: Sequence[LengthRow]) -> float | None:
    """The factor by which one path's mean gradient falls per extra block (a least-squares fit of its log)."""
    points = [(r.k, math.log(r.grad_mean)) for r in rows if r.grad_mean > 0]
    if len(points) < 2:
        return None
    slope, _ = statistics.linear_regression([k for k, _ in points], [v for _, v in points])
    return math.exp(-slope)


# ------------------------------------------------------------------------------------------
# the experiment
# ------------------------------------------------------------------------------------------


def _check_shortcuts(name: str) -> None:
    """A model without residual blocks, or a plain net (one path only), is a one-line error before training."""
    from cnnzoo.registry import create_model

    check_residual_model(name, "--model")
    with torch.device("meta"):  # shapes only
        net = create_model(name)
    if not all(getattr(block, "residual", False) for block in net.residual_blocks()):
        raise ConfigError(f"--model {name} has no shortcuts: its only path goes through every block; "
                          "choose a residual net (e.g. resnet56)")  # fmt: skip


def run_path_lengths_experiment(
    *,
    model: str = "resnet56",
    from_run: str | Path | None = None,
    data: str | None = None,
    data_dir: str | None = None,
    train_size: int | None = 8000,
    epochs: int = 3,
    batch_size: int = 128,
    lr: float = 0.1,
    input_size: list[int] | None = None,
    batches: int = 8,
    grad_batch_size: int = 32,
    draws: int = 10,
    out: str | Path = "runs/experiment-path-lengths",
    device: str = "auto",
    threads: int | None = 2,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> PathLengthReport:
    """Train (or load) the residual net, then measure (a), (b) and (c) (module docstring)."""
    from cnnzoo.train import engine
    from cnnzoo.train.runs import load_run

    _runs.check_at_least(("--epochs", epochs, 1), ("--batch-size", batch_size, 1), ("--batches", batches, 1),
                         ("--grad-batch-size", grad_batch_size, 1), ("--draws", draws, 1),
                         ("--train-size", train_size or 0, 0))  # fmt: skip
    if from_run is not None:
        config = run_config(Path(from_run))
        name, data = config.model, data or config.data
        if data != config.data:
            raise ConfigError(f"{from_run} was trained on {config.data}: its gradients are measured on "
                              "its own training data; leave out --data")  # fmt: skip
    else:
        _check_shortcuts(model)
        name, data = model, data or "fashion-mnist"

    training = residual_training(data=data, epochs=epochs, batch_size=batch_size, lr=lr, train_size=train_size,
                                 limit_val=None, seed=seed, input_size=input_size)  # fmt: skip
    settings = training if from_run is None else dict(data=data, from_run=str(from_run))
    exp = _runs.ExperimentDir.open(out, "path-lengths", settings)
    with engine.torch_threads(threads):
        run_dir = Path(from_run) if from_run is not None else train_net(exp, name, training, data_dir, device,
                                                                          threads, log)  # fmt: skip
        run = load_run(run_dir, "best", device)
        meta = run.meta
        if not isinstance(run.model, ResidualNet):
            raise ConfigError(f"{run_dir}: {meta['model']} has no residual blocks")
        bundle = engine.load_dataset(data, data_dir=data_dir or run_config(run_dir).data_dir, val_fraction=0.1,
                                     seed=seed, limit_train=batches * grad_batch_size)  # fmt: skip
        if len(bundle.train) < grad_batch_size:
            raise ConfigError(f"{data} has {len(bundle.train)} training images, fewer than "
                              f"--grad-batch-size {grad_batch_size}")  # fmt: skip
        loader = engine.make_loader(bundle.train, batch_size=grad_batch_size, train=False, shuffle=True,
                                    drop_last=True, device=run.device, input_size=tuple(meta["input_size"]),
                                    augment=None, mean=meta["mean"], std=meta["std"], seed=seed)  # fmt: skip
        chosen = [batch for _, batch in zip(range(batches), loader)]
        log(f"{meta['model']}: {len(run.model.residual_blocks())} blocks; measuring {len(chosen)} batches x "
            f"{draws} draws per path length")  # fmt: skip
        measurements = measure_paths(run.model, chosen, draws=draws, seed=seed, log=log)

    blocks = len(run.model.residual_blocks())
    report = PathLengthReport(meta["model"], run_dir, blocks, bundle.name, length_rows(blocks, measurements),
                              measurements)  # fmt: skip
    report.summary = summary_line(report)
    report.files = write_results(report, exp.path)
    return report


# ------------------------------------------------------------------------------------------
# reporting
# ------------------------------------------------------------------------------------------


def summary_line(report: PathLengthReport) -> str:
    """The answer, from the numbers: where the paths are and where the gradient comes from."""
    (a, b), (c, d) = report.path_range(), report.gradient_range()
    effective = sum(r.path_share for r in report.rows if c <= r.k <= d)
    gradient_mean = sum(r.k * r.total_share for r in report.rows)
    text = (f"{report.net} ({report.blocks} blocks): {100 * MASS:.0f}% of the paths have length {a}..{b} "
            f"(mean {report.blocks / 2:g}), {100 * MASS:.0f}% of the total gradient comes from paths of length "
            f"{c}..{d} (mean {gradient_mean:.1f}), {100 * effective:.2g}% of all paths")  # fmt: skip
    factor = decay_per_block(report.rows)
    if factor is not None:
        text += f"; one path's gradient changes by a factor of {1 / factor:.2f} per block it crosses"
    if gradient_mean < a:  # below the lengths of all but the shortest 2.5% of the paths
        verdict = "the effective paths are short, as Veit et al. found"
    elif gradient_mean < report.blocks / 2:
        verdict = "the gradient comes from paths shorter than the typical one, less clearly than in Veit et al."
    else:
        verdict = "the gradient does not come from short paths here, unlike in Veit et al."
    return f"{text}: {verdict}"


def length_table(report: PathLengthReport) -> str:
    rows = [[r.k, r.paths, f"{100 * r.path_share:.3g}%", f"{r.grad_mean:.3g} ± {r.grad_std:.2g}", r.measurements,
             f"{100 * r.total_share:.3g}%"] for r in report.rows]  # fmt: skip
    return markdown_table(["k", "paths C(n,k)", "(a) share of paths", "(b) gradient per path (mean ± std)",
                           "measurements", "(c) share of total gradient"], rows)  # fmt: skip


def format_report(report: PathLengthReport) -> str:
    return "\n\n".join([
        f"# Path lengths and their gradient (Veit et al. 2016, Section 5) in {report.net} on {report.data}",
        f"{report.blocks} residual blocks, {2**report.blocks:.3g} paths; (b) is the L2 norm of the gradient at "
        "the input through one random path of length k, mean over the images of a training batch; "
        "(c) = C(n,k) x (b), as a share of its sum over k.",
        length_table(report),
        "summary: " + report.summary,
    ]) + "\n"  # fmt: skip


def write_results(report: PathLengthReport, out: Path) -> list[Path]:
    out = Path(out)
    csv_path, md_path, png_path = out / "results.csv", out / "results.md", out / "path_lengths.png"
    _runs.write_csv(csv_path, ["k", "batch", "draw", "branch_blocks", "grad_norm"],
                    [[m.k, m.batch, m.draw, "+".join(map(str, m.blocks)), f"{m.grad_norm:.6g}"]
                     for m in report.measurements])  # fmt: skip
    _runs.write_text(md_path, format_report(report))
    plot_results(report, png_path)
    return [csv_path, md_path, png_path]


def plot_results(report: PathLengthReport, path: Path) -> Path:
    """Veit's Fig. 6: (a) paths per length, (b) gradient per path, (c) total gradient per length."""
    ks = [r.k for r in report.rows]
    (a, b), (c, d) = report.path_range(), report.gradient_range()
    with _runs.figure(path, 1, 3, figsize=(15, 4.2)) as (fig, axes):
        axes[0].bar(ks, [100 * r.path_share for r in report.rows], color="tab:blue")
        axes[0].set_title(f"(a) distribution of path lengths ({report.blocks} blocks)")
        axes[0].set_ylabel("share of paths (%)")
        axes[0].axvspan(a - 0.5, b + 0.5, color="tab:blue", alpha=0.1, label=f"{100 * MASS:.0f}% of paths")
        measured = [m for m in report.measurements if m.grad_norm > 0]
        axes[1].semilogy([m.k for m in measured], [m.grad_norm for m in measured], ".", color="tab:gray", alpha=0.3,
                         markersize=3, label="one path")  # fmt: skip
        shown = [r for r in report.rows if r.grad_mean > 0]
        axes[1].semilogy([r.k for r in shown], [r.grad_mean for r in shown], "o-", color="tab:red", markersize=4,
                         label="mean")  # fmt: skip
        axes[1].set_title("(b) gradient magnitude of one path")
        axes[1].set_ylabel("gradient norm at the input")
        axes[2].bar(ks, [100 * r.total_share for r in report.rows], color="tab:green")
        axes[2].axvspan(c - 0.5, d + 0.5, color="tab:green", alpha=0.1, label=f"{100 * MASS:.0f}% of the gradient")
        axes[2].set_title("(c) total gradient magnitude per path length")
        axes[2].set_ylabel("share of the total gradient (%)")
        for ax in axes:
            ax.set_xlabel("path length k (residual branches crossed)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    return path


# ------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = ("Veit, Wilber & Belongie 2016, Section 5 and Fig. 6: trains (or loads) a residual net, then "
                "measures the gradient at the input through random single paths of each length. Writes "
                "results.md, results.csv and path_lengths.png to --out.")  # fmt: skip
    p.add_argument("--model", default="resnet56", help="residual net to train (default resnet56)")
    p.add_argument("--from", dest="from_run", metavar="RUN_DIR",
                   help="use this finished `cnnzoo train` run instead of training --model")  # fmt: skip
    p.add_argument("--train-size", type=int, default=8000,
                   help="training images, a seeded random subset (default 8000; 0 = all)")  # fmt: skip
    p.add_argument("--batches", type=int, default=8, help="random training batches measured (default 8)")
    p.add_argument("--grad-batch-size", type=int, default=32, help="images per measured batch (default 32)")
    p.add_argument("--draws", type=int, default=10,
                   help="random sets of k blocks per batch and length (default 10)")  # fmt: skip


@_runs.training_experiment(
    "path-lengths",
    "short paths carry the gradient (Veit et al. 2016, Sec. 5): path lengths, gradient per path, total per length",
    run_path_lengths_experiment, TRAINING_FLAGS, add_arguments,
)  # fmt: skip
def run(args: argparse.Namespace, training: dict) -> int:
    report = run_path_lengths_experiment(model=args.model, from_run=args.from_run, train_size=args.train_size,
                                         batches=args.batches, grad_batch_size=args.grad_batch_size,
                                         draws=args.draws, out=args.out, **training)  # fmt: skip
    print()
    print(format_report(report))
    print("written: " + ", ".join(str(p) for p in report.files))
    return 0
