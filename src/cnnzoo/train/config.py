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

import argparse
import dataclasses
import os
import types
import typing
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
AMP_MODES = ("auto", "bf16", "none")


def _key(default: Any = None, help: str = "", *, flags: tuple[str, ...] = (), group: str = "", cli: bool = True,
         metavar: str | None = None, factory: Any = None):  # fmt: skip
    """A configuration key: its default, its ``--help`` line and its command-line flags.

    The flag is ``--key-name`` unless ``flags`` gives others; ``cli=False`` keeps a key to
    recipes, ``--set`` and Python (the model and its options have flags of their own).
    """
    metadata = {"help": help, "flags": flags, "group": group, "cli": cli, "metavar": metavar}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class TrainConfig:
    """Everything that decides a training run: the keys of recipe files, ``config.yaml`` and the flags."""

    model: str = _key("", "registered model name", cli=False)
    #: keyword options for the model builder (``-o KEY=VALUE``), checked against its signature
    model_kwargs: dict = _key(help="model options", cli=False, factory=dict)
    recipe: str | None = _key(None, "recipe: a YAML file or a shipped recipe name", cli=False)

    # data
    data: str = _key("fashion-mnist", "data set, e.g. cifar10, imagefolder:PATH, synthetic", group="data")
    data_dir: str | None = _key(None, "where the data set's files are (default: the usual places)", group="data")
    download: bool = _key(True, "download a missing data set (torchvision's downloaders)", group="data")
    val_fraction: float = _key(0.1, "fraction of the training set held out for validation", group="data")
    limit_train: int | None = _key(None, "train on a seeded random subset of N images", group="data")
    limit_val: int | None = _key(None, "validate (and test) on at most N images", group="data")
    skip_bad_images: bool = _key(False, "skip unreadable images (image folders) instead of stopping", group="data")
    input_size: list[int] | None = _key(None, "network input HxW or N (default: the data's size, enlarged to what "
                                        "the net needs)", group="data", metavar="HxW")  # fmt: skip
    crop_padding: int | None = _key(None, "random-crop padding in pixels (default: the data set's)", group="data")
    flip: bool | None = _key(None, "random horizontal flips (default: the data set's)", group="data")
    random_erasing: float = _key(0.0, "probability of random erasing (Zhong et al. 2017)", group="data")

    # length
    epochs: int = _key(10, "epochs to train", group="schedule")
    max_steps: int | None = _key(None, "stop after this many optimizer steps (iterations), e.g. ResNet-CIFAR's 64k",
                                 group="schedule")  # fmt: skip
    batch_size: int = _key(128, "global batch size (split across the processes of a distributed run)",
                           flags=("--batch-size", "-b"), group="schedule")  # fmt: skip

    # optimizer
    optimizer: str = _key("sgd", f"optimizer: {', '.join(OPTIMIZERS)}", group="optimizer")
    lr: float = _key(0.1, "peak learning rate", group="optimizer")
    momentum: float = _key(0.9, "momentum (SGD, RMSProp)", group="optimizer")
    nesterov: bool = _key(False, "Nesterov momentum (SGD)", group="optimizer")
    weight_decay: float = _key(5e-4, "L2 weight decay", flags=("--weight-decay", "--wd"), group="optimizer")
    no_decay_norm_bias: bool = _key(False, "no weight decay on biases and normalisation parameters", group="optimizer")
    rmsprop_decay: float = _key(0.9, "RMSProp's decay of the squared-gradient average (PyTorch's alpha)",
                                group="optimizer")  # fmt: skip
    eps: float = _key(1e-8, "the optimizer's epsilon (RMSProp, AdamW)", group="optimizer")
    betas: list[float] = _key(help="AdamW's two betas", group="optimizer", factory=lambda: [0.9, 0.999])

    # schedule
    schedule: str = _key("cosine", f"learning-rate schedule: {', '.join(SCHEDULES)}", group="schedule")
    schedule_unit: str = _key("epoch", "unit of step_size and milestones: epoch or step", group="schedule")
    step_size: float = _key(30.0, "step schedule: multiply by gamma every this many units", group="schedule")
    milestones: list[float] = _key(help="multistep schedule: multiply by gamma at each, e.g. 30,60",
                                   group="schedule", factory=list)  # fmt: skip
    gamma: float = _key(0.1, "factor of the step, multistep and plateau schedules", group="schedule")
    plateau_patience: int = _key(2, "plateau schedule: epochs without improvement before a cut", group="schedule")
    plateau_threshold: float = _key(1e-3, "plateau schedule: the smallest improvement that counts", group="schedule")
    min_lr_ratio: float = _key(0.0, "cosine floor, as a fraction of lr", group="schedule")
    warmup_epochs: float = _key(0.0, "linear warm-up length in epochs (Goyal et al. 2017)", group="schedule")
    warmup_start_ratio: float = _key(0.1, "warm-up start, as a fraction of lr", group="schedule")
    onecycle_pct_start: float = _key(0.25, "one-cycle: fraction of the run spent going up", group="schedule")
    onecycle_div_factor: float = _key(25.0, "one-cycle: start at lr / this", group="schedule")
    onecycle_final_div_factor: float = _key(1e4, "one-cycle: end at the start / this", group="schedule")
    onecycle_momentum: list[float] = _key(help="one-cycle: momentum cycled between these (Smith & Topin 2017)",
                                          group="schedule", factory=lambda: [0.85, 0.95])  # fmt: skip

    # loss and regularisation
    label_smoothing: float = _key(0.0, "label smoothing (Szegedy et al. 2016, Section 7)", group="loss")
    grad_clip: float | None = _key(None, "clip the global gradient norm to this value", group="loss")
    aux_weight: float = _key(0.3, "weight of the auxiliary classifiers' losses (GoogLeNet Section 5: 0.3)",
                             group="loss")  # fmt: skip
    bn_sparsity: float = _key(0.0, "network slimming (Liu et al. 2017, Eq. 1): add this times the sum of |gamma| "
                              "over every batch-norm scale to the loss (the paper: 1e-4 VGG, 1e-5 ResNet/DenseNet)",
                              group="loss", metavar="LAMBDA")  # fmt: skip

    # evaluation
    tta_flip: bool = _key(False, "average the predictions of each image and its mirror image at evaluation",
                          flags=("--tta",), group="evaluation")  # fmt: skip
    test_every_epoch: bool = _key(False, "also measure the test split after every epoch (time-to-accuracy curves; "
                                  "the validation split still chooses the weights)", group="evaluation")  # fmt: skip

    # execution
    seed: int = _key(0, "random seed (data split, initialisation, shuffling)", group="execution")
    deterministic: bool = _key(False, "deterministic kernels: a resumed run ends bitwise equal to an uninterrupted one",
                               group="execution")  # fmt: skip
    device: str = _key("auto", "cpu, cuda or auto", group="execution")
    threads: int | None = _key(None, "CPU threads for torch (1 is often fastest on a busy machine)", group="execution")
    amp: str = _key("auto", "mixed precision: auto (bf16 where the CPU or GPU has it), bf16 or none",
                    group="execution")  # fmt: skip
    channels_last: bool | None = _key(None, "channels-last memory format (default: on for a CPU)", group="execution")
    compile: bool = _key(False, "torch.compile the model (falls back to eager with a warning if it fails)",
                         group="execution")  # fmt: skip
    sync_bn: bool = _key(False, "SyncBatchNorm across processes (distributed, CUDA)", group="execution")
    tensorboard: bool = _key(False, "also write TensorBoard event files to RUN_DIR/tensorboard", group="output")
    progress: bool = _key(True, "progress bar on a terminal (one line per epoch otherwise)", group="output")
    plots: bool = _key(True, "draw RUN_DIR/curves.png and confusion.png (most of a tiny run's time: a search's "
                       "children skip them)", group="output")  # fmt: skip

    # run directory and checkpoints
    out: str | None = _key(None, "run directory (default runs/MODEL-DATA-TIMESTAMP)", group="output", metavar="DIR")
    resume: bool = _key(False, "continue the run in --out (or the latest matching run) from its last checkpoint",
                        group="output")  # fmt: skip
    stop_after_epochs: int | None = _key(None, "stop (resumably) after N epochs in this call", group="output")


