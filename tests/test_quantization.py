"""Binary, XNOR, ternary and two-bit networks: quantizers, the transform, the packed file, the commands."""

from __future__ import annotations

import hashlib
import json
import math

import pytest
import torch
from torch import nn

from cnnzoo import cli
from cnnzoo.errors import ConfigError
from cnnzoo.modelspec import ModelSpec
from cnnzoo.quantization import quantizers as q
from cnnzoo.quantization.layers import BinaryInputs
from cnnzoo.quantization.packing import QPackError, load_qpack, pack_codes, read_qpack, unpack_codes, write_qpack
from cnnzoo.quantization.transform import SCHEMES, ClipShadowWeights, deployed, quantize_model

SYN = "synthetic:classes=4,channels=1,size=16,train=64,test=16"
TINY = {"widths": [8, 8, 8], "norm": "bn_torch"}
#: (scheme, binary_activations) for every variant
VARIANTS = [(scheme, False) for scheme in SCHEMES] + [("binary", True)]


def tiny_spec(scheme: str, **options) -> ModelSpec:
    return ModelSpec("cnn3", dict(TINY), num_classes=4, in_chans=1).then("quantize", scheme=scheme, **options)


def images(n: int = 4, size: int = 16) -> torch.Tensor:
    return torch.randn(n, 1, size, size)


# ------------------------------------------------------------------------------------------
# every scheme: forward, backward, the values it deploys
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme, binary_activations", VARIANTS)
def test_each_scheme_trains_its_shadow_weights_through_the_quantized_forward(scheme, binary_activations):
    model = tiny_spec(scheme, binary_activations=binary_activations).build().train()
    layers = model.quantized_layers()
    assert list(layers) == ["features.1.conv", "features.2.conv"]  # the first conv and the classifier stay fp32
    out = model(images())
    assert out.shape == (4, 4) and torch.isfinite(out).all()
    out.square().sum().backward()
    for layer in layers.values():
        shadow = layer.parametrizations.weight.original
        assert shadow.grad is not None and torch.isfinite(shadow.grad).all() and shadow.grad.abs().sum() > 0
        assert not torch.equal(layer.weight, shadow)  # the forward sees other values than the ones that train
    if scheme == "ttq":
        scales = [p for n, p in model.named_parameters() if n.endswith((".wp", ".wn"))]
        assert len(scales) == 4 and all(p.grad is not None and p.grad.abs() > 0 for p in scales)


def _allowed(scheme: str, weight: torch.Tensor) -> None:
    """Assert that ``weight`` holds only what ``scheme`` deploys, filter by filter."""
    layer_values = torch.unique(weight)
    for row in weight.reshape(weight.shape[0], -1):
        values = torch.unique(row)
        if scheme == "binary":
            assert set(values.tolist()) <= {-1.0, 1.0}
        elif scheme in ("xnor", "bwn"):
            assert len(values) <= 2 and torch.allclose(values.abs(), row.abs().max().expand_as(values))
        elif scheme == "2bit":
            assert len(values) <= 4
            alpha = values.abs().min()
            assert set((values / alpha).round().tolist()) <= {-2.0, -1.0, 1.0, 2.0}
    if scheme in ("ternary", "ttq"):  # one set of three values for the whole layer
        assert len(layer_values) <= 3 and 0.0 in layer_values.tolist()
        if scheme == "ternary":
            nonzero = layer_values[layer_values != 0]
            assert torch.allclose(nonzero.abs(), nonzero.abs().max().expand_as(nonzero))


@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_quantized_weights_hold_at_most_the_schemes_values_per_filter(scheme):
    model = tiny_spec(scheme).build()
    weights = model.quantized_weights()
    assert weights and all(w.dim() == 4 for w in weights.values())
    for weight in weights.values():
        _allowed(scheme, weight)
    limit = {"binary": 2, "xnor": 2, "bwn": 2, "ternary": 3, "ttq": 3, "2bit": 4}[scheme]
    spread = max(len(torch.unique(row)) for w in weights.values() for row in w.reshape(w.shape[0], -1))
    assert spread == limit  # random filters use every value the scheme has


def test_keep_first_last_false_quantizes_the_first_layer_and_the_classifier_too():
    model = tiny_spec("2bit", keep_first_last=False).build()
    assert list(model.quantized_weights()) == ["features.0.conv", "features.1.conv", "features.2.conv", "fc"]
    _allowed("2bit", model.quantized_weights()["fc"])


