"""``cnnzoo bench``: how fast a model runs on this machine, against torchvision/timm or across runtimes.

What one measurement is:

* a *runner* does one batch: an inference forward pass (``torch.inference_mode``), or with
  ``train=True`` a training step (forward, cross-entropy on the main output, backward, SGD);
* ``warmup`` calls are made first and not timed (oneDNN picks and caches its kernels,
  torch.compile compiles, ONNX Runtime plans its memory), then ``repeats`` calls are timed one by
  one: images/s is the batch over the median time, the latency its median and 90th percentile;
* runners that are compared (cnnzoo against torchvision, or the deployment paths) are timed
  *interleaved*, one call of each in turn, the order reversed every other round, so that a
  change in the machine's load hits all of them alike;
* peak memory is measured in the first (untimed) call: the model's parameters and buffers plus
  the peak of the tensors that call allocates (activations; in training also the gradients and
  the optimizer's state), counted operator by operator (:class:`_LiveTensors`) because torch
  keeps no allocation statistics on a CPU and the process's resident set says little (the C
  allocator keeps freed memory).  Not measured for torch.compile and ONNX Runtime.

**Denormals.**  A freshly initialised net's activations can shrink layer by layer (BN statistics
that do not fit them, no training) until they are denormal floats, on which x86 CPUs compute about ten times slower; a
benchmark of such a net measures the denormals, not the net.  cnnzoo flushes them to zero
(``torch.set_flush_denormal(True)``, and ONNX Runtime's ``session.set_denormal_as_zero``) for every
runner alike, trained or not, rather than calibrating BN statistics on random images: it needs no
data, changes no weights, and leaves trained runs' numbers as they are.  The report says so.

:func:`compare_reference` and :func:`deploy_paths` build the runners of ``--compare`` and
``--deploy``; :func:`bench` puts it together for the command.
"""

from __future__ import annotations

import contextlib
import copy
import os
import statistics
import tempfile
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
from torch import nn
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

from cnnzoo.errors import ConfigError

Runner = Callable[[], Any]


# ------------------------------------------------------------------------------------------
# the machine
# ------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """The CPU, the threads torch uses, the load average, torch's version: printed with every result."""
    from cnnzoo.train.speed import cpu_bf16_instructions, cpu_model_name

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"cpu": cpu_model_name(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
            "bf16_instructions": cpu_bf16_instructions(), "load_average": list(load) if load else None,
            "torch": torch.__version__}  # fmt: skip


def describe_machine(info: dict[str, Any]) -> str:
    load = " ".join(f"{v:.2f}" for v in info["load_average"]) if info["load_average"] else "unknown"
    threads = f"{info['threads']} thread" + ("s" if info["threads"] != 1 else "")
    return f"machine: {info['cpu']}, {info['cores']} cores; {threads}; load average {load}; torch {info['torch']}"


@contextlib.contextmanager
def flushed_denormals() -> Iterator[bool]:
    """Denormal floats flushed to zero inside the block (module docstring); yields whether the CPU can."""
    supported = torch.set_flush_denormal(True)
    try:
        yield supported
    finally:
        torch.set_flush_denormal(False)


# ------------------------------------------------------------------------------------------
# measuring
# ------------------------------------------------------------------------------------------


@dataclass
class Measurement:
    """The timings of one runner at one batch size (or why it could not run)."""

    label: str
    batch_size: int
    seconds: list[float] = field(default_factory=list)
    peak_memory: int | None = None  # bytes: weights and buffers + the peak of the tensors one call allocates
    max_abs_diff: float | None = None  # from the eager outputs (deployment paths)
    unavailable: str | None = None  # why it did not run

    @property
    def images_per_second(self) -> float | None:
        return self.batch_size / statistics.median(self.seconds) if self.seconds else None

    @property
    def latency_median(self) -> float | None:
        return statistics.median(self.seconds) if self.seconds else None

    @property
    def latency_p90(self) -> float | None:
        if len(self.seconds) < 2:
            return self.latency_median
        return statistics.quantiles(self.seconds, n=10, method="inclusive")[8]

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "batch_size": self.batch_size, "images_per_second": self.images_per_second,
                "latency_median_s": self.latency_median, "latency_p90_s": self.latency_p90,
                "peak_memory_bytes": self.peak_memory,
                "max_abs_diff": self.max_abs_diff, "unavailable": self.unavailable, "seconds": self.seconds}  # fmt: skip


