"""Ship a trained run's weights with cnnzoo: ``python -m cnnzoo.pretrained.ship RUN_DIR TAG --command ...``.

The run's ``best`` weights are evaluated on the whole test split in float32 (no bf16
autocast: the number ``cnnzoo eval TAG`` gives on any machine); with ``--fp16`` they are
rounded to float16, evaluated again, and refused if top-1 moves by more than 0.05 points
(the issue's "fp16 where accuracy holds").  Then the safetensors file and the table entry are
written, each atomically; an existing tag or file is never overwritten.  ``--no-weights``
writes only the table row (the larger nets: their top-1, command and size, no file).

A run of ``cnnzoo deep-compress`` ships its ``model.dcz`` (pruned, weight-shared and Huffman-coded:
AlexNet's 61M parameters in a few megabytes, the size Han et al. 2016 made it for).  The entry's
``dtype`` is then ``deep-compression``: the shipped file is decoded (every part checked) into the
dense weights, and the top-1 is measured on what the file decodes to.

The entry also records the predictions of the first test images (``check``), which the tests
compare with what the shipped file gives.
"""

from __future__ import annotations

import argparse
import csv
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from cnnzoo.errors import CnnzooError, ConfigError
from cnnzoo.pretrained.table import DEEP_COMPRESSION

#: the most that float16 storage may move test top-1, in points
FP16_TOLERANCE = 0.05
#: test images whose predictions the entry records for the tests
CHECK_IMAGES = 8
#: the run.json keys an entry keeps: what the weights need to be fed
RUN_KEYS = ("data", "classes", "num_classes", "in_chans", "data_size", "input_size", "mean", "std")
#: the largest file that ships inside the package (GoogLeNet-BN in float16 is 11.3 MB); a larger
#: net ships its row (``--no-weights``) or its deep-compressed file
MAX_SHIPPED_BYTES = 12_000_000
#: configuration keys that describe the training machine, not the recipe
MACHINE_KEYS = {"data_dir": None, "out": None, "resume": False, "device": "auto", "progress": True}


