"""Structured filter pruning (issue 12): every family with coupled channels, the recorded transform,
the command's run directory, network slimming's penalty, and bad input.

The band for the multiply-adds after pruning ``r`` of the filters: a convolution's MACs are
``k*k * C_in/groups * C_out * H*W``.  Pruning every layer's channels by ``r`` scales both
``C_in`` and ``C_out`` by ``(1 - r)``, so an ordinary convolution keeps ``(1 - r)^2``; a
depthwise one (``groups == C_in``) keeps ``(1 - r)``; the image channels and the class outputs
are never pruned, so the first convolution and the classifiers keep ``(1 - r)``.  The whole net
therefore keeps between ``(1 - r)^2`` and ``(1 - r)``; 10% slack on each side covers the floor
rounding of per-layer channel counts and groups Torch-Pruning leaves whole (e.g. ShuffleNet's
concatenated shortcut).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from cnnzoo import cli
from cnnzoo.compress import PruneError, prune
from cnnzoo.compress.pruning import ChannelMapShortcut, round_ratios
from cnnzoo.modelspec import ModelSpec

RATIO = 0.5
LOW, HIGH = 0.9 * (1 - RATIO) ** 2, 1.1 * (1 - RATIO)
SYN = "synthetic:classes=3,channels=1,size=16,train=48,test=24"

# (name, options, input size): one small member of every family with coupled channels
FAMILIES = [
    ("vgg11_bn", {}, 32),  # plain chain, BN, flatten into the FC head
    ("resnet18", {}, 32),  # residual additions with projection shortcuts
    ("resnet20", {}, 32),  # option A zero-padding shortcuts (ChannelMapShortcut)
    ("preact_resnet18", {}, 32),  # pre-activation units
    ("wide_resnet_cifar", {"depth": 10, "width": 2}, 32),  # WRN
    ("resnext29_8x64d", {}, 32),  # grouped 3x3 convolutions
    ("densenet_bc_100_12", {}, 32),  # concatenations
    ("googlenet_bn", {}, 64),  # Inception concatenations, auxiliary heads
    ("mobilenet_v1_025", {}, 64),  # depthwise convolutions
    ("shufflenet_v1_g1", {}, 64),  # ShuffleNet (g = 1: no shuffle)
]


def _build(name, options=None, classes=5, in_chans=3):
    torch.manual_seed(0)
    return ModelSpec(name, dict(options or {}), num_classes=classes, in_chans=in_chans).build().eval()


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name,options,size", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_family_prunes_at_half(name, options, size):
    torch.set_num_threads(1)
    model = _build(name, options)
    before = _state(model)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    pruned, report = prune(model, RATIO, input_size=(3, size, size))
    pruned.eval()
    with torch.no_grad():
        out = pruned(x)
    assert out.shape == (2, 5)
    assert torch.isfinite(out).all()
    assert LOW <= report.macs_share <= HIGH, report.macs_share
    assert report.params_after < report.params_before
    # the source model is untouched
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # the recorded transform rebuilds the architecture: the weights load strictly, the outputs agree
    rebuilt = pruned.model_spec.build().eval()
    rebuilt.load_state_dict(pruned.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), out, rtol=0, atol=0)
    assert pruned.model_spec.transforms[-1]["name"] == "pruned"
    assert pruned.num_features == pruned.get_classifier().in_features


def test_option_a_shortcut_becomes_a_channel_map_and_is_pruned():
    pruned, _ = prune(_build("resnet20"), RATIO, input_size=(3, 32, 32))
    maps = [m for m in pruned.modules() if isinstance(m, ChannelMapShortcut)]
    assert len(maps) == 2  # the two downsampling blocks
    # the residual stream itself was pruned: 16/32/64 -> 8/16/32 channels
    assert [pruned.layer1[0].conv2.out_channels, pruned.layer2[0].conv2.out_channels,
            pruned.layer3[0].conv2.out_channels] == [8, 16, 32]  # fmt: skip
    assert [(m.in_channels, m.out_channels) for m in maps] == [(8, 16), (16, 32)]


def test_pruning_is_deterministic_and_methods_differ():
    model = _build("resnet20")
    groups = {}
    for method in ("l1", "l2", "random", "bn-scale"):
        first, _ = prune(model, RATIO, method)
        again, _ = prune(model, RATIO, method)
        groups[method] = first.model_spec.transforms[-1]["options"]["groups"]
        assert groups[method] == again.model_spec.transforms[-1]["options"]["groups"]
    assert groups["l1"] != groups["random"]
    other_seed, _ = prune(model, RATIO, "random", seed=1)
    assert other_seed.model_spec.transforms[-1]["options"]["groups"] != groups["random"]


def test_l1_removes_the_filters_with_the_smallest_absolute_sums():
    """Li et al. Sec. 3.1 on a layer with no coupling: the first conv of a block, 16 filters."""
    model = _build("resnet20")
    conv = model.layer1[0].conv1
    with torch.no_grad():  # give the filters clearly different L1 sums
        conv.weight.mul_(torch.arange(1, 17, dtype=torch.float32).view(-1, 1, 1, 1))
    pruned, _ = prune(model, RATIO, "l1")
    group = next(g for g in pruned.model_spec.transforms[-1]["options"]["groups"] if g["module"] == "layer1.0.conv1")
    sums = conv.weight.abs().sum(dim=(1, 2, 3))
    assert sorted(group["idxs"]) == sorted(sums.argsort()[:8].tolist())


def test_global_bn_scale_follows_the_scales():
    """Network slimming's global threshold: the channels with the smallest |gamma| anywhere go."""
    model = _build("cnn3", {"norm": "bn_torch"}, in_chans=1)  # 32/64/128 channels
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for bn in bns:
            bn.weight.copy_(1.0 + torch.rand(bn.num_features, generator=generator))
        bns[2].weight[:10] = 1e-3  # the third layer's first 10 channels look useless
    total = sum(bn.num_features for bn in bns)
    pruned, _ = prune(model, 0.05, "bn-scale", global_pruning=True, input_size=(1, 28, 28))
    kept = [m.num_features for m in pruned.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert kept[2] <= bns[2].num_features - 10  # all of them went
    assert total - sum(kept) == pytest.approx(0.05 * total, abs=2)  # one threshold over every layer


def test_iterative_ratios_reach_the_cumulative_share():
    shares = round_ratios(0.5, 2)
    left = 1.0
    for share in shares:
        left *= 1 - share
    assert left == pytest.approx(0.5)
    assert shares[0] == pytest.approx(0.25)


@pytest.mark.parametrize("name,message", [("shufflenet_v1_g3", "channel shuffle"), ("lenet5", "connection table")])
def test_unprunable_families_say_why(name, message):
    model = _build(name, in_chans=1 if name == "lenet5" else 3)
    with pytest.raises(PruneError, match=message):
        prune(model, RATIO)


def test_python_api_refuses_bad_input():
    model = _build("resnet20")
    for ratio in (0.0, 1.0, -0.2, 1.5):
        with pytest.raises(PruneError, match=r"in \(0, 1\)"):
            prune(model, ratio)
    with pytest.raises(PruneError, match="unknown pruning method"):
        prune(model, RATIO, "l3")
    from cnnzoo.registry import create_model

    with pytest.raises(PruneError, match="ModelSpec"):
        prune(create_model("resnet20", num_classes=5), RATIO)
    with pytest.raises(PruneError, match="no batch norm"):
        prune(_build("cnn3", {"norm": "none"}, in_chans=1), RATIO, "bn-scale")


def test_bn_sparsity_penalty_adds_lambda_times_the_l1_of_the_scales():
    from cnnzoo.compress.slimming import BNSparsityLoss
    from cnnzoo.errors import ConfigError
    from cnnzoo.train.trainer import CrossEntropy

    model = _build("resnet20", classes=3)
    x, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    plain = CrossEntropy()
    penalised = BNSparsityLoss(plain, model, 1e-2)
    with torch.no_grad():
        out = model(x)
    scales = sum(m.weight.abs().sum() for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    expected = plain(out, labels, x)[0] + 1e-2 * scales
    assert float(penalised(out, labels, x)[0].detach()) == pytest.approx(float(expected.detach()))
    with pytest.raises(ConfigError, match="no batch norm"):
        BNSparsityLoss(plain, _build("cnn3", {"norm": "none"}, classes=3, in_chans=1), 1e-4)


# ------------------------------------------------------------------------------------------
# the command line: a run in, a new run out
# ------------------------------------------------------------------------------------------


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


FAST = ["--batch-size", "16", "--threads", "1", "--no-progress", "--amp", "none"]


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("prune") / "source"
    assert cli.main(["train", "resnet20", "--data", SYN, "--epochs", "1", "--bn-sparsity", "1e-5", "--out",
                     str(folder), *FAST]) == 0  # fmt: skip
    return folder


def test_prune_a_run_writes_a_loadable_run_and_leaves_the_source(source_run, tmp_path, capsys):
    from cnnzoo.train.runs import load_run

    before = _digest(source_run)
    out = tmp_path / "pruned"
    assert cli.main(["prune", str(source_run), "--ratio", "0.5", "--epochs", "1", "--out", str(out), *FAST]) == 0
    printed = capsys.readouterr().out
    for piece in ("params", "multiply-adds", "CPU latency, batch 1", "before fine-tuning", "after fine-tuning"):
        assert piece in printed
    assert _digest(source_run) == before  # the source run is only read
    run = load_run(out, device="cpu")
    record = run.meta["prune"]
    assert run.meta["kind"] == "prune" and record["method"] == "l1" and record["ratio"] == 0.5
    assert record["macs_after"] < record["macs_before"] and record["latency_before"] > 0
    assert LOW <= record["macs_share"] <= HIGH
    # load_run rebuilt the pruned architecture: same outputs as a second rebuild
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(load_run(out, device="cpu").model(x), run.model(x), rtol=0, atol=0)
    assert cli.main(["eval", str(out)]) == 0
    assert "top-1" in capsys.readouterr().out
    assert cli.main(["summary", str(out)]) == 0
    assert "parameter memory" in capsys.readouterr().out


def test_prune_without_fine_tuning_and_iteratively(source_run, tmp_path, capsys):
    from cnnzoo.train.runs import load_run

    zero = tmp_path / "zero"
    assert cli.main(["prune", str(source_run), "--ratio", "0.5", "--epochs", "0", "--out", str(zero), *FAST]) == 0
    assert "(no fine-tuning)" in capsys.readouterr().out
    assert (zero / "last.safetensors").is_file() and (zero / "results.json").is_file()
    pruned_once = load_run(zero, device="cpu")
    assert pruned_once.meta["prune"]["epochs"] == 0
    assert cli.main(["eval", str(zero)]) == 0

    steps = tmp_path / "steps"
    assert cli.main(["prune", str(source_run), "--ratio", "0.5", "--steps", "2", "--epochs", "1", "--method",
                     "bn-scale", "--global", "--out", str(steps), *FAST]) == 0  # fmt: skip
    capsys.readouterr()
    iterative = load_run(steps, device="cpu")
    assert [t["name"] for t in iterative.meta["spec"]["transforms"]] == ["pruned", "pruned"]
    assert (tmp_path / "steps-round1" / "results.json").is_file()  # the first round's fine-tuning
    # a finished run resumes to the same architecture (the pruning is deterministic)
    assert cli.main(["prune", str(source_run), "--ratio", "0.5", "--steps", "2", "--epochs", "1", "--method",
                     "bn-scale", "--global", "--out", str(steps), "--resume", *FAST]) == 0  # fmt: skip
    assert load_run(steps, device="cpu").meta["spec"] == iterative.meta["spec"]


def test_prune_a_registered_model_name(tmp_path, capsys):
    out = tmp_path / "fresh"
    assert cli.main(["prune", "mobilenet_v1_025", "--ratio", "0.5", "--epochs", "0", "--data",
                     "synthetic:classes=3,channels=3,size=32,train=16,test=8", "--out", str(out), *FAST]) == 0  # fmt: skip
    from cnnzoo.train.runs import load_run

    run = load_run(out, device="cpu")
    assert run.meta["prune"]["source_kind"] == "model"
    assert run.model(torch.randn(1, 3, 32, 32)).shape == (1, 3)


@pytest.mark.parametrize("argv,message", [
    (["prune", "{run}", "--ratio", "1.5"], "in (0, 1)"),
    (["prune", "{run}", "--ratio", "0"], "in (0, 1)"),
    (["prune", "{run}", "--ratio", "0.5", "--method", "l3"], "unknown pruning method"),
    (["prune", "{run}", "--ratio", "0.5", "--steps", "0"], "--steps"),
    (["prune", "{tmp}", "--ratio", "0.5"], "cnnzoo run directory"),
    (["prune", "lenet5", "--ratio", "0.5", "--epochs", "0", "--data", SYN], "connection table"),
    (["prune", "shufflenet_v1_g2", "--ratio", "0.5", "--epochs", "0", "--data",
      "synthetic:classes=3,channels=3,size=32,train=8,test=4"], "channel shuffle"),
    (["prune", "{run}", "--ratio", "0.5", "--out", "{run}"], "choose another --out"),
    (["train", "resnet20", "--data", SYN, "--bn-sparsity", "-1"], "bn_sparsity must be >= 0"),
])  # fmt: skip
def test_bad_input_is_one_line_exit_2_and_writes_nothing(argv, message, source_run, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("a user's file")
    argv = [a.replace("{run}", str(source_run)).replace("{tmp}", str(tmp_path)) for a in argv]
    before_source, before_tmp = _digest(source_run), _digest(tmp_path)
    capsys.readouterr()
    assert cli.main([*argv, *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert _digest(source_run) == before_source and _digest(tmp_path) == before_tmp
