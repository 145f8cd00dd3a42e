"""Training the codec end to end: the train-codec command, exact resume, clear data errors."""

from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from diffusion_reward import cli
from diffusion_reward.data.episodes import DatasetError, DatasetWriter, Episode
from diffusion_reward.models.codec import PRESETS, VQGAN, CodecConfig
from diffusion_reward.train.codec import (TRAIN_PRESETS, CodecTrainConfig, foreground_mask, static_scene,
                                          token_stability, train_codec, weighted_mean)
from diffusion_reward.train.data import FrameDataset, WindowDataset, load_frames


def squares_episode(seed: int, length: int = 12, size: int = 64) -> Episode:
    """A coloured square moving across a two-tone background."""
    rng = np.random.default_rng(seed)
    colour = rng.integers(60, 256, 3)
    start, velocity = rng.integers(0, size - 16, 2), rng.integers(-3, 4, 2)
    frames = np.zeros((length, size, size, 3), np.uint8)
    frames[:, size // 2:] = (90, 70, 50)
    frames[:, :size // 2] = (40, 40, 60)
    for t in range(length):
        y, x = np.clip(start + t * velocity, 0, size - 16)
        frames[t, y:y + 16, x:x + 16] = colour
    return Episode(frames=frames)


def make_squares(root, train: int = 3, test: int = 1, length: int = 12, random: int = 0):
    """Expert episodes (train and test) and ``random`` test episodes of another policy."""
    writer = DatasetWriter(root, {"image_size": 64})
    for i in range(train + test + random):
        policy = "expert" if i < train + test else "random"
        writer.add(squares_episode(i, length), task="squares", policy=policy, split="train" if i < train else "test",
                   seed=i, source="synthetic")
    return root


@pytest.fixture(scope="module")
def squares(tmp_path_factory):
    return make_squares(tmp_path_factory.mktemp("data") / "squares", random=1)


def _loop(tmp_path, name, **kw):
    return dataclasses.replace(TRAIN_PRESETS["tiny"][1], run_dir=str(tmp_path / name), tensorboard=False,
                               progress=False, threads=1, **kw)


def test_foreground_is_what_moves_over_the_static_scene() -> None:
    frames = np.concatenate([squares_episode(s).frames for s in range(3)])
    scene = static_scene(frames)
    np.testing.assert_array_equal(scene[:32, :, :], np.broadcast_to(np.array([40, 40, 60], np.uint8), (32, 64, 3)))
    mask = foreground_mask(frames, scene)
    squares = (frames != scene).any(-1)  # the coloured squares, the only thing not in the scene
    np.testing.assert_array_equal(mask, squares)
    assert 0.05 < mask.mean() < 0.07  # one 16x16 square in a 64x64 frame


def test_weighted_mean_counts_weighted_pixels_more() -> None:
    values = torch.zeros(1, 3, 2, 2)
    values[..., 0, 0] = 1.0
    plain = weighted_mean(values, torch.ones(1, 1, 2, 2))
    weighted = torch.ones(1, 1, 2, 2)
    weighted[..., 0, 0] = 4.0
    assert float(plain) == pytest.approx(0.25) and float(weighted_mean(values, weighted)) == pytest.approx(4 / 7)


def test_token_stability_counts_code_changes_and_those_of_unchanged_cells() -> None:
    frames = np.zeros((3, 64, 64, 3), np.uint8)
    frames[1:, :8, :8] = 200  # cell (0, 0) changes at step 1, nothing at step 2
    codes = torch.zeros(3, 8, 8, dtype=torch.int64)
    codes[1:, 0, 0] = 1  # the changed cell is recoded: information
    codes[1:, 0, 1] = 2  # its unchanged neighbour too: flicker
    codes[2, 5, 5] = 3  # an unchanged cell recoded in a still frame: flicker

    class HandMadeCodec:
        config = CodecConfig(codebook_size=8)

        def encode_frames(self, f: np.ndarray) -> torch.Tensor:
            assert f.shape == frames.shape
            return codes

    stats = token_stability(HandMadeCodec(), [frames, frames[:1]])  # a 1-frame episode has no step: skipped
    assert stats["tokens_changed_per_step"] == pytest.approx(3 / 2)
    assert stats["token_flicker"] == pytest.approx(2 / (63 + 64))
    assert token_stability(HandMadeCodec(), [frames[:1]]) == {}


def test_foreground_weighting_trains_and_the_foreground_psnr_is_reported(squares, tmp_path, capsys, caplog) -> None:
    out = tmp_path / "codec"
    rc = cli.main(["train-codec", "--data", str(squares), "--preset", "tiny", "--steps", "3", "--batch-size", "4",
                   "--foreground-weight", "9", "--crop-size", "32", "--whole-frame-fraction", "0.4",
                   "--run-dir", str(tmp_path / "run"), "--out", str(out), "--no-tensorboard", "--no-progress",
                   "--threads", "1"])
    assert rc == 0
    printed = capsys.readouterr()
    # the log line reaches stderr or, once pytest has taken over logging, its log capture
    assert "foreground weighting:" in printed.err + printed.out + caplog.text and "(foreground " in printed.out
    metrics = json.loads((out / "metrics.json").read_text())
    assert np.isfinite(metrics["test/psnr_foreground"]) and 0.05 < metrics["test/foreground_fraction"] < 0.07


def test_paper_preset_trains_saves_and_loads(squares, tmp_path, capsys) -> None:
    """The reference-size codec (~20.6M parameters) through the real command: two steps, then the
    saved model loads and reconstructs held-out frames."""
    out = tmp_path / "codec"
    rc = cli.main(["train-codec", "--data", str(squares), "--preset", "paper", "--steps", "2", "--batch-size", "2",
                   "--eval-frames", "4", "--grid-frames", "2", "--run-dir", str(tmp_path / "run"), "--out", str(out),
                   "--no-tensorboard", "--no-progress", "--threads", "1"])
    assert rc == 0 and "test: PSNR" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 2 and metrics["preset"] == "paper" and np.isfinite(metrics["test/psnr"])
    codec = VQGAN.from_pretrained(out)
    assert codec.config == PRESETS["paper"] and 19.5e6 < codec.num_parameters() < 21.5e6
    frames = squares_episode(9, length=2).frames
    codes = codec.encode_frames(frames)
    assert codes.shape == (2, 8, 8) and int(codes.max()) < 1024
    rec = codec.decode_to_frames(codes)
    assert rec.shape == (2, 64, 64, 3) and rec.dtype == np.uint8


def test_train_codec_command_writes_a_loadable_model(squares, tmp_path, capsys) -> None:
    out = tmp_path / "codec"
    rc = cli.main(["train-codec", "--data", str(squares), "--preset", "tiny", "--steps", "4", "--batch-size", "8",
                   "--disc-start", "2", "--run-dir", str(tmp_path / "run"), "--out", str(out), "--no-tensorboard",
                   "--no-progress", "--threads", "1"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "test: PSNR" in printed and "codebook usage" in printed
    codec = VQGAN.from_pretrained(out)
    assert codec.config.codebook_size == 128 and codec.config.token_grid == 8
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("train/psnr", "test/psnr", "train/codebook_usage", "test/codebook_usage", "test/perplexity",
                "test_random/psnr"):
        assert np.isfinite(metrics[key]), key
    assert metrics["steps"] == 4 and metrics["test_episodes"] == 1 and metrics["train_frames"] == 36
    assert 0 <= metrics["test/token_flicker"] <= 1 and 0 <= metrics["test/tokens_changed_per_step"] <= 64
    assert "codes changed per step" in printed
    assert metrics["test/frames"] == 12 and metrics["test_random/frames"] == 12
    assert codec.extra["metrics"]["test/psnr"] == metrics["test/psnr"]
    grid = np.asarray(Image.open(out / "reconstructions.png"))
    assert grid.shape == (2 * 64 * 2, 8 * 64 * 2, 3)  # originals over reconstructions, 8 held-out frames, 2x
    run = tmp_path / "run"
    assert (run / "config.json").exists() and (run / "train.csv").exists() and (run / "final.csv").exists()
    header = (run / "train.csv").read_text().splitlines()[0]
    assert "d_loss" in header and "gan_weight" in header  # the GAN switched on at step 2


def test_codec_training_resumes_exactly(squares, tmp_path) -> None:
    cfg = CodecTrainConfig(lr=1e-3, disc_start=2)
    model = dataclasses.replace(PRESETS["tiny"], revive_after=1)
    train_codec(squares, tmp_path / "full", "tiny", model, cfg, _loop(tmp_path, "full-run", steps=5, batch_size=4))
    train_codec(squares, tmp_path / "part", "tiny", model, cfg, _loop(tmp_path, "part-run", steps=3, batch_size=4))
    train_codec(squares, tmp_path / "part", "tiny", model, cfg,
                _loop(tmp_path, "part-run", steps=5, batch_size=4, resume=True))
    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    b = load_file(str(tmp_path / "part" / "model.safetensors"))
    assert all((a[k] == b[k]).all() for k in a)


def test_a_killed_crop_run_resumes_exactly_into_the_whole_frame_phase(squares, tmp_path) -> None:
    """Killed at step 3 of 6 (before the whole-frame steps 4-5), the resumed run draws the same crops and
    whole frames and ends with the same weights."""
    import shutil

    from diffusion_reward.train.trainer import checkpoint_dirs

    cfg = CodecTrainConfig(lr=1e-3, gan_weight=0.0, crop_size=32, whole_frame_fraction=1 / 3, l2_weight=1.0)
    loop = dict(steps=6, batch_size=4, checkpoint_every=1, keep_checkpoints=10)
    train_codec(squares, tmp_path / "full", "tiny", PRESETS["tiny"], cfg, _loop(tmp_path, "full-run", **loop))
    shutil.copytree(tmp_path / "full-run", tmp_path / "part-run")
    for ckpt in checkpoint_dirs(tmp_path / "part-run"):
        if int(ckpt.name.split("-")[1]) > 3:
            shutil.rmtree(ckpt)  # as if killed just after the step-3 checkpoint
    train_codec(squares, tmp_path / "part", "tiny", PRESETS["tiny"], cfg,
                _loop(tmp_path, "part-run", resume=True, **loop))
    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    b = load_file(str(tmp_path / "part" / "model.safetensors"))
    assert all((a[k] == b[k]).all() for k in a)


def test_bad_or_empty_datasets_give_clear_errors(squares, tmp_path, capsys) -> None:
    rc = cli.main(["train-codec", "--data", str(tmp_path / "missing"), "--preset", "tiny"])
    assert rc == 2 and "no such dataset directory" in capsys.readouterr().err
    DatasetWriter(tmp_path / "empty", {"image_size": 64}).flush()
    with pytest.raises(DatasetError, match="no episodes with split=train"):
        train_codec(tmp_path / "empty", tmp_path / "x", "tiny", trainer_config=_loop(tmp_path, "r1"))
    only_test = make_squares(tmp_path / "only-test", train=0, test=1)
    rc = cli.main(["train-codec", "--data", str(only_test), "--preset", "tiny", "--run-dir", str(tmp_path / "r2")])
    assert rc == 2 and "no episodes with split=train" in capsys.readouterr().err
    with pytest.raises(DatasetError, match="codec expects 32x32"):
        train_codec(squares, tmp_path / "x", "tiny",
                    model_config=CodecConfig(image_size=32, channels=(32, 32, 32, 32)),
                    trainer_config=_loop(tmp_path, "r3"))


def test_every_option_has_help() -> None:
    parser = cli.build_parser("train-codec")
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["train-codec"]
    for action in sub._actions:
        assert action.help and action.help.strip(), action.dest
    text = sub.format_help()
    assert "--lpips-vgg" in text and "--bf16" in text and "--resume" in text and "--codebook-size" in text


def test_frame_and_window_datasets(squares) -> None:
    assert load_frames(squares, split="test").shape == (24, 64, 64, 3)
    frames = load_frames(squares, split="test", policy="expert")
    assert frames.shape == (12, 64, 64, 3) and frames.dtype == np.uint8
    data = FrameDataset(frames)
    batch = data.get_batch(np.array([0, 5]))
    assert batch.shape == (2, 3, 64, 64) and float(batch.min()) >= -1 and float(batch.max()) <= 1
    seqs = [np.arange(4), np.arange(10, 13)]
    windows = WindowDataset(seqs, length=3, skip=1)
    assert len(windows) == 7
    assert windows[0].tolist() == [0, 0, 0] and windows[3].tolist() == [1, 2, 3]
    assert windows[4].tolist() == [10, 10, 10] and windows[6].tolist() == [10, 11, 12]
    assert WindowDataset(seqs, length=2, skip=2, pad_start=False).get_batch(np.array([0, 1, 2])).tolist() == [
        [0, 2], [1, 3], [10, 12]]
    with pytest.raises(ValueError, match="long enough"):
        WindowDataset([np.arange(2)], length=3, pad_start=False)


def test_frame_dataset_crops_on_the_token_grid() -> None:
    frames = np.arange(2 * 64 * 64 * 3, dtype=np.int64).reshape(2, 64, 64, 3).astype(np.uint8)
    frames[..., 0] = np.arange(64)[None, :, None]  # red = row
    frames[..., 1] = np.arange(64)[None, None, :]  # green = column
    data = FrameDataset(frames, crop=32, align=8)
    torch.manual_seed(0)
    seen = set()
    for _ in range(20):
        batch = data.get_batch(np.array([0, 1, 1]))
        assert batch.shape == (3, 3, 32, 32)
        pixels = ((batch + 1) * 127.5).round().long()
        for crop in pixels:
            top, left = int(crop[0, 0, 0]), int(crop[1, 0, 0])
            assert top % 8 == 0 and left % 8 == 0 and top + 32 <= 64 and left + 32 <= 64
            assert (crop[0] == torch.arange(top, top + 32)[:, None]).all()  # a contiguous window
            assert (crop[1] == torch.arange(left, left + 32)[None, :]).all()
            seen.add((top, left))
    assert len(seen) > 10  # offsets vary from frame to frame and batch to batch
    with pytest.raises(ValueError, match="multiple of 8"):
        FrameDataset(frames, crop=20, align=8)


def test_crops_need_a_codec_without_attention(squares, tmp_path) -> None:
    with pytest.raises(ValueError, match="without self-attention"):
        train_codec(squares, tmp_path / "codec", "tiny", model_config=dataclasses.replace(PRESETS["tiny"],
                    mid_attention=True), train_config=CodecTrainConfig(crop_size=32),
                    trainer_config=_loop(tmp_path, "run", steps=1))


def test_crop_training_ends_on_whole_frames(squares, tmp_path, monkeypatch) -> None:
    """With whole_frame_fraction, the last steps train on whole frames (the crop batch's pixel count), so
    GroupNorm meets whole-frame statistics before the codec is used on whole frames."""
    seen: list[tuple[int, ...]] = []
    forward = VQGAN.forward

    def recording(self, x):
        if self.training:
            seen.append(tuple(x.shape))
        return forward(self, x)

    monkeypatch.setattr(VQGAN, "forward", recording)
    train_codec(squares, tmp_path / "codec", "tiny", model_config=PRESETS["tiny"],
                train_config=CodecTrainConfig(crop_size=32, whole_frame_fraction=0.25, gan_weight=0.0,
                                              l2_weight=1.0),
                trainer_config=_loop(tmp_path, "run", steps=8, batch_size=8))
    assert seen == [(8, 3, 32, 32)] * 6 + [(2, 3, 64, 64)] * 2
    header = (tmp_path / "run" / "train.csv").read_text().splitlines()[0].split(",")
    assert "mse" in header and "l1" in header  # the squared-error term is logged apart


@pytest.mark.slow
def test_tiny_codec_learns_the_squares(tmp_path) -> None:
    data = make_squares(tmp_path / "data", train=8, test=2, length=16, random=1)
    loop = _loop(tmp_path, "run", steps=400, batch_size=16)
    result = train_codec(data, tmp_path / "codec", "tiny", trainer_config=loop,
                         train_config=CodecTrainConfig(lr=2e-3, cosine_decay=True, gan_weight=0.0))
    m = result.metrics
    assert m["test/psnr"] > 25 and m["test/codebook_usage"] > 0.5, m
