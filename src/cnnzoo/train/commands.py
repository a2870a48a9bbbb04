"""The ``train``, ``eval``, ``predict`` and ``plot`` subcommands of ``cnnzoo``.

The training flags are generated from :class:`~cnnzoo.train.config.TrainConfig`: one source
for the YAML keys and the command line.  This module imports no torch (``--help`` stays quick).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cnnzoo.errors import ConfigError
from cnnzoo.train.config import add_config_flags, add_model_option_flag, overrides_from_args


def add_parsers(subparsers) -> None:
    _add_train(subparsers)
    _add_eval(subparsers)
    _add_predict(subparsers)
    _add_plot(subparsers)


# ------------------------------------------------------------------------------------------
# train
# ------------------------------------------------------------------------------------------


def _add_train(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model (works under torchrun for several processes)",
        description="Train a registered model. Flags override the recipe (-c); the resolved "
        "configuration is saved in the run directory. Under `torchrun --nproc_per_node N -m cnnzoo "
        "train ...` the run is data-parallel (DDP) and --batch-size is the global batch.",
    )
    p.add_argument("model", help="registered model name (see `cnnzoo list`), or a run directory, a search "
                   "directory (`cnnzoo search`: its best architecture) or a pretrained tag whose architecture is "
                   "trained again from new weights")  # fmt: skip
    add_model_option_flag(p)
    _add_quantize_flags(p)
    add_training_flags(p)
    p.set_defaults(func=cmd_train)


def _add_quantize_flags(p: argparse.ArgumentParser) -> None:
    from cnnzoo.quantization.commands import add_low_precision_flags

    group = p.add_argument_group("low precision (docs/low-precision.md)")
    group.add_argument("--quantize", metavar="SCHEME",
                       help="train a quantized net from scratch: binary, xnor, bwn, ternary, ttq or 2bit "
                       "(full-precision shadow weights; the packed weights go to RUN/weights.qpack)")  # fmt: skip
    add_low_precision_flags(group)


def add_training_flags(p: argparse.ArgumentParser, keys=None) -> None:
    """The flags of every configuration key (generated from TrainConfig), ``-c`` and ``--set``.

    Commands that train (``finetune``, the experiments) add the same flags with this;
    :func:`train_overrides` reads them back.
    """
    add_config_flags(p, keys)


def train_overrides(args: argparse.Namespace) -> dict:
    """The configuration keys given on the command line."""
    return overrides_from_args(args)


def cmd_train(args: argparse.Namespace) -> int:
    from cnnzoo.modelspec import ModelSpec
    from cnnzoo.train.engine import fit
    from cnnzoo.train.runs import names_a_run, run_architecture

    overrides = train_overrides(args)
    model, record = args.model, {}
    if names_a_run(args.model):  # the architecture a run (or a search) recorded, trained from new weights
        if overrides.get("model_kwargs"):
            raise ConfigError(f"-o applies to a model name; {args.model} is rebuilt as it was recorded")
        model = run_architecture(args.model)
        record["architecture_from"] = str(args.model)
    scheme = getattr(args, "quantize", None)
    if not scheme:
        if getattr(args, "binary_activations", False) or not getattr(args, "keep_first_last", True):
            raise ConfigError("--binary-activations and --no-keep-first-last go with --quantize SCHEME")
        return fit(model, recipe=args.recipe, record=record, **overrides).exit_code

    from cnnzoo.quantization.transform import finish_quantized_run, quantize_options, training_callbacks

    options = quantize_options(args, scheme)  # an unknown scheme fails before any work
    if not isinstance(model, ModelSpec):
        model = ModelSpec(args.model, overrides.pop("model_kwargs", None) or {})
    spec = model.then("quantize", **options)
    result = fit(spec, recipe=args.recipe, record={**record, "quantize": {**options}},
                 callbacks=training_callbacks(scheme), **overrides)  # fmt: skip
    finish_quantized_run(result)
    return result.exit_code


# ------------------------------------------------------------------------------------------
# eval
# ------------------------------------------------------------------------------------------


def _add_eval(subparsers) -> None:
    p = subparsers.add_parser("eval", help="evaluate a trained run: top-1, top-5, per class, confusion")
    p.add_argument("run_dir", help="run directory written by `cnnzoo train`, or a shipped weight's tag "
                   "(e.g. lenet5.fashion_mnist; `cnnzoo list --pretrained`)")  # fmt: skip
    p.add_argument("--data", help="data set (default: the run's)")
    p.add_argument("--data-dir", help="where the data set's files are")
    p.add_argument("--split", choices=("test", "val"), default="test")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help="horizontal-flip test-time augmentation (default: as the run was trained and tested)")
    p.add_argument("--limit", type=int, help="evaluate at most N images")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="auto")
    p.add_argument("--confusion", metavar="PNG", help="write the confusion matrix here "
                   "(default RUN_DIR/confusion-SPLIT.png; none for a shipped weight's tag)")  # fmt: skip
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from cnnzoo.train.runs import evaluate_run

    report = evaluate_run(
        args.run_dir, data=args.data, data_dir=args.data_dir, split=args.split, checkpoint=args.checkpoint,
        tta_flip=args.tta, limit=args.limit, batch_size=args.batch_size, device=args.device,
        confusion_png=args.confusion,
    )  # fmt: skip
    print(report.format())
    return 0


# ------------------------------------------------------------------------------------------
# predict
# ------------------------------------------------------------------------------------------


def _add_predict(subparsers) -> None:
    p = subparsers.add_parser("predict", help="classify images with a trained run; optional class activation map")
    p.add_argument("run_dir", help="run directory written by `cnnzoo train`, or a shipped weight's tag "
                   "(e.g. lenet5.fashion_mnist; `cnnzoo list --pretrained`)")  # fmt: skip
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--checkpoint", choices=("best", "last"), default="best")
    p.add_argument("--cam", metavar="OUT.png", help="write the class activation map of the top class "
                   "(CAM for global-average-pooled nets, Grad-CAM otherwise); with several images "
                   "OUT-<n>.png")  # fmt: skip
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_predict)


def cmd_predict(args: argparse.Namespace) -> int:
    from cnnzoo.train.runs import predict_run

    if args.topk < 1:
        raise ConfigError(f"--topk must be >= 1, got {args.topk}")
    for line in predict_run(args.run_dir, args.images, topk=args.topk, checkpoint=args.checkpoint,
                            cam_path=args.cam, device=args.device):  # fmt: skip
        print(line)
    return 0


# ------------------------------------------------------------------------------------------
# plot
# ------------------------------------------------------------------------------------------


def _add_plot(subparsers) -> None:
    p = subparsers.add_parser("plot", help="overlay the curves of several runs on one figure")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", "-o", default="runs.png", help="output PNG (default runs.png)")
    p.add_argument("--metric", "-m", action="append",
                   help="metrics.csv column(s) to plot (default val_top1 and train_loss; repeatable)")  # fmt: skip
    p.add_argument("--label", action="append", help="legend label per run (repeatable, in order)")
    p.set_defaults(func=cmd_plot)


def cmd_plot(args: argparse.Namespace) -> int:
    from cnnzoo.rundir import writable_file
    from cnnzoo.train.plots import overlay_runs

    writable_file(args.out, "plot")
    metrics = args.metric or ["val_top1", "train_loss"]
    path = overlay_runs([Path(d) for d in args.run_dirs], Path(args.out), metrics=metrics, labels=args.label)
    print(f"wrote {path}")
    return 0
