"""The brief's Inception experiments, computed from real modules by :func:`cnnzoo.summary`.

``cnnzoo experiment inception-module``
    002 and 000: the naive Inception module on a 28x28x256 input (128 1x1, 192 3x3, 96 5x5
    filters and a 3x3 max-pool) outputs 128+192+96+256 = 672 channels and costs about 854M
    multiply-adds; the module with 1x1 reductions (64 before the 3x3, 64 before the 5x5, 64
    after the pool) costs far less; and its parameters against one plain convolution with
    the same output (000's exercise).

``cnnzoo experiment factorization``
    000, section 3.4 (Rethinking the Inception Architecture, Sections 3.1-3.2): the
    parameter savings of replacing a large convolution by a stack of small ones
    (5x5 -> two 3x3: 28%, 7x7 -> three 3x3: 45%, 3x3 -> two 2x2: 11%, 3x3 -> 1x3 + 3x1: 33%,
    7x7 -> 1x7 + 7x1: 71%), with the same number of filters throughout as the paper assumes.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from cnnzoo.errors import ConfigError
from cnnzoo.experiments import register_experiment
from cnnzoo.layers.inception import Inception, InceptionNaive


def _analyse(module: nn.Module, input_size: tuple[int, int, int]):
    from cnnzoo.analysis import summary

    return summary(module, input_size, depth=1)


#: a counting command's integer flags: name -> (default, smallest value, help)
IntFlags = dict[str, tuple[int, int, str]]


def counting_command(name: str, help: str, flags: IntFlags, count: Callable[..., Any]):
    """Register ``report(count(*values), *values)`` (it prints the numbers) as ``cnnzoo experiment NAME``.

    ``values`` are the integer ``flags``' values, checked against their smallest values.
    """

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        for flag, (default, _, text) in flags.items():
            parser.add_argument(f"--{flag.replace('_', '-')}", type=int, default=default,
                                help=f"{text} (default {default})")  # fmt: skip

    def decorator(report: Callable[..., None]):
        def run(args: argparse.Namespace) -> int:
            values = [getattr(args, flag, default) for flag, (default, _, _) in flags.items()]  # (a bare Namespace too)
            for (flag, (_, low, _)), value in zip(flags.items(), values):
                if value < low:
                    raise ConfigError(f"--{flag.replace('_', '-')} must be >= {low}, got {value}")
            report(count(*values), *values)
            return 0

        register_experiment(name, help=help, add_arguments=add_arguments)(run)
        return report

    return decorator


# --------------------------------------------------------------------------- inception-module


@dataclass(frozen=True)
class BranchCount:
    name: str
    layers: str
    output_channels: int
    params: int
    macs: int


@dataclass(frozen=True)
class ModuleCount:
    title: str
    output_shape: tuple[int, int, int]
    params: int
    macs: int
    branches: tuple[BranchCount, ...]

    def branch(self, name: str) -> BranchCount:
        return next(b for b in self.branches if b.name == name)


def _count_module(title: str, module: nn.Module, input_size, descriptions: dict[str, str]) -> ModuleCount:
    report = _analyse(module, input_size)
    branches = []
    for row in report.rows[1:]:
        branches.append(
            BranchCount(row.name, descriptions.get(row.name, row.type), row.output_shape[0], row.params, row.macs)
        )
    out_channels = sum(b.output_channels for b in branches)
    return ModuleCount(
        title, (out_channels, *input_size[1:]), report.total_params, report.total_macs, tuple(branches)
    )


def naive_module(in_channels: int = 256) -> InceptionNaive:
    """002's naive module: 128 1x1, 192 3x3, 96 5x5 convolutions and a 3x3 max-pool."""
    return InceptionNaive(in_channels, ch1x1=128, ch3x3=192, ch5x5=96)


def reduced_module(in_channels: int = 256) -> Inception:
    """002's module with dimension reductions: 1x1 64 before the 3x3 and the 5x5, 1x1 64 after the pool."""
    return Inception(in_channels, ch1x1=128, ch3x3red=64, ch3x3=192, ch5x5red=64, ch5x5=96, pool_proj=64)


