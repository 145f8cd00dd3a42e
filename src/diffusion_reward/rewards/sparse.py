"""The ``sparse`` reward kind: the environment's own success signal, and nothing learned.

Success cannot be read off video frames, so :class:`SparseReward` returns **zeros** for every
frame; the success reward itself comes from the environment (``info["success"]`` summed over
action repeats, stored as ``rewards`` in the episode files) and the RL loop adds it as the
``r_sparse`` term of :func:`~diffusion_reward.rewards.combine.combine_rewards`. The kind exists
so that ``--reward sparse`` goes through the same code as every other reward (load, score, mix,
log); it is the "raw sparse reward" baseline of the paper, not a model of success.
"""

from __future__ import annotations

import numpy as np

from diffusion_reward.rewards.base import RewardModel, register_reward


@register_reward("sparse")
class SparseReward(RewardModel):
    """Zero learned reward: the total reward is the environment's sparse reward alone."""

    history = 0
    image_size = None

    def score_windows(self, windows: np.ndarray, steps: np.ndarray) -> np.ndarray:
        return np.zeros(len(windows), dtype=np.float32)
