"""``cnnzoo experiment gap-sizes`` (the brief's experiment 1), on tiny synthetic images.

NIN-CIFAR is trained at 8x8 (its min_size is 4) and tested at 3x3 (below min_size: skipped),
4x4, 8x8, 16x16 and 32x32 (LeNet-5's only size, added by the experiment); LeNet-5 is trained at
32x32 and must be recorded as "cannot run" everywhere else.
"""

from __future__ import annotations

import json
import re

import pytest
import torch

from cnnzoo.errors import ConfigError
from cnnzoo.experiments.gap_sizes import (
    RandomRescale,
    answer,
    parse_eval_sizes,
    run_gap_sizes_experiment,
)


TINY = "synthetic:classes=4,channels=1,size=8,train=96,test=32"
SETTINGS = dict(data=TINY, input_size=(8, 8), eval_sizes="3,0.5x,1x,2x", epochs=1, limit_train=None,
                limit_val=None, limit_test=None, batch_size=16, lr=0.02, device="cpu", threads=1)  # fmt: skip


def test_eval_sizes_are_scales_or_pixels_sorted_without_duplicates():
    assert parse_eval_sizes("2x,0.5x,1x,32,40", (32, 32)) == [(16, 16), (32, 32), (40, 40), (64, 64)]
    assert parse_eval_sizes("0.5x,1.5x", (224, 160)) == [(112, 80), (336, 240)]


@pytest.mark.parametrize("text", ["0", "abc", "-1x", "0x", "16,,x", "1.5", "", "nanx"])
def test_a_bad_eval_size_is_a_one_line_config_error(text):
    with pytest.raises(ConfigError) as error:
        parse_eval_sizes(text, (32, 32))
    assert "\n" not in str(error.value) and ("eval size" in str(error.value) or "eval-sizes" in str(error.value))


def test_random_rescale_changes_the_size_only_in_training_mode():
    net = torch.nn.Identity()
    hook = RandomRescale([(4, 4), (12, 12)])
    net.register_forward_pre_hook(hook)
    x = torch.randn(2, 1, 8, 8)
    torch.manual_seed(0)
    seen = {tuple(net(x).shape[-2:]) for _ in range(20)}
    assert seen == {(4, 4), (12, 12)}
    net.eval()
    assert net(x).shape == x.shape


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    out = tmp_path_factory.mktemp("gap-sizes")
    lines: list[str] = []
    torch.set_num_threads(3)  # the experiment trains with --threads 1, then gives torch its 3 back
    results = run_gap_sizes_experiment(**SETTINGS, multi_scale=True, out=out, log=lines.append)
    lines.append(f"threads after: {torch.get_num_threads()}")
    return out, results, lines


def _rows(results, variant):
    return {r.label: r for r in results if r.variant == variant}


def test_the_gap_net_runs_at_every_size_and_its_feature_map_grows(experiment):
    out, results, _ = experiment
    gap = _rows(results, "gap")
    assert list(gap) == ["3x3", "4x4", "8x8", "16x16", "32x32"]
    assert gap["3x3"].status == "skipped" and "at least 4x4" in gap["3x3"].reason
    ran = [gap[k] for k in ("4x4", "8x8", "16x16", "32x32")]
    assert all(r.status == "ok" and 0.0 <= r.top1 <= 1.0 for r in ran)
    sides = [r.feature_map[-1] for r in ran]
    assert sides == sorted(sides) and sides[0] < sides[-1]  # the map grows with the input ...
    assert {r.feature_map[0] for r in ran} == {192} and {r.head_input for r in ran} == {192}  # ... GAP's width does not
    # the 1x row is the engine's own test measurement (same weights, same images)
    engine_top1 = json.loads((out / "gap-nin_cifar-8x8-seed0" / "results.json").read_text())["top1"]
    assert abs(gap["8x8"].top1 - engine_top1) <= 1 / 32 + 1e-9


