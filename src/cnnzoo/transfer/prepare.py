"""``prepare(model, mode, ...)``: a pretrained network made ready to train, the brief's three ways.

001 names three ways to reuse a trained network:

``mode="all"``
    load the weights and train every parameter (fine-tuning);
``mode="last"``
    load the weights and train only the last ``last_k`` layers and the head (what a
    "layer" is for each family: :mod:`cnnzoo.transfer.units`); ``last_k=0`` trains the head only;
``mode="new-fc"``
    keep the whole original network, classifier included, add one new fully connected
    layer after it and train only that layer (:class:`NewFC`).

Frozen parameters get ``requires_grad=False``, so the training engine's optimizer never
receives them (``cnnzoo.train.optim.parameter_groups`` keeps trainable parameters only)
and they stay bitwise unchanged.  The batch normalisation layers of the frozen part are kept
in evaluation mode, even under ``model.train()``: they normalise with their pretrained
running statistics and do not update them.  ``bn_adapt=True`` lets them adapt their
statistics to the new data instead (their scale and shift stay frozen).
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field

from torch import Tensor, nn

from cnnzoo.modelspec import ModelSpec, register_transform, spec_of
from cnnzoo.errors import ConfigError
from cnnzoo.models.base import ClassifierNet, linear_or_identity
from cnnzoo.transfer.adapt import adapt_num_classes
from cnnzoo.transfer.units import model_units

MODES = ("all", "last", "new-fc")
_BATCH_NORMS = (nn.modules.batchnorm._BatchNorm,)


@dataclass
class TransferPlan:
    """What :func:`prepare` did: which parts train, which are frozen, the parameter counts."""

    mode: str
    last_k: int | None
    bn_adapt: bool
    trainable: list[str] = field(default_factory=list)
    frozen: list[str] = field(default_factory=list)
    trainable_params: int = 0
    total_params: int = 0
    head_reset: bool = False
    #: whether the frozen part has batch norm layers
    frozen_bn: bool = False

    def describe(self) -> str:
        share = 100.0 * self.trainable_params / max(1, self.total_params)
        mode = f"last (last_k={self.last_k})" if self.mode == "last" else self.mode
        text = (
            f"transfer mode {mode}: {self.trainable_params:,} of {self.total_params:,} parameters "
            f"trainable ({share:.1f}%)"
        )
        text += f"; trains {_short_list(self.trainable)}"
        if self.frozen:
            text += f"; frozen: {_short_list(self.frozen)}"
            if self.frozen_bn:
                text += " (their batch norm " + ("adapts its statistics)" if self.bn_adapt else "in eval mode)")
        return text

    def to_dict(self) -> dict:
        return {
            "mode": self.mode,
            "last_k": self.last_k,
            "bn_adapt": self.bn_adapt,
            "trainable": list(self.trainable),
            "frozen": list(self.frozen),
            "trainable_params": self.trainable_params,
            "total_params": self.total_params,
            "head_reset": self.head_reset,
            "frozen_bn": self.frozen_bn,
        }


def _short_list(names: list[str], limit: int = 8) -> str:
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:3]) + f", ... ({len(names) - 6} more), " + ", ".join(names[-3:])


# ------------------------------------------------------------------------------------------
# keeping frozen batch norm in eval mode
# ------------------------------------------------------------------------------------------


def _stay_in_eval(self: nn.Module, mode: bool = True) -> nn.Module:
    """``train()`` of a frozen batch norm layer: always evaluation mode."""
    return nn.Module.train(self, False)


def pin_eval(module: nn.Module) -> None:
    """Keep ``module`` in evaluation mode whatever ``train()`` its parents call."""
    module.train = types.MethodType(_stay_in_eval, module)
    module.eval()


def unpin(module: nn.Module) -> None:
    """Undo :func:`pin_eval` (``module`` follows its parents' ``train()`` again)."""
    if "train" in module.__dict__:
        del module.__dict__["train"]


def is_pinned(module: nn.Module) -> bool:
    return "train" in module.__dict__


# ------------------------------------------------------------------------------------------
# mode "new-fc": the whole network plus one new fully connected layer
# ------------------------------------------------------------------------------------------


class NewFC(ClassifierNet):
    """001's third way: the original network, classifier included, then one new linear layer.

    ``base`` keeps its classifier, so the new layer reads its ``base.num_classes`` outputs
    (the pooled features when the base has no classifier).  The base is a fixed feature
    extractor: it stays in evaluation mode (its batch norm statistics, dropout and auxiliary
    classifiers off) unless ``bn_adapt``, where its batch norm layers follow ``train()``.
    """

    def __init__(self, base: nn.Module, num_classes: int, bn_adapt: bool = False) -> None:
        super().__init__(num_classes, getattr(base, "in_chans", 3))
        self.base = base
        self.num_features = int(getattr(base, "num_classes", 0) or base.num_features)
        self.fc = linear_or_identity(self.num_features, num_classes)
        self.bn_adapt = bn_adapt
        #: False once prepare() makes part of the base trainable again (a new-fc run fine-tuned further)
        self.fixed_base = True
        self.base_name = getattr(base, "model_name", type(base).__name__)
        self.train(True)

    def train(self, mode: bool = True) -> "NewFC":
        super().train(mode)
        if not self.fixed_base:
            return self
        self.base.train(False)
        if mode and self.bn_adapt:
            for module in self.base.modules():
                if isinstance(module, _BATCH_NORMS):
                    nn.Module.train(module, True)
        return self

    def forward_features(self, x: Tensor) -> Tensor:
        """The original network's output (its logits): what the new layer reads."""
        out = self.base(x)
        return out[0] if isinstance(out, (tuple, list)) else out

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        return x if pre_logits else self.fc(x)

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = linear_or_identity(self.num_features, num_classes)
        self.num_classes = num_classes


# ------------------------------------------------------------------------------------------
# prepare
# ------------------------------------------------------------------------------------------


@register_transform("new_fc")
def add_new_fc(model: nn.Module, num_classes: int, bn_adapt: bool = False) -> NewFC:
    """The ``new_fc`` model transform: ``model`` with one new linear layer on top (:class:`NewFC`)."""
    return NewFC(model, num_classes, bn_adapt=bn_adapt)


def model_spec_after_transfer(model: nn.Module) -> ModelSpec:
    """How to rebuild a prepared model: its base's record, its classes and channels now, and ``new_fc``."""
    if isinstance(model, NewFC):
        return model_spec_after_transfer(model.base).then("new_fc", num_classes=int(model.num_classes),
                                                          bn_adapt=bool(model.bn_adapt))  # fmt: skip
    spec = spec_of(model) or ModelSpec(getattr(model, "model_name", type(model).__name__))
    spec.num_classes, spec.in_chans = int(model.num_classes), int(model.in_chans)
    return spec


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ConfigError(f"unknown transfer mode {mode!r}; choose from {', '.join(MODES)}")
    return mode


def prepare(
    model: nn.Module,
    mode: str = "all",
    num_classes: int | None = None,
    last_k: int = 1,
    *,
    bn_adapt: bool = False,
    reset_head: bool | None = None,
) -> nn.Module:
    """Make a pretrained ``model`` ready to train the brief's way ``mode`` (module docstring).

    ``num_classes`` is the new task's; the head is re-initialised when it differs from the
    model's, or always with ``reset_head=True`` (other classes of the same number).  For
    ``mode="new-fc"`` the original network is kept whole and ``num_classes`` is the new
    layer's width (default: the model's).  Returns the model (a :class:`NewFC` around it for
    ``"new-fc"``) with a :class:`TransferPlan` in its ``transfer_plan`` attribute.
    """
    check_mode(mode)
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                    or num_classes < 1):  # fmt: skip
        raise ConfigError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    if mode == "last":  # checked before anything changes: a mistake leaves the model as it was
        if isinstance(last_k, bool) or not isinstance(last_k, int) or last_k < 0:
            raise ConfigError(f"last_k must be an integer >= 0, got {last_k!r}")
        units = model_units(model)[0]
        if last_k > len(units):
            name = getattr(model, "model_name", type(model).__name__)
            raise ConfigError(
                f"last_k={last_k} but {name} has only {len(units)} layers below its head "
                f"({', '.join(u.name for u in units)}); use mode all to train everything"
            )
    for module in model.modules():
        unpin(module)

    if mode == "new-fc":
        width = num_classes if num_classes is not None else getattr(model, "num_classes", 0)
        if not width:
            raise ConfigError("mode new-fc needs num_classes: the new layer's number of outputs")
        for param in model.parameters():
            param.requires_grad_(False)
        wrapped = NewFC(model, width, bn_adapt=bn_adapt)
        base_units, base_head = model_units(model)
        plan = TransferPlan(
            mode, None, bn_adapt, trainable=["fc (new)"],
            frozen=[u.name for u in base_units] + ([base_head.name] if base_head.modules else []),
            head_reset=True, frozen_bn=_has_bn(model),
        )  # fmt: skip
        return _finish(wrapped, plan)

    head_reset = False
    if num_classes is not None:
        before = getattr(model, "get_classifier", lambda: None)()
        adapt_num_classes(model, num_classes, reset_head)
        head_reset = getattr(model, "get_classifier", lambda: None)() is not before
    elif reset_head:
        adapt_num_classes(model, model.num_classes, True)
        head_reset = True

    units, head = model_units(model)
    if isinstance(model, NewFC):
        # a new-fc model trained further: its base is no longer a fixed feature extractor
        model.fixed_base = False
    if mode == "all":
        for param in model.parameters():
            param.requires_grad_(True)
        plan = TransferPlan(mode, None, bn_adapt, trainable=[u.name for u in units] + [head.name],
                            head_reset=head_reset)  # fmt: skip
        return _finish(model, plan)

    # mode == "last"
    split = len(units) - last_k
    frozen_units, trained_units = units[:split], units[split:]
    for param in model.parameters():
        param.requires_grad_(False)
    for unit in [*trained_units, head]:
        for param in unit.parameters():
            param.requires_grad_(True)
    if not bn_adapt:
        for unit in frozen_units:
            for module in unit.modules:
                for sub in module.modules():
                    if isinstance(sub, _BATCH_NORMS):
                        pin_eval(sub)
    plan = TransferPlan(mode, last_k, bn_adapt, trainable=[u.name for u in trained_units] + [head.name],
                        frozen=[u.name for u in frozen_units], head_reset=head_reset,
                        frozen_bn=any(_has_bn(m) for u in frozen_units for m in u.modules))  # fmt: skip
    return _finish(model, plan)


def _has_bn(module: nn.Module) -> bool:
    return any(isinstance(m, _BATCH_NORMS) for m in module.modules())


def _finish(model: nn.Module, plan: TransferPlan) -> nn.Module:
    plan.total_params = sum(p.numel() for p in model.parameters())
    plan.trainable_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    model.transfer_plan = plan
    return model


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters an optimizer should receive."""
    return [p for p in model.parameters() if p.requires_grad]


__all__ = ["MODES", "NewFC", "TransferPlan", "check_mode", "pin_eval", "prepare", "trainable_parameters"]
