"""``cifar10`` and ``cifar100``: the "python version" pickles (:mod:`cnnzoo.data.cifar`)."""

from __future__ import annotations

from cnnzoo.data.registry import DatasetRequest, register_dataset

#: He et al. 2016, section 4.2: 4-pixel padding, random 32x32 crops, horizontal flips
CIFAR_AUGMENT = {"crop_padding": 4, "flip": True}


@register_dataset("cifar10", aliases=("cifar-10",), downloads=True, default_augment=CIFAR_AUGMENT,
                  help="CIFAR-10 (Krizhevsky 2009): 60000 32x32 colour images, 10 classes")  # fmt: skip
@register_dataset("cifar100", aliases=("cifar-100",), downloads=True, default_augment=CIFAR_AUGMENT,
                  help="CIFAR-100 (Krizhevsky 2009): 60000 32x32 colour images, 100 fine classes")  # fmt: skip
def load_cifar(request: DatasetRequest):
    from cnnzoo.data.cifar import load_cifar as read_cifar

    train, test, source = read_cifar(request.name, request.data_dir, request.download)
    return request.finish(train, test, source=source)
