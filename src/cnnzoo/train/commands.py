"""The ``train``, ``eval``, ``predict`` and ``plot`` subcommands of ``cnnzoo``.

Every option of ``train`` defaults to "not given" (``None``) so that only what the user
typed overrides the recipe, and so that ``--resume`` can compare exactly those values
with the saved configuration.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cnnzoo.errors import ConfigError


def _flag(parser: argparse.ArgumentParser, *names: str, help: str, dest: str | None = None) -> None:
    """A boolean switch with a ``--no-`` form whose default is "not given"."""
    kwargs = {"dest": dest} if dest else {}
    parser.add_argument(*names, action=argparse.BooleanOptionalAction, default=None, help=help, **kwargs)


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
    p.add_argument("model", help="registered model name (see `cnnzoo list`)")
    add_training_flags(p)
    p.set_defaults(func=cmd_train)


def add_training_flags(p: argparse.ArgumentParser) -> None:
    """Every flag of ``cnnzoo train`` but the model name; ``train_overrides`` reads them back.

    Commands that train (``finetune``, the experiments) add the same flags with this.
    """
    p.add_argument("--data", help="data set: fashion-mnist (default), mnist, cifar10, cifar100, flowers17, "
                   "flowers102, imagefolder:PATH, imagenet:PATH, synthetic")  # fmt: skip
    p.add_argument("--data-dir", help="where the data set's files are (default: the usual places)")
    p.add_argument("-c", "--config", dest="recipe", metavar="RECIPE",
                   help="recipe: a YAML file or a shipped recipe name (alexnet, vgg, googlenet, inception_v3, "
                   "resnet_imagenet, resnet_cifar, wrn_cifar, densenet_cifar, mobilenet, fast)")  # fmt: skip
    p.add_argument("--epochs", type=int)
    p.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    p.add_argument("--batch-size", "-b", type=int, help="global batch size")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--optimizer", help="sgd, rmsprop or adamw")
    p.add_argument("--momentum", type=float)
    _flag(p, "--nesterov", help="Nesterov momentum (SGD)")
    p.add_argument("--weight-decay", "--wd", type=float)
    p.add_argument("--schedule", help="constant, step, multistep, plateau, cosine or onecycle")
    p.add_argument("--warmup-epochs", type=float)
    p.add_argument("--label-smoothing", type=float)
    p.add_argument("--grad-clip", type=float, help="clip the gradient norm to this value")
    p.add_argument("--input-size", help="network input HxW (or N for NxN)")
    p.add_argument("--val-fraction", type=float, help="fraction of the training set held out for validation")
    p.add_argument("--limit-train", type=int, help="train on a random subset of N images")
    p.add_argument("--limit-val", type=int, help="validate (and test) on at most N images")
    p.add_argument("--seed", type=int)
    _flag(p, "--deterministic", help="deterministic kernels: a resumed run ends bitwise equal to an uninterrupted one")
    p.add_argument("--out", "-o", help="run directory (default runs/MODEL-DATA-TIMESTAMP)")
    p.add_argument("--resume", action="store_const", const=True, default=None,
                   help="continue the run in --out (or the latest matching run) from its last checkpoint")  # fmt: skip
    p.add_argument("--stop-after-epochs", type=int, help="stop (resumably) after N epochs in this call")
    p.add_argument("--amp", help="mixed precision: bf16 (or none)")
    _flag(p, "--channels-last", help="channels-last memory format")
    _flag(p, "--compile", help="torch.compile the model")
    _flag(p, "--tensorboard", help="also log to RUN_DIR/tensorboard")
    p.add_argument("--device", help="cpu, cuda or auto (default)")
    p.add_argument("--threads", type=int, help="CPU threads for torch (1 is often fastest on a busy machine)")
    _flag(p, "--sync-bn", help="SyncBatchNorm across processes (distributed, CUDA)")
    _flag(p, "--skip-bad-images", help="skip unreadable images instead of stopping")
    _flag(p, "--tta", dest="tta_flip", help="evaluate with horizontal-flip test-time augmentation")
    _flag(p, "--progress", help="show the progress bar (default on)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any configuration key, e.g. --set milestones=[30,60] (repeatable)")  # fmt: skip


#: argparse destinations that map one-to-one onto configuration keys
_TRAIN_KEYS = (
    "data", "data_dir", "epochs", "max_steps", "batch_size", "lr", "optimizer", "momentum", "nesterov",
    "weight_decay", "schedule", "warmup_epochs", "label_smoothing", "grad_clip", "val_fraction", "limit_train",
    "limit_val", "seed", "deterministic", "out", "resume", "stop_after_epochs", "amp", "channels_last", "compile",
    "tensorboard", "device", "threads", "sync_bn", "skip_bad_images", "tta_flip", "progress",
)  # fmt: skip


def train_overrides(args: argparse.Namespace) -> dict:
    from cnnzoo.train.config import parse_assignment, parse_input_size

    overrides = {}
    for text in args.set:
        key, value = parse_assignment(text)
        overrides[key.replace("-", "_")] = value
    for key in _TRAIN_KEYS:
        value = getattr(args, key, None)
        if value is not None:
            overrides[key] = value
    if args.input_size is not None:
        overrides["input_size"] = parse_input_size(args.input_size)
    return overrides


def cmd_train(args: argparse.Namespace) -> int:
    from cnnzoo.train.engine import fit

    overrides = train_overrides(args)
    result = fit(args.model, recipe=args.recipe, **overrides)
    return result.exit_code


# ------------------------------------------------------------------------------------------
# eval
# ------------------------------------------------------------------------------------------


def _add_eval(subparsers) -> None:
    p = subparsers.add_parser("eval", help="evaluate a trained run: top-1, top-5, per class, confusion")
    p.add_argument("run_dir", help="run directory written by `cnnzoo train`")
    p.add_argument("--data", help="data set (default: the run's)")
    p.add_argument("--data-dir", help="where the data set's files are")
    p.add_argument("--split", choices=("test", "val"), default="test")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best")
    p.add_argument("--tta", action="store_true", help="horizontal-flip test-time augmentation")
    p.add_argument("--limit", type=int, help="evaluate at most N images")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="auto")
    p.add_argument("--confusion", metavar="PNG", help="write the confusion matrix here "
                   "(default RUN_DIR/confusion-SPLIT.png)")  # fmt: skip
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
    p.add_argument("run_dir", help="run directory written by `cnnzoo train`")
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
    from cnnzoo.train.plots import overlay_runs

    metrics = args.metric or ["val_top1", "train_loss"]
    path = overlay_runs([Path(d) for d in args.run_dirs], Path(args.out), metrics=metrics, labels=args.label)
    print(f"wrote {path}")
    return 0
