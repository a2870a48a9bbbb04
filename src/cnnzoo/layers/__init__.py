"""Shared building blocks, one module per kind of block.

The blocks the brief's papers introduced, importable from here:

- ``ConvNormAct`` (conv -> BN -> ReLU), ``BatchNorm2dFromEquations`` (BN from its equations),
  ``krizhevsky_lrn`` (AlexNet's local response normalisation)
- ``MlpConv`` (NIN), ``Inception`` / ``InceptionNaive`` (GoogLeNet) and the v3/v4 and
  Inception-ResNet blocks in ``layers.inception``, ``SeparableConv2d`` (Xception)
- ``BasicBlock``, ``Bottleneck``, the pre-activation blocks and shortcuts (ResNet family),
  ``DropPath`` (stochastic depth), ``DenseLayer`` / ``DenseBlock`` / ``Transition`` (DenseNet)
- ``Fire`` (SqueezeNet), ``DepthwiseSeparableConv`` (MobileNet), ``ChannelShuffle`` and
  ``ShuffleUnit`` (ShuffleNet), ``SpatialPyramidPooling`` (SPP-net),
  ``BilinearConvTranspose2d`` (FCN), ``dilated_conv``, ``DeformableConv2d``,
  ``to_fully_convolutional`` (fully connected layers as convolutions)
"""

from cnnzoo.layers.batchnorm import BatchNorm2dFromEquations
from cnnzoo.layers.conv import ConvNormAct
from cnnzoo.layers.conv_types import DeformableConv2d, DepthwiseSeparableConv, dilated_conv
from cnnzoo.layers.dense import DenseBlock, DenseLayer, Transition
from cnnzoo.layers.drop_path import DropPath
from cnnzoo.layers.fc_to_conv import to_fully_convolutional
from cnnzoo.layers.fire import Fire
from cnnzoo.layers.inception import Inception, InceptionNaive
from cnnzoo.layers.mlpconv import MlpConv
from cnnzoo.layers.normalization import krizhevsky_lrn
from cnnzoo.layers.residual import BasicBlock, Bottleneck, PreActBasicBlock, PreActBottleneck
from cnnzoo.layers.separable import SeparableConv2d
from cnnzoo.layers.shuffle import ChannelShuffle, ShuffleUnit
from cnnzoo.layers.spp import SpatialPyramidPooling
from cnnzoo.layers.upsample import BilinearConvTranspose2d

__all__ = [
    "BasicBlock", "BatchNorm2dFromEquations", "BilinearConvTranspose2d", "Bottleneck", "ChannelShuffle",
    "ConvNormAct", "DeformableConv2d", "DenseBlock", "DenseLayer", "DepthwiseSeparableConv", "DropPath",
    "Fire", "Inception", "InceptionNaive", "MlpConv", "PreActBasicBlock", "PreActBottleneck",
    "SeparableConv2d", "ShuffleUnit", "SpatialPyramidPooling", "Transition", "dilated_conv",
    "krizhevsky_lrn", "to_fully_convolutional",
]  # fmt: skip
