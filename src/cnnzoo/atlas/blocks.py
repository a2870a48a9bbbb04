"""The building blocks the atlas has a page for: what each computes, its cost, a worked example.

A block is data (:class:`Block`): its text, the test that finds it in a model's module tree
(``found_in``: the nets that use it are read from the registered models, not listed by hand)
and its worked example, a few real modules whose cost :func:`cnnzoo.summary` counts.
Torch is imported inside the functions only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Example:
    """One module of a worked example: what it is, how to build it, its input ``(C, H, W)``."""

    label: str
    build: Callable[[], object]
    input_size: tuple[int, int, int]


@dataclass(frozen=True)
class Block:
    slug: str  # the page's file name: blocks/<slug>.html
    title: str
    paper: str
    computes: str  # what it computes (HTML allowed)
    cost: str  # its cost formula (HTML allowed)
    #: ``found_in(module) -> bool`` on every module of a model
    found_in: Callable[[object], bool]
    examples: Callable[[], list[Example]]
    example_note: str = ""
    #: show the examples' receptive fields (where the block is about them)
    receptive_field: bool = False


# --------------------------------------------------------------------------- detection
def _is(*dotted: str) -> Callable[[object], bool]:
    """A test for instances of the classes named ``module.Class`` (imported when first used)."""
    classes: list[type] = []

    def test(module: object) -> bool:
        if not classes:
            from importlib import import_module

            for name in dotted:
                path, _, cls = name.rpartition(".")
                classes.append(getattr(import_module(path), cls))
        return isinstance(module, tuple(classes))

    return test


def _conv(predicate: Callable[[object], bool]) -> Callable[[object], bool]:
    def test(module: object) -> bool:
        from torch import nn

        return isinstance(module, nn.Conv2d) and predicate(module)

    return test


def _residual(module: object) -> bool:
    # plain twins (plain20 ...) build the same blocks with residual=False: no shortcut, no block
    from cnnzoo.layers.inception import InceptionResNetBlock
    from cnnzoo.layers.residual import ResidualBlock

    return isinstance(module, InceptionResNetBlock) or (isinstance(module, ResidualBlock) and module.residual)


def _transposed(module: object) -> bool:
    from torch import nn

    return isinstance(module, nn.ConvTranspose2d)


def _deformable(module: object) -> bool:
    from cnnzoo.layers.conv_types import DeformableConv2d

    return isinstance(module, DeformableConv2d)


# --------------------------------------------------------------------------- worked examples
def _conv2d(cin, cout, kernel, padding=None, **options):
    """A builder of one convolution without bias, "same" padding unless ``padding`` is given."""
    from torch import nn

    padding = kernel // 2 if padding is None else padding
    return lambda: nn.Conv2d(cin, cout, kernel, padding=padding, bias=False, **options)


def _mlpconv_examples():
    from cnnzoo.layers.mlpconv import MlpConv

    return [Example("NIN's first mlpconv: 11x11/4 conv 96, then 1x1 96, 1x1 96",
                    lambda: MlpConv(3, 96, (96, 96), 11, stride=4), (3, 224, 224)),
            Example("one 11x11/4 conv 96 alone", _conv2d(3, 96, 11, padding=0, stride=4), (3, 224, 224))]  # fmt: skip


def _inception_examples():
    from cnnzoo.experiments.inception import naive_module, reduced_module

    return [Example("naive module: 1x1 128, 3x3 192, 5x5 96, 3x3 max-pool", naive_module, (256, 28, 28)),
            Example("with 1x1 reductions of 64 before the 3x3 and 5x5 and after the pool", reduced_module,
                    (256, 28, 28))]  # fmt: skip


def _stack(kernels, channels=64):
    from cnnzoo.experiments.inception import conv_stack

    return lambda: conv_stack(kernels, channels)


def _residual_examples():
    from cnnzoo.layers.residual import BasicBlock

    return [Example("ResNet-34's conv2_x basic block, 64 channels", lambda: BasicBlock(64, 64), (64, 56, 56)),
            Example("its plain twin (no shortcut)", lambda: BasicBlock(64, 64, residual=False), (64, 56, 56))]


def _bottleneck_examples():
    from cnnzoo.layers.residual import BasicBlock, Bottleneck

    return [Example("ResNet-50's conv2_x bottleneck: 1x1 64, 3x3 64, 1x1 256", lambda: Bottleneck(256, 64, 256),
                    (256, 56, 56)),
            Example("a basic block at the same 256 channels", lambda: BasicBlock(256, 256), (256, 56, 56))]  # fmt: skip


def _preact_examples():
    from cnnzoo.layers.residual import BasicBlock, PreActBasicBlock

    return [Example("pre-activation basic block, 64 channels", lambda: PreActBasicBlock(64, 64), (64, 56, 56)),
            Example("the original basic block", lambda: BasicBlock(64, 64), (64, 56, 56))]


def _dense_examples():
    from cnnzoo.layers.dense import DenseBlock, Transition

    return [Example("DenseNet-121's first dense block: 6 layers, k = 32, on 64 maps", lambda: DenseBlock(6, 64, 32),
                    (64, 56, 56)),
            Example("the transition after it: 256 -> 128 maps, 2x2 average pool", lambda: Transition(256, 128),
                    (256, 56, 56))]  # fmt: skip


def _fire_examples():
    from cnnzoo.layers.fire import Fire

    return [Example("SqueezeNet's fire2: squeeze 16, expand 64 + 64", lambda: Fire(96, 16, 64, 64), (96, 55, 55)),
            Example("a 3x3 conv 96 -> 128 with the same output", _conv2d(96, 128, 3), (96, 55, 55))]


def _separable_examples():
    from cnnzoo.layers.conv_types import DepthwiseSeparableConv

    return [Example("MobileNet's 14x14 layer: depthwise 3x3 + pointwise 512",
                    lambda: DepthwiseSeparableConv(512, 512), (512, 14, 14)),
            Example("a full 3x3 conv 512 -> 512", _conv2d(512, 512, 3), (512, 14, 14))]  # fmt: skip


def _group_examples():
    return [Example("ResNeXt-50's conv2 3x3: 128 channels in 32 groups", _conv2d(128, 128, 3, groups=32), (128, 56, 56)),
            Example("the same 3x3 without groups", _conv2d(128, 128, 3), (128, 56, 56))]


def _shuffle_examples():
    from cnnzoo.layers.shuffle import ChannelShuffle, ShuffleUnit

    return [Example("the shuffle alone, 240 channels in 3 groups", lambda: ChannelShuffle(3), (240, 28, 28)),
            Example("a ShuffleNet unit (g = 3, 240 channels)", lambda: ShuffleUnit(240, 240, 3), (240, 28, 28))]


def _spp_examples():
    from cnnzoo.layers.spp import SpatialPyramidPooling

    return [Example("levels 4, 2, 1 on a 13x13x256 map", lambda: SpatialPyramidPooling((4, 2, 1)), (256, 13, 13)),
            Example("the same levels on a 10x10x256 map", lambda: SpatialPyramidPooling((4, 2, 1)), (256, 10, 10))]


def _dilated_examples():
    from torch import nn

    from cnnzoo.layers.conv_types import dilated_conv

    def stack():
        return nn.Sequential(*(dilated_conv(64, 64, d) for d in (1, 2, 4)))

    return [Example("a 3x3 conv with dilation 2", lambda: dilated_conv(64, 64, 2), (64, 56, 56)),
            Example("three 3x3 convs, dilation 1, 2, 4", stack, (64, 56, 56))]


def _deformable_examples():
    from cnnzoo.layers.conv_types import DeformableConv2d

    # small: torchvision's deform_conv2d is slow on a CPU
    return [Example("a deformable 3x3 conv 32 -> 32 (with its offset conv)", lambda: DeformableConv2d(32, 32), (32, 14, 14)),
            Example("a plain 3x3 conv 32 -> 32", _conv2d(32, 32, 3), (32, 14, 14))]


def _transposed_examples():
    from cnnzoo.layers.upsample import BilinearConvTranspose2d

    return [Example("FCN-32s' upsampling of 21 score maps by 32", lambda: BilinearConvTranspose2d(21, 32), (21, 7, 7)),
            Example("FCN's 2x upsampling of 21 score maps", lambda: BilinearConvTranspose2d(21, 2), (21, 14, 14))]


def _factorized_examples():
    return [Example("a 5x5 conv 64 -> 64", _stack((5,)), (64, 35, 35)),
            Example("two 3x3 convs 64 -> 64", _stack((3, 3)), (64, 35, 35))]


def _asymmetric_examples():
    return [Example("a 7x7 conv 64 -> 64", _stack((7,)), (64, 17, 17)),
            Example("1x7 then 7x1, 64 -> 64", _stack(((1, 7), (7, 1))), (64, 17, 17))]


# --------------------------------------------------------------------------- the blocks
BLOCKS: tuple[Block, ...] = (
    Block("mlpconv", "mlpconv layer", "Lin, Chen &amp; Yan 2013, Network In Network, Section 3.1",
          "A convolution followed by 1x1 convolutions, each with a ReLU: a small multilayer perceptron "
          "slid over the image, so every output pixel is a non-linear function of its patch.",
          "H<sub>o</sub>W<sub>o</sub> (k&sup2;C<sub>in</sub>C<sub>1</sub> + &Sigma;<sub>i</sub> C<sub>i</sub>C<sub>i+1</sub>) multiply-adds",
          _is("cnnzoo.layers.mlpconv.MlpConv"), _mlpconv_examples,
          "The two 1x1 layers add 17% to the 11x11 layer's cost."),
    Block("inception-naive", "naive Inception module", "Szegedy et al. 2014, Going Deeper with Convolutions, Figure 2a",
          "1x1, 3x3 and 5x5 convolutions and a 3x3 max-pool side by side on the same input, concatenated "
          "on channels. The pool branch passes every input channel on, so the output is always deeper.",
          "HW C<sub>in</sub> (c<sub>1</sub> + 9c<sub>3</sub> + 25c<sub>5</sub>) multiply-adds",
          _is("cnnzoo.layers.inception.InceptionNaive"), _inception_examples,
          "The notes (002) total the reduced module at 358M: that is the 271M counted here plus the 3x3 "
          "convolution's 87M counted twice (<code>cnnzoo experiment inception-module</code> prints both)."),
    Block("inception-reduced", "Inception module with dimension reductions",
          "Szegedy et al. 2014, Figure 2b; Ioffe &amp; Szegedy 2015 (with batch norm)",
          "The naive module with 1x1 convolutions that shrink the channels before the 3x3 and 5x5 "
          "convolutions and after the pool (NIN's 1x1 layers used as reductions).",
          "HW [C<sub>in</sub>(c<sub>1</sub> + r<sub>3</sub> + r<sub>5</sub> + p) + 9r<sub>3</sub>c<sub>3</sub> + 25r<sub>5</sub>c<sub>5</sub>] multiply-adds",
          _is("cnnzoo.layers.inception.Inception", "cnnzoo.layers.inception.InceptionBN"), _inception_examples,
          "The reductions cut the cost 3.1x. The notes (002) quote 358M for the reduced module: the six "
          "terms they list sum to the 271M counted here, 358M counts the 3x3's 87M twice."),
    Block("factorized-convolution", "factorized convolution", "Szegedy et al. 2015, Rethinking the Inception Architecture, Section 3.1",
          "A large convolution replaced by a stack of 3x3 ones with the same receptive field (VGG's "
          "3x3 stacks): a 5x5 becomes two 3x3, with a non-linearity between them.",
          "5x5: 25C&sup2;HW; two 3x3: 2&middot;9C&sup2;HW = 28% less",
          _is("cnnzoo.layers.inception.InceptionBN", "cnnzoo.layers.inception.InceptionV3A",
              "cnnzoo.layers.inception.InceptionV4A"), _factorized_examples, receptive_field=True),
    Block("asymmetric-convolution", "asymmetric convolution", "Szegedy et al. 2015, Section 3.2",
          "An n x n convolution factorised into a 1 x n followed by an n x 1 convolution.",
          "n&sup2;C&sup2;HW against 2nC&sup2;HW: 7x7 -> 1x7 + 7x1 is 71% less",
          _conv(lambda m: m.kernel_size[0] != m.kernel_size[1]), _asymmetric_examples, receptive_field=True),
    Block("residual-block", "residual block", "He et al. 2016, Deep Residual Learning, Section 3.2",
          "y = F(x) + x: the layers learn a residual that is added to their input through an identity (or "
          "projection) shortcut, so a block that is not needed can stay close to the identity.",
          "the layers' cost, plus HWC additions; the identity shortcut has no parameters",
          _residual, _residual_examples),
    Block("bottleneck-block", "bottleneck block", "He et al. 2016, Section 4.1 (Deeper Bottleneck Architectures), Figure 5",
          "1x1 reduce, 3x3, 1x1 restore, plus the shortcut: the 3x3 runs on a quarter of the channels.",
          "HW (Cd + 9d&sup2; + dC) with d = C/4, against 2&middot;9C&sup2;HW for a basic block at width C",
          _is("cnnzoo.layers.residual.Bottleneck", "cnnzoo.layers.residual.PreActBottleneck"), _bottleneck_examples),
    Block("preactivation-block", "pre-activation block", "He et al. 2016b, Identity Mappings in Deep Residual Networks, Figure 4e",
          "BN and ReLU moved before each convolution, nothing after the addition: the shortcut path is "
          "a pure identity from any block to any later one.",
          "the same convolutions as the original block; only the order of BN and ReLU changes",
          _is("cnnzoo.layers.residual._PreActBlock"), _preact_examples),
    Block("dense-block", "dense block and transition", "Huang et al. 2017, Densely Connected Convolutional Networks, Section 3",
          "Every layer reads the concatenation of all earlier outputs in the block and adds k (the growth "
          "rate) new maps; a transition (BN, 1x1 conv, 2x2 average pool) between blocks compresses and halves the grid.",
          "layer l: HW [(C<sub>0</sub> + (l-1)k)&middot;4k + 9&middot;4k&middot;k]; transition: HW C &theta;C",
          _is("cnnzoo.layers.dense.DenseBlock", "cnnzoo.layers.dense.Transition"), _dense_examples),
    Block("fire-module", "Fire module", "Iandola et al. 2016, SqueezeNet, Section 3.2",
          "A 1x1 squeeze layer with few filters feeding a 1x1 and a 3x3 expand layer, concatenated.",
          "HW (C<sub>in</sub>s + s e<sub>1</sub> + 9 s e<sub>3</sub>) multiply-adds",
          _is("cnnzoo.layers.fire.Fire"), _fire_examples),
    Block("depthwise-separable-convolution", "depthwise separable convolution",
          "Howard et al. 2017, MobileNets, Section 3.1; Chollet 2017, Xception",
          "A k x k convolution per input channel (depthwise), then a 1x1 convolution that mixes the "
          "channels (pointwise).",
          "HW C<sub>in</sub>(k&sup2; + C<sub>out</sub>) against HW k&sup2;C<sub>in</sub>C<sub>out</sub>: "
          "a ratio of 1/C<sub>out</sub> + 1/k&sup2;",
          _is("cnnzoo.layers.conv_types.DepthwiseSeparableConv", "cnnzoo.layers.separable.SeparableConv2d"),
          _separable_examples),
    Block("group-convolution", "group convolution", "Krizhevsky et al. 2012 (two GPU towers); Xie et al. 2017, ResNeXt",
          "The channels split into g groups, each convolved on its own: AlexNet's two towers, ResNeXt's "
          "cardinality, ShuffleNet's grouped 1x1s.",
          "HW k&sup2; C<sub>in</sub>C<sub>out</sub> / g multiply-adds and parameters",
          _conv(lambda m: 1 < m.groups < m.in_channels), _group_examples),
    Block("channel-shuffle", "channel shuffle", "Zhang et al. 2017, ShuffleNet, Section 3.1",
          "Reshape the channels to (g, n), transpose to (n, g) and flatten, so the next group convolution "
          "sees channels from every group.",
          "no parameters and no multiply-adds: a reshape and a copy",
          _is("cnnzoo.layers.shuffle.ChannelShuffle", "cnnzoo.layers.shuffle.ShuffleUnit"), _shuffle_examples),
    Block("spatial-pyramid-pooling", "spatial pyramid pooling", "He et al. 2014, Spatial Pyramid Pooling (SPP-net), Section 2.3",
          "Max-pooling the last feature map into n x n bins for a few n: a fixed-length vector from any "
          "input size, so the classifier no longer fixes the image size.",
          "no parameters; output C &Sigma;n&sup2; values whatever the input size",
          _is("cnnzoo.layers.spp.SpatialPyramidPooling"), _spp_examples),
    Block("dilated-convolution", "dilated convolution", "Yu &amp; Koltun 2015, Multi-Scale Context Aggregation by Dilated Convolutions",
          "A kernel whose taps are d pixels apart: a wider receptive field for the same parameters and "
          "no downsampling.",
          "the k x k convolution's cost; receptive field k + (k-1)(d-1)",
          _conv(lambda m: max(m.dilation) > 1), _dilated_examples,
          "The stack of three sees 15x15 pixels (the receptive field column).", receptive_field=True),
    Block("deformable-convolution", "deformable convolution", "Dai et al. 2017, Deformable Convolutional Networks, Section 2.1",
          "Every kernel tap moved by a learned, input-dependent offset, predicted by a plain convolution "
          "and sampled bilinearly.",
          "HW k&sup2;C<sub>in</sub>(C<sub>out</sub> + 2k&sup2;) multiply-adds (the offset conv included), plus the sampling",
          _deformable, _deformable_examples),
    Block("transposed-convolution", "transposed convolution", "Long et al. 2015, Fully Convolutional Networks, Section 3.3",
          "The backward pass of a strided convolution used forwards: upsamples a map by the stride; FCN "
          "initialises it to bilinear interpolation.",
          "H<sub>in</sub>W<sub>in</sub> k&sup2; C<sub>in</sub>C<sub>out</sub> multiply-adds",
          _transposed, _transposed_examples),
)  # fmt: skip


def block(slug: str) -> Block:
    return next(b for b in BLOCKS if b.slug == slug)


def blocks_in(model: object) -> list[str]:
    """The slugs of the blocks found anywhere in ``model``'s module tree, in :data:`BLOCKS` order."""
    modules = list(model.modules())
    return [b.slug for b in BLOCKS if any(b.found_in(m) for m in modules)]
