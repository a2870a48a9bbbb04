"""Building a model from a shipped entry: the architecture from its spec, the weights checked and strict.

The three ways in all end here: :func:`create_pretrained` (``create_model(..., pretrained=True)``
and the ``name.tag`` form), :func:`load_pretrained_run` (``load_run(TAG)``, so ``eval``,
``predict``, ``summary``, ``bench`` and ``export`` through ``model_or_run``) and
:func:`pretrained_state_dict` (``finetune --from TAG``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cnnzoo.errors import ConfigError
from cnnzoo.modelspec import ModelSpec
from cnnzoo.pretrained.table import (DEEP_COMPRESSION, PretrainedError, pretrained_entry, read_checked_bytes, split_tag,
                                     tag_for_name)


def pretrained_state_dict(entry: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The entry's tensors in float32 (float16 files upcast, a Deep Compression file decoded), after the hash check."""
    from safetensors.torch import load

    data = read_checked_bytes(entry)
    if entry.get("dtype") == DEEP_COMPRESSION:
        from cnnzoo.compress.deep_compression import CompressedFileError, decode_model

        try:
            return decode_model(data)
        except CompressedFileError as exc:  # the hash matched: the table itself is wrong
            raise PretrainedError(f"the weights of {entry['tag']} cannot be decoded ({exc})") from None
    try:
        tensors = load(data)
    except Exception as exc:  # a file whose hash matches but safetensors refuses: a bad table entry
        raise PretrainedError(f"the weights of {entry['tag']} cannot be read ({' '.join(str(exc).split())})") from None
    return {key: value.float() if value.is_floating_point() else value for key, value in tensors.items()}


def entry_spec(entry: dict[str, Any]) -> ModelSpec:
    return ModelSpec.from_dict(entry["spec"])


def build_entry(entry: dict[str, Any], *, weights: bool = True, options: dict[str, Any] | None = None) -> nn.Module:
    """The entry's architecture (its spec, with ``options`` over its own), with its weights loaded strictly."""
    from cnnzoo.train import checkpoint as ckpt

    spec = entry_spec(entry)
    if options:
        spec.options.update(options)
    model = spec.build()
    if weights:
        ckpt.load_model_weights(model, pretrained_state_dict(entry), f"the weights of {entry['tag']}")
    model.pretrained_cfg = pretrained_cfg(entry)
    return model


def pretrained_cfg(entry: dict[str, Any]) -> dict[str, Any]:
    """What a user of the weights needs to feed them (timm's ``pretrained_cfg``)."""
    run = entry["run"]
    return {"tag": entry["tag"], "data": run["data"], "classes": list(run["classes"]),
            "num_classes": run["num_classes"], "in_chans": run["in_chans"],
            "input_size": (run["in_chans"], *run["input_size"]), "mean": tuple(run["mean"]), "std": tuple(run["std"]),
            "test_top1": entry.get("test_top1")}  # fmt: skip


def create_pretrained(name: str, num_classes: int | None = None, in_chans: int | None = None, *,
                      pretrained: bool = False, features_only: bool = False, out_indices=None,
                      **options) -> nn.Module:  # fmt: skip
    """``create_model`` for ``name.tag`` or ``pretrained=True``: the entry's architecture, its weights if asked.

    Another ``num_classes`` than the entry's re-initialises the head (``reset_classifier``) and
    another ``in_chans`` adapts the first convolution (:mod:`cnnzoo.transfer.adapt`), as
    ``cnnzoo finetune`` does; the rest keeps the shipped weights.
    """
    from cnnzoo.registry import check_in_chans, check_num_classes

    if num_classes is not None:
        check_num_classes(num_classes)
    if in_chans is not None:
        check_in_chans(in_chans)
    _, tag = split_tag(name)
    tag_name = name if tag is not None else tag_for_name(name)
    entry = pretrained_entry(tag_name, need_weights=pretrained)
    model = build_entry(entry, weights=pretrained, options=options)
    spec = entry_spec(entry)
    spec.options.update(options)
    changes_head = num_classes is not None and num_classes != model.num_classes
    changes_stem = in_chans is not None and in_chans != model.in_chans
    if (changes_head or changes_stem) and spec.transforms:
        changes = ", ".join(t["name"] for t in spec.transforms)
        raise ConfigError(f"{tag_name} was changed after building ({changes}): fine-tune it for other classes "
                          f"or channels with cnnzoo finetune --from {tag_name}")  # fmt: skip
    if changes_stem:
        from cnnzoo.transfer.adapt import adapt_in_chans

        adapt_in_chans(model, in_chans)
        spec.in_chans = in_chans
    if changes_head:
        model.reset_classifier(num_classes)
        spec.num_classes = num_classes
    # what fit() records and load_run() rebuilds: this architecture, the new sizes included
    model.model_spec = spec
    if features_only:
        from cnnzoo.features import features_only as cut_after_stages
        from cnnzoo.registry import model_info

        return cut_after_stages(model, out_indices, input_side=model_info(spec.name).input_size[1])
    return model


def load_pretrained_run(tag: str, device: str = "auto"):
    """A :class:`~cnnzoo.train.runs.LoadedRun` of the shipped entry ``tag``: what ``load_run(TAG)`` returns.

    Its ``meta`` is a ``run.json`` record (the data, classes, sizes, normalisation) that asks
    for float32 evaluation (no bf16 autocast, the default layout), which is how the table's
    ``test_top1`` was measured; ``run_dir`` is the folder of the weights (never written to).
    """
    from cnnzoo.pretrained.table import weights_dir
    from cnnzoo.train.config import TrainConfig, from_dict
    from cnnzoo.train.engine import resolve_device
    from cnnzoo.train.runs import LoadedRun

    entry = pretrained_entry(tag)
    model = build_entry(entry)
    meta = {**entry["run"], "model": entry["spec"]["name"], "spec": dict(entry["spec"]), "kind": "pretrained",
            "pretrained": tag, "amp": "none", "channels_last": False}  # fmt: skip
    config = from_dict(entry["config"], source=f"the configuration of {tag}") if entry.get("config") else \
        TrainConfig(data=entry["run"]["data"])  # fmt: skip
    dev = resolve_device(device)
    model.to(dev).eval()
    return LoadedRun(weights_dir(), model, meta, config, dev, "pretrained", tag=tag)


__all__ = ["build_entry", "create_pretrained", "load_pretrained_run", "pretrained_cfg", "pretrained_state_dict"]
