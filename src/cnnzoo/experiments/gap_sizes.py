"""``cnnzoo experiment gap-sizes``: does global average pooling let one network take any input size?

The brief's experiment 1 (000, the NIN section): train Network In Network, whose head is global
average pooling (GAP), and ask whether the same weights classify images of other sizes.  Lin,
Chen & Yan (2013, Section 3.2) replace the fully connected layers by one feature map per class,
averaged over the whole map: the classifier has no weight whose shape depends on the map's
height and width, so a larger input only gives larger maps, and the averages stay one number per
class.  A net that flattens its last map into a fully connected layer (LeNet-5, AlexNet, ZFNet)
has a weight matrix sized for exactly one map size, so it takes only the input size it was built
for.

What the experiment does:

1. trains the GAP net (``--model``: ``nin_cifar`` by default, ``nin`` for photographs such as
   ``--data flowers17``) at one input size (``--input-size``, default the model's registered
   size: 32x32 for ``nin_cifar``, so Fashion-MNIST's 28x28 images are padded to 32x32 as LeCun
   et al. did for LeNet-5) with the usual engine (:func:`cnnzoo.train.fit`);
2. trains a net with a fixed fully connected head (``--fixed-model``: ``lenet5`` by default,
   ``zfnet`` for photographs) the same way (same data, epochs, batch size, learning rate, seed) at
   the one size it takes;
3. optionally (``--multi-scale``) trains the GAP net again with every training batch rescaled to
   a size drawn at random from the evaluation sizes it takes (multi-size training: SPP-net, He et
   al. 2014, Section 2.3, alternated 180 and 224 pixels by epoch; here the size changes every
   batch).  A forward pre-hook on the model does the rescaling, so the engine is unchanged;
4. evaluates every net's best weights on the test set at every size of ``--eval-sizes``
   (default 0.5x, 0.75x, 1x, 1.25x, 1.5x and 2x of the GAP net's training size, i.e. 16 to 64
   pixels; the fixed net's own size is added when it is not in the list).  The images at a size
   are the engine's own test input at the training size, rescaled bilinearly: the 1x row is
   exactly what the engine measured, and the only difference between rows is the scale.
   It records, per size, the last feature map's shape (it grows with the input), the width of
   the vector the classifier reads (GAP: always the number of channels; a flattening head:
   channels x height x width) and the test top-1.  Where a net cannot run, the error is caught
   and recorded as "cannot run: ..." (the forward pass's own message; the registry's
   ``check_input_size`` message is in ``results.csv``); sizes below a GAP net's ``min_size``
   are skipped with a note.

Defaults fit a 2-core CPU in about a quarter of an hour: Fashion-MNIST, 5,000 training images,
4 epochs of AdamW (batch 32, learning rate 0.001, cosine schedule, gradient norm clipped at 2:
NIN has no batch normalisation and must learn in a few hundred steps), 500 validation and 2,000
test images.  NIN-CIFAR costs 0.21 G multiply-adds per 32x32 image: it trained at about 41
images/s on the 2-core development VM (2 threads), so its 20,000 training images take about 8
minutes; testing at the six sizes costs 9.6 times a 32x32 pass over the test images (the cost
grows with the area), about 3 minutes; LeNet-5 takes well under a minute.  ``--multi-scale`` adds
about 1.6 times the GAP net's training.  Scale up with ``--limit-train 0`` (all 54,000),
``--epochs``, ``--data cifar10``, or ``--data flowers17 --device cuda`` (``nin`` at 224x224 against
``zfnet``).

Everything goes into ``--out`` (default ``runs/experiment-gap-sizes``): one run directory per
training, ``results.md`` (the table and a one-line answer computed from the numbers),
``results.csv`` (one row per net and size) and ``gap_sizes.png`` (test top-1 and the feature
map's side against the input size).  ``OUT/run.json`` records the training settings (a run directory of kind
``experiment:gap-sizes``): the experiment run again with the same settings reuses the trained
runs and their evaluations (``sizes.json`` in each run directory) and resumes an interrupted
training; other settings in the same folder are refused, naming the keys that differ.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

from cnnzoo.errors import CnnzooError, ConfigError
from cnnzoo.experiments import _runs
from cnnzoo.experiments._runs import markdown_table, percent

DEFAULT_SCALES = "0.5x,0.75x,1x,1.25x,1.5x,2x"
#: data sets of photographs (stored or cropped at 224x224): the ImageNet-sized nets by default
PHOTO_DATA = ("flowers17", "flowers102", "imagefolder", "imagenet")
#: the training flags (from TrainConfig) and notes for their help; defaults: run_gap_sizes_experiment's
TRAINING_FLAGS = {
    "data": "", "data_dir": "", "input_size": "the GAP net's training size; default: the model's, 32 for nin_cifar",
    "epochs": "", "limit_train": "", "limit_val": "", "batch_size": "", "optimizer": "a cosine schedule either way",
    "lr": "try 0.02 with sgd", "grad_clip": "NIN has no batch norm", "seed": "", "device": "", "threads": "",
}  # fmt: skip

Size = tuple[int, int]


@dataclass
class SizeResult:
    """One net measured at one input size."""

    variant: str  # "gap", "multi-scale" or "fixed"
    model: str
    size: Size
    scale: float  # the side relative to the GAP net's training size
    status: str  # "ok", "cannot run" or "skipped"
    top1: float | None = None
    feature_map: tuple[int, ...] | None = None  # (C, H, W) of forward_features
    head_input: int | None = None  # width of the vector the classifier layer reads
    reason: str = ""  # why it cannot run / was skipped (one line)
    registry_error: str = ""  # what the registry's check_input_size says about this size

    @property
    def label(self) -> str:
        return size_label(self.size)


def size_label(size: Size) -> str:
    return f"{size[0]}x{size[1]}"


def one_line(exc: BaseException, limit: int = 160) -> str:
    """The first line of an exception's message, shortened: what goes in a table cell."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ------------------------------------------------------------------------------------------
