"""Diffusion Reward and VIPER on tiny untrained networks: the contract, windows, determinism, artefacts."""

import dataclasses

import numpy as np
import pytest
import torch

from diffusion_reward.errors import UserError
from diffusion_reward.models.codec import VQGAN
from diffusion_reward.models.codec.vqgan import PRESETS as CODEC_PRESETS
from diffusion_reward.models.video import videogpt, vqdiffusion
from diffusion_reward.rewards import load_reward_model
from diffusion_reward.rewards.diffusion import DiffusionReward, DiffusionRewardConfig
from diffusion_reward.rewards.viper import ViperReward


@pytest.fixture(scope="module")
def codec():
    torch.manual_seed(0)
    cfg = dataclasses.replace(CODEC_PRESETS["tiny"], image_size=16)
    return VQGAN(cfg).eval()


def _vqd(codec, **kw):
    torch.manual_seed(1)
    return vqdiffusion.build("tiny", codebook_size=codec.config.codebook_size, grid=codec.config.token_grid, **kw)


def _frames(t=6, size=16, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (t, size, size, 3), dtype=np.uint8)


def _diffusion(codec, variant="entropy", **kw):
    return DiffusionReward(codec, _vqd(codec), DiffusionRewardConfig(variant=variant, bf16=False, **kw), device="cpu")


def test_history_follows_the_paper_windows(codec):
    assert _diffusion(codec, "entropy").history == 1      # condition on (j-1, j), score the next frame
    assert _diffusion(codec, "likelihood").history == 2   # score frame j given (j-2, j-1)
    torch.manual_seed(1)
    skip = vqdiffusion.build("tiny", codebook_size=codec.config.codebook_size, grid=codec.config.token_grid,
                             frame_skip=2)
    assert DiffusionReward(codec, skip, DiffusionRewardConfig(variant="likelihood", bf16=False), "cpu").history == 4


@pytest.mark.parametrize("variant", ["entropy", "likelihood"])
def test_rewards_are_deterministic_and_equal_step_by_step(codec, variant):
    model = _diffusion(codec, variant)
    frames = _frames()
    r = model.rewards(frames)
    assert r.shape == (6,) and r.dtype == np.float32 and np.all(np.isfinite(r))
    np.testing.assert_array_equal(r, model.rewards(frames))
    h = model.history
    for j in range(len(frames)):
        idx = np.clip(np.arange(j - h, j + 1), 0, None)
        assert model.rewards_window(frames[idx], j) == pytest.approx(r[j], rel=1e-4, abs=1e-3)
    model.sample_seed = 5
    assert not np.array_equal(model.rewards(frames), r)


def test_likelihood_never_conditions_on_its_target(codec):
    model = _diffusion(codec, "likelihood")
    windows = np.stack([_frames(3, seed=1)])
    cond, target = model.window_tokens(windows)
    direct = codec.encode_frames(windows[0])
    assert torch.equal(cond[0], direct[:2]) and torch.equal(target[0], direct[2])


def test_more_samples_average_the_estimate(codec):
    one, four = _diffusion(codec, num_samples=1), _diffusion(codec, num_samples=4)
    frames = _frames(4)
    assert not np.allclose(one.rewards(frames), four.rewards(frames))


@pytest.mark.parametrize("kind", ["diffusion", "viper"])
def test_save_load_round_trip_is_self_contained(codec, kind, tmp_path):
    if kind == "diffusion":
        model = _diffusion(codec, "likelihood")
    else:
        torch.manual_seed(2)
        gpt = videogpt.VideoGPT(dataclasses.replace(videogpt.PRESETS["tiny"], codebook_size=codec.config.codebook_size,
                                                    grid=codec.config.token_grid))
        model = ViperReward(codec, gpt, device="cpu")
    model.fit_stats([_frames(5, seed=s) for s in range(3)])
    frames = _frames(seed=9)
    expected = model.rewards(frames)
    assert abs(float(np.mean(model.rewards(_frames(5, seed=0))))) < 3
    model.save_pretrained(tmp_path / "reward")
    loaded = load_reward_model(tmp_path / "reward", device="cpu")
    assert type(loaded) is type(model) and loaded.stats == model.stats
    np.testing.assert_allclose(loaded.rewards(frames), expected, rtol=1e-5, atol=1e-5)


def test_viper_scores_are_log_likelihoods(codec):
    torch.manual_seed(2)
    gpt = videogpt.VideoGPT(dataclasses.replace(videogpt.PRESETS["tiny"], codebook_size=codec.config.codebook_size,
                                                grid=codec.config.token_grid))
    model = ViperReward(codec, gpt, device="cpu")
    assert model.history == 2
    r = model.rewards(_frames())
    assert np.all(r < 0) and np.all(r > -codec.config.token_grid ** 2 * np.log(codec.config.codebook_size) * 3)


def test_wrong_frame_size_and_mismatched_networks_are_clear_errors(codec):
    model = _diffusion(codec)
    with pytest.raises(UserError, match="16x16"):
        model.rewards(_frames(size=20))
    assert model.rewards(_frames(size=20), resize=True).shape == (6,)
    torch.manual_seed(1)
    other = vqdiffusion.build("tiny", codebook_size=codec.config.codebook_size + 1, grid=codec.config.token_grid)
    with pytest.raises(UserError, match="codes"):
        DiffusionReward(codec, other, device="cpu")


