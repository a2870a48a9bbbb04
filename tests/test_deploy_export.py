"""cnnzoo.deploy.export_onnx and `cnnzoo export`: ONNX Runtime agrees with eager, batch dynamic.

The dynamo exporter takes seconds per net, so the per-model test covers one member of every
family (the cheapest), at a small input; the CLI tests use LeNet-5.
"""

from __future__ import annotations

import onnx
import pytest
import torch
from torch import nn

from cnnzoo import cli
from cnnzoo.deploy import ExportError, export_onnx, onnx_difference
from cnnzoo.deploy.export import onnx_batch_axis
from cnnzoo.models.densenet import densenet_cifar
from cnnzoo.registry import create_model, model_info
from cnnzoo.rundir import OutputDirError
from zoo_helpers import randomise

#: one member of every family; (name, options, input side)
FAMILIES = [
    ("alexnet", {}, 64),
    ("googlenet_bn", {}, 32),
    ("cnn3", {"norm": "bn"}, 28),
    ("densenet_bc_100_12", {}, 32),
    ("fastnet", {}, 28),
    ("fcn32s_vgg16", {}, 32),
    ("lenet5", {}, 32),
    ("mobilenet_v1_025", {}, 32),
    ("nas_child", {}, 28),
    ("nin_cifar", {}, 32),
    ("resnet20", {}, 32),
    ("preact_resnet18", {}, 32),
    ("resnext29_8x64d", {}, 32),
    ("wrn16_8", {}, 32),
    ("shufflenet_v1_g3", {}, 32),
    ("squeezenet1_1", {}, 32),
    ("vgg11_bn", {}, 32),
    ("xception", {}, 32),
    ("zfnet", {}, 224),
    ("zfnet_spp", {}, 32),
]

# the exporter's time grows with the graph: DenseNet-BC-100's 48 bottleneck layers take a minute,
# the same classes with 2 layers per block (L=16) take seconds
SHALLOWER = {"densenet_bc_100_12": lambda: densenet_cifar(16, 12)}


def test_every_family_is_listed():
    from cnnzoo.registry import list_models

    assert {model_info(name).family for name, _, _ in FAMILIES} == {model_info(n).family for n in list_models()}


@pytest.mark.parametrize("name, options, side", FAMILIES, ids=[name for name, _, _ in FAMILIES])
def test_onnx_runtime_agrees_with_eager_at_another_batch(name, options, side, tmp_path):
    # random BN statistics and scales: FCN's zero-initialised scores or default statistics
    # would make the comparison empty
    model = SHALLOWER[name]() if name in SHALLOWER else create_model(name, **options)
    model = randomise(model).eval()
    size = (model_info(name).input_size[0], side, side)
    path = export_onnx(model, tmp_path / f"{name}.onnx", size)  # exported at batch 2
    assert onnx_batch_axis(path) == "batch"
    with torch.no_grad():
        assert float(model(torch.randn(1, *size)).std()) > 1e-3  # outputs worth comparing
    diff, rel = onnx_difference(model, path, size, batch_sizes=(1, 3))
    assert rel <= 1e-4, (diff, rel)


def test_static_batch_is_fixed_in_the_graph(tmp_path):
    model = create_model("lenet5")
    path = export_onnx(model, tmp_path / "net.onnx", (1, 32, 32), dynamic_batch=False, batch_size=4)
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [4, 1, 32, 32]
    assert onnx_difference(model, path, (1, 32, 32), batch_sizes=(4,))[1] <= 1e-4
    with pytest.raises(ExportError, match="at batch 1"):
        onnx_difference(model, path, (1, 32, 32), batch_sizes=(1,))


def test_export_restores_training_mode_and_refuses_existing_files(tmp_path):
    model = create_model("lenet5").train()
    target = tmp_path / "mine.onnx"
    target.write_bytes(b"user's file")
    with pytest.raises(OutputDirError, match="already exists"):
        export_onnx(model, target, (1, 32, 32))
    assert target.read_bytes() == b"user's file"
    export_onnx(model, tmp_path / "new.onnx", (1, 32, 32))
    assert model.training
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.onnx", "new.onnx"]  # no temporary left


class DataDependent(nn.Module):
    """Control flow on a tensor's value: torch.export cannot capture it."""

    def forward(self, x):
        return x * 2 if x.sum() > 0 else x


def test_an_exporter_failure_is_one_line(tmp_path):
    with pytest.raises(ExportError) as info:
        export_onnx(DataDependent(), tmp_path / "net.onnx", (1, 4, 4))
    message = str(info.value)
    assert "\n" not in message and "\x1b" not in message
    assert "cannot capture DataDependent with torch.export" in message and "data-dependent" in message
    assert not (tmp_path / "net.onnx").exists()


