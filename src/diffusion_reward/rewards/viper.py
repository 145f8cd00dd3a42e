"""VIPER: the log-likelihood of the observed frame under an autoregressive VideoGPT.

Reward ``j`` is ``log p(frame j | frames j-k, ..., j-1)`` (nats per frame, summed over the
frame's codes with teacher forcing), standardized with the mean and std over the training
expert episodes. In the paper's comparison it is combined with an RND bonus (alpha 0.5) and
the sparse reward; that mixing lives in ``rewards/combine.py`` and the RL loop.
The score is deterministic: no sampling.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Iterable

import numpy as np
import torch

from diffusion_reward.config import option
from diffusion_reward.models.codec import VQGAN
from diffusion_reward.models.video.videogpt import VideoGPT
from diffusion_reward.rewards.base import register_reward
from diffusion_reward.rewards.video_based import VideoModelReward


@dataclasses.dataclass(frozen=True)
class ViperConfig:
    """How VIPER queries its VideoGPT."""

    bf16: bool | None = option(None, "bfloat16 autocast for the networks; default: on where bf16 beats float32 here")
    batch_size: int = option(64, "windows scored per network batch")


@register_reward("viper")
class ViperReward(VideoModelReward):
    """Codec + VideoGPT; reward = log-likelihood of the observed frame given the previous frames."""

    score = "observed"
    reward_config_class = ViperConfig
    video_class = VideoGPT

    def __init__(self, codec: VQGAN, video: VideoGPT, config: ViperConfig | None = None,
                 device: str | torch.device = "auto"):
        self.config = config or ViperConfig()
        super().__init__(codec, video, bf16=self.config.bf16, batch_size=self.config.batch_size, device=device)

    @torch.no_grad()
    def score_windows(self, windows: np.ndarray, steps: np.ndarray) -> np.ndarray:
        cond, target = self.window_tokens(windows)
        return self.video.log_likelihood(cond, target, amp=self.bf16).float().cpu().numpy()



def build_viper_reward(video_dir: str | os.PathLike, expert_episodes: Iterable[Any],
                       config: ViperConfig | None = None, codec_dir: str | os.PathLike | None = None,
                       device: str | torch.device = "auto",
                       progress: Callable[[int], None] | None = None) -> ViperReward:
    """Load a trained VideoGPT and its codec, and fit the reward statistics on expert episodes
    (per task and pooled; ``progress(n)`` after each batch of ``n`` scored frames)."""
    return ViperReward.from_video_model(video_dir, expert_episodes, config, codec_dir, device, progress=progress)
