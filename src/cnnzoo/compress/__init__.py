"""Making trained nets smaller: filter pruning, Deep Compression and knowledge distillation.

The brief's third part (004) opens with model compression.  Three ways, each producing a run
directory that ``load_run``, ``cnnzoo eval``, ``summary``, ``bench`` and ``export`` take:

- :mod:`cnnzoo.compress.pruning`: structured filter pruning (Li et al. 2017's L1 norm, the BN
  scale of Liu et al. 2017's network slimming, random as the control) that physically removes
  filters, one shot or iterative, on Torch-Pruning's dependency graph;
- :mod:`cnnzoo.compress.deep_compression`: Han et al. 2016's pipeline (magnitude pruning with
  retraining, trained weight sharing, Huffman coding) and its compressed file;
- :mod:`cnnzoo.compress.distillation`: Hinton et al. 2015's soft targets, a loss for the one trainer.

The names below are imported on first use, so that ``cnnzoo.compress.commands`` (the command
line) loads without torch.
"""

from cnnzoo.lazy import lazy_getattr

_LAZY = {
    "PruneError": "cnnzoo.compress.pruning",
    "PruneReport": "cnnzoo.compress.pruning",
    "prune": "cnnzoo.compress.pruning",
    "prune_run": "cnnzoo.compress.pruning",
    "deep_compress": "cnnzoo.compress.deep_compression",
    "encode_model": "cnnzoo.compress.deep_compression",
    "decode_model": "cnnzoo.compress.deep_compression",
    "DistillationLoss": "cnnzoo.compress.distillation",
    "distill": "cnnzoo.compress.distillation",
}

__all__ = sorted(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)
