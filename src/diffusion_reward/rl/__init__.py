"""Reinforcement learning: the DrQ-v2 agent and its n-step episode replay buffer."""

from diffusion_reward.rl.drqv2 import PRESETS, DrQV2Agent, DrQV2Config, random_shift
from diffusion_reward.rl.replay import ReplayBuffer

__all__ = ["PRESETS", "DrQV2Agent", "DrQV2Config", "ReplayBuffer", "random_shift"]
