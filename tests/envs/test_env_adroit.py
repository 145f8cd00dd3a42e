"""The environment contract on the Adroit hand tasks."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from diffusion_reward.envs import make_env


@pytest.fixture(scope="module")
def door():
    env = make_env("door", seed=0, max_episode_steps=3)
    yield env
    env.close()


def test_door_observations_info_and_time_limit(door):
    assert door.task_spec.domain == "adroit" and door.camera == "top"
    obs, info = door.reset(seed=0)
    assert obs.dtype == np.uint8 and obs.shape == (3, 64, 64)
    assert info["state"].dtype == np.float32 and info["state"].shape == (39,)
    assert door.action_space.shape == (28,)
    assert np.array_equal(door.render_frame(), obs.transpose(1, 2, 0))
    truncations = []
    for _ in range(3):
        obs, reward, terminated, truncated, info = door.step(door.action_space.sample())
        assert isinstance(info["success"], bool) and isinstance(info["dense_reward"], float)
        assert info["state"].shape == (39,) and reward in (0.0, 1.0, 2.0) and terminated is False
        truncations.append(truncated)
    assert truncations == [False, False, True]


def test_door_seed_decides_the_door_position(door):
    a, info_a = door.reset(seed=4)
    b, info_b = door.reset(seed=4)
    c, info_c = door.reset(seed=5)
    assert np.array_equal(a, b) and np.array_equal(info_a["state"], info_b["state"])
    handle = slice(32, 35)  # the handle position in the door's observation
    assert np.linalg.norm(info_a["state"][handle] - info_c["state"][handle]) > 1e-3
    assert not np.array_equal(a, c)


@pytest.mark.filterwarnings("ignore:.*alternative render modes")
def test_gymnasium_env_checker_passes_on_adroit(door):
    check_env(door, skip_render_check=False)


@pytest.mark.parametrize("task, state_dim, action_dim, steps", [("hammer", 46, 26, 100), ("pen", 45, 24, 50)])
def test_hammer_and_pen_state_mode(task, state_dim, action_dim, steps):
    env = make_env(task, pixels=False, seed=0)
    try:
        obs, info = env.reset()
        assert obs.shape == (state_dim,) and obs.dtype == np.float32 and np.array_equal(obs, info["state"])
        assert env.action_space.shape == (action_dim,) and env.max_episode_steps == steps
        obs, reward, _, _, info = env.step(np.zeros(action_dim, np.float32))
        assert obs.shape == (state_dim,) and isinstance(info["success"], bool)
    finally:
        env.close()
