"""A Gymnasium wrapper that replaces (or supplements) an environment's reward with a learned one.

:class:`LearnedRewardWrapper` works with any environment that shows pixels: an observation
that is a uint8 image (``(H, W, 3)`` or channel-first ``(3, H, W)``), an image under a key of a
dict observation (``frame_key``), or the output of ``env.render()`` (``use_render=True``, for
environments created with ``render_mode="rgb_array"``). Observations pass through unchanged.

It keeps the last ``history + 1`` frames (at reset, the reset frame repeated) and gives step
``t`` the reward of frame ``t`` through a
:class:`~diffusion_reward.rewards.step_scoring.StepScorer` of one environment, the same code path
that :meth:`~diffusion_reward.rewards.base.RewardModel.rewards` runs over a whole episode: the
rewards of an episode's steps equal ``reward_model.rewards(frames, task=task)[1:]`` (frame 0 is
the reset frame; no step earns it). ``task`` names the task whose expert statistics standardize
the reward (default: the statistics pooled over the reward model's tasks). Stochastic models
seed each step's randomness by its index, so the equality holds for them too.

The step's ``info`` keeps the environment's reward in ``info["env_reward"]`` and the learned one
in ``info["learned_reward"]``. The returned reward is the learned reward alone, or with ``mix``
(a :class:`~diffusion_reward.rewards.combine.RewardMix`, or a method name such as
``"diffusion"`` for its default) ``learned_weight * learned + env_weight * env_reward``, the
weighted parts then also in ``info`` (``reward/model``, ``reward/sparse``, ``reward/total``).

Online models (RND, AMP) are only *scored* here; nothing trains them inside the wrapper. A
video-model reward scored step by step costs one model call per step, and a call of one window
costs several times what a window costs in a batch (``benchmarks/sb3_wrapper.py``): with several
environments, :class:`~diffusion_reward.rewards.sb3.LearnedRewardVecWrapper` scores the windows of
all of them in one call per step. :class:`RenderFrameObservation` carries rendered frames along a
state observation for it.

Using it with Stable-Baselines3 (``pip install "diffusion-reward[sb3]"``)::

    import gymnasium as gym
    from stable_baselines3 import SAC
    from diffusion_reward import load_reward_model
    from diffusion_reward.rewards.gym_wrapper import LearnedRewardWrapper

    reward_model = load_reward_model("runs/reward-diffusion", device="auto")
    env = gym.make("Pendulum-v1", render_mode="rgb_array")
    env = LearnedRewardWrapper(env, reward_model, use_render=True, resize=True, mix="diffusion")
    agent = SAC("MlpPolicy", env, verbose=1)
    agent.learn(total_timesteps=10_000)
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from diffusion_reward.errors import UserError
from diffusion_reward.rewards.base import RewardModel
from diffusion_reward.rewards.combine import RewardMix
from diffusion_reward.rewards.step_scoring import StepScorer, channels_last

#: The keys of :class:`RenderFrameObservation`'s observations.
OBSERVATION_KEY, FRAME_KEY = "observation", "frame"


class LearnedRewardWrapper(gym.Wrapper):
    """Give each step the reward model's reward for the frame it reached (see the module docstring)."""

    def __init__(self, env: gym.Env, reward_model: RewardModel, frame_key: str | None = None,
                 use_render: bool = False, mix: RewardMix | str | None = None, resize: bool = False,
                 task: str | None = None):
        super().__init__(env)
        if use_render and frame_key is not None:
            raise UserError("LearnedRewardWrapper: give frame_key or use_render, not both")
        if use_render and getattr(env, "render_mode", None) != "rgb_array":
            raise UserError(f"LearnedRewardWrapper: use_render needs an env made with render_mode='rgb_array', "
                            f"got render_mode={getattr(env, 'render_mode', None)!r}")
        self.reward_model = reward_model
        self.frame_key = frame_key
        self.use_render = use_render
        self.task = task
        self.mix = RewardMix.for_method(mix) if isinstance(mix, str) else mix
        self._scorer = StepScorer(reward_model, 1, task=task, resize=resize, where="LearnedRewardWrapper")
        self._started = False
        if not use_render:
            check_image_space(env.observation_space, frame_key, "LearnedRewardWrapper")
        # the project's own environments say which camera they render from
        inner = env.unwrapped
        spec = getattr(inner, "task_spec", None)
        camera = getattr(inner, "camera", None)
        reward_model.check_camera(task or getattr(spec, "name", None), camera if isinstance(camera, str) else None,
                                  where="LearnedRewardWrapper")

    def _frame(self, obs: Any) -> np.ndarray:
        if self.use_render:
            image = self.env.render()
        elif self.frame_key is not None:
            image = obs[self.frame_key]
        else:
            image = obs
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3:
            raise UserError(f"LearnedRewardWrapper: expected a uint8 image (H, W, 3) or (3, H, W), "
                            f"got {image.dtype} {image.shape}")
        return channels_last(image[None], self.reward_model.image_size, "LearnedRewardWrapper")

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._scorer.reset(self._frame(obs))
        self._started = True
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        if not self._started:
            raise UserError("LearnedRewardWrapper: call reset() before step()")
        obs, env_reward, terminated, truncated, info = self.env.step(action)
        info = dict(info)
        total = record_rewards(info, float(self._scorer.step(self._frame(obs))[0]), env_reward, self.mix)
        return obs, total, terminated, truncated, info


