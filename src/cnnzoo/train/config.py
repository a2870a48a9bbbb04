"""The training configuration: defaults, recipe files, flag overrides, the resolved copy.

A run's configuration is resolved in three layers, later ones winning:

1. the defaults of :class:`TrainConfig`;
2. a recipe, either a YAML file (``-c my.yaml``) or one shipped with the package by name
   (``-c resnet_cifar``, see ``cnnzoo/recipes/*.yaml``);
3. the command line flags / keyword arguments of :func:`cnnzoo.train.fit`.

The resolved configuration is written to ``RUN_DIR/config.yaml``.  On ``--resume`` the
saved configuration is the base and only what the user gives explicitly (recipe and
flags) is compared with it: a difference in a key that changes the training is refused,
naming the keys.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from cnnzoo.errors import ConfigError

OPTIMIZERS = ("sgd", "rmsprop", "adamw")
SCHEDULES = ("constant", "step", "multistep", "plateau", "cosine", "onecycle")
SCHEDULE_UNITS = ("epoch", "step")
DEVICES = ("auto", "cpu", "cuda")
AMP_MODES = ("none", "bf16")


@dataclass
class TrainConfig:
    """Everything that decides a training run (the keys of recipe files and ``config.yaml``)."""

    model: str = ""
    #: keyword options for the model builder (e.g. ``drop_rate``)
    model_kwargs: dict = field(default_factory=dict)
    recipe: str | None = None

    # data
    data: str = "fashion-mnist"
    data_dir: str | None = None
    download: bool = True
    val_fraction: float = 0.1
    limit_train: int | None = None
    limit_val: int | None = None
    skip_bad_images: bool = False
    #: (H, W) fed to the net; None: the data's size, enlarged to what the net needs
    input_size: list[int] | None = None
    #: augmentation; None takes the data set's default (e.g. no flip for digits)
    crop_padding: int | None = None
    flip: bool | None = None
    random_erasing: float = 0.0

    # length
    epochs: int = 10
    #: stop after this many optimizer steps (iterations), e.g. ResNet-CIFAR's 64k
    max_steps: int | None = None
    #: global batch size (split across the processes of a distributed run)
    batch_size: int = 128

    # optimizer
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    #: no weight decay on biases and normalisation parameters
    no_decay_norm_bias: bool = False
    #: RMSProp's decay of the squared-gradient average (PyTorch's ``alpha``)
    rmsprop_decay: float = 0.9
    eps: float = 1e-8
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])

    # schedule
    schedule: str = "cosine"
    #: unit of ``step_size`` and ``milestones``: "epoch" or "step" (iterations)
    schedule_unit: str = "epoch"
    step_size: float = 30.0
    milestones: list[float] = field(default_factory=list)
    gamma: float = 0.1
    plateau_patience: int = 2
    plateau_threshold: float = 1e-3
    #: cosine/one-cycle floor, as a fraction of ``lr``
    min_lr_ratio: float = 0.0
    warmup_epochs: float = 0.0
    warmup_start_ratio: float = 0.1
    onecycle_pct_start: float = 0.25
    onecycle_div_factor: float = 25.0
    onecycle_final_div_factor: float = 1e4
    #: one-cycle also cycles momentum between these (Smith & Topin 2017)
    onecycle_momentum: list[float] = field(default_factory=lambda: [0.85, 0.95])

    # loss and regularisation
    label_smoothing: float = 0.0
    #: clip the global gradient norm to this value (None: no clipping)
    grad_clip: float | None = None
    #: weight of the auxiliary classifiers' losses (GoogLeNet Section 5: 0.3)
    aux_weight: float = 0.3

    # evaluation
    #: average the predictions of the image and its mirror image at evaluation
    tta_flip: bool = False
    #: also measure the test set after every epoch (for time-to-accuracy curves; model
    #: selection still uses the validation split only)
    test_every_epoch: bool = False

    # execution
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"
    #: CPU threads for torch (None: torch's default); 1 is often fastest on a busy machine
    threads: int | None = None
    amp: str = "none"
    channels_last: bool = False
    compile: bool = False
    sync_bn: bool = False
    tensorboard: bool = False
    progress: bool = True

    # run directory and checkpoints
    out: str | None = None
    resume: bool = False
    stop_after_epochs: int | None = None


#: keys that may change between an interrupted run and its ``--resume``
RESUME_FREE_KEYS = frozenset(
    {"out", "resume", "stop_after_epochs", "tensorboard", "progress", "device", "data_dir", "download", "threads"}
)

_FIELDS = {f.name: f for f in fields(TrainConfig)}


def config_keys() -> list[str]:
    return list(_FIELDS)


def recipe_names() -> list[str]:
    """Names of the recipes shipped with the package."""
    folder = resources.files("cnnzoo") / "recipes"
    try:
        return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))
    except FileNotFoundError:  # pragma: no cover - broken install
        return []


def load_recipe(recipe: str | os.PathLike) -> dict[str, Any]:
    """Read a recipe: a YAML file path, or the name of a shipped recipe."""
    text_name = str(recipe)
    path = Path(text_name)
    if path.suffix in (".yaml", ".yml") or path.exists() or os.sep in text_name:
        if not path.is_file():
            raise ConfigError(f"recipe file {text_name} not found")
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"recipe file {text_name} is not valid YAML: {_one_line(exc)}") from None
        source = text_name
    else:
        resource = resources.files("cnnzoo") / "recipes" / f"{text_name}.yaml"
        if not resource.is_file():
            raise ConfigError(
                f"unknown recipe {text_name!r}; shipped recipes: {', '.join(recipe_names())} "
                "(or give a .yaml file)"
            )
        data = yaml.safe_load(resource.read_text())
        source = text_name
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"recipe {source} must be a mapping of config keys, got {type(data).__name__}")
    data = dict(data)
    data.setdefault("recipe", Path(source).stem if source.endswith((".yaml", ".yml")) else source)
    return check_keys(data, source=f"recipe {source}")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def check_keys(values: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Check that every key is a config key and coerce values to the field's type."""
    import difflib

    out: dict[str, Any] = {}
    for key, value in values.items():
        key = key.replace("-", "_")
        if key not in _FIELDS:
            close = difflib.get_close_matches(key, _FIELDS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"{source}: unknown key {key!r}{hint}")
        out[key] = _coerce(key, value, source)
    return out


