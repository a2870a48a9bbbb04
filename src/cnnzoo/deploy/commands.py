"""The ``export`` and ``bench`` subcommands of ``cnnzoo``.

This module imports no torch (``--help`` stays quick); the handlers import what they need.
"""

from __future__ import annotations

from cnnzoo.errors import ConfigError


def add_parsers(subparsers) -> None:
    _add_export(subparsers)
    _add_bench(subparsers)


# ------------------------------------------------------------------------------------------
# export
# ------------------------------------------------------------------------------------------


def _add_export(subparsers) -> None:
    from cnnzoo.train.config import add_model_option_flag

    p = subparsers.add_parser(
        "export",
        help="write a model as an ONNX file and check it with ONNX Runtime",
        description="Export a registered model or a trained run (in eval mode) to ONNX with torch.export "
        "(PyTorch's default exporter), then run the file with ONNX Runtime and print the largest "
        "difference from the eager model. The batch axis is dynamic unless --static-batch. An existing "
        "file is never overwritten.",
    )
    p.add_argument("model", metavar="MODEL|RUN", help="a registered model name or a run directory")
    p.add_argument("--out", required=True, metavar="FILE", help="the ONNX file to write (must not exist)")
    p.add_argument("--format", choices=("onnx",), default="onnx", help="file format (only onnx)")
    p.add_argument("--opset", type=int, metavar="N", help="ONNX operator set (default: the exporter's, 18)")
    p.add_argument("--static-batch", action="store_true",
                   help="a fixed batch dimension (--batch-size) instead of a dynamic one")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=1, metavar="N",
                   help="the fixed batch with --static-batch (default 1)")  # fmt: skip
    p.add_argument("--input", metavar="CxHxW", help="input size (default: the model's or the run's)")
    add_model_option_flag(p)
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from cnnzoo.analysis import parse_input_size
    from cnnzoo.deploy.export import ExportError, export_onnx, onnx_batch_axis, onnx_difference
    from cnnzoo.rundir import new_file
    from cnnzoo.registry import create_model, model_info
    from cnnzoo.train.runs import model_or_run

    if args.batch_size < 1:
        raise ExportError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.batch_size != 1 and not args.static_batch:
        raise ExportError("--batch-size fixes the batch of a --static-batch export; without it the batch is dynamic")
    out = new_file(args.out)  # before the model is built
    model, default_size, options = model_or_run(args.model, args.model_options, int8_model=True)
    from cnnzoo.quantization.int8 import refuse_int8

    refuse_int8(model, "cnnzoo export")
    input_size = parse_input_size(args.input) if args.input else default_size
    if isinstance(model, str):
        model_info(model).check_input_size(*input_size[1:])
        model = create_model(model, **{"in_chans": input_size[0], **options})
    path = export_onnx(model, out, input_size, opset=args.opset, dynamic_batch=not args.static_batch,
                       batch_size=args.batch_size)  # fmt: skip
    batches = (args.batch_size,) if args.static_batch else (1, 3)
    try:
        diff, rel = onnx_difference(model, path, input_size, batch_sizes=batches)
    except ExportError as exc:  # a file ONNX Runtime cannot run is not kept
        path.unlink()
        raise ExportError(f"{exc} ({path} removed)") from None
    axis = onnx_batch_axis(path)
    batch_text = f"batch fixed at {axis}" if isinstance(axis, int) else f"dynamic batch axis {axis!r}"
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {batch_text}, input {'x'.join(map(str, input_size))})")
    print(f"ONNX Runtime vs eager at batch {' and '.join(map(str, batches))}: largest difference "
          f"{diff:.2e} ({rel:.2e} of the largest output)")  # fmt: skip
    return 0


# ------------------------------------------------------------------------------------------
# bench
# ------------------------------------------------------------------------------------------


