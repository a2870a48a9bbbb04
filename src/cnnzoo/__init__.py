"""cnnzoo: the landmark convolutional networks, faithful to their papers.

>>> import cnnzoo
>>> model = cnnzoo.create_model("vgg16", num_classes=10)
>>> cnnzoo.summary(model, (3, 224, 224)).total_params
"""

# Importing cnnzoo must not import torch (the command line's quick commands rely on it):
# the registry imports the model files, and they torch, only when a model is asked for.
from cnnzoo.errors import CnnzooError
from cnnzoo.pretrained.table import list_pretrained
from cnnzoo.registry import ModelInfo, Paper, create_model, list_models, model_info, register_model

__version__ = "0.1.0"


def summary(model, input_size=None, **kwargs):
    """Per-layer analysis of ``model``; see :func:`cnnzoo.analysis.summary`."""
    from cnnzoo.analysis import summary as _summary

    return _summary(model, input_size, **kwargs)


def load_run(run_dir, checkpoint: str = "best", device: str = "auto"):
    """The trained model of a run directory (or a pretrained tag), rebuilt from its record;
    see :func:`cnnzoo.train.runs.load_run`.

    >>> run = cnnzoo.load_run("runs/resnet20-fashion-mnist-20261201-101500")   # doctest: +SKIP
    >>> run = cnnzoo.load_run("lenet5.fashion_mnist")                          # doctest: +SKIP
    >>> run.model, run.checkpoint, run.meta["classes"]                          # doctest: +SKIP
    """
    from cnnzoo.train.runs import load_run as _load_run

    return _load_run(run_dir, checkpoint, device)


__all__ = [
    "load_run",
    "CnnzooError",
    "ModelInfo",
    "Paper",
    "create_model",
    "list_models",
    "list_pretrained",
    "model_info",
    "register_model",
    "summary",
    "__version__",
]
