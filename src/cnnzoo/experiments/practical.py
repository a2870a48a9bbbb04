"""``cnnzoo experiment practical``: 002's practical comparison (Canziani et al. 2016) on this machine.

Canziani, Paszke and Culurciello, "An Analysis of Deep Neural Network Models for Practical
Applications" (2016), measured the landmark nets on a Jetson TX1 and found, among others:

1. the operation count is a reliable estimate of the inference time (their Fig. 4: a linear
   relation between operations and forward time);
2. the forward time per image falls with the batch size until the device is saturated (Fig. 3);
3. memory is the weights plus a part that grows linearly with the batch size (Fig. 6);
4. power is roughly constant across nets, so energy per image follows time per image (Fig. 5).

This experiment times each net's forward pass at each batch size (1 to 64 by default) with the
measuring of ``cnnzoo bench`` (:mod:`cnnzoo.deploy.bench`: warm-up excluded, the median of
``--repeats`` calls, the nets interleaved call by call so that a change in the machine's load
hits all of them, denormals flushed to zero since the nets are freshly initialised, peak memory as
the weights plus the peak of the tensors a call allocates), and checks the findings here:

* the Pearson correlation of multiply-adds with time per image, over the nets, at the largest
  batch size, and each net's achieved multiply-adds per second: where the count stops predicting
  the time (depthwise and grouped convolutions, whose few operations run far below the CPU's
  peak rate), the net's rate is far below the median and the report names it;
* each net's images/s at the largest batch over batch 1;
* a least-squares line of peak memory against batch size: its slope (memory per image), its
  intercept against the weights' size, and how well a line fits (R^2);
* energy per image from Intel RAPL (``/sys/class/powercap/intel-rapl:*/energy_uj``, the CPU
  package's counter) where it can be read; NVML does not apply (this experiment times the CPU).
  Where neither is readable, the report says so and gives no energy figure.

Everything is measured afresh on every call; nothing is trained.  The outputs go into ``--out``:
``results.md``, ``measurements.csv`` and ``practical.png`` (time per image and memory against
batch size, time against multiply-adds).
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnzoo.errors import ConfigError
from cnnzoo.experiments import register_experiment
from cnnzoo.experiments._runs import ExperimentDir, figure, int_list, markdown_table, write_csv, write_text

#: the classic nets of 002's tour that Canziani et al. compared (ResNet-152 and VGG-19 left out to
#: keep a 2-core CPU within ~15 minutes), at their own input sizes
DEFAULT_MODELS = ("alexnet", "vgg16", "googlenet", "resnet18", "resnet50", "inception_v3", "densenet121",
                  "squeezenet1_0", "mobilenet_v1", "shufflenet_v1_g3")  # fmt: skip
DEFAULT_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)
#: --quick: three cheap nets (one plain, one depthwise, one squeezed) at 64x64, batches 1 to 4
QUICK = {"models": ("resnet18", "mobilenet_v1_025", "squeezenet1_1"), "batch_sizes": (1, 2, 4),
         "input_size": 64, "repeats": 2}  # fmt: skip
#: a net whose multiply-adds per second is below this fraction of the median is where the count
#: stops predicting the time
SLOW_RATE = 0.5


# ------------------------------------------------------------------------------------------
# energy
# ------------------------------------------------------------------------------------------


class RaplMeter:
    """The CPU packages' energy counters (Intel RAPL, microjoules), summed; wrap-around undone."""

    def __init__(self, files: list[tuple[str, int]]) -> None:
        self.files = files  # (energy_uj path, max_energy_range_uj)

    @classmethod
    def open(cls, root: str = "/sys/class/powercap") -> tuple["RaplMeter | None", str]:
        """The meter and a sentence saying what was found (or why there is none)."""
        if not os.path.isdir(root):
            return None, f"Intel RAPL: {root} does not exist on this machine"
        packages = sorted(p for p in glob.glob(os.path.join(root, "intel-rapl:*")) if p.count(":") == 1)
        if not packages:
            return None, f"Intel RAPL: no intel-rapl package domains under {root}"
        files = []
        for package in packages:
            try:
                with open(os.path.join(package, "energy_uj")) as f:
                    int(f.read())
                with open(os.path.join(package, "max_energy_range_uj")) as f:
                    files.append((os.path.join(package, "energy_uj"), int(f.read())))
            except (OSError, ValueError) as exc:
                return None, f"Intel RAPL: {package}/energy_uj is not readable ({exc.__class__.__name__}: {exc})"
        return cls(files), f"Intel RAPL, {len(files)} CPU package(s) under {root}"

    def read(self) -> list[int]:
        values = []
        for path, _ in self.files:
            with open(path) as f:
                values.append(int(f.read()))
        return values

    def joules_between(self, before: list[int], after: list[int]) -> float:
        total = 0
        for (_, wrap), a, b in zip(self.files, before, after):
            total += b - a if b >= a else b + wrap - a
        return total / 1e6


