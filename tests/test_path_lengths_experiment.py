"""``cnnzoo experiment path-lengths`` (Veit, Wilber & Belongie 2016, Section 5, Fig. 6) on tiny nets."""

from __future__ import annotations

import csv
import itertools
import math

import pytest
import torch

from cnnzoo.cli import main
from cnnzoo.errors import CnnzooError, ConfigError
from cnnzoo.experiments.path_lengths import (
    PathRouter,
    RouteGate,
    central_range,
    decay_per_block,
    length_rows,
    measure_paths,
    path_counts,
    random_blocks,
    run_path_lengths_experiment,
)
from cnnzoo.models.preact_resnet import PreActResNet, preact_resnet_cifar
from cnnzoo.models.resnet import cifar_resnet
from cnnzoo.registry import create_model

TINY = "synthetic:classes=4,channels=1,size=16,train=160,test=48"
BATCHES, DRAWS = 2, 2


def test_path_counts_are_binomial():
    assert path_counts(3) == [1, 3, 3, 1]
    assert path_counts(9) == [math.comb(9, k) for k in range(10)] and sum(path_counts(9)) == 2**9
    rows = length_rows(4, [])
    assert [r.paths for r in rows] == [1, 4, 6, 4, 1]
    assert [r.path_share for r in rows] == [1 / 16, 4 / 16, 6 / 16, 4 / 16, 1 / 16]
    assert all(r.measurements == 0 and r.total_share == 0 for r in rows)


def test_the_papers_numbers_for_resnet110():
    """Veit et al. Section 5: 54 blocks; paths of 5 to 17 blocks are 0.45% of all paths; 95% of
    the paths lie around 27 (the paper says 19 to 35; the central 95% is 20..34)."""
    shares = [c / 2**54 for c in path_counts(54)]
    assert sum(shares[5:18]) == pytest.approx(0.0045, abs=0.00005)
    assert central_range(shares) == (20, 34)
    assert central_range([0, 0, 1, 0]) == (2, 2)


def _input_gradient(model, images, labels):
    images = images.clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(model(images), labels, reduction="sum")
    return torch.autograd.grad(loss, images)[0]


@pytest.mark.parametrize("build", [
    lambda: cifar_resnet(8, num_classes=4, in_chans=1),  # option A: zero-padded strided identity shortcuts
    lambda: preact_resnet_cifar(11, num_classes=4, in_chans=1),  # projections reading the shared pre-activation
    lambda: PreActResNet("basic", (2, 1), (16, 32), stem="cifar", stem_channels=16, num_classes=4, in_chans=1),
], ids=["resnet-option-A", "preact-bottleneck", "preact-basic"])  # fmt: skip
def test_the_paths_add_up_to_the_whole_gradient(build):
    """Routing is exact: the gradients of the 2**n single paths sum to the ordinary gradient."""
    torch.manual_seed(0)
    model = build()
    images, labels = torch.randn(4, 1, 12, 12), torch.tensor([0, 1, 2, 3])
    router = PathRouter(model)
    n = router.blocks
    routes = [c for k in range(n + 1) for c in itertools.combinations(range(n), k)]
    assert len(routes) == 2**n
    # the ordinary gradient of the same (train-mode) net, no gates
    reference = _input_gradient(router.model, images, labels)
    summed = torch.zeros_like(reference)
    x = images.clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(router.model(x), labels, reduction="sum")
    for route in routes:
        router.route(route)
        summed += torch.autograd.grad(loss, x, retain_graph=True)[0]
    torch.testing.assert_close(summed, reference, rtol=1e-4, atol=1e-6)
    router.route((0,))
    single = torch.autograd.grad(loss, x, retain_graph=True)[0]
    assert 0 < single.norm() and not torch.allclose(single, reference)
    norms = router.input_gradient_norms(images, labels, [None, (0,)])
    assert norms[0] == pytest.approx(reference.flatten(1).norm(dim=1).mean().item(), rel=1e-4)
    assert norms[1] == pytest.approx(single.flatten(1).norm(dim=1).mean().item(), rel=1e-4)


