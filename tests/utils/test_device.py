"""Choosing bf16 and OpenMP waiting from what this machine measures."""

from __future__ import annotations

import os

import torch

from diffusion_reward import cli
from diffusion_reward.train.trainer import TrainerConfig, resolve_precision
from diffusion_reward.utils import device
from diffusion_reward.utils.cpu_load import busy_cores


def test_bf16_auto_follows_the_measurement(monkeypatch) -> None:
    assert device.use_bf16(True, "cpu") is True and device.use_bf16(False, "cpu") is False
    assert isinstance(device.bf16_is_fast("cpu"), bool)
    monkeypatch.setattr(device, "bf16_is_fast", lambda kind="cpu": kind == "cpu")
    assert device.use_bf16(None, "cpu") is True
    monkeypatch.setattr(device, "bf16_is_fast", lambda kind="cpu": False)
    assert device.use_bf16(None, torch.device("cpu")) is False


def test_trainer_records_the_resolved_precision(monkeypatch) -> None:
    from diffusion_reward.train import trainer

    monkeypatch.setattr(trainer, "use_bf16", lambda setting, dev: True if setting is None else setting)
    assert resolve_precision(TrainerConfig(device="cpu")).bf16 is True
    assert resolve_precision(TrainerConfig(device="cpu", bf16=False)).bf16 is False


def test_openmp_waiting_sleeps_only_beside_busy_processes(monkeypatch) -> None:
    busy = busy_cores(0.05)  # measured from /proc/stat where there is one
    assert busy is None or 0.0 <= busy <= (os.cpu_count() or 1) + 1e-6
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.setattr(cli, "busy_cores", lambda: 0.1)
    assert cli.choose_openmp_waiting() is None and "OMP_WAIT_POLICY" not in os.environ
    monkeypatch.setattr(cli, "busy_cores", lambda: 1.6)
    note = cli.choose_openmp_waiting()
    assert note and "1.6" in note and os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # the user's choice is left alone
    assert cli.choose_openmp_waiting() is None and os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
