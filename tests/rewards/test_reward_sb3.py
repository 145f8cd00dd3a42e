"""The Stable-Baselines3 VecEnv wrapper: per-episode rewards equal whole-episode rewards through automatic
resets, frames from images, dict keys or rendered frames, env reward kept, rewards reach SB3's replay."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("stable_baselines3")

from stable_baselines3.common.vec_env import DummyVecEnv  # noqa: E402
from test_reward_gym_wrapper import MovingSquareEnv  # noqa: E402

from diffusion_reward.errors import UserError  # noqa: E402
from diffusion_reward.rewards.combine import RewardMix  # noqa: E402
from diffusion_reward.rewards.gym_wrapper import RenderFrameObservation  # noqa: E402
from diffusion_reward.rewards.sb3 import LearnedRewardVecWrapper  # noqa: E402

MAX_STEPS = (5, 7, 4)  # each environment's episodes end at their own steps


def _venv(layout: str = "hwc", render: bool = False) -> DummyVecEnv:
    def make(max_steps: int):
        def thunk():
            env = MovingSquareEnv(layout, render_mode="rgb_array" if render else None, max_steps=max_steps)
            return RenderFrameObservation(env) if render else env
        return thunk
    venv = DummyVecEnv([make(m) for m in MAX_STEPS])
    venv.seed(7)
    return venv


def _roll(venv, steps: int, seed: int = 0):
    """Random actions for ``steps`` steps: observations, rewards, dones and infos of every step."""
    rng = np.random.default_rng(seed)
    first = venv.reset()
    out = []
    for _ in range(steps):
        venv.step_async(rng.uniform(-1, 1, (venv.num_envs, 2)).astype(np.float32))
        out.append(venv.step_wait())
    return first, out


def test_episode_rewards_equal_whole_episode_rewards_through_automatic_resets(toy_model, make_frames):
    toy_model.fit_stats([make_frames(10, 8, seed=1) // 4, 255 - make_frames(10, 8, seed=2) // 4],
                        tasks=["dark-v3", "bright-v3"])
    tasks = ["dark-v3", "bright-v3", None]
    calls = []
    score = toy_model.score_windows
    toy_model.score_windows = lambda windows, steps: calls.append(len(windows)) or score(windows, steps)
    first, steps = _roll(LearnedRewardVecWrapper(_venv(), toy_model, task=tasks), 20)
    assert calls == [3] * 20  # one model call per step, all three environments' windows in it
    frames = [[[f]] for f in first]  # per environment: its episodes' frames
    learned = [[[]] for _ in first]
    for obs, rewards, dones, infos in steps:
        np.testing.assert_array_equal(rewards, [i["learned_reward"] for i in infos])
        for i, info in enumerate(infos):
            frames[i][-1].append(info["terminal_observation"] if dones[i] else obs[i])
            learned[i][-1].append(info["learned_reward"])
            if dones[i]:
                frames[i].append([obs[i]])
                learned[i].append([])
    finished = 0
    for env_frames, env_learned, task in zip(frames, learned, tasks):
        for episode, got in zip(env_frames[:-1], env_learned[:-1]):
            np.testing.assert_allclose(got, toy_model.rewards(np.stack(episode), task=task)[1:], atol=1e-6)
            finished += 1
    assert finished >= 8


def test_rendered_frames_give_the_same_rewards_and_the_agent_sees_the_state(toy_model):
    _, on_images = _roll(LearnedRewardVecWrapper(_venv("hwc"), toy_model, mix=RewardMix(0.5, 2.0)), 12)
    venv = LearnedRewardVecWrapper(_venv("state", render=True), toy_model, use_render=True, mix=RewardMix(0.5, 2.0))
    assert venv.observation_space.shape == (2,)
    first, on_state = _roll(venv, 12)
    assert first.shape == (3, 2)
    ended = 0
    for (_, want, _, want_infos), (obs, got, dones, infos) in zip(on_images, on_state):
        assert obs.shape == (3, 2)
        np.testing.assert_allclose(got, want, atol=1e-6)
        for info, want_info, done in zip(infos, want_infos, dones):
            assert info["env_reward"] == want_info["env_reward"]
            assert info["reward/total"] == pytest.approx(0.5 * info["learned_reward"] + 2.0 * info["env_reward"])
            if done:
                assert info["terminal_observation"].shape == (2,)  # what the agent's policy reads
                ended += 1
    assert ended >= 3


def test_frames_from_channel_first_images_and_dict_keys(toy_model):
    want = [r for _, r, _, _ in _roll(LearnedRewardVecWrapper(_venv("hwc"), toy_model), 9)[1]]
    for layout, kwargs in (("chw", {}), ("dict", {"frame_key": "pixels"})):
        got = [r for _, r, _, _ in _roll(LearnedRewardVecWrapper(_venv(layout), toy_model, **kwargs), 9)[1]]
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_misconfigured_wrappers_are_refused(toy_model):
    with pytest.raises(UserError, match="use_render needs every env wrapped in RenderFrameObservation"):
        LearnedRewardVecWrapper(_venv("state"), toy_model, use_render=True)
    with pytest.raises(UserError, match="uint8 image observations"):
        LearnedRewardVecWrapper(_venv("state"), toy_model)
    with pytest.raises(UserError, match="got 2 tasks for 3 environments"):
        LearnedRewardVecWrapper(_venv(), toy_model, task=["a", "b"])
    venv = _venv()
    venv.set_attr("camera", "side")
    toy_model.cameras = {"square-v0": ["top"]}
    with pytest.raises(UserError, match="LearnedRewardVecWrapper: fit on frames from camera top"):
        LearnedRewardVecWrapper(venv, toy_model)


def test_sac_trains_on_the_wrappers_rewards(toy_model):
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback

    class Record(BaseCallback):
        def __init__(self):
            super().__init__()
            self.rewards = []

        def _on_step(self) -> bool:
            self.rewards.append([info["reward/total"] for info in self.locals["infos"]])
            return True

    venv = LearnedRewardVecWrapper(_venv("state", render=True), toy_model, use_render=True, mix="diffusion")
    agent = SAC("MlpPolicy", venv, learning_starts=16, batch_size=8, buffer_size=200, seed=0,
                policy_kwargs={"net_arch": [16]})
    record = Record()
    agent.learn(30, callback=record)  # 30 transitions: 10 steps of the 3 environments
    stored = agent.replay_buffer.rewards[:agent.replay_buffer.pos]
    np.testing.assert_allclose(stored, np.array(record.rewards, np.float32), atol=1e-6)
    assert np.std(stored) > 0