class RenderFrameObservation(gym.ObservationWrapper):
    """Observations ``{"observation": the env's own observation, "frame": env.render()}``: the frame each
    reset and step reached travels with the observation, through a vectorized env's automatic resets
    (SB3 keeps a finished episode's last observation in ``info["terminal_observation"]``) and worker
    processes. :class:`~diffusion_reward.rewards.sb3.LearnedRewardVecWrapper` (``use_render=True``)
    scores the frames and hands the agent the ``"observation"`` part alone.

    The env must render ``rgb_array`` frames; ``frame_shape`` (H, W, 3) defaults to the shape of one
    frame rendered now.
    """

    def __init__(self, env: gym.Env, frame_shape: tuple[int, int, int] | None = None):
        super().__init__(env)
        if getattr(env, "render_mode", None) != "rgb_array":
            raise UserError(f"RenderFrameObservation: needs an env made with render_mode='rgb_array', "
                            f"got render_mode={getattr(env, 'render_mode', None)!r}")
        if isinstance(env.observation_space, gym.spaces.Dict):
            raise UserError("RenderFrameObservation: the env's observations are already a dict; add the rendered "
                            "frame under a key of it and pass frame_key= to the reward wrapper instead")
        shape = tuple(frame_shape) if frame_shape is not None else np.asarray(env.render()).shape
        if len(shape) != 3 or shape[-1] != 3:
            raise UserError(f"RenderFrameObservation: expected rendered frames (H, W, 3), got shape {shape}")
        self.observation_space = gym.spaces.Dict({
            OBSERVATION_KEY: env.observation_space,
            FRAME_KEY: gym.spaces.Box(0, 255, shape, np.uint8)})

    def observation(self, observation: Any) -> dict[str, Any]:
        return {OBSERVATION_KEY: observation, FRAME_KEY: np.asarray(self.env.render(), dtype=np.uint8)}


def record_rewards(info: dict[str, Any], learned: float, env_reward: SupportsFloat, mix: RewardMix | None) -> float:
    """Keep the environment's and the learned reward of a step in its ``info`` (``env_reward``,
    ``learned_reward``, and ``mix``'s weighted parts) and return the step's reward: the learned one,
    or ``mix``'s total."""
    info["env_reward"] = float(env_reward)
    info["learned_reward"] = float(learned)
    if mix is None:
        return float(learned)
    parts = mix(learned, env_reward)
    info.update(parts)
    return float(parts["reward/total"])


def check_image_space(space: gym.Space, frame_key: str | None, who: str) -> None:
    """Raise :class:`UserError` unless observations of ``space`` hold a uint8 image, (H, W, 3) or
    (3, H, W), themselves or under ``frame_key`` of a dict."""
    if isinstance(space, gym.spaces.Dict):
        if frame_key is None or frame_key not in space.spaces:
            raise UserError(f"{who}: dict observations need frame_key, one of {sorted(space.spaces)}; "
                            f"got {frame_key!r}")
        space = space.spaces[frame_key]
    elif frame_key is not None:
        raise UserError(f"{who}: frame_key={frame_key!r} given but observations are not a dict "
                        f"({type(space).__name__})")
    shape = getattr(space, "shape", None)
    if (not isinstance(space, gym.spaces.Box) or space.dtype != np.uint8 or shape is None
            or len(shape) != 3 or 3 not in (shape[0], shape[-1])):
        raise UserError(f"{who}: expected uint8 image observations (H, W, 3) or (3, H, W), got {space}; "
                        "pass frame_key= for a dict or use_render=True")
