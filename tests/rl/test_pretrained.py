"""The pretrained small models load by their path, and they are the models every committed record used."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from diffusion_reward import load_reward_model
from diffusion_reward.evaluation.rl_benchmark import find_records
from diffusion_reward.rl.benchmark import expert_fingerprint, read_record
from diffusion_reward.utils.provenance import directory_fingerprint

ROOT = Path(__file__).resolve().parents[2]
PRETRAINED = ROOT / "pretrained" / "metaworld-small"
RECORDS = find_records([ROOT / "benchmarks" / "results" / "rl"])


@pytest.mark.parametrize("name", ["reward-entropy", "reward-viper"])
def test_pretrained_reward_models_load_and_score_an_expert_episode(name):
    from diffusion_reward.data.episodes import load_dataset

    reward = load_reward_model(PRETRAINED / name, device="cpu")
    experts = load_dataset(PRETRAINED / "expert-data").select(task="dial-turn-v3")
    assert len(experts) == 20 and set(reward.task_stats) >= {"dial-turn-v3", "reach-v3"}
    frames = experts[0].frames[:12]
    r = reward.rewards(frames, task="dial-turn-v3")
    assert r.shape == (12,) and np.isfinite(r).all()


@pytest.mark.parametrize("path", RECORDS, ids=[p.stem for p in RECORDS])
def test_every_committed_record_used_the_committed_models(path):
    record = read_record(path)
    inputs = record["inputs"]
    if "reward_model" in inputs:
        used = inputs["reward_model"]
        assert used["path"].startswith("pretrained/"), used["path"]
        assert directory_fingerprint(ROOT / used["path"]) == used["fingerprint"], used["path"]
    if "expert_data" in inputs:
        used = inputs["expert_data"]
        assert used["path"].startswith("pretrained/") and used["path"].endswith("/expert-data"), used["path"]
        assert expert_fingerprint(ROOT / used["path"], record["task"]) == (used["episodes"], used["fingerprint"])
