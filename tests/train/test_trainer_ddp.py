"""The trainer under torchrun: two CPU processes (gloo) train identical weights."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
from trainer_toy import train_toy  # noqa: E402

HERE = Path(__file__).parent


def test_two_processes_train_identical_weights(tmp_path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           str(HERE / "trainer_toy.py"), "ddp", str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    for name in ("toy", "codec"):
        a = load_file(str(tmp_path / f"{name}-rank0.safetensors"))
        b = load_file(str(tmp_path / f"{name}-rank1.safetensors"))
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), f"{name}: {k} differs between the two processes"
    # one writer: rank 0 wrote the run directory, with its checkpoints
    assert (tmp_path / "codec" / "checkpoints" / "step-00000003" / "rng-rank1.safetensors").exists()

    # the global batch of 8 split over two processes trains the same model as one process with batch 8
    single = train_toy(tmp_path / "single", {"random": False}, ema_decay=0.0)
    ddp = load_file(str(tmp_path / "toy-rank0.safetensors"))
    for k, v in single.raw("model").state_dict().items():
        assert torch.allclose(v, ddp[k], atol=1e-5), k
