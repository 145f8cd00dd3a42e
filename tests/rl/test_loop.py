"""The RL loop through the real command line: every reward runs, a killed run resumes exactly, seeds repeat.

Runs are tiny (state observations, 25-step episodes, a tiny DrQ-v2) so that each takes seconds.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from diffusion_reward import cli
from diffusion_reward.errors import UserError
from diffusion_reward.rewards import MotionReward
from diffusion_reward.rl.loop import PRESETS, checkpoint_dirs, train
from diffusion_reward.utils.checkpoint import load_tensors, read_json
from diffusion_reward.utils.device import torch_threads

TINY_FLAGS = ["--preset", "tiny", "--max-episode-steps", "25", "--num-seed-frames", "100", "--eval-every-frames",
              "200", "--num-eval-episodes", "1", "--checkpoint-every-frames", "100", "--no-tensorboard",
              "--no-progress", "--agent-stddev-schedule-steps", "200", "--eval-video-episodes", "0"]


@pytest.fixture(autouse=True)
def _one_torch_thread():
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def motion_dir(tmp_path_factory) -> Path:
    """A saved ``motion`` reward model: the stand-in for a learned (diffusion/viper) reward."""
    return MotionReward().save_pretrained(tmp_path_factory.mktemp("motion") / "model")


@pytest.fixture(scope="module")
def expert_data(tmp_path_factory) -> Path:
    """A tiny episode dataset with two 'expert' episodes of reach-v3 (random 64x64 frames)."""
    from diffusion_reward.data.episodes import DatasetWriter, Episode

    root = tmp_path_factory.mktemp("experts") / "data"
    writer = DatasetWriter(root, {"image_size": 64})
    rng = np.random.default_rng(0)
    for i in range(2):
        frames = rng.integers(0, 256, (6, 64, 64, 3), dtype=np.uint8)
        writer.add(Episode(frames=frames), task="reach-v3", policy="expert", split="train", seed=i)
    return root


def run_cli(run_dir: Path, *flags: str) -> None:
    assert cli.main(["train-rl", *TINY_FLAGS, "--run-dir", str(run_dir), *flags]) == 0


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def replay_episodes(checkpoint: Path, name: str = "replay") -> list[dict[str, torch.Tensor]]:
    index = read_json(checkpoint / name / "replay.json")
    return [load_tensors(checkpoint / name / entry["file"]) for entry in index["episodes"]]


def final_checkpoint(run_dir: Path) -> Path:
    checkpoints = checkpoint_dirs(run_dir)
    assert len(checkpoints) == 1, "only the newest checkpoint is kept"
    return checkpoints[0]


@pytest.mark.parametrize("reward", ["sparse", "rnd", "amp", "learned"])
def test_every_reward_trains_through_the_cli_in_state_mode(tmp_path, reward, motion_dir, expert_data):
    flags = {"sparse": ["--reward", "sparse"], "rnd": ["--reward", "rnd"],
             "amp": ["--reward", "amp", "--expert-data", str(expert_data)],
             "learned": ["--reward", "diffusion", "--reward-model", str(motion_dir)]}[reward]
    run_dir = tmp_path / "run"
    video = ["--eval-video-episodes", "1"] if reward == "learned" else []
    run_cli(run_dir, "--task", "reach-v3", "--obs", "state", "--frames", "300", "--no-env-worker", *flags, *video)

    evaluations = read_csv(run_dir / "eval.csv")
    assert [int(r["step"]) for r in evaluations] == [0, 200, 300]
    assert all(0.0 <= float(r["success_rate"]) <= 1.0 for r in evaluations)
    train_rows = read_csv(run_dir / "train.csv")
    assert [int(r["step"]) for r in train_rows] == [50 * (i + 1) for i in range(6)]
    assert float(train_rows[-1]["updates"]) == (300 - 100) // 2 // 2
    assert np.isfinite(float(train_rows[-1]["critic_loss"]))
    terms = read_csv(run_dir / "reward.csv")[-1]
    expected = {"sparse": {"sparse", "total"}, "rnd": {"rnd", "rnd_loss"}, "amp": {"model", "amp_loss"},
                "learned": {"model", "rnd", "episode_model_return"}}[reward]
    assert expected <= {k for k, v in terms.items() if v != ""}
    assert (run_dir / "success.png").stat().st_size > 0
    if video:
        assert sorted(p.name for p in (run_dir / "videos").iterdir())[0].startswith("eval-000000000")
    config = read_json(run_dir / "config.json")
    assert config["obs"] == "state" and config["agent"]["obs_type"] == "state"
    checkpoint = final_checkpoint(run_dir)
    assert checkpoint.name == "frame-000000300"
    episodes = replay_episodes(checkpoint)
    assert len(episodes) == 6 and episodes[0]["obs"].shape == (26, 39)
    if reward == "amp":  # the discriminator reads frames: a replay of frames is kept beside the states
        frames = replay_episodes(checkpoint, "frame_replay")
        assert frames[0]["obs"].shape == (26, 3, 64, 64) and frames[0]["obs"].dtype == torch.uint8
        assert all(torch.equal(f["action"], e["action"]) for f, e in zip(frames, episodes))


def test_pixel_run_stores_the_learned_reward_of_the_frame_each_step_reaches(tmp_path, motion_dir):
    run_dir = tmp_path / "run"
    run_cli(run_dir, "--task", "reach-v3", "--reward", "motion", "--reward-model", str(motion_dir), "--obs",
            "pixels", "--frames", "200", "--num-seed-frames", "100", "--eval-video-episodes", "1")
    assert len(list((run_dir / "videos").glob("eval-*"))) == 2
    episodes = replay_episodes(final_checkpoint(run_dir))
    assert len(episodes) == 4
    motion = MotionReward()
    for episode in episodes:
        obs = episode["obs"].numpy()
        assert obs.shape == (26, 3, 64, 64) and obs.dtype == np.uint8
        expected = motion.rewards(obs.transpose(0, 2, 3, 1))[1:]  # step t reaches frame t
        np.testing.assert_allclose(episode["component/model"].numpy(), expected, rtol=1e-6)
        assert expected.max() > 0
    rows = read_csv(run_dir / "reward.csv")
    np.testing.assert_allclose([float(r["episode_model_return"]) for r in rows],
                               [e["component/model"].sum().item() for e in episodes], rtol=1e-5)


def test_episode_reward_runs_on_reward_threads_and_the_learner_keeps_its_own(tmp_path, motion_dir, monkeypatch):
    from diffusion_reward.rl.reward_terms import RewardTerms

    seen: list[int] = []
    original = RewardTerms.episode_components

    def spy(self, frames, steps):
        seen.append(torch.get_num_threads())
        return original(self, frames, steps)

    monkeypatch.setattr(RewardTerms, "episode_components", spy)
    run_cli(tmp_path / "run", "--task", "reach-v3", "--reward", "motion", "--reward-model", str(motion_dir),
            "--obs", "state", "--frames", "200", "--learner-threads", "1", "--reward-threads", "3")
    assert seen and set(seen) == {3}
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize("reward", ["sparse", "rnd"])
def test_adroit_door_trains_with_sparse_and_rnd(tmp_path, reward):
    run_dir = tmp_path / "run"
    run_cli(run_dir, "--task", "door", "--reward", reward, "--obs", "state", "--frames", "150", "--no-env-worker")
    assert [int(r["step"]) for r in read_csv(run_dir / "eval.csv")] == [0, 150]
    assert replay_episodes(final_checkpoint(run_dir))[0]["action"].shape == (25, 28)


def _same_run(a: Path, b: Path, columns=("episode_return", "critic_loss", "actor_loss")) -> None:
    ca, cb = final_checkpoint(a), final_checkpoint(b)
    assert ca.name == cb.name
    ta, tb = load_tensors(ca / "agent.safetensors"), load_tensors(cb / "agent.safetensors")
    assert ta.keys() == tb.keys()
    for key in ta:
        assert torch.equal(ta[key], tb[key]), key
    for ea, eb in zip(replay_episodes(ca), replay_episodes(cb), strict=True):
        for key in ea:
            assert torch.equal(ea[key], eb[key]), key
    rows_a, rows_b = read_csv(a / "train.csv"), read_csv(b / "train.csv")
    assert [[r["step"], *(r[c] for c in columns)] for r in rows_a] == \
        [[r["step"], *(r[c] for c in columns)] for r in rows_b]
    assert read_csv(a / "eval.csv") == read_csv(b / "eval.csv")


def _children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(c) for c in path.read_text().split()} if path.exists() else set()


def test_killed_run_resumes_exactly(tmp_path, motion_dir):
    """SIGKILL a real training process (environment in a worker) mid-run: the worker exits with it, and
    --resume continues to the same weights, replay and metrics as a run that was never interrupted (the
    learned reward renders every frame, RND trains online)."""
    flags = ["--task", "reach-v3", "--reward", "diffusion", "--reward-model", str(motion_dir), "--obs", "state",
             "--seed", "3"]
    reference = tmp_path / "reference"
    run_cli(reference, *flags, "--frames", "500", "--no-env-worker")

    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "diffusion_reward.cli", "train-rl", *TINY_FLAGS, "--run-dir", str(killed),
               *flags, "--frames", "100000", "--env-worker"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    children: set[int] = set()
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and process.poll() is None:
            children |= _children(process.pid)
            done = checkpoint_dirs(killed)
            if done and int(done[-1].name.split("-")[1]) >= 200:
                break
            time.sleep(0.02)
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    stopped_at = int(checkpoint_dirs(killed)[-1].name.split("-")[1])
    assert 200 <= stopped_at < 500
    assert children, "the environment worker process was not found"
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{c}").exists() for c in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(Path(f"/proc/{c}").exists() for c in children), "a worker outlived the killed run"

    # the other settings come from the run's config.json; where the environment steps may change
    run_cli(killed, "--resume", "--frames", "500", "--no-env-worker")
    _same_run(reference, killed)


def test_same_seed_repeats_and_the_worker_changes_nothing(tmp_path):
    flags = ["--task", "reach-v3", "--reward", "rnd", "--obs", "state", "--frames", "300"]
    run_cli(tmp_path / "local", *flags, "--seed", "1", "--no-env-worker")
    run_cli(tmp_path / "worker", *flags, "--seed", "1", "--env-worker", "--eval-video-episodes", "1")
    _same_run(tmp_path / "local", tmp_path / "worker")
    assert len(list((tmp_path / "worker" / "videos").glob("eval-*"))) == 3  # rendered by the worker
    run_cli(tmp_path / "other", *flags, "--seed", "2", "--no-env-worker")
    first = replay_episodes(final_checkpoint(tmp_path / "local"))[0]
    other = replay_episodes(final_checkpoint(tmp_path / "other"))[0]
    assert not torch.equal(first["obs"][0], other["obs"][0])  # another goal
    assert not torch.equal(first["action"], other["action"])


def test_resume_refuses_changed_settings_and_reused_directories(tmp_path):
    run_dir = tmp_path / "run"
    run_cli(run_dir, "--task", "reach-v3", "--reward", "sparse", "--obs", "state", "--frames", "100",
            "--no-env-worker")
    with pytest.raises(UserError, match="already holds a run"):
        train(dataclasses.replace(PRESETS["tiny"], obs="state"), run_dir, progress=False)
    assert cli.main(["train-rl", "--resume", "--run-dir", str(run_dir), "--seed", "5", "--no-progress"]) == 2
    assert cli.main(["train-rl", "--task", "reach-v3", "--no-progress"]) == 2  # --reward missing
    bad = tmp_path / "bad"
    assert cli.main(["train-rl", *TINY_FLAGS, "--run-dir", str(bad), "--task", "reach-v3", "--reward", "diffusion",
                     "--reward-model", str(tmp_path / "missing"), "--obs", "state"]) == 2
    assert not bad.exists(), "a run that could not start leaves no run directory behind"
