"""train-video end to end on a tiny synthetic dataset and an untrained tiny codec."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from diffusion_reward import cli
from diffusion_reward.data.episodes import DatasetWriter, Episode
from diffusion_reward.models.codec import PRESETS as CODEC_PRESETS
from diffusion_reward.models.codec import VQGAN
from diffusion_reward.models.video import CodecMismatchError, load_video_model
from diffusion_reward.models.video.videogpt import VideoGPT
from diffusion_reward.models.video.vqdiffusion import VQDiffusion
from diffusion_reward.train.video import tokenize_episodes
from diffusion_reward.data.episodes import load_dataset


def moving_square(rng, steps, jumpy=False):
    frames = np.full((steps, 64, 64, 3), 40, np.uint8)
    x, y = rng.integers(0, 48, 2)
    for t in range(steps):
        if jumpy:
            x, y = rng.integers(0, 48, 2)
        else:
            x = (x + 2) % 48
        frames[t, y:y + 16, x:x + 16] = (220, 180, 30)
    return Episode(frames=frames)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("video")
    rng = np.random.default_rng(0)
    writer = DatasetWriter(root / "data", {"image_size": 64})
    for i in range(4):
        writer.add(moving_square(rng, 10), task="slide", policy="expert", split="train", seed=i)
    writer.add(moving_square(rng, 10), task="slide", policy="expert", split="test", seed=9)
    writer.add(moving_square(rng, 10, jumpy=True), task="slide", policy="random", split="train", seed=10)
    torch.manual_seed(0)
    VQGAN(CODEC_PRESETS["tiny"]).save_pretrained(root / "codec")
    return root


def train(root, name, *extra):
    args = ["train-video", "--codec", str(root / "codec"), "--data", str(root / "data"), "--preset", "tiny",
            "--run-dir", str(root / name), "--no-tensorboard", "--no-progress", "--device", "cpu",
            "--eval-windows", "8", "--grid-samples", "2", *extra]
    assert cli.main(args) == 0
    return root / name / "model"


def test_train_vqdiffusion_writes_a_loadable_artefact_with_scores_and_samples(setup, capsys):
    out = train(setup, "vqd", "--steps", "6", "--checkpoint-every", "3")
    printed = capsys.readouterr().out
    assert "bound in bits/token" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["uniform_bits_per_token"] == pytest.approx(math.log2(128))
    for key in ("test/bound_bits_per_token", "train/bound_bits_per_token", "compare/bound_bits_per_token",
                "test/sample_entropy_bits_per_token", "compare/sample_entropy_bits_per_token"):
        assert math.isfinite(metrics[key]) and metrics[key] > 0, key
    assert metrics["steps"] == 6 and metrics["compare_policy"] == "random"
    image = np.asarray(Image.open(out / "samples.png"))
    # 2 rows (one test episode, then a repeat is not possible: rows = episodes available) of k=2 cond +
    # true + reconstruction + 2 samples, 64 px each, doubled, with white gaps
    assert image.shape[1] == 2 * (6 * 64 + 2 * 2) and image.dtype == np.uint8
    model = VQDiffusion.from_pretrained(out)
    assert model.config.codebook_size == 128 and model.codec["path"] == str((setup / "codec").resolve())
    assert isinstance(load_video_model(out, codec=setup / "codec"), VQDiffusion)
    assert (setup / "vqd" / "tokens.safetensors").is_file()
    assert (setup / "vqd" / "train.csv").is_file()


def test_resume_continues_from_the_last_checkpoint(setup):
    train(setup, "resumed", "--steps", "4", "--checkpoint-every", "2")
    out = train(setup, "resumed", "--steps", "6", "--checkpoint-every", "2", "--resume")
    assert json.loads((out / "metrics.json").read_text())["steps"] == 6
    rows = (setup / "resumed" / "train.csv").read_text().strip().splitlines()
    assert rows[-1].startswith("6,")


def test_a_used_run_directory_is_refused_before_tokenising(setup, capsys):
    train(setup, "used", "--steps", "2", "--checkpoint-every", "2")
    (setup / "used" / "tokens.safetensors").unlink()
    assert cli.main(["train-video", "--codec", str(setup / "codec"), "--data", str(setup / "data"), "--preset",
                     "tiny", "--run-dir", str(setup / "used"), "--steps", "4", "--no-progress"]) != 0
    assert "already holds checkpoints; pass --resume" in capsys.readouterr().err
    assert not (setup / "used" / "tokens.safetensors").exists()  # refused before the slow tokenising


def test_a_different_codec_is_refused(setup, tmp_path):
    torch.manual_seed(1)
    VQGAN(CODEC_PRESETS["tiny"]).save_pretrained(tmp_path / "other")
    out = setup / "vqd" / "model"
    if not out.exists():
        out = train(setup, "vqd2", "--steps", "2")
    with pytest.raises(CodecMismatchError):
        VQDiffusion.from_pretrained(out, codec=tmp_path / "other")


def test_train_videogpt(setup):
    out = train(setup, "gpt", "--model", "videogpt", "--steps", "4")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test/nll_bits_per_token"] > 0 and "compare/nll_bits_per_token" in metrics
    assert isinstance(load_video_model(out), VideoGPT)


def test_vqdiffusion_only_options_are_refused_for_videogpt(setup, capsys):
    args = ["train-video", "--model", "videogpt", "--codec", str(setup / "codec"), "--data", str(setup / "data"),
            "--cond-width", "64", "--run-dir", str(setup / "bad")]
    assert cli.main(args) == 2
    assert "--cond-width" in capsys.readouterr().err


def test_token_cache_is_reused_and_keyed_by_codec(setup, tmp_path):
    codec = VQGAN.from_pretrained(setup / "codec")
    data = load_dataset(setup / "data").select(split="train", policy="expert")
    cache = tmp_path / "tokens.safetensors"
    first = tokenize_episodes(codec, data, cache, "fp-a")
    assert len(first) == 4 and first[0].shape == (10, 8, 8) and first[0].dtype == np.int16

    class Exploding:
        def encode_frames(self, *a, **k):
            raise AssertionError("should have used the cache")

    again = tokenize_episodes(Exploding(), data, cache, "fp-a")
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    with pytest.raises(AssertionError):
        tokenize_episodes(Exploding(), data, cache, "fp-b")


def test_retired_options_are_gone_from_the_command_line(capsys):
    for flag in ("--shift", "--still", "--copy-previous", "--dropout"):
        with pytest.raises(SystemExit):
            cli.main(["train-video", "--codec", "c", "--data", "d", flag, "1"])
        assert "unrecognized arguments" in capsys.readouterr().err


def test_sticky_training_windows_keep_the_codes_of_unchanged_cells(setup):
    from diffusion_reward.models.codec import unchanged_cells
    from diffusion_reward.train.video import _windows

    frames = np.zeros((4, 16, 16, 3), np.uint8)
    frames[2:, 8:, 8:] = 255  # cell (1, 1) changes at step 2; nothing else ever changes
    same = unchanged_cells(frames, 2)
    assert not same[0].any() and same[1].all() and same[3].all()
    assert same[2].sum() == 3 and not same[2, 1, 1]
    assert unchanged_cells(frames, 2, skip=2)[2].sum() == 3 and not unchanged_cells(frames, 2, skip=2)[:2].any()
    codes = np.arange(4 * 4).reshape(4, 2, 2)  # a new code everywhere at every step: all flicker but one
    plain = _windows([codes], 3, 1).get_batch(torch.arange(4))
    sticky = _windows([codes], 3, 1, [same]).get_batch(torch.arange(4))
    assert torch.equal(plain, torch.from_numpy(codes[np.clip(np.arange(4)[:, None] + np.arange(-2, 1), 0, None)]))
    # window ending at step 3 = frames (1, 2, 3): frame 1 keeps its codes, frame 2 recodes only the changed cell
    # and frame 3 changes nothing, so it carries frame 2's (kept) codes
    w = sticky[3]
    assert torch.equal(w[0], torch.from_numpy(codes[1]))
    assert torch.equal(w[1], torch.tensor([[4, 5], [6, 11]])) and torch.equal(w[2], w[1])
    # a whole run with the option: recorded in the model's config, which the reward then follows
    out = train(setup, "sticky", "--steps", "2", "--sticky-codes")
    assert VQDiffusion.from_pretrained(out).config.sticky_codes is True
