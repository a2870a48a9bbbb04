"""The ``quantize`` subcommand of ``cnnzoo``: low-precision runs from a trained run.

This module imports no torch (``--help`` stays quick); the handlers import what they need.
"""

from __future__ import annotations

import argparse

#: the schemes of ``cnnzoo quantize --scheme`` and ``cnnzoo train --quantize``
SCHEMES = ("binary", "xnor", "bwn", "ternary", "ttq", "2bit", "int8")


def add_parsers(subparsers) -> None:
    from cnnzoo.train.commands import add_training_flags

    p = subparsers.add_parser(
        "quantize",
        help="low precision: binary, XNOR, ternary, 2-bit weights (fine-tuned) or int8 that runs faster",
        description="Quantize a trained run: binary/xnor/bwn/ternary/ttq/2bit train full-precision shadow "
        "weights with straight-through estimators (fine-tuning with the engine of `cnnzoo train`, whose "
        "flags all work) and store the weights bit-packed; int8 calibrates on training images (post-training "
        "static quantization) or trains with --qat. Writes a new run directory; the source run is only read.",
    )
    p.add_argument("source", metavar="RUN", help="a trained run directory")
    p.add_argument("--scheme", required=True, help=", ".join(SCHEMES))
    p.add_argument("--calibration", type=int, default=512, metavar="N",
                   help="int8: training images used to calibrate the activation ranges (default 512)")  # fmt: skip
    p.add_argument("--qat", action="store_true", help="int8: quantization-aware training instead of calibration")
    add_low_precision_flags(p)
    add_training_flags(p)
    p.set_defaults(func=cmd_quantize)


def add_low_precision_flags(p: argparse.ArgumentParser) -> None:
    """The options of the binary, ternary and two-bit schemes (``quantize`` and ``train --quantize``)."""
    p.add_argument("--binary-activations", action="store_true",
                   help="binary: binarize the quantized layers' inputs too (BNN; ReLUs become hard tanh); "
                   "xnor always does")  # fmt: skip
    p.add_argument("--keep-first-last", action=argparse.BooleanOptionalAction, default=True,
                   help="keep the first layer and the classifier in full precision, as the papers do (default)")


def cmd_quantize(args: argparse.Namespace) -> int:
    if args.scheme == "int8":
        from cnnzoo.quantization.int8 import int8_command

        return int8_command(args)
    from cnnzoo.quantization.transform import quantize_command

    return quantize_command(args)
