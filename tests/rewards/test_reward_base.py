"""The RewardModel contract: frame validation, windows and padding, batching, registry, artefacts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from diffusion_reward.errors import UserError
from diffusion_reward.rewards import (RewardModel, known_kinds, load_reward_model, make_windows,
                                      register_reward, resize_frames)
from diffusion_reward.rewards.amp import PRESETS as AMP_PRESETS
from diffusion_reward.rewards.amp import AMPReward
from diffusion_reward.rewards.base import frames_to_model_input
from diffusion_reward.rewards.motion import MotionReward
from diffusion_reward.rewards.rnd import PRESETS as RND_PRESETS
from diffusion_reward.rewards.rnd import RNDReward
from diffusion_reward.rewards.sparse import SparseReward


# ---- frames in ------------------------------------------------------------------------------

def test_wrong_dtype_is_a_clear_error(toy_model, make_frames):
    frames = make_frames(4, 8).astype(np.float32) / 255
    with pytest.raises(UserError, match=r"uint8 \(T, H, W, 3\).*float32.*astype\(np.uint8\)"):
        toy_model.rewards(frames)


def test_channel_first_frames_get_a_hint(toy_model, make_frames):
    with pytest.raises(UserError, match=r"shape \(4, 3, 8, 8\).*transpose"):
        toy_model.rewards(make_frames(4, 8).transpose(0, 3, 1, 2))


def test_wrong_size_is_an_error_unless_resize(toy_model, make_frames):
    frames = make_frames(5, 12)
    with pytest.raises(UserError, match=r"of 8x8.*got 12x12.*resize=True"):
        toy_model.rewards(frames)
    resized = toy_model.rewards(frames, resize=True)
    assert resized.shape == (5,)
    np.testing.assert_array_equal(resized, toy_model.rewards(resize_frames(frames, 8)))


def test_empty_episode_is_an_error(toy_model):
    with pytest.raises(UserError, match="T=0"):
        toy_model.rewards(np.zeros((0, 8, 8, 3), np.uint8))


def test_resize_frames_keeps_flat_images_flat_and_sets_size():
    frames = np.full((2, 20, 30, 3), 77, np.uint8)
    out = resize_frames(frames, 8)
    assert out.shape == (2, 8, 8, 3) and out.dtype == np.uint8
    assert np.all(out == 77)


def test_model_input_accepts_both_layouts_and_rejects_normalised_floats(make_frames):
    frames = make_frames(3, 8)
    hwc = frames_to_model_input(frames, 8)
    chw = frames_to_model_input(torch.from_numpy(frames).permute(0, 3, 1, 2), 8)
    as_float = frames_to_model_input(torch.from_numpy(frames).permute(0, 3, 1, 2).float(), 8)
    assert hwc.shape == (3, 3, 8, 8) and hwc.min() >= -1 and hwc.max() <= 1
    torch.testing.assert_close(hwc, chw)
    torch.testing.assert_close(hwc, as_float)
    with pytest.raises(UserError, match=r"\[0, 255\]"):
        frames_to_model_input(hwc, 8)


# ---- windows, padding, batching ----------------------------------------------------------------

def test_windows_repeat_frame_zero_before_the_start():
    frames = np.arange(4, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
    windows = make_windows(frames, history=2)
    firsts = windows[:, :, 0, 0, 0]
    np.testing.assert_array_equal(firsts, [[0, 0, 0], [0, 0, 1], [0, 1, 2], [1, 2, 3]])


@pytest.mark.parametrize("length", [1, 2, 3])
def test_clip_shorter_than_history_is_padded(toy_model, make_frames, length):
    frames = make_frames(length, 8, seed=length)
    rewards = toy_model.rewards(frames)
    assert rewards.shape == (length,) and rewards.dtype == np.float32
    padded = np.concatenate([frames[:1], frames[:1], frames])  # frame 0 repeated twice
    for j in range(length):
        assert rewards[j] == pytest.approx(toy_model.rewards_window(padded[j:j + 3], j), abs=1e-6)


def test_rewards_window_checks_its_length(toy_model, make_frames):
    with pytest.raises(UserError, match="history \\+ 1 = 3 frames, got 2"):
        toy_model.rewards_window(make_frames(2, 8), 5)


def test_rewards_batch_equals_one_episode_at_a_time(toy_model, make_frames):
    episodes = [make_frames(t, 8, seed=t) for t in (1, 7, 4)]
    one_by_one = [toy_model.rewards(e) for e in episodes]
    toy_model.max_batch = 3  # force several score_windows calls across episode boundaries
    batched = toy_model.rewards_batch(episodes)
    assert [len(b) for b in batched] == [1, 7, 4]
    for a, b in zip(one_by_one, batched):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_rewards_batch_reports_progress_in_frames(toy_model, make_frames):
    episodes = [make_frames(t, 8, seed=t) for t in (1, 7, 4)]
    toy_model.max_batch = 5
    counts: list[int] = []
    toy_model.fit_stats(episodes, progress=counts.append)
    assert counts == [5, 5, 2]  # one call per scored batch, 12 frames in all


def test_stochastic_rewards_are_seeded_per_step(toy_model, make_frames):
    frames = make_frames(6, 8)
    first = toy_model.rewards(frames)
    np.testing.assert_array_equal(first, toy_model.rewards(frames))
    toy_model.sample_seed = 1
    assert not np.allclose(first, toy_model.rewards(frames))


def test_fit_stats_standardizes_the_expert_rewards(toy_model, make_frames):
    experts = [make_frames(10, 8, seed=s) for s in range(3)]
    stats = toy_model.fit_stats(experts)
    assert stats.count == 30
    pooled = np.concatenate(toy_model.rewards_batch(experts))
    assert abs(pooled.mean()) < 1e-5 and pooled.std() == pytest.approx(1.0, abs=1e-4)
    raw = np.concatenate(toy_model.rewards_batch(experts, raw=True))
    np.testing.assert_allclose(raw.mean(), stats.mean, rtol=1e-5)


def _two_task_experts(make_frames):
    """Expert episodes of two tasks whose raw rewards sit at clearly different levels."""
    dark = [make_frames(10, 8, seed=s) // 4 for s in range(3)]
    bright = [255 - make_frames(10, 8, seed=10 + s) // 4 for s in range(2)]
    return dark, bright


def test_fit_stats_measures_each_task_on_its_own_expert_videos(toy_model, make_frames):
    from diffusion_reward.data.episodes import Episode

    dark, bright = _two_task_experts(make_frames)
    episodes = [Episode(f, info={"task": "dark-v3"}) for f in dark] + [Episode(f, info={"task": "bright-v3"})
                                                                       for f in bright]
    pooled = toy_model.fit_stats(episodes)
    assert sorted(toy_model.task_stats) == ["bright-v3", "dark-v3"]
    assert pooled.count == 50 and toy_model.task_stats["dark-v3"].count == 30
    assert toy_model.task_stats["bright-v3"].mean > pooled.mean > toy_model.task_stats["dark-v3"].mean
    # each task's expert rewards are standardized to mean 0, std 1 with its own statistics
    for task, frames in (("dark-v3", dark), ("bright-v3", bright)):
        r = np.concatenate(toy_model.rewards_batch(frames, tasks=[task] * len(frames)))
        assert abs(r.mean()) < 1e-4 and r.std() == pytest.approx(1.0, abs=1e-3)
        np.testing.assert_allclose(toy_model.rewards(frames[0], task=task), r[:10], atol=1e-6)
    # a task without expert videos (unseen), or none at all, falls back to the pooled statistics
    assert toy_model.stats_for("unseen-v3") == pooled == toy_model.stats_for(None)
    np.testing.assert_array_equal(toy_model.rewards(dark[0], task="unseen-v3"), toy_model.rewards(dark[0]))
    assert not np.allclose(toy_model.rewards(dark[0], task="dark-v3"), toy_model.rewards(dark[0]))


def test_fit_stats_takes_tasks_explicitly_and_the_window_path_agrees(toy_model, make_frames):
    dark, bright = _two_task_experts(make_frames)
    toy_model.fit_stats(dark + bright, tasks=["dark-v3"] * 3 + ["bright-v3"] * 2)
    whole = toy_model.rewards(bright[0], task="bright-v3")
    padded = np.concatenate([bright[0][:1], bright[0][:1], bright[0]])
    for j in (0, 4, 9):
        assert toy_model.rewards_window(padded[j:j + 3], j, task="bright-v3") == pytest.approx(whole[j], abs=1e-6)
    with pytest.raises(ValueError, match="2 tasks for 5 episodes"):
        toy_model.fit_stats(dark + bright, tasks=["dark-v3", "bright-v3"])


def test_task_statistics_are_saved_with_the_model(tmp_path, toy_model, make_frames):
    dark, bright = _two_task_experts(make_frames)
    toy_model.fit_stats(dark + bright, tasks=["dark-v3"] * 3 + ["bright-v3"] * 2)
    toy_model.save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert sorted(config["task_stats"]) == ["bright-v3", "dark-v3"]
    loaded = load_reward_model(tmp_path / "m", device="cpu")
    assert loaded.task_stats == toy_model.task_stats and loaded.stats == toy_model.stats
    np.testing.assert_array_equal(loaded.rewards(bright[1], task="bright-v3"),
                                  toy_model.rewards(bright[1], task="bright-v3"))


def test_the_cameras_a_model_was_fit_on_are_saved_and_checked(tmp_path):
    model = MotionReward(device="cpu")
    model.check_camera("reach-v3", "corner2")  # nothing recorded: nothing to check
    model.cameras = {"reach-v3": ["corner2-near"], "door": ["top"]}
    model.save_pretrained(tmp_path / "m")
    loaded = load_reward_model(tmp_path / "m", device="cpu")
    assert loaded.cameras == model.cameras
    loaded.check_camera("reach-v3", "corner2-near")
    loaded.check_camera("reach-v3", None)  # frames of unknown origin (a user's video) pass
    with pytest.raises(UserError, match=r"reach-v3's frames from camera corner2-near, .* 'corner2'.*--camera corner2-near"):
        loaded.check_camera("reach-v3", "corner2")
    loaded.check_camera("drawer-open-v3", "top")  # a task it never saw: any camera it saw
    with pytest.raises(UserError, match=r"fit on frames from camera corner2-near / top"):
        loaded.check_camera("drawer-open-v3", "corner2")
    with pytest.raises(UserError, match="top"):
        loaded.check_camera("door", "vil_camera")


# ---- artefacts and registry ------------------------------------------------------------------

def _trained_rnd(frames):
    model = RNDReward(RND_PRESETS["tiny"], device="cpu")
    for _ in range(3):
        model.update({"next_obs": frames})
    return model


def _trained_amp(frames):
    model = AMPReward(AMP_PRESETS["tiny"], device="cpu")
    model.attach_expert(frames[:4])
    for _ in range(3):
        model.update({"next_obs": frames[4:]})
    return model


@pytest.mark.parametrize("build", ["rnd", "amp", "sparse", "motion", "toy"])
def test_save_and_load_give_identical_rewards(tmp_path, toy_model, make_frames, build):
    frames = make_frames(8, 16)
    model = {"rnd": lambda: _trained_rnd(frames), "amp": lambda: _trained_amp(frames),
             "sparse": lambda: SparseReward(device="cpu"), "motion": lambda: MotionReward(device="cpu"),
             "toy": lambda: toy_model}[build]()
    frames = frames[:, :8, :8] if build == "toy" else frames
    model.fit_stats([frames[:5], frames[3:]], min_std=1e-3)
    model.sample_seed = 7
    model.save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["kind"] == model.kind and (tmp_path / "m" / "model.safetensors").exists()

    loaded = load_reward_model(tmp_path / "m", device="cpu")
    assert type(loaded) is type(model)
    assert loaded.stats == model.stats and loaded.sample_seed == 7
    np.testing.assert_array_equal(loaded.rewards(frames), model.rewards(frames))
    np.testing.assert_array_equal(loaded.rewards(frames, raw=True), model.rewards(frames, raw=True))
    again = type(model).from_pretrained(tmp_path / "m", device="cpu")
    np.testing.assert_array_equal(again.rewards(frames), model.rewards(frames))


def test_loading_a_missing_directory_names_it_and_the_kinds(tmp_path):
    with pytest.raises(UserError, match=r"nowhere.*known kinds: .*motion.*rnd"):
        load_reward_model(tmp_path / "nowhere")


def test_loading_a_directory_without_config(tmp_path):
    with pytest.raises(UserError, match=r"no config.json"):
        load_reward_model(tmp_path)


def test_unknown_kind_names_the_file_and_the_known_kinds(tmp_path):
    MotionReward(device="cpu").save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "kind": "telepathy"}))
    with pytest.raises(UserError, match=r"config.json: unknown reward kind 'telepathy'; known kinds: .*amp"):
        load_reward_model(tmp_path)


def test_from_pretrained_of_another_kind_is_refused(tmp_path):
    MotionReward(device="cpu").save_pretrained(tmp_path)
    with pytest.raises(UserError, match="'motion' reward model, not 'rnd'"):
        RNDReward.from_pretrained(tmp_path)
    assert isinstance(RewardModel.from_pretrained(tmp_path), MotionReward)


def test_weights_of_another_architecture_are_refused(tmp_path):
    RNDReward(RND_PRESETS["tiny"], device="cpu").save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["config"]["channels"] = [8, 16, 16]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="model.safetensors: does not match"):
        load_reward_model(tmp_path, device="cpu")


def test_registry_rejects_a_second_class_for_a_kind():
    with pytest.raises(ValueError, match="already registered"):
        @register_reward("motion")
        class OtherMotion(MotionReward):
            pass
    assert {"rnd", "amp", "sparse", "motion", "test-toy-history2"} <= set(known_kinds())
