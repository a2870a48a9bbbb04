"""Knowledge distillation (issue 12, part 4; Hinton, Vinyals and Dean 2015).

The loss against a hand computation (the T^2 factor of Sec. 2, the alpha weighting, the
arithmetic mean of an ensemble's softened distributions), gradients reaching the student only,
teachers in eval mode and unchanged, a teacher's batch remade at its own input size and
normalisation, and the ``distill`` command end to end and with bad inputs.  Tiny nets on
synthetic data; the teachers are trained for a step or two (they only need to be runs).
"""

from __future__ import annotations

import hashlib
import json
import math

import pytest
import torch
from torch import nn

from cnnzoo.compress.distillation import DistillationLoss, InputFormat, Teacher
from cnnzoo.data.pipeline import resolve_augment
from cnnzoo.data.transform import BatchTransform
from cnnzoo.errors import ConfigError

#: 1-channel 28x28 images of 4 classes: a ResNet takes them at 28x28, LeNet-5 pads them to 32x32
SYNTH = "synthetic:classes=4,channels=1,size=28,train=48,test=16"
FAST = dict(epochs=1, batch_size=16, max_steps=1, progress=False, device="cpu", val_fraction=0.25)
NO_AUGMENT = resolve_augment(None, train=False)


class FixedLogits(nn.Module):
    """A teacher that answers every batch with the same logits (one row per image)."""

    def __init__(self, logits) -> None:
        super().__init__()
        self.register_buffer("logits", torch.tensor(logits, dtype=torch.float32))

    def forward(self, x):
        return self.logits[: x.shape[0]].clone()


