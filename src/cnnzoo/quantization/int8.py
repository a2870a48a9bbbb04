"""int8 that runs faster on the CPU: ONNX Runtime's static QDQ quantization of the exported net.

Which path, by measurement (docs/low-precision.md, ``benchmarks/int8_speed.py``): torchao's int8
configurations quantize ``nn.Linear`` only, so a CNN gains nothing from them; of the paths that
quantize convolutions, ONNX Runtime's static QDQ quantization (already a dependency of
``cnnzoo export``), torchao's PT2E flow with the X86 Inductor quantizer, and OpenVINO running the
same QDQ file were timed on ResNet-18.  ONNX Runtime is chosen: well ahead of fp32 eager, no new
dependency, a portable file that loads in a second (PT2E needs ``torch.compile`` each time the
model is loaded; OpenVINO, faster still on the same file, is a 60 MB runtime more).

The steps (:func:`quantize_onnx`): export the net in eval mode (:func:`cnnzoo.deploy.export.export_onnx`,
dynamic batch), ONNX Runtime's pre-processing (shape inference and graph optimisation, which folds
batch norm into the convolutions), then ``quantize_static`` in the QDQ format with

* activations uint8, one asymmetric range per tensor, measured (min/max) on calibration images:
  training images normalised as for evaluation;
* weights int8 per output channel, symmetric; on a CPU without VNNI (no ``avx512_vnni``,
  ``avx_vnni`` or ``amx_int8``) with 7-bit weights (``reduce_range``), because the AVX2
  ``u8 x s8`` instruction adds pairs of products into int16 and saturates with 8-bit weights.

ONNX Runtime fuses each DequantizeLinear -> Conv -> QuantizeLinear into an integer convolution.

An int8 run directory (``cnnzoo quantize RUN --scheme int8 [--qat]``) holds ``model.int8.onnx``,
``run.json`` (the source's record plus ``int8``: the method, the fp32 model record, the
calibration) and ``config.yaml``; ``load_run`` returns an :class:`Int8Model`, an ``nn.Module``
whose forward runs the file in ONNX Runtime, so ``eval``, ``predict`` and ``bench`` work unchanged.
``--qat`` trains first with fake quantization (:mod:`cnnzoo.quantization.int8_qat`).
"""

from __future__ import annotations

import argparse
import functools
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnzoo.errors import CnnzooError, ConfigError

#: the file an int8 run directory holds
INT8_FILE = "model.int8.onnx"
#: run.json's kind for an int8 run
KIND = "quantize-int8"
#: the runtime that executes the int8 file
RUNTIME = "onnxruntime"
#: the CPU instructions that multiply uint8 by int8 into int32 without saturating
VNNI_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni")


class Int8EngineError(CnnzooError):
    """No int8 engine on this machine or in this build (ONNX Runtime, its quantizer, its CPU provider)."""


# ------------------------------------------------------------------------------------------
# the engine
# ------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def int8_instructions() -> str | None:
    """The CPU's int8 dot-product instructions (``amx_int8``, ``avx512_vnni``, ``avx_vnni``), or None."""
    try:
        flags = set(open("/proc/cpuinfo").read().split())
    except OSError:
        return None
    return next((name for name in VNNI_FLAGS if name in flags), None)


def installed_engines() -> list[str]:
    """Every int8 engine this Python can see, for the error message of a missing one."""
    from importlib import metadata

    engines = ", ".join(e for e in torch.backends.quantized.supported_engines if e != "none")
    found = [f"torch quantized engines {engines or 'none'}"]
    for package in ("onnxruntime", "openvino", "torchao"):  # their versions, without importing them
        try:
            found.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            continue
    return found


def _onnxruntime_quantization():
    """ONNX Runtime's quantizer (a module attribute, so a test can take it away)."""
    import onnxruntime
    from onnxruntime import quantization

    return onnxruntime, quantization


