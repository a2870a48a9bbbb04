"""Class subsets of a data set, with few labelled images per class (for transfer experiments).

``class_subset(bundle, [5, 6, 7, 8, 9], per_class=10)`` keeps classes 5-9 (relabelled 0-4),
ten seeded training images per class, a validation split drawn from the *other* training
images of those classes (``val_per_class`` each) and the whole test split of those classes.
The normalisation statistics stay the parent data set's, so a network pretrained on other
classes of the same data set sees its inputs scaled as before.

The training engine takes such a bundle directly: ``fit(model, data=bundle.name, bundle=bundle)``.
"""

from __future__ import annotations

from typing import Sequence

import torch

from cnnzoo.data import DataBundle, FolderSplit, TensorSplit
from cnnzoo.data.base import seed_for
from cnnzoo.errors import ConfigError


def parse_classes(text: str | Sequence[int | str], names: Sequence[str]) -> list[int]:
    """``"5-9"``, ``"0,2,4"``, ``["Sandal", "Bag"]`` or ``[5, 6]`` -> class indices of ``names``."""
    items: list = [t.strip() for t in text.split(",") if t.strip()] if isinstance(text, str) else list(text)
    out: list[int] = []
    for item in items:
        if isinstance(item, int):
            out.append(item)
        elif isinstance(item, str) and "-" in item and all(p.strip().isdigit() for p in item.split("-", 1)):
            low, high = (int(p) for p in item.split("-", 1))
            if low > high:
                raise ConfigError(f"class range {item!r} runs backwards")
            out.extend(range(low, high + 1))
        elif isinstance(item, str) and item.isdigit():
            out.append(int(item))
        elif item in names:
            out.append(list(names).index(item))
        else:
            raise ConfigError(f"unknown class {item!r}; give indices (e.g. 5-9) or names from: {', '.join(names)}")
    bad = [c for c in out if not 0 <= c < len(names)]
    if bad:
        raise ConfigError(f"class index {bad[0]} out of range: the data set has classes 0-{len(names) - 1}")
    if len(set(out)) != len(out):
        raise ConfigError(f"a class is listed twice in {text!r}")
    if not out:
        raise ConfigError("no class given")
    return out


def _select(split, keep: torch.Tensor, mapping: dict[int, int], names: list[str]):
    if isinstance(split, TensorSplit):
        labels = torch.tensor([mapping[int(v)] for v in split.labels[keep]], dtype=torch.int64)
        return TensorSplit(split.images[keep], labels, names)
    if isinstance(split, FolderSplit):
        samples = [(split.samples[int(i)][0], mapping[split.samples[int(i)][1]]) for i in keep]
        return FolderSplit(samples, names, split.in_chans, split.root, split.skip_bad_images)
    raise TypeError(f"unsupported split {type(split).__name__}")


def _per_class_indices(labels: torch.Tensor, classes: list[int], count: int | None, generator) -> dict[int, torch.Tensor]:
    out = {}
    for c in classes:
        members = torch.nonzero(labels == c).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        out[c] = members if count is None else members[:count]
    return out


def class_subset(
    bundle: DataBundle,
    classes: Sequence[int],
    per_class: int | None = None,
    val_per_class: int | None = None,
    seed: int = 0,
) -> DataBundle:
    """``bundle`` restricted to ``classes`` (relabelled ``0..k-1`` in the order given).

    ``per_class`` training images per class (seeded; all when None).  The validation split
    is ``val_per_class`` images per class drawn from the remaining training images when
    given, otherwise the bundle's own validation split restricted to the classes.
    """
    classes = list(classes)
    if per_class is not None and per_class < 1:
        raise ConfigError(f"per_class must be >= 1, got {per_class}")
    names = [bundle.classes[c] for c in classes]
    mapping = {c: i for i, c in enumerate(classes)}
    generator = torch.Generator().manual_seed(seed_for(seed, 0x7A5F))
    labels = bundle.train.labels
    shuffled = _per_class_indices(labels, classes, None, generator)
    short = [bundle.classes[c] for c in classes if per_class is not None and len(shuffled[c]) < per_class]
    if short:
        raise ConfigError(f"class {short[0]!r} has fewer than {per_class} training images")
    train_idx = torch.cat([m if per_class is None else m[:per_class] for m in shuffled.values()])
    train = _select(bundle.train, train_idx.sort().values, mapping, names)
    if val_per_class is not None:
        if per_class is None:
            raise ConfigError("val_per_class needs per_class (the validation images come from the rest)")
        val_idx = torch.cat([m[per_class:per_class + val_per_class] for m in shuffled.values()])
        val = _select(bundle.train, val_idx.sort().values, mapping, names)
    elif bundle.val is not None:
        keep = torch.nonzero(torch.isin(bundle.val.labels, torch.tensor(classes))).flatten()
        val = _select(bundle.val, keep, mapping, names)
    else:
        val = None
    test = None
    if bundle.test is not None:
        keep = torch.nonzero(torch.isin(bundle.test.labels, torch.tensor(classes))).flatten()
        test = _select(bundle.test, keep, mapping, names)
    span = _class_span(classes)
    suffix = f", {per_class} per class" if per_class is not None else ""
    return DataBundle(
        name=f"{bundle.name} (classes {span}{suffix})",
        classes=names,
        in_chans=bundle.in_chans,
        image_size=bundle.image_size,
        mean=bundle.mean,
        std=bundle.std,
        train=train,
        val=val,
        test=test,
        default_augment=dict(bundle.default_augment),
        source=bundle.source,
    )


def _class_span(classes: list[int]) -> str:
    if classes == list(range(classes[0], classes[-1] + 1)) and len(classes) > 2:
        return f"{classes[0]}-{classes[-1]}"
    return ",".join(map(str, classes))


__all__ = ["class_subset", "parse_classes"]
