"""The environment worker: same steps and recorded frames as in-process, clear errors, a clean exit."""

from __future__ import annotations

import numpy as np
import pytest

from diffusion_reward.rl.env_worker import EnvSpec, EnvWorkerError, LocalEnv, WorkerEnv


def rollout(env, actions: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, list[float]]:
    observations = [env.reset(seed=7, record=True)]
    rewards = []
    for action in actions:
        env.step_async(action)
        step = env.step_wait()
        observations.append(step.obs)
        rewards.append(step.reward)
    return observations, env.episode_frames(), rewards


def test_worker_steps_and_records_frames_like_the_local_env():
    spec = EnvSpec("reach-v3", pixels=False, max_episode_steps=6)
    actions = np.random.default_rng(0).uniform(-1, 1, (6, 4)).astype(np.float32)
    local = LocalEnv(spec)
    try:
        expected = rollout(local, actions)
    finally:
        local.close()
    worker = WorkerEnv(spec)
    try:
        assert worker.info == local.info
        got = rollout(worker, actions)
        with pytest.raises(RuntimeError, match="while a step is pending"):
            worker.step_async(actions[0])
            worker.step_async(actions[0])
        worker.step_wait()
    finally:
        worker.close()
    assert not worker.alive
    for a, b in zip(expected[0], got[0], strict=True):
        np.testing.assert_array_equal(a, b)
    assert expected[1].shape == (7, 64, 64, 3) and expected[1].dtype == np.uint8
    np.testing.assert_array_equal(expected[1], got[1])  # rendered after each reply, in order
    assert expected[2] == got[2]


def test_worker_failure_is_an_error_naming_the_cause():
    with pytest.raises(EnvWorkerError, match="camera 'no-such-camera'"):
        WorkerEnv(EnvSpec("reach-v3", pixels=True, camera="no-such-camera"))
