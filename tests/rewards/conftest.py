"""Shared pieces of the reward tests: a toy stochastic reward model with two frames of history."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from diffusion_reward.rewards.base import RewardModel, register_reward
from diffusion_reward.utils.device import torch_threads


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """These tests run tiny networks, where a second intra-op thread only adds synchronisation
    (and, on a busy two-core machine, long waits)."""
    with torch_threads(1):
        yield


@register_reward("test-toy-history2")
class ToyHistory2Reward(RewardModel):
    """A weighted mean brightness of the last three frames plus per-step seeded noise.

    It stands in for a sampling video model: history 2, a fixed image size, weights saved as a
    buffer, a config key, and randomness drawn from ``step_generator(step)``.
    """

    history = 2

    def __init__(self, noise: float = 0.1, image_size: int = 8, device: str | torch.device = "cpu"):
        super().__init__(device)
        self.noise = noise
        self.image_size = image_size
        self.weights = nn.Module()
        self.weights.register_buffer("w", torch.tensor([0.25, -0.5, 1.0]))

    def score_windows(self, windows: np.ndarray, steps: np.ndarray) -> np.ndarray:
        brightness = torch.from_numpy(windows.astype(np.float32) / 255.0).mean(dim=(2, 3, 4))  # (N, 3)
        clean = brightness @ self.weights.w
        noise = torch.stack([torch.randn((), generator=self.step_generator(int(s), "cpu")) for s in steps])
        return (clean + self.noise * noise).numpy().astype(np.float32)

    def config_dict(self) -> dict[str, Any]:
        return {"noise": self.noise, "image_size": self.image_size}

    @classmethod
    def from_config(cls, config: dict[str, Any], device: str | torch.device = "auto") -> "ToyHistory2Reward":
        return cls(device=device, **config)

    def torch_modules(self) -> dict[str, nn.Module]:
        return {"weights": self.weights}


@pytest.fixture
def toy_model() -> ToyHistory2Reward:
    return ToyHistory2Reward()


@pytest.fixture
def make_frames():
    """``make_frames(T, size, seed=0)``: random uint8 (T, size, size, 3) frames."""
    def make(t: int, size: int, seed: int = 0) -> np.ndarray:
        return np.random.default_rng(seed).integers(0, 256, (t, size, size, 3), dtype=np.uint8)
    return make
