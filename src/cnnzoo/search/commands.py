"""``cnnzoo search``: neural architecture search with reinforcement learning (Zoph & Le 2017), or at random.

This module imports no torch (``--help`` stays quick); the handler imports what it needs.
"""

from __future__ import annotations

import argparse


def add_parsers(subparsers) -> None:
    from cnnzoo.search.runner import SETTING_DEFAULTS as D  # torch-free, like the space
    from cnnzoo.search.space import SearchSpace
    from cnnzoo.search.trial import CHILD_RECIPE

    space = SearchSpace()
    p = subparsers.add_parser(
        "search",
        help="architecture search: an RL controller (Zoph & Le 2017) or random sampling proposes child "
        "networks, each trained briefly; the best validation top-1 wins",
        description="Sample --trials child networks (stacks of --depth convolutions with chosen filter sizes, "
        "filters, strides and skip connections) with an LSTM controller trained by REINFORCE (--controller rl, "
        "Zoph & Le 2017) or uniformly (--controller random), train each for --epochs with the engine of "
        "`cnnzoo train`, and reward the controller with the child's best validation top-1 (the test split is "
        "never used). Writes OUT/trials.csv, OUT/best.json, OUT/reward.png and one run directory per trial "
        "(OUT/trials/NNNN); `cnnzoo train OUT` then retrains the best architecture from scratch. A search "
        "killed at any moment continues with --resume (the trials in flight are run again).",
    )
    settings = p.add_argument_group("what is searched (fixed for a search; --resume takes the saved values)")
    settings.add_argument("--data", help=f"data set, e.g. fashion-mnist, cifar10, synthetic:classes=3,size=12 "
                          f"(default {D['data']})")  # fmt: skip
    settings.add_argument("--controller", help=f"rl (LSTM + REINFORCE) or random (default {D['controller']})")
    settings.add_argument("--trials", type=int, help=f"children to sample and train (default {D['trials']})")
    settings.add_argument("--epochs", type=int, help=f"training epochs of each child (default {D['epochs']})")
    settings.add_argument("--limit-train", type=int, metavar="N",
                          help="train the children on a seeded subset of N images")  # fmt: skip
    settings.add_argument("--val-fraction", type=float, help="share of the training set held out for the reward "
                          f"(default {D['val_fraction']})")  # fmt: skip
    settings.add_argument("--batch-size", type=int, help=f"the children's batch size (default {D['batch_size']})")
    settings.add_argument("--lr", type=float, help=f"the children's peak learning rate (default {D['lr']}; SGD with "
                          f"Nesterov momentum {CHILD_RECIPE['momentum']}, weight decay {CHILD_RECIPE['weight_decay']}, "
                          f"{CHILD_RECIPE['schedule']} schedule)")  # fmt: skip
    settings.add_argument("--max-macs", type=_count, metavar="M", help="only children with at most M multiply-adds "
                          "(e.g. 2e6)")  # fmt: skip
    settings.add_argument("--max-params", type=_count, metavar="P", help="only children with at most P parameters")
    settings.add_argument("--depth", type=int, help=f"convolutional layers of a child (default {space.depth})")
    settings.add_argument("--filters", type=_int_list, metavar="N,N,...", help="the filter counts to choose from "
                          f"(default {_listed(space.filters)})")  # fmt: skip
    settings.add_argument("--filter-sizes", type=_int_list, metavar="K,K,...", help="the filter heights and widths "
                          f"to choose from (default {_listed(space.filter_heights)})")  # fmt: skip
    settings.add_argument("--strides", type=_int_list, metavar="S,S,...", help="the strides to choose from "
                          f"(default {_listed(space.strides)}; one value: no stride decision)")  # fmt: skip
    settings.add_argument("--no-skips", dest="skips", action="store_false", default=None,
                          help="plain chains: no skip connections (no anchor decisions)")  # fmt: skip
    settings.add_argument("--seed", type=int, help="seed of the controller, the data split and every child "
                          f"(default {D['seed']})")  # fmt: skip
    how = p.add_argument_group("how it runs (may change on --resume)")
    how.add_argument("--workers", type=int, metavar="W", help="children trained at once (default 1; 0: in this "
                     "process, without isolation; with --ray: the cluster's CPUs)")  # fmt: skip
    how.add_argument("--threads", type=int, metavar="T", help="CPU threads of the whole search, shared among the W "
                     "children (default: this machine's CPUs, with --ray the cluster's)")  # fmt: skip
    how.add_argument("--ray", metavar="ADDRESS", help="run the children as tasks on the Ray cluster at HOST:PORT "
                     "(the search directory must be on a filesystem every node sees at the same path)")  # fmt: skip
    how.add_argument("--data-dir", help="where the data set's files are (default: the usual places)")
    how.add_argument("--no-download", dest="download", action="store_false", default=None,
                     help="do not download a missing data set")  # fmt: skip
    p.add_argument("--out", required=True, metavar="DIR", help="the search directory (new or empty, or with --resume "
                   "a search to continue)")  # fmt: skip
    p.add_argument("--resume", action="store_true", help="continue the search in --out where it stopped")
    p.set_defaults(func=cmd_search)


def _listed(values) -> str:
    return ",".join(str(v) for v in values)


def _count(text: str) -> int:
    """A count such as 2000000, 2e6 or 2_000_000."""
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a count: {text!r}") from None
    if not value.is_integer() or value < 1:
        raise argparse.ArgumentTypeError(f"not a positive whole count: {text!r}")
    return int(value)


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from None


def cmd_search(args: argparse.Namespace) -> int:
    from cnnzoo.search.runner import run_search

    space = {"depth": args.depth, "filters": args.filters, "filter_heights": args.filter_sizes,
             "filter_widths": args.filter_sizes, "strides": args.strides, "skips": args.skips}  # fmt: skip
    space = {key: value for key, value in space.items() if value is not None}
    result = run_search(args.out, data=args.data, controller=args.controller, trials=args.trials, epochs=args.epochs,
                        limit_train=args.limit_train, val_fraction=args.val_fraction, batch_size=args.batch_size,
                        lr=args.lr, max_macs=args.max_macs, max_params=args.max_params, seed=args.seed, space=space,
                        data_dir=args.data_dir, download=args.download, workers=args.workers, threads=args.threads,
                        ray=args.ray, resume=args.resume)  # fmt: skip
    return 0 if result.best is not None else 1