def require_engine() -> Any:
    """ONNX Runtime's quantization module, or a one-line :class:`Int8EngineError` naming what exists."""
    try:
        onnxruntime, quantization = _onnxruntime_quantization()
    except ImportError as exc:
        raise Int8EngineError(f"int8 needs ONNX Runtime and its quantizer ({exc}; pip install 'cnnzoo[deploy]'); "
                              f"installed: {'; '.join(installed_engines())}") from None  # fmt: skip
    providers = onnxruntime.get_available_providers()
    if "CPUExecutionProvider" not in providers:
        raise Int8EngineError(f"int8 runs on ONNX Runtime's CPU provider, which this build lacks (it has "
                              f"{', '.join(providers) or 'none'}); installed: {'; '.join(installed_engines())}")  # fmt: skip
    return quantization


# ------------------------------------------------------------------------------------------
# quantizing
# ------------------------------------------------------------------------------------------


def check_calibration(images: torch.Tensor, in_chans: int, input_size: tuple[int, int]) -> None:
    """Calibration images must be ``(N, in_chans, H, W)`` at the model's input size (one-line error)."""
    wanted = (int(in_chans), *map(int, input_size))
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or len(images) == 0:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ConfigError(f"calibration images must be a batch (N, C, H, W) with N >= 1, got {shape}")
    got = tuple(images.shape[1:])
    if got[0] != wanted[0]:
        raise ConfigError(f"calibration images have {got[0]} channels; the model takes {wanted[0]}")
    if got != wanted:
        raise ConfigError(f"calibration images are {'x'.join(map(str, got))}; the model was trained at "
                          f"{'x'.join(map(str, wanted))}")  # fmt: skip


def quantize_onnx(model: nn.Module, images: torch.Tensor, path: str | os.PathLike, *,
                  batch_size: int = 32) -> dict[str, Any]:  # fmt: skip
    """Write ``model`` (fp32, eval mode) as an int8 QDQ ONNX file at ``path``, calibrated on ``images``.

    ``images`` is a normalised ``(N, C, H, W)`` batch at the model's input size.  Returns what
    was done (the record ``run.json`` keeps).  ``path`` must not exist.
    """
    from cnnzoo.deploy.export import export_onnx
    from cnnzoo.rundir import atomic_write_bytes, new_file

    quantization = require_engine()
    check_calibration(images, int(getattr(model, "in_chans", images.shape[1])), tuple(images.shape[2:]))
    path = new_file(path, "int8 ONNX file")
    reduce_range = int8_instructions() is None
    with tempfile.TemporaryDirectory(prefix="cnnzoo-int8-") as folder:
        fp32 = Path(folder) / "fp32.onnx"
        prepared = Path(folder) / "prepared.onnx"
        int8 = Path(folder) / "int8.onnx"
        export_onnx(model.eval(), fp32, tuple(images.shape[1:]))
        from onnxruntime.quantization.shape_inference import quant_pre_process

        quant_pre_process(str(fp32), str(prepared))
        quantization.quantize_static(
            str(prepared), str(int8), _Batches(images, batch_size), quant_format=quantization.QuantFormat.QDQ,
            per_channel=True, reduce_range=reduce_range, activation_type=quantization.QuantType.QUInt8,
            weight_type=quantization.QuantType.QInt8, calibrate_method=quantization.CalibrationMethod.MinMax,
        )  # fmt: skip
        atomic_write_bytes(path, int8.read_bytes())
    return {"file": path.name, "runtime": RUNTIME, "format": "QDQ", "activations": "uint8, per tensor, min/max",
            "weights": "int8, per output channel, symmetric" + (" (7-bit: no VNNI)" if reduce_range else ""),
            "calibration_images": int(len(images)), "int8_instructions": int8_instructions()}  # fmt: skip


class _Batches:
    """ONNX Runtime's ``CalibrationDataReader``: the calibration images, ``batch_size`` at a time."""

    def __init__(self, images: torch.Tensor, batch_size: int) -> None:
        self.batches = iter(images.split(batch_size))

    def get_next(self):
        batch = next(self.batches, None)
        return None if batch is None else {"input": batch.float().contiguous().numpy()}


# ------------------------------------------------------------------------------------------
# the int8 model
# ------------------------------------------------------------------------------------------


