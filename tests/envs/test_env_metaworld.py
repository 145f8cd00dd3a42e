"""The environment contract on MetaWorld: observations, info, time limit, action repeat, seeding."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from diffusion_reward.envs import RenderSettings, TaskSpec, expert_policy, make_env
from diffusion_reward.errors import UserError


@pytest.fixture(scope="module")
def pixel_env():
    env = make_env("reach-v3", seed=0)
    yield env
    env.close()


@pytest.fixture(scope="module")
def state_env():
    env = make_env("reach-v3", pixels=False)
    yield env
    env.close()


def test_pixel_observations_and_info(pixel_env):
    env = pixel_env
    assert isinstance(env.task_spec, TaskSpec) and env.task_spec.name == "reach-v3"
    assert (env.camera, env.image_size, env.render_settings) == ("corner2", 64, RenderSettings.fast())
    obs, info = env.reset(seed=0)
    assert obs.dtype == np.uint8 and obs.shape == (3, 64, 64) and obs in env.observation_space
    assert info["state"].dtype == np.float32 and info["state"].shape == (39,)
    assert np.array_equal(env.render_frame(), obs.transpose(1, 2, 0))
    assert env.action_space.shape == (4,) and env.action_space.low.min() == -1 and env.action_space.high.max() == 1
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert obs.shape == (3, 64, 64) and obs.dtype == np.uint8
    assert {"success", "dense_reward", "state"} <= set(info)
    assert isinstance(info["success"], bool) and isinstance(info["dense_reward"], float)
    assert info["state"].dtype == np.float32 and info["state"].shape == (39,)
    assert reward in (0.0, 1.0, 2.0) and terminated is False and truncated is False


def test_state_observations_are_the_native_vector_with_the_goal(state_env):
    obs, info = state_env.reset(seed=3)
    assert obs.dtype == np.float32 and obs.shape == (39,) and obs in state_env.observation_space
    assert np.array_equal(obs, info["state"])
    assert np.abs(obs[-3:]).sum() > 0  # the goal is observed (MetaWorld hides it by default)
    obs, *_ = state_env.step(np.zeros(4, np.float32))
    assert obs.shape == (39,) and obs.dtype == np.float32


def test_default_time_limit_is_100_agent_steps_and_never_terminates(state_env):
    state_env.reset(seed=0)
    flags = [state_env.step(state_env.action_space.sample())[2:4] for _ in range(100)]
    assert [t for t, _ in flags] == [False] * 100
    assert [tr for _, tr in flags] == [False] * 99 + [True]


def test_action_repeat_sums_sparse_and_dense_rewards_over_simulator_steps(state_env):
    """An agent step at repeat 2 equals two steps at repeat 1 with the same action."""
    single = make_env("reach-v3", pixels=False, action_repeat=1, max_episode_steps=200)
    try:
        expert = expert_policy("reach-v3")
        obs2, _ = state_env.reset(seed=5)
        obs1, _ = single.reset(seed=5)
        assert np.array_equal(obs1, obs2)
        rewards = []
        for _ in range(40):
            action = expert(obs2)
            obs2, reward2, _, _, info2 = state_env.step(action)
            reward1, dense1, success1 = 0.0, 0.0, False
            for _ in range(2):
                obs1, r, _, _, info1 = single.step(action)
                reward1, dense1, success1 = reward1 + r, dense1 + info1["dense_reward"], success1 or info1["success"]
            assert np.array_equal(obs1, obs2)
            assert reward2 == reward1 and info2["success"] == success1
            assert info2["dense_reward"] == pytest.approx(dense1)
            rewards.append(reward2)
        assert max(rewards) == 2.0  # the expert reaches the goal: both repeated steps count
        assert set(rewards) <= {0.0, 1.0, 2.0}
    finally:
        single.close()


def test_seed_decides_the_first_frame_and_the_goal(pixel_env):
    env = pixel_env
    a, info_a = env.reset(seed=1)
    b, info_b = env.reset(seed=1)
    assert np.array_equal(a, b) and np.array_equal(info_a["state"], info_b["state"])
    c, info_c = env.reset(seed=2)
    assert np.linalg.norm(info_c["state"][-3:] - info_a["state"][-3:]) > 1e-3
    assert not np.array_equal(a, c)
    d, info_d = env.reset()  # no seed: the stream continues, a new goal
    assert not np.array_equal(info_d["state"][-3:], info_c["state"][-3:])
    fresh = make_env("reach-v3", seed=1)
    try:
        e, _ = fresh.reset()  # the constructor's seed seeds the first reset
        assert np.array_equal(a, e)
        f, _ = fresh.reset()
        assert not np.array_equal(e, f)
    finally:
        fresh.close()


def test_wrong_action_shape_is_an_error(pixel_env):
    pixel_env.reset(seed=0)
    with pytest.raises(ValueError, match="action shape"):
        pixel_env.step(np.zeros(3, np.float32))


# The checker's warnings that do not apply: it cannot try other render modes without a registered
# spec (the environment has only ``rgb_array``, which it does test), and MetaWorld's own state space
# leaves some entries unbounded (infinite bounds).
@pytest.mark.filterwarnings("ignore:.*alternative render modes")
@pytest.mark.filterwarnings("ignore:.*Box observation space m")
def test_gymnasium_env_checker_passes(pixel_env, state_env):
    check_env(pixel_env, skip_render_check=False)
    check_env(state_env, skip_render_check=True)


def test_other_camera_and_size_and_unknown_camera():
    env = make_env("reach-v3", camera="topview", image_size=32, seed=0)
    try:
        obs, _ = env.reset()
        assert obs.shape == (3, 32, 32) and env.camera == "topview"
        assert env.renderer.rotate is False  # topview is upright as is
    finally:
        env.close()
    with pytest.raises(UserError, match="camera 'nope'.*corner2"):
        make_env("reach-v3", camera="nope")
