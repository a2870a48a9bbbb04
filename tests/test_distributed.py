"""Data-parallel training with torchrun: 2 CPU processes (gloo) match 1 process with the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import safetensors.torch
import torch
from torch import nn

from cnnzoo.errors import ConfigError
from cnnzoo.train import distributed
from cnnzoo.train.engine import fit

SYN = "synthetic:classes=4,channels=1,size=32,train=64,test=16"
# with augmentation on: the pipeline gives each sample's crop/flip by its position in the epoch,
# so the two ranks' shards together are exactly the single process's batch
COMMON = ["--data", SYN, "--batch-size", "16", "--epochs", "2", "--max-steps", "5", "--deterministic",
          "--set", "crop_padding=2", "--set", "flip=true", "--lr", "0.05", "--amp", "none"]  # fmt: skip


def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path):
    """In fp32 (``--amp none``): bf16's rounding would differ between one summed and two averaged gradients."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                            "MASTER_PORT")}  # fmt: skip
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "cnnzoo",
         "train", "lenet5", *COMMON, "--out", str(tmp_path / "two"), "--no-progress"],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "on 2 processes (gloo)" in proc.stdout
    assert proc.stdout.count("run directory:") == 2  # rank 0 alone prints (start and end)
    single = fit("lenet5", data=SYN, batch_size=16, epochs=2, max_steps=5, deterministic=True, crop_padding=2,
                 flip=True, lr=0.05, amp="none", out=str(tmp_path / "one"), progress=False,
                 verbose=False)  # fmt: skip
    assert single.steps == 5
    two_state = torch.load(tmp_path / "two" / "last.state.pt", weights_only=True)
    assert two_state["step"] == 5 and two_state["epoch"] == 2
    one = safetensors.torch.load_file(str(tmp_path / "one" / "last.safetensors"))
    two = safetensors.torch.load_file(str(tmp_path / "two" / "last.safetensors"))
    assert one.keys() == two.keys()
    for key in one:
        torch.testing.assert_close(two[key], one[key], atol=1e-5, rtol=1e-4, msg=key)
    # training changed the weights (the comparison is not between two untouched models)
    fresh = __import__("cnnzoo").create_model("lenet5", num_classes=4, in_chans=1)
    assert not torch.allclose(fresh.state_dict()["features.0.weight"], one["features.0.weight"])


def test_single_process_needs_no_process_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    info = distributed.setup("cpu")
    assert not info.enabled and info.is_main and info.world_size == 1
    model = nn.Linear(2, 2)
    assert distributed.wrap_model(model, info, torch.device("cpu"), sync_bn=False) is model
    assert distributed.any_flag(info, True, torch.device("cpu")) is True


def test_sync_bn_on_cpu_is_a_clear_error():
    info = distributed.DistInfo(rank=0, local_rank=0, world_size=2, backend="gloo")
    with pytest.raises(ConfigError, match="sync-bn needs CUDA"):
        distributed.wrap_model(nn.BatchNorm2d(3), info, torch.device("cpu"), sync_bn=True)


def test_bad_world_size_is_a_one_line_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ConfigError, match="WORLD_SIZE"):
        distributed.setup("cpu")