class Int8Model(nn.Module):
    """An ``nn.Module`` whose forward runs an int8 ONNX file in ONNX Runtime on the CPU.

    It has no parameters: what ``eval``/``predict`` need is the forward.  Outputs are float32 on
    the input's device.  ``threads`` defaults to torch's thread count when it is made.
    """

    def __init__(self, path: str | os.PathLike, *, num_classes: int, in_chans: int,
                 record: dict[str, Any] | None = None, threads: int | None = None) -> None:  # fmt: skip
        super().__init__()
        from cnnzoo.deploy.export import onnxruntime_session

        require_engine()
        self.path = Path(path)
        self.num_classes, self.in_chans = int(num_classes), int(in_chans)
        #: the run's ``int8`` record (method, the fp32 model record, calibration)
        self.int8 = dict(record or {})
        self.session = onnxruntime_session(self.path, threads or torch.get_num_threads(), denormals_as_zero=True,
                                           spinning=False)  # fmt: skip
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != self.in_chans:
            raise ConfigError(f"the int8 model takes (N, {self.in_chans}, H, W) images, got {tuple(images.shape)}")
        feed = {self.input_name: images.detach().to("cpu", torch.float32).contiguous().numpy()}
        return torch.from_numpy(self.session.run(None, feed)[0]).to(images.device)

    def fp32_architecture(self) -> nn.Module:
        """The fp32 net this file was made from, freshly initialised (for analysis and speed baselines)."""
        from cnnzoo.modelspec import ModelSpec

        return ModelSpec.from_dict(self.int8["fp32_spec"]).build().eval()

    def extra_repr(self) -> str:
        return f"{self.path}, {RUNTIME}"


def is_int8_record(meta: dict[str, Any] | None) -> bool:
    return bool(meta and isinstance(meta.get("int8"), dict))


def load_int8_model(run_dir: str | os.PathLike, meta: dict[str, Any]) -> Int8Model:
    """The :class:`Int8Model` of an int8 run directory (``load_run`` calls this)."""
    run_dir = Path(run_dir)
    path = run_dir / meta["int8"].get("file", INT8_FILE)
    if not path.is_file():
        raise CnnzooError(f"{run_dir} is an int8 run without its {path.name}: the quantization did not finish "
                          f"(for --qat, continue it with --resume)")  # fmt: skip
    return Int8Model(path, num_classes=meta["num_classes"], in_chans=meta["in_chans"], record=meta["int8"])


def refuse_int8(model: nn.Module, what: str) -> None:
    """A one-line ConfigError when ``what`` is given an int8 run's model (an ONNX Runtime graph)."""
    if isinstance(model, Int8Model):
        raise ConfigError(f"{what} needs a full-precision torch model; {model.path.parent} is an int8 run "
                          f"(an ONNX Runtime graph, {model.path.name}); give the run it was quantized from")  # fmt: skip


# ------------------------------------------------------------------------------------------
# calibration images
# ------------------------------------------------------------------------------------------


def calibration_images(config, meta: dict[str, Any], count: int, *, data: str | None = None,
                       data_dir: str | None = None) -> torch.Tensor:  # fmt: skip
    """``count`` training images of the run's data set (or ``data``), normalised as for evaluation.

    A seeded random choice (the run's seed), at the run's input size; a data set whose images
    have another number of channels than the model takes is a one-line error.
    """
    from cnnzoo.train import engine

    if count < 1:
        raise ConfigError(f"--calibration must be >= 1 image, got {count}")
    name = data or config.data
    bundle = engine.load_config_data(config, data=name, data_dir=data_dir or (None if data else config.data_dir),
                                     limit_train=None, limit_val=None)  # fmt: skip
    if int(bundle.in_chans) != int(meta["in_chans"]):
        raise ConfigError(f"calibration data {name} has {bundle.in_chans}-channel images; the run's model takes "
                          f"{meta['in_chans']}")  # fmt: skip
    train = bundle.train
    chosen = torch.randperm(len(train), generator=torch.Generator().manual_seed(int(config.seed)))[:count]
    loader = engine.make_loader(train.subset(chosen.sort().values), batch_size=256, train=False, device="cpu",
                                input_size=tuple(meta["input_size"]), augment=None, mean=meta["mean"],
                                std=meta["std"], seed=config.seed)  # fmt: skip
    return torch.cat([images for images, _ in loader])