def _add_bench(subparsers) -> None:
    from cnnzoo.train.config import add_model_option_flag

    p = subparsers.add_parser(
        "bench",
        help="images/s, latency and memory on this machine; against torchvision/timm, or across runtimes",
        description="Time a model's inference (or training step) on random images: images/s, latency median "
        "and p90 over repeats (warm-up excluded), peak memory, the machine. --compare times torchvision's or "
        "timm's implementation of the same architecture interleaved with cnnzoo's; --deploy times each "
        "inference path (eager, channels_last, BN folded, torch.compile, ONNX Runtime). Denormals are flushed "
        "to zero for every runner (docs/deployment.md, Benchmarks).",
    )
    p.add_argument("model", metavar="MODEL|RUN", help="a registered model name or a run directory")
    p.add_argument("--batch-size", default="1,8,32", metavar="N[,N...]",
                   help="batch sizes, comma-separated (default 1,8,32)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's, usually the cores)")
    p.add_argument("--train", action="store_true", help="time a training step (forward, backward, SGD) instead")
    p.add_argument("--compare", choices=("torchvision", "timm"),
                   help="also time this library's implementation, interleaved, with the same weights")
    p.add_argument("--deploy", action="store_true",
                   help="time each inference path and its speed-up over eager; ends with `deploy: N.Nx`")
    p.add_argument("--paths", metavar="PATH[,PATH...]",
                   help="--deploy: only these paths besides eager (eager, channels_last, bn_folded, "
                   "bn_folded+channels_last, torch.compile, onnxruntime; default all)")
    p.add_argument("--int8", action="store_true",
                   help="also time the model quantized to int8 (ONNX Runtime; a run is calibrated on 32 of its "
                   "training images, a model name on random images), interleaved with fp32 eager; ends with "
                   "`int8: N.Nx`")  # fmt: skip
    p.add_argument("--input", help="input size CxHxW (default: the model's, or the run's)")
    p.add_argument("--repeats", type=int, default=10, help="timed calls per runner and batch size (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls first (default 2; at least one is made: it counts the memory)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    add_model_option_flag(p)
    p.set_defaults(func=cmd_bench)


def cmd_bench(args) -> int:
    import json

    from cnnzoo.analysis import parse_input_size
    from cnnzoo.deploy.bench import bench, parse_batch_sizes, parse_paths
    from cnnzoo.train.runs import model_or_run

    batch_sizes = parse_batch_sizes(args.batch_size)  # before any model is built
    paths = parse_paths(args.paths)
    if args.int8 and (args.train or args.compare or args.deploy):
        raise ConfigError("--int8 measures int8 inference against fp32 eager; it cannot be combined with "
                          "--train, --compare or --deploy")  # fmt: skip
    if args.int8:
        from cnnzoo.quantization.int8 import require_engine

        require_engine()  # before any model is built
    model, default_size, options = model_or_run(args.model, args.model_options, int8_model=True)
    input_size = parse_input_size(args.input) if args.input else default_size
    calibration = _run_calibration(args.model, input_size) if args.int8 else None
    report = bench(model, input_size, batch_sizes, options=options, train=args.train, compare=args.compare,
                   deploy=args.deploy, repeats=args.repeats, warmup=args.warmup, threads=args.threads,
                   paths=paths, int8=args.int8, calibration=calibration)
    print(json.dumps(report.to_dict(), indent=1) if args.json else report.format())
    return 0


def _run_calibration(text: str, input_size):
    """--int8 on an fp32 run: 32 of its training images at its input size; None for a model name, an
    int8 run or another --input (then random images calibrate: the speed does not depend on the ranges)."""
    from pathlib import Path

    from cnnzoo.quantization.int8 import calibration_images
    from cnnzoo.rundir import read_record
    from cnnzoo.train.config import read_config

    meta = read_record(Path(text)) if Path(text).is_dir() else None
    if meta is None or isinstance(meta.get("int8"), dict):
        return None
    if (int(meta["in_chans"]), *map(int, meta["input_size"])) != tuple(input_size):
        return None  # --input asks for another size than the run's images have
    return calibration_images(read_config(Path(text) / "config.yaml"), meta, 32)
