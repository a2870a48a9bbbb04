"""The ``cnnzoo`` command line.

Every subcommand is a function ``handler(args) -> exit code``.  Subcommands owned by
other parts of the package (training, evaluation, fine-tuning) live beside their code
in a ``commands`` module exposing ``add_parsers(subparsers)``; they are listed in
``COMMAND_MODULES``.  A user's mistake raises :class:`~cnnzoo.errors.CnnzooError`,
printed here as one line with exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

from cnnzoo.errors import CnnzooError

#: modules that add their own subcommands through ``add_parsers(subparsers)``
COMMAND_MODULES = ("cnnzoo.train.commands", "cnnzoo.transfer.commands")


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (the program, the error) and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        prog="cnnzoo",
        description="The landmark convolutional networks: build, analyse, train, compare.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineArgumentParser)
    sub.required = True

    p = sub.add_parser("list", help="list registered models")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style wildcard, e.g. 'vgg*'")
    p.add_argument("--family", help="only this family")
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
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("experiment", help="run one of the brief's experiments")
    experiments = p.add_subparsers(dest="experiment", metavar="NAME", parser_class=OneLineArgumentParser)
    experiments.required = True
    from cnnzoo.experiments import list_experiments

    for experiment in list_experiments():
        ep = experiments.add_parser(experiment.name, help=experiment.help, description=experiment.help)
        if experiment.add_arguments:
            experiment.add_arguments(ep)
        ep.set_defaults(func=experiment.run)

    for module_name in COMMAND_MODULES:
        try:
            module = import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.add_parsers(sub)
    return parser


def cmd_list(args: argparse.Namespace) -> int:
    from cnnzoo.registry import list_models, model_info

    for name in list_models(args.pattern, family=args.family):
        info = model_info(name)
        size = "x".join(map(str, info.input_size))
        print(f"{name:28s} {info.family:18s} {info.year}  {size:11s} {info.description}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from cnnzoo.registry import model_info

    info = model_info(args.model)
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
    return 0


def parse_options(pairs: list[str]) -> dict:
    """``["stride_in_1x1=true", "drop_path_rate=0.1"]`` -> typed keyword arguments."""
    import yaml

    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise CnnzooError(f"malformed option {pair!r}; write KEY=VALUE, e.g. shortcut=B")
        options[key] = yaml.safe_load(value)
    return options


def cmd_summary(args: argparse.Namespace) -> int:
    from cnnzoo.analysis import parse_input_size, summary
    from cnnzoo.registry import model_info

    info = model_info(args.model)
    input_size = parse_input_size(args.input) if args.input else info.input_size
    options = parse_options(args.option)
    if args.num_classes is not None:
        options["num_classes"] = args.num_classes
    result = summary(args.model, input_size, depth=args.depth, **options)
    print(result.format(args.format))
    return 0


def cmd_shape(args: argparse.Namespace) -> int:
    from cnnzoo.analysis.shape import ROUNDING_NOTE, explain_chain, parse_layer

    lines, _ = explain_chain(args.size, [parse_layer(text) for text in args.layers], args.ceil_mode)
    print("\n".join(lines))
    print(ROUNDING_NOTE)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from cnnzoo.analysis.compare import compare
    from cnnzoo.analysis import parse_input_size

    input_size = parse_input_size(args.input) if args.input else None
    print(compare(args.models, input_size).to_table())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CnnzooError as exc:
        print(f"cnnzoo: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("cnnzoo: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
