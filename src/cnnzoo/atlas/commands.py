"""The ``atlas`` subcommand of ``cnnzoo``; imports no torch (the handler does)."""

from __future__ import annotations

import argparse


def add_parsers(subparsers) -> None:
    p = subparsers.add_parser(
        "atlas",
        help="write a static HTML site of every network and building block (docs/atlas.md)",
        description="Write the atlas: an index (timeline, lineage, cost chart), a page per registered model "
        "(paper, per-layer table, totals beside the paper's, diagram, recipe, measured results), a page per "
        "building block and the experiments. It works from file:// with no network. An existing folder is "
        "rebuilt in place only if it is an atlas; summaries are cached in DIR/.cache.",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="the folder to write (new, empty, or an atlas)")
    p.add_argument("--models", default="*", metavar="PATTERN",
                   help="only the models matching these comma-separated shell-style wildcards, e.g. 'resnet*,vgg16' "
                        "(default: all)")  # fmt: skip
    p.add_argument("--runs", metavar="DIR",
                   help="a folder of experiment outputs (runs/experiment-NAME): their reports go in the atlas")  # fmt: skip
    p.set_defaults(func=cmd_atlas)


def cmd_atlas(args: argparse.Namespace) -> int:
    import os

    from cnnzoo.atlas.build import build_atlas

    done = build_atlas(args.out, args.models, args.runs, workers=min(2, os.cpu_count() or 1))
    print(f"atlas: {done['models']} models, {done['blocks']} building blocks, {done['files']} files in "
          f"{args.out} ({done['total_s']:.1f} s); open {args.out}/index.html")
    return 0