class Probe(nn.Module):
    """A teacher that records the batch it was given and answers uniform logits."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.classes = classes
        self.seen: torch.Tensor | None = None

    def forward(self, x):
        self.seen = x.detach().clone()
        return torch.zeros(x.shape[0], self.classes)


def _softmax(row, T=1.0):
    exps = [math.exp(v / T) for v in row]
    total = sum(exps)
    return [e / total for e in exps]


# ------------------------------------------------------------------------------------------
# the loss
# ------------------------------------------------------------------------------------------

TEACHER_A = [[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]]
TEACHER_B = [[-0.5, 1.5, 0.0], [1.0, -2.0, 0.5]]
STUDENT = [[0.3, -0.2, 1.1], [2.0, 0.0, -1.0]]
LABELS = [0, 2]


def test_loss_is_the_hand_computation_of_hinton_sec_2():
    """alpha T^2 KL(mean_k softmax(v_k/T) || softmax(z/T)) + (1 - alpha) CE(z, y), averaged over the batch."""
    T, alpha = 4.0, 0.7
    loss = DistillationLoss([FixedLogits(TEACHER_A), FixedLogits(TEACHER_B)], temperature=T, alpha=alpha)
    value, main = loss(torch.tensor(STUDENT), torch.tensor(LABELS), torch.zeros(2, 1, 4, 4))

    soft = hard = 0.0
    for a, b, z, y in zip(TEACHER_A, TEACHER_B, STUDENT, LABELS):
        p = [(pa + pb) / 2 for pa, pb in zip(_softmax(a, T), _softmax(b, T))]  # the arithmetic mean at T
        q = _softmax(z, T)
        soft += T * T * sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
        hard += -math.log(_softmax(z)[y])
    expected = (alpha * soft + (1 - alpha) * hard) / len(LABELS)
    assert float(value) == pytest.approx(expected, rel=1e-5)
    assert torch.equal(main, torch.tensor(STUDENT))

    # a geometric mean of the teachers (or averaging their logits) gives other targets
    geometric = DistillationLoss([FixedLogits([[(x + y) / 2 for x, y in zip(ra, rb)] for ra, rb in
                                               zip(TEACHER_A, TEACHER_B)])], temperature=T, alpha=alpha)  # fmt: skip
    other, _ = geometric(torch.tensor(STUDENT), torch.tensor(LABELS), torch.zeros(2, 1, 4, 4))
    assert abs(float(other) - expected) > 1e-3


def test_soft_gradient_is_T_times_q_minus_p():
    """Sec. 2.1 eq. 2: d(soft CE)/dz = (q - p) / T; the T^2 factor makes it T (q - p), per image of the batch."""
    T = 3.0
    loss = DistillationLoss([FixedLogits(TEACHER_A)], temperature=T, alpha=1.0)
    z = torch.tensor(STUDENT, requires_grad=True)
    value, _ = loss(z, torch.tensor(LABELS), torch.zeros(2, 1, 4, 4))
    value.backward()
    p = torch.tensor([_softmax(row, T) for row in TEACHER_A])
    q = torch.tensor([_softmax(row, T) for row in STUDENT])
    torch.testing.assert_close(z.grad, T * (q - p) / len(LABELS), rtol=1e-5, atol=1e-6)


def test_alpha_weighs_the_two_terms_and_label_smoothing_shapes_the_hard_one():
    z, y, images = torch.tensor(STUDENT), torch.tensor(LABELS), torch.zeros(2, 1, 4, 4)
    teacher = [FixedLogits(TEACHER_A)]
    soft_only = float(DistillationLoss(teacher, 2.0, 1.0, label_smoothing=0.1)(z, y, images)[0])
    hard_only = float(DistillationLoss(teacher, 2.0, 0.0, label_smoothing=0.1)(z, y, images)[0])
    mixed = float(DistillationLoss(teacher, 2.0, 0.25, label_smoothing=0.1)(z, y, images)[0])
    assert mixed == pytest.approx(0.25 * soft_only + 0.75 * hard_only, rel=1e-6)
    assert hard_only == pytest.approx(float(nn.CrossEntropyLoss(label_smoothing=0.1)(z, y)), rel=1e-6)
    assert soft_only != pytest.approx(hard_only)


def test_auxiliary_heads_learn_from_the_labels_only():
    """A student in training mode returns (main, aux): the soft term reads main, aux gets aux_weight x CE."""
    z, aux, y = torch.tensor(STUDENT), torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.5, 2.0]]), torch.tensor(LABELS)
    loss = DistillationLoss([FixedLogits(TEACHER_A)], 4.0, 0.6, aux_weight=0.3)
    plain, _ = loss(z, y, torch.zeros(2, 1, 4, 4))
    with_aux, main = loss((z, aux), y, torch.zeros(2, 1, 4, 4))
    assert torch.equal(main, z)
    assert float(with_aux - plain) == pytest.approx(0.4 * 0.3 * float(nn.functional.cross_entropy(aux, y)), rel=1e-5)


@pytest.mark.parametrize("temperature, alpha, expected", [
    (0.0, 0.5, "--temperature must be a number > 0"), (-2.0, 0.5, "--temperature must be a number > 0"),
    (float("nan"), 0.5, "--temperature"), (4.0, 1.5, "--alpha must be in [0, 1]"), (4.0, -0.1, "--alpha"),
])  # fmt: skip
def test_bad_temperature_or_alpha_is_a_config_error(temperature, alpha, expected):
    with pytest.raises(ConfigError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        DistillationLoss([FixedLogits(TEACHER_A)], temperature, alpha)


def test_gradients_reach_only_the_student_and_teachers_stay_in_eval_mode_unchanged():
    from cnnzoo.registry import create_model

    teacher = create_model("resnet20", num_classes=4, in_chans=1)
    teacher.train()  # whoever hands it over: the loss puts it in eval mode (BN running statistics, no updates)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = create_model("lenet5", num_classes=4, in_chans=1)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
    loss = DistillationLoss([teacher], temperature=4.0, alpha=0.9)
    student_before = [p.detach().clone() for p in student.parameters()]
    for step in range(2):
        images, labels = torch.randn(8, 1, 32, 32), torch.randint(0, 4, (8,))
        student.train()
        if step == 1:
            teacher.train()  # switched back by mistake between steps: still used in eval mode
        value, _ = loss(student(images), labels, images)
        optimizer.zero_grad()
        value.backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
        assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
        optimizer.step()
        assert not teacher.training
    after = teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN running statistics included
    assert any(not torch.equal(a, b) for a, b in zip(student_before, student.parameters()))


# ------------------------------------------------------------------------------------------
# a teacher's own input size and normalisation
# ------------------------------------------------------------------------------------------


def _batch(raw, src, fmt: InputFormat):
    """What the data pipeline makes of the stored uint8 images ``raw`` for a net of format ``fmt``."""
    return BatchTransform(src, fmt.input_size, fmt.mean, fmt.std, NO_AUGMENT, in_chans=raw.shape[1])(raw)


def _smooth_images(n, size, channels=1):
    coarse = torch.rand(n, channels, 4, 4, generator=torch.Generator().manual_seed(1))
    return (nn.functional.interpolate(coarse, size=(size, size), mode="bilinear") * 255).round().to(torch.uint8)


@pytest.mark.parametrize("teacher_size", [(28, 28), (56, 56)])
def test_teacher_sees_its_own_size_and_normalisation_from_a_padded_batch(teacher_size):
    """LeNet-5's 32x32 input is the 28x28 image padded (LeCun et al. 1998, II.A): a teacher trained at
    28x28 gets the image back, one trained at 56x56 the image resized as its run did, each with its own mean/std."""
    raw = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    student = InputFormat((32, 32), (0.3,), (0.2,), (28, 28))
    teacher_fmt = InputFormat(teacher_size, (0.5,), (0.25,), (28, 28))
    probe = Probe()
    loss = DistillationLoss([Teacher(probe, teacher_fmt)], student_format=student)
    loss.soft_targets(_batch(raw, (28, 28), student))
    torch.testing.assert_close(probe.seen, _batch(raw, (28, 28), teacher_fmt), rtol=0, atol=1e-5)


def test_teacher_at_the_stored_size_gets_a_resized_batch_back():
    """16x16 images are resized (bilinear) into LeNet-5's 32x32; a 16x16 teacher gets them shrunk back."""
    raw = _smooth_images(4, 16)
    student = InputFormat((32, 32), (0.4,), (0.3,), (16, 16))
    teacher_fmt = InputFormat((16, 16), (0.5,), (0.25,), (16, 16))
    probe = Probe()
    DistillationLoss([Teacher(probe, teacher_fmt)], student_format=student).soft_targets(_batch(raw, (16, 16), student))
    expected = _batch(raw, (16, 16), teacher_fmt)
    assert probe.seen.shape == expected.shape
    assert (probe.seen - expected).abs().mean() < 2 / (255 * 0.25)  # within two grey levels on average


