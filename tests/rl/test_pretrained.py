"""The pretrained small models load by their path, and they are the models every committed record used."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from diffusion_reward import load_reward_model
from diffusion_reward.evaluation.rl_benchmark import find_records
from diffusion_reward.rl.benchmark import expert_fingerprint, load_grid, read_record
from diffusion_reward.utils.provenance import directory_fingerprint

ROOT = Path(__file__).resolve().parents[2]
PRETRAINED = ROOT / "pretrained"
RECORDS = find_records([ROOT / "benchmarks" / "results" / "rl"])
# every reward model and expert data directory a committed grid file names
GRID_PATHS = {path for grid in (ROOT / "benchmarks").glob("rl_grid*.toml") for reward in load_grid(grid).rewards
              for path in (reward.reward_model, reward.expert_data) if path}
# folder -> (a task, the tasks every reward has statistics for, expert train episodes per task)
SUITES = {"metaworld-small": ("dial-turn-v3", {"dial-turn-v3", "reach-v3"}, 20),
          "adroit-small": ("door", {"door", "hammer", "pen"}, 50)}


@pytest.mark.parametrize("name", ["reward-entropy", "reward-viper"])
@pytest.mark.parametrize("suite", list(SUITES))
def test_pretrained_reward_models_load_and_score_an_expert_episode(suite, name):
    from diffusion_reward.data.episodes import load_dataset

    task, tasks, episodes = SUITES[suite]
    reward = load_reward_model(PRETRAINED / suite / name, device="cpu")
    experts = load_dataset(PRETRAINED / suite / "expert-data").select(task=task)
    assert len(experts) == episodes and set(reward.task_stats) >= tasks
    frames = experts[0].frames[:12]
    r = reward.rewards(frames, task=task)
    assert r.shape == (12,) and np.isfinite(r).all()


@pytest.mark.parametrize("path", RECORDS, ids=[p.stem for p in RECORDS])
def test_every_committed_record_used_the_committed_models(path):
    record = read_record(path)
    inputs = record["inputs"]
    if "reward_model" in inputs:
        used = inputs["reward_model"]
        assert used["path"] in GRID_PATHS, used["path"]
        assert directory_fingerprint(ROOT / used["path"]) == used["fingerprint"], used["path"]
    if "expert_data" in inputs:
        used = inputs["expert_data"]
        assert used["path"] in GRID_PATHS, used["path"]
        assert expert_fingerprint(ROOT / used["path"], record["task"]) == (used["episodes"], used["fingerprint"])
