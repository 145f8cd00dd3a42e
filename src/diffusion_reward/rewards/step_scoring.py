"""Step rewards of environments that run side by side: one reward-model call per step for all of them.

:class:`StepScorer` is what the environment wrappers (:mod:`~diffusion_reward.rewards.gym_wrapper` for one
Gymnasium environment, :mod:`~diffusion_reward.rewards.sb3` for a Stable-Baselines3 ``VecEnv``) delegate
to. It keeps, per environment, the window of the last ``history + 1`` frames (at a reset, the reset
frame repeated) and the index of the latest frame in its episode; :meth:`StepScorer.step` appends each
environment's new frame and scores the ``N`` windows with one
:meth:`~diffusion_reward.rewards.base.RewardModel.rewards_windows` call. The rewards of an episode's steps
equal ``reward_model.rewards(frames, task=task)[1:]`` (frame 0 is the reset frame; no step earns it),
stochastic models included: each window draws its randomness from the generator of its own step index.

    scorer = StepScorer(reward_model, num_envs=8, task="reach-v3")
    scorer.reset(first_frames)                  # uint8 (8, H, W, 3): every episode starts
    rewards = scorer.step(frames)               # (8, H, W, 3) reached by this step -> float32 (8,)
    scorer.reset(new_first_frames, envs=[2])    # environment 2 started its next episode
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from diffusion_reward.errors import UserError
from diffusion_reward.rewards.base import RewardModel, check_frames


def channels_last(images: np.ndarray, image_size: int | None = None, what: str = "images") -> np.ndarray:
    """A batch of uint8 images, channel-last ``(N, H, W, 3)`` or channel-first ``(N, 3, H, W)`` (the
    project's pixel observations), as a channel-last view; when both layouts fit the shape, ``image_size``
    decides (as in :func:`~diffusion_reward.rewards.base.frames_to_model_input`)."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise UserError(f"{what}: expected uint8 images (N, H, W, 3) or (N, 3, H, W), got {images.dtype} "
                        f"{tuple(images.shape)}")
    first = images.shape[1] == 3 and (images.shape[-1] != 3
                                      or (image_size is not None and images.shape[2:] == (image_size, image_size)))
    if first:
        return images.transpose(0, 2, 3, 1)
    if images.shape[-1] != 3:
        raise UserError(f"{what}: expected 3 colour channels first or last, got shape {tuple(images.shape)}")
    return images


class StepScorer:
    """The reward of each step of ``num_envs`` episodes running side by side (see the module docstring).

    ``task``: the task whose expert statistics standardize the rewards, one for every environment or a
    list of one per environment (default: the statistics pooled over the model's tasks). ``resize``
    resizes frames of another size than the model's (otherwise an error); ``raw`` returns the model's
    own scale. ``where`` names the caller in error messages.
    """

    def __init__(self, reward_model: RewardModel, num_envs: int = 1, *,
                 task: str | Sequence[str | None] | None = None, resize: bool = False, raw: bool = False,
                 where: str = "StepScorer"):
        if num_envs < 1:
            raise UserError(f"{where}: num_envs must be >= 1, got {num_envs}")
        tasks = [task] * num_envs if task is None or isinstance(task, str) else list(task)
        if len(tasks) != num_envs:
            raise UserError(f"{where}: got {len(tasks)} tasks for {num_envs} environments")
        self.where = where
        self.reward_model = reward_model
        self.num_envs = num_envs
        self.tasks = tasks
        self.resize = resize
        self.raw = raw
        self.windows: np.ndarray | None = None  # (N, history + 1, H, W, 3), made at the first reset
        self.steps = np.full(num_envs, -1, dtype=np.int64)  # index of each window's newest frame; -1: not reset

    def _checked(self, frames: np.ndarray, count: int, what: str) -> np.ndarray:
        what = f"{self.where} {what}"
        frames = check_frames(frames, self.reward_model.image_size, self.resize, what=what)
        if len(frames) != count:
            raise UserError(f"{what}: expected {count} frames, got {len(frames)}")
        if self.windows is not None and frames.shape[1:] != self.windows.shape[2:]:
            raise UserError(f"{what}: expected frames of {self.windows.shape[2:]}, got {frames.shape[1:]}")
        return frames

    def reset(self, frames: np.ndarray, envs: Sequence[int] | np.ndarray | None = None) -> None:
        """Start new episodes in ``envs`` (indices; default: every environment) from their reset frames,
        uint8 ``(len(envs), H, W, 3)``."""
        index = np.arange(self.num_envs) if envs is None else np.asarray(envs, dtype=np.int64).reshape(-1)
        if index.size and (index.min() < 0 or index.max() >= self.num_envs):
            raise UserError(f"{self.where} reset: environment indices must be in [0, {self.num_envs}), got {index}")
        frames = self._checked(frames, len(index), "reset frames")
        if self.windows is None:
            self.windows = np.zeros((self.num_envs, self.reward_model.history + 1, *frames.shape[1:]), np.uint8)
        self.windows[index] = frames[:, None]
        self.steps[index] = 0

    def step(self, frames: np.ndarray) -> np.ndarray:
        """Append the frame each environment's step reached, uint8 ``(num_envs, H, W, 3)``, and return
        the steps' rewards, float32 ``(num_envs,)``: one model call for every environment."""
        if self.windows is None or (self.steps < 0).any():
            raise UserError(f"{self.where}: reset every environment before step()")
        frames = self._checked(frames, self.num_envs, "frames")
        self.windows[:, :-1] = self.windows[:, 1:].copy()
        self.windows[:, -1] = frames
        self.steps += 1
        return self.reward_model.rewards_windows(self.windows, self.steps, raw=self.raw, tasks=self.tasks)
