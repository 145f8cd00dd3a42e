"""scripts/expert_train_episodes.py: the expert data shipped beside the pretrained rewards (AMP's in RL)."""

import subprocess
import sys
from pathlib import Path

import numpy as np

from diffusion_reward.data.episodes import DatasetWriter, Episode, load_dataset

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "expert_train_episodes.py"


def test_copies_only_the_expert_train_episodes_into_a_loadable_dataset(tmp_path):
    writer = DatasetWriter(tmp_path / "source", {"image_size": 8})
    rng = np.random.default_rng(0)
    for task in ("a-v3", "b-v3"):
        for policy, split in (("expert", "train"), ("expert", "test"), ("random", "train")):
            frames = rng.integers(0, 255, (4, 8, 8, 3), dtype=np.uint8)
            writer.add(Episode(frames=frames, dense=np.zeros(3)), task=task, policy=policy, split=split, seed=1)
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "source"), str(tmp_path / "expert")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    copied = load_dataset(tmp_path / "expert")
    assert len(copied) == 2 and {(e["task"], e["policy"], e["split"]) for e in copied.entries} == {
        ("a-v3", "expert", "train"), ("b-v3", "expert", "train")}

    empty = DatasetWriter(tmp_path / "empty", {"image_size": 8})
    empty.add(Episode(frames=frames, dense=np.zeros(3)), task="a-v3", policy="random", split="train", seed=1)
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "empty"), str(tmp_path / "none")],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "no expert train-split episodes" in done.stderr