# sizes
# ------------------------------------------------------------------------------------------


def parse_eval_sizes(text: str | Sequence[str], train_size: Size) -> list[Size]:
    """``"0.5x,1x,40"`` -> sizes: ``Nx`` scales the training size, a plain ``N`` is ``N x N`` pixels.

    Sorted by area, duplicates dropped; a malformed or non-positive entry is a :class:`ConfigError`.
    """
    items = text.split(",") if isinstance(text, str) else [str(t) for t in text]
    items = [item.strip().lower() for item in items if item.strip()]
    if not items:
        raise ConfigError("--eval-sizes is empty; give e.g. 0.5x,1x,2x or 16,32,64")
    sizes: list[Size] = []
    for item in items:
        scale_given = item.endswith("x")
        try:
            value = float(item[:-1] if scale_given else item)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value <= 0 or (not scale_given and not value.is_integer()):
            raise ConfigError(
                f"bad eval size {item!r}: give scales of the training size (0.5x, 2x) or sides in pixels (16, 64)"
            )
        if scale_given:
            size = (max(1, round(train_size[0] * value)), max(1, round(train_size[1] * value)))
        else:
            size = (int(value), int(value))
        if size not in sizes:
            sizes.append(size)
    return sorted(sizes, key=lambda s: (s[0] * s[1], s))


def rescaled(loader, size: Size):
    """The batches of ``loader`` rescaled to ``size`` (bilinear, antialiased when shrinking)."""
    import torch.nn.functional as F

    for images, labels in loader:
        if tuple(images.shape[-2:]) != tuple(size):
            images = F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)
        yield images, labels


class RandomRescale:
    """Forward pre-hook for multi-scale training: each training batch gets a size drawn at random.

    Drawn from torch's global generator, whose state the engine checkpoints, so a resumed run
    draws the same sizes.  In eval mode the input passes unchanged (validation stays at the
    training size).
    """

    def __init__(self, sizes: Sequence[Size]) -> None:
        self.sizes = [tuple(s) for s in sizes]

    def __call__(self, module, args):
        import torch
        import torch.nn.functional as F

        if not module.training:
            return None
        (images,) = args
        size = self.sizes[int(torch.randint(len(self.sizes), (1,)))]
        if tuple(images.shape[-2:]) == size:
            return None
        return (F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True),)


