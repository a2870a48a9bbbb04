"""Fast training: bf16 detection and fallback, channels-last, torch.compile's fallback, fastnet and fast94."""

from __future__ import annotations

import json

import pytest
import torch

import cnnzoo
from cnnzoo.train import speed
from cnnzoo.train.config import load_recipe
from cnnzoo.train.engine import fit

SYN = "synthetic:classes=3,channels=1,size=16,train=48,test=12"
QUICK = dict(batch_size=12, epochs=1, progress=False, verbose=False)


@pytest.fixture
def no_bf16(monkeypatch):
    monkeypatch.setattr(speed, "cpu_bf16_instructions", lambda: None)


@pytest.fixture
def with_bf16(monkeypatch):
    monkeypatch.setattr(speed, "cpu_bf16_instructions", lambda: "amx_bf16")


def test_amp_auto_follows_the_cpus_instructions(no_bf16, monkeypatch):
    warnings = []
    cpu = torch.device("cpu")
    assert speed.resolve_amp("auto", cpu, warnings.append)[0] == "none"
    assert speed.resolve_amp("none", cpu, warnings.append)[0] == "none"
    assert warnings == []  # auto falls back silently
    assert speed.resolve_amp("bf16", cpu, warnings.append)[0] == "none"
    assert len(warnings) == 1 and "no bf16 instructions" in warnings[0] and "fp32" in warnings[0]
    monkeypatch.setattr(speed, "cpu_bf16_instructions", lambda: "avx512_bf16")
    amp, why = speed.resolve_amp("auto", cpu, warnings.append)
    assert amp == "bf16" and "avx512_bf16" in why


def test_bf16_asked_on_a_cpu_without_it_warns_and_trains_in_fp32(no_bf16, tmp_path, capsys):
    result = fit("lenet5", data=SYN, amp="bf16", out=str(tmp_path / "r"), **QUICK)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cnnzoo: warning: amp bf16" in err
    record = json.loads((result.run_dir / "run.json").read_text())
    assert record["amp"] == "none" and result.status == "completed"
    # config.yaml keeps what was asked for: the same command resumes on a machine that has bf16
    assert "amp: bf16" in (result.run_dir / "config.yaml").read_text()


def test_the_start_of_a_run_says_which_precision(with_bf16, tmp_path, capsys):
    fit("lenet5", data=SYN, out=str(tmp_path / "r"), **{**QUICK, "verbose": True})
    out = capsys.readouterr().out
    assert "precision: bf16 autocast (the CPU has amx_bf16), channels-last" in out


def test_channels_last_is_on_by_default_on_a_cpu_and_can_be_turned_off(tmp_path):
    assert speed.resolve_channels_last(None, torch.device("cpu")) is True
    assert speed.resolve_channels_last(False, torch.device("cpu")) is False
    result = fit("lenet5", data=SYN, channels_last=False, out=str(tmp_path / "r"), **QUICK)
    assert json.loads((result.run_dir / "run.json").read_text())["channels_last"] is False


def test_compile_that_fails_falls_back_to_eager_naming_the_cause(tmp_path, monkeypatch, capsys):
    def broken_compile(model, **kwargs):
        def run(*args, **kw):
            raise RuntimeError("InductorError: CppCompileError: C++ compile error (no compiler found)")

        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    result = fit("lenet5", data=SYN, compile=True, out=str(tmp_path / "r"), **QUICK)
    err = capsys.readouterr().err
    assert result.status == "completed"
    assert err.count("--compile failed") == 1 and "no compiler found" in err


def test_a_models_own_error_under_compile_is_not_swallowed():
    wrapped = speed.CompiledWithFallback.__new__(speed.CompiledWithFallback)
    torch.nn.Module.__init__(wrapped)

    def shape_error(*args, **kwargs):
        raise ValueError("expected 4 dimensions")

    wrapped.module, wrapped._warn, wrapped._compiled = torch.nn.Identity(), print, shape_error
    with pytest.raises(ValueError, match="4 dimensions"):
        wrapped(torch.zeros(1))


# ------------------------------------------------------------------------------------------- fastnet


def test_fastnet_whitening_decorrelates_the_patches():
    torch.manual_seed(0)
    # eps 1e-8: unit variance in every direction (the default 5e-4 damps the faintest ones)
    model = cnnzoo.create_model("fastnet", num_classes=10, in_chans=1, whiten_eps=1e-8)
    # correlated images: a smooth random field
    images = torch.nn.functional.avg_pool2d(torch.randn(256, 1, 32, 32), 5, stride=1)
    model.init_from_data(images)
    out = model.whiten(images)  # 8 channels: 4 directions and their negatives
    coords = out[:, :4].permute(1, 0, 2, 3).flatten(1)
    cov = torch.cov(coords)
    torch.testing.assert_close(cov, torch.eye(4), atol=0.05, rtol=0.05)
    torch.testing.assert_close(out[:, 4:], -out[:, :4])
    assert not model.whiten.weight.requires_grad


def test_fastnet_starts_from_identity_convolutions_and_frozen_bn_scales():
    model = cnnzoo.create_model("fastnet", num_classes=10, in_chans=1)
    conv = model.blocks[1].conv2  # 96 -> 96 with the default widths
    centre = conv.weight[:, :, 1, 1]
    assert conv.in_channels == conv.out_channels
    assert torch.equal(centre.diagonal(), torch.ones(conv.out_channels))
    assert torch.equal(conv.weight[0, 0], torch.tensor([[0.0, 0, 0], [0, 1, 0], [0, 0, 0]]))
    assert not any(p.requires_grad for n, p in model.named_parameters() if n.endswith("norm1.weight"))
    assert all(p.requires_grad for n, p in model.named_parameters() if n.endswith("norm1.bias"))


def test_fit_initialises_fastnet_from_the_data_and_load_run_rebuilds_it(tmp_path):
    result = fit("fastnet", data=SYN, out=str(tmp_path / "r"), **QUICK)
    loaded = cnnzoo.load_run(result.run_dir, device="cpu")
    assert loaded.model.whiten.weight.abs().sum() > 0  # filled by init_from_data, saved, loaded
    fresh = cnnzoo.create_model("fastnet", num_classes=3, in_chans=1)
    assert fresh.whiten.weight.abs().sum() == 0


def test_fast94_recipe_is_shipped_and_trains_fastnet_with_its_tricks(tmp_path):
    recipe = load_recipe("fast94")
    assert recipe["schedule"] == "onecycle" and recipe["nesterov"] is True and recipe["tta_flip"] is True
    assert recipe["label_smoothing"] > 0
    result = fit("fastnet", data=SYN, recipe="fast94", out=str(tmp_path / "r"),
                 **{**QUICK, "batch_size": 16})  # fmt: skip
    assert result.status == "completed" and 0.0 <= result.test_top1 <= 1.0
