"""Trained quantization by weight sharing: Deep Compression's second stage (Han et al. 2016, Section 3).

Each layer's surviving weights are clustered into at most ``2^bits`` values by one-dimensional
k-means (Section 3.1), initialised linearly over ``[min, max]`` of the weights, the best of the
three initialisations Section 3.2 compares.  The layer then stores one small index per weight and
the codebook of centroids.

Fine-tuning the centroids (Section 3.3) is a parametrization (``torch.nn.utils.parametrize``):
the layer's weight becomes ``where(mask, codebook[indices], 0)`` and the trainable parameter is
the codebook itself.  Each centroid's gradient is the sum of the gradients of the weights in its
cluster, exactly the paper's update (:class:`_SharedWeights` computes it from the kept weights
alone), and pruned weights stay zero without a callback.
The indices and the mask are buffers, so the run's checkpoint holds codebook, indices and mask,
and the registered transform ``shared_weights`` rebuilds the parametrized layers for
``load_run`` (their values then come from the checkpoint, loaded strictly).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from cnnzoo.modelspec import register_transform

#: Lloyd iterations at most; one-dimensional k-means on a sorted line converges in far fewer
KMEANS_ITERATIONS = 100


def kmeans_1d(values: Tensor, k: int, iterations: int = KMEANS_ITERATIONS) -> tuple[Tensor, Tensor]:
    """``(codebook, assignment)``: ``values`` clustered into at most ``k`` centroids (float32, sorted).

    Linear initialisation over ``[min, max]`` (Section 3.2: it keeps centroids at the large
    weights, which matter most, where density-based initialisations put few).  Clusters that end
    up empty are dropped, so the codebook may be shorter than ``k``.
    """
    values = values.detach().reshape(-1).to(torch.float64)
    if values.numel() == 0:
        raise ValueError("k-means of no values")
    k = max(1, min(int(k), values.numel()))
    # in one dimension a cluster is a run of the sorted values: each Lloyd step finds the runs'
    # ends between the midpoints of the sorted centroids and their sums from a prefix sum, in
    # O(k log n) instead of a pass over every value (AlexNet's fc6 keeps 3.4M weights)
    ordered = torch.sort(values).values
    prefix = torch.cat((torch.zeros(1, dtype=torch.float64), torch.cumsum(ordered, 0)))
    centroids = torch.linspace(float(ordered[0]), float(ordered[-1]), k, dtype=torch.float64)
    ends = None
    for _ in range(iterations):
        # a value goes to the first centroid whose upper midpoint it does not exceed (bucketize's rule)
        new = torch.searchsorted(ordered, (centroids[1:] + centroids[:-1]) / 2, right=True)
        new = torch.cat((new, torch.tensor([len(ordered)])))
        if ends is not None and torch.equal(new, ends):
            break
        ends = new
        starts = torch.cat((torch.zeros(1, dtype=torch.long), ends[:-1]))
        counts = ends - starts
        sums = prefix[ends] - prefix[starts]
        filled = counts > 0
        centroids = torch.where(filled, sums / counts.clamp_min(1), centroids)  # an empty cluster keeps its place
        centroids, _ = torch.sort(centroids)
    assignment = torch.bucketize(values, (centroids[1:] + centroids[:-1]) / 2)
    used = torch.bincount(assignment, minlength=k) > 0
    renumber = torch.cumsum(used.long(), 0) - 1
    return centroids[used].to(torch.float32), renumber[assignment]


class _SharedWeights(torch.autograd.Function):
    """``weight.flatten()[positions] = codebook[clusters]``, zeros elsewhere; the codebook's gradient
    is each cluster's sum of its weights' gradients (Section 3.3).

    Why not ``codebook[indices]`` under autograd: its backward accumulates into the codebook
    through every one of the layer's weights, pruned ones included (2.6 s a step for AlexNet's
    fc6 on one core); this reads only the kept ones and sums them with ``index_add_``.
    """

    @staticmethod
    def forward(ctx, codebook: Tensor, positions: Tensor, clusters: Tensor, shape: torch.Size) -> Tensor:
        ctx.save_for_backward(positions, clusters)
        ctx.clusters = codebook.numel()
        weight = codebook.new_zeros(shape.numel())
        weight[positions] = codebook[clusters]
        return weight.view(shape)

    @staticmethod
    def backward(ctx, grad: Tensor):
        positions, clusters = ctx.saved_tensors
        kept = grad.reshape(-1)[positions]
        grad_codebook = kept.new_zeros(ctx.clusters).index_add_(0, clusters, kept)
        return grad_codebook, None, None, None


class SharedWeight(nn.Module):
    """The parametrization ``weight = where(mask, codebook[indices], 0)``; its parameter is the codebook.

    ``right_inverse`` (what assigning ``module.weight = w`` calls) gives each cluster the mean of
    its members in ``w``, so registering it on a layer whose indices are set starts the codebook
    at the k-means centroids.
    """

    def __init__(self, shape: torch.Size | tuple[int, ...], clusters: int) -> None:
        super().__init__()
        self.clusters = int(clusters)
        self.register_buffer("indices", torch.zeros(shape, dtype=torch.long))
        self.register_buffer("mask", torch.zeros(shape, dtype=torch.bool))

    def forward(self, codebook: Tensor) -> Tensor:
        positions, clusters = self._kept()
        return _SharedWeights.apply(codebook, positions, clusters, self.mask.shape)

    def _kept(self) -> tuple[Tensor, Tensor]:
        """The kept weights' flat positions and clusters, recomputed only when the buffers change
        (a checkpoint's load copies into them, which bumps their versions)."""
        version = (self.mask._version, self.indices._version, self.mask.data_ptr(), self.indices.data_ptr())
        if getattr(self, "_cache", (None,))[0] != version:
            positions = torch.flatten(self.mask).nonzero().squeeze(1)
            self._cache = (version, positions, torch.flatten(self.indices)[positions])
        return self._cache[1], self._cache[2]

    def right_inverse(self, weight: Tensor) -> Tensor:
        members = self.indices[self.mask]
        sums = torch.zeros(self.clusters, dtype=torch.float64, device=weight.device)
        sums.index_add_(0, members, weight.detach()[self.mask].to(torch.float64))
        counts = torch.bincount(members, minlength=self.clusters).clamp_min(1)
        return (sums / counts).to(weight.dtype)


def share_weights(module: nn.Module, bits: int) -> SharedWeight:
    """Cluster ``module.weight``'s nonzero entries into at most ``2^bits`` values and parametrize it."""
    weight = module.weight.detach()
    mask = weight != 0  # stage 1's pruned weights are exactly zero
    if not mask.any():
        mask = torch.ones_like(mask)  # nothing survived: one cluster of zeros (never from our pruning)
    codebook, assignment = kmeans_1d(weight[mask], 2**bits)
    sharing = SharedWeight(weight.shape, len(codebook)).to(weight.device)
    sharing.mask.copy_(mask)
    sharing.indices[mask] = assignment.to(weight.device)
    parametrize.register_parametrization(module, "weight", sharing)
    with torch.no_grad():  # the codebook starts exactly at the centroids, not their re-computed means
        module.parametrizations.weight.original.copy_(codebook.to(weight.device, weight.dtype))
    return sharing


def shared_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The modules of ``model`` whose weight is shared (parametrized by :class:`SharedWeight`), by name."""
    found = {}
    for name, module in model.named_modules():
        if parametrize.is_parametrized(module, "weight"):
            if any(isinstance(p, SharedWeight) for p in module.parametrizations.weight):
                found[name] = module
    return found


def codebook_of(module: nn.Module) -> tuple[Tensor, Tensor, Tensor]:
    """``(codebook, indices, mask)`` of a shared layer."""
    sharing = next(p for p in module.parametrizations.weight if isinstance(p, SharedWeight))
    return module.parametrizations.weight.original.detach(), sharing.indices, sharing.mask


@register_transform("shared_weights")
def shared_weights_transform(model: nn.Module, layers: dict[str, int]) -> nn.Module:
    """Rebuild the shared layers (``layers``: module name -> codebook size); the checkpoint fills them."""
    for name, clusters in layers.items():
        module = model.get_submodule(name)
        sharing = SharedWeight(module.weight.shape, clusters).to(module.weight.device)
        parametrize.register_parametrization(module, "weight", sharing)
    return model
