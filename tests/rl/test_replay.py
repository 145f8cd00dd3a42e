"""The replay buffer: exact n-step targets, episode boundaries, eviction, bonuses and resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffusion_reward.rl.replay import ReplayBuffer


def state_episode(episode_id: int, steps: int, rewards=None):
    """Observations (episode_id, t) so every sample says where it came from; action = t."""
    t = np.arange(steps + 1, dtype=np.float32)
    obs = np.stack([np.full_like(t, episode_id), t], axis=1)
    actions = np.arange(steps, dtype=np.float32)[:, None].repeat(2, axis=1)
    rewards = np.arange(1, steps + 1, dtype=np.float32) if rewards is None else np.asarray(rewards, np.float32)
    return obs, actions, rewards


def sample_all(buffer: ReplayBuffer, size: int = 512, seed: int = 0, **kwargs):
    return buffer.sample(size, np.random.default_rng(seed), **kwargs)


def test_nstep_return_discount_and_next_obs_are_exact():
    buffer = ReplayBuffer(capacity=100, nstep=3, discount=0.5)
    buffer.add(*state_episode(0, 5, rewards=[1, 2, 3, 4, 5]))
    batch = sample_all(buffer)
    starts = batch["obs"][:, 1].long()
    # A time-limit end is not terminal: only starts with 3 steps left, each bootstrapping with 0.5**3.
    assert set(starts.tolist()) == {0, 1, 2}
    expected = {0: 1 + 0.5 * 2 + 0.25 * 3, 1: 2 + 0.5 * 3 + 0.25 * 4, 2: 3 + 0.5 * 4 + 0.25 * 5}
    for i, t in enumerate(starts.tolist()):
        assert batch["reward"][i].item() == pytest.approx(expected[t])
        assert batch["next_obs"][i, 1].item() == t + 3
        assert batch["action"][i, 0].item() == t
        assert batch["step_reward"][i].tolist() == [t + 1, t + 2, t + 3]
    assert torch.all(batch["discount"] == 0.125)
    assert torch.all(batch["step_mask"] == 1)


def test_terminated_episode_sums_to_the_end_and_does_not_bootstrap():
    buffer = ReplayBuffer(capacity=100, nstep=3, discount=0.5)
    buffer.add(*state_episode(0, 4, rewards=[1, 1, 1, 8]), terminated=True)
    batch = sample_all(buffer)
    starts = batch["obs"][:, 1].long().tolist()
    assert set(starts) == {0, 1, 2, 3}
    expected_reward = {0: 1 + 0.5 + 0.25, 1: 1 + 0.5 + 0.25 * 8, 2: 1 + 0.5 * 8, 3: 8.0}
    expected_discount = {0: 0.125, 1: 0.0, 2: 0.0, 3: 0.0}
    expected_mask = {0: [1, 1, 1], 1: [1, 1, 1], 2: [1, 1, 0], 3: [1, 0, 0]}
    for i, t in enumerate(starts):
        assert batch["reward"][i].item() == pytest.approx(expected_reward[t])
        assert batch["discount"][i].item() == expected_discount[t]
        assert batch["step_mask"][i].tolist() == expected_mask[t]
        assert batch["next_obs"][i, 1].item() == min(t + 3, 4)


def test_samples_never_cross_episode_boundaries():
    buffer = ReplayBuffer(capacity=1000, nstep=3, discount=0.99)
    for e, steps in enumerate([3, 7, 4, 10, 2]):
        buffer.add(*state_episode(e, steps))
    batch = sample_all(buffer, size=2000, with_step_obs=True)
    episode, t = batch["obs"][:, 0], batch["obs"][:, 1]
    assert torch.all(batch["next_obs"][:, 0] == episode)
    assert torch.all(batch["next_obs"][:, 1] == t + 3)
    assert torch.all(batch["step_next_obs"][..., 0] == episode[:, None])
    assert torch.all(batch["step_next_obs"][..., 1] == t[:, None] + torch.arange(1, 4))
    lengths = torch.tensor([3, 7, 4, 10, 2], dtype=torch.float32)
    assert torch.all(t + 3 <= lengths[episode.long()])
    # Episode 4 (2 steps) is shorter than n: stored, never sampled. The other starts all appear.
    assert 4 not in episode.tolist()
    assert buffer.num_samplable == 1 + 5 + 2 + 8 == len(set(zip(episode.tolist(), t.tolist())))


def test_capacity_evicts_oldest_episodes():
    buffer = ReplayBuffer(capacity=10, nstep=1, discount=0.9)
    for e in range(3):
        buffer.add(*state_episode(e, 4))
    assert len(buffer) == 8 and buffer.num_episodes == 2
    batch = sample_all(buffer)
    assert set(batch["obs"][:, 0].tolist()) == {1.0, 2.0}
    buffer.add(*state_episode(3, 10))
    assert len(buffer) == 10 and buffer.num_episodes == 1
    with pytest.raises(ValueError, match="does not fit"):
        buffer.add(*state_episode(4, 11))


def test_pixels_are_stored_and_sampled_as_uint8():
    buffer = ReplayBuffer(capacity=100, nstep=2)
    obs = np.random.default_rng(0).integers(0, 256, (6, 3, 8, 8), dtype=np.uint8)
    buffer.add(obs, np.zeros((5, 2)), np.zeros(5))
    batch = sample_all(buffer, size=8, with_step_obs=True)
    assert batch["obs"].dtype == batch["next_obs"].dtype == batch["step_next_obs"].dtype == torch.uint8
    assert batch["obs"].shape == (8, 3, 8, 8) and batch["step_next_obs"].shape == (8, 2, 3, 8, 8)
    assert buffer._episodes[0].obs.dtype == np.uint8


def test_components_and_reward_fn_bonus_are_per_step():
    buffer = ReplayBuffer(capacity=100, nstep=3, discount=0.5)
    obs, actions, rewards = state_episode(0, 6)
    buffer.add(obs, actions, rewards, components={"sparse": rewards * 10, "learned": -rewards})
    seen = {}

    def bonus_from_next_obs(batch):
        seen["step_next_obs"] = batch["step_next_obs"]
        return batch["step_next_obs"][..., 1]  # bonus of step k = time index reached after it

    plain = sample_all(buffer, seed=3)
    boosted = sample_all(buffer, seed=3, reward_fn=bonus_from_next_obs)
    t = plain["obs"][:, 1]
    assert torch.equal(plain["obs"], boosted["obs"])
    assert torch.allclose(plain["component/sparse"], plain["step_reward"] * 10)
    assert torch.allclose(plain["component/learned"], -plain["step_reward"])
    # bonus sum: (t+1) + 0.5 (t+2) + 0.25 (t+3)
    assert torch.allclose(boosted["reward"] - plain["reward"], 1.75 * t + 2.75)
    assert "step_next_obs" not in plain and seen["step_next_obs"].shape == (512, 3, 2)

    with pytest.raises(ValueError, match="per-step bonus"):
        sample_all(buffer, reward_fn=lambda batch: torch.zeros(len(batch["obs"])))


def test_bad_episodes_get_clear_errors():
    buffer = ReplayBuffer(capacity=100)
    obs, actions, rewards = state_episode(0, 5)
    with pytest.raises(ValueError, match="nothing to sample"):
        sample_all(buffer)
    with pytest.raises(ValueError, match="6 observations"):
        buffer.add(obs[:-1], actions, rewards)
    with pytest.raises(ValueError, match="NaN"):
        buffer.add(obs, actions, np.full(5, np.nan))
    buffer.add(obs, actions, rewards, components={"sparse": rewards})
    with pytest.raises(ValueError, match="components"):
        buffer.add(obs, actions, rewards)
    with pytest.raises(ValueError, match="observations"):
        buffer.add(obs[:, :1], actions, rewards, components={"sparse": rewards})


def test_save_load_round_trip_is_incremental_and_resumes_identically(tmp_path):
    rng = np.random.default_rng(1)
    buffer = ReplayBuffer(capacity=30, nstep=3, discount=0.9)
    for e in range(3):
        obs = rng.integers(0, 256, (11, 3, 4, 4), dtype=np.uint8)
        buffer.add(obs, rng.uniform(-1, 1, (10, 2)), rng.normal(size=10), components={"sparse": rng.normal(size=10)},
                   terminated=(e == 1))
    buffer.save(tmp_path)
    files = sorted(p.name for p in (tmp_path / "episodes").iterdir())
    assert len(files) == 3
    mtimes = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "episodes").iterdir()}

    restored = ReplayBuffer(capacity=30, nstep=3, discount=0.9)
    restored.load(tmp_path)
    a = buffer.sample(64, np.random.default_rng(7), with_step_obs=True)
    b = restored.sample(64, np.random.default_rng(7), with_step_obs=True)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key

    # The resumed buffer keeps counting episodes, evicts the oldest, and saving again
    # rewrites only what changed.
    restored.add(rng.integers(0, 256, (11, 3, 4, 4), dtype=np.uint8), np.zeros((10, 2)), np.zeros(10),
                 components={"sparse": np.zeros(10)})
    restored.save(tmp_path)
    now = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "episodes").iterdir()}
    assert sorted(now) == files[1:] + ["episode_00000003.safetensors"]
    assert all(now[name] == mtimes[name] for name in files[1:])
    again = ReplayBuffer(capacity=30, nstep=3, discount=0.9)
    again.load(tmp_path)
    assert again.num_episodes == 3 and len(again) == 30 and again._episodes[0].terminated
