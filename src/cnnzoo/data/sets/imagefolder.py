"""``imagefolder:PATH`` and ``imagenet:PATH``: class folders of image files (:mod:`cnnzoo.data.folders`)."""

from __future__ import annotations

from cnnzoo.data.registry import DatasetRequest, register_dataset

#: plus the random-resized crop done while decoding
PHOTO_AUGMENT = {"flip": True}


@register_dataset("imagefolder", takes_path=True, default_augment=PHOTO_AUGMENT,
                  help="images in PATH/train/CLASS/ (and val/, test/) or PATH/CLASS/, decoded by workers")
@register_dataset("imagenet", takes_path=True, default_augment=PHOTO_AUGMENT,
                  help="ImageNet (ILSVRC-2012) as PATH/train/CLASS/*.JPEG and PATH/val/CLASS/*.JPEG")  # fmt: skip
def load_folders(request: DatasetRequest):
    from cnnzoo.data.base import IMAGENET_MEAN, IMAGENET_STD
    from cnnzoo.data.folders import load_image_folders

    train, val, test, source = load_image_folders(request.name, request.path)
    return request.finish(train, test, val=val, image_size=(224, 224), mean=IMAGENET_MEAN, std=IMAGENET_STD,
                          source=source)  # fmt: skip
