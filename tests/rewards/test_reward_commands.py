"""fit-reward, score and evaluate-reward through the real command line, on a tiny synthetic dataset."""

import dataclasses
import json

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

from diffusion_reward.cli import main
from diffusion_reward.data.episodes import DatasetWriter, Episode
from diffusion_reward.models.codec import VQGAN
from diffusion_reward.models.codec.vqgan import PRESETS as CODEC_PRESETS
from diffusion_reward.models.video import vqdiffusion
from diffusion_reward.models.video.artefact import codec_reference
from diffusion_reward.rewards import load_reward_model

SIZE = 16


def _episode(rng, bright, t=6):
    frames = np.clip(rng.normal(bright, 20, (t, SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
    return Episode(frames=frames, dense=np.linspace(0, 1, t - 1) * bright / 255)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    rng = np.random.default_rng(0)
    w = DatasetWriter(root, {"image_size": SIZE})
    for task in ("a-v3", "b-v3"):
        for i in range(3):
            w.add(_episode(rng, 200), task=task, policy="expert", split="train", seed=i, camera="cam-" + task)
            w.add(_episode(rng, 40), task=task, policy="random", split="train", seed=i, camera="cam-" + task)
            w.add(_episode(rng, 200), task=task, policy="expert", split="test", seed=10 + i, camera="cam-" + task)
            w.add(_episode(rng, 120), task=task, policy="noisy:0.3", split="test", seed=10 + i, camera="cam-" + task)
            w.add(_episode(rng, 40), task=task, policy="random", split="test", seed=10 + i, camera="cam-" + task)
    w.flush()
    return root


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    codec = VQGAN(dataclasses.replace(CODEC_PRESETS["tiny"], image_size=SIZE))
    codec.save_pretrained(root / "codec")
    video = vqdiffusion.build("tiny", codebook_size=codec.config.codebook_size, grid=codec.config.token_grid)
    video.codec = codec_reference(root / "codec")
    video.save_pretrained(root / "video")
    return root / "video"


def test_fit_every_kind_then_evaluate_and_score(dataset, video_dir, tmp_path, capsys):
    fits = {
        "amp": ["--kind", "amp", "--preset", "tiny", "--steps", "30", "--batch-size", "16"],
        "rnd": ["--kind", "rnd", "--preset", "tiny", "--steps", "5", "--batch-size", "8"],
        "entropy": ["--kind", "diffusion", "--video", str(video_dir), "--no-bf16"],
        "likelihood": ["--kind", "diffusion", "--variant", "likelihood", "--video", str(video_dir), "--no-bf16"],
    }
    for name, argv in fits.items():
        assert main(["fit-reward", *argv, "--data", str(dataset), "--out", str(tmp_path / name)]) == 0
    entropy = load_reward_model(tmp_path / "entropy", device="cpu")
    assert entropy.kind == "diffusion" and entropy.stats is not None and entropy.history == 1
    assert sorted(entropy.task_stats) == ["a-v3", "b-v3"]  # one mean and std per task, as the paper does
    for name in ("entropy", "amp", "rnd"):  # every fitted model remembers the cameras of its videos
        assert load_reward_model(tmp_path / name, device="cpu").cameras == {"a-v3": ["cam-a-v3"], "b-v3": ["cam-b-v3"]}
    assert load_reward_model(tmp_path / "likelihood", device="cpu").config.variant == "likelihood"

    out = tmp_path / "eval"
    models = [f"{n}={tmp_path / n}" for n in fits]
    assert main(["evaluate-reward", "--model", *models, "--data", str(dataset), "--out", str(out)]) == 0
    table = (out / "reward_quality.md").read_text()
    for name in (*fits, "motion"):
        assert f"| {name} | a-v3 |" in table
        assert (out / f"reward_curves_{name}.png").stat().st_size > 1000
    result = json.loads((out / "reward_quality.json").read_text())
    # AMP was trained to tell these bright expert frames from dark random ones
    assert result["models"]["amp"]["mean"]["auroc_random"] == 1.0
    # the JSON names what was evaluated, so a table can be traced back to its models and data
    assert result["run"]["models"]["entropy"] == str((tmp_path / "entropy").resolve())
    assert result["run"]["data"] == [str(dataset.resolve())] and result["run"]["split"] == "test"

    clip = tmp_path / "clip.gif"
    imageio.mimsave(clip, list(np.random.default_rng(1).integers(0, 255, (5, 40, 30, 3), dtype=np.uint8)))
    assert main(["score", str(tmp_path / "entropy"), str(clip), "--out", str(tmp_path / "score")]) == 0
    lines = (tmp_path / "score" / "rewards.csv").read_text().splitlines()
    assert lines[0] == "episode,task,policy,step,reward" and len(lines) == 6
    assert (tmp_path / "score" / "rewards.png").exists()
    assert main(["score", str(tmp_path / "entropy"), str(clip), "--stats-task", "a-v3",
                 "--out", str(tmp_path / "score-a")]) == 0
    pooled = np.array([float(row.split(",")[-1]) for row in lines[1:]])
    per_task = np.array([float(row.split(",")[-1]) for row in
                         (tmp_path / "score-a" / "rewards.csv").read_text().splitlines()[1:]])
    raw = entropy.stats.unstandardize(pooled)
    np.testing.assert_allclose(per_task, entropy.task_stats["a-v3"].standardize(raw), rtol=1e-4, atol=1e-4)
    assert main(["score", str(tmp_path / "rnd"), str(dataset), "--policy", "expert", "--split", "test",
                 "--out", str(tmp_path / "score2")]) == 0
    assert len((tmp_path / "score2" / "rewards.csv").read_text().splitlines()) == 1 + 6 * 6


def test_clear_errors(dataset, tmp_path, capsys):
    assert main(["fit-reward", "--kind", "diffusion", "--data", str(dataset), "--out", str(tmp_path / "x")]) == 2
    assert "--video is required" in capsys.readouterr().err
    assert main(["fit-reward", "--kind", "amp", "--negative-policy", "noisy:0.3", "--data", str(dataset),
                 "--out", str(tmp_path / "x")]) == 2
    assert "train-split 'noisy:0.3'" in capsys.readouterr().err
    assert main(["score", str(tmp_path / "missing"), str(dataset)]) == 2
    assert "missing" in capsys.readouterr().err


def test_fit_reward_sampler_options_reach_the_saved_model(dataset, video_dir, tmp_path):
    out = tmp_path / "argmax"
    assert main(["fit-reward", "--kind", "diffusion", "--video", str(video_dir), "--no-bf16", "--no-gumbel",
                 "--num-samples", "2", "--stride", "20", "--data", str(dataset), "--out", str(out)]) == 0
    cfg = load_reward_model(out, device="cpu").config
    assert (cfg.gumbel, cfg.num_samples, cfg.stride) == (False, 2, 20)
    # without noise the score of an episode does not depend on the sampling seed
    frames = np.random.default_rng(3).integers(0, 255, (5, SIZE, SIZE, 3), dtype=np.uint8)
    a, b = load_reward_model(out, device="cpu"), load_reward_model(out, device="cpu")
    b.sample_seed = 123
    np.testing.assert_allclose(a.rewards(frames, raw=True), b.rewards(frames, raw=True), rtol=1e-5)


def test_evaluating_on_videos_from_another_camera_is_an_error(dataset, tmp_path, capsys):
    assert main(["fit-reward", "--kind", "rnd", "--preset", "tiny", "--steps", "2", "--batch-size", "4",
                 "--data", str(dataset), "--out", str(tmp_path / "rnd")]) == 0
    other = tmp_path / "other"
    w = DatasetWriter(other, {"image_size": SIZE})
    rng = np.random.default_rng(1)
    for policy in ("expert", "random"):
        w.add(_episode(rng, 200), task="a-v3", policy=policy, split="test", seed=0, camera="cam-b-v3")
    w.flush()
    assert main(["evaluate-reward", "--model", f"rnd={tmp_path / 'rnd'}", "--data", str(other),
                 "--out", str(tmp_path / "eval")]) == 2
    err = capsys.readouterr().err
    assert "a-v3's frames from camera cam-a-v3" in err and "'cam-b-v3'" in err
    assert not (tmp_path / "eval").exists()
    assert main(["score", str(tmp_path / "rnd"), str(other), "--out", str(tmp_path / "score")]) == 2
    assert "'cam-b-v3'" in capsys.readouterr().err