def test_a_teacher_of_the_same_format_gets_the_very_batch():
    fmt = InputFormat((32, 32), (0.4,), (0.3,), (28, 28))
    probe = Probe()
    images = torch.randn(2, 1, 32, 32)
    DistillationLoss([Teacher(probe, fmt)], student_format=fmt).soft_targets(images)
    assert torch.equal(probe.seen, images)


def test_channels_last_and_bf16_autocast_give_the_same_loss():
    from cnnzoo.registry import create_model

    teacher = create_model("resnet20", num_classes=4, in_chans=3)
    student_fmt = InputFormat((32, 32), (0.4, 0.5, 0.6), (0.3, 0.2, 0.25), (28, 28))
    teacher_fmt = InputFormat((28, 28), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), (28, 28))
    loss = DistillationLoss([Teacher(teacher, teacher_fmt)], student_format=student_fmt)
    images, labels, logits = torch.randn(4, 3, 32, 32), torch.randint(0, 4, (4,)), torch.randn(4, 4)
    plain = float(loss(logits, labels, images)[0])
    layout = images.contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = float(loss(logits, labels, layout)[0])
    assert math.isfinite(mixed) and mixed == pytest.approx(plain, rel=0.05)
    convs = [p for p in teacher.parameters() if p.dim() == 4]
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)  # it follows the student's layout


