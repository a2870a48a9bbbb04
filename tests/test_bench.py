"""``cnnzoo bench`` (cnnzoo.deploy.bench): the measuring, --compare, --deploy and their bad input.

Timings themselves are never asserted (the machine is shared); what is asserted is what the
numbers are made of: which calls are timed, in which order, which weights the reference gets,
the memory a call allocates, the outputs of each deployment path.
"""

from __future__ import annotations

import json
import re

import pytest
import torch
from torch import nn

from cnnzoo import cli
from cnnzoo.deploy import bench as bench_module
from cnnzoo.deploy.bench import (DEPLOY_PATHS, Measurement, bench, compare_reference, flushed_denormals,
                                 measure_interleaved, parse_batch_sizes, peak_memory, training_runner)  # fmt: skip
from cnnzoo.deploy.references import LIBRARIES, reference, shared
from cnnzoo.registry import create_model, list_models


def run_cli(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------------------------------
# bad input: one line, exit 2


@pytest.mark.parametrize(
    "argv, message",
    [
        (["bench", "vgg11_lrn", "--compare", "torchvision"], "torchvision has no vgg11_lrn"),
        (["bench", "xception", "--compare", "torchvision"], "torchvision has no xception"),
        (["bench", "vgg16", "--compare", "timm"], "timm has no vgg16"),
        (["bench", "resnet18", "--batch-size", "0"], "--batch-size takes positive integers"),
        (["bench", "resnet18", "--batch-size", "8,x"], "--batch-size takes positive integers"),
        (["bench", "resnet18", "--batch-size", ","], "--batch-size takes positive integers"),
        (["bench", "{tmp}", "--batch-size", "1"], "is {tmp} a cnnzoo run directory?"),
        (["bench", "{tmp}/missing/run", "--batch-size", "1"], "not found"),
        (["bench", "resnet18", "--deploy", "--paths", "tensorrt"], "--paths: unknown path 'tensorrt'"),
        (["bench", "resnet18", "--deploy", "--compare", "torchvision"], "give one of them"),
        (["bench", "resnet18", "--deploy", "--train"], "cannot be combined with --train"),
        (["bench", "resnet18", "--threads", "0"], "--threads must be >= 1"),
        (["bench", "resnet18", "--repeats", "0", "--input", "3x32x32", "--batch-size", "1"], "repeats must be >= 1"),
        (["bench", "resnet18", "-o", "stride_in_1x1=true", "--compare", "torchvision", "--input", "3x32x32",
          "--batch-size", "1"], "has the registered layout of resnet18"),
        (["bench", "resnet18", "-o", "in_chans=1", "--compare", "torchvision"], "in_chans"),
        (["bench", "resnet18", "--input", "1x32x32", "--compare", "torchvision", "--batch-size", "1"],
         "takes 3 input channels"),
        (["bench", "alexnet_paper", "--input", "3x64x64"], "takes only 227x227"),
        (["bench", "nosuchnet"], "unknown model 'nosuchnet'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, argv, message):
    (tmp_path / "notes.txt").write_text("a user's file")  # a folder with files, but no run
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2, err
    assert err.startswith("cnnzoo: error:") and err.count("\n") == 1, err
    assert message.replace("{tmp}", str(tmp_path)) in err
    assert "Traceback" not in err
    assert (tmp_path / "notes.txt").read_text() == "a user's file"


def test_parse_batch_sizes():
    assert parse_batch_sizes("1,8,32") == [1, 8, 32]
    assert parse_batch_sizes(" 4 ") == [4]


# ------------------------------------------------------------------------------------------
# the shared-architecture table


@pytest.mark.parametrize("library", LIBRARIES)
def test_every_shared_architecture_is_registered_and_exists_in_the_library(library):
    registered = set(list_models())
    table = shared(library)
    assert table and set(table) <= registered
    if library == "torchvision":
        import torchvision

        theirs = set(torchvision.models.list_models())
    else:
        timm = pytest.importorskip("timm")
        theirs = set(timm.list_models())
    assert {ref.name for ref in table.values()} <= theirs
    assert shared("torchvision")["googlenet_bn"].name == "googlenet"  # the renames of transfer/sources.py
    assert shared("timm")["xception"].name == "legacy_xception"


def test_reference_gets_our_weights_and_gives_our_outputs():
    torch.manual_seed(0)
    ours = create_model("squeezenet1_1").eval()
    pair = compare_reference(ours, "squeezenet1_1", "torchvision", {})
    assert "the same weights" in pair.weights
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(pair.theirs.eval()(x), ours(x))


def test_reference_options_are_applied_for_timm_inception_v3():
    assert reference("timm", "inception_v3").our_options == {"aux_logits": False}


# ------------------------------------------------------------------------------------------
# measuring


def test_runners_are_interleaved_and_warm_up_is_not_timed():
    calls = []
    runners = {name: (lambda name=name: calls.append(name)) for name in ("a", "b", "c")}
    results = measure_interleaved(runners, batch_size=4, repeats=3, warmup=2)
    # warm-up: each runner twice in a row (the first under the memory counter), then the timed rounds,
    # the order reversed every other round
    assert calls == ["a", "a", "b", "b", "c", "c"] + ["a", "b", "c", "c", "b", "a", "a", "b", "c"]
    assert all(len(m.seconds) == 3 for m in results.values())


def test_a_runner_that_fails_is_reported_and_the_others_go_on():
    def broken():
        raise RuntimeError("no kernel\nfor this")

    results = measure_interleaved({"ok": lambda: None, "broken": broken}, batch_size=1, repeats=2, warmup=1)
    assert results["broken"].unavailable == "RuntimeError: no kernel for this"
    assert results["broken"].seconds == [] and len(results["ok"].seconds) == 2


def test_latency_statistics():
    m = Measurement("x", batch_size=4, seconds=[0.4, 0.1, 0.2, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    assert m.latency_median == pytest.approx(0.55)
    assert m.latency_p90 == pytest.approx(0.91)
    assert m.images_per_second == pytest.approx(4 / 0.55)


def test_peak_memory_counts_the_tensors_a_call_allocates():
    layer = nn.Linear(100, 50).eval()
    x = torch.randn(8, 100)

    def run():
        with torch.inference_mode():
            hidden = layer(x)  # 8 x 50 floats, alive while the next one is computed
            return torch.relu(hidden)  # another 8 x 50

    _, peak = peak_memory(run)
    assert peak == 2 * 8 * 50 * 4


def test_flushed_denormals_only_inside_the_block():
    tiny = torch.tensor([1e-40])
    with flushed_denormals() as supported:
        inside = (tiny * 1.0).item()
    outside = (tiny * 1.0).item()
    assert outside > 0
    if supported:
        assert inside == 0.0


def test_training_runner_steps_the_weights():
    model = create_model("lenet5", num_classes=10)
    before = model.get_classifier().weight.detach().clone()
    run = training_runner(model, torch.randn(4, 1, 32, 32), 10)
    loss = run()
    assert torch.isfinite(loss) and not torch.equal(before, model.get_classifier().weight)


def test_bench_reports_each_batch_size_and_memory_grows_with_it():
    report = bench("lenet5", (1, 32, 32), [1, 16], repeats=2, warmup=1)
    first, second = report.measurements
    assert (first.batch_size, second.batch_size) == (1, 16)
    assert first.peak_memory < second.peak_memory
    weights = sum(p.numel() * 4 for p in create_model("lenet5").parameters())
    assert first.peak_memory > weights
    text = report.format()
    assert text.startswith("machine: ") and "load average" in text and "denormals flushed" in text
    assert "| 16 | cnnzoo lenet5 |" in text


# ------------------------------------------------------------------------------------------
# --compare and --deploy through the command


def test_compare_through_the_command(capsys):
    code, out, err = run_cli(capsys, "bench", "resnet18", "--compare", "torchvision", "--batch-size", "1,2",
                             "--input", "3x32x32", "--repeats", "2", "--warmup", "1", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["reference"] == "torchvision resnet18" and "the same weights" in data["weights"]
    assert set(data["ratios"]) == {"1", "2"}
    by_label = {(r["batch_size"], r["label"]): r for r in data["results"]}
    for batch in (1, 2):
        ours, theirs = by_label[(batch, "cnnzoo resnet18")], by_label[(batch, "torchvision resnet18")]
        assert data["ratios"][str(batch)] == pytest.approx(ours["images_per_second"] / theirs["images_per_second"])
        assert len(ours["seconds"]) == len(theirs["seconds"]) == 2
    assert data["machine"]["threads"] >= 1 and data["machine"]["cpu"]


def test_deploy_paths_agree_with_eager_and_end_with_the_best(capsys):
    # two batch sizes: every path (the ONNX file too, exported once with a dynamic batch) runs at both
    code, out, err = run_cli(capsys, "bench", "cnn3", "-o", "norm=bn_torch", "--deploy", "--batch-size", "1,2",
                             "--repeats", "2", "--warmup", "1",
                             "--paths", "channels_last,bn_folded,bn_folded+channels_last,onnxruntime")
    assert code == 0, err
    lines = out.strip().splitlines()
    match = re.fullmatch(r"deploy: (\d+\.\d)x \((\S+) at batch ([12])\)", lines[-1])
    assert match, lines[-1]
    for batch in ("1", "2"):
        rows = {line.split(" | ")[1]: line for line in lines if line.startswith(f"| {batch} |")}
        assert set(rows) == {"eager", "channels_last", "bn_folded", "bn_folded+channels_last", "onnxruntime"}
        for path, row in rows.items():
            assert "unavailable" not in row, row
            if path != "eager":
                assert float(row.rstrip(" |").split(" | ")[-1]) < 1e-4  # max abs diff from eager
        assert match.group(2) in rows


def test_a_failing_torch_compile_is_unavailable_with_its_reason(monkeypatch):
    class CompiledWithoutACompiler(nn.Module):  # what torch.compile returns; it compiles in its first call
        def forward(self, x):
            raise RuntimeError("InductorError: no working C++ compiler")

    def no_compiler(model, *args, **kwargs):
        return CompiledWithoutACompiler()

    monkeypatch.setattr(torch, "compile", no_compiler)
    report = bench("lenet5", (1, 32, 32), [1], deploy=True, repeats=1, warmup=1, paths=("eager", "torch.compile"))
    rows = {m.label: m for m in report.measurements}
    assert rows["torch.compile"].unavailable == "RuntimeError: InductorError: no working C++ compiler"
    assert "| 1 | torch.compile | unavailable: RuntimeError" in report.format()
    assert report.format().splitlines()[-1] == "deploy: 1.0x (no path beside eager ran)"


def test_deploy_paths_are_in_the_documented_order():
    assert DEPLOY_PATHS[0] == "eager" and "onnxruntime" in DEPLOY_PATHS
    assert bench_module.parse_paths("onnxruntime,channels_last") == ("eager", "channels_last", "onnxruntime")


# ------------------------------------------------------------------------------------------
# a run directory


@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory):
    from cnnzoo.train.engine import fit

    run = tmp_path_factory.mktemp("bench") / "run"
    fit("lenet5", data="synthetic:classes=3,channels=1,size=32,train=24,test=12", out=str(run), epochs=1,
        batch_size=12, progress=False, verbose=False)  # fmt: skip
    return run


def test_bench_of_a_run_uses_its_model_and_input(capsys, lenet_run):
    code, out, err = run_cli(capsys, "bench", str(lenet_run), "--batch-size", "2", "--repeats", "1", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["model"] == "lenet5" and data["input_size"] == [1, 32, 32]
    assert data["results"][0]["label"] == "cnnzoo lenet5" and data["results"][0]["images_per_second"] > 0


@pytest.mark.parametrize("extra, message", [(["--compare", "torchvision"], "torchvision has no lenet5"),
                                            (["-o", "drop_rate=0.1"], "-o applies to a model name")])
def test_bad_input_with_a_run(capsys, lenet_run, extra, message):
    code, out, err = run_cli(capsys, "bench", str(lenet_run), "--batch-size", "1", "--repeats", "1", *extra)
    assert code == 2 and err.count("\n") == 1 and message in err