def test_distinct_frames_encodes_each_frame_once_and_rebuilds_the_windows():
    from diffusion_reward.rewards.video_based import distinct_frames
    base = _frames(4)
    frames = base[[0, 0, 1, 2, 1, 3, 0]]
    first, inverse = distinct_frames(frames)
    assert first.tolist() == [0, 2, 3, 5]  # first occurrence of each distinct frame, in order
    np.testing.assert_array_equal(frames[first][inverse], frames)
    strided = frames[:, ::2]  # a strided view is compared by its values, not its memory layout
    first, inverse = distinct_frames(strided)
    assert first.tolist() == [0, 2, 3, 5]
    np.testing.assert_array_equal(strided[first][inverse], strided)


def test_bf16_rewards_read_the_same_codes_the_video_model_was_trained_on(codec, monkeypatch):
    """The networks may run in bf16, the codec's encoder does not: training tokenises in float32,
    and under bf16 autocast ~8% of the codes of real MetaWorld frames flipped to a neighbouring code."""
    model = DiffusionReward(codec, _vqd(codec), DiffusionRewardConfig(bf16=True), device="cpu")
    assert model.bf16
    seen = []
    encode = codec.encode_frames

    def spy(frames, *args, **kwargs):
        seen.append(torch.is_autocast_enabled("cpu"))
        return encode(frames, *args, **kwargs)

    monkeypatch.setattr(codec, "encode_frames", spy)
    frames = _frames(12, seed=5)
    model.rewards(frames, raw=True)
    assert seen and not any(seen)
    cond, _ = model.window_tokens(np.stack([frames[i:i + 2] for i in range(11)]))
    np.testing.assert_array_equal(cond[:, 1].numpy(), encode(frames[1:12]).numpy())


def _one_cell_moves(t=5, size=16, seed=3):
    """Random frames whose only change along the episode is the top-left 8x8 cell at every step."""
    frames = np.repeat(np.random.default_rng(seed).integers(0, 255, (1, size, size, 3), dtype=np.uint8), t, axis=0)
    frames[:, :8, :8] = np.random.default_rng(seed + 1).integers(0, 255, (t, 8, 8, 3), dtype=np.uint8)
    return frames


def test_sticky_codes_keep_the_code_of_every_unchanged_cell_in_reward_windows(codec, monkeypatch):
    torch.manual_seed(1)
    net = vqdiffusion.build("tiny", codebook_size=codec.config.codebook_size, grid=codec.config.token_grid,
                            sticky_codes=True)
    model = DiffusionReward(codec, net, DiffusionRewardConfig(variant="likelihood", bf16=False), device="cpu")
    frames = _one_cell_moves()
    fresh = codec.encode_frames(frames)
    flicker = torch.zeros_like(fresh)
    flicker[:, 1, 1] = torch.arange(len(frames)) % codec.config.codebook_size  # an unchanged cell recoded
    monkeypatch.setattr(codec, "encode_frames", lambda f, *a, **k: (fresh + flicker)[
        [int(np.flatnonzero((frames == x).all(axis=(1, 2, 3)))[0]) for x in f]])
    windows = np.stack([frames[[0, 1, 2]], frames[[2, 3, 4]]])
    cond, target = model.window_tokens(windows)
    tokens = torch.cat([cond, target[:, None]], dim=1)  # (2 windows, 3 frames, 2, 2)
    for w, steps in enumerate(([0, 1, 2], [2, 3, 4])):
        np.testing.assert_array_equal(tokens[w, 0], (fresh + flicker)[steps[0]])  # a window's first frame: its own
        for i in (1, 2):
            assert tokens[w, i, 0, 0] == (fresh + flicker)[steps[i], 0, 0]  # the cell that moved: recoded
            np.testing.assert_array_equal(tokens[w, i].flatten()[1:], tokens[w, 0].flatten()[1:])  # the rest kept
    r = model.rewards(frames)  # the whole episode and window by window agree with sticky codes too
    for j in range(len(frames)):
        idx = np.clip(np.arange(j - model.history, j + 1), 0, None)
        assert model.rewards_window(frames[idx], j) == pytest.approx(r[j], rel=1e-4, abs=1e-3)


def test_frames_the_previous_call_encoded_are_not_encoded_again(codec, monkeypatch):
    model = _diffusion(codec)
    frames = _frames(8, seed=7)
    encoded = []
    encode = codec.encode_frames
    monkeypatch.setattr(codec, "encode_frames", lambda f, *a, **k: encoded.append(len(f)) or encode(f, *a, **k))
    windows = frames[np.clip(np.arange(8)[:, None] + [-1, 0], 0, None)]
    stepped = [model.rewards_window(windows[j], j) for j in range(8)]
    assert encoded == [1] * 8  # a sliding window: only its newest frame is new
    np.testing.assert_allclose(stepped, model.rewards(frames), rtol=1e-4, atol=1e-3)
    model.code_cache = None
    encoded.clear()
    np.testing.assert_array_equal([model.rewards_window(windows[j], j) for j in range(8)], stepped)
    assert encoded == [1] + [2] * 7


def test_code_cache_forgets_the_codes_when_a_codec_weight_changes(codec):
    import copy

    codec = copy.deepcopy(codec)
    model = _diffusion(codec)
    frames = _frames(6, seed=9)
    before = model.codes_of(frames)
    np.testing.assert_array_equal(before, codec.encode_frames(frames))
    with torch.no_grad():
        codec.quant_conv.weight.mul_(-1.0)
    after = model.codes_of(frames)
    np.testing.assert_array_equal(after, codec.encode_frames(frames))
    assert not torch.equal(after, before)