# ------------------------------------------------------------------------------------------
# the command line
# ------------------------------------------------------------------------------------------


def _cli(args, capsys):
    from cnnzoo.cli import main

    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _tree(folder):
    """Every file under ``folder`` with its content's hash (a changed, added or removed file shows)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    """A ResNet-56 at the stored 28x28 and a ResNet-20 trained at 56x56 (resized): two runs that can teach."""
    from cnnzoo.train import fit

    root = tmp_path_factory.mktemp("teachers")
    fit("resnet56", SYNTH, out=str(root / "resnet56"), verbose=False, **FAST)
    fit("resnet20", SYNTH, out=str(root / "resnet20"), input_size=[56, 56], verbose=False, **FAST)
    return root


@pytest.fixture(scope="module")
def distilled(teachers, tmp_path_factory):
    """``cnnzoo distill`` of both teachers into LeNet-5 (32x32, padded), the data defaulting to the teachers'."""
    from cnnzoo.cli import main

    out = tmp_path_factory.mktemp("student") / "lenet5"
    before = _tree(teachers)
    code = main(["distill", "--teacher", str(teachers / "resnet56"), "--teacher", str(teachers / "resnet20"),
                 "--student", "lenet5", "--temperature", "3", "--alpha", "0.8", "--epochs", "1", "-b", "16",
                 "--max-steps", "2", "--device", "cpu", "--no-progress", "--out", str(out)])  # fmt: skip
    return code, out, before


def test_cli_distills_an_ensemble_into_a_run_like_any_other(teachers, distilled, capsys):
    from cnnzoo.train.runs import load_run

    code, out, before = distilled
    assert code == 0
    record = json.loads((out / "run.json").read_text())
    assert record["kind"] == "distill" and record["model"] == "lenet5" and record["input_size"] == [32, 32]
    assert record["data"] == SYNTH  # the first teacher's data set
    assert record["distill"]["temperature"] == 3.0 and record["distill"]["alpha"] == 0.8
    assert [t["model"] for t in record["distill"]["teachers"]] == ["resnet56", "resnet20"]
    assert _tree(teachers) == before  # the teachers' runs are only read

    run = load_run(out, device="cpu")  # the student's own architecture, loaded strictly
    assert type(run.model).__name__ == "LeNet5" and not run.model.training
    results = json.loads((out / "results.json").read_text())
    code, stdout, _ = _cli(["eval", out, "--device", "cpu"], capsys)
    assert code == 0 and f"top-1 {100 * results['top1']:.2f}%" in stdout
    code, stdout, _ = _cli(["summary", out], capsys)
    assert code == 0 and "1x32x32" in stdout.replace(" ", "")


def test_cli_says_which_teacher_gets_its_batches_remade(teachers, tmp_path, capsys):
    code, stdout, _ = _cli(["distill", "--teacher", teachers / "resnet20", "--student", "resnet20",
                            "--data", SYNTH, "--epochs", "1", "-b", "16", "--max-steps", "1", "--device", "cpu",
                            "--val-fraction", "0.25", "--no-progress", "--out", tmp_path / "s"], capsys)  # fmt: skip
    assert code == 0
    # the same training split as the teacher's, so the same mean and std: only the size differs
    assert "its batches are remade at 56x56 (the student's: 28x28)\n" in stdout