def nvml_status() -> str:
    return "NVML: not used (this experiment times the CPU; NVML reads a GPU's power)"


def _with_energy(run, meter: RaplMeter, joules: list[float]):
    """``run`` that adds the package energy of each call to ``joules``."""

    def measured():
        before = meter.read()
        out = run()
        joules.append(meter.joules_between(before, meter.read()))
        return out

    measured.state_bytes = getattr(run, "state_bytes", None)
    return measured


# ------------------------------------------------------------------------------------------
# measuring
# ------------------------------------------------------------------------------------------


@dataclass
class NetResult:
    name: str
    input_size: tuple[int, int, int]
    macs: int  # per image
    params: int
    weight_bytes: int
    top1: float | None  # the paper's, where it reports one
    grouped: bool = False  # has grouped or depthwise convolutions (groups > 1)
    seconds: dict[int, float] = field(default_factory=dict)  # batch -> median seconds per batch
    memory: dict[int, int] = field(default_factory=dict)  # batch -> peak bytes
    joules: dict[int, float] = field(default_factory=dict)  # batch -> median joules per batch

    def per_image(self, batch: int) -> float:
        return self.seconds[batch] / batch

    def macs_per_second(self, batch: int) -> float:
        return self.macs / self.per_image(batch)


def measure(models: list[str], batch_sizes: list[int], input_size: int | None, repeats: int, warmup: int,
            meter: RaplMeter | None, log=print) -> list[NetResult]:  # fmt: skip
    """Every model's median forward time and peak memory at every batch size (the nets interleaved)."""
    import torch

    from cnnzoo.analysis import summary
    from cnnzoo.deploy.bench import flushed_denormals, inference_runner, measure_interleaved, random_batch, \
        state_bytes  # fmt: skip
    from cnnzoo.registry import create_model, model_info

    nets, results = {}, {}
    for name in models:
        info = model_info(name)
        size = (info.input_size[0], input_size, input_size) if input_size else tuple(info.input_size)
        info.check_input_size(*size[1:])
        torch.manual_seed(0)
        model = create_model(name).eval()
        counted = summary(model, size)
        nets[name] = (model, size)
        grouped = any(isinstance(m, torch.nn.Conv2d) and m.groups > 1 for m in model.modules())
        results[name] = NetResult(name, size, counted.total_macs, counted.total_params, state_bytes(model),
                                  info.reported.top1 if info.reported else None, grouped)  # fmt: skip
    with flushed_denormals():
        for batch in batch_sizes:
            log(f"batch {batch}: timing {len(models)} nets, {repeats} calls each")
            energy: dict[str, list[float]] = {name: [] for name in models}
            runners = {}
            for name, (model, size) in nets.items():
                run = inference_runner(model, random_batch(size, batch))
                runners[name] = _with_energy(run, meter, energy[name]) if meter else run
            measured = measure_interleaved(runners, batch, repeats, warmup)
            for name, m in measured.items():
                if m.unavailable:
                    raise ConfigError(f"{name} at batch {batch}: {m.unavailable}")
                results[name].seconds[batch] = statistics.median(m.seconds)
                results[name].memory[batch] = m.peak_memory
                timed = energy[name][-repeats:]  # the timed calls (the warm-up came first)
                if meter and timed:
                    results[name].joules[batch] = statistics.median(timed)
    return [results[name] for name in models]


