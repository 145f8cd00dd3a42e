"""The ``motion`` reward kind: how much the picture changed, a reference point for learned rewards.

Reward ``j`` is the mean absolute difference between frame ``j`` and frame ``j - 1``, over all
pixels and channels, in units of the full intensity range (``|a - b| / 255``, so in
``[0, 1]``). Frame 0 has no predecessor: by the contract's padding rule its window repeats frame
0, so its reward is 0. It needs no training and accepts frames of any size.

A learned reward that ranks episodes no better than this number has learned little beyond
"something moved"; the evaluation tables report it next to the learned rewards for that reason.
"""

from __future__ import annotations

import numpy as np

from diffusion_reward.rewards.base import RewardModel, register_reward


@register_reward("motion")
class MotionReward(RewardModel):
    """Mean absolute pixel change between consecutive frames (0 for frame 0)."""

    history = 1
    image_size = None

    def score_windows(self, windows: np.ndarray, steps: np.ndarray) -> np.ndarray:
        prev = windows[:, 0].astype(np.int16)
        cur = windows[:, 1].astype(np.int16)
        return (np.abs(cur - prev).mean(axis=(1, 2, 3)) / 255.0).astype(np.float32)