# ------------------------------------------------------------------------------------------
# the command
# ------------------------------------------------------------------------------------------


def run_cli(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_writes_the_file_and_prints_the_difference(tmp_path, capsys):
    target = tmp_path / "lenet.onnx"
    code, out, err = run_cli(["export", "lenet5", "--out", str(target)], capsys)
    assert code == 0, err
    assert target.is_file() and onnx_batch_axis(target) == "batch"
    wrote, difference = out.splitlines()
    assert wrote.startswith(f"wrote {target} (") and "MB" in wrote and "dynamic batch" in wrote
    assert "at batch 1 and 3: largest difference" in difference
    assert float(difference.split("largest difference ")[1].split()[0]) < 1e-4


def test_cli_static_batch_and_opset(tmp_path, capsys):
    target = tmp_path / "lenet.onnx"
    code, out, err = run_cli(["export", "lenet5", "--static-batch", "--batch-size", "2", "--opset", "19",
                              "-o", "sparse_c3=false", "--out", str(target)], capsys)  # fmt: skip
    assert code == 0, err
    proto = onnx.load(str(target))
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 2
    assert [e.version for e in proto.opset_import if e.domain in ("", "ai.onnx")] == [19]
    assert "batch fixed at 2" in out and "at batch 2:" in out


def test_cli_exports_a_run_directory(tmp_path, capsys):
    from cnnzoo.train.engine import fit

    run = tmp_path / "run"
    fit("lenet5", data="synthetic:classes=3,channels=1,size=16,train=12,test=6", out=str(run), epochs=1,
        batch_size=6, progress=False, verbose=False)  # fmt: skip
    code, out, err = run_cli(["export", str(run), "--out", str(tmp_path / "run.onnx")], capsys)
    assert code == 0, err
    assert "input 1x32x32" in out  # the run's input size
    assert onnx.load(str(tmp_path / "run.onnx")).graph.output[0].type.tensor_type.shape.dim[1].dim_value == 3
    # a run is rebuilt as it was trained: model options are refused, in one line
    code, out, err = run_cli(["export", str(run), "-o", "sparse_c3=false", "--out", str(tmp_path / "o.onnx")],
                             capsys)  # fmt: skip
    assert code == 2 and "-o applies to a model name" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o.onnx").exists()


BAD = [
    (["export", "lenet5", "--out", "{tmp}/mine.onnx"], "already exists"),
    (["export", "lenet5", "--out", "{tmp}/nowhere/net.onnx"], "does not exist"),
    (["export", "lenet5", "--out", "{tmp}"], "is a directory"),
    (["export", "{tmp}/userfiles", "--out", "{tmp}/net.onnx"], "a cnnzoo run directory?"),
    (["export", "{tmp}/nowhere", "--out", "{tmp}/net.onnx"], "not found"),
    (["export", "nosuchnet", "--out", "{tmp}/net.onnx"], "nosuchnet"),
    (["export", "lenet5", "-o", "sparse=true", "--out", "{tmp}/net.onnx"], "no option 'sparse'"),
    (["export", "lenet5", "--opset", "99", "--out", "{tmp}/net.onnx"], "--opset must be between"),
    # a real exporter failure: ONNX's version converter cannot take LeNet-5's graph below 18
    (["export", "lenet5", "--opset", "13", "--out", "{tmp}/net.onnx"], "cannot convert LeNet5's graph to opset 13"),
    (["export", "lenet5", "--static-batch", "--batch-size", "0", "--out", "{tmp}/net.onnx"], "--batch-size must be"),
    (["export", "lenet5", "--batch-size", "4", "--out", "{tmp}/net.onnx"], "--static-batch"),
    (["export", "lenet5", "--input", "1x8x8", "--out", "{tmp}/net.onnx"], "lenet5"),
    (["export", "lenet5", "--input", "axb", "--out", "{tmp}/net.onnx"], "malformed input size"),
    (["export", "lenet5", "--format", "tflite", "--out", "{tmp}/net.onnx"], "invalid choice"),
]


@pytest.mark.parametrize("argv, message", BAD, ids=[" ".join(a[1:]) for a, _ in BAD])
def test_cli_bad_input_is_one_line(argv, message, tmp_path, capsys):
    (tmp_path / "mine.onnx").write_bytes(b"user's file")
    (tmp_path / "userfiles").mkdir()
    (tmp_path / "userfiles" / "notes.txt").write_text("mine\n")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    try:
        code = cli.main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    out, err = capsys.readouterr()
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert message in err and "Traceback" not in err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written
    assert (tmp_path / "mine.onnx").read_bytes() == b"user's file"
