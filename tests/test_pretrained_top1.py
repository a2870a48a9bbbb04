"""Every shipped weight reaches the test top-1 its table entry claims (issue 18), on the whole
Fashion-MNIST test split.  Apart from tests/test_pretrained.py because these are the suite's
costliest evaluations (GoogLeNet's 10,000 images at 64x64 take about 90 s on one thread): the
suite's workers take whole files (``--dist loadfile``), so each file is a unit of the balance.
"""

from __future__ import annotations

import pytest

from cnnzoo.pretrained import list_pretrained, pretrained_entry


@pytest.mark.slow
@pytest.mark.parametrize("tag", list_pretrained())
def test_shipped_weights_reach_their_claimed_test_top1(tag):
    """The whole test split through ``evaluate_run(TAG)``: the table's top-1 within 0.15 points."""
    from cnnzoo.train.runs import evaluate_run

    entry = pretrained_entry(tag)
    report = evaluate_run(tag, data=entry["run"]["data"])
    assert report.count == entry["test_images"] == 10_000
    assert abs(100 * report.top1 - entry["test_top1"]) <= 0.15
