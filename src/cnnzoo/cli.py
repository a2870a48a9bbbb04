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
COMMAND_MODULES = ("cnnzoo.train.commands",)


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
