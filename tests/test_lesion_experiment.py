"""``cnnzoo experiment lesion`` (brief experiment 8, Veit et al. 2016) on tiny synthetic data."""

from __future__ import annotations

import csv
import statistics

import pytest
import torch

from cnnzoo.cli import main
from cnnzoo.data import load_dataset, make_loader
from cnnzoo.errors import CnnzooError, ConfigError, UnknownModelError
from cnnzoo.experiments.lesion import (
    deletable_blocks,
    random_deletion,
    random_swaps,
    run_lesion_experiment,
    swappable_pairs,
    with_branch_off,
    with_swaps,
    without_blocks,
)
from cnnzoo.train.engine import evaluate
from cnnzoo.train.runs import evaluate_run, load_run

TINY = "synthetic:classes=4,channels=1,size=16,train=160,test=48"
MAX_K, DRAWS = 2, 2


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """The whole experiment: resnet20 and plain20 trained one epoch, then every lesion."""
    out = tmp_path_factory.mktemp("lesion")
    lines = []
    torch.set_num_threads(3)  # the experiment trains with --threads 1, then gives torch its 3 back
    report = run_lesion_experiment(model="resnet20", data=TINY, train_size=0, epochs=1, batch_size=32,
                                   limit_test=0, max_k=MAX_K, draws=DRAWS, out=out, device="cpu", threads=1,
                                   log=lines.append)  # fmt: skip
    lines.append(f"threads after: {torch.get_num_threads()}")
    return out, report, lines


def _rows(out):
    with open(out / "results.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _x(n=4):
    return torch.randn(n, 1, 16, 16)


def test_results_files_and_tables(experiment):
    out, report, _ = experiment
    assert [(n.name, n.role) for n in report.nets] == [("resnet20", "residual"), ("plain20", "plain")]
    rows = _rows(out)
    # per net: intact + one per block (the residual net also switches off its 2 downsampling
    # branches; the plain net cannot) + MAX_K * DRAWS deletions + MAX_K * DRAWS reorderings
    expected = {"resnet20": 1 + 9 + 2 * MAX_K * DRAWS, "plain20": 1 + 7 + 2 * MAX_K * DRAWS}
    assert {net: sum(r["net"] == net for r in rows) for net in expected} == expected
    assert {r["lesion"] for r in rows} == {"none", "delete-one", "bypass-downsampling", "delete-k", "swap-k"}
    assert all(0.0 <= float(r["test_error"]) <= 1.0 for r in rows)
    text = (out / "results.md").read_text()
    for heading in ("Intact nets", "(a) Deleting one block", "(b) Deleting k random", "(c) k random swaps"):
        assert heading in text
    assert "| 4 | layer2.0 |" in text and "(branch off) | - (changes shape) |" in text
    assert (out / "lesion.png").stat().st_size > 10_000
    assert report.test_images == 48 and report.chance_error() == pytest.approx(0.75)


def test_torchs_thread_count_is_restored(experiment):
    assert experiment[2][-1] == "threads after: 3"


def test_summary_is_computed_from_the_numbers(experiment):
    out, report, _ = experiment
    rows = _rows(out)
    singles = [float(r["test_error"]) for r in rows if r["net"] == "plain20" and r["lesion"] == "delete-one"]
    assert f"of plain20: median error {100 * statistics.median(singles):.2f}%" in report.summary
    assert "chance 75%" in report.summary and report.summary in (out / "results.md").read_text()


def test_table_values_are_what_evaluation_gives(experiment):
    """Recompute a few rows independently: cnnzoo eval for the intact net, and the library's
    delete_blocks on a freshly loaded net with the data set's own loader."""
    out, report, _ = experiment
    rows = _rows(out)
    run_dir = out / "train-resnet20"
    intact = evaluate_run(run_dir, device="cpu", confusion_png=str(out / "confusion.png"))
    baseline = next(r for r in rows if r["net"] == "resnet20" and r["lesion"] == "none")
    assert float(baseline["test_error"]) == pytest.approx(1 - intact.top1, abs=1e-4)

    run = load_run(run_dir, device="cpu")
    bundle = load_dataset(TINY, val_fraction=0.1, seed=0)
    loader = make_loader(bundle.test, batch_size=16, train=False, input_size=tuple(run.meta["input_size"]),
                         augment=None, mean=run.meta["mean"], std=run.meta["std"])  # fmt: skip
    for draw_row in [r for r in rows if r["net"] == "resnet20" and r["lesion"] in ("delete-one", "delete-k")][:3]:
        model = load_run(run_dir, device="cpu").model
        names = model.block_names()
        model.delete_blocks([names.index(b) for b in draw_row["blocks"].split("+")])
        meter = evaluate(model, loader, torch.device("cpu"), 4)
        assert float(draw_row["test_error"]) == pytest.approx(1 - meter.top1_acc, abs=1e-4)
    del run


def test_deleting_a_block_changes_a_copy_only(experiment):
    out, _, _ = experiment
    for name in ("resnet20", "plain20"):
        model = load_run(out / f"train-{name}", device="cpu").model
        before = {k: v.clone() for k, v in model.state_dict().items()}
        x = _x()
        with torch.no_grad():
            full = model(x)
            lesioned = without_blocks(model, [1])
            assert len(lesioned.residual_blocks()) == 8 and len(model.residual_blocks()) == 9
            assert lesioned.block_names()[:3] == ["layer1.0", "layer1.1", "layer2.0"]
            # layer1.2 moved up, as a deep copy: same weights, not the same module
            assert torch.equal(lesioned.layer1[1].conv1.weight, model.layer1[2].conv1.weight)
            assert lesioned.layer1[1] is not model.layer1[2]
            assert not torch.allclose(lesioned(x), full)
            torch.testing.assert_close(model(x), full)
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
        assert deletable_blocks(model) == [0, 1, 2, 4, 5, 7, 8]
        with pytest.raises(ConfigError, match="changes the shape"):
            without_blocks(model, [3])


def test_switching_a_branch_off_is_deleting_the_block(experiment):
    """For a block that keeps its shape the two lesions agree (with trained, non-zero BN shifts),
    so the downsampling blocks' "branch off" is the same lesion in the only form they allow."""
    out, _, _ = experiment
    model = load_run(out / "train-resnet20", device="cpu").model
    assert model.layer1[1].bn2.bias.abs().sum() > 0  # trained: zeroing the scale alone would not do
    x = _x()
    with torch.no_grad():
        torch.testing.assert_close(with_branch_off(model, 1)(x), without_blocks(model, [1])(x))
        off = with_branch_off(model, 3)  # layer2.0: 16 -> 32 channels, stride 2
        assert off(x).shape == (4, 4) and not torch.allclose(off(x), model(x))
        assert len(off.residual_blocks()) == 9 and model.layer2[0].bn2.weight.abs().sum() > 0
    plain = load_run(out / "train-plain20", device="cpu").model
    with pytest.raises(ConfigError, match="no shortcut"):
        with_branch_off(plain, 3)


def test_swaps_stay_within_a_stage_and_keep_shapes(experiment):
    out, _, _ = experiment
    model = load_run(out / "train-resnet20", device="cpu").model
    blocks = model.residual_blocks()
    pairs = swappable_pairs(model)
    assert pairs == [(0, 1), (0, 2), (1, 2), (4, 5), (7, 8)]
    swaps = random_swaps(pairs, 3, seed=0, draw=0)
    assert swaps == random_swaps(pairs, 3, seed=0, draw=0) and len(swaps) == 3
    with torch.no_grad():
        reordered = with_swaps(model, [(0, 2), (7, 8)])
        new = reordered.residual_blocks()
        assert [b.stage_index for b in new] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
        assert torch.equal(new[0].conv1.weight, blocks[2].conv1.weight)
        assert torch.equal(new[8].conv1.weight, blocks[7].conv1.weight)
        assert torch.equal(model.layer1[0].conv1.weight, blocks[0].conv1.weight)  # the original stays
        x = _x()
        assert reordered(x).shape == model(x).shape and not torch.allclose(reordered(x), model(x))


def test_random_deletions_are_reproducible_and_distinct():
    deletable = [0, 1, 2, 4, 5, 7, 8]
    for k in (1, 3, 7):
        chosen = random_deletion(deletable, k, seed=0, draw=1)
        assert chosen == random_deletion(deletable, k, seed=0, draw=1)
        assert len(set(chosen)) == k and set(chosen) <= set(deletable)
    assert any(random_deletion(deletable, 2, 0, d) != random_deletion(deletable, 2, 0, 0) for d in range(1, 5))


def test_a_run_directory_can_be_reused(experiment, tmp_path):
    """--from / --plain-from: the nets of finished runs, no training; same numbers."""
    out, report, _ = experiment
    again = run_lesion_experiment(from_run=out / "train-resnet20", plain_from=out / "train-plain20", limit_test=0,
                                  max_k=1, draws=1, out=tmp_path, device="cpu", threads=1, log=lambda _: None)  # fmt: skip
    assert not any(tmp_path.glob("train-*"))
    assert [n.baseline_error for n in again.nets] == [n.baseline_error for n in report.nets]
    singles = [[(x.net, x.error) for x in r.lesions if x.kind == "delete-one"] for r in (again, report)]
    assert singles[0] == singles[1] and len(singles[0]) == 14
    with pytest.raises(ConfigError, match="trained on synthetic"):
        run_lesion_experiment(from_run=out / "train-resnet20", data="fashion-mnist", out=tmp_path, plain="none")


def test_user_mistakes_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(CnnzooError, match="cnnzoo run directory"):
        run_lesion_experiment(from_run=tmp_path, out=tmp_path / "out")
    with pytest.raises(UnknownModelError, match="unknown model 'resnet57'"):
        run_lesion_experiment(model="resnet57", out=tmp_path / "out")
    with pytest.raises(ConfigError, match="no residual blocks"):
        run_lesion_experiment(model="lenet5", out=tmp_path / "out")
    with pytest.raises(ConfigError, match="no plain twin known for preact_resnet18"):
        run_lesion_experiment(model="preact_resnet18", out=tmp_path / "out")
    with pytest.raises(ConfigError, match="--draws must be >= 1"):
        run_lesion_experiment(draws=0, out=tmp_path / "out")
    assert main(["experiment", "lesion", "--from", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert main(["experiment", "lesion", "--model", "nosuchnet", "--out", str(tmp_path / "out")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and "config.yaml not found" in errors[0] and "unknown model 'nosuchnet'" in errors[1]