def inception_module_counts(size: int = 28, in_channels: int = 256) -> dict[str, object]:
    """The numbers of the inception-module experiment, from the real modules."""
    input_size = (in_channels, size, size)
    naive = _count_module(
        "naive Inception module (Figure 2a)",
        naive_module(in_channels),
        input_size,
        {"branch1": "1x1 conv 128", "branch2": "3x3 conv 192", "branch3": "5x5 conv 96", "branch4": "3x3 max-pool"},
    )
    reduced = _count_module(
        "Inception module with dimension reductions (Figure 2b)",
        reduced_module(in_channels),
        input_size,
        {
            "branch1": "1x1 conv 128",
            "branch2": "1x1 conv 64 -> 3x3 conv 192",
            "branch3": "1x1 conv 64 -> 5x5 conv 96",
            "branch4": "3x3 max-pool -> 1x1 conv 64",
        },
    )
    out_channels = reduced.output_shape[0]
    plain = {}
    for kernel in (3, 5):
        conv = nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2)
        report = _analyse(conv, input_size)
        plain[kernel] = (report.total_params, report.total_macs)
    # the 3x3 convolution of the reduced module, on its own
    module = reduced_module(in_channels)
    conv3x3 = _analyse(module.branch2[1], (64, size, size)).total_macs
    return {"naive": naive, "reduced": reduced, "plain": plain, "reduced_3x3_macs": conv3x3}


def _m(value: int) -> str:
    return f"{value / 1e6:,.1f}M"


def _print_module(count: ModuleCount) -> None:
    print(f"\n{count.title}")
    header = f"  {'branch':<10} {'layers':<30} {'out ch':>7} {'params':>10} {'multiply-adds':>14}"
    print(header)
    print("  " + "-" * (len(header) - 2))
    for b in count.branches:
        print(f"  {b.name:<10} {b.layers:<30} {b.output_channels:>7} {b.params:>10,} {_m(b.macs):>14}")
    print("  " + "-" * (len(header) - 2))
    shape = "x".join(map(str, (*count.output_shape[1:], count.output_shape[0])))
    print(f"  {'total':<10} {'output ' + shape:<30} {count.output_shape[0]:>7} {count.params:>10,} {_m(count.macs):>14}")


@counting_command(
    "inception-module", "naive vs dimension-reduced Inception module on 28x28x256: output depth, multiply-adds, params",
    {"size": (28, 1, "input height = width"), "in_channels": (256, 1, "input channels")}, inception_module_counts,
)  # fmt: skip
def report_inception_module(counts: dict[str, Any], size: int, in_channels: int) -> None:
    naive, reduced = counts["naive"], counts["reduced"]
    print(f"input {size}x{size}x{in_channels}; counted by cnnzoo.summary on the real modules "
          "(multiply-adds of the convolutions, bias excluded)")
    _print_module(naive)
    print(f"  the pool branch passes all {in_channels} input channels through: depth "
          f"{in_channels} -> {naive.output_shape[0]} ({naive.output_shape[0] / in_channels:.2f}x)")
    _print_module(reduced)
    print(f"\nthe 1x1 reductions cut the multiply-adds {naive.macs / reduced.macs:.1f}x "
          f"({_m(naive.macs)} -> {_m(reduced.macs)}) and the output depth to {reduced.output_shape[0]}")
    if (size, in_channels) == (28, 256):
        extra = counts["reduced_3x3_macs"]
        print(f"note: the notes (002) total the reduced module at 358M, but the six terms they list "
              f"sum to {_m(reduced.macs)}; 358M is that sum plus the 3x3 convolution's "
              f"{_m(extra)} counted twice ({_m(reduced.macs + extra)}).")
    print(f"\nparameters against one plain convolution with the same {reduced.output_shape[0]}-channel output:")
    print(f"  reduced Inception module      {reduced.params:>12,}")
    for kernel, (params, macs) in counts["plain"].items():
        print(f"  plain {kernel}x{kernel} conv {in_channels}->{reduced.output_shape[0]:<9}"
              f"{params:>12,}  ({params / reduced.params:.1f}x the module; {_m(macs)} multiply-adds)")
    print(f"  naive Inception module        {naive.params:>12,}")


