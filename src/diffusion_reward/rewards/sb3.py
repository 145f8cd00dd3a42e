"""A Stable-Baselines3 ``VecEnv`` wrapper that gives every environment's step a learned reward,
scoring the windows of all environments in one reward-model call per step.

:class:`LearnedRewardVecWrapper` is :class:`~diffusion_reward.rewards.gym_wrapper.LearnedRewardWrapper`
for ``N`` environments stepping together (``DummyVecEnv``, ``SubprocVecEnv``): per environment it keeps
the window of the last ``history + 1`` frames and the step index within the episode, and a
:class:`~diffusion_reward.rewards.step_scoring.StepScorer` scores the ``N`` windows at once. A window of
a batch costs a fraction of a window scored alone (``benchmarks/sb3_wrapper.py``). The rewards of each
episode's steps equal ``reward_model.rewards(frames, task=task)[1:]``, through SB3's automatic resets:
a finished episode's last frame comes from ``info["terminal_observation"]``, and the next episode's
window starts from its reset frame, repeated.

Frames come from image observations (``(N, H, W, 3)`` or ``(N, 3, H, W)`` uint8), from ``frame_key`` of
dict observations, or, with ``use_render=True``, from environments wrapped in
:class:`~diffusion_reward.rewards.gym_wrapper.RenderFrameObservation`: each observation then carries the
frame rendered at that step, and the agent gets the ``"observation"`` part alone (observation space,
observations and ``terminal_observation`` alike). So a policy can act on the simulator's state while the
reward reads frames. ``task`` is one task for every environment or a list of one per environment.
``info`` keeps ``env_reward`` and ``learned_reward`` and, with ``mix``, the weighted parts, as the
single-environment wrapper does.

    from stable_baselines3 import SAC
    from stable_baselines3.common.vec_env import DummyVecEnv
    from diffusion_reward import load_reward_model, make_env
    from diffusion_reward.rewards.gym_wrapper import RenderFrameObservation
    from diffusion_reward.rewards.sb3 import LearnedRewardVecWrapper

    reward = load_reward_model("pretrained/metaworld-small/reward-entropy")
    venv = DummyVecEnv([lambda: RenderFrameObservation(make_env("reach-v3", pixels=False))] * 8)
    venv = LearnedRewardVecWrapper(venv, reward, use_render=True, mix="diffusion", task="reach-v3")
    SAC("MlpPolicy", venv).learn(100_000)

Needs ``pip install "diffusion-reward[sb3]"``; nothing else in the package imports this module.
"""

from __future__ import annotations

from typing import Any, Sequence

import gymnasium as gym
import numpy as np

from diffusion_reward.errors import UserError
from diffusion_reward.rewards.base import RewardModel
from diffusion_reward.rewards.combine import RewardMix
from diffusion_reward.rewards.gym_wrapper import FRAME_KEY, OBSERVATION_KEY, check_image_space, record_rewards
from diffusion_reward.rewards.step_scoring import StepScorer, channels_last

try:
    from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
except ImportError as exc:  # an optional extra
    raise ImportError("diffusion_reward.rewards.sb3 needs Stable-Baselines3: pip install "
                      "'diffusion-reward[sb3]' (or 'stable-baselines3>=2.3')") from exc

WHERE = "LearnedRewardVecWrapper"


class LearnedRewardVecWrapper(VecEnvWrapper):
    """Give each environment's step the reward model's reward for the frame it reached (see the module
    docstring); one model call per step for all environments."""

    def __init__(self, venv: VecEnv, reward_model: RewardModel, frame_key: str | None = None,
                 use_render: bool = False, mix: RewardMix | str | None = None, resize: bool = False,
                 task: str | Sequence[str | None] | None = None):
        if use_render and frame_key is not None:
            raise UserError(f"{WHERE}: give frame_key or use_render, not both")
        space = venv.observation_space
        if use_render:
            if not (isinstance(space, gym.spaces.Dict) and set(space.spaces) == {OBSERVATION_KEY, FRAME_KEY}):
                raise UserError(f"{WHERE}: use_render needs every env wrapped in RenderFrameObservation "
                                f"(diffusion_reward.rewards.gym_wrapper), so that the rendered frames travel with "
                                f"the observations; got observation space {space}")
            frame_key = FRAME_KEY
        check_image_space(space, frame_key, WHERE)
        super().__init__(venv, observation_space=space[OBSERVATION_KEY] if use_render else None)
        self.reward_model = reward_model
        self.frame_key = frame_key
        self.use_render = use_render
        self.mix = RewardMix.for_method(mix) if isinstance(mix, str) else mix
        self.scorer = StepScorer(reward_model, venv.num_envs, task=task, resize=resize, where=WHERE)
        self._check_cameras()

    def _check_cameras(self) -> None:
        """The project's own environments say which camera they render from and which task they are."""
        if not self.venv.has_attr("camera"):
            return
        cameras = self.venv.get_attr("camera")
        specs = self.venv.get_attr("task_spec") if self.venv.has_attr("task_spec") else [None] * self.num_envs
        for task, spec, camera in zip(self.scorer.tasks, specs, cameras):
            self.reward_model.check_camera(task or getattr(spec, "name", None),
                                           camera if isinstance(camera, str) else None, where=WHERE)

    def _frames(self, obs: Any, batch: bool = True) -> np.ndarray:
        """Channel-last frames (N, H, W, 3) of a batch of observations (of one observation: (1, H, W, 3))."""
        images = np.asarray(obs[self.frame_key] if self.frame_key is not None else obs)
        return channels_last(images if batch else images[None], self.reward_model.image_size, f"{WHERE} observations")

    def _policy_obs(self, obs: Any) -> Any:
        return obs[OBSERVATION_KEY] if self.use_render else obs

    def reset(self) -> Any:
        obs = self.venv.reset()
        self.scorer.reset(self._frames(obs))
        return self._policy_obs(obs)

    def step_wait(self) -> tuple[Any, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        obs, env_rewards, dones, infos = self.venv.step_wait()
        frames = self._frames(obs)  # a finished episode's entry is already the next episode's reset frame
        ended = np.flatnonzero(dones)
        reached = frames.copy() if ended.size else frames
        for i in ended:
            terminal = infos[i].get("terminal_observation")
            if terminal is None:
                raise UserError(f"{WHERE}: environment {i} finished an episode but its info has no "
                                "'terminal_observation' (the VecEnv must reset automatically, as SB3's do)")
            reached[i] = self._frames(terminal, batch=False)[0]
            if self.use_render:
                infos[i]["terminal_observation"] = terminal[OBSERVATION_KEY]
        learned = self.scorer.step(reached)
        if ended.size:
            self.scorer.reset(frames[ended], envs=ended)
        rewards = np.array([record_rewards(info, learned[i], env_rewards[i], self.mix) for i, info in enumerate(infos)],
                           dtype=np.float32)
        return self._policy_obs(obs), rewards, dones, infos
