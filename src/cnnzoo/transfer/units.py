"""What a "layer" is for ``prepare(model, mode="last", last_k=...)``, family by family.

001's second way of transfer learning trains "only the last few layers".  A network is
split here into an ordered list of *units* (input side first) and the *head* (the final
classifier).  ``mode="last"`` trains the head and the last ``last_k`` units.

What a unit is, per family (by the model's class):

============================  ==========================================================
ResNet, ResNeXt, WRN,         the stem (``conv1`` + ``bn1``), then each stage ``layer1`` ..
pre-activation ResNet         ``layerN`` (the blocks between two down-samplings, Table 1 of
                              He et al.); a pre-activation net's ``final_bn`` belongs to the
                              last stage
VGG, FCN                      each convolution stage (the convolutions up to a max-pooling,
                              the column groups of VGG Table 1), then fc6 and fc7
AlexNet, ZFNet, SPP-net       each convolution layer, then fc6 and fc7
LeNet-5                       each of C1, S2, C3, S4, C5 (S2 and S4 have weights), then F6
NIN, SqueezeNet               each mlpconv block / each Fire module (and the first conv)
DenseNet                      the stem (``conv0`` + ``norm0``), then each dense block with
                              the transition layer after it (the last block with ``norm5``)
GoogLeNet, BN-Inception,      each stem convolution, then each Inception module; an
Inception v3/v4,              auxiliary classifier trains with the module it reads from
Inception-ResNet, Xception    (GoogLeNet: aux1 with inception4a, aux2 with inception4d;
                              Inception v3: AuxLogits with Mixed_6e)
MobileNet v1                  the stem, then each depthwise separable block (a Table 1 pair)
ShuffleNet v1                 the stem, then each stage (Table 1's Stage2-4)
anything else                 each top-level child module that has parameters (the layers
                              of a top-level ``features`` container)
============================  ==========================================================

Everywhere, a normalisation layer registered on its own (``bn1`` after ``conv1``) joins
the unit before it, and parameters registered after the classifier join the head.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

#: layers that end a convolution stage in ``stage_by_pool`` containers
_POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


@dataclass(frozen=True)
class UnitRule:
    """How one model class is cut into units."""

    #: top-level containers whose children are the units (e.g. VGG's ``classifier``)
    expand: tuple[str, ...] = ()
    #: top-level containers whose children group into stages ending at a pooling layer
    stage_by_pool: tuple[str, ...] = ()
    #: auxiliary classifier -> the unit whose output it reads
    aux: dict[str, str] = field(default_factory=dict)


#: model class name -> rule (see the module docstring)
UNIT_RULES: dict[str, UnitRule] = {
    "VGG": UnitRule(stage_by_pool=("features",)),
    "FCN": UnitRule(stage_by_pool=("features",)),
    "AlexNet": UnitRule(expand=("features",)),
    "AlexNetPaper": UnitRule(expand=("features",)),
    "ZFNet": UnitRule(expand=("features",)),
    "SPPNet": UnitRule(expand=("features",)),
    "LeNet5": UnitRule(expand=("features",)),
    "NIN": UnitRule(expand=("features",)),
    "SqueezeNet": UnitRule(expand=("features",)),
    "DenseNet": UnitRule(expand=("features",)),
    "MobileNetV1": UnitRule(expand=("blocks",)),
    "ShuffleNetV1": UnitRule(expand=("stages",)),
    "InceptionV4": UnitRule(expand=("features",)),
    "InceptionResNetV1": UnitRule(expand=("repeat", "repeat_1", "repeat_2")),
    "InceptionResNetV2": UnitRule(expand=("repeat", "repeat_1", "repeat_2")),
    # Szegedy et al. 2014, Section 5: the auxiliary classifiers sit on 4a and 4d
    "GoogLeNet": UnitRule(aux={"aux1": "inception4a", "aux2": "inception4d"}),
    "InceptionV3": UnitRule(aux={"AuxLogits": "Mixed_6e"}),
}

#: any other model: its top-level children, a ``features`` container opened up
DEFAULT_RULE = UnitRule(expand=("features",))


@dataclass
class Unit:
    """A named group of modules that are frozen or trained together."""

    name: str
    paths: list[str]
    modules: list[nn.Module]

    def parameters(self):
        seen = set()
        for module in self.modules:
            for param in module.parameters():
                if id(param) not in seen:
                    seen.add(id(param))
                    yield param

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def _has_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def _contains(module: nn.Module, target: nn.Module | None) -> bool:
    return target is not None and any(m is target for m in module.modules())


def _joins_previous(module: nn.Module) -> bool:
    """A norm layer registered on its own, or a DenseNet transition: part of the unit before."""
    return isinstance(module, _NORMS) or "Transition" in type(module).__name__


def model_units(model: nn.Module) -> tuple[list[Unit], Unit]:
    """``(units, head)``: the model's units, input side first, and its classifier head.

    Every parameter of ``model`` belongs to exactly one of them.
    """
    rule = UNIT_RULES.get(type(model).__name__, DEFAULT_RULE)
    classifier = model.get_classifier() if hasattr(model, "get_classifier") else None
    if classifier is not None and not _has_params(classifier):
        classifier = None  # num_classes == 0: an nn.Identity head

    # 1. the pieces, in registration order: (path, modules, kind)
    pieces: list[tuple[str, list[nn.Module], str]] = []
    stage_counter = 0
    for name, child in model.named_children():
        if child is classifier:
            pieces.append((name, [child], "head"))
            continue
        if not _has_params(child):
            continue
        if name in rule.stage_by_pool:
            stage: list[tuple[str, nn.Module]] = []
            for sub_name, sub in child.named_children():
                if _has_params(sub):
                    stage.append((f"{name}.{sub_name}", sub))
                if isinstance(sub, _POOLS) and stage:
                    stage_counter += 1
                    pieces.append((f"stage{stage_counter}", [m for _, m in stage], "stage"))
                    stage = []
            for path, sub in stage:  # convolutions after the last pooling
                pieces.append((path, [sub], "unit"))
        elif name in rule.expand or _contains(child, classifier):
            for sub_name, sub in child.named_children():
                if sub is classifier:
                    pieces.append((f"{name}.{sub_name}", [sub], "head"))
                elif _has_params(sub):
                    pieces.append((f"{name}.{sub_name}", [sub], "unit"))
        else:
            pieces.append((name, [child], "aux" if name in rule.aux or "aux" in name.lower() else "unit"))

    # 2. units: merge norms / transitions into the unit before; the head takes what follows it
    units: list[Unit] = []
    head = Unit("head", [], [])
    auxiliaries: list[tuple[str, list[nn.Module]]] = []
    after_head = False
    for path, modules, kind in pieces:
        if kind == "head":
            head.paths.append(path)
            head.modules.extend(modules)
            after_head = True
        elif after_head and kind != "aux":
            head.paths.append(path)
            head.modules.extend(modules)
        elif kind == "aux":
            auxiliaries.append((path, modules))
        elif units and kind == "unit" and _joins_previous(modules[0]):
            units[-1].paths.append(path)
            units[-1].modules.extend(modules)
            units[-1].name = f"{units[-1].name}+{path.rsplit('.', 1)[-1]}"
        else:
            units.append(Unit(path, [path], list(modules)))
    head.name = "+".join(head.paths) if head.paths else "head"

    # 3. auxiliary classifiers train with the unit they read from
    for path, modules in auxiliaries:
        target = rule.aux.get(path)
        host = next((u for u in units if target is not None and target in u.paths), None)
        if host is None:
            host = units[-1] if units else head
        host.paths.append(path)
        host.modules.extend(modules)

    # 4. anything left (parameters registered directly on the model, e.g. a learned scale)
    covered = {id(p) for u in [*units, head] for p in u.parameters()}
    leftover = [(n, p) for n, p in model.named_parameters() if id(p) not in covered]
    if leftover:
        holder = nn.ParameterList([p for _, p in leftover])
        target = head if head.modules else units[-1]
        target.paths.extend(n for n, _ in leftover)
        target.modules.append(holder)
    return units, head


def describe_units(model: nn.Module) -> str:
    """One line: the unit names, as ``mode="last"`` counts them."""
    units, head = model_units(model)
    return ", ".join(u.name for u in units) + f" | head: {head.name}"
