"""cnnzoo: the landmark convolutional networks, faithful to their papers.

>>> import cnnzoo
>>> model = cnnzoo.create_model("vgg16", num_classes=10)
>>> cnnzoo.summary(model, (3, 224, 224)).total_params
"""

from cnnzoo.errors import CnnzooError
from cnnzoo.registry import ModelInfo, Paper, create_model, list_models, model_info, register_model

__version__ = "0.1.0"


def summary(model, input_size=None, **kwargs):
    """Per-layer analysis of ``model``; see :func:`cnnzoo.analysis.summary`."""
    from cnnzoo.analysis import summary as _summary

    return _summary(model, input_size, **kwargs)


__all__ = [
    "CnnzooError",
    "ModelInfo",
    "Paper",
    "create_model",
    "list_models",
    "model_info",
    "register_model",
    "summary",
    "__version__",
]
