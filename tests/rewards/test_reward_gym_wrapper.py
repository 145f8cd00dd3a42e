"""The Gymnasium wrapper: step rewards equal whole-episode rewards, env reward kept, env checker passes."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from diffusion_reward.errors import UserError
from diffusion_reward.rewards.combine import RewardMix
from diffusion_reward.rewards.gym_wrapper import LearnedRewardWrapper
from diffusion_reward.rewards.motion import MotionReward
from diffusion_reward.rewards.sparse import SparseReward


class MovingSquareEnv(gym.Env):
    """A square on a black 8x8 image, moved by the sign of a 2-d action; reward 1 in a corner. Its shade
    says where it is, so that rewards of the frames' brightness (the toy model's) differ between positions."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, layout: str = "hwc", render_mode: str | None = None, max_steps: int = 12):
        self.layout, self.render_mode, self.max_steps = layout, render_mode, max_steps
        image = gym.spaces.Box(0, 255, (3, 8, 8) if layout == "chw" else (8, 8, 3), np.uint8)
        if layout == "dict":
            self.observation_space = gym.spaces.Dict({"pixels": image, "position": gym.spaces.Box(0, 6, (2,), np.int64)})
        elif layout == "state":
            self.observation_space = gym.spaces.Box(0, 6, (2,), np.int64)
        else:
            self.observation_space = image
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.pos = np.zeros(2, np.int64)
        self.t = 0

    def _image(self) -> np.ndarray:
        img = np.zeros((8, 8, 3), np.uint8)
        img[self.pos[0]:self.pos[0] + 2, self.pos[1]:self.pos[1] + 2] = 60 + 25 * self.pos[0] + 5 * self.pos[1]
        return img

    def _obs(self):
        img = self._image()
        if self.layout == "chw":
            return img.transpose(2, 0, 1).copy()
        if self.layout == "dict":
            return {"pixels": img, "position": self.pos.copy()}
        if self.layout == "state":
            return self.pos.copy()
        return img

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = self.np_random.integers(0, 7, 2)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.pos = np.clip(self.pos + np.sign(np.asarray(action)).astype(np.int64), 0, 6)
        self.t += 1
        reward = float(np.all(self.pos == 6))
        return self._obs(), reward, bool(reward), self.t >= self.max_steps, {"success": bool(reward)}

    def render(self):
        return self._image()


def _run_episode(env: gym.Env, seed: int, frame_of=None):
    """Roll out fixed pseudo-random actions; returns frames (reset included), step rewards, infos."""
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    frames, rewards, infos = [frame_of(obs)], [], []
    done = False
    while not done:
        obs, reward, terminated, truncated, info = env.step(rng.uniform(-1, 1, 2).astype(np.float32))
        frames.append(frame_of(obs))
        rewards.append(reward)
        infos.append(info)
        done = terminated or truncated
    return np.stack(frames), np.array(rewards, np.float32), infos


def _hwc(obs):
    return obs


@pytest.mark.parametrize("which", ["motion", "toy"])
def test_step_rewards_equal_whole_episode_rewards(toy_model, which):
    model = MotionReward(device="cpu") if which == "motion" else toy_model
    env = LearnedRewardWrapper(MovingSquareEnv(), model)
    frames, step_rewards, infos = _run_episode(env, seed=3, frame_of=_hwc)
    assert len(frames) == 13
    whole = model.rewards(frames)
    np.testing.assert_allclose(step_rewards, whole[1:], atol=1e-6)
    assert [i["learned_reward"] for i in infos] == pytest.approx(list(step_rewards), abs=1e-6)


