"""The trainer's plug-in points: a loss, a callback, the progress bar off a terminal, divergence fields."""

from __future__ import annotations

import io

import pytest
import torch

from cnnzoo.train.callbacks import ProgressBar
from cnnzoo.train.engine import fit
from cnnzoo.train.trainer import Callback, CrossEntropy, TrainingDiverged

SYN = "synthetic:classes=3,channels=1,size=16,train=48,test=12"
QUICK = dict(batch_size=12, progress=False, verbose=False)


class Recorder(Callback):
    def __init__(self):
        self.events = []

    def on_fit_start(self, trainer):
        self.events.append("start")

    def on_epoch_start(self, trainer, epoch):
        self.events.append(f"epoch{epoch}")

    def on_step_end(self, trainer, batch, loss):
        self.events.append("step")

    def on_epoch_end(self, trainer, row):
        self.events.append(f"end{row['epoch']}")
        if row["epoch"] == 2:
            trainer.request_stop("enough")

    def on_fit_end(self, trainer, result):
        self.events.append(result.status)

    def teardown(self, trainer):
        self.events.append("teardown")


def test_a_callback_sees_every_event_and_can_stop_the_run(tmp_path):
    recorder = Recorder()
    result = fit("lenet5", data=SYN, epochs=4, out=str(tmp_path / "r"), callbacks=[recorder], **QUICK)
    steps = result.steps // 2
    assert recorder.events == ["start", "epoch0", *["step"] * steps, "end1", "epoch1", *["step"] * steps, "end2",
                               "stopped", "teardown"]  # fmt: skip
    assert result.status == "stopped" and result.epochs_done == 2
    # stopped resumably: --resume continues with epoch 3
    again = fit("lenet5", data=SYN, epochs=4, out=str(tmp_path / "r"), resume=True, **QUICK)
    assert again.status == "completed" and [r["epoch"] for r in again.history] == [1, 2, 3, 4]


def test_a_loss_plugs_in_and_sees_the_images(tmp_path):
    seen = []

    class ScaledLoss(CrossEntropy):
        def __call__(self, outputs, labels, images):
            seen.append(images.shape)
            loss, main = super().__call__(outputs, labels, images)
            return 0.0 * loss, main  # no gradient signal: the weights must not move (no weight decay)

    result = fit("lenet5", data=SYN, epochs=1, out=str(tmp_path / "r"), loss=ScaledLoss(), weight_decay=0.0,
                 momentum=0.0, **QUICK)  # fmt: skip
    assert len(seen) == result.steps and seen[0][1:] == (1, 32, 32)
    from cnnzoo.train.runs import load_run

    from cnnzoo.modelspec import ModelSpec

    trained = load_run(result.run_dir, device="cpu").model
    torch.manual_seed(0)  # fit seeds with the run's seed (0) before building: the same initial weights
    initial = ModelSpec("lenet5", num_classes=3, in_chans=1).build()
    for key, value in initial.state_dict().items():
        assert torch.equal(value, trained.state_dict()[key]), key


def test_no_progress_bar_off_a_terminal(tmp_path, capsys):
    fit("lenet5", data=SYN, epochs=2, out=str(tmp_path / "r"), batch_size=12, progress=True)
    captured = capsys.readouterr()
    assert "\r" not in captured.err and "\r" not in captured.out
    assert [line.split()[1] for line in captured.out.splitlines() if line.startswith("epoch ")] == ["1/2", "2/2"]


def test_the_progress_bar_draws_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    class FakeTrainer:
        is_main = True
        first_batch = 0
        train_loader = range(4)

        class config:
            epochs = 1

        class meter:
            loss, top1_acc = 1.0, 0.5

    stream = Terminal()
    bar = ProgressBar(stream)
    bar.on_epoch_start(FakeTrainer, 0)
    for batch in range(4):
        bar.on_step_end(FakeTrainer, batch, 1.0)
    bar.teardown(FakeTrainer)
    assert "\r" in stream.getvalue() and "epoch 1/1" in stream.getvalue()


class NaNAt(torch.nn.Module):
    def __init__(self, num_classes=3, in_chans=1):
        super().__init__()
        self.fc = torch.nn.Linear(in_chans * 16 * 16, num_classes)
        self.calls = 0

    def forward(self, x):
        self.calls += self.training
        out = self.fc(x.flatten(1))
        return out * float("nan") if self.calls == 6 else out


def test_training_diverged_carries_epoch_batch_step_and_loss(tmp_path):
    with pytest.raises(TrainingDiverged) as info:
        fit(NaNAt(), data=SYN, epochs=3, out=str(tmp_path / "r"), **QUICK)
    # 48 images less 10% validation = 43: four batches of 12 per epoch, the sixth step is epoch 2, batch 2
    exc = info.value
    assert (exc.epoch, exc.batch, exc.step) == (2, 2, 6)
    assert exc.loss != exc.loss  # NaN
    assert exc.exit_code == 3
