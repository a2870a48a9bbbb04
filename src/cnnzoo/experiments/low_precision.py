"""``cnnzoo experiment low-precision``: what a network keeps when its weights lose their bits (issue 13).

LeNet-5 and ResNet-20 on Fashion-MNIST at every precision cnnzoo stores: fp32, int8 (ONNX
Runtime's static QDQ quantization), two-bit (Meng et al. 2017), TTQ (Zhu et al. 2017), TWN
(Li & Liu 2016), BWN and XNOR-Net (Rastegari et al. 2016) and BNN (Hubara et al. 2016), each
measured as its stored artefact: the test top-1 of the file, its size in bytes, its bits per
weight, and its speed where a real kernel exists.

How each net is made (every training is ``fit``, in its own run directory below ``OUT``):

* **fp32** (``OUT/MODEL-fp32``): trained from scratch, SGD with momentum 0.9 and weight decay
  5e-4 and a cosine schedule, batches of 64 (by default 10,000 training images, 8 epochs at
  0.1; LeNet-5's tanh net learns slowly, and at this budget batches of 64 reach a higher top-1
  than 128).  It is the baseline of every ratio and change, so it is always trained.
* **the bit schemes** (``OUT/MODEL-SCHEME``): by default the trained fp32 net is quantized and
  fine-tuned, as ``cnnzoo quantize RUN --scheme S`` does (its pieces: ``quantize_model``, the
  ``quantize`` transform recorded in the spec, ``training_callbacks``, ``finish_quantized_run``'s
  ``weights.qpack``), 2 epochs at 0.01.  Why fine-tuning: every scheme then
  starts from the same net, so its change against fp32 is the cost of its quantizer alone, and
  the budget goes into one longer fp32 training instead of eight short ones.  TTQ fine-tunes a
  pre-trained net in its paper (Sec. 4); BinaryConnect, BNN and XNOR-Net train from scratch for
  hundreds of epochs, which no budget here allows, and a binary net trained from scratch for a
  few epochs mostly measures how slowly it converges.  ``--from-scratch`` trains each scheme
  from scratch instead (``cnnzoo train --quantize``'s way, the fp32 settings;
  ``OUT/MODEL-SCHEME-scratch``).
* **int8** (``OUT/MODEL-int8``): post-training static quantization of the fp32 net on
  ``--calibration`` training images (``cnnzoo quantize RUN --scheme int8``'s run directory,
  through :func:`cnnzoo.quantization.int8.quantize_onnx`).

What is measured, the same way for every row:

* **test top-1** of the stored model on the whole test split (``--limit-test`` to cut it), in
  float32: the fp32 run's ``best`` checkpoint, the bit schemes' ``weights.qpack`` decoded by
  ``load_qpack`` (it computes exactly what the trained quantized net computes), the int8 file in
  ONNX Runtime.  (Training uses ``cnnzoo train``'s precision, bf16 autocast where the CPU has it;
  its ``results.json`` is tested on the validation-sized test subset and may differ slightly.)
* **size**: the bytes of that file (``best.safetensors``, ``weights.qpack``, ``model.int8.onnx``).
* **bits per weight**, as stored: the quantized layers' bits (codes, their codebooks or scales
  and zero points) over their number of weights (fp32: 32), and the whole file's bits over the
  fp32 net's parameter count (this one includes the full-precision first and last layers,
  biases, batch norm and the file's header or graph).
* **speed**, int8 only: the int8 file in ONNX Runtime against the trained fp32 net in eager
  PyTorch on the CPU, timed interleaved (``cnnzoo.deploy.bench.measure_interleaved``, denormals
  flushed) at ``--speed-batches`` (1 and 64).  PyTorch has no bit-packed XNOR/popcount kernels:
  a binary or ternary net runs as float convolutions of +-alpha values, so no speed is claimed
  for them; their size is real.

Outputs in ``OUT``: ``results.md`` (a table per model and the papers' figures beside ours),
``results.csv`` (one row per model and scheme) and ``low-precision.png`` (test top-1 against
bits per weight and against the file's size, one line per model).  ``OUT`` is a run directory
of kind ``experiment:low-precision``: a finished training is reused, an interrupted one
resumed, other settings refused naming the keys (:mod:`cnnzoo.experiments._runs`).
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from cnnzoo.errors import ConfigError
from cnnzoo.experiments import _runs
from cnnzoo.experiments._runs import markdown_table, percent

#: the training flags (from TrainConfig) and notes for their help; defaults: run_low_precision_experiment's
TRAINING_FLAGS = {"data": "", "data_dir": "", "epochs": "the fp32 training", "batch_size": "",
                  "lr": "the fp32 training; SGD, cosine schedule",
                  "limit_val": "validation images that choose the best epoch", "seed": "", "device": "",
                  "threads": "also the speed measurement's"}  # fmt: skip


@dataclass(frozen=True)
class Scheme:
    """One precision of the experiment."""

    name: str  # the experiment's name for it (``--schemes``)
    label: str  # for the tables and the plot
    paper: str
    #: the options of the ``quantize`` transform (bit schemes); None for fp32 and int8
    quantize: dict[str, Any] | None = None


FP32, INT8 = "fp32", "int8"

#: the experiment's schemes, in the order of the tables (most bits first)
SCHEMES: dict[str, Scheme] = {s.name: s for s in (
    Scheme(FP32, "fp32", "-"),
    Scheme(INT8, "int8", "static QDQ, ONNX Runtime (Jacob et al. 2018)"),
    Scheme("2bit", "2-bit", "Meng et al. 2017", {"scheme": "2bit"}),
    Scheme("ttq", "TTQ", "Zhu et al. 2017", {"scheme": "ttq"}),
    Scheme("twn", "TWN", "Li & Liu 2016", {"scheme": "ternary"}),
    Scheme("bwn", "BWN", "Rastegari et al. 2016", {"scheme": "bwn"}),
    Scheme("xnor", "XNOR", "Rastegari et al. 2016", {"scheme": "xnor"}),
    Scheme("binaryconnect", "BinaryConnect", "Courbariaux et al. 2015", {"scheme": "binary"}),
    Scheme("bnn", "BNN", "Hubara et al. 2016", {"scheme": "binary", "binary_activations": True}),
)}  # fmt: skip
DEFAULT_SCHEMES = ("fp32", "int8", "2bit", "ttq", "twn", "bwn", "xnor", "bnn")
DEFAULT_MODELS = ("lenet5", "resnet20")


@dataclass(frozen=True)
class PaperResult:
    """A figure a paper reports for one of the schemes, with the full-precision figure beside it."""

    scheme: str
    source: str
    setting: str  # the net and the data set
    metric: str  # "error" or "top-1"
    value: float  # percent
    fp32: float | None = None  # percent, the paper's full-precision net in the same table


#: the papers' own figures (as the issue quotes them), shown beside ours in results.md
PAPER_RESULTS = (
    PaperResult("bnn", "Hubara et al. 2016 (BNN), Table 1", "MLP, MNIST", "error", 0.96),
    PaperResult("bnn", "Hubara et al. 2016 (BNN), Table 1", "ConvNet, CIFAR-10", "error", 11.40),
    PaperResult("xnor", "Rastegari et al. 2016 (XNOR-Net), Table 2", "ResNet-18, ImageNet", "top-1", 51.2, 69.3),
    PaperResult("bwn", "Rastegari et al. 2016 (XNOR-Net), Table 2", "ResNet-18, ImageNet", "top-1", 60.8, 69.3),
    PaperResult("ttq", "Zhu et al. 2017 (TTQ), Table 1", "ResNet-20, CIFAR-10", "error", 8.87, 8.23),
)  # fmt: skip


# ------------------------------------------------------------------------------------------
# what a row is
# ------------------------------------------------------------------------------------------


@dataclass
class Speed:
    """int8 against fp32 eager at one batch size (median seconds per batch)."""

    batch_size: int
    fp32_seconds: float | None
    int8_seconds: float | None
    note: str = ""  # why a runner did not run

    @property
    def speedup(self) -> float | None:
        if not self.fp32_seconds or not self.int8_seconds:
            return None
        return self.fp32_seconds / self.int8_seconds


@dataclass
class StoredSize:
    """A stored model file and its bits: the file's bytes, the quantized layers' bits and weights."""

    file: Path
    size_bytes: int
    weight_bits: int  # bits the quantized layers' weights take, with their scales (fp32: 32 a weight)
    weights: int  # weights in those layers


@dataclass
class Row:
    """One model at one scheme."""

    model: str
    scheme: str
    run_dir: Path
    stored: StoredSize
    params: int  # parameters of the fp32 net (the whole file's bits are counted per parameter)
    top1: float
    test_images: int
    speed: list[Speed] = field(default_factory=list)

    @property
    def bits_per_weight(self) -> float:
        return self.stored.weight_bits / max(1, self.stored.weights)

    @property
    def file_bits_per_param(self) -> float:
        return 8 * self.stored.size_bytes / max(1, self.params)


@dataclass
class LowPrecisionReport:
    rows: list[Row]
    data: str
    test_images: int
    start: str  # "fine-tuned from fp32" or "from scratch"
    machine: str = ""
    files: list[Path] = field(default_factory=list)

    def of(self, model: str, scheme: str) -> Row | None:
        return next((r for r in self.rows if r.model == model and r.scheme == scheme), None)

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(r.model for r in self.rows))


# ------------------------------------------------------------------------------------------
# checking the command line
# ------------------------------------------------------------------------------------------


def check_schemes(schemes: Sequence[str]) -> list[str]:
    """The schemes in table order, fp32 always first (the baseline); an unknown one is a one-line error."""
    unknown = [s for s in schemes if s not in SCHEMES]
    if unknown:
        raise ConfigError(f"unknown scheme {unknown[0]!r} for --schemes; known: {', '.join(SCHEMES)}")
    if not schemes:
        raise ConfigError("--schemes needs at least one scheme")
    wanted = {FP32, *schemes}
    return [name for name in SCHEMES if name in wanted]


def check_models(models: Sequence[str]) -> list[str]:
    """Registered model names (an unknown one: the registry's one-line error), each once."""
    from cnnzoo.registry import model_info

    if not models:
        raise ConfigError("--models needs at least one model")
    for name in models:
        model_info(name)
    return list(dict.fromkeys(models))


def _names(text: str) -> list[str]:
    """argparse type: ``"lenet5,resnet20"`` -> ``["lenet5", "resnet20"]``."""
    return [part.strip() for part in text.split(",") if part.strip()]


# ------------------------------------------------------------------------------------------
# the trainings
# ------------------------------------------------------------------------------------------


def fp32_training(*, data: str, epochs: int, batch_size: int, lr: float, train_size: int | None,
                  limit_val: int | None, seed: int) -> dict[str, Any]:  # fmt: skip
    """The keys of ``fit`` for the fp32 nets (and ``--from-scratch``): SGD 0.9, weight decay 5e-4, cosine."""
    return dict(data=data, epochs=epochs, batch_size=batch_size, lr=lr, optimizer="sgd", momentum=0.9,
                weight_decay=5e-4, schedule="cosine", warmup_epochs=0.0, limit_train=train_size or None,
                limit_val=limit_val or None, seed=seed)  # fmt: skip


def finetune_training(fp32: dict[str, Any], *, epochs: int, lr: float) -> dict[str, Any]:
    """The fine-tuning of a quantized net: the fp32 settings with ``epochs`` at ``lr``."""
    return {**fp32, "epochs": epochs, "lr": lr}


def train_fp32(exp: _runs.ExperimentDir, model: str, training: dict[str, Any], *, data_dir: str | None,
               device: str, threads: int | None, log: Callable[[str], None]) -> Path:  # fmt: skip
    """``OUT/MODEL-fp32``: the fp32 net (reused when finished, resumed when not); its run directory."""
    from cnnzoo.train import fit

    run_dir = exp / f"{model}-{FP32}"

    def train(resume: bool):
        log(f"{model} fp32: training on {training['data']}, {training['limit_train'] or 'all'} images, "
            f"{training['epochs']} epochs")  # fmt: skip
        return fit(model, resume=resume, log=log, out=str(run_dir), data_dir=data_dir, device=device, threads=threads,
                   progress=False, **training)  # fmt: skip

    _runs.train_once(run_dir, train, wanted=dict(training, model=model), log=log, what=f"{model} fp32")
    return run_dir


def scheme_options(scheme: Scheme) -> dict[str, Any]:
    """The ``quantize`` transform's options of a bit scheme (checked as ``cnnzoo quantize`` checks them)."""
    from cnnzoo.quantization.transform import check_scheme

    options = {"binary_activations": False, "keep_first_last": True, **(scheme.quantize or {})}
    check_scheme(options["scheme"], options["binary_activations"])
    return options


def train_quantized(exp: _runs.ExperimentDir, model: str, scheme: Scheme, fp32_dir: Path, training: dict[str, Any],
                    *, from_scratch: bool, data_dir: str | None, device: str, threads: int | None,
                    log: Callable[[str], None]) -> Path:  # fmt: skip
    """``OUT/MODEL-SCHEME[-scratch]``: a bit scheme fine-tuned from the fp32 net (or trained from scratch).

    Reused when finished (its ``weights.qpack`` written if a kill came before it), resumed when not.
    """
    from cnnzoo.modelspec import ModelSpec
    from cnnzoo.quantization.transform import quantized_from_run, training_callbacks
    from cnnzoo.train import fit
    from cnnzoo.train.runs import load_run

    from cnnzoo.rundir import read_record

    options = scheme_options(scheme)
    run_dir = exp / (f"{model}-{scheme.name}" + ("-scratch" if from_scratch else ""))
    if not from_scratch:  # a built net trains at the size its fp32 run was trained at, as cnnzoo quantize does
        training = {**training, "input_size": list(read_record(fp32_dir)["input_size"])}
    what = f"{model} {scheme.name}"

    def train(resume: bool):
        callbacks = training_callbacks(options["scheme"])
        common = dict(resume=resume, log=log, out=str(run_dir), data_dir=data_dir, device=device, threads=threads,
                      progress=False, callbacks=callbacks, **training)  # fmt: skip
        if from_scratch:
            log(f"{what}: training from scratch, {training['epochs']} epochs at lr {training['lr']}")
            spec = ModelSpec(model).then("quantize", **options)
            return fit(spec, record={"quantize": dict(options)}, **common)
        log(f"{what}: fine-tuning the fp32 net, {training['epochs']} epochs at lr {training['lr']}")
        net, record = quantized_from_run(load_run(fp32_dir, device="cpu"), options, "the low-precision experiment")
        return fit(net, kind="quantize", record=record, **common)

    _runs.train_once(run_dir, train, wanted=dict(training, model=model), kind="train" if from_scratch else "quantize",
                     log=log, what=what)  # fmt: skip
    check_recorded_scheme(run_dir, options)
    if not (run_dir / "weights.qpack").is_file():
        from cnnzoo.quantization.packing import write_qpack

        log(write_qpack(load_run(run_dir, device="cpu").model, run_dir / "weights.qpack").describe())
    return run_dir


def check_recorded_scheme(run_dir: Path, options: dict[str, Any]) -> None:
    """A run in ``run_dir`` whose quantize transform has other options than ``options`` is refused, naming them."""
    from cnnzoo.rundir import check_same_settings, read_record

    spec = (read_record(run_dir) or {}).get("spec") or {}
    steps = [t for t in spec.get("transforms") or [] if t.get("name") == "quantize"]
    saved = dict(steps[-1].get("options") or {}) if steps else {}
    check_same_settings(saved, options, f"the run in {run_dir}",
                        advice="choose another --out, or delete that run to train it again")  # fmt: skip


def int8_run(exp: _runs.ExperimentDir, model: str, fp32_dir: Path, calibration: int,
             log: Callable[[str], None]) -> Path:  # fmt: skip
    """``OUT/MODEL-int8``: ``cnnzoo quantize FP32 --scheme int8 --calibration N``'s run directory; reused when made."""
    from cnnzoo.modelspec import spec_of
    from cnnzoo.quantization import int8 as q8
    from cnnzoo.rundir import RunDir, check_same_settings, read_record
    from cnnzoo.train.runs import load_run

    run_dir = exp / f"{model}-{INT8}"
    record = read_record(run_dir) if run_dir.is_dir() else None
    if (run_dir / q8.INT8_FILE).is_file() and record is not None:
        saved = {"calibration": (record.get("int8") or {}).get("calibration")}
        check_same_settings(saved, {"calibration": calibration}, f"the int8 run in {run_dir}",
                            advice="choose another --out, or delete that run to quantize it again")  # fmt: skip
        log(f"{model} int8: already quantized ({run_dir}), reusing it")
        return run_dir
    log(f"{model} int8: post-training quantization, calibrated on {calibration} training images")
    run = RunDir.open(run_dir, q8.KIND, resume=record is not None)  # an int8 run stopped before its file: redone
    source = load_run(fp32_dir, device="cpu")
    images = q8.calibration_images(source.config, source.meta, calibration)
    int8 = {"method": "ptq", "source": str(fp32_dir), "fp32_spec": spec_of(source.model).to_dict(),
            "calibration": calibration, "calibration_data": source.config.data}  # fmt: skip
    q8.write_int8_run(run, source, images, int8)
    return run_dir


# ------------------------------------------------------------------------------------------
# measuring
# ------------------------------------------------------------------------------------------


def fp32_size(run_dir: Path) -> StoredSize:
    """The fp32 checkpoint: ``best.safetensors`` (``last`` without a best), 32 bits a conv/linear weight."""
    from cnnzoo.train.checkpoint import load_weights

    file = run_dir / "best.safetensors"
    if not file.is_file():
        file = run_dir / "last.safetensors"
    tensors, _ = load_weights(file)
    weights = sum(t.numel() for key, t in tensors.items() if key.endswith("weight") and t.dim() >= 2)
    return StoredSize(file, file.stat().st_size, 32 * weights, weights)


def qpack_size(file: Path) -> StoredSize:
    """``weights.qpack``: the codes and codebooks of its quantized layers, from its header."""
    from cnnzoo.quantization.packing import read_qpack

    header, _ = read_qpack(file)
    coded = [entry for entry in header["tensors"] if entry["kind"] == "codes"]
    weights = sum(math.prod(entry["shape"]) for entry in coded)
    bits = sum(8 * (entry["codes"]["nbytes"] + entry["codebook"]["nbytes"]) for entry in coded)
    return StoredSize(file, file.stat().st_size, bits, weights)


def onnx_int8_size(file: Path) -> StoredSize:
    """``model.int8.onnx``: its int8 weights with their per-channel scales and zero points.

    ONNX Runtime's QDQ quantizer stores each weight as the int8 initializer ``W_quantized``
    beside ``W_scale`` and ``W_zero_point``; they are counted, the rest of the graph (int32
    biases, the activations' ranges, the operators) only in the file's size.
    """
    import onnx
    from onnx import helper

    graph = onnx.load(str(file)).graph
    tensors = {t.name: t for t in graph.initializer}

    def bits(tensor) -> int:
        size = math.prod(tensor.dims) if tensor.dims else 1
        return 8 * size * helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize

    weights = total = 0
    for name, tensor in tensors.items():
        if name.endswith("weight_quantized") and tensor.data_type == onnx.TensorProto.INT8:
            base = name[: -len("_quantized")]
            weights += math.prod(tensor.dims)
            total += bits(tensor) + sum(bits(tensors[f"{base}{s}"]) for s in ("_scale", "_zero_point")
                                        if f"{base}{s}" in tensors)  # fmt: skip
    if not weights:
        raise ConfigError(f"{file} holds no int8 weights named *weight_quantized: not ONNX Runtime's QDQ layout")
    return StoredSize(file, file.stat().st_size, total, weights)


def evaluation_batches(data: str, data_dir: str | None, seed: int, limit_test: int | None, meta: dict[str, Any], device):
    """The test split (or ``limit_test`` images of it), normalised at the run's input size, as a list of batches."""
    from cnnzoo.train import engine

    bundle = engine.load_dataset(data, data_dir=data_dir, val_fraction=0.1, seed=seed,
                                 limit_test=limit_test or sys.maxsize)  # fmt: skip
    if bundle.test is None or len(bundle.test) == 0:
        raise ConfigError(f"{data} has no test split")
    loader = engine.make_loader(bundle.test, batch_size=256, train=False, device=device,
                                input_size=tuple(meta["input_size"]), augment=None, mean=meta["mean"],
                                std=meta["std"], seed=seed)  # fmt: skip
    return list(loader), len(bundle.test)


def top1(model, batches, device, num_classes: int) -> float:
    """Test top-1 of ``model`` in float32 (no autocast) on ``batches``."""
    from cnnzoo.train.engine import evaluate

    return evaluate(model, batches, device, num_classes, amp="none").top1_acc


def int8_speed(fp32_model, int8_model, input_size: Sequence[int], batch_sizes: Sequence[int], repeats: int,
               log: Callable[[str], None]) -> list[Speed]:  # fmt: skip
    """The int8 model against fp32 eager, interleaved, at each batch size (``cnnzoo bench --int8``'s runners)."""
    from cnnzoo.deploy import bench

    speeds = []
    with bench.flushed_denormals():
        for batch in batch_sizes:
            images = bench.random_batch(tuple(input_size), batch)
            runners = {"eager": bench.inference_runner(fp32_model, images),
                       bench.INT8_LABEL: bench.int8_runner(int8_model, images)}  # fmt: skip
            found = bench.measure_interleaved(runners, batch, repeats, warmup=3)
            fp32, int8 = found["eager"], found[bench.INT8_LABEL]
            note = "; ".join(m.unavailable for m in (fp32, int8) if m.unavailable)
            speeds.append(Speed(batch, fp32.latency_median, int8.latency_median, note))
            if speeds[-1].speedup:
                log(f"  batch {batch}: fp32 eager {1000 * fp32.latency_median:.2f} ms, int8 "
                    f"{1000 * int8.latency_median:.2f} ms: {speeds[-1].speedup:.2f}x")  # fmt: skip
    return speeds


# ------------------------------------------------------------------------------------------
# the experiment
# ------------------------------------------------------------------------------------------


def run_low_precision_experiment(
    *,
    models: Sequence[str] = DEFAULT_MODELS,
    schemes: Sequence[str] = DEFAULT_SCHEMES,
    data: str = "fashion-mnist",
    data_dir: str | None = None,
    train_size: int | None = 10_000,
    epochs: int = 8,
    batch_size: int = 64,
    lr: float = 0.1,
    limit_val: int | None = 2000,
    finetune_epochs: int = 2,
    finetune_lr: float = 0.01,
    from_scratch: bool = False,
    calibration: int = 512,
    limit_test: int | None = None,
    speed_batches: Sequence[int] = (1, 64),
    repeats: int = 20,
    out: str | Path = "runs/experiment-low-precision",
    device: str = "auto",
    threads: int | None = 1,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> LowPrecisionReport:
    """Train, quantize and measure every model at every scheme (module docstring)."""
    import torch

    from cnnzoo.deploy.bench import describe_machine, machine
    from cnnzoo.quantization.packing import load_qpack
    from cnnzoo.train import engine
    from cnnzoo.train.runs import load_run

    # everything a user can get wrong, before any work
    _runs.check_at_least(("--epochs", epochs, 1), ("--finetune-epochs", finetune_epochs, 1),
                         ("--batch-size", batch_size, 1), ("--calibration", calibration, 1),
                         ("--repeats", repeats, 1), ("--train-size", train_size or 0, 0),
                         ("--limit-test", limit_test or 0, 0))  # fmt: skip
    if finetune_lr <= 0:
        raise ConfigError(f"--finetune-lr must be > 0, got {finetune_lr}")
    if not speed_batches or min(speed_batches) < 1:
        raise ConfigError(f"--speed-batches takes positive batch sizes, got {list(speed_batches)}")
    schemes = check_schemes(schemes)
    models = check_models(models)
    if INT8 in schemes:
        from cnnzoo.quantization.int8 import require_engine

        require_engine()  # no ONNX Runtime: one line now, not after the trainings

    training = fp32_training(data=data, epochs=epochs, batch_size=batch_size, lr=lr, train_size=train_size,
                             limit_val=limit_val, seed=seed)  # fmt: skip
    tuning = training if from_scratch else finetune_training(training, epochs=finetune_epochs, lr=finetune_lr)
    settings = {**training, "finetune_epochs": finetune_epochs, "finetune_lr": finetune_lr,
                "calibration": calibration}  # fmt: skip
    exp = _runs.ExperimentDir.open(out, "low-precision", settings)
    rows: list[Row] = []
    test_images = 0
    with engine.torch_threads(threads):
        dev = engine.resolve_device(device)
        for model in models:
            # 1. the trainings and the int8 file
            fp32_dir = train_fp32(exp, model, training, data_dir=data_dir, device=device, threads=threads, log=log)
            run_dirs = {FP32: fp32_dir}
            for name in schemes:
                scheme = SCHEMES[name]
                if name == INT8:
                    run_dirs[name] = int8_run(exp, model, fp32_dir, calibration, log)
                elif scheme.quantize is not None:
                    run_dirs[name] = train_quantized(exp, model, scheme, fp32_dir, tuning, from_scratch=from_scratch,
                                                     data_dir=data_dir, device=device, threads=threads, log=log)  # fmt: skip

            # 2. each stored model on the same test images
            fp32 = load_run(fp32_dir, "best", "cpu")
            meta, num_classes = fp32.meta, int(fp32.meta["num_classes"])
            params = sum(p.numel() for p in fp32.model.parameters())
            batches, test_images = evaluation_batches(data, data_dir or fp32.config.data_dir, seed, limit_test, meta, dev)
            for name, run_dir in run_dirs.items():
                speed: list[Speed] = []
                if name == FP32:
                    stored, net = fp32_size(run_dir), load_run(run_dir, "best", device).model
                elif name == INT8:
                    stored, net = onnx_int8_size(run_dir / "model.int8.onnx"), load_run(run_dir).model
                    log(f"{model} int8 against fp32 eager ({torch.get_num_threads()} thread(s)):")
                    speed = int8_speed(fp32.model, net, (meta["in_chans"], *meta["input_size"]), speed_batches,
                                       repeats, log)  # fmt: skip
                else:
                    stored, net = qpack_size(run_dir / "weights.qpack"), load_qpack(run_dir / "weights.qpack")
                if name != INT8:  # an int8 model runs in ONNX Runtime on the CPU (it takes batches on any device)
                    net.to(dev)
                row = Row(model, name, run_dir, stored, params, top1(net, batches, dev, num_classes), test_images, speed)
                log(f"{model} {name}: test top-1 {100 * row.top1:.2f}%, {stored.size_bytes} bytes, "
                    f"{row.bits_per_weight:.2f} bits a weight")  # fmt: skip
                rows.append(row)
        described = describe_machine(machine())

    report = LowPrecisionReport(rows, data, test_images, "from scratch" if from_scratch else "fine-tuned from fp32",
                                described)  # fmt: skip
    report.files = write_results(report, exp.path)
    return report


# ------------------------------------------------------------------------------------------
# reporting
# ------------------------------------------------------------------------------------------


def _size(n: int) -> str:
    return f"{n:,}"


def _speed_cell(row: Row) -> str:
    if row.scheme != INT8:
        return "-"
    parts = [f"{s.speedup:.2f}x at batch {s.batch_size}" if s.speedup else f"not measured at batch {s.batch_size}"
             for s in row.speed]  # fmt: skip
    return ", ".join(parts) or "-"


def model_table(report: LowPrecisionReport, model: str) -> str:
    base = report.of(model, FP32)
    header = ["scheme", "paper", "bits/weight (quantized layers)", "bits/param (whole file)", "file", "size (bytes)",
              "vs fp32", "test top-1", "change vs fp32", "int8 vs fp32 eager (CPU)"]  # fmt: skip
    rows = []
    for row in (r for r in report.rows if r.model == model):
        scheme = SCHEMES[row.scheme]
        ratio = base.stored.size_bytes / row.stored.size_bytes if base else None
        change = f"{100 * (row.top1 - base.top1):+.2f}" if base and row is not base else "-"
        rows.append([scheme.label, scheme.paper, f"{row.bits_per_weight:.2f}", f"{row.file_bits_per_param:.2f}",
                     row.stored.file.name, _size(row.stored.size_bytes),
                     f"{ratio:.1f}x smaller" if ratio and row is not base else "-", percent(row.top1), change,
                     _speed_cell(row)])  # fmt: skip
    return markdown_table(header, rows, align="llrrlrrrrr")


def papers_table(report: LowPrecisionReport) -> str:
    """The papers' figures, and ours for the same scheme (each model: fp32 -> scheme, the change)."""
    header = ["scheme", "paper", "their net and data", "theirs: fp32 -> quantized", "change"]
    header += [f"ours: {m}, {report.data}" for m in report.models]
    rows = []
    for paper in PAPER_RESULTS:
        error = paper.metric == "error"
        theirs = f"{paper.value:.2f}% {paper.metric}"
        if paper.fp32 is not None:
            theirs = f"{paper.fp32:.2f}% -> {theirs}"
            change = f"{paper.value - paper.fp32:+.2f} points"
        else:
            change = "-"
        ours = []
        for model in report.models:
            base, row = report.of(model, FP32), report.of(model, paper.scheme)
            if row is None or base is None:
                ours.append("not run")
                continue
            value, ref = (1 - row.top1, 1 - base.top1) if error else (row.top1, base.top1)
            ours.append(f"{percent(ref)} -> {percent(value)} {paper.metric} ({100 * (value - ref):+.2f})")
        rows.append([SCHEMES[paper.scheme].label, paper.source, paper.setting, theirs, change, *ours])
    return markdown_table(header, rows, align="llll" + "r" * (len(header) - 4))


def summary_line(report: LowPrecisionReport) -> str:
    """One line, from the numbers: per model, the smallest file within 1 point of fp32, and int8's speed."""
    parts = []
    for model in report.models:
        base = report.of(model, FP32)
        rows = [r for r in report.rows if r.model == model and r is not base]
        if base is None or not rows:
            continue
        close = [r for r in rows if base.top1 - r.top1 <= 0.01]
        text = f"{model} (fp32 {percent(base.top1)})"
        if close:
            best = min(close, key=lambda r: r.stored.size_bytes)
            text += (f": smallest file within 1 point of fp32 {SCHEMES[best.scheme].label} "
                     f"({percent(best.top1)}, {base.stored.size_bytes / best.stored.size_bytes:.1f}x smaller)")
        else:
            text += ": no scheme within 1 point of fp32"
        worst = min(rows, key=lambda r: r.top1)
        text += f", lowest {SCHEMES[worst.scheme].label} {percent(worst.top1)}"
        int8 = report.of(model, INT8)
        ups = [s for s in (int8.speed if int8 else []) if s.speedup]
        if ups:
            text += ", int8 " + ", ".join(f"{s.speedup:.1f}x at batch {s.batch_size}" for s in ups)
        parts.append(text)
    return "; ".join(parts)


def format_report(report: LowPrecisionReport) -> str:
    sections = [
        f"# Low precision on {report.data}: {report.test_images} test images, bit schemes {report.start}",
        "Each row is the stored file: its test top-1 in float32, its size, and its bits per weight "
        "(the quantized layers' bits, codes with their scales, over their weights; the whole file's bits "
        "over the fp32 net's parameters). Speed only where a real kernel exists: int8 in ONNX Runtime "
        "against fp32 eager PyTorch, interleaved, on this CPU. PyTorch has no bit-packed XNOR/popcount "
        "kernels: the binary and ternary nets run as float convolutions, so no speed is claimed for them.",
    ]
    for model in report.models:
        sections.append(f"## {model}\n\n" + model_table(report, model))
    sections.append("## The papers' figures beside ours\n\nOther nets and data sets (the papers': MNIST, CIFAR-10, "
                    "ImageNet): compare the changes against fp32, not the levels.\n\n" + papers_table(report))
    if report.machine:
        sections.append(report.machine)
    sections.append("summary: " + summary_line(report))
    return "\n\n".join(sections) + "\n"


CSV_HEADER = ["model", "scheme", "file", "size_bytes", "size_ratio_vs_fp32", "quantized_weights",
              "bits_per_weight", "params", "file_bits_per_param", "test_top1", "test_images", "change_vs_fp32",
              "speed_batch_sizes", "int8_speedups", "fp32_ms", "int8_ms"]  # fmt: skip


def csv_rows(report: LowPrecisionReport) -> list[list[Any]]:
    out = []
    for row in report.rows:
        base = report.of(row.model, FP32)

        def ms(value: float | None) -> str:
            return "" if value is None else f"{1000 * value:.3f}"

        out.append([row.model, row.scheme, row.stored.file.name, row.stored.size_bytes,
                    f"{base.stored.size_bytes / row.stored.size_bytes:.3f}", row.stored.weights,
                    f"{row.bits_per_weight:.4f}", row.params, f"{row.file_bits_per_param:.4f}", f"{row.top1:.4f}",
                    row.test_images, f"{row.top1 - base.top1:+.4f}",
                    ";".join(str(s.batch_size) for s in row.speed),
                    ";".join("" if s.speedup is None else f"{s.speedup:.3f}" for s in row.speed),
                    ";".join(ms(s.fp32_seconds) for s in row.speed),
                    ";".join(ms(s.int8_seconds) for s in row.speed)])  # fmt: skip
    return out


def write_results(report: LowPrecisionReport, out: Path) -> list[Path]:
    out = Path(out)
    csv_path, md_path, png_path = out / "results.csv", out / "results.md", out / "low-precision.png"
    _runs.write_csv(csv_path, CSV_HEADER, csv_rows(report))
    _runs.write_text(md_path, format_report(report))
    plot_results(report, png_path)
    return [csv_path, md_path, png_path]


def plot_results(report: LowPrecisionReport, path: Path) -> Path:
    """Test top-1 against bits per weight (left) and against the file's size (right), one line per model."""
    markers = "osD^v<>"
    with _runs.figure(path, 1, 2, figsize=(12, 4.6)) as (fig, axes):
        for index, model in enumerate(report.models):
            rows = sorted((r for r in report.rows if r.model == model), key=lambda r: r.bits_per_weight)
            for ax, x_of in ((axes[0], lambda r: r.bits_per_weight), (axes[1], lambda r: r.stored.size_bytes)):
                xs, ys = [x_of(r) for r in rows], [100 * r.top1 for r in rows]
                # markers only: schemes of the same bits (TWN, TTQ) would make a line zigzag
                ax.plot(xs, ys, marker=markers[index % len(markers)], linestyle="none", alpha=0.8, label=model)
                for r, x, y in zip(rows, xs, ys):
                    ax.annotate(SCHEMES[r.scheme].label, (x, y), textcoords="offset points", xytext=(4, 4),
                                fontsize=7)  # fmt: skip
        axes[0].set_xlabel("bits per weight of the quantized layers, as stored")
        axes[0].set_xscale("log", base=2)
        axes[1].set_xlabel("stored file (bytes)")
        axes[1].set_xscale("log")
        for ax in axes:
            ax.set_ylabel("test top-1 (%)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle(f"{report.data}, {report.test_images} test images; bit schemes {report.start}", fontsize=10)
        axes[0].set_title("accuracy against bits per weight")
        axes[1].set_title("accuracy against model size")
    return path


# ------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = ("Trains each model in fp32, quantizes it to every scheme (int8 after training; the bit schemes "
                "fine-tuned from the fp32 net, or --from-scratch), and measures each stored file: test top-1, "
                "bytes, bits per weight, and int8's speed against fp32 eager (no speed is claimed for the binary "
                "and ternary nets: PyTorch has no bit-packed kernels). Writes results.md, results.csv and "
                "low-precision.png to --out.")  # fmt: skip
    p.add_argument("--models", type=_names, default=list(DEFAULT_MODELS), metavar="M,M",
                   help=f"models to train (default {','.join(DEFAULT_MODELS)})")  # fmt: skip
    p.add_argument("--schemes", type=_names, default=list(DEFAULT_SCHEMES), metavar="S,S",
                   help=f"schemes: {', '.join(SCHEMES)} (default {','.join(DEFAULT_SCHEMES)}; fp32 is always "
                   "trained: it is the baseline); twn is --scheme ternary, bnn binary with binary activations")  # fmt: skip
    p.add_argument("--train-size", type=int, default=10_000,
                   help="training images, a seeded random subset (default 10000; 0 = all)")  # fmt: skip
    p.add_argument("--finetune-epochs", type=int, default=2, help="epochs of each bit scheme's fine-tuning (default 2)")
    p.add_argument("--finetune-lr", type=float, default=0.01, help="its learning rate (default 0.01)")
    p.add_argument("--from-scratch", action="store_true",
                   help="train each bit scheme from scratch with the fp32 settings instead of fine-tuning")  # fmt: skip
    p.add_argument("--calibration", type=int, default=512, metavar="N",
                   help="int8: training images that calibrate the activation ranges (default 512)")  # fmt: skip
    p.add_argument("--limit-test", type=int, default=0,
                   help="test images every file is measured on (default 0 = the whole test set)")  # fmt: skip
    p.add_argument("--speed-batches", type=_runs.int_list, default=[1, 64], metavar="B,B",
                   help="batch sizes of the int8 speed measurement (default 1,64)")  # fmt: skip
    p.add_argument("--repeats", type=int, default=20, help="timed calls per runner and batch size (default 20)")


@_runs.training_experiment(
    "low-precision",
    "fp32, int8, 2-bit, TTQ, TWN, BWN, XNOR and BNN: test top-1, bytes, bits per weight, int8 speed",
    run_low_precision_experiment, TRAINING_FLAGS, add_arguments,
)  # fmt: skip
def run(args: argparse.Namespace, training: dict) -> int:
    report = run_low_precision_experiment(
        models=args.models, schemes=args.schemes, train_size=args.train_size, finetune_epochs=args.finetune_epochs,
        finetune_lr=args.finetune_lr, from_scratch=args.from_scratch, calibration=args.calibration,
        limit_test=args.limit_test or None, speed_batches=args.speed_batches, repeats=args.repeats, out=args.out,
        **training,
    )  # fmt: skip
    print()
    print(format_report(report))
    print("written: " + ", ".join(str(p) for p in report.files))
    return 0