# ------------------------------------------------------------------------------------------
# the findings
# ------------------------------------------------------------------------------------------


def pearson(xs: list[float], ys: list[float]) -> float | None:
    """Pearson's r; None for fewer than 3 points or no spread."""
    if len(xs) < 3:
        return None
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else None


def line_fit(xs: list[float], ys: list[float]) -> tuple[float, float, float | None]:
    """Least squares ``y = slope x + intercept`` and R^2 (None when the points have no spread)."""
    slope, intercept = statistics.linear_regression(xs, ys)
    r = pearson(xs, ys) if len(xs) >= 3 else None
    return slope, intercept, None if r is None else r * r


@dataclass
class Findings:
    batch: int  # the batch size the operation-count findings are read at
    r_linear: float | None  # MACs vs time per image
    r_log: float | None  # log MACs vs log time per image
    median_rate: float  # multiply-adds per second, the nets' median
    slow: list[str]  # nets far below the median rate
    text: list[str]


def findings(results: list[NetResult], batch_sizes: list[int], energy_status: str) -> Findings:
    batch = max(batch_sizes)
    macs = [r.macs for r in results]
    times = [r.per_image(batch) for r in results]
    r_linear = pearson(macs, times)
    r_log = pearson([math.log(v) for v in macs], [math.log(v) for v in times])
    rates = {r.name: r.macs_per_second(batch) for r in results}
    median_rate = statistics.median(rates.values())
    slow = [name for name, rate in rates.items() if rate < SLOW_RATE * median_rate]
    text = []
    if r_linear is None:
        text.append(f"Operations against time: {len(results)} net(s) measured; a correlation needs at least 3.")
    else:
        text.append(
            f"Operations against time (batch {batch}): Pearson r = {r_linear:.3f} between multiply-adds and "
            f"time per image over {len(results)} nets (r = {r_log:.3f} on log-log axes). Canziani et al. found a "
            "linear relation on their GPU; " + ("here too the count predicts the time well." if r_linear >= 0.9 else
                                                 "here the count predicts the time only roughly.")  # fmt: skip
        )
    grouped = {r.name for r in results if r.grouped}
    lines = [f"{name} {rates[name] / 1e9:.1f} G/s ({rates[name] / median_rate:.2f}x the median"
             + (", grouped/depthwise convolutions)" if name in grouped else ")") for name in slow]  # fmt: skip
    if slow:
        why = []
        if set(slow) & grouped:
            why.append("Grouped and depthwise convolutions do few multiply-adds per value they read, so on a CPU "
                       "they wait on memory, not on arithmetic: their operation count underestimates their time.")
        if set(slow) - grouped:
            why.append(f"{', '.join(n for n in slow if n not in grouped)} has no grouped convolution: "
                       "something else (memory traffic of its layers, small convolutions) slows it here.")
        text.append(f"Where the count breaks: the median net runs {median_rate / 1e9:.1f} G multiply-adds/s; "
                    f"{'; '.join(lines)}. " + " ".join(why))  # fmt: skip
    else:
        text.append(f"Every net runs within {SLOW_RATE:.0%} of the median rate, "
                    f"{median_rate / 1e9:.1f} G multiply-adds/s: no net breaks the count here.")  # fmt: skip
    if len(batch_sizes) > 1:
        first = min(batch_sizes)
        gains = [f"{r.name} {r.per_image(first) / r.per_image(batch):.2f}x" for r in results]
        text.append(f"Batching: images/s at batch {batch} over batch {first}: {', '.join(gains)} "
                    "(Canziani et al.'s Fig. 3: the time per image falls until the device is busy).")  # fmt: skip
        fits = []
        for r in results:
            slope, intercept, r2 = line_fit([float(b) for b in batch_sizes], [float(r.memory[b]) for b in batch_sizes])
            fits.append(f"{r.name} {slope / 2**20:.1f} MB/image + {intercept / 2**20:.0f} MB "
                        f"(weights {r.weight_bytes / 2**20:.0f} MB" + (f", R^2 {r2:.3f})" if r2 is not None else ")"))
        text.append("Memory against batch size, a least-squares line (Canziani et al.'s Fig. 6: the weights "
                    "plus a part linear in the batch): " + "; ".join(fits) + ".")  # fmt: skip
    text.append(f"Energy: {energy_status}.")
    return Findings(batch, r_linear, r_log, median_rate, slow, text)


