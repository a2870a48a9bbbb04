"""The training engine: ``fit()``, recipes, checkpoints, logs and plots, eval and predict.

>>> from cnnzoo.train import fit
>>> result = fit("lenet5", data="fashion-mnist", epochs=1)      # doctest: +SKIP
>>> result.test_top1, result.run_dir                              # doctest: +SKIP

The names below are imported on first use, so that ``cnnzoo.train.commands`` and
``cnnzoo.train.config`` (the command line, the configuration) load without torch.
"""

from cnnzoo.lazy import lazy_getattr

_LAZY = {
    "TrainConfig": "cnnzoo.train.config",
    "load_recipe": "cnnzoo.train.config",
    "recipe_names": "cnnzoo.train.config",
    "FitResult": "cnnzoo.train.trainer",
    "Trainer": "cnnzoo.train.trainer",
    "Callback": "cnnzoo.train.trainer",
    "TrainingDiverged": "cnnzoo.train.trainer",
    "evaluate": "cnnzoo.train.trainer",
    "fit": "cnnzoo.train.engine",
}

__all__ = sorted(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)