def ship(run_dir, tag: str, *, command: str, fp16: bool = False, weights: bool = True, machine: str | None = None,
         weights_dir=None, limit: int | None = None, batch_size: int = 256, log=print) -> dict[str, Any]:  # fmt: skip
    """Add the run's weights (or with ``weights=False`` only its row) to the table as ``tag``; returns the entry."""
    from cnnzoo.pretrained import table
    from cnnzoo.rundir import RESULTS_FILE, atomic_write_bytes, new_file
    from cnnzoo.train import checkpoint as ckpt
    from cnnzoo.train.config import to_dict
    from cnnzoo.train.runs import LoadedRun, evaluate_loaded, load_run
    from cnnzoo.train.speed import cpu_model_name

    folder = Path(weights_dir) if weights_dir else table.weights_dir()
    run_dir = Path(run_dir)
    base, name = table.split_tag(tag)
    if name is None:
        raise ConfigError(f"a pretrained tag is MODEL.NAME (letters, digits, _), e.g. lenet5.fashion_mnist; "
                          f"got {tag!r}")  # fmt: skip
    if not command or not command.strip():
        raise ConfigError("--command: give the exact command that trained the run")
    entries = table.read_table(folder)
    if tag in entries:
        raise ConfigError(f"{tag} is already in {folder / table.TABLE_FILE}; choose another tag")
    if not run_dir.is_dir():
        raise CnnzooError(f"run directory {run_dir} not found")
    if not (run_dir / RESULTS_FILE).is_file():
        raise ConfigError(f"{run_dir} has not finished (no {RESULTS_FILE}): ship a finished run")
    compressed = (run_dir / "model.dcz").is_file()
    if compressed and fp16:
        raise ConfigError(f"{run_dir} is deep-compressed: its model.dcz ships as it is (no --fp16)")
    file_name = f"{tag}.dcz" if compressed else f"{tag}.safetensors"
    if weights:
        new_file(folder / file_name, "weights file")
    run = load_run(run_dir, "best", device="cpu")
    if run.checkpoint == "int8":
        raise ConfigError(f"{run_dir} is an int8 run (an ONNX Runtime graph): it has no weights to ship")
    if run.meta["spec"]["name"] != base:
        raise ConfigError(f"{tag} names {base}, but {run_dir} trained {run.meta['spec']['name']}; "
                          f"use {run.meta['spec']['name']}.{name}")  # fmt: skip
    if compressed:  # what the shipped file decodes to, not the run's copy of it
        from cnnzoo.compress.deep_compression import decode_model

        dcz = (run_dir / "model.dcz").read_bytes()
        ckpt.load_model_weights(ckpt.unwrap(run.model), decode_model(dcz), str(run_dir / "model.dcz"))
    # float32 evaluation in the default layout: what load_run(TAG) does everywhere
    fp32_meta = {**run.meta, "amp": "none", "channels_last": False}
    run = LoadedRun(run.run_dir, run.model.float(), fp32_meta, run.config, run.device, run.checkpoint)
    report = evaluate_loaded(run, split="test", limit=limit, batch_size=batch_size)
    top1 = 100 * report.top1
    log(f"{tag}: float32 test top-1 {top1:.2f}% on {report.count} images")
    state = {k: v.detach().cpu() for k, v in ckpt.unwrap(run.model).state_dict().items()}
    stored = state
    top1_fp32 = None
    if fp16:
        stored = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        run.model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in stored.items()})
        report16 = evaluate_loaded(run, split="test", limit=limit, batch_size=batch_size)
        top1_fp32, top1 = top1, 100 * report16.top1
        log(f"{tag}: float16-stored test top-1 {top1:.2f}%")
        if abs(top1 - top1_fp32) > FP16_TOLERANCE:
            raise ConfigError(f"float16 storage moves {tag}'s test top-1 from {top1_fp32:.2f}% to {top1:.2f}% "
                              f"(more than {FP16_TOLERANCE} points): ship it without --fp16")  # fmt: skip
    data = dcz if compressed else ckpt.weights_to_bytes(stored, {"format": table.FORMAT, "tag": tag})
    if weights and len(data) > MAX_SHIPPED_BYTES:
        raise ConfigError(f"{tag}'s file would be {len(data) / 1e6:.1f} MB, more than the "
                          f"{MAX_SHIPPED_BYTES / 1e6:g} MB that ship in the package: ship its row with "
                          "--no-weights, or cnnzoo deep-compress the run and ship that")  # fmt: skip
    config = {**to_dict(run.config), **MACHINE_KEYS}
    entry: dict[str, Any] = {
        "spec": run.meta["spec"],
        "file": file_name if weights else None,
        "sha256": table.sha256_of(data) if weights else None,
        "dtype": DEEP_COMPRESSION if compressed else "float16" if fp16 else "float32",
        "bytes": len(data),
        "params": int(sum(p.numel() for p in run.model.parameters())),
        "run": {key: run.meta[key] for key in RUN_KEYS if key in run.meta},
        "config": config,
        "test_top1": round(top1, 2),
        "test_top1_fp32": None if top1_fp32 is None else round(top1_fp32, 2),
        "test_images": report.count,
        "tta_flip": report.tta_flip,
        "command": " ".join(command.split()),
        "machine": machine or cpu_model_name(),
        "date": _finished(run_dir / RESULTS_FILE),
        "train_seconds": _train_seconds(*_trainings(run_dir, run.meta)),
        "check": _check_predictions(run, limit=CHECK_IMAGES),
    }
    if compressed:  # the shares kept and the bits of each layer (the source run's path is this machine's)
        settings = run.meta.get("deep_compression") or {}
        entry["deep_compression"] = {"kept": settings.get("kept"), "bits": settings.get("bits")}
    entry = _plain(entry)
    if weights:
        atomic_write_bytes(folder / file_name, data)
    try:
        atomic_write_bytes(folder / table.TABLE_FILE, table.table_bytes({**entries, tag: entry}))
    except BaseException:
        if weights:  # the table was not written: the file would be an orphan
            (folder / file_name).unlink(missing_ok=True)
        raise
    log(f"{tag}: {'wrote ' + str(folder / file_name) + ' and' if weights else 'wrote'} its entry in "
        f"{folder / table.TABLE_FILE} ({len(data) / 1e6:.2f} MB {entry['dtype']})")  # fmt: skip
    return entry


