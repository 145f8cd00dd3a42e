"""The example scripts under examples/ run end to end on tiny budgets (slow: real environments and models)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_sb3_sac_example_trains_on_the_learned_reward():
    pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.callbacks import BaseCallback

    from diffusion_reward.rewards.combine import RewardMix

    class Record(BaseCallback):
        def __init__(self):
            super().__init__()
            self.infos, self.dones = [], []

        def _on_step(self) -> bool:
            self.infos.append([dict(info) for info in self.locals["infos"]])
            self.dones.append(np.array(self.locals["dones"]))
            return True

    example = _load("sb3_sac_metaworld")
    args = example.parse_args(["--task", "reach-v3", "--steps", "240", "--n-envs", "2", "--episode-steps", "40",
                               "--learning-starts", "60", "--seed", "0"])
    record = Record()
    agent = example.train(args, callback=record)
    assert len(record.infos) == 120  # 240 steps of 2 environments
    learned = np.array([[info["learned_reward"] for info in step] for step in record.infos])
    env_reward = np.array([[info["env_reward"] for info in step] for step in record.infos])
    total = np.array([[info["reward/total"] for info in step] for step in record.infos], np.float32)
    assert np.isfinite(learned).all() and learned.std() > 0
    mix = RewardMix.for_method("diffusion")
    np.testing.assert_allclose(total, mix.learned_weight * learned + mix.env_weight * env_reward, rtol=1e-5, atol=1e-6)
    # what SAC trains on is the wrapper's mixed reward, step by step
    np.testing.assert_allclose(agent.replay_buffer.rewards[:agent.replay_buffer.pos], total, atol=1e-6)
    assert np.stack(record.dones).sum(axis=0).tolist() == [3, 3]  # 40-step episodes ended and reset
    assert agent.replay_buffer.next_observations.shape[-1] == agent.observation_space.shape[0]  # the state