# ------------------------------------------------------------------------------------------
# the estimators
# ------------------------------------------------------------------------------------------


def test_binary_activation_is_sign_forward_and_hard_tanh_gradient_backward():
    x = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.3, 1.0, 1.5], requires_grad=True)
    y = q.BinaryActivation.apply(x)
    assert y.tolist() == [-1, -1, -1, 1, 1, 1, 1]
    y.backward(torch.full_like(x, 3.0))
    assert x.grad.tolist() == [0, 3, 3, 3, 3, 3, 0]  # 1_{|x| <= 1}


def test_xnor_weight_gradient_is_the_papers_one_over_n_plus_alpha_ste():
    w = torch.tensor([[0.5, -1.5, 0.25, -0.75]], requires_grad=True)
    out = q.ScaledSign.apply(w)
    alpha = 0.75  # mean |W| of the filter
    assert out.tolist() == [[alpha, -alpha, alpha, -alpha]]
    g = torch.tensor([[1.0, 2.0, -1.0, 4.0]])
    out.backward(g)
    inside = torch.tensor([[1.0, 0.0, 1.0, 1.0]])  # |W| <= 1
    assert torch.allclose(w.grad, g * (1 / 4 + alpha * inside))


def test_twn_threshold_is_seven_tenths_of_the_mean_magnitude_and_alpha_the_mean_above_it():
    w = torch.tensor([1.0, -0.2, 0.6, -1.4, 0.05, 0.15])  # mean |W| = 0.5667, delta = 0.3967
    delta, alpha = q.twn_threshold_and_scale(w)
    assert math.isclose(float(delta), 0.7 * 3.4 / 6, rel_tol=1e-6)
    assert math.isclose(float(alpha), (1.0 + 0.6 + 1.4) / 3, rel_tol=1e-6)
    a = float(alpha)
    assert q.TernaryTWN.apply(w).tolist() == pytest.approx([a, 0, a, -a, 0, 0])


def test_ttq_scales_get_their_sets_mean_gradient_and_the_latent_weights_scaled_ones():
    w = torch.tensor([1.0, -2.0, 0.05, 0.5, -0.08], requires_grad=True)  # delta = 0.05 * 2 = 0.1
    wp = torch.tensor([0.7], requires_grad=True)
    wn = torch.tensor([1.3], requires_grad=True)
    out = q.TernaryTTQ.apply(w, wp, wn)
    assert out.tolist() == pytest.approx([0.7, -1.3, 0.0, 0.7, 0.0])
    g = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    out.backward(g)
    assert float(wp.grad) == pytest.approx((1.0 + 4.0) / 2)  # the mean over I_p (the paper sums: docstring)
    assert float(wn.grad) == pytest.approx(-2.0 / 1)  # the value is -W_n
    assert w.grad.tolist() == pytest.approx([0.7 * 1, 1.3 * 2, 3.0, 0.7 * 4, 5.0])


def test_two_bit_scale_is_a_least_squares_fixed_point():
    w = torch.randn(6, 3, 3, 3)
    codes, alpha = q.two_bit_codes_and_scale(w)
    assert set(codes.unique().tolist()) <= {-2.0, -1.0, 1.0, 2.0}

    def error(a):
        levels = 1.0 + (w.abs() > 1.5 * a).float()  # nearest of a, 2a
        return ((w - torch.sign(w) * levels * a) ** 2).sum(dim=(1, 2, 3))

    assert torch.all(error(alpha) <= error(alpha * 0.97) + 1e-6)
    assert torch.all(error(alpha) <= error(alpha * 1.03) + 1e-6)


def test_xnor_inputs_scale_with_their_magnitude_through_k():
    conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
    layer = BinaryInputs(conv, scaled=True)
    x = torch.randn(2, 3, 8, 8)
    # sign(s x) = sign(x) and K(s x) = s K(x): XNOR's output is linear in the input's scale
    assert torch.allclose(layer(2.5 * x), 2.5 * layer(x), atol=1e-5)
    plain = BinaryInputs(conv, scaled=False)
    assert torch.allclose(plain(2.5 * x), plain(x))  # BNN's binary input has no scale