class _LiveTensors(TorchDispatchMode):
    """Counts the bytes of the tensors torch allocates inside the block, and their peak.

    Every operator's new outputs are added when they appear and subtracted when the last Python
    reference to them goes (a weakref finalizer); storages already counted (views, in-place
    results) are not counted twice.  What the kernels allocate for themselves and free before
    they return (oneDNN's scratch space) is not seen.  Written here because torch has no
    allocation statistics for the CPU (``torch.cuda.max_memory_allocated`` is CUDA's only).
    """

    def __init__(self) -> None:
        super().__init__()
        self.live = self.peak = 0
        self._sizes: dict[int, int] = {}

    def _free(self, key: int) -> None:
        self.live -= self._sizes.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for value in pytree.tree_leaves(out):
            if isinstance(value, torch.Tensor) and value.device.type != "meta":
                storage = value.untyped_storage()
                key = storage.data_ptr()
                if key and key not in self._sizes:
                    self._sizes[key] = storage.nbytes()
                    self.live += storage.nbytes()
                    self.peak = max(self.peak, self.live)
                    weakref.finalize(value, self._free, key)
        return out


def state_bytes(model: nn.Module) -> int:
    """The bytes of a model's parameters and buffers."""
    return sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))


def peak_memory(run: Runner) -> tuple[Any, int | None]:
    """``run()``'s result and the peak bytes of the tensors it allocated (:class:`_LiveTensors`).

    None for a runner marked ``run.tracks_memory = False`` (compiled graphs, ONNX Runtime: their
    memory is not torch's tensors one by one), which then just runs.
    """
    if not getattr(run, "tracks_memory", True):
        return run(), None
    counter = _LiveTensors()
    with counter:
        result = run()
    return result, counter.peak


def measure_interleaved(runners: dict[str, Runner], batch_size: int, repeats: int, warmup: int,
                        unavailable: dict[str, str] | None = None) -> dict[str, Measurement]:  # fmt: skip
    """Time every runner ``repeats`` times, one call of each in turn (module docstring).

    Each runner is first called ``max(warmup, 1)`` times untimed, the first of them under the
    memory count (:func:`peak_memory`).

    A runner that raises during its first calls is reported as unavailable with the error, in
    one line; the others go on.  ``unavailable`` names runners that could not even be built.
    """
    if repeats < 1 or warmup < 0:
        raise ConfigError(f"repeats must be >= 1 and warm-up >= 0, got {repeats} and {warmup}")
    results = {label: Measurement(label, batch_size) for label in runners}
    for label, reason in (unavailable or {}).items():
        results[label] = Measurement(label, batch_size, unavailable=reason)
    live = dict(runners)
    for label, run in list(live.items()):
        try:
            _, peak = peak_memory(run)
            weights = getattr(run, "state_bytes", None)
            results[label].peak_memory = None if peak is None or weights is None else weights + peak
            for _ in range(max(warmup - 1, 0)):
                run()
        except Exception as exc:  # a runtime that cannot run this model: say why, go on with the others
            results[label].unavailable = _one_line(exc)
            del live[label]
    order = list(live)
    for round_ in range(repeats):
        for label in order if round_ % 2 == 0 else reversed(order):
            start = time.perf_counter()
            live[label]()
            results[label].seconds.append(time.perf_counter() - start)
    return results


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = f"{type(exc).__name__}: {text}"
    return text if len(text) < 200 else text[:197] + "..."


