"""The trained weights that ship with cnnzoo (cnnzoo.pretrained): every entry loads, its hash
holds and it gives the predictions it recorded; tags work wherever a run directory does
(eval, predict, summary, finetune --from); the ship tool; and the bad inputs of issue 18
(an unknown tag, other classes or channels, a damaged file), each one line and exit code 2
with nothing written.

The shipped files are never modified here: the damaged-file cases work on a copy of the
weights folder (``table.WEIGHTS_DIR`` pointed at it).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import cnnzoo
from cnnzoo import cli
from cnnzoo.pretrained import (PretrainedError, UnknownTagError, list_pretrained, pretrained_entry, read_table,
                               ship, table)

TAG = "lenet5.fashion_mnist"
SHIPPED = list_pretrained()
SYN = "synthetic:classes=3,channels=1,size=28,train=48,test=24"
SYN_RGB = "synthetic:classes=3,channels=3,size=28,train=24,test=12"


def _snapshot(folder) -> list:
    return sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in Path(folder).rglob("*"))


def _one_line_error(code, capsys, message: str) -> str:
    captured = capsys.readouterr()
    assert code == 2, captured
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert message in lines[0], lines[0]
    return lines[0]


@functools.lru_cache(maxsize=None)
def _test_split(data: str):
    """A data set's test split as stored (``make test`` guarantees Fashion-MNIST's idx files)."""
    from cnnzoo.data import load_dataset

    return load_dataset(data, download=False).test


@pytest.fixture
def package_untouched():
    before = _snapshot(table.weights_dir())
    yield
    assert _snapshot(table.weights_dir()) == before, "the package's weights folder changed"


# ------------------------------------------------------------------------------------------
# every shipped entry
# ------------------------------------------------------------------------------------------


def test_the_table_ships_lenet5_and_lists_tags_torch_free():
    assert TAG in SHIPPED and cnnzoo.list_pretrained("lenet5.*") == [t for t in SHIPPED if t.startswith("lenet5.")]
    code = ("import sys, cnnzoo; print(','.join(cnnzoo.list_pretrained())); "
            "print(cnnzoo.pretrained.pretrained_entry(cnnzoo.list_pretrained()[0])['sha256']); "
            "assert 'torch' not in sys.modules")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0].split(",") == SHIPPED and len(out[1]) == 64
    printed = subprocess.run([sys.executable, "-m", "cnnzoo.pretrained"], capture_output=True, text=True,
                             check=True).stdout  # fmt: skip
    entry = pretrained_entry(TAG)
    assert re.search(rf"^{re.escape(TAG)}\s+.*{entry['test_top1']:.2f}%", printed, flags=re.M)
    assert entry["command"] in printed


def test_the_package_data_ships_every_file_of_the_table():
    import fnmatch
    import tomllib

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["cnnzoo"]
    package = Path(cnnzoo.__file__).parent
    folder = table.weights_dir()
    for file in [folder / table.TABLE_FILE, *(folder / pretrained_entry(tag)["file"] for tag in SHIPPED)]:
        assert any(fnmatch.fnmatch(file.relative_to(package).as_posix(), p) for p in patterns), file


@pytest.mark.parametrize("tag", SHIPPED)
def test_shipped_weights_hash_and_recorded_predictions(tag, package_untouched):
    entry = pretrained_entry(tag)
    data = (table.weights_dir() / entry["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["bytes"]
    assert len(data) <= ship.MAX_SHIPPED_BYTES and entry["command"].startswith(("cnnzoo ", "torchrun "))
    model = cnnzoo.create_model(tag, pretrained=True).eval()
    if entry["dtype"] == ship.DEEP_COMPRESSION:
        from cnnzoo.compress.deep_compression import PAPER_TABLES, prunable_layers

        # pruned as the paper's table says (or the run's own shares), each layer's weights shared
        kept = entry["deep_compression"]["kept"]
        for name, layer in prunable_layers(model).items():
            assert layer.weight.count_nonzero() <= round(kept[name] * layer.weight.numel()) + 1, name
            assert len(torch.unique(layer.weight)) <= 2 ** entry["deep_compression"]["bits"][name] + 1
        if entry["spec"]["name"] in PAPER_TABLES:
            assert kept == PAPER_TABLES[entry["spec"]["name"]].kept
    else:
        from safetensors.torch import load

        stored_dtypes = {v.dtype for v in load(data).values() if v.is_floating_point()}
        assert stored_dtypes == {getattr(torch, entry["dtype"])}
    assert all(p.dtype == torch.float32 for p in model.parameters())  # float16 files are upcast
    assert sum(p.numel() for p in model.parameters()) == entry["params"]
    assert model.pretrained_cfg["classes"] == entry["run"]["classes"]
    # the first test images, fed as the entry says, give the predictions recorded when shipping
    check = entry["check"]
    images = _test_split(entry["run"]["data"]).subset(torch.tensor(check["indices"]))
    from cnnzoo.data import make_loader

    loader = make_loader(images, batch_size=len(check["indices"]), train=False, device="cpu",
                         input_size=tuple(entry["run"]["input_size"]), augment=None, mean=entry["run"]["mean"],
                         std=entry["run"]["std"])  # fmt: skip
    batch, labels = next(iter(loader))
    assert labels.tolist() == check["labels"]
    with torch.no_grad():
        logits = model(batch)
    assert logits.argmax(1).tolist() == check["predictions"]
    torch.testing.assert_close(logits[0], torch.tensor(check["logits0"]), atol=2e-3, rtol=0)
    # a trained net: most of these are right (a random one gets about 1 in 10)
    assert sum(p == y for p, y in zip(check["predictions"], check["labels"])) >= len(labels) - 2


# ------------------------------------------------------------------------------------------
# a tag wherever a run directory goes
# ------------------------------------------------------------------------------------------


def test_eval_of_a_tag_through_the_cli(tmp_path, monkeypatch, capsys, package_untouched):
    monkeypatch.chdir(tmp_path)
    code = cli.main(["eval", TAG, "--data", "fashion-mnist", "--limit", "300"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "300 images, pretrained checkpoint" in out
    top1 = float(re.search(r"top-1 ([\d.]+)%", out).group(1))
    assert top1 > pretrained_entry(TAG)["test_top1"] - 7  # 300 of 10k images: a few points of noise at most
    assert list(tmp_path.iterdir()) == []  # no confusion matrix unless --confusion says where
    code = cli.main(["eval", TAG, "--limit", "50", "--confusion", str(tmp_path / "c.png")])
    assert code == 0 and (tmp_path / "c.png").is_file()


def test_predict_summary_and_load_run_with_a_tag(tmp_path, capsys, package_untouched):
    from PIL import Image

    entry = pretrained_entry(TAG)
    paths = []
    for index in entry["check"]["indices"][:3]:
        path = tmp_path / f"test{index}.png"
        Image.fromarray(_test_split("fashion-mnist").images[index, 0].numpy()).save(path)  # lossless: the stored pixels
        paths.append(str(path))
    assert cli.main(["predict", TAG, *paths, "--topk", "1"]) == 0
    out = capsys.readouterr().out
    top = re.findall(r"1\. (.+?)\s+[\d.]+$", out, flags=re.M)
    classes = entry["run"]["classes"]
    assert top == [classes[i] for i in entry["check"]["predictions"][:3]]
    assert cli.main(["summary", TAG]) == 0
    assert f"{entry['params']:,}" in capsys.readouterr().out
    run = cnnzoo.load_run(TAG)
    assert run.tag == TAG and run.checkpoint == "pretrained" and run.meta["classes"] == classes
    assert not run.model.training


def test_finetune_from_a_tag_adapts_channels_and_head(tmp_path, capsys, package_untouched):
    from cnnzoo.train.checkpoint import load_weights
    from cnnzoo.transfer.adapt import first_conv

    out = tmp_path / "ft"
    code = cli.main(["finetune", "--from", TAG, "--data", SYN_RGB, "--epochs", "1", "--max-steps", "1",
                     "--batch-size", "8", "--no-progress", "--device", "cpu", "--out", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    record = json.loads((out / "run.json").read_text())
    assert record["transfer"]["source"] == TAG and record["transfer"]["source_kind"] == "pretrained"
    assert record["num_classes"] == 3 and record["in_chans"] == 3
    run = cnnzoo.load_run(out)
    assert run.model.num_classes == 3 and run.model.in_chans == 3
    conv_name, conv = first_conv(run.model)
    assert conv.in_channels == 3
    # started from the shipped weights: the stem adapted from them (before one step of training)
    weights, _ = load_weights(out / "last.safetensors")
    shipped = cnnzoo.create_model(TAG, pretrained=True).state_dict()[f"{conv_name}.weight"]
    start = shipped.repeat(1, 3, 1, 1) / 3
    fresh = cnnzoo.create_model("lenet5", num_classes=3, in_chans=3).state_dict()[f"{conv_name}.weight"]
    moved = (weights[f"{conv_name}.weight"] - start).abs().mean()
    assert moved < 0.1 * (fresh - start).abs().mean()


# ------------------------------------------------------------------------------------------
# create_model(pretrained=True)
# ------------------------------------------------------------------------------------------


def test_create_model_pretrained_forms():
    shipped = cnnzoo.create_model(TAG, pretrained=True).state_dict()
    plain = cnnzoo.create_model("lenet5", pretrained=True).state_dict()  # the one shipped lenet5 tag
    assert all(torch.equal(shipped[k], plain[k]) for k in shipped)
    fresh = cnnzoo.create_model(TAG).state_dict()  # the architecture of the tag, not its weights
    assert fresh.keys() == shipped.keys() and not all(torch.equal(shipped[k], fresh[k]) for k in shipped)


def test_other_classes_reinit_the_head_and_other_channels_adapt_the_stem():
    from cnnzoo.transfer.adapt import first_conv

    shipped = cnnzoo.create_model(TAG, pretrained=True)
    model = cnnzoo.create_model(TAG, pretrained=True, num_classes=4, in_chans=3)
    assert model.num_classes == 4 and model.in_chans == 3 and model(torch.randn(2, 3, 32, 32)).shape == (2, 4)
    assert model.get_classifier().weight.shape[0] == 4
    conv_name, conv = first_conv(model)
    source = dict(shipped.named_parameters())[f"{conv_name}.weight"]
    # one channel repeated to three, scaled by 1/3: a gray image gives the shipped response
    torch.testing.assert_close(conv.weight, source.repeat(1, 3, 1, 1) / 3)
    head = {n for n, _ in model.get_classifier().named_parameters(prefix=_classifier_path(model))}
    for name, value in shipped.state_dict().items():
        if name not in head and name != f"{conv_name}.weight":
            assert torch.equal(model.state_dict()[name], value), name
    # fit() and load_run() rebuild what was built: the recorded spec has the new sizes
    assert model.model_spec.num_classes == 4 and model.model_spec.in_chans == 3


def _classifier_path(model) -> str:
    target = model.get_classifier()
    return next(n for n, m in model.named_modules() if m is target)


# ------------------------------------------------------------------------------------------
# bad input: one line, exit code 2, nothing written
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv, tag", [
    (["eval", "lenet5.imagenet"], "lenet5.imagenet"),
    (["predict", "lenet5.imagenet", "x.png"], "lenet5.imagenet"),
    (["summary", "lenet5.imagenet"], "lenet5.imagenet"),
    (["finetune", "--from", "lenet5.imagenet", "--data", SYN, "--epochs", "1"], "lenet5.imagenet"),
    (["eval", "nosuchnet.fashion_mnist"], "nosuchnet.fashion_mnist"),
])  # fmt: skip
def test_an_unknown_tag_names_the_shipped_ones(argv, tag, tmp_path, monkeypatch, capsys, package_untouched):
    monkeypatch.chdir(tmp_path)
    line = _one_line_error(cli.main(argv), capsys, f"no pretrained weights '{tag}'")
    assert TAG in line
    assert list(tmp_path.iterdir()) == []


def test_a_missing_weight_file_is_not_taken_for_a_tag(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = cli.main(["finetune", "--from", "weights.pth", "--model", "lenet5", "--data", SYN, "--epochs", "1"])
    _one_line_error(code, capsys, "weight source 'weights.pth' not found")
    assert list(tmp_path.iterdir()) == []


def test_unknown_tags_in_the_api():
    with pytest.raises(UnknownTagError, match=TAG):
        cnnzoo.create_model("lenet5.imagenet", pretrained=True)
    with pytest.raises(UnknownTagError, match=rf"no pretrained weights for vgg19; shipped: .*{TAG}"):
        cnnzoo.create_model("vgg19", pretrained=True)
    with pytest.raises(UnknownTagError, match="no pretrained weights 'lenet5.imagenet'"):
        cnnzoo.load_run("lenet5.imagenet")


def test_options_with_a_tag_are_refused(capsys):
    line = _one_line_error(cli.main(["summary", TAG, "-o", "drop_rate=0.1"]), capsys, "is a pretrained tag")
    assert line.startswith("cnnzoo: error: -o applies to a model name") and TAG in line


@pytest.fixture
def damaged_copy(tmp_path, monkeypatch):
    """A copy of the weights folder whose TAG file has one byte changed; WEIGHTS_DIR points at it."""
    copy = tmp_path / "weights"
    shutil.copytree(table.weights_dir(), copy)
    file = copy / pretrained_entry(TAG)["file"]
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    file.write_bytes(bytes(data))
    monkeypatch.setattr(table, "WEIGHTS_DIR", copy)
    return copy


@pytest.mark.parametrize("argv", [
    ["eval", TAG, "--limit", "10"],
    ["predict", TAG, "{png}"],
    ["summary", TAG],
    ["finetune", "--from", TAG, "--data", SYN, "--epochs", "1", "--out", "{tmp}/ft"],
])  # fmt: skip
def test_a_damaged_shipped_file_is_one_line(argv, damaged_copy, tmp_path, monkeypatch, capsys):
    from PIL import Image

    work = tmp_path / "work"
    work.mkdir()
    Image.new("L", (28, 28), 100).save(work / "img.png")
    monkeypatch.chdir(work)
    before, weights_before = _snapshot(work), _snapshot(damaged_copy)
    argv = [a.replace("{png}", str(work / "img.png")).replace("{tmp}", str(work)) for a in argv]
    line = _one_line_error(cli.main(argv), capsys, "are damaged: sha256")
    assert "reinstall cnnzoo" in line
    assert _snapshot(work) == before and _snapshot(damaged_copy) == weights_before


def test_a_damaged_or_missing_file_in_the_api(damaged_copy):
    with pytest.raises(PretrainedError, match="are damaged"):
        cnnzoo.create_model(TAG, pretrained=True)
    (damaged_copy / pretrained_entry(TAG)["file"]).unlink()
    with pytest.raises(PretrainedError, match="cannot be read"):
        cnnzoo.load_run(TAG)


# ------------------------------------------------------------------------------------------
# the ship tool
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    from cnnzoo.train.engine import fit

    run = tmp_path_factory.mktemp("ship") / "run"
    fit("lenet5", data=SYN, out=str(run), epochs=2, batch_size=16, lr=0.05, progress=False, verbose=False,
        device="cpu")  # fmt: skip
    return run


@pytest.fixture
def scratch_table(tmp_path, monkeypatch):
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setattr(table, "WEIGHTS_DIR", folder)
    return folder


def _ship(argv) -> int:
    from cnnzoo.pretrained import ship

    return ship.main(argv)


def test_ship_writes_a_loadable_entry_whose_claim_holds(synthetic_run, scratch_table, capsys):
    run_before = _snapshot(synthetic_run)
    code = _ship([str(synthetic_run), "lenet5.syn", "--fp16", "--command", "cnnzoo train lenet5 --data syn"])
    assert code == 0, capsys.readouterr().err
    entry = read_table()["lenet5.syn"]
    assert entry["dtype"] == "float16" and entry["test_images"] == 24 and entry["train_seconds"] > 0
    assert abs(entry["test_top1"] - entry["test_top1_fp32"]) <= 0.05
    assert entry["run"]["classes"] == ["class_0", "class_1", "class_2"] and entry["config"]["out"] is None
    assert _snapshot(synthetic_run) == run_before  # the source run is never modified
    # the shipped entry evaluates, through the one evaluator, to what it claims
    from cnnzoo.train.runs import evaluate_run

    report = evaluate_run("lenet5.syn")
    assert round(100 * report.top1, 2) == entry["test_top1"] and report.count == 24
    model = cnnzoo.create_model("lenet5.syn", pretrained=True)
    source = cnnzoo.load_run(synthetic_run).model.state_dict()
    for key, value in model.state_dict().items():  # float16-rounded copies of the run's weights
        assert torch.equal(value, source[key].half().float() if value.is_floating_point() else source[key]), key


def test_ship_refuses_without_writing(synthetic_run, scratch_table, tmp_path, monkeypatch, capsys):
    from cnnzoo.pretrained import ship

    command = ["--command", "cnnzoo train lenet5"]
    assert _ship([str(synthetic_run), "lenet5.syn", *command]) == 0
    capsys.readouterr()
    shipped = _snapshot(scratch_table)
    cases = [
        ([str(synthetic_run), "lenet5.syn", *command], "already in"),
        ([str(synthetic_run), "resnet20.syn", *command], "use lenet5.syn"),
        ([str(synthetic_run), "lenet5", *command], "a pretrained tag is MODEL.NAME"),
        ([str(tmp_path / "nowhere"), "lenet5.other", *command], "not found"),
        ([str(synthetic_run), "lenet5.other", "--command", " "], "--command"),
    ]
    unfinished = tmp_path / "unfinished"
    shutil.copytree(synthetic_run, unfinished)
    (unfinished / "results.json").unlink()
    cases.append(([str(unfinished), "lenet5.other", *command], "has not finished"))
    for argv, message in cases:
        _one_line_error(_ship(argv), capsys, message)
    # float16 that moves top-1 too far: refused (a tolerance below zero refuses any change at all)
    monkeypatch.setattr(ship, "FP16_TOLERANCE", -1.0)
    _one_line_error(_ship([str(synthetic_run), "lenet5.half", "--fp16", *command]), capsys, "ship it without --fp16")
    assert _snapshot(scratch_table) == shipped


def test_a_row_without_weights_says_how_to_train_them(synthetic_run, scratch_table, capsys):
    assert _ship([str(synthetic_run), "lenet5.big", "--no-weights", "--command", "cnnzoo train lenet5 --epochs 9"]) == 0
    assert list_pretrained() == [] and list_pretrained(shipped=False) == ["lenet5.big"]
    assert sorted(p.name for p in scratch_table.iterdir()) == ["pretrained.json"]
    with pytest.raises(PretrainedError, match=r"not shipped \(0.24 MB as float32\); train them with: cnnzoo train"):
        cnnzoo.create_model("lenet5.big", pretrained=True)
    capsys.readouterr()
    _one_line_error(cli.main(["eval", "lenet5.big"]), capsys, "are not shipped")


def test_a_name_with_several_tags_must_name_one(synthetic_run, scratch_table, capsys):
    for tag in ("lenet5.one", "lenet5.two"):
        assert _ship([str(synthetic_run), tag, "--command", "cnnzoo train lenet5"]) == 0
    with pytest.raises(UnknownTagError, match="lenet5 has several pretrained weights: lenet5.one, lenet5.two"):
        cnnzoo.create_model("lenet5", pretrained=True)
    assert cnnzoo.create_model("lenet5.two", pretrained=True).num_classes == 3


@pytest.fixture(scope="module")
def compressed_run(synthetic_run, tmp_path_factory):
    """The synthetic LeNet-5 deep-compressed (80% pruned, one epoch per retraining)."""
    from cnnzoo.compress.deep_compression import deep_compress

    out = tmp_path_factory.mktemp("ship-dcz") / "compressed"
    deep_compress(synthetic_run, prune_ratio=0.8, epochs=1, out=str(out), verbose=False, progress=False,
                  device="cpu", batch_size=16)  # fmt: skip
    return out


def test_a_deep_compressed_run_ships_its_dcz_file(compressed_run, scratch_table, capsys):
    from cnnzoo.compress.deep_compression import decode_model
    from cnnzoo.train.runs import evaluate_run

    command = ["--command", "cnnzoo train lenet5 --data syn && cnnzoo deep-compress RUN"]
    _one_line_error(_ship([str(compressed_run), "lenet5.dc", "--fp16", *command]), capsys, "no --fp16")
    assert _ship([str(compressed_run), "lenet5.dc", *command]) == 0, capsys.readouterr().err
    entry = read_table()["lenet5.dc"]
    shipped = (scratch_table / "lenet5.dc.dcz").read_bytes()
    assert entry["file"] == "lenet5.dc.dcz" and entry["dtype"] == ship.DEEP_COMPRESSION
    assert shipped == (compressed_run / "model.dcz").read_bytes() and entry["bytes"] == len(shipped)
    assert all(share == pytest.approx(0.2) for share in entry["deep_compression"]["kept"].values())
    # the three trainings' epochs: the source's and the two retrainings'
    assert entry["train_seconds"] > 0
    # the model is what the file decodes to, and it evaluates to the entry's claim
    model = cnnzoo.create_model("lenet5.dc", pretrained=True)
    state = decode_model(compressed_run / "model.dcz")
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert round(100 * evaluate_run("lenet5.dc").top1, 2) == entry["test_top1"]
    # a file whose hash the table was made to match, but which does not decode: one line
    (scratch_table / "lenet5.dc.dcz").write_bytes(shipped[:-9])
    entries = read_table()
    entries["lenet5.dc"]["sha256"] = hashlib.sha256(shipped[:-9]).hexdigest()
    (scratch_table / table.TABLE_FILE).write_bytes(table.table_bytes(entries))
    with pytest.raises(PretrainedError, match=r"^the weights of lenet5.dc cannot be decoded \("):
        cnnzoo.create_model("lenet5.dc", pretrained=True)


def test_a_file_too_large_to_ship_is_refused(synthetic_run, scratch_table, monkeypatch, capsys):
    monkeypatch.setattr(ship, "MAX_SHIPPED_BYTES", 1000)
    code = _ship([str(synthetic_run), "lenet5.big", "--command", "cnnzoo train lenet5"])
    _one_line_error(code, capsys, "more than the 0.001 MB that ship in the package: ship its row with --no-weights")
    assert list(scratch_table.iterdir()) == []
    assert _ship([str(synthetic_run), "lenet5.big", "--no-weights", "--command", "cnnzoo train lenet5"]) == 0