def _coerce(key: str, value: Any, source: str) -> Any:
    annotation = str(_FIELDS[key].type)
    if value is None:
        if "None" in annotation:
            return None
        raise ConfigError(f"{source}: {key} cannot be empty")
    kind = annotation.split("[")[0].split(" ")[0]
    try:
        if kind == "bool":
            if isinstance(value, str):
                lowered = value.lower()
                if lowered in ("1", "true", "yes", "on"):
                    return True
                if lowered in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            if not isinstance(value, (bool, int)):
                raise ValueError(value)
            return bool(value)
        if kind == "int":
            if isinstance(value, bool):
                raise ValueError(value)
            number = float(value)
            if not number.is_integer():
                raise ValueError(value)
            return int(number)
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if kind == "list":
            if isinstance(value, str):
                value = [v for v in value.replace("x", ",").split(",") if v.strip()]
            if not isinstance(value, (list, tuple)):
                value = [value]
            return [_number(v) for v in value]
        if kind == "dict":
            if not isinstance(value, dict):
                raise ValueError(value)
            return dict(value)
        if kind == "str":
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: invalid value {value!r} for {key}") from None
    return value


def _number(value: Any) -> float | int:
    number = float(value)
    return int(number) if number.is_integer() and "." not in str(value) else number


def validate(config: TrainConfig) -> TrainConfig:
    """Raise a one-line :class:`ConfigError` for a value out of range."""
    if not config.model:
        raise ConfigError("no model given")
    if config.optimizer not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {config.optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
    if config.schedule not in SCHEDULES:
        raise ConfigError(f"unknown schedule {config.schedule!r}; choose from {', '.join(SCHEDULES)}")
    if config.schedule_unit not in SCHEDULE_UNITS:
        raise ConfigError(f"schedule_unit must be 'epoch' or 'step', got {config.schedule_unit!r}")
    if config.device not in DEVICES:
        raise ConfigError(f"device must be cpu, cuda or auto, got {config.device!r}")
    if config.amp not in AMP_MODES:
        raise ConfigError(f"amp must be one of {', '.join(AMP_MODES)}, got {config.amp!r}")
    if config.epochs < 1:
        raise ConfigError(f"epochs must be >= 1, got {config.epochs}")
    if config.batch_size < 1:
        raise ConfigError(f"batch size must be >= 1, got {config.batch_size}")
    if config.lr <= 0:
        raise ConfigError(f"learning rate must be > 0, got {config.lr}")
    if config.max_steps is not None and config.max_steps < 1:
        raise ConfigError(f"max_steps must be >= 1, got {config.max_steps}")
    if not 0.0 <= config.val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {config.val_fraction}")
    if not 0.0 <= config.label_smoothing < 1.0:
        raise ConfigError(f"label_smoothing must be in [0, 1), got {config.label_smoothing}")
    if not 0.0 <= config.random_erasing <= 1.0:
        raise ConfigError(f"random_erasing is a probability, got {config.random_erasing}")
    if config.grad_clip is not None and config.grad_clip <= 0:
        raise ConfigError(f"grad_clip must be > 0, got {config.grad_clip}")
    for name in ("limit_train", "limit_val", "stop_after_epochs", "threads"):
        value = getattr(config, name)
        if value is not None and value < 1:
            raise ConfigError(f"{name} must be >= 1, got {value}")
    if config.input_size is not None:
        if len(config.input_size) == 1:
            config.input_size = [config.input_size[0], config.input_size[0]]
        if len(config.input_size) != 2 or min(config.input_size) < 1:
            raise ConfigError(f"input size must be HxW, got {config.input_size}")
        config.input_size = [int(v) for v in config.input_size]
    if len(config.betas) != 2 or len(config.onecycle_momentum) != 2:
        raise ConfigError("betas and onecycle_momentum take two numbers")
    return config


def parse_input_size(text: str) -> list[int]:
    """``"224"`` or ``"224x224"`` -> ``[224, 224]``."""
    try:
        parts = [int(p) for p in text.lower().replace(",", "x").split("x")]
    except ValueError:
        raise ConfigError(f"input size must be HxW or N, e.g. 32x32, got {text!r}") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 1:
        raise ConfigError(f"input size must be HxW or N, e.g. 32x32, got {text!r}")
    return parts


def parse_assignment(text: str) -> tuple[str, Any]:
    """``--set key=value``: the value is read as YAML (numbers, lists, booleans)."""
    if "=" not in text:
        raise ConfigError(f"--set takes key=value, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw else None
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def resolve(
    recipe: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None
) -> tuple[TrainConfig, dict[str, Any]]:
    """Defaults, then the recipe, then ``overrides``.

    Returns the config and the dict of explicitly given values (recipe + overrides),
    which ``--resume`` compares with the saved configuration.
    """
    explicit: dict[str, Any] = {}
    if recipe:
        explicit.update(load_recipe(recipe))
    explicit.update(check_keys({k: v for k, v in (overrides or {}).items() if v is not None}, "option"))
    config = TrainConfig(**{k: v for k, v in explicit.items()})
    return validate(config), explicit


def to_dict(config: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def from_dict(values: dict[str, Any], source: str = "config") -> TrainConfig:
    known = {k: v for k, v in values.items() if k in _FIELDS}
    return validate(TrainConfig(**check_keys(known, source)))


def save_config(config: TrainConfig, path: Path) -> None:
    from cnnzoo.train.checkpoint import atomic_write_bytes

    text = "# resolved cnnzoo training configuration (defaults < recipe < flags)\n"
    text += yaml.safe_dump(to_dict(config), sort_keys=False)
    atomic_write_bytes(path, text.encode())


def read_config(path: Path) -> TrainConfig:
    try:
        values = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} not found: is this a cnnzoo run directory?") from None
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {path}: {_one_line(exc)}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path} is not a cnnzoo configuration")
    return from_dict(values, source=str(path))


def differing_keys(saved: TrainConfig, explicit: dict[str, Any]) -> list[str]:
    """Keys given explicitly for a resumed run whose value differs from the saved run's."""
    saved_values = to_dict(saved)
    changed = []
    for key, value in explicit.items():
        if key in RESUME_FREE_KEYS or key == "recipe":
            continue
        if _normalise(saved_values.get(key)) != _normalise(value):
            changed.append(key)
    return sorted(changed)


def _normalise(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    return value
