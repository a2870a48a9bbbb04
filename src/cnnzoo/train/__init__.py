"""The training engine: ``fit()``, recipes, checkpoints, logs and plots, eval and predict.

>>> from cnnzoo.train import fit
>>> result = fit("lenet5", data="fashion-mnist", epochs=1)      # doctest: +SKIP
>>> result.test_top1, result.run_dir                              # doctest: +SKIP
"""

from cnnzoo.train.config import TrainConfig, load_recipe, recipe_names
from cnnzoo.train.engine import FitResult, TrainingDiverged, evaluate, fit

__all__ = ["FitResult", "TrainConfig", "TrainingDiverged", "evaluate", "fit", "load_recipe", "recipe_names"]
