"""Where a network looks: class activation maps.

* **CAM** (Zhou, Khosla, Lapedriza, Oliva & Torralba 2016, "Learning Deep Features for
  Discriminative Localization", Section 2): for a net whose head is global average pooling
  followed by one linear layer, the class score is ``sum_c w[k, c] * mean_xy f_c(x, y)``, so
  ``M_k(x, y) = sum_c w[k, c] * f_c(x, y)`` shows how much each location adds to class ``k``.
  It needs the last conv features and the classifier weights only, no gradient.
* **Grad-CAM** (Selvaraju et al. 2017, Section 3) for every other head: the channel weights
  are the spatially averaged gradients of the class score with respect to the last conv
  layer's output with a spatial extent, and the map is ``ReLU(sum_c alpha_c * A_c)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class ActivationMap:
    """A map in [0, 1] at the input's resolution, and how it was computed."""

    heatmap: Tensor  # (H, W)
    method: str  # "CAM" or "Grad-CAM"
    class_index: int
    layer: str  # the features the map comes from
    #: the map before upsampling and scaling, at the features' resolution
    raw: Tensor | None = None


@torch.no_grad()
def has_gap_linear_head(model: nn.Module, features: Tensor) -> bool:
    """True when ``forward_head`` is global average pooling then the linear classifier."""
    get_classifier = getattr(model, "get_classifier", None)
    if get_classifier is None or features.dim() != 4:
        return False
    classifier = get_classifier()
    if not isinstance(classifier, nn.Linear) or classifier.in_features != features.shape[1]:
        return False
    try:
        pooled = model.forward_head(features, pre_logits=True)
        logits = model.forward_head(features)
    except Exception:  # a head that does not take pre_logits
        return False
    if pooled.shape != (features.shape[0], features.shape[1]):
        return False
    expected = features.mean(dim=(2, 3))
    scale = expected.abs().max().clamp_min(1e-6)
    same_pool = torch.allclose(pooled, expected, atol=1e-4 * float(scale), rtol=1e-4)
    same_logits = torch.allclose(logits, classifier(expected), atol=1e-4, rtol=1e-4)
    return bool(same_pool and same_logits)


def _normalise(cam: Tensor, size: tuple[int, int]) -> Tensor:
    cam = F.interpolate(cam[None, None].float(), size=size, mode="bilinear", align_corners=False)[0, 0]
    cam = cam - cam.min()
    peak = cam.max()
    return cam / peak if peak > 0 else cam


def class_activation_map(model: nn.Module, image: Tensor, class_index: int | None = None) -> ActivationMap:
    """The activation map of ``class_index`` (default: the top class) for one image ``(1, C, H, W)``."""
    model.eval()
    size = (image.shape[-2], image.shape[-1])
    with torch.no_grad():
        features = model.forward_features(image) if hasattr(model, "forward_features") else None
    if features is not None and has_gap_linear_head(model, features):
        with torch.no_grad():
            logits = model.forward_head(features)
            index = int(logits[0].argmax()) if class_index is None else int(class_index)
            weights = model.get_classifier().weight[index]
            cam = torch.einsum("c,chw->hw", weights.float(), features[0].float())
        return ActivationMap(_normalise(cam, size), "CAM", index, "forward_features", cam)
    return grad_cam(model, image, class_index)


def grad_cam(model: nn.Module, image: Tensor, class_index: int | None = None) -> ActivationMap:
    """Grad-CAM on the last layer output (in execution order) that is a map larger than 1x1.

    Every submodule is hooked; the map finished last is the deepest spatial feature map (a
    residual stage, the last pooling of VGG, LeNet-5's S4 since its C5 is 1x1).
    """
    captured: list[tuple[str, Tensor]] = []
    hooks = []

    def keep(name: str):
        def hook(module, inputs, output) -> None:
            if isinstance(output, Tensor) and output.dim() == 4 and output.shape[-1] * output.shape[-2] > 1:
                if output.requires_grad:
                    captured.append((name, output))

        return hook

    for name, module in model.named_modules():
        if name:
            hooks.append(module.register_forward_hook(keep(name)))
    try:
        with torch.enable_grad():
            image = image.detach().requires_grad_(True)
            outputs = model(image)
            logits = outputs[0] if isinstance(outputs, (tuple, list)) else outputs
            index = int(logits[0].argmax()) if class_index is None else int(class_index)
            if not captured:
                raise ValueError("the model has no spatial feature map to explain")
            name, activation = captured[-1]
            (gradient,) = torch.autograd.grad(logits[0, index], activation)
    finally:
        for hook in hooks:
            hook.remove()
    weights = gradient[0].mean(dim=(1, 2))
    cam = torch.relu(torch.einsum("c,chw->hw", weights, activation[0].detach()))
    cam = cam.detach()
    return ActivationMap(_normalise(cam, (image.shape[-2], image.shape[-1])), "Grad-CAM", index, name, cam)


def save_overlay(display: Tensor, heatmap: Tensor, path, title: str = "") -> None:
    """The image (``(C, H, W)`` in [0, 1]) beside itself overlaid with the heat map, as a PNG."""
    import io
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from cnnzoo.train.checkpoint import atomic_write_bytes

    picture = display.detach().cpu().float().clamp(0, 1)
    if picture.shape[0] == 1:
        picture_np, cmap = picture[0].numpy(), "gray"
    else:
        picture_np, cmap = picture.permute(1, 2, 0).numpy(), None
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.6))
    axes[0].imshow(picture_np, cmap=cmap)
    axes[0].set_title("input")
    axes[1].imshow(picture_np, cmap=cmap)
    axes[1].imshow(heatmap.cpu().numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
    axes[1].set_title(title or "activation map")
    for ax in axes:
        ax.axis("off")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(Path(path), buffer.getvalue())
