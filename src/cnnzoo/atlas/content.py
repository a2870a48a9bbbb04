"""The atlas' hand-written facts: the lineage between the nets and which recipe trains which net.

Everything else on the pages is read from the registry, the models' module trees and
:func:`cnnzoo.summary`.  Torch-free.
"""

from __future__ import annotations

from cnnzoo.atlas.svg import Edge

#: what each net took from which (the index draws them as arrows between the papers' models)
LINEAGE: tuple[Edge, ...] = (
    Edge("lenet5", "alexnet_paper", "convolution and subsampling stacks trained end to end, scaled up with ReLU, dropout and GPUs"),
    Edge("alexnet_paper", "zfnet", "the same plan, with a 7x7/2 first layer chosen by visualising the features"),
    Edge("alexnet_paper", "vgg11", "depth, from stacks of 3x3 convolutions only"),
    Edge("zfnet", "zfnet_spp", "SPP-net is ZF-5 with spatial pyramid pooling before the classifier"),
    Edge("nin", "googlenet", "1x1 convolutions as dimension reductions; global average pooling"),
    Edge("nin", "resnet18", "1x1 convolutions in the bottleneck; global average pooling"),
    Edge("nin", "squeezenet1_0", "1x1 squeeze layers and a convolutional classifier with global average pooling"),
    Edge("googlenet", "bn_inception", "batch normalisation; the 5x5 convolutions as two 3x3"),
    Edge("vgg11", "inception_v3", "VGG's 3x3 stacks: 5x5 and 7x7 convolutions factorised"),
    Edge("vgg11", "fcn8s_vgg16", "VGG-16 made fully convolutional for segmentation"),
    Edge("resnet18", "preact_resnet18", "identity mappings: BN and ReLU before each convolution"),
    Edge("resnet18", "wrn16_8", "wider, shallower residual nets"),
    Edge("resnet18", "densenet121", "the shortcut's addition becomes a concatenation of every earlier layer"),
    Edge("resnet18", "resnext50_32x4d", "the bottleneck split into many paths (cardinality)"),
    Edge("resnet18", "inception_v4", "residual connections in Inception-ResNet"),
    Edge("alexnet_paper", "resnext50_32x4d", "group convolution (AlexNet's two GPU towers)"),
    Edge("resnext50_32x4d", "shufflenet_v1_g1", "group convolution in the 1x1 layers too, with a channel shuffle"),
    Edge("inception_v3", "xception", "Inception taken to the extreme: depthwise separable convolutions"),
    Edge("xception", "mobilenet_v1", "depthwise separable convolution as the whole network"),
    Edge("mobilenet_v1", "shufflenet_v1_g1", "a depthwise 3x3 convolution in the bottleneck"),
)  # fmt: skip

#: shipped recipe -> which registered nets it is written for: (families, input side or None for any)
RECIPES: dict[str, tuple[tuple[str, ...], int | None]] = {
    "alexnet": (("alexnet", "zfnet"), None),
    "vgg": (("vgg",), None),
    "googlenet": (("inception",), 224),
    "inception_v3": (("inception",), 299),
    "resnet_imagenet": (("resnet", "preact_resnet", "resnext", "wide_resnet"), 224),
    "resnet_cifar": (("resnet", "preact_resnet", "resnext"), 32),
    "wrn_cifar": (("wide_resnet",), 32),
    "densenet_cifar": (("densenet",), 32),
    "mobilenet": (("mobilenet",), None),
    "fast94": (("fastnet",), None),
}


def recipe_for(family: str, side: int) -> str | None:
    """The shipped recipe written for a net of ``family`` at ``side`` x ``side`` pixels, if any."""
    for recipe, (families, wanted) in RECIPES.items():
        if family in families and wanted in (None, side):
            return recipe
    return None