def test_binary_activations_turn_relus_into_hard_tanh_and_leave_the_image_unbinarized():
    model = tiny_spec("binary", binary_activations=True).build()
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    assert sum(isinstance(m, nn.Hardtanh) for m in model.modules()) == 3
    wrapped = [name for name, m in model.named_modules() if isinstance(m, BinaryInputs)]
    assert wrapped == ["features.1.conv", "features.2.conv"]  # not the first conv: it reads the image


def test_clipping_keeps_binaryconnects_real_valued_weights_in_minus_one_one():
    model = tiny_spec("binary").build()
    with torch.no_grad():
        for layer in model.quantized_layers().values():
            layer.parametrizations.weight.original.mul_(50)

    class FakeTrainer:
        pass

    trainer = FakeTrainer()
    trainer.model = model
    ClipShadowWeights().on_step_end(trainer, 0, 0.0)
    for layer in model.quantized_layers().values():
        assert layer.parametrizations.weight.original.abs().max() <= 1.0


def test_quantizing_twice_or_an_unknown_scheme_is_a_config_error():
    model = tiny_spec("ttq").build()
    with pytest.raises(ConfigError, match="already quantized"):
        quantize_model(model, "bwn")
    with pytest.raises(ConfigError, match="unknown quantization scheme 'int4'"):
        tiny_spec("int4").build()
    with pytest.raises(ConfigError, match="goes with --scheme binary"):
        tiny_spec("ttq", binary_activations=True).build()


# ------------------------------------------------------------------------------------------
# the packed file
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits, count", [(1, 13), (2, 7), (2, 64)])
def test_codes_round_trip_through_their_bits(bits, count):
    codes = torch.randint(0, 2**bits, (count,)).numpy()
    packed = pack_codes(codes, bits)
    assert len(packed) == math.ceil(count * bits / 8)
    assert (unpack_codes(packed, count, bits) == codes).all()


@pytest.mark.parametrize("scheme, binary_activations", VARIANTS)
def test_the_packed_file_decodes_to_the_same_outputs(scheme, binary_activations, tmp_path):
    model = tiny_spec(scheme, binary_activations=binary_activations).build()
    model.train()
    model(images(8))  # batch-norm statistics that are not the initial ones
    model.eval()
    report = write_qpack(model, tmp_path / "weights.qpack")
    loaded = load_qpack(tmp_path / "weights.qpack")
    x = images(5)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
        assert torch.equal(deployed(model)(x), model(x))
    for name, weight in model.quantized_weights().items():
        assert torch.equal(loaded.quantized_weights()[name], weight)
    bits = SCHEMES[scheme][0].bits
    assert report.bits == bits and report.packed_bytes == (tmp_path / "weights.qpack").stat().st_size
    # each layer: its codes, bits a weight, and its codebook (per filter or per layer) in float32
    levels = {"binary": 2, "xnor": 2, "bwn": 2, "ternary": 3, "ttq": 3, "2bit": 4}[scheme]
    per_filter = scheme in ("xnor", "bwn", "2bit")
    expected = sum(math.ceil(w.numel() * bits / 8) + 4 * levels * (w.shape[0] if per_filter else 1)
                   for w in model.quantized_weights().values())  # fmt: skip
    assert report.quantized_packed_bytes == expected and report.ratio > 1


def test_a_truncated_or_damaged_packed_file_is_a_one_line_error(tmp_path):
    model = tiny_spec("2bit").build().eval()
    path = write_qpack(model, tmp_path / "weights.qpack").path
    data = path.read_bytes()
    cases = {"truncated.qpack": data[:-10], "header.qpack": data[:40], "flipped.qpack": data[:-3] + b"xyz",
             "other.qpack": b"PK\x03\x04" + data[4:]}  # fmt: skip
    messages = {"truncated.qpack": "truncated", "header.qpack": "truncated in its header",
                "flipped.qpack": "CRC-32", "other.qpack": "signature"}  # fmt: skip
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(QPackError, match=messages[name]) as info:
            read_qpack(tmp_path / name)
        assert "\n" not in str(info.value)
    with pytest.raises(Exception, match="already exists"):
        write_qpack(model, path)  # never overwritten


# ------------------------------------------------------------------------------------------
# the commands
# ------------------------------------------------------------------------------------------

TRAIN_FLAGS = ["--data", SYN, "--epochs", "1", "-b", "16", "--device", "cpu", "--no-progress", "--amp", "none",
               "--no-channels-last"]  # fmt: skip


def _cli(args, capsys):
    code = cli.main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _snapshot(folder):
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*"))
            if p.is_file()}  # fmt: skip


