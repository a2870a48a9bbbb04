"""``flowers17`` and ``flowers102``: Oxford's flower photographs (:mod:`cnnzoo.data.flowers`)."""

from __future__ import annotations

from cnnzoo.data.registry import DatasetRequest, register_dataset

#: plus the random-resized crop done while decoding (:mod:`cnnzoo.data.folders`)
PHOTO_AUGMENT = {"flip": True}


@register_dataset("flowers17", default_augment=PHOTO_AUGMENT,
                  help="Oxford 17 flowers (Nilsback & Zisserman 2006): 1360 photos, 17 classes (no downloader)")
@register_dataset("flowers102", downloads=True, default_augment=PHOTO_AUGMENT,
                  help="Oxford 102 flowers (Nilsback & Zisserman 2008): 8189 photos, 102 classes")  # fmt: skip
def load_flowers(request: DatasetRequest):
    from cnnzoo.data.base import IMAGENET_MEAN, IMAGENET_STD
    from cnnzoo.data.flowers import load_flowers as read_flowers

    train, val, test, source = read_flowers(request.name, request.data_dir, request.download,
                                            request.val_fraction, request.seed)  # fmt: skip
    return request.finish(train, test, val=val, image_size=(224, 224), mean=IMAGENET_MEAN, std=IMAGENET_STD,
                          source=source)  # fmt: skip