def test_the_studied_model_is_untouched():
    model = cifar_resnet(8, num_classes=4, in_chans=1).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    measure_paths(model, [(torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3]))], draws=1, log=lambda _: None)
    assert not model.training and not any(isinstance(m, RouteGate) for m in model.modules())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_the_gradient_falls_with_path_length():
    """Veit Fig. 6(b), really measured on a 15-block net: a path's gradient falls with its length."""
    torch.manual_seed(0)
    model = create_model("resnet32", num_classes=4, in_chans=1)
    images, labels = torch.randn(8, 1, 8, 8), torch.randint(0, 4, (8,))
    measurements = measure_paths(model, [(images, labels)], draws=2, log=lambda _: None)
    assert len(measurements) == 16 * 2 and {m.k for m in measurements} == set(range(16))
    assert all(len(m.blocks) == m.k == len(set(m.blocks)) for m in measurements)
    rows = length_rows(15, measurements)
    short = sum(r.grad_mean for r in rows[:4]) / 4
    long = sum(r.grad_mean for r in rows[-4:]) / 4
    assert short > 5 * long > 0
    assert decay_per_block(rows) > 1.1
    # the total per length (c) peaks below the paths' mean length n / 2
    assert sum(r.k * r.total_share for r in rows) < 15 / 2
    assert sum(r.total_share for r in rows) == pytest.approx(1.0)


def test_random_blocks_are_reproducible():
    assert random_blocks(27, 5, seed=0, batch=1, draw=2) == random_blocks(27, 5, seed=0, batch=1, draw=2)
    assert len(set(random_blocks(27, 27, 0, 0, 0))) == 27 and random_blocks(27, 0, 0, 0, 0) == ()
    assert len({random_blocks(27, 3, 0, 0, d) for d in range(5)}) > 1


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    out = tmp_path_factory.mktemp("path-lengths")
    report = run_path_lengths_experiment(model="resnet20", data=TINY, train_size=0, epochs=1, batch_size=32,
                                         batches=BATCHES, grad_batch_size=16, draws=DRAWS, out=out, device="cpu",
                                         threads=1, log=lambda _: None)  # fmt: skip
    return out, report


def test_the_experiment_writes_its_table_plot_and_answer(experiment):
    out, report = experiment
    assert report.net == "resnet20" and report.blocks == 9
    assert [r.paths for r in report.rows] == path_counts(9)
    assert all(r.measurements == BATCHES * DRAWS and r.grad_mean > 0 for r in report.rows)
    with open(out / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 10 * BATCHES * DRAWS
    assert {len(r["branch_blocks"].split("+")) for r in rows if r["k"] == "4"} == {4}
    text = (out / "results.md").read_text()
    assert "| 4 | 126 | 24.6% |" in text and "summary: " + report.summary in text
    (a, b), (c, d) = report.path_range(), report.gradient_range()
    assert (a, b) == (2, 7)
    assert f"length {a}..{b}" in report.summary and f"length {c}..{d}" in report.summary
    assert (out / "path_lengths.png").stat().st_size > 10_000
    assert (out / "train-resnet20" / "results.json").is_file()


def test_a_finished_run_can_be_measured(experiment, tmp_path):
    out, report = experiment
    again = run_path_lengths_experiment(from_run=out / "train-resnet20", batches=BATCHES, grad_batch_size=16,
                                        draws=DRAWS, out=tmp_path, device="cpu", threads=1, log=lambda _: None)  # fmt: skip
    assert not any(tmp_path.glob("train-*"))
    assert [m.grad_norm for m in again.measurements] == pytest.approx([m.grad_norm for m in report.measurements])
    with pytest.raises(ConfigError, match="trained on synthetic"):
        run_path_lengths_experiment(from_run=out / "train-resnet20", data="fashion-mnist", out=tmp_path)


def test_user_mistakes_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(ConfigError, match="plain20 has no shortcuts"):
        run_path_lengths_experiment(model="plain20", out=tmp_path / "out")
    with pytest.raises(ConfigError, match="no residual blocks"):
        run_path_lengths_experiment(model="lenet5", out=tmp_path / "out")
    with pytest.raises(ConfigError, match="--draws must be >= 1"):
        run_path_lengths_experiment(draws=0, out=tmp_path / "out")
    with pytest.raises(CnnzooError, match="not found"):
        run_path_lengths_experiment(from_run=tmp_path / "missing", out=tmp_path / "out")
    with pytest.raises(ConfigError, match="plain net"):
        PathRouter(create_model("plain20"))
    assert main(["experiment", "path-lengths", "--model", "plain20", "--out", str(tmp_path / "o")]) == 2
    assert main(["experiment", "path-lengths", "--batches", "0", "--out", str(tmp_path / "o")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and "no shortcuts" in errors[0] and "--batches must be >= 1" in errors[1]
    assert not (tmp_path / "o").exists() and not (tmp_path / "out").exists()
