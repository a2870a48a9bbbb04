"""Transfer learning (issue 7): prepare()'s three modes, weight sources, adaptation, finetune, errors.

Everything runs on random weights: "pretrained" weights are a freshly built network's state
dict written to a temporary file (no download).
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from cnnzoo.errors import CnnzooError, ConfigError
from cnnzoo.registry import create_model
from cnnzoo.transfer import NewFC, adapt_conv_weight, adapt_in_chans, model_units, prepare
from cnnzoo.transfer.adapt import first_conv, head_needs_reset
from cnnzoo.transfer.data import class_subset, parse_classes
from cnnzoo.transfer.sources import ArchitectureMismatch, SourceError, clean_state_dict, load_source


#: a tiny data set: 3-channel 32x32 images of 4 classes (fast to train on)
SYNTH = "synthetic:classes=4,channels=3,size=32,train=48,test=16"
FAST = dict(epochs=1, batch_size=16, max_steps=2, progress=False, device="cpu", val_fraction=0.25)


def _params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _trainable(model: nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


# ------------------------------------------------------------------------------------------
# units: what a "layer" is
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, expected",
    [
        ("resnet18", ["conv1+bn1", "layer1", "layer2", "layer3", "layer4"]),
        ("resnet20", ["conv1+bn1", "layer1", "layer2", "layer3"]),
        ("vgg11", ["stage1", "stage2", "stage3", "stage4", "stage5", "classifier.0", "classifier.3"]),
        ("densenet121", ["features.conv0+norm0", "features.denseblock1+transition1", "features.denseblock2+transition2",
                         "features.denseblock3+transition3", "features.denseblock4+norm5"]),
        ("lenet5", ["features.0", "features.2", "features.4", "features.6", "features.8", "f6"]),
        ("shufflenet_v1_g3", ["stem", "stages.0", "stages.1", "stages.2"]),
    ],
)  # fmt: skip

def test_units_per_family(name, expected):
    """Each family's units: ResNet stages, VGG conv stages (Table 1 columns) and fc6/fc7, dense blocks, ..."""
    with torch.device("meta"):
        model = create_model(name)
    units, head = model_units(model)
    assert [u.name for u in units] == expected
    assert head.modules == [model.get_classifier()]


@pytest.mark.parametrize("name", ["googlenet", "inception_v3", "mobilenet_v1_025", "xception", "squeezenet1_1",
                                  "preact_resnet18", "inception_resnet_v2", "alexnet_paper", "nin_cifar"])  # fmt: skip
def test_units_cover_every_parameter_once(name):
    with torch.device("meta"):
        model = create_model(name)
    units, head = model_units(model)
    seen = [id(p) for u in [*units, head] for p in u.parameters()]
    assert len(seen) == len(set(seen)) == len(list(model.parameters()))
    assert len(units) >= 3


def test_auxiliary_classifiers_train_with_the_module_they_read():
    """GoogLeNet Section 5: the auxiliary classifiers sit on inception4a and inception4d."""
    with torch.device("meta"):
        model = create_model("googlenet")
    units = {u.name: u for u in model_units(model)[0]}
    assert "aux1" in units["inception4a"].paths and "aux2" in units["inception4d"].paths


# ------------------------------------------------------------------------------------------
# prepare: what each mode freezes
# ------------------------------------------------------------------------------------------


@pytest.fixture()
def resnet():
    torch.manual_seed(0)
    return create_model("resnet18", num_classes=10)


def test_mode_all_trains_everything_and_resets_the_head(resnet):
    old_fc = resnet.fc
    before = _params(resnet)
    model = prepare(resnet, "all", num_classes=5)
    assert model is resnet and model.fc is not old_fc and model.fc.out_features == 5
    assert _trainable(model) == {n for n, _ in model.named_parameters()}
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters() if not n.startswith("fc."))
    assert model.transfer_plan.trainable_params == model.transfer_plan.total_params


def test_mode_last_trains_the_last_stages_and_the_head(resnet):
    model = prepare(resnet, "last", num_classes=5, last_k=1)
    assert _trainable(model) == {n for n, _ in model.named_parameters() if n.startswith(("layer4.", "fc."))}
    model = prepare(create_model("resnet18", num_classes=10), "last", num_classes=5, last_k=2)
    assert _trainable(model) == {n for n, _ in model.named_parameters() if n.startswith(("layer3.", "layer4.", "fc."))}
    model = prepare(create_model("resnet18", num_classes=10), "last", num_classes=5, last_k=0)
    assert _trainable(model) == {"fc.weight", "fc.bias"}
    assert model.transfer_plan.frozen == ["conv1+bn1", "layer1", "layer2", "layer3", "layer4"]


def test_mode_new_fc_keeps_the_whole_network_and_trains_one_new_layer(resnet):
    torch.manual_seed(1)
    x = torch.randn(2, 3, 32, 32)
    resnet.eval()
    with torch.no_grad():
        original = resnet(x)
    model = prepare(resnet, "new-fc", num_classes=3)
    assert isinstance(model, NewFC) and model.base is resnet and resnet.fc.out_features == 10
    assert _trainable(model) == {"fc.weight", "fc.bias"}
    assert model.fc.in_features == 10 and model.fc.out_features == 3
    model.train()
    assert not any(m.training for m in model.base.modules())  # a fixed feature extractor
    with torch.no_grad():
        assert torch.allclose(model(x), model.fc(original), atol=1e-6)


def test_new_fc_on_a_net_with_auxiliary_classifiers_reads_the_main_output():
    torch.manual_seed(0)
    model = prepare(create_model("googlenet_bn", num_classes=6), "new-fc", num_classes=2)
    model.train()
    out = model(torch.randn(2, 3, 64, 64))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 2)


@pytest.mark.parametrize("mode, last_k", [("last", 1), ("new-fc", 1), ("all", 1)])
def test_frozen_parameters_stay_bitwise_unchanged_through_optimizer_steps(mode, last_k):
    """SGD with momentum and weight decay (which would move any parameter it receives)."""
    from cnnzoo.train.config import TrainConfig
    from cnnzoo.train.optim import build_optimizer

    torch.manual_seed(0)
    model = prepare(create_model("resnet18", num_classes=10), mode, num_classes=4, last_k=last_k)
    optimizer = build_optimizer(model, TrainConfig(model="resnet18", lr=0.1, weight_decay=5e-4, momentum=0.9))
    # the optimizer receives the trainable parameters, and only them
    given = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert given == {id(p) for p in model.parameters() if p.requires_grad}
    before = _params(model)
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    model.train()
    for _ in range(2):
        loss = nn.functional.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.randint(0, 4, (4,)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert not torch.equal(param, before[name]), name
        else:
            assert torch.equal(param, before[name]), name
    frozen_bn = [n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d) and not m.weight.requires_grad]
    for name in frozen_bn:  # frozen batch norm normalises with, and keeps, its running statistics
        assert torch.equal(model.get_buffer(f"{name}.running_mean"), buffers[f"{name}.running_mean"])
        assert torch.equal(model.get_buffer(f"{name}.running_var"), buffers[f"{name}.running_var"])
    trained_bn = [n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d) and m.weight.requires_grad]
    assert all(not torch.equal(model.get_buffer(f"{n}.running_mean"), buffers[f"{n}.running_mean"]) for n in trained_bn)
    assert (len(frozen_bn) > 0) == (mode != "all")


def test_frozen_batch_norm_stays_in_eval_mode_through_train_calls(resnet):
    model = prepare(resnet, "last", num_classes=5, last_k=1)
    model.train()
    assert not model.bn1.training and not model.layer3[0].bn1.training
    assert model.layer4[0].bn1.training and model.training
    model.eval()
    model.train()
    assert not model.layer1[0].bn2.training and model.layer4[1].bn2.training
    # preparing again (all) lets every layer follow train() again
    model = prepare(model, "all")
    model.train()
    assert all(m.training for m in model.modules())


def test_bn_adapt_updates_frozen_statistics_but_not_their_affine_parameters(resnet):
    model = prepare(resnet, "last", num_classes=5, last_k=1, bn_adapt=True)
    model.train()
    mean, weight = model.bn1.running_mean.clone(), model.bn1.weight.detach().clone()
    model(torch.randn(4, 3, 32, 32)).sum().backward()
    assert not torch.equal(model.bn1.running_mean, mean)
    assert model.bn1.weight.grad is None and torch.equal(model.bn1.weight, weight)


def test_same_number_of_classes_keeps_the_head_unless_asked(resnet):
    old = resnet.fc
    assert prepare(resnet, "last", num_classes=10).fc is old
    assert prepare(resnet, "last", num_classes=10, reset_head=True).fc is not old
    assert head_needs_reset(5, 5, ["a", "b", "c", "d", "e"], ["v", "w", "x", "y", "z"])
    assert not head_needs_reset(5, 5, None, ["v", "w", "x", "y", "z"])
    assert head_needs_reset(4, 5)


def test_unknown_mode_and_last_k_beyond_the_net_are_one_line_errors(resnet):
    with pytest.raises(ConfigError, match="unknown transfer mode 'partial'; choose from all, last, new-fc"):
        prepare(resnet, "partial")
    old_fc = resnet.fc
    with pytest.raises(ConfigError) as info:
        prepare(resnet, "last", num_classes=3, last_k=6)
    assert resnet.fc is old_fc and all(p.requires_grad for p in resnet.parameters())  # left as it was
    message = str(info.value)
    assert "last_k=6" in message and "only 5 layers" in message and "layer4" in message and "\n" not in message
    with pytest.raises(ConfigError, match="last_k must be an integer >= 0"):
        prepare(resnet, "last", last_k=-1)


# ------------------------------------------------------------------------------------------
# adapting the number of input channels
# ------------------------------------------------------------------------------------------


def test_gray_input_through_the_adapted_stem_equals_replicated_rgb_through_the_original():
    torch.manual_seed(0)
    rgb_model = create_model("resnet18", num_classes=7).eval()
    gray_model = create_model("resnet18", num_classes=7)
    gray_model.load_state_dict(rgb_model.state_dict())
    adapt_in_chans(gray_model, 1)
    gray_model.eval()
    assert gray_model.conv1.weight.shape == (64, 1, 7, 7) and gray_model.in_chans == 1
    gray = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        expected = rgb_model(gray.repeat(1, 3, 1, 1))
        got = gray_model(gray)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    # the stem alone, exactly as the sum over RGB
    stem = rgb_model.conv1.weight.detach()
    torch.testing.assert_close(gray_model.conv1.weight.detach(), stem.sum(1, keepdim=True))


def test_more_channels_repeat_and_rescale_the_kernels():
    weight = torch.randn(8, 3, 3, 3)
    six = adapt_conv_weight(weight, 6)
    torch.testing.assert_close(six, torch.cat([weight, weight], 1) / 2)
    five = adapt_conv_weight(weight, 5)
    torch.testing.assert_close(five[:, 3:], weight[:, :2] * 3 / 5)
    # an image with six equal channels gives the RGB response of three equal channels
    x = torch.randn(1, 1, 9, 9)
    torch.testing.assert_close(nn.functional.conv2d(x.repeat(1, 6, 1, 1), six),
                               nn.functional.conv2d(x.repeat(1, 3, 1, 1), weight), atol=1e-5, rtol=1e-5)  # fmt: skip
    # a gray (one-channel) net to RGB: equal channels give the gray response
    lenet = create_model("lenet5")
    name, conv = first_conv(lenet)
    assert conv.in_channels == 1
    three = adapt_conv_weight(conv.weight.detach(), 3)
    torch.testing.assert_close(three.sum(1, keepdim=True), conv.weight.detach())


# ------------------------------------------------------------------------------------------
# sources
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def torchvision_resnet18(tmp_path_factory):
    """A torchvision ResNet-18 (random weights) saved as .pth and .safetensors."""
    import torchvision
    from safetensors.torch import save_file

    torch.manual_seed(0)
    tv = torchvision.models.resnet18(weights=None).eval()
    folder = tmp_path_factory.mktemp("weights")
    state = tv.state_dict()
    torch.save(state, folder / "resnet18.pth")
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "resnet18.safetensors"))
    return tv, folder


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_a_torchvision_state_dict_file_loads_strictly(torchvision_resnet18, suffix):
    tv, folder = torchvision_resnet18
    source = load_source(folder / f"resnet18{suffix}")
    assert source.kind == "file" and source.model_name is None
    with pytest.raises(ConfigError, match="give it with --model"):
        source.build()
    model = source.build("resnet18").eval()
    assert model.num_classes == 1000 and model.in_chans == 3
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), tv(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("suffix, mode", [(".pth", "last"), (".safetensors", "new-fc")])
def test_finetune_from_a_torchvision_file_end_to_end(torchvision_resnet18, tmp_path, suffix, mode):
    from cnnzoo.train.checkpoint import load_weights
    from cnnzoo.transfer.commands import finetune

    tv, folder = torchvision_resnet18
    out = tmp_path / "run"
    result = finetune(str(folder / f"resnet18{suffix}"), SYNTH, mode, model="resnet18", last_k=1, out=str(out),
                      input_size=[32, 32], verbose=False, **FAST)  # fmt: skip
    assert result.status == "completed" and result.steps == 2
    record = json.loads((out / "run.json").read_text())
    assert record["model"] == "resnet18" and record["transfer"]["mode"] == mode
    assert "trainable" in (out / "summary.txt").read_text()
    weights, _ = load_weights(out / "last.safetensors")
    prefix = "base." if mode == "new-fc" else ""
    source = tv.state_dict()
    frozen = [k for k in source if not k.startswith(("layer4.", "fc.")) or mode == "new-fc"]
    for key in frozen:  # the pretrained, frozen weights and batch norm statistics: bitwise as loaded
        assert torch.equal(weights[prefix + key], source[key]), key
    if mode == "last":
        assert not torch.equal(weights["layer4.1.conv2.weight"], source["layer4.1.conv2.weight"])
        assert weights["fc.weight"].shape == (4, 512)
    else:
        assert weights["fc.weight"].shape == (4, 1000)
    # the run is itself a source, with its mode's structure
    again = load_source(out).build()
    assert isinstance(again, NewFC) == (mode == "new-fc") and again.num_classes == 4


def test_torchvision_source_goes_through_torchvisions_api(monkeypatch):
    """torchvision:<Weights>.<NAME> asks torchvision's own loader (here stubbed: no download)."""
    import torchvision
    import torchvision.models._api as tv_api

    torch.manual_seed(0)
    state = torchvision.models.resnet18(weights=None).state_dict()
    urls = []

    def fake_download(url, *args, **kwargs):
        urls.append(url)
        return state

    monkeypatch.setattr(tv_api, "load_state_dict_from_url", fake_download)
    source = load_source("torchvision:ResNet18_Weights.IMAGENET1K_V1")
    assert urls == [torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url]
    assert source.model_name == "resnet18" and len(source.classes) == 1000
    model = source.build()
    assert torch.equal(model.fc.weight, state["fc.weight"])

    def offline(url, *args, **kwargs):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(tv_api, "load_state_dict_from_url", offline)
    with pytest.raises(SourceError, match="cannot get .*resnet18.*offline, put the file in"):
        load_source("torchvision:ResNet18_Weights.IMAGENET1K_V1")


def test_unknown_torchvision_and_timm_names_are_one_line_errors():
    with pytest.raises(SourceError, match="torchvision has no weights 'NoSuch_Weights.X'"):
        load_source("torchvision:NoSuch_Weights.X")
    with pytest.raises(SourceError, match="timm has no model 'no_such_net'"):
        load_source("timm:no_such_net")


def test_a_missing_source_is_a_one_line_error(tmp_path):
    with pytest.raises(SourceError, match="not found") as info:
        load_source(tmp_path / "nothing.pth")
    assert "\n" not in str(info.value)
    with pytest.raises(SourceError, match="not a cnnzoo run directory"):
        load_source(tmp_path)
    (tmp_path / "w.txt").write_text("x")
    with pytest.raises(SourceError, match="unknown weight file type"):
        load_source(tmp_path / "w.txt")
    (tmp_path / "bad.pth").write_bytes(b"not a zip")
    with pytest.raises(SourceError, match="cannot read"):
        load_source(tmp_path / "bad.pth")


def test_architecture_mismatch_names_the_first_differing_keys_and_shapes(torchvision_resnet18, tmp_path):
    _, folder = torchvision_resnet18
    source = load_source(folder / "resnet18.pth")
    with pytest.raises(ArchitectureMismatch) as info:
        source.build("resnet34")
    message = str(info.value)
    assert "does not fit resnet34" in message and "layer1.2.conv1.weight (64, 64, 3, 3)" in message
    assert "\n" not in message
    state = dict(source.state_dict)
    state["layer2.0.conv1.weight"] = torch.zeros(128, 64, 1, 1)
    torch.save(state, tmp_path / "changed.pth")
    with pytest.raises(ArchitectureMismatch, match=r"layer2\.0\.conv1\.weight is \(128, 64, 1, 1\) in the source, "
                                                   r"\(128, 64, 3, 3\) in resnet18"):  # fmt: skip
        load_source(tmp_path / "changed.pth").build("resnet18")


def test_state_dict_wrappers_prefixes_and_old_densenet_keys_are_undone():
    tensor = torch.zeros(1)
    cleaned = clean_state_dict({"state_dict": {"module.features.denseblock1.denselayer1.norm.1.weight": tensor,
                                               "module.classifier.weight": tensor}})  # fmt: skip
    assert set(cleaned) == {"features.denseblock1.denselayer1.norm1.weight", "classifier.weight"}


# ------------------------------------------------------------------------------------------
# the command line
# ------------------------------------------------------------------------------------------


def _cli(args, capsys):
    from cnnzoo.cli import main

    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--from", "/no/such/run"], "weight source '/no/such/run' not found"),
        (["--mode", "bogus"], "unknown transfer mode 'bogus'"),
        (["--mode", "last", "--last-k", "9"], "last_k=9 but resnet18 has only 5 layers"),
        (["--model", "resnet34"], "does not fit resnet34"),
    ],
)
def test_cli_errors_are_one_line_with_exit_code_2(torchvision_resnet18, capsys, extra, expected):
    _, folder = torchvision_resnet18
    args = ["finetune", "--from", str(folder / "resnet18.pth"), "--model", "resnet18", "--data", SYNTH, *extra]
    code, _, err = _cli(args, capsys)
    assert code == 2
    assert expected in err and "Traceback" not in err and err.count("\n") == 1


def test_cli_finetune_runs_and_logs_the_trainable_count(torchvision_resnet18, tmp_path, capsys):
    _, folder = torchvision_resnet18
    out = tmp_path / "cli"
    code, stdout, _ = _cli(["finetune", "--from", str(folder / "resnet18.safetensors"), "--model", "resnet18",
                            "--mode", "last", "--last-k", "2", "--data", SYNTH, "--input-size", "32", "--epochs", "1",
                            "--max-steps", "1", "-b", "16", "--device", "cpu", "--no-progress", "--out", str(out)],
                           capsys)  # fmt: skip
    assert code == 0
    assert "transfer mode last (last_k=2)" in stdout and "parameters trainable" in stdout
    assert (out / "best.safetensors").exists()


# ------------------------------------------------------------------------------------------
# class subsets
# ------------------------------------------------------------------------------------------


def test_class_subset_keeps_few_images_per_class_and_relabels():
    from cnnzoo.data import load_dataset

    bundle = load_dataset("synthetic:classes=6,channels=1,size=8,train=600,test=120", val_fraction=0.0)
    classes = parse_classes("3-5", bundle.classes)
    subset = class_subset(bundle, classes, per_class=7, val_per_class=5, seed=1)
    assert subset.classes == [bundle.classes[c] for c in (3, 4, 5)]
    assert torch.bincount(subset.train.labels).tolist() == [7, 7, 7]
    assert torch.bincount(subset.val.labels).tolist() == [5, 5, 5]
    assert int((torch.isin(bundle.test.labels, torch.tensor(classes))).sum()) == len(subset.test)
    assert subset.mean == bundle.mean  # the parent's normalisation
    # validation images are not training images
    train_rows = {tuple(x.flatten().tolist()) for x in subset.train.images}
    assert not any(tuple(x.flatten().tolist()) in train_rows for x in subset.val.images)
    with pytest.raises(ConfigError, match="unknown class"):
        parse_classes("Nope", bundle.classes)
    with pytest.raises(CnnzooError, match="out of range"):
        parse_classes("4-9", bundle.classes)