@pytest.fixture(scope="module")
def fp_run(tmp_path_factory):
    from cnnzoo.train.engine import fit

    out = tmp_path_factory.mktemp("quantize") / "fp"
    fit("cnn3", data=SYN, model_kwargs=dict(TINY), epochs=1, batch_size=16, lr=0.05, out=str(out), progress=False,
        verbose=False, amp="none", channels_last=False)  # fmt: skip
    return out


def test_quantize_command_end_to_end(fp_run, tmp_path, capsys):
    from cnnzoo.train.runs import load_run

    before = _snapshot(fp_run)
    out = tmp_path / "q"
    code, stdout, _ = _cli(["quantize", str(fp_run), "--scheme", "xnor", "--lr", "0.01", *TRAIN_FLAGS, "--out",
                            str(out)], capsys)  # fmt: skip
    assert code == 0
    assert "weights.qpack" in stdout and "smaller than the fp32 safetensors" in stdout and "test top-1" in stdout
    assert _snapshot(fp_run) == before  # the source run is only read
    record = json.loads((out / "run.json").read_text())
    assert record["kind"] == "quantize" and record["quantize"]["scheme"] == "xnor"
    assert record["quantize"]["source"] == str(fp_run)
    run = load_run(out, device="cpu")  # rebuilt from the spec, the checkpoint loaded strictly
    packed = load_qpack(out / "weights.qpack")
    x = images(3)
    with torch.no_grad():
        assert torch.equal(packed(x), run.model(x))
    for command in (["eval", str(out), "--device", "cpu"], ["summary", str(out)]):
        code, stdout, err = _cli(command, capsys)
        assert code == 0, err


def test_train_quantize_trains_a_quantized_net_from_scratch(tmp_path, capsys):
    from cnnzoo.train.runs import load_run

    out = tmp_path / "bnn"
    code, stdout, _ = _cli(["train", "cnn3", "-o", "widths=[8,8,8]", "--quantize", "binary", "--binary-activations",
                            *TRAIN_FLAGS, "--out", str(out)], capsys)  # fmt: skip
    assert code == 0 and "weights.qpack" in stdout
    run = load_run(out, device="cpu")
    assert run.model.quantization["binary_activations"] and run.meta["quantize"]["scheme"] == "binary"
    for weight in run.model.quantized_weights().values():
        _allowed("binary", weight)
    shadows = [layer.parametrizations.weight.original for layer in run.model.quantized_layers().values()]
    assert all(s.abs().max() <= 1 for s in shadows)  # clipped while it trained


@pytest.mark.parametrize(
    "args, expected",
    [
        (["quantize", "{fp}", "--scheme", "int4"], "unknown quantization scheme 'int4'"),
        (["quantize", "{fp}", "--scheme", "ttq", "--binary-activations"], "goes with --scheme binary"),
        (["quantize", "{q}", "--scheme", "bwn"], "this one is quantized"),
        (["prune", "{q}", "--ratio", "0.5"], "cnnzoo prune takes a full-precision run"),
        (["deep-compress", "{q}"], "cnnzoo deep-compress takes a full-precision run"),
        (["finetune", "--from", "{q}"], "cnnzoo finetune takes a full-precision run"),
        (["train", "cnn3", "--quantize", "ternery"], "unknown quantization scheme 'ternery'"),
        (["train", "cnn3", "--binary-activations"], "go with --quantize SCHEME"),
    ],
)
def test_bad_input_is_one_line_with_exit_code_2_and_writes_nothing(fp_run, tmp_path, capsys, args, expected):
    quantized = fp_run.parent / "already-quantized"
    if not quantized.exists():
        spec = ModelSpec("cnn3", dict(TINY), num_classes=4, in_chans=1)
        from cnnzoo.train.engine import fit

        fit(spec.then("quantize", scheme="ternary"), data=SYN, epochs=1, batch_size=16, out=str(quantized),
            progress=False, verbose=False, amp="none", channels_last=False)  # fmt: skip
    before = _snapshot(fp_run.parent)
    out = tmp_path / "never"
    argv = [a.format(fp=fp_run, q=quantized) for a in args] + [*TRAIN_FLAGS, "--out", str(out)]
    code, _, err = _cli(argv, capsys)
    assert code == 2
    assert expected in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists() and _snapshot(fp_run.parent) == before
