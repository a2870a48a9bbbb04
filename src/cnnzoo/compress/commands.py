"""The ``prune``, ``deep-compress`` and ``distill`` subcommands of ``cnnzoo``.

Each one trains with the engine of ``cnnzoo train`` (all its flags work: ``--epochs`` are the
fine-tuning epochs, ``--out`` the new run directory) and writes a new run directory; the
source run is only read.  This module imports no torch (``--help`` stays quick); the handlers
import what they need.
"""

from __future__ import annotations

import argparse


def add_parsers(subparsers) -> None:
    _add_prune(subparsers)
    _add_deep_compress(subparsers)
    _add_distill(subparsers)


def _training_flags(p: argparse.ArgumentParser) -> None:
    from cnnzoo.train.commands import add_training_flags
    from cnnzoo.train.config import add_model_option_flag

    add_model_option_flag(p)
    add_training_flags(p)


# ------------------------------------------------------------------------------------------
# prune
# ------------------------------------------------------------------------------------------


def _add_prune(subparsers) -> None:
    p = subparsers.add_parser(
        "prune",
        help="structured filter pruning: remove filters, fine-tune, get a smaller dense net",
        description="Remove whole filters (and the channels that depend on them: residual additions, "
        "concatenations, groups, the BN and classifier that follow) from a trained run or a registered "
        "model, then fine-tune with the engine of `cnnzoo train` (--epochs 0: no fine-tuning). Prints "
        "params, multiply-adds, CPU latency and accuracy before and after; writes a new run directory.",
    )
    p.add_argument("source", metavar="RUN|MODEL", help="a run directory or a registered model name")
    p.add_argument("--ratio", type=float, required=True, help="share of the prunable filters to remove, in (0, 1)")
    p.add_argument("--method", default="l1", help="l1 (Li et al. 2017), l2, bn-scale (Liu et al. 2017, "
                   "network slimming) or random (the control); default l1")  # fmt: skip
    p.add_argument("--global", dest="global_pruning", action="store_true",
                   help="rank filters across layers instead of the same share in every layer")  # fmt: skip
    p.add_argument("--steps", type=int, default=1, metavar="K",
                   help="iterative pruning: K rounds of prune then fine-tune (default 1: one shot)")  # fmt: skip
    _training_flags(p)
    p.set_defaults(func=cmd_prune)


def cmd_prune(args: argparse.Namespace) -> int:
    from cnnzoo.compress.pruning import prune_command

    return prune_command(args)


# ------------------------------------------------------------------------------------------
# deep-compress
# ------------------------------------------------------------------------------------------


def _add_deep_compress(subparsers) -> None:
    p = subparsers.add_parser(
        "deep-compress",
        help="Deep Compression (Han et al. 2016): prune, share weights, Huffman-code",
        description="Magnitude pruning with retraining (the masks kept), trained quantization by weight "
        "sharing (k-means per layer, centroids fine-tuned) and Huffman coding of the weight indices and "
        "the sparse index differences. Writes the compressed file into a new run directory, prints the "
        "per-layer table of the paper's Tables 2-5 and `compression: N.Nx` against the fp32 safetensors.",
    )
    p.add_argument("source", metavar="RUN", help="a trained run directory")
    p.add_argument("--prune-ratio", default=None, metavar="R[,LAYER=R...]",
                   help="share of the weights removed in every layer, with per-layer exceptions (a layer name "
                   "covers its sublayers), e.g. 0.9,features.0=0.3 (default: the paper's per-layer shares where "
                   "it gives them, else 0.9)")  # fmt: skip
    p.add_argument("--bits-conv", type=int, default=8, help="index bits of convolutional layers (default 8)")
    p.add_argument("--bits-fc", type=int, default=5, help="index bits of fully connected layers (default 5)")
    p.add_argument("--share-epochs", type=int, default=None, metavar="N",
                   help="epochs of the weight-sharing retraining (default: --epochs)")
    p.add_argument("--share-lr", type=float, default=None, metavar="LR",
                   help="learning rate of the weight-sharing retraining; a centroid's gradient sums those of "
                   "all its weights, so the default is the pruning's lr divided by the largest layer's "
                   "mean cluster size")  # fmt: skip
    _training_flags(p)
    p.set_defaults(func=cmd_deep_compress)


def cmd_deep_compress(args: argparse.Namespace) -> int:
    from cnnzoo.compress.deep_compression import deep_compress_command

    return deep_compress_command(args)


# ------------------------------------------------------------------------------------------
# distill
# ------------------------------------------------------------------------------------------


def _add_distill(subparsers) -> None:
    p = subparsers.add_parser(
        "distill",
        help="knowledge distillation (Hinton et al. 2015): a student learns a teacher's soft targets",
        description="Train --student on the soft targets of one or more trained teacher runs (averaged; "
        "teachers in eval mode) at temperature T, the soft term scaled by T^2 (Hinton et al. Sec. 2) and "
        "weighted by --alpha, the hard-label term by 1 - alpha. Every `cnnzoo train` flag works.",
    )
    p.add_argument("--teacher", action="append", required=True, metavar="RUN",
                   help="a trained run directory (repeat for an ensemble)")  # fmt: skip
    p.add_argument("--student", required=True, metavar="MODEL", help="a registered model name")
    p.add_argument("--temperature", type=float, default=4.0, metavar="T", help="softmax temperature (default 4)")
    p.add_argument("--alpha", type=float, default=0.9,
                   help="weight of the soft term; the hard-label term gets 1 - alpha (default 0.9)")  # fmt: skip
    _training_flags(p)
    p.set_defaults(func=cmd_distill)


def cmd_distill(args: argparse.Namespace) -> int:
    from cnnzoo.compress.distillation import distill_command

    return distill_command(args)