# ------------------------------------------------------------------------------------------
# runners
# ------------------------------------------------------------------------------------------


def random_batch(input_size: tuple[int, int, int], batch_size: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch_size, *input_size, generator=torch.Generator().manual_seed(seed))


def _main_output(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def inference_runner(model: nn.Module, images: torch.Tensor) -> Runner:
    model.eval()

    def run():
        with torch.inference_mode():
            return model(images)

    run.state_bytes = state_bytes(model)
    return run


def training_runner(model: nn.Module, images: torch.Tensor, num_classes: int) -> Runner:
    """One SGD step on ``images`` with fixed random labels (the loss on the main output only)."""
    model.train()
    labels = torch.randint(0, max(num_classes, 1), (images.shape[0],), generator=torch.Generator().manual_seed(1))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()

    def run():
        loss = loss_fn(_main_output(model(images)), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    run.state_bytes = state_bytes(model)
    return run


def runner_for(model: nn.Module, images: torch.Tensor, train: bool) -> Runner:
    return training_runner(model, images, int(getattr(model, "num_classes", 1000))) if train else \
        inference_runner(model, images)  # fmt: skip


# ------------------------------------------------------------------------------------------
# --compare: the same architecture from torchvision or timm
# ------------------------------------------------------------------------------------------


@dataclass
class ReferencePair:
    ours: nn.Module
    theirs: nn.Module
    label: str  # "torchvision resnet18"
    weights: str  # how the weights relate


def compare_reference(model: nn.Module, name: str, library: str, options: dict[str, Any] | None = None) -> ReferencePair:
    """The ``library`` model of cnnzoo's ``name``, carrying ``model``'s weights where they load strictly.

    ``model`` (built with builder ``options``, or a run's model, whose spec says them) must have
    the reference's layout and 3 input channels; else the comparison would time two different
    nets, and it is refused.
    """
    from cnnzoo.deploy.references import reference
    from cnnzoo.modelspec import spec_of

    ref = reference(library, name)
    spec = spec_of(model)
    if options is None:
        options = dict(spec.options) if spec else {}
    if spec and spec.transforms:
        raise ConfigError(f"--compare: this {name} was changed after building ({spec.transforms[0]['name']}); "
                          f"{ref.label} has no such layer")  # fmt: skip
    if options != ref.our_options:
        raise ConfigError(f"--compare: {ref.label} has the registered layout of {name}; this one has options "
                          f"{options} (the reference needs {ref.our_options or 'none'})")  # fmt: skip
    if int(getattr(model, "in_chans", 3)) != 3:
        raise ConfigError(f"--compare: {ref.label} takes 3 input channels; this {name} takes {model.in_chans}")
    theirs = ref.build(num_classes=int(getattr(model, "num_classes", 1000)))
    try:
        theirs.load_state_dict(model.state_dict(), strict=True)
        weights = f"the same weights (cnnzoo's state dict loaded strictly into {ref.label})"
    except RuntimeError as exc:
        weights = f"different weights: cnnzoo's state dict does not load into {ref.label} ({_one_line(exc)[:120]})"
    return ReferencePair(model, theirs, ref.label, weights)


# ------------------------------------------------------------------------------------------
# --deploy: the inference paths
# ------------------------------------------------------------------------------------------

#: the deployment paths, in the order they are reported
DEPLOY_PATHS = ("eager", "channels_last", "bn_folded", "bn_folded+channels_last", "torch.compile", "onnxruntime")


def _fold(model: nn.Module) -> nn.Module:
    from cnnzoo.deploy.fold import fold_bn

    folded, _report = fold_bn(model.eval())  # a folded copy, and a report of what it folded
    return folded


def _onnx_runner(model: nn.Module, images: torch.Tensor, threads: int, folder: str) -> Runner:
    from cnnzoo.deploy.export import export_onnx, onnxruntime_session

    path = os.path.join(folder, "model.onnx")
    if not os.path.exists(path):  # exported once with a dynamic batch axis: every batch size runs it
        export_onnx(model.eval(), path, input_size=tuple(images.shape[1:]))
    session = onnxruntime_session(path, threads, denormals_as_zero=True, spinning=False)  # as torch's (module docstring)
    feed = {session.get_inputs()[0].name: images.numpy()}

    def run():
        return torch.from_numpy(session.run(None, feed)[0])

    run.tracks_memory = False
    return run


def _untracked(run: Runner) -> Runner:
    run.tracks_memory = False
    return run


def parse_paths(text: str | None) -> tuple[str, ...]:
    """``--paths eager,onnxruntime``: a subset of :data:`DEPLOY_PATHS` (eager is always measured)."""
    if not text:
        return DEPLOY_PATHS
    chosen = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in chosen if p not in DEPLOY_PATHS]
    if unknown or not chosen:
        raise ConfigError(f"--paths: unknown path {unknown[0] if unknown else text!r}; choose from "
                          f"{', '.join(DEPLOY_PATHS)}")  # fmt: skip
    return tuple(p for p in DEPLOY_PATHS if p == "eager" or p in chosen)


def deploy_paths(model: nn.Module, images: torch.Tensor, folder: str,
                 paths: tuple[str, ...] = DEPLOY_PATHS) -> tuple[dict[str, Runner], dict[str, str]]:  # fmt: skip
    """The runners of ``paths`` (:data:`DEPLOY_PATHS`) for ``model`` on ``images``, and why any could not be built.

    ``folder`` holds the ONNX file.  torch.compile compiles in its first (untimed) call; a
    failure there is reported by :func:`measure_interleaved` as unavailable, like any other.
    """
    model = model.eval()
    channels_last = images.contiguous(memory_format=torch.channels_last)
    builders: dict[str, Callable[[], Runner]] = {
        "eager": lambda: inference_runner(model, images),
        "channels_last": lambda: inference_runner(copy.deepcopy(model).to(memory_format=torch.channels_last),
                                                  channels_last),
        "bn_folded": lambda: inference_runner(_fold(model), images),
        "bn_folded+channels_last": lambda: inference_runner(_fold(model).to(memory_format=torch.channels_last),
                                                            channels_last),
        "torch.compile": lambda: _untracked(inference_runner(torch.compile(copy.deepcopy(model)), images)),
        "onnxruntime": lambda: _onnx_runner(model, images, torch.get_num_threads(), folder),
    }  # fmt: skip
    runners, unavailable = {}, {}
    for label, build in builders.items():
        if label not in paths:
            continue
        try:
            runners[label] = build()
        except Exception as exc:  # a path that does not exist here (a module missing, an export that fails)
            unavailable[label] = _one_line(exc)
    return runners, unavailable


# ------------------------------------------------------------------------------------------
# --int8: ONNX Runtime's int8 file against fp32 eager
# ------------------------------------------------------------------------------------------

#: the int8 runner's label
INT8_LABEL = "int8 onnxruntime"


def int8_model_for(model: nn.Module, images: torch.Tensor | None, input_size: tuple[int, int, int],
                   folder: str) -> tuple[nn.Module, str]:  # fmt: skip
    """``model`` quantized to int8 (:func:`cnnzoo.quantization.int8.quantize_onnx`), and how it was calibrated.

    ``images`` are the calibration images (a run's training images); without them, 32 random
    normal images (a bare model name has no data: the speed does not depend on the ranges).
    """
    from cnnzoo.quantization.int8 import Int8Model, quantize_onnx

    if images is None:
        images, how = random_batch(input_size, 32, seed=1), "random normal images"
    else:
        how = "training images"
    path = os.path.join(folder, "model.int8.onnx")
    quantize_onnx(model.eval(), images, path)
    int8 = Int8Model(path, num_classes=int(getattr(model, "num_classes", 0)), in_chans=input_size[0])
    return int8, f"ONNX Runtime QDQ, calibrated on {len(images)} {how}"


def int8_runner(int8: nn.Module, images: torch.Tensor) -> Runner:
    def run():
        return int8(images)

    run.tracks_memory = False  # ONNX Runtime's memory is not torch's tensors
    return run


def check_outputs(runners: dict[str, Runner], results: dict[str, Measurement]) -> None:
    """Each path's largest absolute difference from the eager outputs (a fast path must stay right)."""
    if "eager" not in runners or results["eager"].unavailable:
        return
    expected = _main_output(runners["eager"]()).float()
    for label, run in runners.items():
        if label != "eager" and not results[label].unavailable:
            got = _main_output(run()).float()
            results[label].max_abs_diff = float((got - expected).abs().max())


# ------------------------------------------------------------------------------------------
# the command
# ------------------------------------------------------------------------------------------


@dataclass
class BenchReport:
    model: str
    input_size: tuple[int, int, int]
    mode: str  # "inference" or "training"
    machine: dict[str, Any]
    denormals: str
    measurements: list[Measurement]
    weights: str | None = None  # --compare: how the two nets' weights relate
    reference: str | None = None  # --compare: the reference's label
    deploy: bool = False
    int8: str | None = None  # --int8: what the int8 model is and how it was calibrated

    def rows_at(self, batch: int) -> list[Measurement]:
        return [m for m in self.measurements if m.batch_size == batch]

    @property
    def batch_sizes(self) -> list[int]:
        return sorted({m.batch_size for m in self.measurements})

    def ratios(self) -> dict[int, float]:
        """--compare: cnnzoo's images/s over the reference's, per batch size."""
        out = {}
        for batch in self.batch_sizes:
            rows = {m.label: m for m in self.rows_at(batch)}
            ours, theirs = rows.get(f"cnnzoo {self.model}"), rows.get(self.reference or "")
            if ours and theirs and ours.images_per_second and theirs.images_per_second:
                out[batch] = ours.images_per_second / theirs.images_per_second
        return out

    def speedups(self) -> dict[tuple[int, str], float]:
        """--deploy: each path's images/s over eager's at the same batch size."""
        out = {}
        for batch in self.batch_sizes:
            rows = {m.label: m for m in self.rows_at(batch)}
            eager = rows.get("eager")
            if not eager or not eager.images_per_second:
                continue
            for label, m in rows.items():
                if m.images_per_second:
                    out[(batch, label)] = m.images_per_second / eager.images_per_second
        return out

    def best(self) -> tuple[int, str, float] | None:
        """--deploy: the fastest path over eager, ``(batch, path, speed-up)``."""
        ups = {k: v for k, v in self.speedups().items() if k[1] != "eager"}
        if not ups:
            return None
        (batch, label), value = max(ups.items(), key=lambda kv: kv[1])
        return batch, label, value

    def int8_speedups(self) -> dict[int, float]:
        """--int8: the int8 model's images/s over fp32 eager's, per batch size."""
        return {batch: value for (batch, label), value in self.speedups().items() if label == INT8_LABEL}

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"model": self.model, "input_size": list(self.input_size), "mode": self.mode,
                                "machine": self.machine, "denormals": self.denormals,
                                "results": [m.to_dict() for m in self.measurements]}  # fmt: skip
        if self.reference:
            data.update(reference=self.reference, weights=self.weights,
                        ratios={str(k): v for k, v in self.ratios().items()})
        if self.int8:
            data["int8"] = {"model": self.int8, "speedups": {str(b): v for b, v in self.int8_speedups().items()}}
        if self.deploy:
            data["speedups"] = {f"{b}:{label}": v for (b, label), v in self.speedups().items()}
            best = self.best()
            data["best"] = {"batch_size": best[0], "path": best[1], "speedup": best[2]} if best else None
        return data

    def format(self) -> str:
        size = "x".join(map(str, self.input_size))
        precision = "fp32 and int8" if self.int8 else "fp32"
        lines = [describe_machine(self.machine), f"{self.model}, {size}, {self.mode}, {precision}; {self.denormals}"]
        if self.weights:
            lines.append(f"{self.reference}: {self.weights}")
        if self.int8:
            lines.append(f"int8: {self.int8}")
        header = ["batch", "runner", "img/s", "latency median", "p90", "peak memory"]
        if self.deploy or self.int8:
            header += ["vs eager", "max abs diff"]
        speedups = self.speedups()
        lines += ["", "| " + " | ".join(header) + " |", "|---|---|" + "---:|" * (len(header) - 2)]
        for m in self.measurements:
            if m.unavailable:
                cells = [str(m.batch_size), m.label, f"unavailable: {m.unavailable}"] + [""] * (len(header) - 3)
            else:
                cells = [str(m.batch_size), m.label, f"{m.images_per_second:.1f}", _ms(m.latency_median),
                         _ms(m.latency_p90), _mb(m.peak_memory)]  # fmt: skip
                if self.deploy or self.int8:
                    cells += [f"{speedups.get((m.batch_size, m.label), 0):.2f}x",
                              "-" if m.max_abs_diff is None else f"{m.max_abs_diff:.1e}"]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        for batch, ratio in self.ratios().items():
            lines.append(f"batch {batch}: cnnzoo / {self.reference} = {ratio:.2f}x")
        if self.int8:
            ups = self.int8_speedups()
            lines.append("int8: " + (", ".join(f"{v:.1f}x at batch {b}" for b, v in ups.items()) if ups else
                                     "no speed-up measured (the fp32 or the int8 runner did not run)"))  # fmt: skip
        if self.deploy:
            best = self.best()
            lines.append(f"deploy: {best[2]:.1f}x ({best[1]} at batch {best[0]})" if best else
                         "deploy: 1.0x (no path beside eager ran)")  # fmt: skip
        return "\n".join(lines).rstrip("\n")


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{1000 * seconds:.2f} ms"


