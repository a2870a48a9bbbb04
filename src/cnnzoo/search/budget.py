"""What a child costs, and whether a search space admits any child within a budget (a mobile constraint).

A child is counted the way every model of the zoo is: built as ``nas_child`` and passed to
:func:`cnnzoo.analysis.summary` (parameters; multiply-adds of the convolutions and the classifier,
as the papers count them).  Torch is imported inside the functions: the command modules stay quick.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cnnzoo.errors import ConfigError

if TYPE_CHECKING:
    from cnnzoo.search.space import Architecture, SearchSpace


def child_cost(arch: "Architecture | str", in_chans: int, num_classes: int,
               input_size: tuple[int, int]) -> tuple[int, int]:  # fmt: skip
    """``(params, macs)`` of the child ``arch`` for ``in_chans x H x W`` images and ``num_classes`` classes."""
    import torch

    from cnnzoo.analysis import summary
    from cnnzoo.models.nas import NASChild

    height, width = input_size
    with torch.random.fork_rng(devices=[]):  # the weights' initialisation must not move the caller's seed
        model = NASChild(num_classes=num_classes, in_chans=in_chans, arch=arch)
        counted = summary(model, (in_chans, height, width))
    return counted.total_params, counted.total_macs


def within(cost: tuple[int, int], max_params: int | None, max_macs: int | None) -> bool:
    """Whether ``(params, macs)`` keeps both budgets (None: no budget)."""
    params, macs = cost
    return (max_params is None or params <= max_params) and (max_macs is None or macs <= max_macs)


def check_admits(space: "SearchSpace", max_params: int | None, max_macs: int | None, in_chans: int,
                 num_classes: int, input_size: tuple[int, int]) -> None:  # fmt: skip
    """A one-line ConfigError when no child of ``space`` keeps both budgets (None: no budget).

    The cheapest child is one of ``space.cheapest_children()`` (its docstring says why), so
    counting those few children decides it exactly.
    """
    for name, budget in (("max_params", max_params), ("max_macs", max_macs)):
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 1):
            raise ConfigError(f"{name} must be a positive integer, got {budget!r}")
    if max_params is None and max_macs is None:
        return
    costs = [(child, child_cost(child, in_chans, num_classes, input_size)) for child in space.cheapest_children()]
    if any(within(cost, max_params, max_macs) for _, cost in costs):
        return
    wanted = " and ".join(f"{name}={budget:,}" for name, budget in (("max_params", max_params), ("max_macs", max_macs))
                          if budget is not None)  # fmt: skip
    fewest_params = min(costs, key=lambda c: c[1][0])
    fewest_macs = min(costs, key=lambda c: c[1][1])
    raise ConfigError(
        f"the search space admits no child within {wanted} at {in_chans}x{input_size[0]}x{input_size[1]}: "
        f"the smallest has {fewest_params[1][0]:,} params ({fewest_params[0]}), "
        f"the cheapest {fewest_macs[1][1]:,} multiply-adds ({fewest_macs[0]})"
    )


__all__ = ["check_admits", "child_cost", "within"]
