"""Shared building blocks, one module per kind of block."""

from cnnzoo.layers.conv import ConvNormAct

__all__ = ["ConvNormAct"]
