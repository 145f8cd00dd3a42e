"""Reward models: the ``RewardModel`` contract, the baselines, standardization, mixing, and environment wrappers.

    from diffusion_reward.rewards import load_reward_model
    model = load_reward_model("runs/reward")       # any kind saved with save_pretrained
    r = model.rewards(frames)                       # uint8 (T, H, W, 3) -> float32 (T,)

Kinds: ``rnd``, ``amp``, ``sparse``, ``motion`` here; ``diffusion`` and ``viper`` in their own
modules. Each module registers its class with :func:`register_reward` when imported;
:func:`load_reward_model` imports the module of the kind it meets.
"""

from __future__ import annotations

import importlib
from typing import Any

from diffusion_reward.rewards.base import (OnlineRewardModel, RewardModel, check_frames, known_kinds,
                                           load_reward_model, make_windows, register_reward, resize_frames,
                                           reward_class)
from diffusion_reward.rewards.combine import DEFAULT_ALPHA, RewardMix, combine_rewards, default_alpha
from diffusion_reward.rewards.standardize import RewardStats, standardize

_LAZY = {
    "RNDReward": "diffusion_reward.rewards.rnd",
    "RNDConfig": "diffusion_reward.rewards.rnd",
    "AMPReward": "diffusion_reward.rewards.amp",
    "AMPConfig": "diffusion_reward.rewards.amp",
    "SparseReward": "diffusion_reward.rewards.sparse",
    "MotionReward": "diffusion_reward.rewards.motion",
    "LearnedRewardWrapper": "diffusion_reward.rewards.gym_wrapper",
    "RenderFrameObservation": "diffusion_reward.rewards.gym_wrapper",
    "StepScorer": "diffusion_reward.rewards.step_scoring",
    "LearnedRewardVecWrapper": "diffusion_reward.rewards.sb3",  # needs the sb3 extra
}

__all__ = ["RewardModel", "OnlineRewardModel", "register_reward", "load_reward_model", "known_kinds",
           "reward_class", "check_frames", "resize_frames", "make_windows", "RewardStats", "standardize",
           "combine_rewards", "default_alpha", "DEFAULT_ALPHA", "RewardMix", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'diffusion_reward.rewards' has no attribute {name!r}")
