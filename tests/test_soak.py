"""benchmarks/soak.py on a tiny budget: commands SIGKILLed at random moments and rerun end with the results of an
uninterrupted run (the full soak, every command, is the script; its results are in benchmarks/results/)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_soak():
    spec = importlib.util.spec_from_file_location("soak", ROOT / "benchmarks" / "soak.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["soak"] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


soak = load_soak()
# one 10-step expert episode collected in this process; RND fitted for 5 updates: each run takes seconds
TINY = soak.Budget(policies=("expert",), episodes=1, test_episodes=0, max_steps=10, collect_workers=1,
                   fit_kind="rnd", fit_steps=5)


def test_killed_collect_and_fit_reward_end_with_the_uninterrupted_results(tmp_path):
    results = soak.soak(["collect", "fit-reward"], kills=1, seed=0, work=tmp_path, budget=TINY, log=lambda m: None)
    assert [r["command"] for r in results] == ["collect", "fit-reward"]
    for result in results:
        (trial,) = result["trial_results"]
        assert trial["kills"] >= 1 and trial["exit_status"][0] == -9, trial  # the first run was killed
        assert trial["exit_status"][-1] == 0 and trial["identical"], trial["differences"]
        assert result["identical"] == 1 and result["command_line"][:2] == ["diffusion-reward", result["command"]]


def test_a_different_result_is_reported(tmp_path):
    """The comparison is exact: one changed value of an episode, one extra file, one changed weight."""
    from safetensors.numpy import load_file, save_file

    from diffusion_reward.data.episodes import DatasetWriter, Episode

    def dataset(root: Path, value: int) -> Path:
        frames = np.zeros((3, 8, 8, 3), np.uint8)
        frames[1, 2, 2] = value
        DatasetWriter(root, {"image_size": 8}).add(Episode(frames=frames), task="t", policy="expert", split="train")
        return root

    a, b = dataset(tmp_path / "a", 1), dataset(tmp_path / "b", 2)
    assert soak.compare_dataset(a, a) == []
    assert soak.compare_dataset(a, b) == ["episodes/t/expert-train-00000.npz: frames differs"]
    (b / "episodes" / "t" / "stray.npz").write_bytes(b"")
    assert "episodes/t/stray.npz: not in the reference" in soak.compare_dataset(a, b)

    for name, value in (("a", 0.5), ("b", 0.5 + 1e-7)):
        (tmp_path / name / "model").mkdir()
        save_file({"w": np.full(3, value, np.float32)}, tmp_path / name / "model" / "model.safetensors")
    assert soak.compare_tensors(tmp_path / "a", tmp_path / "a", "model") == []
    assert soak.compare_tensors(tmp_path / "a", tmp_path / "b", "model") == ["model/model.safetensors: tensor w differs"]
    assert load_file(tmp_path / "b" / "model" / "model.safetensors")["w"][0] != 0.5


@pytest.mark.slow
def test_killed_trainers_resume_to_the_uninterrupted_weights(tmp_path):
    results = soak.soak(["train-codec", "train-video"], kills=1, seed=1, work=tmp_path, budget=TINY,
                        log=lambda m: None)
    for result in results:
        assert result["identical"] == 1, result["trial_results"][0]["differences"]
