"""DDP through `torchrun --nproc-per-node 2` (gloo, CPU) equals one process with the same
global batch: BatchNorm frozen, training noise and windows seeded per sample.

Tolerance: parameters agree to 1e-5 absolute (measured: ~1e-7; only the order of the gradient
all-reduce sum differs from the single-process batch sum).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _train_helpers import breast_config, model_state, write_config

from mammocli.synthetic.datasets import write_breast_dataset

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 8 exams -> 6 train, 2 val: global batch 4 -> steps of 4, 2 samples.
    return write_breast_dataset(tmp_path_factory.mktemp("ddp"), 8, shape=(120, 90), seed=11,
                                contrast=0.5, radius_fraction=0.12)


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_COLOR": "1"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_torchrun_two_processes_match_one(tmp_path: Path, manifest: Path) -> None:
    common = {"epochs": 1, "model": {"freeze_bn": True}, "optimizer": {"lr": 1e-3}}
    ddp_cfg = write_config(tmp_path / "ddp.yaml",
                           breast_config(manifest, tmp_path / "ddp", batch_size=2, **common))
    one_cfg = write_config(tmp_path / "one.yaml",
                           breast_config(manifest, tmp_path / "one", batch_size=4, **common))
    ddp = _run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                "--standalone", "-m", "mammocli", "train", "--config", str(ddp_cfg),
                "--quiet"], tmp_path)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one = _run([sys.executable, "-m", "mammocli", "train", "--config", str(one_cfg), "--quiet"],
               tmp_path)
    assert one.returncode == 0, one.stderr[-3000:]

    a = model_state(tmp_path / "ddp" / "last.pt")
    b = model_state(tmp_path / "one" / "last.pt")
    diff = max(float((a[k].double() - b[k].double()).abs().max()) for k in a)
    print(f"max parameter difference DDP(2x2) vs 1x4: {diff:.3g}")
    assert diff <= TOLERANCE
    # Frozen BatchNorm: the running statistics keep their initial values (random init).
    assert all(torch.all(a[k] == 0) for k in a if k.endswith("running_mean"))
    assert all(torch.all(a[k] == 1) for k in a if k.endswith("running_var"))
