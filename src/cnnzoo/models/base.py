"""The model contract every cnnzoo network keeps (the timm contract).

A classifier is split in two halves:

* ``forward_features(x)`` -> the last feature map, before any pooling or classifier
  (e.g. ``(N, 2048, 7, 7)`` for ResNet-50 at 224);
* ``forward_head(x, pre_logits=False)`` -> logits, or with ``pre_logits=True`` the
  vector the final classifier layer reads (``num_features`` wide);

and ``forward(x) == forward_head(forward_features(x))``.  ``get_classifier()`` returns
the final classifier layer and ``reset_classifier(n)`` replaces it by a freshly
initialised one with ``n`` outputs (``n = 0`` gives an ``nn.Identity``, so
``forward`` returns the pooled features).
"""

from __future__ import annotations

from torch import Tensor, nn

from cnnzoo.registry import check_in_chans, check_num_classes


class ClassifierNet(nn.Module):
    """Base class for the zoo's classifiers.

    Subclasses call ``super().__init__(num_classes, in_chans)``, set ``num_features``,
    implement ``forward_features`` and ``forward_head``, and name where their final layer
    lives in ``classifier_path`` (``"fc"``, ``"classifier.6"``); ``get_classifier`` and
    ``reset_classifier`` then work as they are.  Nets whose classifier is not one linear
    layer (auxiliary heads, class-map convolutions) override those two.
    """

    #: dotted path of the final classifier layer, e.g. "fc" or "classifier.6"
    classifier_path: str = ""
    #: the modules of the main path, in forward order, as patterns whose ``*`` stays within one
    #: name (``"features.*"``: every child of ``features``); the last module at each stride ends
    #: a stage for ``create_model(..., features_only=True)`` (cnnzoo.features).  Empty: no stages.
    feature_trunk: tuple[str, ...] = ()

    def __init__(self, num_classes: int, in_chans: int) -> None:
        super().__init__()
        check_num_classes(num_classes)
        check_in_chans(in_chans)
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.num_features = 0

    def forward_features(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def get_classifier(self) -> nn.Module:
        return self.get_submodule(self.classifier_path)

    def reset_classifier(self, num_classes: int) -> None:
        """A freshly initialised final layer with ``num_classes`` outputs (0: ``nn.Identity``)."""
        parent, _, leaf = self.classifier_path.rpartition(".")
        # setattr also replaces an indexed entry of an nn.Sequential ("classifier.6")
        setattr(self.get_submodule(parent), leaf, linear_or_identity(self.num_features, num_classes))
        self.num_classes = num_classes

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


class AuxClassifierNet(ClassifierNet):
    """A net with auxiliary classifiers on intermediate features (GoogLeNet, Inception v3).

    Subclasses implement ``_features(x, with_aux) -> (features, [aux logits, ...])`` and set
    ``aux_logits``.  In training mode ``forward`` returns ``(main, *aux)`` so the loss can weigh
    the auxiliary terms; in eval mode it returns the main logits only.
    """

    aux_logits: bool = False

    def _features(self, x: Tensor, with_aux: bool) -> tuple[Tensor, list[Tensor]]:  # pragma: no cover
        raise NotImplementedError

    def forward_features(self, x: Tensor) -> Tensor:
        return self._features(x, with_aux=False)[0]

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, ...]:
        if self.training and self.aux_logits:
            features, aux = self._features(x, with_aux=True)
            return (self.forward_head(features), *aux)
        return self.forward_head(self.forward_features(x))


def linear_or_identity(in_features: int, num_classes: int) -> nn.Module:
    """The final classifier: ``nn.Linear`` or, for ``num_classes == 0``, ``nn.Identity``."""
    check_num_classes(num_classes)
    return nn.Linear(in_features, num_classes) if num_classes > 0 else nn.Identity()


def fc_head(classifier: nn.Sequential, x: Tensor, pre_logits: bool = False) -> Tensor:
    """Run a fully connected head: every layer but the last gives the pre-logits, the last the logits.

    The layers are called one by one, not through a slice ``classifier[:-1]``: a slice is a new
    ``nn.Sequential`` that is no submodule of the net, which ``torch.fx`` cannot trace.
    """
    *hidden, last = classifier
    for layer in hidden:
        x = layer(x)
    return x if pre_logits else last(x)


def init_weights(model: nn.Module, linear_std: float | None = 0.01) -> None:
    """The zoo's usual initialisation: He (Kaiming) normal for convolutions (fan-out, ReLU),
    zero conv biases, batch norm at scale 1 / shift 0, fully connected weights from
    N(0, ``linear_std``) with zero bias (``linear_std=None`` keeps PyTorch's default for them).

    A model built on the meta device (shapes only, for counting) is left as it is.
    """
    if any(p.is_meta for p in model.parameters()):
        return
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear) and linear_std is not None:
            nn.init.normal_(module.weight, 0.0, linear_std)
            nn.init.zeros_(module.bias)