def test_step_rewards_use_the_statistics_of_the_given_task(toy_model, make_frames):
    toy_model.fit_stats([make_frames(10, 8, seed=1) // 4, 255 - make_frames(10, 8, seed=2) // 4],
                        tasks=["dark-v3", "bright-v3"])
    env = LearnedRewardWrapper(MovingSquareEnv(), toy_model, task="bright-v3")
    frames, step_rewards, _ = _run_episode(env, seed=3, frame_of=_hwc)
    np.testing.assert_allclose(step_rewards, toy_model.rewards(frames, task="bright-v3")[1:], atol=1e-6)
    assert not np.allclose(step_rewards, toy_model.rewards(frames)[1:], atol=1e-3)


def test_stochastic_model_gives_the_same_rewards_on_a_rerun(toy_model):
    env = LearnedRewardWrapper(MovingSquareEnv(), toy_model)
    first = _run_episode(env, seed=4, frame_of=_hwc)[1]
    np.testing.assert_array_equal(first, _run_episode(env, seed=4, frame_of=_hwc)[1])


@pytest.mark.parametrize("layout, kwargs", [("chw", {}), ("dict", {"frame_key": "pixels"}),
                                            ("state", {"use_render": True})])
def test_frames_from_channel_first_dict_and_render(toy_model, layout, kwargs):
    render_mode = "rgb_array" if kwargs.get("use_render") else None
    reference = _run_episode(LearnedRewardWrapper(MovingSquareEnv(), toy_model), seed=5, frame_of=_hwc)[1]
    env = LearnedRewardWrapper(MovingSquareEnv(layout, render_mode=render_mode), toy_model, **kwargs)
    np.testing.assert_allclose(_run_episode(env, seed=5, frame_of=lambda o: o)[1], reference, atol=1e-6)


def test_env_reward_is_kept_and_mix_adds_it():
    env = LearnedRewardWrapper(MovingSquareEnv(), MotionReward(device="cpu"), mix=RewardMix(0.5, 2.0))
    env.reset(seed=0)
    env.unwrapped.pos = np.array([5, 5])
    _, reward, terminated, _, info = env.step(np.ones(2, np.float32))
    assert terminated and info["env_reward"] == 1.0
    assert reward == pytest.approx(0.5 * info["learned_reward"] + 2.0)
    assert info["reward/total"] == reward and info["success"]


def test_sparse_method_returns_the_env_reward():
    env = LearnedRewardWrapper(MovingSquareEnv(), SparseReward(device="cpu"), mix="sparse")
    _, rewards, infos = _run_episode(env, seed=1, frame_of=_hwc)
    np.testing.assert_array_equal(rewards, [i["env_reward"] for i in infos])


@pytest.mark.parametrize("layout, kwargs", [("hwc", {}), ("chw", {}), ("dict", {"frame_key": "pixels"})])
def test_wrapped_env_passes_the_gymnasium_checker(toy_model, layout, kwargs):
    env = LearnedRewardWrapper(MovingSquareEnv(layout), toy_model, **kwargs)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*different from the unwrapped version.*")
        check_env(env, skip_render_check=True)


def test_observations_without_pixels_are_refused(toy_model):
    with pytest.raises(UserError, match="uint8 image observations"):
        LearnedRewardWrapper(MovingSquareEnv("state"), toy_model)
    with pytest.raises(UserError, match=r"frame_key, one of \['pixels', 'position'\]"):
        LearnedRewardWrapper(MovingSquareEnv("dict"), toy_model)
    with pytest.raises(UserError, match="render_mode='rgb_array'"):
        LearnedRewardWrapper(MovingSquareEnv("state"), toy_model, use_render=True)


def test_an_env_rendering_from_another_camera_is_refused(toy_model):
    env = MovingSquareEnv()
    env.camera = "side"  # as the project's own environments say which camera they render from
    toy_model.cameras = {"square-v0": ["top"]}
    with pytest.raises(UserError, match="LearnedRewardWrapper: fit on frames from camera top"):
        LearnedRewardWrapper(env, toy_model)
    env.camera = "top"
    LearnedRewardWrapper(env, toy_model)


def test_frames_of_the_wrong_size_need_resize(toy_model):
    toy_model.image_size = 4
    env = LearnedRewardWrapper(MovingSquareEnv(), toy_model)
    with pytest.raises(UserError, match="LearnedRewardWrapper reset frames: expected .* of 4x4, got 8x8"):
        env.reset(seed=0)
    env = LearnedRewardWrapper(MovingSquareEnv(), toy_model, resize=True)
    env.reset(seed=0)
    assert np.isfinite(env.step(np.zeros(2, np.float32))[1])