# ------------------------------------------------------------------------------------------
# the experiment
# ------------------------------------------------------------------------------------------


@dataclass
class Net:
    """One training of the experiment."""

    variant: str
    model: str
    train_size: Size
    run_dir: Path


def run_gap_sizes_experiment(
    *,
    data: str = "fashion-mnist",
    data_dir: str | None = None,
    model: str | None = None,
    fixed_model: str | None = None,
    input_size: Size | None = None,
    eval_sizes: str | Sequence[str] = DEFAULT_SCALES,
    multi_scale: bool = False,
    epochs: int = 4,
    limit_train: int | None = 5000,
    limit_val: int | None = 500,
    limit_test: int | None = 2000,
    seed: int = 0,
    batch_size: int = 32,
    optimizer: str = "adamw",
    lr: float = 0.001,
    grad_clip: float | None = 2.0,
    out: str | Path = "runs/experiment-gap-sizes",
    device: str = "auto",
    threads: int | None = 2,
    log: Callable[[str], None] = print,
) -> list[SizeResult]:
    """Run the experiment (module docstring); returns one :class:`SizeResult` per net and size."""
    from cnnzoo.data import load_dataset
    from cnnzoo.registry import model_info
    from cnnzoo.train.engine import resolve_device, torch_threads

    photos = data.split(":", 1)[0].strip().lower() in PHOTO_DATA
    model = model or ("nin" if photos else "nin_cifar")
    fixed_model = fixed_model or ("zfnet" if photos else "lenet5")
    gap_info, fixed_info = model_info(model), model_info(fixed_model)
    train_size = tuple(input_size) if input_size else tuple(gap_info.input_size[1:])
    gap_info.check_input_size(*train_size)  # a too-small --input-size fails before any work
    sizes = parse_eval_sizes(eval_sizes, train_size)
    fixed_size = tuple(fixed_info.input_size[1:]) if fixed_info.fixed_size else train_size
    if fixed_size not in sizes:
        sizes = sorted([*sizes, fixed_size], key=lambda s: (s[0] * s[1], s))
    for name, value in (("epochs", epochs), ("batch size", batch_size), ("threads", threads or 1)):
        if value < 1:
            raise ConfigError(f"{name} must be >= 1, got {value}")
    multi_sizes = [s for s in sizes if _refusal(gap_info, s) is None]
    if multi_scale and len(multi_sizes) < 2:
        raise ConfigError(f"--multi-scale needs at least two eval sizes that {model} takes; it takes "
                          f"{', '.join(map(size_label, multi_sizes)) or 'none'} of them")  # fmt: skip
    resolve_device(device)  # --device cuda without a GPU: one line, before the data loads
    # NIN has no batch normalisation, and a few hundred steps is all a CPU budget buys.  Measured on
    # Fashion-MNIST: SGD at lr 0.02 without clipping left nin_cifar at chance (dead ReLUs); with the
    # gradient norm clipped at 2 it learns, and AdamW (lr 1e-3, clipped) learns fastest.
    training = dict(epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr, grad_clip=grad_clip,
                    limit_train=limit_train, limit_val=limit_val)  # fmt: skip
    # the nets' names hold the model, the size and the seed; the rest must be shared by the folder's runs
    settings = dict(training, data=data)
    if multi_scale:  # the engine cannot see the sizes the multi-scale net's hook draws from
        settings["multi_scale_sizes"] = [list(s) for s in multi_sizes]
    exp = _runs.ExperimentDir.open(out, "gap-sizes", settings)
    with torch_threads(threads):
        bundle = load_dataset(data, data_dir=data_dir, val_fraction=0.1, seed=seed, limit_train=limit_train,
                              limit_val=limit_val, limit_test=limit_test)  # fmt: skip
        if bundle.test is None or len(bundle.test) == 0:
            raise ConfigError(f"{bundle.name} has no test split to evaluate at several sizes")
        log(f"{bundle.name}: {len(bundle.train)} training, {len(bundle.val) if bundle.val else 0} validation, "
            f"{len(bundle.test)} test images; eval sizes {', '.join(map(size_label, sizes))}")  # fmt: skip

        def net(variant: str, name: str, size: Size) -> Net:
            return Net(variant, name, size, exp / f"{variant.replace('-', '')}-{name}-{size_label(size)}-seed{seed}")

        nets = [net("gap", model, train_size)]
        if multi_scale:
            nets.append(net("multi-scale", model, train_size))
        nets.append(net("fixed", fixed_model, fixed_size))
        config = dict(training, data=bundle.name, seed=seed)
        results: list[SizeResult] = []
        for net in nets:
            _train(net, bundle, config, dict(data_dir=data_dir, device=device, threads=threads),
                   multi_sizes if net.variant == "multi-scale" else None, log)  # fmt: skip
            results += _measure(net, bundle, sizes, train_size, device, seed, log)
    write_results(results, exp.path, describe_setup(bundle, epochs, nets))
    return results


