"""The default job end to end: LeNet-5 on Fashion-MNIST files in the official idx format."""

import csv

import safetensors.torch
import torch

from cnnzoo.cli import main
from test_data import make_idx_set


def test_two_epochs_of_lenet5_on_a_fashion_mnist_subset(tmp_path, capsys):
    """Issue 6's acceptance: metrics.csv, safetensors weights and PNG plots from a 2-epoch run."""
    make_idx_set(tmp_path / "fashion-mnist", n_train=200, n_test=50)
    out = tmp_path / "run"
    code = main(["train", "lenet5", "--data", "fashion-mnist", "--data-dir", str(tmp_path / "fashion-mnist"),
                 "-c", "fast", "--epochs", "2", "--batch-size", "32", "--out", str(out), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "test top-1" in printed and str(out) in printed
    with open(out / "metrics.csv", newline="") as handle:
        assert [row["epoch"] for row in csv.DictReader(handle)] == ["1", "2"]
    weights = safetensors.torch.load_file(str(out / "last.safetensors"))
    assert weights["features.0.weight"].shape == (6, 1, 5, 5)  # LeNet-5 C1 on one gray channel
    assert torch.load(out / "last.state.pt", weights_only=True)["epoch"] == 2
    for plot in ("curves.png", "confusion.png"):
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
