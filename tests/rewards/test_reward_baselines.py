"""The baseline reward models: RND and AMP learn online; sparse and motion are fixed formulas."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from diffusion_reward.data.episodes import DatasetWriter, Episode
from diffusion_reward.errors import UserError
from diffusion_reward.rewards import load_reward_model
from diffusion_reward.rewards.amp import PRESETS as AMP_PRESETS
from diffusion_reward.rewards.amp import AMPReward, amp_reward_from_score
from diffusion_reward.rewards.base import frames_to_model_input
from diffusion_reward.rewards.motion import MotionReward
from diffusion_reward.rewards.rnd import PRESETS as RND_PRESETS
from diffusion_reward.rewards.rnd import RNDReward, RunningMeanStd
from diffusion_reward.rewards.sparse import SparseReward

SIZE = 16


def _chw(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()


def _bright_square_frames(n: int, seed: int) -> np.ndarray:
    """Dark frames with a bright square at a random place: the "expert" look."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 40, (n, SIZE, SIZE, 3), dtype=np.uint8)
    for f in frames:
        r, c = rng.integers(0, SIZE - 6, 2)
        f[r:r + 6, c:c + 6] = 230
    return frames


# ---- RND -----------------------------------------------------------------------------------

def _rnd(**changes) -> RNDReward:
    torch.manual_seed(0)
    return RNDReward(dataclasses.replace(RND_PRESETS["tiny"], **changes), device="cpu")


def test_rnd_update_reduces_its_loss_on_fixed_data(make_frames):
    model = _rnd(lr=1e-3)
    batch = {"next_obs": _chw(make_frames(32, SIZE))}
    losses = [model.update(batch)["reward/rnd_loss"] for _ in range(40)]
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])


def test_rnd_bonus_is_higher_on_unseen_frames(make_frames):
    model = _rnd(lr=1e-3)
    seen = make_frames(32, SIZE, seed=1)
    unseen = 255 - _bright_square_frames(32, seed=2)
    for _ in range(60):
        model.update({"next_obs": _chw(seen)})
    assert model.rewards(unseen).mean() > 2 * model.rewards(seen).mean()


def test_rnd_reward_is_error_over_running_error_std(make_frames):
    model = _rnd()
    frames = make_frames(8, SIZE)
    for _ in range(3):
        metrics = model.update({"next_obs": frames})  # channel-last works too
    assert set(metrics) == {"reward/rnd_loss", "reward/rnd_error_std"}
    with torch.no_grad():
        errors = model.prediction_errors(frames_to_model_input(frames, SIZE))
    expected = errors / metrics["reward/rnd_error_std"]
    np.testing.assert_allclose(model.rewards(frames), expected.numpy(), rtol=1e-4)
    np.testing.assert_allclose(model.bonus(_chw(frames)).numpy(), model.rewards(frames), rtol=1e-5)


def test_rnd_bonus_does_not_change_the_model(make_frames):
    model = _rnd()
    frames = _chw(make_frames(4, SIZE))
    before = model.bonus(frames)
    model.bonus(frames)
    torch.testing.assert_close(model.bonus(frames), before)


def test_rnd_update_needs_next_obs():
    with pytest.raises(UserError, match="next_obs"):
        _rnd().update({"obs": np.zeros((2, 3, SIZE, SIZE), np.uint8)})


def test_running_mean_std_matches_numpy():
    rms = RunningMeanStd((2,))
    data = np.random.default_rng(0).normal(3.0, 2.0, (300, 2))
    for chunk in np.split(data, 6):
        rms.update(torch.from_numpy(chunk))
    np.testing.assert_allclose(rms.mean.numpy(), data.mean(0), rtol=1e-4)
    np.testing.assert_allclose(rms.var.numpy(), data.var(0), rtol=1e-3)


# ---- AMP -----------------------------------------------------------------------------------

def test_amp_reward_formula():
    d = torch.tensor([1.0, 0.0, -1.0, 3.0, -5.0])
    torch.testing.assert_close(amp_reward_from_score(d), torch.tensor([1.0, 0.75, 0.0, 0.0, 0.0]))


