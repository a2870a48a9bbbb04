"""Low-precision networks: binary, XNOR, ternary and two-bit weights (and int8, :mod:`.int8`).

>>> from cnnzoo.quantization import quantize_model, write_qpack, load_qpack
>>> net = quantize_model(create_model("resnet20"), "ttq")            # doctest: +SKIP
>>> net.quantized_weights()["layer1.0.conv1"].unique()                # three values  # doctest: +SKIP

The names below are imported on first use, so that ``cnnzoo.quantization.commands`` (the
command line) loads without torch.
"""

from cnnzoo.lazy import lazy_getattr

_LAZY = {
    "SCHEMES": "cnnzoo.quantization.transform",
    "QuantizedModel": "cnnzoo.quantization.transform",
    "ClipShadowWeights": "cnnzoo.quantization.transform",
    "deployed": "cnnzoo.quantization.transform",
    "is_quantized": "cnnzoo.quantization.transform",
    "quantize_model": "cnnzoo.quantization.transform",
    "refuse_quantized": "cnnzoo.quantization.transform",
    "QPackError": "cnnzoo.quantization.packing",
    "load_qpack": "cnnzoo.quantization.packing",
    "read_qpack": "cnnzoo.quantization.packing",
    "write_qpack": "cnnzoo.quantization.packing",
}

__all__ = sorted(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)