def _mb(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:.1f} MB"


def parse_batch_sizes(text: str) -> list[int]:
    """``"1,8,32"`` -> ``[1, 8, 32]``; anything but positive integers is a one-line error."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--batch-size takes positive integers separated by commas, e.g. 1,8,32; got {text!r}") \
            from None  # fmt: skip
    if not values or min(values) < 1:
        raise ConfigError(f"--batch-size takes positive integers separated by commas, e.g. 1,8,32; got {text!r}")
    return values


def build_for_bench(model_or_name, options: dict[str, Any], in_chans: int) -> tuple[nn.Module, str]:
    """A registered name built with its options for ``in_chans`` channels (the run's model as it is); its name."""
    from cnnzoo.modelspec import spec_of
    from cnnzoo.registry import create_model

    if isinstance(model_or_name, str):
        torch.manual_seed(0)
        model = create_model(model_or_name, in_chans=in_chans, **options)
        return model, model_or_name
    spec = spec_of(model_or_name)
    return model_or_name, spec.name if spec else str(getattr(model_or_name, "model_name", "model"))


def bench(model_or_name, input_size: tuple[int, int, int], batch_sizes: list[int], *, options=None,
          train: bool = False, compare: str | None = None, deploy: bool = False, repeats: int = 10,
          warmup: int = 2, threads: int | None = None, paths: tuple[str, ...] = DEPLOY_PATHS,
          int8: bool = False, calibration: torch.Tensor | None = None) -> BenchReport:  # fmt: skip
    """Measure a model (a registered name with ``options``, or a built one) at each batch size.

    ``compare`` ("torchvision" or "timm") times the reference implementation interleaved with
    cnnzoo's; ``deploy`` times each inference path of ``paths`` (:data:`DEPLOY_PATHS`; not with
    ``train``).  ``int8`` times the model quantized to int8 (ONNX Runtime, calibrated on
    ``calibration`` or random images) interleaved with fp32 eager.  An int8 run's model
    (:class:`~cnnzoo.quantization.int8.Int8Model`) is timed as it is, and with ``int8`` against
    its fp32 architecture (freshly initialised: with denormals flushed the weights do not change the speed).
    """
    from cnnzoo.quantization.int8 import Int8Model
    from cnnzoo.registry import model_info

    given_int8 = model_or_name if isinstance(model_or_name, Int8Model) else None
    if given_int8 is not None and (train or compare or deploy):
        what = "--train" if train else "--compare" if compare else "--deploy"
        raise ConfigError(f"{what} needs a torch model; {given_int8.path.parent} is an int8 run (an ONNX Runtime "
                          "graph): bench it as it is, or with --int8 against fp32")  # fmt: skip
    if int8 and (train or compare or deploy):
        raise ConfigError("--int8 measures int8 inference against fp32 eager; it cannot be combined with "
                          "--train, --compare or --deploy")  # fmt: skip
    if compare and deploy:
        raise ConfigError("--compare and --deploy are two measurements; give one of them")
    if deploy and train:
        raise ConfigError("--deploy measures inference paths; it cannot be combined with --train")
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    options = dict(options or {})
    if compare and isinstance(model_or_name, str):
        from cnnzoo.deploy.references import reference

        # an architecture the library lacks: one line, before building; the reference's layout
        # (timm's Inception v3 has no auxiliary head) is built unless the user chose otherwise
        options = {**reference(compare, model_or_name).our_options, **options}
    if given_int8 is not None:
        model = given_int8.fp32_architecture()
        name = given_int8.int8["fp32_spec"]["name"]
    else:
        model, name = build_for_bench(model_or_name, options, input_size[0])
    model_info(name).check_input_size(*input_size[1:])
    mode = "training" if train else "inference"
    pair = compare_reference(model, name, compare, options if isinstance(model_or_name, str) else None) \
        if compare else None  # fmt: skip
    measurements: list[Measurement] = []
    with flushed_denormals() as supported, tempfile.TemporaryDirectory(prefix="cnnzoo-bench-") as folder:
        denormals = ("denormals flushed to zero (torch.set_flush_denormal) for every runner" if supported else
                     "this CPU cannot flush denormals: a freshly initialised net may time slow")  # fmt: skip
        int8_model, int8_text = given_int8, None
        if given_int8 is not None:
            int8_text = f"{given_int8.path} ({given_int8.int8.get('method', 'ptq')})"
        elif int8:
            int8_model, int8_text = int8_model_for(model, calibration, tuple(input_size), folder)
        for batch in batch_sizes:
            images = random_batch(input_size, batch)
            unavailable: dict[str, str] = {}
            if given_int8 is not None and not int8:
                runners = {INT8_LABEL: int8_runner(given_int8, images)}
            elif int8_model is not None:
                runners = {"eager": inference_runner(model, images), INT8_LABEL: int8_runner(int8_model, images)}
            elif deploy:
                runners, unavailable = deploy_paths(model, images, folder, paths)
            elif pair:
                runners = {f"cnnzoo {name}": runner_for(pair.ours, images, train),
                           pair.label: runner_for(pair.theirs, images, train)}  # fmt: skip
            else:
                runners = {f"cnnzoo {name}": runner_for(model, images, train)}
            results = measure_interleaved(runners, batch, repeats, warmup, unavailable)
            if deploy or (int8 and given_int8 is None):  # an int8 run's fp32 baseline has other weights
                check_outputs(runners, results)
            if deploy:
                results = {label: results[label] for label in DEPLOY_PATHS if label in results}
            measurements += results.values()
    return BenchReport(name, tuple(input_size), mode, machine(), denormals, measurements,
                       weights=pair.weights if pair else None, reference=pair.label if pair else None,
                       deploy=deploy, int8=int8_text if int8 else None)  # fmt: skip