#: keys that may change between an interrupted run and its ``--resume``
RESUME_FREE_KEYS = frozenset(
    {"out", "resume", "stop_after_epochs", "tensorboard", "progress", "plots", "device", "data_dir", "download", "threads"}
)

_FIELDS = {f.name: f for f in fields(TrainConfig)}
_HINTS = typing.get_type_hints(TrainConfig)


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


def _field_kind(key: str) -> tuple[type, bool]:
    """The base type of a key (bool, int, float, str, list, dict) and whether it may be None."""
    hint = _HINTS[key]
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    optional = type(None) in args
    base = next(a for a in args if a is not type(None))
    return (typing.get_origin(base) or base), optional


def _coerce(key: str, value: Any, source: str) -> Any:
    """``value`` (from YAML, a flag's text or Python) as the type the field declares."""
    kind, optional = _field_kind(key)
    original = value
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{source}: {key} cannot be empty")
    try:
        if kind is bool:
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
        if kind is int:
            if isinstance(value, bool):
                raise ValueError(value)
            number = float(value)
            if not number.is_integer():
                raise ValueError(value)
            return int(number)
        if kind is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if kind is list:
            if isinstance(value, str):
                value = [v for v in value.lower().replace("x", ",").strip("[]").split(",") if v.strip()]
            if not isinstance(value, (list, tuple)):
                value = [value]
            return [_number(v) for v in value]
        if kind is dict:
            if not isinstance(value, dict):
                raise ValueError(value)
            return dict(value)
        if kind is str:
            if isinstance(value, (dict, list)):
                raise ValueError(value)
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: invalid value {original!r} for {key}") from None
    return value  # pragma: no cover - every field has one of the kinds above


def _number(value: Any) -> float | int:
    number = float(value)
    return int(number) if number.is_integer() and "." not in str(value) else number


