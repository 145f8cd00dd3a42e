"""MetaWorld's scripted experts solve their tasks within the episode, at action repeat 2."""

from __future__ import annotations

import numpy as np
import pytest

from diffusion_reward.envs import SUITES, expert_policy, make_env


def first_successes(task: str, seeds: tuple[int, ...]) -> list[int | None]:
    """Agent step of the first success of the expert, per seed (None when it never succeeds)."""
    env = make_env(task, pixels=False)
    expert = expert_policy(task)
    firsts: list[int | None] = []
    try:
        for seed in seeds:
            obs, _ = env.reset(seed=seed)
            first = None
            for step in range(env.max_episode_steps):
                obs, reward, _, truncated, info = env.step(expert(obs))
                if info["success"] and first is None:
                    first = step
                    assert reward > 0
                if truncated:
                    break
            assert truncated
            firsts.append(first)
    finally:
        env.close()
    return firsts


def test_expert_actions_are_valid():
    with pytest.warns(UserWarning, match="reach-v3"):
        expert = expert_policy("reach")  # a paper name maps to reach-v3
    action = expert(np.zeros(39, np.float32))
    assert action.shape == (4,) and action.dtype == np.float32 and np.all(np.abs(action) <= 1)


@pytest.mark.parametrize("task", ["reach-v3", "dial-turn-v3", "door-close-v3"])
def test_expert_solves_the_task_within_the_time_limit(task):
    assert all(first is not None for first in first_successes(task, seeds=(0, 1)))


@pytest.mark.slow
@pytest.mark.parametrize("task", SUITES["metaworld-paper"] + SUITES["metaworld-unseen"])
def test_expert_solves_every_paper_and_unseen_task(task):
    firsts = first_successes(task, seeds=(0, 1, 2, 3, 4))
    assert sum(first is not None for first in firsts) >= 4, firsts
