import numpy as np
import pytest

from diffusion_reward.data.episodes import DatasetError, DatasetWriter, Episode, load_dataset


def _episode(t=5, size=8, seed=0):
    rng = np.random.default_rng(seed)
    return Episode(frames=rng.integers(0, 255, (t, size, size, 3), dtype=np.uint8),
                   actions=rng.normal(size=(t - 1, 4)), rewards=np.zeros(t - 1), dense=rng.normal(size=t - 1),
                   success=np.arange(t - 1) >= t - 2, states=rng.normal(size=(t, 6)))


def test_round_trip_lazy_and_filtered(tmp_path):
    w = DatasetWriter(tmp_path, {"image_size": 8})
    ep = _episode()
    w.add(ep, task="reach-v3", policy="expert", split="train", seed=1)
    w.add(_episode(seed=1), task="reach-v3", policy="noisy:0.1", split="test", seed=2)
    w.add(_episode(seed=2), task="door-open-v3", policy="expert", split="test", seed=3)
    ds = load_dataset(tmp_path)
    assert len(ds) == 3 and ds.tasks == ["door-open-v3", "reach-v3"]
    got = ds.select(task="reach-v3", split="train")[0]
    for key, value in ep.arrays().items():
        np.testing.assert_array_equal(getattr(got, key), value)
    assert got.info["policy"] == "expert" and got.solved
    assert len(ds.select(policy=["expert", "noisy:0.1"])) == 3
    assert ds.entries[1]["file"].endswith("noisy-0.1-test-00000.npz")


def test_limit_keeps_the_first_episodes_of_each_task_and_policy(tmp_path):
    w = DatasetWriter(tmp_path, {"image_size": 8})
    for i in range(4):
        for task in ("reach-v3", "door-open-v3"):
            for policy in ("expert", "random"):
                w.add(_episode(seed=i), task=task, policy=policy, split="test", seed=i)
    ds = load_dataset(tmp_path)
    two = ds.limit(2)
    assert len(two) == 8 and {(e["task"], e["policy"], e["seed"]) for e in two.entries} == {
        (t, p, s) for t in ("reach-v3", "door-open-v3") for p in ("expert", "random") for s in (0, 1)}
    assert ds.limit(None) is ds and len(ds.select(policy="random").limit(1)) == 2


def test_several_datasets_combine(tmp_path):
    for name in ("a", "b"):
        DatasetWriter(tmp_path / name, {"image_size": 8}).add(_episode(), task=name, policy="expert", split="train")
    ds = load_dataset([tmp_path / "a", tmp_path / "b"])
    assert ds.tasks == ["a", "b"] and len(ds[1]) == 5


def test_different_image_sizes_do_not_combine(tmp_path):
    DatasetWriter(tmp_path / "a", {"image_size": 8}).add(_episode(), task="a", policy="expert", split="train")
    DatasetWriter(tmp_path / "b", {"image_size": 16}).add(_episode(size=16), task="b", policy="expert", split="train")
    with pytest.raises(DatasetError, match="image size"):
        load_dataset([tmp_path / "a", tmp_path / "b"])


def test_corrupt_episode_names_the_file_and_skip_bad_reports_it(tmp_path):
    w = DatasetWriter(tmp_path, {"image_size": 8})
    for i in range(3):
        w.add(_episode(seed=i), task="t", policy="expert", split="train")
    bad = tmp_path / w.manifest["episodes"][1]["file"]
    bad.write_bytes(bad.read_bytes()[:100])  # truncated
    with pytest.raises(DatasetError, match=bad.name):
        list(load_dataset(tmp_path))
    ds = load_dataset(tmp_path, skip_bad=True)
    assert len(list(ds)) == 2
    assert len(ds.skipped) == 1 and bad.name in ds.skipped[0]


def test_missing_or_foreign_directory_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="no such dataset"):
        load_dataset(tmp_path / "missing")
    with pytest.raises(DatasetError, match="not a dataset"):
        load_dataset(tmp_path)


def test_inconsistent_episode_is_rejected():
    with pytest.raises(ValueError, match="actions"):
        Episode(frames=np.zeros((4, 8, 8, 3), np.uint8), actions=np.zeros((4, 2)))
    with pytest.raises(ValueError, match="uint8"):
        Episode(frames=np.zeros((4, 8, 8, 3), np.float32))