def agreement(fp32: nn.Module, int8: nn.Module, images: torch.Tensor) -> tuple[float, float]:
    """The fraction of ``images`` on which both nets' top class agrees, and the largest logit difference."""
    with torch.inference_mode():
        want = torch.cat([fp32.eval()(b) for b in images.split(256)])
        got = torch.cat([int8(b) for b in images.split(256)])
    same = float((want.argmax(1) == got.argmax(1)).float().mean())
    return same, float((want - got).abs().max())


# ------------------------------------------------------------------------------------------
# the command
# ------------------------------------------------------------------------------------------


def int8_command(args: argparse.Namespace) -> int:
    """``cnnzoo quantize RUN --scheme int8 [--calibration N] [--qat] [training flags]``."""
    from cnnzoo.modelspec import spec_of
    from cnnzoo.rundir import RunDir, default_path
    from cnnzoo.train.commands import train_overrides
    from cnnzoo.train.runs import load_run

    require_engine()  # before any work
    overrides = train_overrides(args)
    if overrides.get("model_kwargs"):
        raise ConfigError("-o applies to a model name; the run's net is rebuilt as it was trained")
    if args.calibration < 1:
        raise ConfigError(f"--calibration must be >= 1 image, got {args.calibration}")
    source = load_run(args.source, device="cpu")
    refuse_int8(source.model, "cnnzoo quantize --scheme int8")
    spec = spec_of(source.model)
    if spec is None:
        raise ConfigError(f"{args.source} records no model spec to rebuild its net from")
    data = overrides.pop("data", None)
    images = calibration_images(source.config, source.meta, args.calibration, data=data,
                                data_dir=overrides.get("data_dir"))  # fmt: skip
    record = {"method": "qat" if args.qat else "ptq", "source": str(Path(args.source)), "fp32_spec": spec.to_dict(),
              "calibration": int(args.calibration), "calibration_data": data or source.config.data}  # fmt: skip
    if args.qat:
        return _quantization_aware(args, source, spec, images, data, overrides, record)
    if overrides.get("resume"):
        raise ConfigError("--resume continues a --qat training; post-training quantization has nothing to resume")
    unused = sorted(set(overrides) - {"out", "threads", "data_dir"})
    if unused:
        raise ConfigError(f"training flags ({', '.join('--' + k.replace('_', '-') for k in unused)}) go with --qat; "
                          "post-training quantization only calibrates")  # fmt: skip
    out = overrides.get("out") or str(default_path(source.meta["model"], "int8", source.config.data))
    run = RunDir.open(out, KIND)  # checked before the work
    same, diff = write_int8_run(run, source, images, record, threads=overrides.get("threads"))
    _report(run.path, source, same, diff, len(images))
    return 0


def write_int8_run(run, source, images: torch.Tensor, record: dict[str, Any], *,
                   threads: int | None = None) -> tuple[float, float]:  # fmt: skip
    """Post-training quantization of the loaded run ``source`` into the opened run directory ``run``.

    Calibrated on ``images``; ``run.json`` gets the source's record and ``int8`` (``record``
    and what :func:`quantize_onnx` made), ``config.yaml`` is the source's, and
    ``model.int8.onnx`` is written last, so a run that has its file is complete.  Returns the
    top-1 agreement with fp32 on ``images`` and the largest logit difference.
    """
    from cnnzoo.train.engine import torch_threads

    with torch_threads(threads), tempfile.TemporaryDirectory(prefix="cnnzoo-int8-") as folder:
        made = quantize_onnx(source.model, images, Path(folder) / INT8_FILE)
        int8 = Int8Model(Path(folder) / INT8_FILE, num_classes=source.meta["num_classes"],
                         in_chans=source.meta["in_chans"])  # fmt: skip
        same, diff = agreement(source.model, int8, images)
        run.start(_int8_meta(source.meta, {**record, **made}))
        try:
            run.write_bytes("config.yaml", (Path(source.run_dir) / "config.yaml").read_bytes())
            run.write_bytes(INT8_FILE, (Path(folder) / INT8_FILE).read_bytes())
        except BaseException:
            run.abandon()
            raise
    return same, diff


