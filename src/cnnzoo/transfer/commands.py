"""``cnnzoo finetune --from SOURCE --mode MODE --data ... [training flags]`` and :func:`finetune`.

The steps: read ``SOURCE`` (:mod:`cnnzoo.transfer.sources`), build the architecture it names
(or ``--model``) and load its weights strictly; adapt the first convolution when the data has
another number of channels; re-initialise the head when the data has other classes; freeze
what ``--mode`` says (:func:`cnnzoo.transfer.prepare`); then train with the engine of
``cnnzoo train``, whose flags all work here.  The run directory's ``run.json`` gets a ``transfer`` record
(the source, the mode, what trains, the registered model name, so that the run can be the
``SOURCE`` of another fine-tuning) and ``summary.txt``, the per-layer table with its trainable
column; the log shows the trainable parameter count.
"""

from __future__ import annotations

import argparse
from typing import Any, Callable

from cnnzoo.errors import ConfigError
from cnnzoo.train.commands import add_training_flags, train_overrides
from cnnzoo.train.config import add_model_option_flag


def finetune(
    source: str,
    data: str | None = None,
    mode: str = "all",
    *,
    model: str | None = None,
    last_k: int = 1,
    bn_adapt: bool = False,
    reset_head: bool | None = None,
    classes: str | list | None = None,
    per_class: int | None = None,
    val_per_class: int | None = None,
    recipe: str | None = None,
    bundle=None,
    verbose: bool = True,
    log: Callable[[str], None] | None = None,
    callbacks=(),
    **overrides,
):
    """Fine-tune the weights of ``source`` on ``data`` the brief's way ``mode``; returns a ``FitResult``.

    Every other keyword is a training configuration key (``epochs``, ``lr``, ``out``, ...) as
    for :func:`cnnzoo.train.fit`.  ``classes`` (e.g. ``"5-9"``) keeps only those classes of
    the data set, ``per_class`` labelled training images of each (and ``val_per_class``
    validation images of each from the remaining ones).  ``bundle`` hands over data already
    loaded (a :class:`~cnnzoo.data.DataBundle`; ``data`` is then only its name in the run's
    records).
    """
    from cnnzoo.registry import model_info
    from cnnzoo.train.config import resolve
    from cnnzoo.rundir import default_path
    from cnnzoo.train.engine import choose_input_size, fit, load_config_data
    from cnnzoo.transfer.adapt import adapt_in_chans, head_needs_reset
    from cnnzoo.transfer.data import class_subset, parse_classes
    from cnnzoo.transfer.prepare import NewFC, check_mode, model_spec_after_transfer, prepare
    from cnnzoo.transfer.sources import load_source

    printer = log or (lambda text: print(text, flush=True))
    say = printer if verbose else (lambda text: None)
    check_mode(mode)
    if (per_class is not None or val_per_class is not None) and classes is None:
        raise ConfigError("--per-class and --val-per-class need --classes")
    if data is not None:
        overrides["data"] = data
    config, _ = resolve(recipe, {**{k: v for k, v in overrides.items() if v is not None and k != "model_kwargs"},
                                 "model": "finetune"})  # fmt: skip

    src = load_source(source)
    options = dict(overrides.pop("model_kwargs", None) or {})  # -o KEY=VALUE: the architecture's options
    if options:
        from cnnzoo.modelspec import check_options

        arch = model or src.model_name
        if not arch:
            raise ConfigError(f"-o needs the architecture: give --model NAME for {source}")
        options = check_options(arch, options)
    net = src.build(model, **options)
    name = getattr(net, "model_name", None) or getattr(getattr(net, "base", None), "model_name", model)

    if bundle is None:
        bundle = load_config_data(config)
    data_name = config.data
    if classes is not None:
        bundle = class_subset(bundle, parse_classes(classes, bundle.classes), per_class, val_per_class, config.seed)
        data_name = bundle.name

    if bundle.in_chans != net.in_chans:
        say(f"adapting the first convolution from {net.in_chans} to {bundle.in_chans} input channels")
        adapt_in_chans(net.base if isinstance(net, NewFC) else net, bundle.in_chans)
        net.in_chans = bundle.in_chans
    if reset_head is None:
        reset_head = head_needs_reset(len(bundle.classes), net.num_classes, bundle.classes, src.classes)
    net = prepare(net, mode, num_classes=len(bundle.classes), last_k=last_k, bn_adapt=bn_adapt,
                  reset_head=reset_head)  # fmt: skip
    plan = net.transfer_plan

    data_size = tuple(bundle.image_size) if bundle.image_size else None
    input_size = choose_input_size(model_info(name), data_size, config.input_size)
    net.model_spec = model_spec_after_transfer(net)  # what load_run rebuilds: the base, new_fc, ...

    say(f"weights from {source} ({src.kind}): {name}")
    say(plan.describe())
    record = {
        "model": name,
        "model_kwargs": dict(src.model_kwargs) if name == src.model_name else {},
        "transfer": {"source": str(source), "source_kind": src.kind, "data": data_name, **plan.to_dict(),
                     "base_num_classes": int(getattr(getattr(net, "base", None), "num_classes", 0) or 0)},
    }  # fmt: skip
    fit_overrides = {k: v for k, v in overrides.items() if k != "data"}
    fit_overrides.update(input_size=list(input_size))
    if not config.out and not config.resume:
        fit_overrides["out"] = str(default_path(name, mode, config.data))
    summary = _summary_callback(net, (bundle.in_chans, *input_size), say)
    return fit(net, data_name, recipe=recipe, verbose=verbose, log=log, bundle=bundle, kind="finetune",
               record=record, callbacks=[summary, *callbacks], **fit_overrides)