# ------------------------------------------------------------------------------------------
# the report
# ------------------------------------------------------------------------------------------


def results_table(results: list[NetResult], batch_sizes: list[int], with_energy: bool) -> str:
    header = ["model", "input", "params", "multiply-adds", "paper top-1"]
    header += [f"ms/image at {b}" for b in batch_sizes] + [f"peak MB at {max(batch_sizes)}"]
    if with_energy:
        header.append(f"J/image at {max(batch_sizes)}")
    rows = []
    for r in results:
        row = [r.name, "x".join(map(str, r.input_size)), f"{r.params / 1e6:.2f}M", f"{r.macs / 1e9:.3f}G",
               "-" if r.top1 is None else f"{r.top1:.1f}%"]  # fmt: skip
        row += [f"{1000 * r.per_image(b):.2f}" for b in batch_sizes] + [f"{r.memory[max(batch_sizes)] / 2**20:.0f}"]
        if with_energy:
            joules = r.joules.get(max(batch_sizes))
            row.append("-" if joules is None else f"{joules / max(batch_sizes):.3f}")
        rows.append(row)
    return markdown_table(header, rows)


def draw(path: Path, results: list[NetResult], batch_sizes: list[int], batch: int) -> Path:
    with figure(path, 1, 3, figsize=(16, 4.8)) as (fig, (time_ax, memory_ax, macs_ax)):
        for r in results:
            time_ax.plot(batch_sizes, [1000 * r.per_image(b) for b in batch_sizes], marker="o", label=r.name)
            memory_ax.plot(batch_sizes, [r.memory[b] / 2**20 for b in batch_sizes], marker="o", label=r.name)
            macs_ax.scatter(r.macs / 1e9, 1000 * r.per_image(batch))
            macs_ax.annotate(r.name, (r.macs / 1e9, 1000 * r.per_image(batch)), fontsize=7)
        from matplotlib.ticker import NullFormatter

        for ax in (time_ax, memory_ax):
            ax.set_xscale("log", base=2)
            ax.set_xticks(batch_sizes, [str(b) for b in batch_sizes])
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel("batch size")
            ax.grid(True, which="both", alpha=0.3)
        time_ax.set_yscale("log")
        time_ax.set_ylabel("forward time per image (ms, log)")
        time_ax.set_title("time per image against batch size (Canziani Fig. 3)", fontsize=9)
        memory_ax.set_ylabel("peak memory (MB): weights + tensors of one call")
        memory_ax.set_title("memory against batch size (Canziani Fig. 6)", fontsize=9)
        memory_ax.legend(fontsize=7)
        macs_ax.set_xscale("log")
        macs_ax.set_yscale("log")
        macs_ax.xaxis.set_minor_formatter(NullFormatter())
        macs_ax.set_xlabel("multiply-adds per image (G, log)")
        macs_ax.set_ylabel(f"time per image at batch {batch} (ms, log)")
        macs_ax.set_title("time against operations (Canziani Fig. 4)", fontsize=9)
        macs_ax.grid(True, which="both", alpha=0.3)
    return path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", default=",".join(DEFAULT_MODELS),
                   help=f"registered models, comma-separated (default {','.join(DEFAULT_MODELS)})")  # fmt: skip
    p.add_argument("--batch-sizes", type=int_list, default=list(DEFAULT_BATCH_SIZES), metavar="N,N,...",
                   help="batch sizes (default 1,2,4,8,16,32,64)")
    p.add_argument("--input-size", type=int, help="one square input side for every net (default: each net's own)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per net and batch size (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls first (default 1)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p.add_argument("--quick", action="store_true",
                   help="a small setting for a test: resnet18, mobilenet_v1_025, squeezenet1_1 at 64x64, batches 1-4")
    p.add_argument("--out", default="runs/experiment-practical",
                   help="output folder: results.md, measurements.csv, practical.png (default runs/experiment-practical)")


