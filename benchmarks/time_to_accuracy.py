#!/usr/bin/env python3
"""Wall time to 92%, 93% and 94% test accuracy on Fashion-MNIST with the ``fast`` recipe.

The test set is measured after every epoch (``test_every_epoch``; model selection still
uses the validation split).  The time to a target is the cumulative wall time up to the
first epoch whose test top-1 reaches the target, counting the training steps only (the `seconds` column of metrics.csv): the
validation and the per-epoch test evaluation done for this measurement are excluded.

    python benchmarks/time_to_accuracy.py --model resnet20 --epochs 20 --batch-size 128 --threads 2 \
        --set input_size=[28,28] --set channels_last=true

Prints a Markdown table and writes it, with the machine and the command, to ``--report``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="lenet5")
    parser.add_argument("--recipe", default="fast")
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default: the recipe's)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (the brief: 2 cores)")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="any other configuration key, the value read as YAML "
                             "(e.g. --set input_size=[28,28] --set channels_last=true)")
    parser.add_argument("--targets", type=float, nargs="+", default=[0.92, 0.93, 0.94])
    parser.add_argument("--time-limit", type=float, default=None, help="stop after this many seconds")
    parser.add_argument("--full", action="store_true",
                        help="train the whole schedule even after every target is reached (the final test top-1 "
                             "is then the run's, with the weights the validation split chose)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--out", default=None, help="run directory (default runs/tta-MODEL-TIMESTAMP)")
    parser.add_argument("--report", default=None, help="also write the result as JSON here")
    args = parser.parse_args(argv)

    import torch

    from cnnzoo.errors import CnnzooError
    from cnnzoo.train import fit
    from cnnzoo.train.config import parse_assignment

    torch.set_num_threads(args.threads)
    overrides = {k: v for k, v in (("epochs", args.epochs), ("batch_size", args.batch_size), ("lr", args.lr),
                                   ("seed", args.seed)) if v is not None}  # fmt: skip
    try:
        for setting in args.settings:
            key, value = parse_assignment(setting)
            overrides[key.replace("-", "_")] = value
    except CnnzooError as error:
        parser.error(str(error))
    out = args.out or f"runs/tta-{args.model}-{time.strftime('%Y%m%d-%H%M%S')}"
    start = time.perf_counter()
    reached: dict[float, dict] = {}
    train_clock = 0.0

    def on_epoch_end(row: dict) -> bool:
        nonlocal train_clock
        train_clock += row["seconds"]
        accuracy = row.get("test_top1")
        for target in args.targets:
            if target not in reached and accuracy is not None and accuracy >= target:
                reached[target] = {"epoch": row["epoch"], "seconds": train_clock, "test_top1": accuracy}
        print(f"[time-to-accuracy] epoch {row['epoch']}: test top-1 {100 * accuracy:.2f}% after "
              f"{train_clock:.0f} s of training", flush=True)  # fmt: skip
        if len(reached) == len(args.targets) and not args.full:
            return True
        return args.time_limit is not None and time.perf_counter() - start > args.time_limit

    result = fit(args.model, data=args.data, recipe=args.recipe, out=out, test_every_epoch=True,
                 on_epoch_end=on_epoch_end, **overrides)  # fmt: skip
    wall = time.perf_counter() - start
    best_test = max((row.get("test_top1") or 0.0) for row in result.history)
    from cnnzoo.train.speed import cpu_bf16_instructions, cpu_model_name

    machine = (f"{cpu_model_name()} ({platform.machine()}, {os.cpu_count()} CPUs visible, bf16 instructions: "
               f"{cpu_bf16_instructions() or 'none'}), torch {torch.__version__}, {args.threads} threads, "
               f"load average at the end {os.getloadavg()[0]:.2f}")  # fmt: skip
    record = json.loads((Path(result.run_dir) / "run.json").read_text())
    compute = _training_compute(args.model, record, result.steps, result.config.batch_size)
    lines = [
        f"model {args.model}, recipe {args.recipe}, data {args.data}; {machine}",
        "",
        "| target test top-1 | reached at epoch | training wall time |",
        "| --- | --- | --- |",
    ]
    for target in args.targets:
        hit = reached.get(target)
        if hit:
            lines.append(f"| {100 * target:.0f}% | {hit['epoch']} | {hit['seconds']:.0f} s ({hit['seconds'] / 60:.1f} min) |")
        else:
            lines.append(f"| {100 * target:.0f}% | not reached in {len(result.history)} epochs | - |")
    lines.append("")
    final = f"final test top-1 {100 * result.test_top1:.2f}% (best validation epoch); " if result.test_top1 else ""
    lines.append(f"{final}best test top-1 over the run: {100 * best_test:.2f}%; whole run {wall:.0f} s; "
                 f"training compute {compute / 1e12:.1f} T multiply-adds (images seen x 3 x forward MACs; FLOPs = 2x); "
                 f"run dir {result.run_dir}")
    text = "\n".join(lines)
    print(text)
    if args.report:
        Path(args.report).write_text(json.dumps({
            "command": " ".join([sys.executable.split("/")[-1], *sys.argv]),
            "machine": machine, "reached": {str(k): v for k, v in reached.items()}, "best_test_top1": best_test,
            "epochs": len(result.history), "wall_seconds": wall, "table": text, "final_test_top1": result.test_top1,
            "seed": result.config.seed, "training_macs": compute,
            "train_seconds": sum(row["seconds"] for row in result.history),
        }, indent=2))  # fmt: skip
    return 0


def _training_compute(model: str, record: dict, steps: int, batch_size: int) -> float:
    """Multiply-adds of training: images seen x 3 (forward, and backward's two products) x forward MACs."""
    from cnnzoo.modelspec import ModelSpec
    from cnnzoo.analysis import summary

    spec = ModelSpec.from_dict(record["spec"]) if record.get("spec") else ModelSpec(model)
    net = spec.build()
    macs = summary(net, (record["in_chans"], *record["input_size"])).total_macs
    return steps * batch_size * 3 * macs


if __name__ == "__main__":
    raise SystemExit(main())