def _expert_dataset(root):
    writer = DatasetWriter(root, {"image_size": SIZE})
    for i in range(3):
        writer.add(Episode(_bright_square_frames(10, seed=i)), task="toy", policy="expert", split="train")
    writer.add(Episode(np.zeros((10, SIZE, SIZE, 3), np.uint8)), task="toy", policy="random", split="train")
    writer.add(Episode(np.zeros((10, SIZE, SIZE, 3), np.uint8)), task="toy", policy="expert", split="test")
    return root


def test_amp_learns_to_prefer_expert_frames(tmp_path):
    torch.manual_seed(0)
    model = AMPReward.from_dataset(_expert_dataset(tmp_path / "data"),
                                   dataclasses.replace(AMP_PRESETS["tiny"], lr=1e-3), device="cpu")
    assert len(model.expert_frames) == 30  # train-split expert episodes only
    agent = np.random.default_rng(5).integers(0, 256, (32, SIZE, SIZE, 3), dtype=np.uint8)
    metrics = [model.update({"next_obs": _chw(agent)}) for _ in range(40)]
    assert {"reward/amp_loss", "reward/amp_expert_loss", "reward/amp_agent_loss", "reward/amp_grad_penalty",
            "reward/amp_d_expert", "reward/amp_d_agent"} <= set(metrics[0])
    losses = [m["reward/amp_loss"] for m in metrics]
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    expert = _bright_square_frames(20, seed=9)
    r_expert, r_agent = model.rewards(expert), model.rewards(agent)
    assert np.all((0 <= r_agent) & (r_agent <= 1))
    assert r_expert.mean() > r_agent.mean() + 0.3


def test_amp_from_dataset_without_matching_episodes(tmp_path):
    root = _expert_dataset(tmp_path / "data")
    with pytest.raises(UserError, match=r"data: no episodes with split='train', policy='teacher'.*expert"):
        AMPReward.from_dataset(root, AMP_PRESETS["tiny"], policy="teacher", device="cpu")


def test_loaded_amp_needs_expert_frames_to_keep_training(tmp_path):
    root = _expert_dataset(tmp_path / "data")
    model = AMPReward.from_dataset(root, AMP_PRESETS["tiny"], device="cpu")
    model.save_pretrained(tmp_path / "amp")
    loaded = load_reward_model(tmp_path / "amp", device="cpu")
    batch = {"next_obs": np.zeros((4, 3, SIZE, SIZE), np.uint8)}
    with pytest.raises(UserError, match="attach_expert"):
        loaded.update(batch)
    assert loaded.attach_expert(root) == 30
    assert np.isfinite(loaded.update(batch)["reward/amp_loss"])


def test_amp_expert_frames_of_another_size_need_resize():
    model = AMPReward(AMP_PRESETS["tiny"], device="cpu")
    frames = np.zeros((5, 32, 32, 3), np.uint8)
    with pytest.raises(UserError, match="16x16"):
        model.attach_expert(frames)
    assert model.attach_expert(frames, resize=True) == 5


# ---- sparse and motion -----------------------------------------------------------------------

def test_sparse_model_gives_zeros_for_any_frames(make_frames):
    r = SparseReward(device="cpu").rewards(make_frames(6, 24))
    assert r.dtype == np.float32 and np.array_equal(r, np.zeros(6, np.float32))
    assert not SparseReward(device="cpu").is_online


def test_motion_is_mean_absolute_change_and_zero_at_frame_zero():
    frames = np.zeros((4, 5, 5, 3), np.uint8)
    frames[1] = 255          # everything changes: 1.0
    frames[2] = 255          # nothing changes: 0.0
    frames[3] = 255
    frames[3, 0, 0, 0] = 0   # one of 75 values drops by 255
    np.testing.assert_allclose(MotionReward(device="cpu").rewards(frames), [0.0, 1.0, 0.0, 1 / 75], rtol=1e-6)
