"""diffusion-reward: dense RL rewards learned from expert videos with a conditional video diffusion model.

The public API is imported lazily so that ``import diffusion_reward`` stays fast and does not
pull in MuJoCo or PyTorch until they are needed.
"""

from __future__ import annotations

import importlib
from typing import Any

from diffusion_reward.version import __version__

_LAZY = {
    "make_env": "diffusion_reward.envs",
    "load_dataset": "diffusion_reward.data.episodes",
    "Episode": "diffusion_reward.data.episodes",
    "EpisodeDataset": "diffusion_reward.data.episodes",
    "load_reward_model": "diffusion_reward.rewards",
    "RewardModel": "diffusion_reward.rewards.base",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'diffusion_reward' has no attribute {name!r}")
