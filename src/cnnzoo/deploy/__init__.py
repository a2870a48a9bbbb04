"""Deployment: export (ONNX), BN folding and benchmarks of the zoo's models.

>>> from cnnzoo.deploy import export_onnx, fold_bn
>>> folded, report = fold_bn(model)                                   # doctest: +SKIP
>>> export_onnx(folded, "net.onnx", input_size=(3, 224, 224))         # doctest: +SKIP

The names below are imported on first use, so that ``cnnzoo.deploy.commands`` (the command
line) loads without torch.
"""

from cnnzoo.lazy import lazy_getattr

_LAZY = {
    "ExportError": "cnnzoo.deploy.export",
    "export_onnx": "cnnzoo.deploy.export",
    "onnx_difference": "cnnzoo.deploy.export",
    "onnxruntime_session": "cnnzoo.deploy.export",
    "FoldReport": "cnnzoo.deploy.fold",
    "fold_bn": "cnnzoo.deploy.fold",
}

__all__ = sorted(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)