def _int8_meta(source_meta: dict[str, Any], int8: dict[str, Any]) -> dict[str, Any]:
    """``run.json`` of an int8 run: the source's record (classes, sizes, normalisation) and ``int8``."""
    meta = {k: v for k, v in source_meta.items() if k not in ("kind", "format", "transfer", "quantize")}
    meta.update(int8=int8, amp="none", channels_last=False)  # ONNX Runtime runs float32 in, float32 out
    return meta


def _report(path: Path, source, same: float, diff: float, count: int) -> None:
    file = path / INT8_FILE
    fp32_bytes = sum(t.numel() * t.element_size() for t in source.model.state_dict().values())
    print(f"wrote {file} ({file.stat().st_size / 1e6:.2f} MB; fp32 weights {fp32_bytes / 1e6:.2f} MB)")
    print(f"int8 vs fp32 on the {count} calibration images: top-1 agrees on {100 * same:.1f}%, "
          f"largest logit difference {diff:.3g}")  # fmt: skip
    print(f"evaluate it: cnnzoo eval {path}; time it: cnnzoo bench {path} --int8")


def _quantization_aware(args, source, spec, images, data, overrides, record) -> int:
    """``--qat``: fold BN, fake-quantize, fine-tune with the engine of ``cnnzoo train``, then convert."""
    import copy

    from cnnzoo.rundir import default_path
    from cnnzoo.train import checkpoint as ckpt
    from cnnzoo.train.engine import fit
    from cnnzoo.quantization.int8_qat import int8_qat, observe_ranges, strip_fake_quant

    config, meta = source.config, source.meta
    model = int8_qat(copy.deepcopy(source.model))
    model.model_spec = spec.then("int8_qat")
    observe_ranges(model, images.split(64))
    # fine-tuning, not training: a small rate and few epochs unless the flags say otherwise
    overrides.setdefault("lr", 1e-3)
    overrides.setdefault("epochs", 2)
    overrides.setdefault("input_size", list(meta["input_size"]))
    if data is None and "data_dir" not in overrides and config.data_dir:
        overrides["data_dir"] = config.data_dir
    if not overrides.get("out") and not overrides.get("resume"):
        overrides["out"] = str(default_path(meta["model"], "int8-qat", data or config.data))
    result = fit(model, data or config.data, kind=KIND, record={"int8": record}, **overrides)
    if result.status == "interrupted" or result.run_dir is None:
        return result.exit_code
    run_dir = Path(result.run_dir)
    tag = "best" if ckpt.paths(run_dir, "best")[0].exists() else "last"
    tensors, _ = ckpt.load_checkpoint(run_dir, tag)
    ckpt.load_model_weights(model, tensors, f"checkpoint {ckpt.paths(run_dir, tag)[0]}")
    plain = strip_fake_quant(model).eval()
    from cnnzoo.rundir import RunDir, read_record

    with tempfile.TemporaryDirectory(prefix="cnnzoo-int8-") as folder:
        made = quantize_onnx(plain, images, Path(folder) / INT8_FILE)
        int8 = Int8Model(Path(folder) / INT8_FILE, num_classes=meta["num_classes"], in_chans=meta["in_chans"])
        same, diff = agreement(plain, int8, images)
        run = RunDir(run_dir, KIND)
        run.write_bytes(INT8_FILE, (Path(folder) / INT8_FILE).read_bytes())
    full = read_record(run_dir) or {}
    full["int8"] = {**record, **made, "qat_checkpoint": tag}
    full.update(amp="none", channels_last=False)
    run.write_json("run.json", full)
    _report(run_dir, source, same, diff, len(images))
    return result.exit_code