def _bad_dirs(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine\n")
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "run.json").write_text(json.dumps({"kind": "experiment:lesion", "format": "cnnzoo-run-1"}))


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--temperature", "0"], "--temperature must be a number > 0, got 0.0"),
        (["--temperature", "-1"], "--temperature must be a number > 0"),
        (["--alpha", "1.5"], "--alpha must be in [0, 1]"),
        (["--alpha", "-0.5"], "--alpha must be in [0, 1]"),
        (["--teacher", "{tmp}/missing"], "missing is not a directory"),
        (["--teacher", "{tmp}/notes"], "notes is not a cnnzoo run directory (no run.json)"),
        (["--teacher", "{tmp}/exp"], "holds a run of kind experiment:lesion without a trained model"),
        (["--data", "synthetic:classes=3,channels=1,size=28,train=48,test=16"], "has 3 classes (class_0, class_1, "),
        (["--data", "synthetic:classes=4,channels=3,size=28,train=48,test=16"], "takes 1-channel images"),
        (["--student", "lenet"], "unknown model 'lenet'"),
    ],
)
def test_cli_bad_inputs_are_one_line_exit_2_and_change_nothing(teachers, tmp_path, monkeypatch, capsys, args,
                                                               expected):  # fmt: skip
    monkeypatch.chdir(tmp_path)  # a default run directory would land here
    _bad_dirs(tmp_path)
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    base = ["distill", "--teacher", teachers / "resnet56", "--student", "lenet5", "--epochs", "1",
            "--max-steps", "1", "-b", "16", "--device", "cpu", "--no-progress", "--out", tmp_path / "out"]  # fmt: skip
    if "--teacher" in args:  # this teacher instead of the good one
        base = [a for i, a in enumerate(base) if a != "--teacher" and base[i - 1] != "--teacher"]
    if "--student" in args:
        base = [a for i, a in enumerate(base) if a != "--student" and base[i - 1] != "--student"]
    mine, theirs = _tree(tmp_path), _tree(teachers)
    code, _, err = _cli([*base, *args], capsys)
    assert code == 2
    assert expected in err and "Traceback" not in err and err.count("\n") == 1
    assert _tree(tmp_path) == mine and _tree(teachers) == theirs and not (tmp_path / "runs").exists()


def test_cli_classes_error_names_both_sides(teachers, tmp_path, capsys):
    code, _, err = _cli(["distill", "--teacher", teachers / "resnet56", "--student", "lenet5", "--device", "cpu",
                         "--data", "synthetic:classes=3,channels=1,size=28,train=48,test=16",
                         "--out", tmp_path / "out"], capsys)  # fmt: skip
    assert code == 2
    assert f"--teacher {teachers / 'resnet56'} was trained on {SYNTH}'s 4 classes" in err
    assert "but synthetic:classes=3" in err


def test_cli_resume_refuses_other_distillation_settings(teachers, distilled, capsys):
    code, out, _ = distilled
    assert code == 0
    before = _tree(out)
    code, _, err = _cli(["distill", "--teacher", teachers / "resnet56", "--teacher", teachers / "resnet20",
                         "--student", "lenet5", "--temperature", "5", "--alpha", "0.8", "--device", "cpu",
                         "--no-progress", "--out", out, "--resume"], capsys)  # fmt: skip
    assert code == 2 and err.count("\n") == 1
    assert "made with other settings: temperature (3.0 -> 5.0)" in err
    assert _tree(out) == before


def test_resume_continues_on_the_data_the_run_started_with(teachers, tmp_path):
    """``--resume`` without ``--limit-train`` again: the run keeps its 16 training images (1 step an epoch)."""
    from cnnzoo.compress.distillation import distill

    out = tmp_path / "student"
    common = dict(epochs=2, batch_size=16, device="cpu", progress=False, val_fraction=0.25, verbose=False)
    first = distill([teachers / "resnet20"], "lenet5", limit_train=16, stop_after_epochs=1, out=str(out), **common)
    assert first.status == "stopped" and first.steps == 1
    resumed = distill([teachers / "resnet20"], "lenet5", resume=True, out=str(out), **common)
    assert resumed.status == "completed" and resumed.steps == 2 and resumed.epochs_done == 2
    assert json.loads((out / "run.json").read_text())["kind"] == "distill"