def validate(config: TrainConfig, min_epochs: int = 1) -> TrainConfig:
    """Raise a one-line :class:`ConfigError` for a value out of range.

    ``min_epochs=0`` admits ``epochs: 0``, a run that trains nothing (``cnnzoo prune --epochs 0``
    records its untouched weights through ``fit(..., allow_no_epochs=True)``); saved
    configurations are read that way.
    """
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
    if config.epochs < min_epochs:
        raise ConfigError(f"epochs must be >= {min_epochs}, got {config.epochs}")
    if config.bn_sparsity < 0:
        raise ConfigError(f"bn_sparsity must be >= 0, got {config.bn_sparsity}")
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
    recipe: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None, min_epochs: int = 1
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
    return validate(config, min_epochs), explicit


def to_dict(config: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def from_dict(values: dict[str, Any], source: str = "config") -> TrainConfig:
    known = {k: v for k, v in values.items() if k in _FIELDS}
    return validate(TrainConfig(**check_keys(known, source)), min_epochs=0)  # what fit wrote


def save_config(config: TrainConfig, path: Path) -> None:
    from cnnzoo.rundir import atomic_write_bytes

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


# ------------------------------------------------------------------------------------------
# command-line flags, generated from the fields
# ------------------------------------------------------------------------------------------

_GROUP_TITLES = {
    "data": "data", "schedule": "length and learning-rate schedule", "optimizer": "optimizer",
    "loss": "loss and regularisation", "evaluation": "evaluation", "execution": "execution", "output": "run directory",
}  # fmt: skip


def add_config_flags(parser: argparse.ArgumentParser, keys: typing.Iterable[str] | None = None,
                     recipe: bool = True) -> None:  # fmt: skip
    """A ``--flag`` for every configuration key (or only ``keys``), ``-c RECIPE`` and ``--set KEY=VALUE``.

    Every flag defaults to "not given" (None) so that only what the user typed overrides the
    recipe, and so that ``--resume`` compares exactly those values with the saved run.
    :func:`overrides_from_args` reads them back.
    """
    wanted = None if keys is None else set(keys)
    groups: dict[str, Any] = {}
    for item in fields(TrainConfig):
        meta = item.metadata
        if not meta.get("cli") or (wanted is not None and item.name not in wanted):
            continue
        group = groups.get(meta["group"])
        if group is None:
            group = groups[meta["group"]] = parser.add_argument_group(_GROUP_TITLES.get(meta["group"], meta["group"]))
        names = meta["flags"] or (f"--{item.name.replace('_', '-')}",)
        kind, _ = _field_kind(item.name)
        default = item.default_factory() if item.default_factory is not dataclasses.MISSING else item.default
        text = meta["help"]
        if item.name == "data":
            text += "; known: " + _dataset_list()
        if item.name == "resume":
            group.add_argument(*names, dest=item.name, action="store_const", const=True, default=None, help=text)
        elif kind is bool:
            group.add_argument(*names, dest=item.name, action=argparse.BooleanOptionalAction, default=None,
                               help=f"{text} (default: {'on' if default else 'off'})")  # fmt: skip
        else:
            shown = "none" if default is None or default == [] else ",".join(map(str, default)) \
                if isinstance(default, list) else default  # fmt: skip
            group.add_argument(*names, dest=item.name, default=None, metavar=meta["metavar"] or item.name.upper(),
                               help=f"{text} (default: {shown})")  # fmt: skip
    if recipe:
        parser.add_argument("-c", "--config", dest="recipe", metavar="RECIPE",
                            help="recipe: a YAML file or a shipped recipe name (" + ", ".join(recipe_names()) + ")")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any configuration key, e.g. --set milestones=[30,60] (repeatable)")  # fmt: skip


def add_model_option_flag(parser: argparse.ArgumentParser) -> None:
    """``-o/--option KEY=VALUE``: a model option, in every command that builds a model."""
    parser.add_argument("-o", "--option", dest="model_options", action="append", default=[], metavar="KEY=VALUE",
                        help="model option, checked against the builder, e.g. -o stride_in_1x1=true (repeatable)")


def _dataset_list() -> str:
    try:
        from cnnzoo.data.registry import dataset_names
    except ImportError:  # pragma: no cover - data registry not importable
        return "see the documentation"
    return ", ".join(dataset_names())


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The configuration keys the user gave on the command line (flags, ``--set``, ``-o``)."""
    overrides: dict[str, Any] = {}
    for text in getattr(args, "set", None) or []:
        key, value = parse_assignment(text)
        key = key.replace("-", "_")
        if key == "model" and getattr(args, "model", None):
            raise ConfigError(f"--set model=...: the model is given as the command's argument ({args.model})")
        overrides[key] = value
    for name in _FIELDS:
        value = getattr(args, name, None)
        if value is not None and name not in ("model", "recipe") and _FIELDS[name].metadata.get("cli"):
            overrides[name] = value
    pairs = getattr(args, "model_options", None)
    if pairs:
        from cnnzoo.modelspec import parse_option_pairs

        overrides["model_kwargs"] = {**(overrides.get("model_kwargs") or {}), **parse_option_pairs(pairs)}
    return check_keys(overrides, "command line")