def _summary_callback(model, input_size, say):
    """A callback writing ``summary.txt`` (the per-layer table with its trainable column) when the run starts."""
    from cnnzoo.train.trainer import Callback  # torch: not at import time (the command line stays quick)

    class SummaryFile(Callback):
        def on_fit_start(self, trainer) -> None:
            if trainer.is_main and not (trainer.run / "summary.txt").exists():
                _write_summary(model, input_size, trainer.run, say)

    return SummaryFile()


def _write_summary(model, input_size, run, say) -> None:
    """The per-layer table (top-level blocks, with the trainable column) into ``RUN/summary.txt``."""
    from cnnzoo.analysis import summary

    try:
        table = summary(model, input_size, depth=2 if hasattr(model, "base") else 1).format("table")
    except Exception as exc:  # the summary is a report: never stop a training for it
        say(f"(no per-layer summary: {type(exc).__name__}: {exc})")
        return
    path = run.write_text("summary.txt", table + "\n")
    say(f"per-layer summary with the trainable column: {path}")


# ------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------


def add_parsers(subparsers) -> None:
    p = subparsers.add_parser(
        "finetune",
        help="transfer learning: start from pretrained weights, train all, the last layers or a new FC layer",
        description="Fine-tune pretrained weights the brief's three ways (001): --mode all trains every "
        "parameter, --mode last the last --last-k layers and the head, --mode new-fc one new fully "
        "connected layer on top of the whole network. SOURCE is a cnnzoo run directory, "
        "torchvision:<Weights>.<NAME> (e.g. torchvision:ResNet18_Weights.IMAGENET1K_V1), timm:<model>, "
        "or a .safetensors/.pth state dict (give --model). Every `cnnzoo train` flag works.",
    )
    p.add_argument("--from", dest="source", required=True, metavar="SOURCE", help="where the weights come from: a run directory, a shipped weight's tag "
                   "(lenet5.fashion_mnist), a .safetensors/.pth file, torchvision:<Weights>.<NAME> or timm:<model>")
    p.add_argument("--mode", default="all", help="all, last or new-fc (default all)")
    p.add_argument("--last-k", type=int, default=1, help="--mode last: how many layers below the head train "
                   "(a ResNet stage, a VGG conv stage or FC layer, an Inception module, ...; default 1)")  # fmt: skip
    p.add_argument("--model", help="the architecture (required for a plain weight file; default: the source's)")
    p.add_argument("--bn-adapt", action="store_true",
                   help="let the frozen layers' batch norm adapt its statistics (default: eval mode)")  # fmt: skip
    p.add_argument("--reset-head", action=argparse.BooleanOptionalAction, default=None,
                   help="re-initialise the head (default: when the classes differ from the source's)")  # fmt: skip
    p.add_argument("--classes", help="keep only these classes of the data set, e.g. 5-9 or Sandal,Bag")
    p.add_argument("--per-class", type=int, help="with --classes: this many labelled training images per class")
    p.add_argument("--val-per-class", type=int, help="with --per-class: validation images per class, "
                   "from the remaining training images")  # fmt: skip
    add_model_option_flag(p)
    add_training_flags(p)
    p.set_defaults(func=cmd_finetune)


def cmd_finetune(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = train_overrides(args)
    result = finetune(
        args.source, mode=args.mode, model=args.model, last_k=args.last_k, bn_adapt=args.bn_adapt,
        reset_head=args.reset_head, classes=args.classes, per_class=args.per_class,
        val_per_class=args.val_per_class, recipe=args.recipe, **overrides,
    )  # fmt: skip
    return result.exit_code
