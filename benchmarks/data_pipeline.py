"""How much does feeding the data cost?  One training epoch of the default model, fed three ways.

(a) cnnzoo's pipeline: uint8 tensors in memory, whole-batch pad/crop/flip/normalise on the device
    (``cnnzoo.data.make_loader``);
(b) torchvision's usual recipe: a Dataset that makes a PIL image per sample, per-sample
    ``transforms`` (Pad, RandomCrop with padding, RandomHorizontalFlip, ToTensor, Normalize) and a
    ``DataLoader`` (with 0 and with N worker processes);
(c) the pure model step (forward, loss, backward, SGD update) on one pre-made batch, no data work.

All three run the same number of steps of the same model (LeNet-5 on 32x32 Fashion-MNIST, batch
128) with the same augmentation.  Each variant is timed ``--repeats`` times, interleaved, and the
fastest run is kept (the machine is shared; the minimum is the least disturbed).  The ratios to (c)
are the data pipeline's overhead.

    python benchmarks/data_pipeline.py                   # 5000 training images, 3 repeats
    python benchmarks/data_pipeline.py --limit-train 0   # the whole training split
"""

from __future__ import annotations

import argparse
import platform
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

import cnnzoo
from cnnzoo.data import load_dataset, make_loader


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown CPU"


class PILDataset(torch.utils.data.Dataset):
    """What torchvision's MNIST-style data sets do per item: a PIL image from uint8, then ``transform``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform) -> None:
        self.images = images[:, 0].numpy()
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i], mode="L")), self.labels[i]


def torchvision_loader(split, mean, std, batch_size: int, workers: int, seed: int):
    from torchvision import transforms as T

    transform = T.Compose([
        T.Pad(2),  # 28 -> 32, as cnnzoo's pipeline does for LeNet-5
        T.RandomCrop(32, padding=2),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        T.Normalize(mean, std),
    ])  # fmt: skip
    g = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(PILDataset(split.images, split.labels, transform), batch_size=batch_size,
                                       shuffle=True, num_workers=workers, generator=g,
                                       persistent_workers=False)  # fmt: skip


def make_step(model, lr=0.01):
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return step


def cpu_seconds() -> float:
    """CPU time of this process plus its finished children (the DataLoader workers)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def time_epoch(batches, step=None) -> tuple[float, float]:
    """``(wall seconds, CPU seconds)`` of one pass; without ``step`` only the data is produced."""
    t0, c0 = time.perf_counter(), cpu_seconds()
    for x, y in batches:
        if step is not None:
            step(x, y)
    return time.perf_counter() - t0, cpu_seconds() - c0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--model", default="lenet5")
    p.add_argument("--limit-train", type=int, default=5000, help="training images per epoch (0 = all)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", default="0,2", help="DataLoader worker counts for (b), comma-separated")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    bundle = load_dataset(args.data, data_dir=args.data_dir, limit_train=args.limit_train or None, download=False)
    info = cnnzoo.model_info(args.model)
    size = info.input_size[1:]
    model = cnnzoo.create_model(args.model, in_chans=bundle.in_chans, num_classes=bundle.num_classes).to(args.device)
    model.train()
    step = make_step(model)
    augment = {"crop_padding": 2, "flip": True}
    ours = make_loader(bundle.train, batch_size=args.batch_size, train=True, device=args.device, input_size=size,
                       augment=augment, mean=bundle.mean, std=bundle.std, seed=0)  # fmt: skip
    steps = len(ours)
    x0, y0 = next(iter(ours))
    fixed = [(x0[: stop - start], y0[: stop - start]) for start, stop in ours.batches]  # same batch sizes
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    tv = {w: torchvision_loader(bundle.train, bundle.mean, bundle.std, args.batch_size, w, 0) for w in workers}
    for _ in range(3):  # warm-up
        step(x0, y0)

    variants = {"(a) cnnzoo pipeline": ours, **{f"(b) torchvision, {w} workers": tv[w] for w in workers},
                "(c) model step only": fixed}  # fmt: skip
    inf = (float("inf"), float("inf"))
    best = {name: inf for name in variants}  # (wall, cpu) of a training epoch, each the minimum of the repeats
    data_only = {name: inf for name in variants if name != "(c) model step only"}
    for r in range(args.repeats):
        ours.set_epoch(r)
        for name, batches in variants.items():
            wall, cpu = time_epoch(batches, step)
            best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
        for name in data_only:
            wall, cpu = time_epoch(variants[name])
            data_only[name] = (min(data_only[name][0], wall), min(data_only[name][1], cpu))

    n_images = ours.num_samples
    print(f"machine: {cpu_model()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
          f"python {sys.version.split()[0]}")  # fmt: skip
    print(f"model {args.model} on {bundle.name} {size[0]}x{size[1]}, {len(bundle.train)} images, {steps} steps of "
          f"batch {args.batch_size}, augmentation {augment}, best of {args.repeats}")  # fmt: skip
    pure = best["(c) model step only"]
    print("epoch = one pass with the model step; data alone = the same pass without it; CPU = this process + workers")
    print(f"{'variant':30s} {'wall s':>7s} {'img/s':>6s} {'x (c)':>6s} {'CPU s':>7s} {'x (c)':>6s}"
          f" {'data alone: wall s':>19s} {'CPU s':>6s}")  # fmt: skip
    for name, (wall, cpu) in best.items():
        alone = (
            f"{data_only[name][0]:19.2f} {data_only[name][1]:6.2f}" if name in data_only else f"{'-':>19s} {'-':>6s}"
        )
        print(
            f"{name:30s} {wall:7.2f} {n_images / wall:6.0f} {wall / pure[0]:6.2f} {cpu:7.2f} {cpu / pure[1]:6.2f} {alone}"
        )
    a = best["(a) cnnzoo pipeline"]
    for w in workers:
        b = best[f"(b) torchvision, {w} workers"]
        print(f"ratio (b, {w} workers) / (a): wall {b[0] / a[0]:.2f}, CPU {b[1] / a[1]:.2f}")
    print(f"ratio (a) / (c): wall {a[0] / pure[0]:.2f}, CPU {a[1] / pure[1]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
