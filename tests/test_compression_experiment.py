"""``cnnzoo experiment compression`` (issue 12, part 5) on tiny synthetic data: every part, one epoch each."""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path

import pytest

from cnnzoo.cli import main

TINY = "synthetic:classes=3,channels=1,size=28,train=240,test=60"
#: the whole experiment at its smallest: resnet20 pruned at 0.5 by every method, lenet_300_100 deep-compressed
#: (the paper's Table 1 net), lenet_300_100 taught by resnet20 with 60 labels and with all 216
ARGS = ["experiment", "compression", "--data", TINY, "--model", "resnet20", "--train-size", "0", "--epochs", "1",
        "--finetune-epochs", "1", "--ratios", "0.5", "--deep-models", "lenet_300_100", "--deep-train-size", "0",
        "--deep-epochs", "1", "--retrain-epochs", "1", "--teacher", "resnet20", "--student", "lenet_300_100",
        "--teacher-epochs", "1", "--distill-train-size", "0", "--few-labels", "60", "--student-epochs", "1",
        "--few-epochs", "1", "--distill-lrs", "0.05,0.02", "--limit-test", "0", "--batch-size", "48",
        "--device", "cpu", "--threads", "1"]  # fmt: skip


def _tree(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` and a digest of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    out = tmp_path_factory.mktemp("compression") / "exp"
    assert main(ARGS + ["--out", str(out)]) == 0
    return out


def _csv(out: Path) -> list[dict[str, str]]:
    with open(out / "results.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_files_and_tables(experiment):
    out = experiment
    for name in ("results.md", "results.csv", "compression-macs.png", "compression-latency.png",
                 "compression-distill.png"):  # fmt: skip
        assert (out / name).stat().st_size > 0, name
    assert (out / "compression-macs.png").stat().st_size > 10_000
    text = (out / "results.md").read_text()
    for heading in ("## Filter pruning of resnet20", "## Deep Compression",
                    "### lenet_300_100; paper: Han et al. 2016, Table 1", "## Distillation", "## Anchors"):  # fmt: skip
        assert heading in text, heading
    # pruning: the two bases, then one row per method and ratio
    for row in ("| (base) | 0 |", "| (base, bn_sparsity 1e-05) | 0 |", "| l1 | 0.5 |", "| bn-scale | 0.5 |",
                "| random | 0.5 |"):  # fmt: skip
        assert row in text, row
    # deep compression: the paper's layer names and its kept shares beside ours (Table 1: 8, 9, 26 %)
    assert "| ip1 | 235,200 | 8.0 | 8 |" in text and "| ip3 | 300 | 26.0 | 26 |" in text and "(40x)" in text
    # the anchors of the issue
    assert "93.53% -> 93.77%" in text and "39x" in text and "146 test errors down to 74" in text
    rows = _csv(out)
    assert sum(r["part"] == "prune" for r in rows) == 6  # fine-tuned and from scratch, three methods
    assert sum(r["part"] == "distill" for r in rows) == 8  # 2 label counts x 2 arms x 2 learning rates
    assert sum(r["part"] == "deep" for r in rows) == 1


def test_pruning_rows_come_from_the_runs(experiment):
    out = experiment
    record = json.loads((out / "prune-l1-0.5" / "run.json").read_text())["prune"]
    assert record["method"] == "l1" and record["ratio"] == 0.5 and not record["global_pruning"]
    slim = json.loads((out / "prune-bn-scale-0.5" / "run.json").read_text())["prune"]
    assert slim["global_pruning"] and slim["source"].endswith("train-resnet20-bn-sparsity")
    rows = {(r["method"], r["arm"]): r for r in _csv(out) if r["part"] == "prune"}
    assert int(rows["l1", "fine-tuned"]["macs"]) == record["macs_after"] < record["macs_before"]
    finetuned = json.loads((out / "prune-l1-0.5" / "results.json").read_text())["top1"]
    assert float(rows["l1", "fine-tuned"]["top1"]) == pytest.approx(finetuned, abs=1e-4)
    # l1 and random leave the same architecture: one scratch run serves both; bn-scale (global) has its own
    scratch_dirs = {method: rows[method, "scratch"]["run_dir"] for method in ("l1", "random", "bn-scale")}
    assert scratch_dirs["l1"] == scratch_dirs["random"] != scratch_dirs["bn-scale"]
    assert not (out / "scratch-random-0.5").exists()
    scratch = json.loads((out / "scratch-l1-0.5" / "run.json").read_text())
    assert [t["name"] for t in scratch["spec"]["transforms"]] == ["pruned"]
    config = (out / "scratch-l1-0.5" / "config.yaml").read_text()
    assert "epochs: 2" in config  # Scratch-E: the base's epoch and the fine-tuning's


def test_distillation_chooses_each_arms_lr_on_validation(experiment):
    out = experiment
    rows = [r for r in _csv(out) if r["part"] == "distill"]
    for labels in ("60", "all"):
        for arm in ("alone", "distilled"):
            mine = [r for r in rows if r["labels"] == labels and r["arm"].startswith(arm)]
            assert len(mine) == 2 and sum("(chosen)" in r["arm"] for r in mine) == 1
            vals = {r["extra"]: json.loads((Path(r["run_dir"]) / "results.json").read_text())["best_val_top1"]
                    for r in mine}  # fmt: skip
            chosen = next(r["extra"] for r in mine if "(chosen)" in r["arm"])
            assert vals[chosen] == max(vals.values())
    record = json.loads((out / "distill-lenet_300_100-60-lr0.05" / "run.json").read_text())
    assert record["kind"] == "distill" and record["distill"]["temperature"] == 4.0
    assert "limit_train: 60" in (out / "distill-lenet_300_100-60-lr0.05" / "config.yaml").read_text()


def test_running_again_reuses_every_run(experiment, capsys):
    out = experiment
    before = {k: v for k, v in _tree(out).items() if not k.startswith(("results.", "compression-", "run.json"))}
    assert main(ARGS + ["--out", str(out)]) == 0
    printed = capsys.readouterr().out
    # 2 bases, 3 prunes, 2 scratch runs, the lenet's base and compression, the teacher, 8 students
    assert printed.count("reusing it") == 18
    after = {k: v for k, v in _tree(out).items() if k in before}
    assert after == before


def test_other_settings_are_refused_naming_the_key(experiment, capsys):
    out = experiment
    before = _tree(out)
    assert main(ARGS + ["--out", str(out), "--finetune-epochs", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "prune.finetune_epochs" in err[0]
    assert _tree(out) == before


def test_a_finished_run_of_other_settings_is_refused(experiment, tmp_path, capsys):
    """Another ratio under a run's name (copied in by hand) is caught by its run.json record."""
    import shutil

    out = tmp_path / "exp"
    shutil.copytree(experiment, out)
    record_file = out / "prune-l1-0.5" / "run.json"
    record = json.loads(record_file.read_text())
    record["prune"]["ratio"] = 0.25
    record_file.write_text(json.dumps(record))
    before = _tree(out)
    assert main(ARGS + ["--out", str(out), "--parts", "prune"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ratio (0.25 -> 0.5)" in err[0] and "prune-l1-0.5" in err[0]
    assert _tree(out) == before


@pytest.mark.parametrize("flags, message", [
    (["--ratios", "0.5,1.2"], "in (0, 1)"),
    (["--ratios", "0"], "in (0, 1)"),
    (["--methods", "l1,magic"], "unknown pruning method 'magic'"),
    (["--parts", "prune,quantize"], "unknown part 'quantize'"),
    (["--model", "lenet5"], "cannot be pruned"),
    (["--deep-models", "nonet"], "nonet"),
    (["--deep-prune-ratio", "0.9,nolayer=0.5", "--deep-models", "lenet5"], "no layer 'nolayer'"),
    (["--few-labels", "5000", "--distill-train-size", "1000"], "--few-labels (5000) must be fewer"),
    (["--temperature", "0"], "--temperature"),
    (["--distill-lrs", "0.1,-1"], "--distill-lrs must be a number > 0"),
    (["--finetune-epochs", "-1"], "--finetune-epochs must be >= 0"),
    (["--bits-fc", "0"], "--bits-fc"),
])  # fmt: skip
def test_bad_flags_are_one_line_and_write_nothing(tmp_path, capsys, flags, message):
    out = tmp_path / "exp"
    assert main(ARGS + ["--out", str(out)] + flags) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists() and os.listdir(tmp_path) == []


def test_codebook_bits_of_convolutions_per_net():
    """The paper's 8 bits for its own nets; 5 for lenet5, whose C5 is fully connected in all but name."""
    from cnnzoo.experiments.compression import _bits_conv

    assert _bits_conv("lenet5_caffe", None) == 8 and _bits_conv("lenet_300_100", None) == 8
    assert _bits_conv("lenet5", None) == 5 and _bits_conv("lenet5", 7) == 7


def test_learning_rates_of_the_lenets_per_net(experiment):
    """Caffe's 0.01 for the paper's nets (at 0.1 lenet5_caffe's loss became nan), 0.1 for lenet5; retraining 0.3x."""
    from cnnzoo.experiments.compression import _deep_lrs

    assert _deep_lrs("lenet5_caffe", None, None) == (0.01, pytest.approx(0.003))
    assert _deep_lrs("lenet5", None, None) == (0.1, pytest.approx(0.03))
    assert _deep_lrs("lenet5", 0.2, 0.05) == (0.2, 0.05)
    base = (experiment / "train-lenet_300_100" / "config.yaml").read_text()
    retrained = (experiment / "deep-lenet_300_100" / "config.yaml").read_text()
    assert "\nlr: 0.01\n" in base and "\nlr: 0.003\n" in retrained