def _train(net: Net, bundle, config: dict, execution: dict, multi_sizes: list[Size] | None, log) -> None:
    """Train ``net`` into its run directory, unless a finished run with the same settings is there."""
    from cnnzoo.registry import create_model
    from cnnzoo.train import fit

    wanted = dict(config, model=net.model, input_size=list(net.train_size))
    what = f"{net.variant} net {net.model} at {size_label(net.train_size)}"
    if multi_sizes:
        what += f", each batch rescaled to one of {', '.join(map(size_label, multi_sizes))}"

    def train(resume: bool):
        log(f"training the {what}")
        target: object = net.model
        record = {}
        if multi_sizes:
            # The engine feeds every batch at one size; the hook rescales it before the net sees it.
            module = create_model(net.model, num_classes=len(bundle.classes), in_chans=bundle.in_chans)
            module.register_forward_pre_hook(RandomRescale(multi_sizes))
            target = module
            record = {"multiscale_sizes": [list(s) for s in multi_sizes]}
        return fit(target, bundle=bundle, out=str(net.run_dir), resume=resume, log=log,
                   record=record, progress=False, **execution, **{k: v for k, v in wanted.items() if k != "model"})

    _runs.train_once(net.run_dir, train, wanted=wanted, log=log, what=f"{net.variant} net {net.model}")


def _refusal(info, size: Size) -> str | None:
    """The registry's one-line reason why ``info``'s net cannot take ``size``, or None."""
    try:
        info.check_input_size(*size)
    except CnnzooError as exc:
        return str(exc)
    return None


def _measure(net: Net, bundle, sizes: list[Size], gap_train_size: Size, device: str, seed: int,
             log) -> list[SizeResult]:  # fmt: skip
    """Test top-1, feature map and head width of ``net``'s best weights at every size (cached in sizes.json)."""
    from cnnzoo.data import make_loader
    from cnnzoo.registry import create_model, model_info
    from cnnzoo.train.checkpoint import load_model_weights, load_weights
    from cnnzoo.train.engine import resolve_device

    cache_file = net.run_dir / "sizes.json"
    test_set = f"{bundle.name}, {len(bundle.test)} test images, seed {seed}"
    cache = json.loads(cache_file.read_text()) if cache_file.is_file() else {}
    if cache.get("test_set") != test_set:
        cache = {"test_set": test_set, "sizes": {}}
    info = model_info(net.model)
    dev = resolve_device(device)
    model = create_model(net.model, num_classes=len(bundle.classes), in_chans=bundle.in_chans)
    tensors, _ = load_weights(net.run_dir / "best.safetensors")
    load_model_weights(model, tensors, f"{net.run_dir / 'best.safetensors'}")
    model.to(dev).eval()
    # The engine's own test input at the training size; every other size is this input rescaled.
    # (128 a batch: at 2x the size a batch holds 4x the activations)
    loader = make_loader(bundle.test, batch_size=128, train=False, device=dev,
                         input_size=net.train_size, mean=bundle.mean, std=bundle.std, seed=seed)  # fmt: skip
    first_image = next(iter(loader))[0][:1]
    results = []
    for size in sizes:
        scale = size[0] / gap_train_size[0]
        refusal = _refusal(info, size)
        cached = cache["sizes"].get(size_label(size))
        start = time.perf_counter()
        if cached is not None:
            feature_map = tuple(cached["feature_map"]) if cached["feature_map"] else None
            result = SizeResult(**{**cached, "size": tuple(cached["size"]), "feature_map": feature_map})
        elif refusal is not None and not info.fixed_size:
            # below the net's min_size: its pooling stages would shrink the map to nothing
            result = SizeResult(net.variant, net.model, size, scale, "skipped", reason=refusal,
                                registry_error=refusal)  # fmt: skip
        else:
            result = _run_at(model, info, loader, first_image, size, scale, net, len(bundle.classes), dev, refusal)
            cache["sizes"][size_label(size)] = asdict(result)
            _runs.write_text(cache_file, json.dumps(cache, indent=1))
        results.append(result)
        shown = percent(result.top1) if result.status == "ok" else f"{result.status}: {result.reason}"
        took = " (from sizes.json)" if cached is not None else f" ({time.perf_counter() - start:.0f} s)"
        log(f"{net.variant} net {net.model} at {result.label}: {shown}{took if result.status == 'ok' else ''}")
    return results


