"""Mixing the model reward, the RND bonus and the sparse reward."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffusion_reward.errors import UserError
from diffusion_reward.rewards.combine import DEFAULT_ALPHA, RewardMix, combine_rewards, default_alpha

KEYS = {"reward/model", "reward/rnd", "reward/sparse", "reward/total"}


def test_paper_formula_on_arrays():
    model, rnd, sparse = np.array([2.0, -1.0]), np.array([10.0, 0.0]), np.array([0.0, 1.0])
    out = combine_rewards(model, rnd, sparse, alpha=0.95)
    assert set(out) == KEYS and all(v.dtype == np.float32 for v in out.values())
    np.testing.assert_allclose(out["reward/model"], [0.1, -0.05], rtol=1e-6)
    np.testing.assert_allclose(out["reward/rnd"], [9.5, 0.0], rtol=1e-6)
    np.testing.assert_allclose(out["reward/sparse"], [0.0, 1.0])
    np.testing.assert_allclose(out["reward/total"], [9.6, 0.95], rtol=1e-6)


def test_terms_add_up_to_the_total_on_tensors():
    g = torch.Generator().manual_seed(0)
    model, rnd, sparse = (torch.randn(7, generator=g) for _ in range(3))
    out = combine_rewards(model, rnd, sparse, alpha=0.5)
    assert all(isinstance(v, torch.Tensor) for v in out.values())
    torch.testing.assert_close(out["reward/total"], out["reward/model"] + out["reward/rnd"] + out["reward/sparse"])
    torch.testing.assert_close(out["reward/total"], 0.5 * model + 0.5 * rnd + sparse)


def test_missing_terms_count_as_zero_and_numpy_joins_a_tensor():
    rnd = torch.tensor([1.0, 2.0])
    out = combine_rewards(None, rnd, np.array([0.0, 1.0], np.float32), alpha=default_alpha("rnd"))
    torch.testing.assert_close(out["reward/total"], torch.tensor([1.0, 3.0]))
    torch.testing.assert_close(out["reward/model"], torch.zeros(2))
    amp = combine_rewards(np.array([0.5]), None, np.array([1.0]), alpha=default_alpha("amp"))
    np.testing.assert_allclose(amp["reward/total"], [1.5])


def test_shape_mismatch_is_refused_not_broadcast():
    with pytest.raises(UserError, match="different shapes"):
        combine_rewards(np.zeros(4), np.zeros((4, 1)), alpha=0.5)


def test_bad_alpha_and_no_terms_are_errors():
    with pytest.raises(UserError, match=r"\[0, 1\]"):
        combine_rewards(np.zeros(2), alpha=1.5)
    with pytest.raises(UserError, match="at least one"):
        combine_rewards(alpha=0.5)
    with pytest.raises(UserError, match="no default RND weight"):
        default_alpha("telepathy")


def test_paper_alphas():
    assert DEFAULT_ALPHA["diffusion"] == 0.95 and DEFAULT_ALPHA["viper"] == 0.5
    assert DEFAULT_ALPHA["amp"] == 0.0 and DEFAULT_ALPHA["rnd"] == 1.0


def test_wrapper_mix_per_method():
    assert RewardMix.for_method("diffusion") == RewardMix(learned_weight=pytest.approx(0.05), env_weight=1.0)
    assert RewardMix.for_method("rnd").learned_weight == 1.0
    parts = RewardMix(learned_weight=0.5, env_weight=2.0)(learned=4.0, env_reward=1.0)
    assert parts == {"reward/model": 2.0, "reward/sparse": 2.0, "reward/total": 4.0}