@register_experiment(
    "practical",
    "Canziani et al. 2016 here: forward time and memory against batch size, operations against time, energy",
    add_arguments,
)
def run(args: argparse.Namespace) -> int:
    import torch

    from cnnzoo.deploy.bench import describe_machine, machine
    from cnnzoo.registry import model_info

    models = [n.strip() for n in args.models.split(",") if n.strip()]
    batch_sizes, input_size, repeats = args.batch_sizes, args.input_size, args.repeats
    if args.quick:
        models, batch_sizes = list(QUICK["models"]), list(QUICK["batch_sizes"])
        input_size, repeats = QUICK["input_size"], QUICK["repeats"]
    for name in models:  # an unknown name or a size a net cannot take: one line before any work
        info = model_info(name)
        if input_size is not None and input_size >= 1:
            info.check_input_size(input_size, input_size)
    if min(batch_sizes) < 1:
        raise ConfigError(f"--batch-sizes must be >= 1, got {min(batch_sizes)}")
    if repeats < 1 or args.warmup < 0:
        raise ConfigError(f"--repeats must be >= 1 and --warmup >= 0, got {repeats} and {args.warmup}")
    if input_size is not None and input_size < 1:
        raise ConfigError(f"--input-size must be >= 1, got {input_size}")
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    batch_sizes = sorted(set(batch_sizes))
    settings = {"models": models, "batch_sizes": batch_sizes, "input_size": input_size, "repeats": repeats}
    exp = ExperimentDir.open(args.out, "practical", settings, check=False)  # measured afresh every time
    meter, energy_found = RaplMeter.open()
    host = machine()
    print(describe_machine(host))
    results = measure(models, batch_sizes, input_size, repeats, args.warmup, meter)
    energy_status = (f"{energy_found}; the counter is the whole package's, so other processes' work is in it "
                     "(load average above)" if meter else f"not measured: {energy_found}; {nvml_status()}")  # fmt: skip
    found = findings(results, batch_sizes, energy_status)
    table = results_table(results, batch_sizes, with_energy=meter is not None)
    write_csv(exp / "measurements.csv",
              ["model", "batch_size", "seconds_per_batch", "peak_memory_bytes", "joules_per_batch", "macs_per_image"],
              [[r.name, b, r.seconds[b], r.memory[b], r.joules.get(b, ""), r.macs] for r in results
               for b in batch_sizes])  # fmt: skip
    plot = draw(exp / "practical.png", results, batch_sizes, found.batch)
    report = "\n\n".join([f"# Practical comparison (Canziani et al. 2016) on this machine", describe_machine(host),
                          "Forward pass in fp32, the median of the timed calls; denormals flushed to zero.",
                          table, *found.text])  # fmt: skip
    out = write_text(exp / "results.md", report + "\n")
    print(table)
    print("\n" + "\n\n".join(found.text))
    print(f"\nwritten: {out}, {exp / 'measurements.csv'}, {plot}")
    return 0