# --------------------------------------------------------------------------- factorization


@dataclass(frozen=True)
class Factorization:
    """One large convolution and the stack of small ones that replaces it."""

    name: str
    original: tuple[int | tuple[int, int], ...]  # kernels of the original layer(s)
    replacement: tuple[int | tuple[int, int], ...]
    brief_saving: float  # the percentage the brief (000) quotes


FACTORIZATIONS = (
    Factorization("5x5 -> two 3x3", (5,), (3, 3), 0.28),
    Factorization("7x7 -> three 3x3", (7,), (3, 3, 3), 0.45),
    Factorization("3x3 -> two 2x2", (3,), (2, 2), 0.11),
    Factorization("3x3 -> 1x3 + 3x1", (3,), ((1, 3), (3, 1)), 0.33),
    Factorization("7x7 -> 1x7 + 7x1", (7,), ((1, 7), (7, 1)), 0.71),
)


def conv_stack(kernels, channels: int) -> nn.Sequential:
    """Convolutions ``channels -> channels`` without bias, ReLU between, keeping the grid size.

    Odd kernels get ``k // 2`` padding; a pair of even kernels pads the first by one pixel
    on each side (the grid grows by one) and the second not at all (it shrinks back).
    """
    layers: list[nn.Module] = []
    for index, kernel in enumerate(kernels):
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        if kh % 2 == 0:
            padding = (1, 1) if index % 2 == 0 else (0, 0)
        else:
            padding = (kh // 2, kw // 2)
        if layers:
            layers.append(nn.ReLU())
        layers.append(nn.Conv2d(channels, channels, (kh, kw), padding=padding, bias=False))
    return nn.Sequential(*layers)


@dataclass(frozen=True)
class FactorizationCount:
    factorization: Factorization
    original_params: int
    replacement_params: int
    original_macs: int
    replacement_macs: int

    @property
    def param_saving(self) -> float:
        return 1 - self.replacement_params / self.original_params

    @property
    def mac_saving(self) -> float:
        return 1 - self.replacement_macs / self.original_macs


def factorization_counts(channels: int = 64, size: int = 35) -> list[FactorizationCount]:
    """Params and multiply-adds of each factorisation, counted on real layers."""
    results = []
    for f in FACTORIZATIONS:
        original = _analyse(conv_stack(f.original, channels), (channels, size, size))
        replacement = _analyse(conv_stack(f.replacement, channels), (channels, size, size))
        results.append(
            FactorizationCount(f, original.total_params, replacement.total_params, original.total_macs,
                               replacement.total_macs)
        )
    return results


@counting_command(
    "factorization", "parameter savings of factorising convolutions (5x5 -> 3x3s, 3x3 -> 2x2s, asymmetric 1xn + nx1)",
    {"channels": (64, 1, "filters in and out of every layer"), "size": (35, 2, "grid height = width")},
    factorization_counts,
)  # fmt: skip
def report_factorization(counts: list[FactorizationCount], channels: int, size: int) -> None:
    print(f"{channels} filters in and out of every layer, {size}x{size} grid, no bias; "
          "counted by cnnzoo.summary on the real layers")
    header = (f"  {'factorisation':<18} {'params before':>13} {'after':>10} {'saving':>7} {'brief':>6}"
              f" {'MACs before':>12} {'after':>9} {'saving':>7}")
    print(header)
    print("  " + "-" * (len(header) - 2))
    for c in counts:
        print(f"  {c.factorization.name:<18} {c.original_params:>13,} {c.replacement_params:>10,} "
              f"{c.param_saving:>7.1%} {c.factorization.brief_saving:>6.0%} "
              f"{_m(c.original_macs):>12} {_m(c.replacement_macs):>9} {c.mac_saving:>7.1%}")
    print("  (two 2x2 convolutions keep the grid by padding the first, so their multiply-adds run on a "
          f"{size + 1}x{size + 1} grid once)")