def _check_predictions(run, limit: int) -> dict[str, Any]:
    """The top-1 class of the first ``limit`` test images and the first one's logits, as shipped."""
    import torch

    from cnnzoo.train import engine

    config = run.config
    bundle = engine.load_config_data(config, limit_train=None, limit_val=None)  # the first images, not a sample
    part = bundle.test.subset(torch.arange(min(limit, len(bundle.test))))
    loader = engine.make_loader(part, batch_size=limit, train=False, device="cpu",
                                input_size=tuple(run.meta["input_size"]), augment=None, mean=run.meta["mean"],
                                std=run.meta["std"], seed=config.seed)  # fmt: skip
    images, labels = next(iter(loader))
    with torch.no_grad():
        logits = run.model.eval()(images).float()
    return {"split": "test", "indices": list(range(len(labels))), "labels": labels.tolist(),
            "predictions": logits.argmax(dim=1).tolist(),
            "logits0": [round(v, 4) for v in logits[0].tolist()]}  # fmt: skip


def _finished(results: Path) -> str:
    return datetime.fromtimestamp(results.stat().st_mtime, tz=timezone.utc).strftime("%Y-%m-%d")


def _trainings(run_dir: Path, meta: dict[str, Any]) -> list[Path]:
    """The ``metrics.csv`` of every training the weights took: a deep-compressed run's source and both stages."""
    source = (meta.get("deep_compression") or {}).get("source")
    if source:
        return [Path(source) / "metrics.csv", run_dir / "prune" / "metrics.csv", run_dir / "share" / "metrics.csv"]
    return [run_dir / "metrics.csv"]


def _train_seconds(*metrics: Path) -> float | None:
    """The sum of the epochs' times in the ``metrics.csv`` files (None when one of them is missing)."""
    total = 0.0
    try:
        for file in metrics:
            with file.open(newline="") as handle:
                total += sum(float(row["seconds"]) for row in csv.DictReader(handle) if row.get("seconds"))
    except (OSError, KeyError, ValueError):
        return None
    return round(total, 1)


def _plain(value):
    """JSON's types only (tuples to lists), so that the table reads back equal."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cnnzoo.pretrained.ship", description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", help="a finished run directory (its best weights; a deep-compressed run: model.dcz)")
    p.add_argument("tag", help="MODEL.NAME, e.g. lenet5.fashion_mnist")
    p.add_argument("--command", required=True, help="the exact command that trained the run (recorded)")
    p.add_argument("--fp16", action="store_true",
                   help=f"store float16 (refused if top-1 moves by more than {FP16_TOLERANCE} points)")
    p.add_argument("--no-weights", dest="weights", action="store_false",
                   help="only the table row (a net too large to ship): top-1, command and size")
    p.add_argument("--machine", help="the training machine (default: this CPU's lscpu model name)")
    p.add_argument("--weights-dir", help="the table's folder (default: the package's)")
    p.add_argument("--limit", type=int, help="evaluate on the first N test images only (for trying the tool)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        ship(args.run_dir, args.tag, command=args.command, fp16=args.fp16, weights=args.weights, machine=args.machine,
             weights_dir=args.weights_dir, limit=args.limit, batch_size=args.batch_size)  # fmt: skip
    except CnnzooError as exc:
        print(f"cnnzoo: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
