"""CPU inference latency of ResNet-20 (CIFAR layout, option A shortcuts) against the same net with
half of its filters removed (``cnnzoo prune --ratio 0.5``, Li et al.'s L1 ranking, every layer).

Both nets are timed in one process, interleaved one call each in turn (``cnnzoo bench``'s
:func:`~cnnzoo.deploy.bench.measure_interleaved`, denormals flushed), at batch 1 and batch 32,
fp32 eager, in eval mode; the table gives the median latency of each and the ratio
pruned / unpruned.  Fresh random weights: the speed of a dense net does not depend on what the
weights are (denormals aside, which are flushed).  The MACs of both come from
``cnnzoo.analysis.summary``.

    python benchmarks/pruned_speed.py --threads 1
    python benchmarks/pruned_speed.py --in-chans 1 --repeats 200

The machine (CPU model, threads, load average) is printed first.
"""

from __future__ import annotations

import argparse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--in-chans", type=int, default=3, help="input channels (3: CIFAR, 1: Fashion-MNIST)")
    parser.add_argument("--ratio", type=float, default=0.5, help="share of the filters removed (default 0.5)")
    parser.add_argument("--batch-sizes", default="1,32", help="comma-separated (default 1,32)")
    parser.add_argument("--repeats", type=int, default=100, help="timed calls of each net per batch size")
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()

    import torch

    from cnnzoo.analysis import summary
    from cnnzoo.compress import prune
    from cnnzoo.deploy.bench import (describe_machine, flushed_denormals, inference_runner, machine,
                                     measure_interleaved, random_batch)  # fmt: skip
    from cnnzoo.modelspec import ModelSpec

    torch.set_num_threads(args.threads)
    print(describe_machine(machine()))
    size = (args.in_chans, 32, 32)
    torch.manual_seed(0)
    dense = ModelSpec("resnet20", num_classes=10, in_chans=args.in_chans).build().eval()
    pruned, report = prune(dense, args.ratio, "l1", input_size=size)
    pruned.eval()
    print(f"resnet20 at {'x'.join(map(str, size))}: params {summary(dense, size).total_params:,} -> "
          f"{summary(pruned, size).total_params:,}, multiply-adds {report.macs_before:,} -> {report.macs_after:,} "
          f"({report.macs_share:.3f})")  # fmt: skip
    print(f"| batch | unpruned | pruned {args.ratio:g} | pruned / unpruned |")
    print("|---:|---:|---:|---:|")
    with flushed_denormals():
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            images = random_batch(size, batch)
            results = measure_interleaved({"unpruned": inference_runner(dense, images),
                                           "pruned": inference_runner(pruned, images)},
                                          batch, args.repeats, args.warmup)  # fmt: skip
            before, after = results["unpruned"].latency_median, results["pruned"].latency_median
            print(f"| {batch} | {1e3 * before:.3f} ms | {1e3 * after:.3f} ms | {after / before:.3f} |")


if __name__ == "__main__":
    main()