def test_the_fixed_net_cannot_run_at_other_sizes_and_the_error_is_recorded(experiment):
    out, results, _ = experiment
    fixed = _rows(results, "fixed")
    assert fixed["32x32"].status == "ok" and fixed["32x32"].feature_map == (120, 1, 1)
    for label in ("3x3", "4x4", "8x8", "16x16"):
        row = fixed[label]
        assert row.status == "cannot run" and row.top1 is None
        assert row.reason and "\n" not in row.reason  # the forward pass's own error, one line
        assert "lenet5 takes only 32x32 inputs" in row.registry_error
    table = (out / "results.md").read_text()
    assert "| 16x16 | 2x |" in table and "cannot run: " in table
    assert "ran only at 32x32" in answer(results) and "ran only at 32x32" in table
    csv_lines = (out / "results.csv").read_text().strip().splitlines()
    assert len(csv_lines) == 1 + len(results) == 1 + 3 * 5
    assert (out / "gap_sizes.png").stat().st_size > 0


def test_torchs_thread_count_is_restored(experiment):
    assert experiment[2][-1] == "threads after: 3"


def test_multi_scale_training_trains_a_third_net(experiment):
    out, results, lines = experiment
    multi = _rows(results, "multi-scale")
    assert all(multi[k].status == "ok" for k in ("4x4", "8x8", "16x16", "32x32"))
    recorded = json.loads((out / "multiscale-nin_cifar-8x8-seed0" / "run.json").read_text())["multiscale_sizes"]
    assert recorded == [[4, 4], [8, 8], [16, 16], [32, 32]]
    assert any("each batch rescaled" in line for line in lines)


def test_a_rerun_reuses_the_trained_runs_and_refuses_changed_settings(experiment):
    out, results, _ = experiment
    weights = out / "gap-nin_cifar-8x8-seed0" / "best.safetensors"
    stamp = weights.stat().st_mtime_ns
    lines: list[str] = []
    again = run_gap_sizes_experiment(**SETTINGS, multi_scale=True, out=out, log=lines.append)
    assert sum("already trained" in line for line in lines) == 3
    assert not any(line.startswith("training ") for line in lines)
    assert weights.stat().st_mtime_ns == stamp
    assert [(r.variant, r.label, r.top1) for r in again] == [(r.variant, r.label, r.top1) for r in results]
    with pytest.raises(ConfigError, match=r"gap-sizes experiment in .* made with other settings: epochs \(1 -> 2\)"):
        run_gap_sizes_experiment(**{**SETTINGS, "epochs": 2}, out=out, log=lines.append)
    before, after = "[[4, 4], [8, 8], [16, 16], [32, 32]]", "[[4, 4], [8, 8], [32, 32]]"  # 16x16 is 2x of 8x8
    with pytest.raises(ConfigError, match=re.escape(f"other settings: multi_scale_sizes ({before} -> {after})")):
        run_gap_sizes_experiment(**{**SETTINGS, "eval_sizes": "0.5x,1x"}, multi_scale=True, out=out, log=lines.append)


def test_an_interrupted_training_stops_the_experiment_with_the_signal_exit_code(monkeypatch, tmp_path):
    import cnnzoo.train
    from cnnzoo.experiments._runs import ExperimentInterrupted
    from cnnzoo.train.engine import FitResult

    def interrupted_fit(model, out, **_):
        return FitResult(run_dir=out, status="interrupted", epochs_done=0, steps=3, signal="SIGTERM")

    monkeypatch.setattr(cnnzoo.train, "fit", interrupted_fit)
    with pytest.raises(ExperimentInterrupted, match="run the same command again") as error:
        run_gap_sizes_experiment(**SETTINGS, out=tmp_path, log=lambda _: None)
    assert error.value.exit_code == 143  # 128 + SIGTERM, as the engine's own commands exit


def test_cli_errors_are_one_line(capsys, tmp_path):
    from cnnzoo.cli import main

    assert main(["experiment", "gap-sizes", "--data", TINY, "--eval-sizes", "1x,abc", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "bad eval size 'abc'" in err and err.count("\n") == 1
    assert main(["experiment", "gap-sizes", "--data", TINY, "--input-size", "2", "--out", str(tmp_path)]) == 2
    assert "at least 4x4" in capsys.readouterr().err
