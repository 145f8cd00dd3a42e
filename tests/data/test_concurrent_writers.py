"""Several processes writing one dataset at once leave exactly the union of their episodes."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np

from diffusion_reward.data.episodes import DatasetWriter, Episode, load_dataset

EPISODES = 6


def _write(root: str, writer_id: int, start) -> None:
    start.wait()
    writer = DatasetWriter(root, {"image_size": 8})
    rng = np.random.default_rng(writer_id)
    for i in range(EPISODES):
        frames = rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
        task = "reach-v3" if writer_id < 2 else f"task-{writer_id}"  # two writers share a task (and file names)
        writer.add(Episode(frames=frames), task=task, policy="expert", split="train", seed=writer_id * 100 + i,
                   writer=writer_id)


def test_four_writers_at_once_leave_every_episode_listed_and_loadable(tmp_path: Path):
    root = tmp_path / "data"
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    workers = [context.Process(target=_write, args=(str(root), w, start)) for w in range(4)]
    for p in workers:
        p.start()
    start.set()
    for p in workers:
        p.join(timeout=120)
        assert p.exitcode == 0
    dataset = load_dataset(root)
    assert len(dataset) == 4 * EPISODES
    assert len({e["file"] for e in dataset.entries}) == 4 * EPISODES
    assert sorted((e["writer"], e["seed"]) for e in dataset.entries) == sorted(
        (w, w * 100 + i) for w in range(4) for i in range(EPISODES))
    for i in range(len(dataset)):  # every listed episode is whole and is the one its entry says
        episode = dataset[i]
        rng = np.random.default_rng(dataset.entries[i]["writer"])
        expected = [rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8) for _ in range(EPISODES)]
        assert any(np.array_equal(episode.frames, e) for e in expected)
