"""``synthetic[:k=v,...]``: random images with learnable class patterns (:mod:`cnnzoo.data.synthetic`)."""

from __future__ import annotations

from cnnzoo.data.registry import DatasetRequest, register_dataset


@register_dataset("synthetic", options="k=v,...", default_augment={"crop_padding": 0, "flip": False},
                  help="random images with a learnable pattern per class, no files (classes=10,channels=3,size=32,"
                  "train=1000,test=200,noise=0.35,seed=0)")  # fmt: skip
def load_synthetic(request: DatasetRequest):
    from cnnzoo.data.synthetic import load_synthetic as make_synthetic

    train, test, options = make_synthetic(request.arg, request.seed)
    return request.finish(train, test, name=f"synthetic:{options}" if request.arg else "synthetic")
