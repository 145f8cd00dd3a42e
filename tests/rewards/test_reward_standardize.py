"""Reward statistics from expert rewards, and standardization with them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffusion_reward.errors import UserError
from diffusion_reward.rewards.standardize import RewardStats, standardize


def test_stats_pool_every_episode():
    episodes = [np.array([1.0, 2.0, 3.0], np.float32), np.array([5.0]), torch.tensor([9.0, -1.0])]
    stats = RewardStats.from_rewards(episodes)
    pooled = np.array([1, 2, 3, 5, 9, -1], np.float64)
    assert stats.count == 6
    assert stats.mean == pytest.approx(pooled.mean()) and stats.std == pytest.approx(pooled.std())


def test_standardized_expert_rewards_have_zero_mean_unit_std():
    rng = np.random.default_rng(0)
    episodes = [rng.normal(-3.0, 0.2, 50).astype(np.float32) for _ in range(4)]
    stats = RewardStats.from_rewards(episodes)
    out = stats.standardize(np.concatenate(episodes))
    assert out.dtype == np.float32
    assert abs(out.mean()) < 1e-5 and out.std() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(stats.unstandardize(out), np.concatenate(episodes), rtol=1e-5)


def test_standardize_keeps_tensors_tensors():
    stats = RewardStats(mean=1.0, std=2.0)
    r = torch.tensor([1.0, 3.0, -1.0])
    out = standardize(r, stats)
    assert isinstance(out, torch.Tensor)
    torch.testing.assert_close(out, torch.tensor([0.0, 1.0, -1.0]))
    assert standardize(r, None) is r


def test_constant_expert_rewards_use_the_std_floor():
    stats = RewardStats.from_rewards([np.full(10, 4.0)], min_std=0.5)
    assert stats.std == 0.0 and stats.scale == 0.5
    np.testing.assert_allclose(stats.standardize(np.array([4.0, 5.0])), [0.0, 2.0])


def test_no_rewards_or_broken_rewards_are_errors():
    with pytest.raises(UserError, match="no rewards"):
        RewardStats.from_rewards([])
    with pytest.raises(UserError, match="1 of 3 expert rewards are NaN"):
        RewardStats.from_rewards([np.array([1.0, np.nan, 2.0])])


def test_stats_round_trip_through_a_dict():
    stats = RewardStats.from_rewards([np.arange(5.0)])
    assert RewardStats.from_dict(stats.to_dict()) == stats
    with pytest.raises(UserError, match="cannot read"):
        RewardStats.from_dict({"mean": 0.0})