def _run_at(model, info, loader, first_image, size: Size, scale: float, net: Net, num_classes: int, dev,
            refusal: str | None) -> SizeResult:  # fmt: skip
    """Probe one image at ``size`` (feature map, head width), then the whole test set if it runs."""
    import torch

    from cnnzoo.train import evaluate

    result = SizeResult(net.variant, net.model, size, scale, "ok", registry_error=refusal or "")
    image = next(rescaled([(first_image, None)], size))[0]
    with torch.no_grad():
        try:
            features = model.forward_features(image)
            result.feature_map = tuple(features.shape[1:])
            if info.fixed_size:
                # a flattening head is fed every position of the map: C x H x W numbers
                result.head_input = int(features[0].numel())
            else:
                result.head_input = int(model.forward_head(features, pre_logits=True).shape[1])
            model.forward_head(features)
        except (RuntimeError, ValueError) as exc:
            result.status, result.reason = "cannot run", one_line(exc)
            return result
    if refusal is not None:  # the registry refuses a size the forward pass happened to accept
        result.status, result.reason = "cannot run", refusal
        return result
    meter = evaluate(model, rescaled(loader, size), dev, num_classes)
    result.top1 = meter.top1_acc
    return result


# ------------------------------------------------------------------------------------------
# reporting
# ------------------------------------------------------------------------------------------


def describe_setup(bundle, epochs: int, nets: Sequence[Net]) -> str:
    """One sentence: the data, the trainings, the test set."""
    trained = ", ".join(f"{n.model} at {size_label(n.train_size)}"
                        + (" (multi-scale)" if n.variant == "multi-scale" else "") for n in nets)  # fmt: skip
    return (f"{bundle.name}: {len(bundle.train)} training images, {epochs} epoch{'s' * (epochs != 1)}; "
            f"trained {trained}; test top-1 on {len(bundle.test)} test images, rescaled to each size")  # fmt: skip


VARIANT_TITLES = {"gap": "", "multi-scale": " multi-scale", "fixed": ""}


def _shape(shape) -> str:
    return "x".join(map(str, shape)) if shape else "-"


def _cell(result: SizeResult | None) -> str:
    if result is None:
        return "-"
    if result.status == "ok":
        return percent(result.top1, 1)
    if result.status == "skipped":
        return "skipped (below min size)"  # the reason is in the notes under the table
    return f"{result.status}: {result.reason}"


