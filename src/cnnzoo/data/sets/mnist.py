"""``mnist`` and ``fashion-mnist``: the idx files (:mod:`cnnzoo.data.idx`)."""

from __future__ import annotations

from cnnzoo.data.registry import DatasetRequest, register_dataset


@register_dataset("fashion-mnist", aliases=("fashion_mnist", "fashionmnist"), downloads=True,
                  help="Fashion-MNIST (Xiao et al. 2017): 70000 28x28 grey photos of clothes, 10 classes",
                  default_augment={"crop_padding": 2, "flip": True})  # fmt: skip
@register_dataset("mnist", downloads=True, help="MNIST (LeCun et al. 1998): 70000 28x28 grey handwritten digits",
                  default_augment={"crop_padding": 2, "flip": False})  # no flips: mirrored digits are other symbols
def load_idx(request: DatasetRequest):
    from cnnzoo.data.idx import load_idx_dataset

    train, test, source = load_idx_dataset(request.name, request.data_dir, request.download)
    return request.finish(train, test, source=source)
