"""``cnnzoo experiment nas`` (issue 15, items 5 and 6): RL against random search, the winner against ResNet-20.

The whole experiment runs once, tiny (synthetic 12x12 images, children of 2 layers, 3 trials of
1 epoch per search, 1 final epoch); the numbers of the report are checked against the files the
searches and the runs wrote, and the verdict and the plot's series on hand-made numbers.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from cnnzoo.analysis import summary
from cnnzoo.cli import main
from cnnzoo.experiments import _runs
from cnnzoo.experiments.nas import (
    SearchSummary,
    across_seeds,
    choose_winner,
    running_best,
    running_mean,
    verdict,
)
from cnnzoo.registry import create_model
from cnnzoo.train.config import read_config

TINY = "synthetic:classes=3,channels=1,size=12,train=96,test=48"
CLI = ["experiment", "nas", "--data", TINY, "--depth", "2", "--trials", "3", "--epochs", "1", "--limit-train", "0",
       "--final-epochs", "1", "--final-limit-train", "0", "--batch-size", "16", "--workers", "0",
       "--threads", "1"]  # fmt: skip
SEARCHES = ("search-rl-seed0", "search-rl-seed1", "search-random-seed0", "search-random-seed1")


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("nas") / "out"
    assert main([*CLI, "--out", str(out)]) == 0
    return out


# ------------------------------------------------------------------------------------------
# the whole experiment, tiny
# ------------------------------------------------------------------------------------------


def test_one_search_per_controller_and_seed_and_the_report(tiny):
    for name in SEARCHES:
        rows = read_csv(tiny / name / "trials.csv")
        assert [int(r["trial"]) for r in rows] == [1, 2, 3]
        assert json.loads((tiny / name / "search.json").read_text())["settings"]["controller"] == name.split("-")[1]
    assert (tiny / "reward.png").stat().st_size > 10_000
    table = read_csv(tiny / "results.csv")
    searches = [r for r in table if r["row"] == "search"]
    assert [(r["controller"], int(r["seed"])) for r in searches] == [("rl", 0), ("rl", 1), ("random", 0),
                                                                        ("random", 1)]  # fmt: skip
    markdown = (tiny / "results.md").read_text()
    for row, name in zip(searches, SEARCHES):
        trials = read_csv(tiny / name / "trials.csv")
        rewards = [float(t["val_top1"]) for t in trials if t["status"] == "ok"]
        assert float(row["best_val_top1"]) == pytest.approx(max(rewards), abs=1e-6)
        assert int(row["trials"]) == 3 and int(row["ok_trials"]) == len(rewards)
        # the last quarter of 3 trials is the last trial
        last = trials[-1]["val_top1"]
        assert row["last_quarter_reward"] == ("" if last == "" else f"{float(last):.6f}")
        assert f"`{row['architecture']}`" in markdown
    assert "RL against random over 2 seeds" in markdown and "the searched net's test top-1" in markdown


def test_the_winner_has_the_best_validation_top1_of_every_search(tiny):
    candidates = []  # (val top-1, search order, trial, row): the winner is the max; ties go to the earliest
    for order, name in enumerate(SEARCHES):
        for row in read_csv(tiny / name / "trials.csv"):
            if row["status"] == "ok":
                candidates.append((float(row["val_top1"]), -order, -int(row["trial"]), row))
    best = max(candidates, key=lambda c: c[:3])[3]
    winner = next(r for r in read_csv(tiny / "results.csv") if r["row"] == "winner")
    assert winner["architecture"] == best["architecture"]
    record = json.loads((tiny / "winner" / "run.json").read_text())
    assert record["spec"]["name"] == "nas_child" and record["spec"]["options"] == {"arch": best["architecture"]}
    # counted the way the search priced the child: at the size it trained at
    assert (int(winner["params"]), int(winner["macs"])) == (int(best["params"]), int(best["macs"]))
    baseline = next(r for r in read_csv(tiny / "results.csv") if r["row"] == "resnet20")
    counted = summary(create_model("resnet20", num_classes=3, in_chans=1), (1, 12, 12))
    assert (int(baseline["params"]), int(baseline["macs"])) == (counted.total_params, counted.total_macs)
    # the search held every child to ResNet-20's multiply-adds (the default --max-macs)
    assert json.loads((tiny / SEARCHES[0] / "search.json").read_text())["settings"]["max_macs"] == counted.total_macs


def test_the_winner_and_resnet20_are_trained_alike_and_tested(tiny):
    configs = {name: read_config(tiny / name / "config.yaml") for name in ("winner", "resnet20")}
    assert configs["winner"].model == "nas_child" and configs["resnet20"].model == "resnet20"
    recipes = [{k: v for k, v in vars(c).items() if k not in ("model", "model_kwargs", "out")}
               for c in configs.values()]  # fmt: skip
    assert recipes[0] == recipes[1]
    assert (configs["winner"].epochs, configs["winner"].optimizer, configs["winner"].schedule) == (1, "sgd", "cosine")
    table = {r["row"]: r for r in read_csv(tiny / "results.csv")}
    for name in ("winner", "resnet20"):
        results = _runs.run_results(tiny / name)
        assert results["split"] == "test"
        assert float(table[name]["test_top1"]) == pytest.approx(results["top1"], abs=1e-6)
        assert float(table[name]["best_val_top1"]) == pytest.approx(results["best_val_top1"], abs=1e-6)
        assert json.loads((tiny / name / "run.json").read_text())["input_size"] == [12, 12]


def test_running_it_again_reuses_every_search_and_run(tiny, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(tiny, copy)
    derived = {"results.md", "results.csv", "reward.png"}  # rewritten from the same numbers
    before = snapshot(copy)
    capsys.readouterr()
    assert main([*CLI, "--out", str(copy)]) == 0
    printed = capsys.readouterr().out
    assert "winner: already trained" in printed and "resnet20: already trained" in printed
    assert printed.count("3 of 3 trials recorded, 0 to re-run") == 4
    assert "epoch 1/1" not in printed
    after = snapshot(copy)
    assert set(after) == set(before)  # no new trial, no new run
    for name in SEARCHES:  # the trials and their run directories are untouched
        for key in before:
            if key.startswith(f"{name}/trials/") or key in (f"{name}/trials.csv", f"{name}/state.json"):
                assert after[key] == before[key], key
    for key in before:
        if key.startswith(("winner/", "resnet20/")):
            assert after[key] == before[key], key
    assert after["results.csv"] == before["results.csv"]
    assert derived <= set(after)


def test_other_settings_in_the_same_folder_are_refused(tiny, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(tiny, copy)
    before = snapshot(copy)
    argv = [a if a != "3" else "4" for a in CLI]  # --trials 4
    assert main([*argv, "--out", str(copy)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "made with other settings" in err and "trials (3 -> 4)" in err
    assert snapshot(copy) == before


# ------------------------------------------------------------------------------------------
# bad input: one line, exit code 2, nothing written
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flags, message", [
    (["--controllers", "rl,evolution"], "unknown controller 'evolution'; choose from rl, random"),
    (["--controllers", ","], "--controllers: give at least one of rl, random"),
    (["--seeds", ""], "--seeds: give at least one seed"),
    (["--seeds", "0,x"], "--seeds: expected comma-separated integers"),
    (["--trials", "0"], "--trials must be >= 1, got 0"),
    (["--final-epochs", "0"], "--final-epochs must be >= 1"),
    (["--max-macs", "lots"], "--max-macs: expected resnet20, a whole count"),
    (["--max-macs", "100"], "admits no child within max_macs=100"),
    (["--data", "synthetic:colours=3"], "bad synthetic option 'colours=3'"),
])  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(flags, message, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([*CLI, *flags, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


# ------------------------------------------------------------------------------------------
# the numbers, by hand
# ------------------------------------------------------------------------------------------


def search(controller: str, seed: int, rewards: list[float | None]) -> SearchSummary:
    rows = [{"trial": n, "status": "failed" if r is None else "ok", "val_top1": r, "seconds": 1.0,
             "architecture": f"3x3:{24 + n}"} for n, r in enumerate(rewards, 1)]  # fmt: skip
    ok = [row for row in rows if row["status"] == "ok"]
    top = max(ok, key=lambda row: (row["val_top1"], -row["trial"])) if ok else None
    best = None if top is None else {"trial": top["trial"], "val_top1": top["val_top1"],
                                     "architecture": top["architecture"]}  # fmt: skip
    return SearchSummary(controller, seed, Path(f"search-{controller}-seed{seed}"), rows, best)


def test_the_running_series_skip_failed_trials():
    rewards = [0.5, None, 0.7, 0.4, None]
    assert running_mean(rewards, window=2) == [0.5, 0.5, 0.7, pytest.approx(0.55), 0.4]
    assert running_best(rewards) == [0.5, 0.5, 0.7, 0.7, 0.7]
    assert running_mean([None, 0.3], window=8) == [None, 0.3]
    points = across_seeds([[0.5, 0.6, 0.7], [None, 0.8]])
    assert points == [(1, 0.5, 0.5, 0.5), (2, pytest.approx(0.7), 0.6, 0.8), (3, 0.7, 0.7, 0.7)]


def test_the_last_quarter_and_the_winner():
    s = search("rl", 0, [0.1, 0.2, 0.3, 0.4, 0.5, None, 0.9, 0.8])  # the last quarter: trials 7 and 8
    assert s.last_quarter_reward == pytest.approx(0.85) and s.ok == 7 and s.best_val_top1 == 0.9
    assert search("rl", 0, [0.2, 0.3, None]).last_quarter_reward is None
    first, second = search("rl", 0, [0.6, 0.9]), search("random", 0, [0.9, 0.5])
    assert choose_winner([first, second]) is first and choose_winner([second, first]) is second  # ties: earliest
    assert choose_winner([search("rl", 1, [None]), second]) is second


def test_the_verdict_follows_the_numbers():
    rl = [search("rl", 0, [0.80, 0.90]), search("rl", 1, [0.85, 0.88])]
    random = [search("random", 0, [0.70, 0.75]), search("random", 1, [0.78, 0.60])]
    line = verdict(rl + random)
    assert line.startswith("RL against random over 2 seeds (RL beats random at this budget)")
    assert "best validation top-1 89.00% vs 76.50% (+12.50 points, RL ahead beyond the seeds' spread)" in line
    assert "last quarter of trials 89.00% vs 67.50% (+21.50 points, RL ahead beyond the seeds' spread)" in line
    overlapping = [search("random", 0, [0.70, 0.95]), search("random", 1, [0.60, 0.70])]
    line = verdict(rl + overlapping)
    assert "(no clear winner at this budget)" in line
    assert "89.00% vs 82.50% (+6.50 points, within the seeds' spread: the min-max ranges overlap)" in line
    behind = [search("random", 0, [0.95, 0.95]), search("random", 1, [0.91, 0.92])]
    assert "(random beats RL at this budget)" in verdict(rl + behind)
    late_better = [search("random", 0, [0.70, 0.95, 0.95, 0.95]), search("random", 1, [0.70, 0.96, 0.96, 0.96])]
    line = verdict([search("rl", 0, [0.99, 0.5, 0.5, 0.5]), search("rl", 1, [0.98, 0.5, 0.5, 0.5]), *late_better])
    assert "(mixed: RL found the best child, but random sampled better children late at this budget)" in line
    assert "one seed, no spread to judge it by" in verdict(rl[:1] + random[:1])
    assert verdict(rl).startswith("only rl searched: nothing to compare")