def format_table(results: Sequence[SizeResult]) -> str:
    """Markdown: one row per input size; per net its feature map, classifier input and test top-1."""
    variants = [v for v in ("gap", "multi-scale", "fixed") if any(r.variant == v for r in results)]
    models = {v: next(r.model for r in results if r.variant == v) for v in variants}
    sizes = sorted({r.size for r in results}, key=lambda s: (s[0] * s[1], s))
    by_key = {(r.variant, r.size): r for r in results}
    header = ["input", "scale"]
    for v in variants:
        name = models[v] + VARIANT_TITLES[v]
        if v != "multi-scale":  # its maps are the GAP net's: same architecture
            header += [f"{name}: last feature map", f"{name}: classifier input"]
        header.append(f"{name}: test top-1")
    rows = []
    for size in sizes:
        any_result = next(r for r in results if r.size == size)
        row = [size_label(size), f"{any_result.scale:g}x"]
        for v in variants:
            r = by_key.get((v, size))
            if v != "multi-scale":
                row += [_shape(r.feature_map) if r else "-", str(r.head_input) if r and r.head_input else "-"]
            row.append(_cell(r))
        rows.append(row)
    return markdown_table(header, rows, align="l" + "r" * (len(header) - 1))


def answer(results: Sequence[SizeResult]) -> str:
    """The experiment's answer in one line, from the numbers."""
    parts = []
    for variant, title in (("gap", "GAP"), ("multi-scale", "GAP, multi-scale training"), ("fixed", "fixed FC head")):
        rows = [r for r in results if r.variant == variant]
        if not rows:
            continue
        ran = [r for r in rows if r.status == "ok"]
        model = rows[0].model
        home = next((r for r in ran if math.isclose(r.scale, 1.0)), None) if variant != "fixed" else None
        if variant == "fixed":
            title = _fixed_title(model)
            if len(ran) == 1:
                text = f"{title}: {model} ran only at {ran[0].label} ({percent(ran[0].top1, 1)})"
            else:
                text = f"{title}: {model} ran at {len(ran)} of {len(rows)} sizes"
            failed = [r for r in rows if r.status == "cannot run"]
            if failed:
                text += f", cannot run at the other {len(failed)}" if len(ran) + len(failed) == len(rows) \
                    else f", cannot run at {len(failed)}"
        else:
            skipped = [r for r in rows if r.status == "skipped"]
            if len(ran) == len(rows):
                text = f"{title}: {model} ran at all {len(rows)} sizes ({ran[0].label} to {ran[-1].label})"
            else:
                text = f"{title}: {model} ran at {len(ran)} of {len(rows)} sizes"
            if home is not None:
                text += f", {percent(home.top1, 1)} at its training size {home.label}"
            near = [r.top1 for r in ran if r is not home and 0.75 - 1e-9 <= r.scale <= 1.25 + 1e-9]
            if near:
                text += f", {_range(near)} within ±25%"
            far = [r for r in ran if r.scale < 0.75 - 1e-9 or r.scale > 1.25 + 1e-9]
            if far:
                text += f", {_range([r.top1 for r in far])} further out ({', '.join(r.label for r in far)})"
            if skipped:
                text += f" (skipped below its min size: {', '.join(r.label for r in skipped)})"
        parts.append(text)
    return "; ".join(parts)


def _fixed_title(model: str) -> str:
    from cnnzoo.registry import model_info

    return "fixed FC head" if model_info(model).fixed_size else "contrast net"


def _range(values: Sequence[float]) -> str:
    low, high = min(values), max(values)
    if math.isclose(low, high):
        return percent(low, 1)
    return f"{percent(low, 1)} to {percent(high, 1)}"


def notes(results: Sequence[SizeResult]) -> list[str]:
    lines = []
    registry = next((r.registry_error for r in results if r.variant == "fixed" and r.registry_error), "")
    if registry:
        lines.append(f"The registry refuses these sizes before any computation, e.g.: \"{registry}\".")
    for reason in dict.fromkeys(r.reason for r in results if r.status == "skipped"):
        lines.append(f"Skipped: {reason}.")
    return lines


def write_results(results: Sequence[SizeResult], out: Path, setup: str) -> None:
    out = Path(out)
    header = ["variant", "model", "input", "scale", "status", "test_top1", "feature_map", "classifier_input", "reason",
              "registry_error"]  # fmt: skip
    _runs.write_csv(out / "results.csv", header, [
        [r.variant, r.model, r.label, f"{r.scale:g}", r.status, "" if r.top1 is None else f"{r.top1:.4f}",
         _shape(r.feature_map), r.head_input or "", r.reason, r.registry_error] for r in results])  # fmt: skip
    text = f"# Does global average pooling take any input size?\n\n{setup}.\n\n{format_table(results)}\n\n"
    text += f"**Answer:** {answer(results)}.\n"
    extra = notes(results)
    if extra:
        text += "\n" + "\n".join(f"- {line}" for line in extra) + "\n"
    _runs.write_text(out / "results.md", text)
    plot_results(results, out / "gap_sizes.png")


