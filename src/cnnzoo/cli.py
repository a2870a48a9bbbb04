"""The ``cnnzoo`` command line.

Every subcommand is a function ``handler(args) -> exit code``.  Subcommands owned by
other parts of the package (training, evaluation, fine-tuning) live beside their code
in a ``commands`` module exposing ``add_parsers(subparsers)``; they are listed in
``COMMAND_MODULES``.  A user's mistake raises :class:`~cnnzoo.errors.CnnzooError`,
printed here as one line with exit code 2.

``cnnzoo`` with no arguments prints the help to stdout and exits with status 2 (so does
``cnnzoo experiment`` without a NAME, listing the experiments): a script that forgets the
command fails.  Ctrl-C anywhere in :func:`main`, parser building and imports (torch's)
included, prints ``cnnzoo: interrupted`` and exits with status 130.

Starting quickly: ``--help``, ``--version``, ``list``, ``info`` and ``shape`` never import
torch (``python -X importtime -m cnnzoo list`` shows it; tests/test_cli_fast.py checks it).

- :func:`main` builds only the parser its command line needs (:func:`parts_needed`): the
  built-in commands are plain argparse; the sub-parsers of ``experiment`` import every
  experiment module (which import torch), so they are built only for ``cnnzoo experiment
  ...``; the ``COMMAND_MODULES`` are imported for the help, their own commands and unknown
  names, so they must import torch in their handlers only, never at import time.
- ``list`` and ``info`` read the models' metadata index (:mod:`cnnzoo.model_index`), not the
  model files; ``shape`` is :mod:`cnnzoo.conv_arithmetic`.
- Handlers import what they need inside their bodies.
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module
from typing import Callable, Sequence

from cnnzoo import __version__
from cnnzoo.errors import CnnzooError

#: modules that add their own subcommands through ``add_parsers(subparsers)``; importing
#: one must not import torch (its handlers do)
COMMAND_MODULES = (
    "cnnzoo.train.commands",
    "cnnzoo.transfer.commands",
    "cnnzoo.deploy.commands",
    "cnnzoo.compress.commands",
    "cnnzoo.quantization.commands",
    "cnnzoo.atlas.commands",
    "cnnzoo.search.commands",
)

#: the commands this module defines whose parsers need no imports (``experiment`` is the other)
BUILTIN_COMMANDS = ("list", "info", "summary", "shape", "compare")

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (the program, the error) and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _show_help(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """A handler for a command line that names no (sub)command: the help, exit status 2."""

    def show(args: argparse.Namespace) -> int:
        parser.print_help()
        return EXIT_USAGE

    return show


def parts_needed(argv: Sequence[str]) -> dict[str, bool]:
    """Which optional parts of the parser (:func:`build_parser`'s flags) ``argv`` needs.

    The command is the first argument; an option before it other than ``--version`` (help,
    or a mistake) is answered by the top-level parser, which lists every command.
    """
    first = argv[0] if argv else None
    if first == "--version" or first in BUILTIN_COMMANDS:
        return {"command_modules": False, "experiments": False}
    if first == "experiment":
        return {"command_modules": False, "experiments": True}
    return {"command_modules": True, "experiments": False}


def build_parser(*, command_modules: bool = True, experiments: bool = True) -> argparse.ArgumentParser:
    """The ``cnnzoo`` parser, by default with every subcommand in full.

    ``command_modules=False`` leaves out the subcommands of ``COMMAND_MODULES``;
    ``experiments=False`` lists ``experiment`` without its sub-parsers (building them imports
    every experiment module).  :func:`main` asks only for what its command line needs.
    """
    parser = OneLineArgumentParser(
        prog="cnnzoo",
        description="The landmark convolutional networks: build, analyse, train, compare.",
        epilog="`cnnzoo COMMAND --help` describes a command. With no arguments cnnzoo prints this help "
        "and exits with status 2.",
    )
    parser.add_argument("--version", action="version", version=f"cnnzoo {__version__}")
    parser.set_defaults(func=_show_help(parser))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineArgumentParser)

    p = sub.add_parser("list", help="list registered models")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style wildcard, e.g. 'vgg*'")
    p.add_argument("--family", help="only this family")
    p.add_argument("--pretrained", action="store_true",
                   help="the trained weights that ship with cnnzoo (tags such as lenet5.fashion_mnist) instead")  # fmt: skip
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("info", help="a model's paper, default input and size limits")
    p.add_argument("model")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("summary", help="per-layer table: shapes, params, MACs, memory, receptive field")
    p.add_argument("model")
    p.add_argument("--input", help="input size CxHxW (default: the model's), e.g. 3x224x224")
    p.add_argument("--depth", type=int, help="fold layers below this depth into their block (1 = top level)")
    p.add_argument("--format", choices=("table", "markdown", "csv", "json"), default="table")
    p.add_argument("--num-classes", type=int, help="number of classes (default: the paper's)")
    p.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                   help="model option, e.g. -o stride_in_1x1=true (repeatable)")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("shape", help="conv/pool output sizes from the formula, floor vs ceil (004 Q1)")
    p.add_argument("size", type=int, help="input side in pixels")
    p.add_argument("layers", nargs="+", metavar="LAYER", help="conv:K[/S[/P[/D]]] or pool:K[/S[/P]]")
    p.add_argument("--ceil-mode", action="store_true", help="pool with Caffe's rounding up")
    p.set_defaults(func=cmd_shape)

    p = sub.add_parser("compare", help="params and MACs of several models side by side")
    p.add_argument("models", nargs="+")
    p.add_argument("--input", help="one input size CxHxW for all (default: each model's own)")
    p.add_argument("--plot", metavar="FILE", help="also draw ImageNet top-1 (as each paper reports it) against "
                   "multiply-adds, bubble size the parameters (Canziani et al. 2016), into this new PNG file")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "experiment",
        help="run one of the brief's experiments",
        description="Run one of the brief's experiments (docs/experiments.md); "
        "`cnnzoo experiment NAME --help` gives its flags.",
    )
    p.set_defaults(func=_show_help(p))
    if experiments:
        _add_experiments(p)

    if command_modules:
        for module_name in COMMAND_MODULES:
            try:
                module = import_module(module_name)
            except ModuleNotFoundError as exc:
                if exc.name != module_name:
                    raise
                continue
            module.add_parsers(sub)
    return parser


def _add_experiments(parser: argparse.ArgumentParser) -> None:
    from cnnzoo.experiments import list_experiments

    experiments = parser.add_subparsers(dest="experiment", metavar="NAME", parser_class=OneLineArgumentParser)
    for experiment in list_experiments():
        ep = experiments.add_parser(experiment.name, help=experiment.help, description=experiment.help)
        if experiment.add_arguments:
            experiment.add_arguments(ep)
        ep.set_defaults(func=experiment.run)


def cmd_list(args: argparse.Namespace) -> int:
    from cnnzoo.registry import list_models, model_info

    if args.pretrained:  # the shipped weights' table (JSON: no torch)
        import fnmatch

        from cnnzoo.pretrained.__main__ import format_table
        from cnnzoo.pretrained.table import read_table

        pattern = args.pattern if args.pattern == "*" or "." in args.pattern else args.pattern + ".*"
        print(format_table({tag: entry for tag, entry in read_table().items()
                            if fnmatch.fnmatchcase(tag, pattern)}))  # fmt: skip
        return 0
    for name in list_models(args.pattern, family=args.family, from_index=True):
        info = model_info(name, from_index=True)
        size = "x".join(map(str, info.input_size))
        print(f"{name:28s} {info.family:18s} {info.year}  {size:11s} {info.description}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from cnnzoo.registry import model_info

    info = model_info(args.model, from_index=True)
    sizes = (
        f"only {info.input_size[1]}x{info.input_size[2]}"
        if info.fixed_size
        else f"at least {info.min_size}x{info.min_size}" if info.min_size else "any"
    )
    print(f"name:         {info.name}")
    print(f"family:       {info.family}")
    print(f"description:  {info.description}")
    print(f"paper:        {info.paper.title}")
    print(f"authors:      {info.paper.authors}")
    print(f"year:         {info.paper.year}")
    print(f"link:         {info.paper.url}")
    print(f"input size:   {'x'.join(map(str, info.input_size))} (C x H x W); sizes accepted: {sizes}")
    print(f"num classes:  {info.num_classes}")
    print(f"ImageNet:     {info.reported.describe() if info.reported else 'no figure in its paper'}")
    from cnnzoo.pretrained.table import list_pretrained

    print(f"pretrained:   {', '.join(list_pretrained(info.name + '.*')) or 'none shipped'}")
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from cnnzoo.analysis import parse_input_size, summary
    from cnnzoo.train.runs import model_or_run

    model, default_size, options = model_or_run(args.model, args.option)
    input_size = parse_input_size(args.input) if args.input else default_size
    if args.num_classes is not None:
        options["num_classes"] = args.num_classes
    result = summary(model, input_size, depth=args.depth, **options)
    print(result.format(args.format))
    int8 = _int8_file(args.model)
    if int8 is not None and args.format == "table":
        weights = sum(p.numel() * 4 for p in model.parameters())
        print(f"int8: {int8} {int8.stat().st_size / 1e6:.2f} MB (fp32 weights {weights / 1e6:.2f} MB); "
              "the table is the fp32 architecture's")  # fmt: skip
    return 0


def _int8_file(text: str):
    """The int8 ONNX file of an int8 run directory ``text``, else None."""
    from pathlib import Path

    from cnnzoo.rundir import read_record

    folder = Path(text)
    record = read_record(folder) if folder.is_dir() else None
    int8 = (record or {}).get("int8")
    return folder / int8.get("file", "model.int8.onnx") if isinstance(int8, dict) else None


def cmd_shape(args: argparse.Namespace) -> int:
    from cnnzoo.conv_arithmetic import ROUNDING_NOTE, explain_chain, parse_layer

    lines, _ = explain_chain(args.size, [parse_layer(text) for text in args.layers], args.ceil_mode)
    print("\n".join(lines))
    print(ROUNDING_NOTE)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from cnnzoo.analysis import parse_input_size
    from cnnzoo.analysis.compare import compare, plot_accuracy_chart
    from cnnzoo.rundir import new_file

    plot = new_file(args.plot, "plot file") if args.plot else None  # before any work
    input_size = parse_input_size(args.input) if args.input else None
    comparison = compare(args.models, input_size)  # names or run directories
    print(comparison.to_table())
    if plot:
        written, left_out = plot_accuracy_chart(comparison, args.models, plot)
        if left_out:
            print(f"not on the chart (no ImageNet top-1 in its paper, or a run directory): {', '.join(left_out)}")
        print(f"chart: {written}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        # parser building imports the subcommand modules, and handlers import torch: a Ctrl-C
        # in any of it is the same one line
        args = build_parser(**parts_needed(argv)).parse_args(argv)
        return int(args.func(args) or 0)
    except CnnzooError as exc:
        print(f"cnnzoo: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("cnnzoo: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
