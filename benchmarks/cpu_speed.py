"""Training-step speed on this machine: bf16 autocast, channels-last and torch.compile against eager fp32.

For each model, a training step (forward, cross-entropy, backward, SGD step) on random images
is timed in each variant; the table gives images per second and the ratio to the fp32 NCHW
eager baseline measured in the same run (median of ``--repeats`` timings of ``--steps`` steps,
after warm-up).  BN statistics and weights stay whatever training makes them.

    python benchmarks/cpu_speed.py --threads 2
    python benchmarks/cpu_speed.py --models resnet20 --variants fp32,bf16+cl --compile

The machine (CPU model, bf16 instructions, threads, load average) is printed first.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

#: model -> (input C, H, W, batch size): Fashion-MNIST-sized nets, and one ImageNet-style net
MODELS = {
    "lenet5": ((1, 32, 32), 256),
    "resnet20": ((1, 28, 28), 256),
    "fastnet": ((1, 28, 28), 256),
    "resnet18": ((3, 224, 224), 16),
}
VARIANTS = ("fp32", "cl", "bf16", "bf16+cl")


def time_variant(name: str, variant: str, steps: int, repeats: int, compiled: bool) -> float:
    import torch

    import cnnzoo

    (chans, height, width), batch = MODELS[name]
    torch.manual_seed(0)
    model = cnnzoo.create_model(name, num_classes=10, in_chans=chans)
    channels_last = "cl" in variant.split("+")
    bf16 = variant.startswith("bf16")
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if hasattr(model, "init_from_data"):
        model.init_from_data(torch.randn(512, chans, height, width))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    step_model = torch.compile(model) if compiled else model
    images = torch.randn(batch, chans, height, width)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (batch,))
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = step_model(images)
            out = out[0] if isinstance(out, (tuple, list)) else out
            loss = loss_fn(out.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    model.train()
    for _ in range(3 if not compiled else 5):  # warm-up (and compilation)
        step()
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        timings.append(time.perf_counter() - start)
    return steps * batch / statistics.median(timings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated, from: " + ", ".join(MODELS))
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, from: " + ", ".join(VARIANTS))
    parser.add_argument("--compile", action="store_true", help="also time each variant under torch.compile")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    import torch

    from cnnzoo.train.speed import cpu_bf16_instructions, cpu_model_name

    torch.set_num_threads(args.threads)
    print(f"machine: {cpu_model_name()}; bf16 instructions: {cpu_bf16_instructions() or 'none'}; torch {torch.__version__}; "
          f"{args.threads} threads; load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print()
    print("| model | input, batch | variant | img/s | vs fp32 eager |")
    print("|---|---|---|---:|---:|")
    for name in args.models.split(","):
        (chans, height, width), batch = MODELS[name]
        baseline = None
        for compiled in (False, True) if args.compile else (False,):
            for variant in args.variants.split(","):
                speed = time_variant(name, variant, args.steps, args.repeats, compiled)
                if baseline is None:
                    baseline = speed
                label = variant + (" + compile" if compiled else "")
                print(f"| {name} | {chans}x{height}x{width}, {batch} | {label} | {speed:.0f} | {speed / baseline:.2f}x |",
                      flush=True)  # fmt: skip
    print(f"\nload average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
