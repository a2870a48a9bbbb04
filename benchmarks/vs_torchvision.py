"""cnnzoo against torchvision and timm on every architecture they share: inference and training speed.

For each shared architecture (the one table, :mod:`cnnzoo.deploy.references`) cnnzoo's model and
the library's are built in the same process with the same weights (cnnzoo's state dict loaded
strictly into theirs) and timed interleaved, call by call, by ``cnnzoo bench``'s measuring
(:func:`cnnzoo.deploy.bench.bench`: warm-up excluded, the median of ``--repeats`` calls,
denormals flushed to zero).  The table gives images per second and cnnzoo's ratio to the
reference in the same run; the goal is at least 0.98x everywhere.

    python benchmarks/vs_torchvision.py --threads 2
    python benchmarks/vs_torchvision.py --models resnet18,vgg11 --libraries torchvision --repeats 5
    python benchmarks/vs_torchvision.py --models resnet18 --deploy    # also ResNet-18's deploy paths

The machine (CPU model, threads, load average) is printed first and the load average last: on a
busy machine the ratios are noise.
"""

from __future__ import annotations

import argparse
import os


def shared_models(libraries: list[str]) -> list[tuple[str, str]]:
    from cnnzoo.deploy.references import shared

    return [(library, name) for library in libraries for name in sorted(shared(library))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", help="comma-separated cnnzoo names (default: every shared architecture)")
    parser.add_argument("--libraries", default="torchvision,timm", help="comma-separated: torchvision, timm")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--inference-batch", type=int, default=8)
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--input", help="one input CxHxW for all (default: each model's own, 224 or 299)")
    parser.add_argument("--no-train", action="store_true", help="inference only")
    parser.add_argument("--deploy", action="store_true", help="end with `cnnzoo bench resnet18 --deploy` at batch 1")
    args = parser.parse_args(argv)

    import torch

    from cnnzoo.analysis import parse_input_size
    from cnnzoo.deploy.bench import bench, describe_machine, machine
    from cnnzoo.registry import model_info

    torch.set_num_threads(args.threads)
    print(describe_machine(machine()))
    print()
    print("| model | library | input | inference img/s cnnzoo | reference | ratio | training img/s cnnzoo | reference | ratio |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    wanted = set(args.models.split(",")) if args.models else None
    slow, failed = [], []
    for library, name in shared_models(args.libraries.split(",")):
        if wanted is not None and name not in wanted:
            continue
        size = parse_input_size(args.input) if args.input else tuple(model_info(name).input_size)
        cells = []
        for train, batch in ((False, args.inference_batch), (True, args.train_batch)):
            if train and args.no_train:
                cells += ["-", "-", "-"]
                continue
            report = bench(name, size, [batch], train=train, compare=library, repeats=args.repeats,
                           warmup=args.warmup)  # fmt: skip
            ours, theirs = report.measurements
            ratio = report.ratios().get(batch)
            what = f"{name} vs {library} {'training' if train else 'inference'}"
            if ratio is None:  # one of them cannot run this input (a message, not a number)
                cells += ["-", "-", "failed"]
                failed.append(f"{what}: {ours.unavailable or theirs.unavailable}")
                continue
            cells += [f"{ours.images_per_second:.1f}", f"{theirs.images_per_second:.1f}", f"{ratio:.2f}x"]
            if ratio < 0.98:
                slow.append(f"{what} {ratio:.2f}x")
        print(f"| {name} | {library} | {'x'.join(map(str, size))} | " + " | ".join(cells) + " |", flush=True)
    print(f"\nbelow 0.98x: {', '.join(slow) if slow else 'none'}")
    for line in failed:
        print(f"failed: {line}")
    if args.deploy:
        report = bench("resnet18", (3, 224, 224), [1], deploy=True, repeats=args.repeats, warmup=args.warmup)
        print()
        print(report.format())
    print(f"\nload average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
