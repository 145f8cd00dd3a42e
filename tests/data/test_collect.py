"""`diffusion-reward collect` through the real CLI: manifest, splits, success filtering, policies, resume, workers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from diffusion_reward import cli
from diffusion_reward.config import to_dict
from diffusion_reward.data.collect import CollectConfig, episode_seed, plan
from diffusion_reward.data.episodes import load_dataset
from diffusion_reward.data.policies import canonical_policy_name, parse_policy
from diffusion_reward.errors import UserError

# reach-v3's scripted expert succeeds after ~20 agent steps, so 25 steps are enough for success.
REACH = ["--task", "reach-v3", "--max-steps", "25", "--no-progress"]


def manifest(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text())


@pytest.fixture(scope="module")
def expert_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("collect") / "ds"
    assert cli.main(["collect", *REACH, "--episodes", "2", "--test-episodes", "1", "--workers", "1",
                     "--out", str(root)]) == 0
    return root


def test_manifest_records_dataset_attributes(expert_dataset):
    from diffusion_reward import __version__
    from diffusion_reward.envs import RenderSettings

    m = manifest(expert_dataset)
    assert m["image_size"] == 64
    assert m["action_repeat"] == 2
    assert m["render"] == to_dict(RenderSettings.fast())
    assert m["package_version"] == __version__
    # each episode says which code made it (a checkout: the commit), so a dataset extended later stays traceable
    assert all(e["code"]["package"] == __version__ and "commit" in e["code"] for e in m["episodes"])


def test_expert_episodes_split_succeed_and_have_full_arrays(expert_dataset):
    ds = load_dataset(expert_dataset)
    assert len(ds.select(split="train")) == 2 and len(ds.select(split="test")) == 1
    train_seeds = {e["seed"] for e in ds.select(split="train").entries}
    test_seeds = {e["seed"] for e in ds.select(split="test").entries}
    assert len(train_seeds) == 2 and not train_seeds & test_seeds
    for i, entry in enumerate(ds.entries):
        assert entry["task"] == "reach-v3" and entry["policy"] == "expert" and entry["camera"] == "corner2"
        assert entry["success"] is True and entry["source"] == "metaworld"
        ep = ds[i]
        assert ep.frames.shape == (26, 64, 64, 3) and ep.frames.dtype == np.uint8  # 25 steps + reset frame
        assert ep.actions.shape == (25, 4) and np.all(np.abs(ep.actions) <= 1)
        assert ep.states.shape == (26, 39)
        assert ep.rewards.shape == (25,) and set(np.unique(ep.rewards)) <= {0.0, 1.0, 2.0}
        assert np.all(np.isfinite(ep.dense))
        assert ep.success.any() and ep.rewards.sum() > 0
        assert entry["first_success"] == int(np.argmax(ep.success))
        assert entry["length"] == 26


def test_episode_is_reproducible_from_its_seed(expert_dataset):
    from diffusion_reward.envs import make_env

    ds = load_dataset(expert_dataset)
    entry = ds.entries[0]
    env = make_env("reach-v3", max_episode_steps=25)
    try:
        obs, info = env.reset(seed=entry["seed"])
    finally:
        env.close()
    ep = ds[0]
    np.testing.assert_array_equal(obs.transpose(1, 2, 0), ep.frames[0])
    np.testing.assert_allclose(info["state"], ep.states[0], rtol=1e-6)


def copy_of(root: Path, tmp_path: Path) -> Path:
    import shutil

    shutil.copytree(root, tmp_path / "ds")
    return tmp_path / "ds"


def test_rerun_skips_what_is_done_and_extends(expert_dataset, tmp_path):
    root = copy_of(expert_dataset, tmp_path)
    before = manifest(root)["episodes"]
    mtimes = {e["file"]: (root / e["file"]).stat().st_mtime_ns for e in before}
    assert cli.main(["collect", *REACH, "--episodes", "2", "--test-episodes", "1", "--workers", "1",
                     "--out", str(root)]) == 0
    after = manifest(root)["episodes"]
    assert after == before
    assert all((root / f).stat().st_mtime_ns == t for f, t in mtimes.items())
    # Asking for one more train episode collects only that one.
    assert cli.main(["collect", *REACH, "--episodes", "3", "--test-episodes", "1", "--workers", "1",
                     "--out", str(root)]) == 0
    files = [e["file"] for e in manifest(root)["episodes"]]
    assert len(files) == len(set(files)) == 4
    assert "episodes/reach-v3/expert-train-00002.npz" in files


def test_killed_collection_resumes_missing_episode(expert_dataset, tmp_path):
    # A copy of the dataset whose manifest lost its last entry, as if killed before recording it.
    root = copy_of(expert_dataset, tmp_path)
    m = manifest(root)
    lost = m["episodes"].pop()
    (root / "manifest.json").write_text(json.dumps(m))
    assert cli.main(["collect", *REACH, "--episodes", "2", "--test-episodes", "1", "--workers", "1",
                     "--out", str(root)]) == 0
    entries = manifest(root)["episodes"]
    assert lost in entries and len(entries) == 3


def test_resumed_collection_lists_the_episodes_in_plan_order(expert_dataset, tmp_path):
    """Workers finish in any order and a kill can leave a later episode recorded and an earlier one not: the
    manifest still lists the episodes as an uninterrupted one-worker run does (training reads them in this
    order). Episodes of other collections keep their places."""
    root = copy_of(expert_dataset, tmp_path)
    m = manifest(root)
    complete = m["episodes"]
    other = {**complete[0], "file": "episodes/other/video-train-00000.npz", "task": "other"}
    (root / other["file"]).parent.mkdir(parents=True)
    (root / other["file"]).write_bytes((root / complete[0]["file"]).read_bytes())
    m["episodes"] = [other, complete[2], complete[1]]  # the first train episode lost, the rest out of order
    (root / "manifest.json").write_text(json.dumps(m))
    assert cli.main(["collect", *REACH, "--episodes", "2", "--test-episodes", "1", "--workers", "1",
                     "--out", str(root)]) == 0
    assert manifest(root)["episodes"] == [other, *complete]


def test_failed_expert_episodes_are_retried_then_left_out_unless_keep_failed(tmp_path, capsys):
    from diffusion_reward.data.collect import collect

    # 3 steps are too few for the expert: every attempt fails.
    config = CollectConfig(task=("reach-v3",), episodes=1, max_steps=3, max_attempts=2, workers=1)
    report = collect(config, tmp_path / "a", progress=False)
    assert report.stats[("reach-v3", "expert")]["attempts"] == 2
    assert len(report.failed) == 1 and "reach-v3" in report.failed[0]
    assert manifest(tmp_path / "a")["episodes"] == []

    assert cli.main(["collect", "--task", "reach-v3", "--max-steps", "3", "--episodes", "1", "--keep-failed",
                     "--workers", "1", "--no-progress", "--out", str(tmp_path / "b")]) == 0
    (entry,) = manifest(tmp_path / "b")["episodes"]
    assert entry["success"] is False and entry["attempt"] == 0 and entry["length"] == 4


def test_random_and_noisy_policies(tmp_path):
    root = tmp_path / "ds"
    assert cli.main(["collect", "--task", "reach-v3", "--max-steps", "6", "--no-progress", "--workers", "1",
                     "--policy", "expert", "random", "noisy:0.5", "--keep-failed", "--episodes", "0",
                     "--test-episodes", "1", "--out", str(root)]) == 0
    ds = load_dataset(root)
    assert ds.policies == ["expert", "noisy:0.5", "random"]
    eps = {e["policy"]: ds[i] for i, e in enumerate(ds.entries)}
    seeds = {e["seed"] for e in ds.entries}
    assert seeds == {episode_seed(0, "test", 0, 0)}  # policies share seeds: paired comparisons
    np.testing.assert_array_equal(eps["expert"].frames[0], eps["random"].frames[0])
    for ep in eps.values():
        assert ep.actions.shape == (6, 4) and np.all(np.abs(ep.actions) <= 1)
    # The noisy policy's first action is the expert's (same start state) plus noise, clipped.
    diff = eps["noisy:0.5"].actions[0] - eps["expert"].actions[0]
    assert np.any(np.abs(diff) > 1e-3)
    assert not np.allclose(eps["random"].actions, eps["expert"].actions)


def test_suite_and_test_fraction_plan(tmp_path):
    config = CollectConfig(suite=("metaworld-paper",), episodes=10, test_fraction=0.2)
    jobs = plan(config, tmp_path)
    assert len({j.task for j in jobs}) == 7
    assert sum(j.split == "test" for j in jobs) == 7 * 2 and sum(j.split == "train" for j in jobs) == 7 * 8
    assert len({j.file for j in jobs}) == len(jobs)
    unseen = plan(CollectConfig(suite=("metaworld-unseen",), episodes=1), tmp_path)
    assert len(unseen) == 8


def test_policy_names():
    assert canonical_policy_name("noisy:0.30") == "noisy:0.3"
    assert canonical_policy_name("noisy:1") == canonical_policy_name("noisy:1.0") == "noisy:1.0"
    assert parse_policy("random").kind == "random"
    for bad in ("noisy:-1", "noisy:x", "greedy"):
        with pytest.raises(UserError):
            parse_policy(bad)


def test_bad_requests_are_one_line_errors(tmp_path, capsys):
    assert cli.main(["collect", "--task", "reach-v3", "--policy", "greedy", "--out", str(tmp_path / "x")]) == 2
    assert "unknown policy 'greedy'" in capsys.readouterr().err
    assert cli.main(["collect", "--out", str(tmp_path / "x")]) == 2
    assert "no task given" in capsys.readouterr().err


def test_corrupt_episode_is_named_and_skip_bad_recollects_it(expert_dataset, tmp_path, capsys):
    root = copy_of(expert_dataset, tmp_path)
    entry = manifest(root)["episodes"][0]
    path = root / entry["file"]
    path.write_bytes(path.read_bytes()[:200])  # truncated
    args = ["collect", *REACH, "--episodes", "2", "--test-episodes", "1", "--workers", "1", "--out", str(root)]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert entry["file"] in err and "corrupt or truncated" in err
    assert cli.main([*args, "--skip-bad"]) == 0
    ds = load_dataset(root)
    assert entry["file"] in [e["file"] for e in ds.entries]
    assert ds.validate() == []


def test_two_workers_give_the_same_episodes_as_one(expert_dataset, tmp_path):
    root = tmp_path / "ds"
    assert cli.main(["collect", *REACH, "--episodes", "2", "--test-episodes", "1", "--workers", "2",
                     "--out", str(root)]) == 0
    one, two = load_dataset(expert_dataset), load_dataset(root)
    by_file = {e["file"]: i for i, e in enumerate(one.entries)}
    assert [e["file"] for e in two.entries] == [e["file"] for e in one.entries]  # whoever finished first
    for i, entry in enumerate(two.entries):
        a, b = one[by_file[entry["file"]]], two[i]
        assert entry["seed"] == one.entries[by_file[entry["file"]]]["seed"]
        np.testing.assert_array_equal(a.frames, b.frames)
        np.testing.assert_array_equal(a.actions, b.actions)


def test_adroit_expert_and_noisy_expert_collect_reproducibly(tmp_path):
    """The Adroit expert plans on the collection's own environment; the same seed gives the same episode."""
    args = ["collect", "--task", "door", "--max-steps", "3", "--policy", "expert", "noisy:0.3", "--keep-failed",
            "--episodes", "1", "--workers", "1", "--no-progress"]
    for name in ("a", "b"):
        assert cli.main([*args, "--out", str(tmp_path / name)]) == 0
    a, b = load_dataset(tmp_path / "a"), load_dataset(tmp_path / "b")
    assert a.policies == ["expert", "noisy:0.3"] and [e["source"] for e in a.entries] == ["adroit", "adroit"]
    for i in range(2):
        assert a[i].frames.shape == (4, 64, 64, 3) and a[i].actions.shape == (3, 28)
        assert np.all(np.abs(a[i].actions) <= 1)
        np.testing.assert_array_equal(a[i].actions, b[i].actions)
        np.testing.assert_array_equal(a[i].frames, b[i].frames)
    assert not np.array_equal(a[0].actions, a[1].actions)
