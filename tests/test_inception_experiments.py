"""The brief's Inception experiments: numbers computed by cnnzoo.summary on real modules."""

from __future__ import annotations

import argparse

import pytest
import torch

from cnnzoo.errors import ConfigError
from cnnzoo.experiments import get_experiment
from cnnzoo.experiments.inception import (
    FACTORIZATIONS,
    conv_stack,
    factorization_counts,
    inception_module_counts,
)


@pytest.fixture(scope="module")
def module_counts():
    return inception_module_counts(size=28, in_channels=256)


def test_naive_module_output_depth_and_ops(module_counts):
    """The brief, 002 (cs231n lecture 9): the naive module on 28x28x256 with 128 1x1, 192 3x3 and
    96 5x5 filters outputs 28x28x672 (672 = 128 + 192 + 96 + 256) and costs 854M multiply-adds."""
    naive = module_counts["naive"]
    assert naive.output_shape == (672, 28, 28)
    assert naive.branch("branch4").output_channels == 256  # the pool keeps every input channel
    assert naive.macs / 1e6 == pytest.approx(854, abs=0.5)
    # the three convolutions as 002 writes them: 28x28x128x256 + 28x28x192x3x3x256 + 28x28x96x5x5x256
    assert naive.branch("branch2").macs == 28 * 28 * 192 * 3 * 3 * 256


def test_reduced_module_ops_and_the_notes_358m(module_counts):
    """The brief, 002: the module with 1x1 reductions (64 before the 3x3 and 5x5, 64 after the
    pool).  The notes list its six convolutions and total them at 358M, but those six terms sum
    to 271M; 358M is that sum with the 3x3 convolution (28x28x192x3x3x64 = 86.7M) counted twice."""
    naive, reduced = module_counts["naive"], module_counts["reduced"]
    assert reduced.output_shape == (480, 28, 28)
    listed_terms = 28 * 28 * 256 * (64 + 64 + 128 + 64) + 28 * 28 * 192 * 9 * 64 + 28 * 28 * 96 * 25 * 64
    assert reduced.macs == listed_terms
    assert reduced.macs / 1e6 == pytest.approx(271.4, abs=0.1)
    assert (reduced.macs + module_counts["reduced_3x3_macs"]) / 1e6 == pytest.approx(358, abs=0.5)
    assert naive.macs / reduced.macs > 3


def test_reduced_module_params_against_a_plain_convolution(module_counts):
    """The brief, 000 (2.2 experiment 1): the reduced module's parameters against one "traditional"
    convolution with the same output depth."""
    reduced = module_counts["reduced"]
    weights = 256 * (128 + 64 + 64 + 64) + 64 * 192 * 9 + 64 * 96 * 25
    assert reduced.params == weights + (128 + 64 + 192 + 64 + 96 + 64)  # + biases
    plain3, _ = module_counts["plain"][3]
    plain5, _ = module_counts["plain"][5]
    assert plain3 == 256 * 480 * 9 + 480 and plain5 == 256 * 480 * 25 + 480
    assert plain3 / reduced.params > 3 and plain5 / reduced.params > 8


def test_factorization_savings():
    """The brief, 000 section 3.4 (Rethinking the Inception Architecture, Sections 3.1 and 3.2):
    5x5 -> two 3x3 saves 28%, 7x7 -> three 3x3 45%, 3x3 -> two 2x2 11%, 3x3 -> 1x3 + 3x1 33%,
    7x7 -> 1x7 + 7x1 71% of the parameters."""
    counts = factorization_counts(channels=16, size=9)
    assert [c.factorization.name for c in counts] == [f.name for f in FACTORIZATIONS]
    for c in counts:
        assert round(c.param_saving * 100) == round(c.factorization.brief_saving * 100), c.factorization.name
    by_name = {c.factorization.name: c for c in counts}
    # same grid everywhere except the 2x2 pair, so multiply-adds save exactly as much
    assert by_name["7x7 -> 1x7 + 7x1"].mac_saving == pytest.approx(by_name["7x7 -> 1x7 + 7x1"].param_saving)
    assert by_name["3x3 -> two 2x2"].mac_saving < by_name["3x3 -> two 2x2"].param_saving


def test_conv_stacks_keep_the_grid():
    for f in FACTORIZATIONS:
        for kernels in (f.original, f.replacement):
            assert conv_stack(kernels, 4)(torch.randn(1, 4, 9, 9)).shape == (1, 4, 9, 9)


def test_experiments_print_their_tables(capsys):
    assert get_experiment("inception-module").run(argparse.Namespace(size=28, in_channels=256)) == 0
    out = capsys.readouterr().out
    assert "28x28x672" in out and "854.2M" in out and "271.4M" in out and "358" in out
    assert get_experiment("factorization").run(argparse.Namespace(channels=8, size=7)) == 0
    out = capsys.readouterr().out
    for f in FACTORIZATIONS:
        assert f.name in out
    assert "28.0%" in out and "71.4%" in out


def test_experiments_reject_bad_arguments():
    with pytest.raises(ConfigError):
        get_experiment("inception-module").run(argparse.Namespace(size=0, in_channels=256))
    with pytest.raises(ConfigError):
        get_experiment("factorization").run(argparse.Namespace(channels=0, size=7))
