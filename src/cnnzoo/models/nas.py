"""``nas_child``: a child network of Zoph & Le's search space (2017, arXiv:1611.01578), built from its text.

The architecture is the option ``arch`` (:mod:`cnnzoo.search.space` describes the text, e.g.
``3x3:24/3x3:36:s2@1/5x5:48@2``), so ``ModelSpec("nas_child", {"arch": text})`` is a child's whole
record: ``fit`` trains it and ``load_run`` rebuilds it with no code of its own.

How a child is compiled (Sec. 3.3 and 4.1):

* **a layer** is ``conv (FH x FW, FILTERS, stride, "same" padding) -> batch norm -> ReLU``.  Sec. 4.1
  names the parts ("convolutional architectures, with rectified linear units as non-linearities,
  batch normalization and skip connections between layers") but not their order; the order here is
  Ioffe & Szegedy's (BN right before the nonlinearity), and the convolution has no bias, which BN's
  shift replaces.  "Same" padding pads ``(k - 1) // 2`` before and the rest after, so a stride-s layer
  gives ``ceil(H / s)`` rows whatever the filter size (an even one is padded one more row
  below/right, as TensorFlow's "SAME" does).
* **its input** is the depth-concatenation of the layers its anchor point chose ("If one layer has
  many input layers then all input layers are concatenated in the depth dimension", Fig. 7); Sec. 3.3's
  three rules against "compilation failures":

  1. "if a layer is not connected to any input layer then the image is used as the input layer";
  2. "at the final layer we take all layer outputs that have not been connected and concatenate
     them before sending this final hiddenstate to the classifier";
  3. "if input layers to be concatenated have different sizes, we pad the small layers with zeros
     so that the concatenated layers have the same sizes".  The zeros go below and to the right:
     a strided "same" layer's output pixel ``i`` sits over input pixel ``s * i``, so keeping every
     map at the top-left corner keeps the pixels of the concatenated maps over the same place of
     the image (centring would shift the smaller map by half its missing size).

* **the classifier** reads that final hidden state through global average pooling and one linear
  layer.  The paper does not say what its classifier is; pooling keeps the child's parameters
  independent of the input size and of the padding of rule 3, so a parameter budget means the same
  thing at every resolution.

``DEFAULT_ARCH`` is a small 6-layer child for 28x28 images with two skips (layer 2 feeds layer 4
beside layer 3, layer 4 feeds layer 6 beside layer 5) and two stride-2 layers, 28 -> 14 -> 7:
about 16.5M multiply-adds and 0.18M parameters on Fashion-MNIST.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnzoo.models.base import ClassifierNet, init_weights, linear_or_identity
from cnnzoo.registry import Paper, register_model
from cnnzoo.search.space import Architecture, LayerChoice

ZOPH_LE_PAPER = Paper(
    title="Neural Architecture Search with Reinforcement Learning",
    authors="Barret Zoph, Quoc V. Le",
    year=2017,
    url="https://arxiv.org/abs/1611.01578",
)

#: 28 -> 28 -> 14 -> 14 -> 7 -> 7 -> 7; skips 2 -> 4 and 4 -> 6; only layer 6 reaches the classifier
DEFAULT_ARCH = "3x3:24/3x3:36:s2@1/5x5:48@2/3x3:48:s2@2+3/3x3:64@4/3x3:64@4+5"


# a leaf function for torch.fx: the padding reads the traced shapes, which symbolic tracing cannot
# compute with; dynamo (torch.export, torch.compile) traces through it as it is
@torch.fx.wrap
def concat_zero_padded(maps: list[Tensor]) -> Tensor:
    """The maps concatenated along channels, the smaller ones zero-padded below and right to the largest."""
    height = max(m.shape[-2] for m in maps)
    width = max(m.shape[-1] for m in maps)
    padded = [m if (m.shape[-2], m.shape[-1]) == (height, width)
              else F.pad(m, (0, width - m.shape[-1], 0, height - m.shape[-2])) for m in maps]  # fmt: skip
    return padded[0] if len(padded) == 1 else torch.cat(padded, dim=1)


class NASLayer(nn.Sequential):
    """``[zero pad] -> conv -> BN -> ReLU`` (its input, the concatenation of the layers feeding it, is
    made by the net: a module of one input traces alone, which ``fold_bn`` needs)."""

    def __init__(self, in_channels: int, choice: LayerChoice) -> None:
        kernel = (choice.filter_height, choice.filter_width)
        before = [(k - 1) // 2 for k in kernel]
        after = [k - 1 - b for k, b in zip(kernel, before)]
        if before == after:
            pad, padding = nn.Identity(), tuple(before)
        else:  # an even filter size: one more row / column after (TensorFlow's "SAME")
            pad, padding = nn.ZeroPad2d((before[1], after[1], before[0], after[0])), (0, 0)
        super().__init__(OrderedDict(
            pad=pad,
            conv=nn.Conv2d(in_channels, choice.filters, kernel, stride=choice.stride, padding=padding, bias=False),
            bn=nn.BatchNorm2d(choice.filters),
            act=nn.ReLU(inplace=True),
        ))  # fmt: skip


class ConcatZeroPadded(nn.Module):
    """The final hidden state: the outputs no layer reads, concatenated (Sec. 3.3's second rule)."""

    def forward(self, *maps: Tensor) -> Tensor:
        return concat_zero_padded(list(maps))


class NASChild(ClassifierNet):
    """A child of the search space: its layers wired as ``arch`` says, global pooling, one linear layer."""

    # every layer, then the final concatenation (forward_features' output); with strides that do not
    # grow along the layers the stages follow the layer order
    feature_trunk = ("layers.*", "final")

    classifier_path = "fc"

    def __init__(self, num_classes: int = 10, in_chans: int = 1, arch: str | Architecture = DEFAULT_ARCH) -> None:
        super().__init__(num_classes, in_chans)
        self.arch = arch if isinstance(arch, Architecture) else Architecture.parse(arch)
        channels = []  # output channels of each layer
        layers = []
        for choice in self.arch.layers:
            in_channels = sum(channels[j - 1] for j in choice.inputs) if choice.inputs else in_chans
            layers.append(NASLayer(in_channels, choice))
            channels.append(choice.filters)
        self.layers = nn.ModuleList(layers)
        #: which earlier outputs (0-based) each layer reads; None for the image
        self.sources = [tuple(j - 1 for j in choice.inputs) or None for choice in self.arch.layers]
        self.outputs = [n - 1 for n in self.arch.unconsumed()]
        self.num_features = sum(channels[n] for n in self.outputs)
        self.final = ConcatZeroPadded()
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = linear_or_identity(self.num_features, num_classes)
        init_weights(self)

    def forward_features(self, x: Tensor) -> Tensor:
        outputs: list[Tensor] = []
        for layer, sources in zip(self.layers, self.sources):
            inputs = [x] if sources is None else [outputs[j] for j in sources]
            outputs.append(layer(concat_zero_padded(inputs)))
        return self.final(*[outputs[n] for n in self.outputs])

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = torch.flatten(self.global_pool(x), 1)
        return x if pre_logits else self.fc(x)


@register_model(family="nas", paper=ZOPH_LE_PAPER, input_size=(1, 28, 28), num_classes=10, min_size=1)
def nas_child(arch: str = DEFAULT_ARCH, **kwargs) -> NASChild:
    """A child of Zoph & Le's search space from its text (arch=3x3:24/3x3:36:s2@1/...), GAP + linear."""
    return NASChild(arch=arch, **kwargs)
