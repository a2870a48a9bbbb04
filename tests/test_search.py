"""Architecture search (issue 15, part B): the search loop, workers, Ray, resume, ``cnnzoo search``.

Zoph & Le 2017 ("Neural Architecture Search with Reinforcement Learning"): children sampled by a
controller, trained, their validation accuracy the reward.  Everything here runs on synthetic data
and a tiny space (two layers, few filters) so that a child trains in about a second.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from cnnzoo.search.runner import best_run_dir, run_search

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # search_helpers, also for the worker processes (spawn passes sys.path on)

import search_helpers  # noqa: E402

DATA = "synthetic:classes=3,channels=1,size=12,train=240,test=8,noise=0.2"  # children reach 50-100% in 3 epochs
SPACE = {"depth": 2, "filters": [4, 8], "filter_heights": [1, 3], "filter_widths": [1, 3], "strides": [1]}
SETTINGS = dict(data=DATA, epochs=3, batch_size=16, lr=0.3, val_fraction=0.25, seed=3, space=SPACE, threads=1)
CLI_SETTINGS = ["--data", DATA, "--epochs", "3", "--batch-size", "16", "--lr", "0.3", "--val-fraction", "0.25",
                "--seed", "3", "--depth", "2", "--filters", "4,8", "--filter-sizes", "1,3", "--strides", "1",
                "--threads", "1"]  # fmt: skip


def read_trials(folder: Path) -> list[dict[str, str]]:
    with open(folder / "trials.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def cli(argv, capsys):
    code = search_helpers.cli_main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, *pieces: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("cnnzoo: error: ")
    for piece in pieces:
        assert piece in lines[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def no_training(job) -> dict:
    """A trial that trains nothing (the loop's bookkeeping is what is tested); its reward varies with its number."""
    return {"trial": job.number, "status": "ok", "val_top1": 0.1 * (job.number % 7), "seconds": 0.0,
            "worker": "here", "error": ""}  # fmt: skip


@pytest.fixture(scope="module")
def rl_search(tmp_path_factory):
    """A 6-trial RL search in this process (workers=0), shared by the tests that read one."""
    out = tmp_path_factory.mktemp("rl") / "search"
    lines: list[str] = []
    result = run_search(out, controller="rl", trials=6, workers=0, log=lines.append, **SETTINGS)
    return out, result, lines


# ------------------------------------------------------------------------------------------
# searches that finish
# ------------------------------------------------------------------------------------------


def test_rl_search_finishes_and_records_every_trial(rl_search):
    out, result, lines = rl_search
    rows = read_trials(out)
    assert [int(r["trial"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all(r["status"] == "ok" for r in rows)
    assert list(rows[0]) == ["trial", "architecture", "params", "macs", "val_top1", "seconds", "worker", "status",
                             "error"]  # fmt: skip
    rewards = [float(r["val_top1"]) for r in rows]
    assert len(set(rewards)) > 1  # the architectures learn differently well
    best = json.loads((out / "best.json").read_text())
    assert best["val_top1"] == pytest.approx(max(rewards))
    assert best["trial"] == int(rows[rewards.index(max(rewards))]["trial"])
    assert (out / "reward.png").stat().st_size > 0
    # each reward is the best validation top-1 its run directory recorded
    for row in rows:
        results = json.loads((out / "trials" / f"{int(row['trial']):04d}" / "results.json").read_text())
        assert results["split"] == "validation"  # the test split takes no part in the search
        assert float(row["val_top1"]) == pytest.approx(results["best_val_top1"], abs=1e-6)
    state = json.loads((out / "state.json").read_text())
    assert state["in_flight"] == [] and state["generation"] == 12  # 6 samples + 6 updates
    assert sum(line.startswith("trial ") for line in lines) == 6
    assert any(f"cnnzoo train {out}" in line for line in lines)


def test_best_architecture_rebuilds_through_load_run(rl_search):
    from cnnzoo.analysis import summary
    from cnnzoo.train.runs import load_run

    out, result, _ = rl_search
    assert best_run_dir(out) == out / result.best["run_dir"]
    assert best_run_dir(out / "trials") is None  # not a search directory
    run = load_run(best_run_dir(out), device="cpu")
    assert run.model.model_spec.options["arch"] == result.best["architecture"]
    row = next(r for r in read_trials(out) if int(r["trial"]) == result.best["trial"])
    counted = summary(run.model, (1, 12, 12))
    assert (counted.total_params, counted.total_macs) == (int(row["params"]), int(row["macs"]))


def test_a_search_directory_stands_for_its_best_architecture(rl_search, tmp_path, capsys):
    """load_run(DIR), `cnnzoo summary DIR` and `cnnzoo train DIR` take the search directory itself."""
    from cnnzoo import cli as cnnzoo_cli
    from cnnzoo.train.runs import load_run

    out, result, _ = rl_search
    run = load_run(out, device="cpu")
    assert run.run_dir == out / result.best["run_dir"]
    assert run.model.model_spec.options["arch"] == result.best["architecture"]
    capsys.readouterr()
    assert cnnzoo_cli.main(["summary", str(out)]) == 0
    assert f"{result.best['params']:,}" in capsys.readouterr().out
    again = tmp_path / "again"
    assert cnnzoo_cli.main(["train", str(out), "--data", DATA, "--epochs", "1", "--max-steps", "1", "--threads", "1",
                            "--out", str(again), "--no-progress"]) == 0  # fmt: skip
    retrained = load_run(again, device="cpu")
    assert retrained.meta["spec"]["options"] == {"arch": result.best["architecture"]}
    assert retrained.meta["architecture_from"] == str(out)


def test_random_search_finishes(tmp_path):
    out = tmp_path / "random"
    result = run_search(out, controller="random", trials=6, workers=0, log=lambda text: None, **SETTINGS)
    rows = read_trials(out)
    assert [int(r["trial"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all(r["status"] == "ok" and 0 <= float(r["val_top1"]) <= 1 for r in rows)
    assert json.loads((out / "search.json").read_text())["settings"]["controller"] == "random"
    assert result.best["val_top1"] == pytest.approx(max(float(r["val_top1"]) for r in rows), abs=1e-6)


# ------------------------------------------------------------------------------------------
# kill -9 and --resume
# ------------------------------------------------------------------------------------------


def test_sigkill_then_resume_records_each_trial_once(tmp_path, rl_search):
    """kill -9 of `cnnzoo search` after two recorded trials, then --resume: trials 1..3 once each, the rows
    recorded before the kill unchanged, and (one worker) the architectures of an uninterrupted search."""
    out = tmp_path / "killed"
    command = [sys.executable, str(HERE / "search_helpers.py"), "search", *CLI_SETTINGS, "--controller", "rl",
               "--trials", "3", "--out", str(out)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([*command, "--workers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env=env)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if (out / "trials.csv").is_file() and len(read_trials(out)) >= 2:
                break
            time.sleep(0.05)
        assert process.poll() is None, process.stderr.read().decode()
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    before = read_trials(out)
    assert len(before) == 2
    # the worker process, orphaned, ends by itself: it must not write into a trial --resume re-runs
    worker_pid = int(before[0]["worker"].rsplit(":", 1)[1])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(worker_pid):
        time.sleep(0.1)
    assert not _alive(worker_pid)
    # resumed in this process (--workers 0): how a search runs may change on --resume
    resumed = subprocess.run([*command, "--resume", "--workers", "0"], capture_output=True, text=True, env=env,
                             timeout=180)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    after = read_trials(out)
    assert [int(r["trial"]) for r in after] == [1, 2, 3]
    assert after[:2] == before
    assert all(r["status"] == "ok" for r in after)
    # with one worker the resumed search samples what the uninterrupted one did (same settings, seed)
    uninterrupted = read_trials(rl_search[0])
    assert [r["architecture"] for r in after] == [r["architecture"] for r in uninterrupted[:3]]


def _alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie waiting to be reaped does not)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_kill_between_state_and_controller_files_is_replayed(tmp_path):
    """state.json is written before controller.safetensors; a kill between the two leaves the controller one
    event behind, and --resume replays it: a sample (trial 2's) and an update (trial 3's reward)."""
    from safetensors.torch import load

    whole = tmp_path / "whole"
    files: dict[str, bytes] = {}

    def trial(job):  # runs after the trial's dispatch was saved
        files[f"state-sampled-{job.number}"] = (whole / "state.json").read_bytes()
        files[f"controller-sampled-{job.number}"] = (whole / "controller.safetensors").read_bytes()
        return no_training(job)

    def log(line):  # after a trial's record and the controller's update were saved
        if line.startswith("trial 1/"):
            files["controller-recorded-1"] = (whole / "controller.safetensors").read_bytes()

    run_search(whole, controller="rl", trials=3, workers=0, trial_fn=trial, log=log, **SETTINGS)
    final_controller = load((whole / "controller.safetensors").read_bytes())  # a copy, not a map of the file

    # killed after trial 2's sample reached state.json, before it reached controller.safetensors
    killed = tmp_path / "killed-after-sample"
    killed.mkdir()
    (killed / "search.json").write_bytes((whole / "search.json").read_bytes())
    (killed / "state.json").write_bytes(files["state-sampled-2"])
    (killed / "controller.safetensors").write_bytes(files["controller-recorded-1"])
    run_search(killed, resume=True, workers=0, trial_fn=no_training, log=lambda text: None)
    assert read_trials(killed) == read_trials(whole)

    # killed after trial 3's reward reached state.json, before the updated controller did
    (whole / "controller.safetensors").write_bytes(files["controller-sampled-3"])
    run_search(whole, resume=True, workers=0, trial_fn=no_training, log=lambda text: None)
    for name, tensor in load((whole / "controller.safetensors").read_bytes()).items():
        assert torch.equal(tensor, final_controller[name]), name
    for name, tensor in load((killed / "controller.safetensors").read_bytes()).items():
        assert torch.equal(tensor, final_controller[name]), name


def test_resume_with_other_settings_names_the_keys(rl_search, capsys):
    out = rl_search[0]
    before = snapshot(out)
    code, _, err = cli(["search", "--out", str(out), "--resume", "--trials", "8", "--controller", "random",
                        "--depth", "3"], capsys)  # fmt: skip
    assert_one_line_error(code, err, "other settings", "controller", "trials", "space.depth")
    assert snapshot(out) == before


def test_resume_of_a_finished_search_trains_nothing(rl_search, capsys):
    out = rl_search[0]
    before = read_trials(out)
    code, printed, _ = cli(["search", "--out", str(out), "--resume", "--workers", "2"], capsys)
    assert code == 0
    assert "6 of 6 trials recorded" in printed and "trial 1/6" not in printed
    assert read_trials(out) == before


def test_a_folder_with_files_is_refused(tmp_path, rl_search, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    code, _, err = cli(["search", *CLI_SETTINGS, "--trials", "2", "--out", str(folder)], capsys)
    assert_one_line_error(code, err, "not empty")
    assert snapshot(folder) == {"notes.txt": b"mine"}
    # an existing search without --resume
    before = snapshot(rl_search[0])
    code, _, err = cli(["search", *CLI_SETTINGS, "--trials", "6", "--out", str(rl_search[0])], capsys)
    assert_one_line_error(code, err, "already holds a search", "--resume")
    assert snapshot(rl_search[0]) == before


def test_resume_of_a_folder_without_a_search(tmp_path, capsys):
    code, _, err = cli(["search", "--out", str(tmp_path / "none"), "--resume"], capsys)
    assert_one_line_error(code, err, "--resume", "does not exist")
    assert not (tmp_path / "none").exists()


def test_an_impossible_budget_is_refused_before_any_work(tmp_path, capsys):
    out = tmp_path / "tiny"
    code, _, err = cli(["search", *CLI_SETTINGS, "--trials", "2", "--max-params", "10", "--out", str(out)], capsys)
    assert_one_line_error(code, err, "admits no child", "max_params=10")
    assert not out.exists()


def test_the_budget_keeps_every_child_within_it(tmp_path):
    from cnnzoo.search.budget import child_cost
    from cnnzoo.search.space import Architecture

    # the cheapest child of SPACE has 67 params, the dearest 2-layer one several hundred
    cheap = child_cost(Architecture.parse("1x1:4/1x1:4@1"), 1, 3, (12, 12))[0]
    dear = child_cost(Architecture.parse("3x3:8/3x3:8@1"), 1, 3, (12, 12))[0]
    limit = (cheap + dear) // 2
    out = tmp_path / "budget"
    run_search(out, controller="random", trials=8, workers=0, max_params=limit, trial_fn=no_training,
               log=lambda text: None, **SETTINGS)  # fmt: skip
    rows = read_trials(out)
    assert len(rows) == 8 and all(int(r["params"]) <= limit for r in rows)


# ------------------------------------------------------------------------------------------
# workers
# ------------------------------------------------------------------------------------------


def test_a_dying_worker_is_retried_once_then_recorded_failed(tmp_path):
    """Two worker processes; trial 2's dies every time (failed after 2 attempts), trial 3's once (ok)."""
    out = tmp_path / "dying"
    lines: list[str] = []
    result = run_search(out, controller="random", trials=4, workers=2, trial_fn=search_helpers.scripted_trial,
                        log=lines.append, **SETTINGS)  # fmt: skip
    rows = {int(r["trial"]): r for r in read_trials(out)}
    assert sorted(rows) == [1, 2, 3, 4]
    assert rows[2]["status"] == "failed" and "died" in rows[2]["error"] and "2 attempts" in rows[2]["error"]
    assert rows[2]["val_top1"] == ""
    assert [rows[n]["status"] for n in (1, 3, 4)] == ["ok", "ok", "ok"]
    assert float(rows[3]["val_top1"]) == pytest.approx(0.3)
    assert sum("running it again" in line for line in lines) == 2  # trial 2 once, trial 3 once
    workers = {rows[n]["worker"] for n in (1, 3, 4)}
    assert all(w.rsplit(":", 1)[1].isdigit() for w in workers) and str(os.getpid()) not in workers
    assert result.best["trial"] == 4
    # the failed trial fed the controller nothing: 4 samples + 3 updates
    assert json.loads((out / "state.json").read_text())["generation"] == 7


def test_a_ray_address_that_does_not_answer(tmp_path, capsys):
    out = tmp_path / "ray"
    address = f"127.0.0.1:{free_port()}"
    code, _, err = cli(["search", *CLI_SETTINGS, "--trials", "2", "--ray", address, "--out", str(out)], capsys)
    assert_one_line_error(code, err, f"the Ray cluster at {address} does not answer")
    assert not out.exists()


@pytest.fixture
def local_ray():
    """A local Ray instance (a head node with 2 CPUs) in its own session, killed afterwards.

    ``ray start --block`` keeps its processes in the session it starts; killing that process
    group ends exactly this instance (``ray stop`` would end every Ray instance on the machine).
    """
    pytest.importorskip("ray")
    ray_cli = Path(sys.executable).with_name("ray")
    port = free_port()
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must stay under 107 bytes
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    head = subprocess.Popen([str(ray_cli), "start", "--head", "--block", "--port", str(port), "--num-cpus", "2",
                             "--include-dashboard=false", "--disable-usage-stats", "--ray-client-server-port",
                             str(free_port()), "--temp-dir", temp_dir], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert head.poll() is None, "ray start failed"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(head.pid, signal.SIGKILL)
        head.wait(timeout=60)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_a_two_trial_search_on_a_local_ray_instance(tmp_path, local_ray):
    out = tmp_path / "on-ray"
    result = run_search(out, controller="rl", trials=2, ray=local_ray, log=lambda text: None,
                        **{**SETTINGS, "threads": 2})  # fmt: skip
    rows = read_trials(out)
    assert [int(r["trial"]) for r in rows] == [1, 2]
    assert all(r["status"] == "ok" for r in rows)
    assert all(r["worker"].rsplit(":", 1)[1] != str(os.getpid()) for r in rows)  # they ran in Ray's workers
    assert (out / result.best["run_dir"] / "results.json").is_file()


def test_the_command_module_imports_no_torch():
    code = "import sys, cnnzoo.search.commands; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr
