"""`cnnzoo eval`, `cnnzoo predict` with class activation maps, and `cnnzoo plot`."""

from __future__ import annotations

import json
import re

import pytest
import torch
from PIL import Image
from torch import nn

from cnnzoo import cli, create_model
from cnnzoo.data import load_dataset, make_loader
from cnnzoo.models.base import ClassifierNet
from cnnzoo.train.cam import class_activation_map, has_gap_linear_head
from cnnzoo.train.engine import fit
from cnnzoo.train.runs import load_run, predict_run

SYN = "synthetic:classes=4,channels=1,size=32,train=96,test=32"


class GapNet(ClassifierNet):
    """Two convolutions, global average pooling, one linear layer: CAM applies exactly."""

    def __init__(self, num_classes: int = 4, in_chans: int = 1) -> None:
        super().__init__(num_classes, in_chans)
        self.num_features = 8
        self.features = nn.Sequential(nn.Conv2d(in_chans, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU())  # fmt: skip
        self.fc = nn.Linear(8, num_classes)

    def forward_features(self, x):
        return self.features(x)

    def forward_head(self, x, pre_logits=False):
        x = x.mean(dim=(2, 3))
        return x if pre_logits else self.fc(x)

    def get_classifier(self):
        return self.fc

    def reset_classifier(self, n):
        self.fc = nn.Linear(8, n)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from cnnzoo.models.lenet import LENET_PAPER
    from cnnzoo.registry import _REGISTRY, register_model

    name = "_test_gap_net"

    def builder(**kwargs):
        return GapNet(**kwargs)

    builder.__name__ = name
    register_model(family="test", paper=LENET_PAPER, input_size=(1, 32, 32), num_classes=4, min_size=2)(builder)
    out = tmp_path_factory.mktemp("eval") / "run"
    fit(name, data=SYN, epochs=2, batch_size=32, lr=0.05, out=str(out), progress=False, verbose=False)
    yield out
    _REGISTRY.pop(name, None)


def _pct(text: str, label: str) -> float:
    return float(re.search(rf"{label} ([0-9.]+)%", text).group(1))


def test_eval_reports_the_same_accuracy_as_training(trained_run, capsys):
    assert cli.main(["eval", str(trained_run)]) == 0
    printed = capsys.readouterr().out
    results = json.loads((trained_run / "results.json").read_text())
    assert _pct(printed, "top-1") == pytest.approx(100 * results["top1"], abs=0.01)
    assert _pct(printed, "top-5") == pytest.approx(100 * results["top5"], abs=0.01)
    per_class = re.findall(r"^  class_\d+\s+([0-9.]+)%", printed, flags=re.M)
    assert len(per_class) == 4
    assert "confusion matrix (rows: true, columns: predicted)" in printed
    assert (trained_run / "confusion-test.png").read_bytes()[:4] == b"\x89PNG"
    assert cli.main(["eval", str(trained_run), "--tta", "--split", "val", "--checkpoint", "last"]) == 0
    assert "flip TTA" in capsys.readouterr().out


def test_predict_gives_the_models_probabilities_and_a_cam(trained_run, tmp_path):
    bundle = load_dataset(SYN, val_fraction=0.1, seed=0)
    Image.fromarray(bundle.test.images[0, 0].numpy()).save(tmp_path / "sample.png")
    run = load_run(trained_run)
    loader = make_loader(bundle.test, batch_size=4, train=False, input_size=tuple(run.meta["input_size"]),
                         mean=run.meta["mean"], std=run.meta["std"])  # fmt: skip
    images, _ = next(iter(loader))
    with torch.no_grad():
        probs = run.model(images[:1]).softmax(1)[0]
    expected_top = int(probs.argmax())
    cam_path = tmp_path / "cam.png"
    lines = predict_run(trained_run, [str(tmp_path / "sample.png")], topk=2, cam_path=str(cam_path))
    ranked = [line for line in lines if re.match(r"\s+\d\. ", line)]
    assert len(ranked) == 2
    name, prob = ranked[0].split()[1], float(ranked[0].split()[2])
    assert name == f"class_{expected_top}" and prob == pytest.approx(float(probs[expected_top]), abs=1e-4)
    assert any("CAM of" in line and "Grad-CAM" not in line for line in lines)
    assert cam_path.read_bytes()[:4] == b"\x89PNG"


def test_cam_is_exact_for_a_gap_linear_head():
    """Zhou et al. 2016, Sec. 2: the class score is the spatial mean of the CAM plus the bias."""
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=10).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        logits = model(x)[0]
    assert has_gap_linear_head(model, model.forward_features(x))
    amap = class_activation_map(model, x, class_index=3)
    assert amap.method == "CAM" and amap.heatmap.shape == (32, 32)
    bias = model.get_classifier().bias[3].detach()
    assert float(amap.raw.mean() + bias) == pytest.approx(float(logits[3]), abs=1e-4)
    assert float(amap.heatmap.min()) == 0.0 and float(amap.heatmap.max()) == pytest.approx(1.0)


class FlattenHead(nn.Module):
    """A non-GAP head: flatten and a linear layer (so Grad-CAM is needed)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(2 * 8 * 8, 2)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
            self.conv.bias.zero_()
            self.fc.weight.fill_(0.1)
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(torch.flatten(self.act(self.conv(x)), 1))


def test_grad_cam_for_other_heads_follows_the_evidence():
    """Selvaraju et al. 2017, Sec. 3: ReLU of gradient-weighted activations of the last conv map."""
    model = FlattenHead().eval()
    x = torch.zeros(1, 1, 8, 8)
    x[..., 1:3, 5:7] = 1.0  # the only evidence is a blob in the top-right corner
    amap = class_activation_map(model, x, class_index=0)
    assert amap.method == "Grad-CAM" and amap.layer == "act"
    peak = divmod(int(amap.raw.argmax()), 8)
    assert 1 <= peak[0] <= 2 and 5 <= peak[1] <= 6
    assert float(amap.raw[4:, :4].abs().sum()) == 0.0  # nothing where the image is empty
    lenet = create_model("lenet5", num_classes=10).eval()
    assert class_activation_map(lenet, torch.randn(1, 1, 32, 32)).method == "Grad-CAM"


def test_predict_unreadable_image_is_a_one_line_error(trained_run, tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image at all")
    assert cli.main(["predict", str(trained_run), str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"cannot read image {bad}" in err and err.strip().count("\n") == 0


def test_plot_overlays_runs(trained_run, tmp_path, capsys):
    out = tmp_path / "overlay.png"
    assert cli.main(["plot", str(trained_run), str(trained_run), "-o", str(out), "-m", "val_top1", "-m",
                     "train_loss", "--label", "a", "--label", "b"]) == 0  # fmt: skip
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert cli.main(["plot", str(trained_run), "-o", str(out), "-m", "nope"]) == 2
    assert "unknown metric 'nope'" in capsys.readouterr().err
    assert cli.main(["plot", str(tmp_path / "missing"), "-o", str(out)]) == 2


def test_package_functions_are_not_shadowed_by_submodules():
    """``from cnnzoo.train import evaluate`` must give the function even after every submodule of
    the package was imported (a submodule named like an exported function would replace it)."""
    import importlib
    import pkgutil

    import cnnzoo.train as train_package
    from cnnzoo.train import engine

    for module in pkgutil.iter_modules(train_package.__path__):
        importlib.import_module(f"cnnzoo.train.{module.name}")
    for name in train_package.__all__:
        assert not isinstance(getattr(train_package, name), type(engine)), name
    assert train_package.evaluate is engine.evaluate and train_package.fit is engine.fit


def test_eval_applies_the_runs_tta_and_names_the_checkpoint_it_loaded(tmp_path, capsys):
    out = tmp_path / "tta-run"
    fit("lenet5", data=SYN, epochs=1, batch_size=32, tta_flip=True, out=str(out), progress=False, verbose=False)
    results = json.loads((out / "results.json").read_text())
    assert cli.main(["eval", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "flip TTA" in printed and "best checkpoint" in printed
    assert _pct(printed, "top-1") == pytest.approx(100 * results["top1"], abs=0.01)
    assert cli.main(["eval", str(out), "--no-tta"]) == 0
    assert "flip TTA" not in capsys.readouterr().out
    # a run without a best checkpoint: the last one is used, and called so
    for suffix in (".safetensors", ".state.pt"):
        (out / f"best{suffix}").unlink()
    assert cli.main(["eval", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "last checkpoint" in printed and "best checkpoint" not in printed


def test_predict_refuses_a_decompression_bomb(trained_run, tmp_path, monkeypatch, capsys):
    # a real bomb is a few kB that decode to gigapixels; a low limit makes a small image one
    Image.new("L", (64, 64)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    for pixels in (1000, 3000):  # above the limit (a warning in Pillow) and above twice it (an error)
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pixels)
        assert cli.main(["predict", str(trained_run), str(tmp_path / "bomb.png")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "refusing image" in err and "Traceback" not in err