PLOT_LABELS = {"gap": " (GAP)", "multi-scale": " (GAP, multi-scale)"}


def plot_results(results: Sequence[SizeResult], path: Path) -> Path:
    """Test top-1 against the input side (cannot-run sizes marked), and the feature map's side."""
    with _runs.figure(path, 1, 2, figsize=(11, 4)) as (fig, (ax, ax_map)):
        _draw(results, ax, ax_map)
    return Path(path)


def _draw(results: Sequence[SizeResult], ax, ax_map) -> None:
    colours = {"gap": "tab:blue", "multi-scale": "tab:green", "fixed": "tab:red"}
    for variant in ("gap", "multi-scale", "fixed"):
        rows = [r for r in results if r.variant == variant]
        if not rows:
            continue
        label = rows[0].model + (f" ({_fixed_title(rows[0].model)})" if variant == "fixed" else PLOT_LABELS[variant])
        ran = [r for r in rows if r.status == "ok"]
        ax.plot([r.size[0] for r in ran], [100 * r.top1 for r in ran], marker="o", color=colours[variant], label=label)
        failed = [r for r in rows if r.status == "cannot run"]
        if failed:
            ax.scatter([r.size[0] for r in failed], [0] * len(failed), marker="x", color=colours[variant],
                       label=f"{rows[0].model}: cannot run (drawn at 0)", zorder=3)  # fmt: skip
        mapped = [r for r in rows if r.feature_map and variant != "multi-scale"]
        if mapped:
            ax_map.plot([r.size[0] for r in mapped], [r.feature_map[-1] for r in mapped], marker="o",
                        color=colours[variant], label=rows[0].model)  # fmt: skip
    home = next((r.size[0] for r in results if r.variant == "gap" and math.isclose(r.scale, 1.0)), None)
    for axis in (ax, ax_map):
        if home:
            axis.axvline(home, color="gray", linestyle=":", linewidth=1)
        axis.set_xlabel("input side (pixels)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    ax.set(ylabel="test top-1 (%)", title="one set of weights, test images rescaled", ylim=(-3, 103))
    ax_map.set(ylabel="last feature map side", title="the last feature map grows with the input")


# ------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="the GAP net (default nin_cifar; nin for flowers17/flowers102/image folders)")
    p.add_argument("--fixed-model",
                   help="the net with a fixed fully connected head (default lenet5; zfnet for photographs)")
    p.add_argument("--eval-sizes", default=DEFAULT_SCALES,
                   help=f"sizes to test at, comma-separated: scales of the training size (Nx) or sides in pixels "
                   f"(default {DEFAULT_SCALES})")  # fmt: skip
    p.add_argument("--multi-scale", action="store_true",
                   help="also train the GAP net on batches rescaled to random eval sizes (costs ~1.6x the GAP run)")
    p.add_argument("--limit-test", type=_runs.image_limit, default=2000, help="test images, 0 = all (default 2000)")


@_runs.training_experiment(
    "gap-sizes",
    "NIN's global average pooling: one set of weights at 0.5x-2x its training size, vs a fixed FC head",
    run_gap_sizes_experiment, TRAINING_FLAGS, add_arguments,
)  # fmt: skip
def run(args: argparse.Namespace, training: dict) -> int:
    results = run_gap_sizes_experiment(model=args.model, fixed_model=args.fixed_model, eval_sizes=args.eval_sizes,
                                       multi_scale=args.multi_scale, limit_test=args.limit_test, out=args.out,
                                       **training)  # fmt: skip
    print()
    print(format_table(results))
    print(f"\n{answer(results)}")
    print(f"\nwritten: {Path(args.out) / 'results.md'}, results.csv, gap_sizes.png")
    return 0
