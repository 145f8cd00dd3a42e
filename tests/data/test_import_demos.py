"""`diffusion-reward import-demos` on Adroit demonstration files that the tests write themselves."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from diffusion_reward import cli
from diffusion_reward.data.episodes import load_dataset
from diffusion_reward.data.importers import import_demos, read_demos

STEPS = (9, 6)  # two demonstrations of these many actions


def record_door_demos(steps=STEPS, seed=0):
    """Random-action door rollouts: per step the simulator state, observation, action, reward and a direct render."""
    import mujoco

    from diffusion_reward.envs import make_env

    env = make_env("door", image_size=64)
    sim = env.simulator.env
    rng = np.random.default_rng(seed)
    demos = []
    try:
        for k, n in enumerate(steps):
            env.reset(seed=seed + k)
            rec = {key: [] for key in ("qpos", "qvel", "door_body_pos", "observations", "actions", "rewards",
                                       "frames", "success")}
            for _ in range(n + 1):  # n actions, n + 1 states (the last one only Minari stores)
                state = sim.get_env_state()
                for key in ("qpos", "qvel", "door_body_pos"):
                    rec[key].append(state[key])
                rec["observations"].append(sim._get_obs())
                mujoco.mj_forward(sim.model, sim.data)  # render exactly this state
                rec["frames"].append(env.render_frame())
                action = rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
                _, reward, _, _, info = sim.step(action)
                rec["actions"].append(action)
                rec["rewards"].append(reward)
                rec["success"].append(info["success"])
            demos.append({key: np.asarray(v) for key, v in rec.items()})
    finally:
        env.close()
    return demos


@pytest.fixture(scope="module")
def demos():
    return record_door_demos()


def write_d4rl(path: Path, demos) -> None:
    """The D4RL layout: flat arrays, one row per step (state before the action), timeouts at episode ends."""
    cat = {key: np.concatenate([d[key][:-1] for d in demos]) for key in demos[0]}
    timeouts = np.zeros(len(cat["actions"]), bool)
    timeouts[np.cumsum([len(d["actions"]) - 1 for d in demos]) - 1] = True
    with h5py.File(path, "w") as f:
        for key in ("observations", "actions", "rewards"):
            f[key] = cat[key]
        f["timeouts"] = timeouts
        f["terminals"] = np.zeros_like(timeouts)
        for key in ("qpos", "qvel", "door_body_pos"):
            f[f"infos/{key}"] = cat[key]
        f["infos/goal_achieved"] = cat["success"]


def write_minari(path: Path, demos) -> None:
    """The Minari layout: one group per episode, states and infos with one more row than actions."""
    with h5py.File(path, "w") as f:
        for i, d in enumerate(demos):
            g = f.create_group(f"episode_{i}")
            g["observations"] = d["observations"]
            g["actions"] = d["actions"][:-1]
            g["rewards"] = d["rewards"][:-1]
            g["terminations"] = np.zeros(len(d["actions"]) - 1, bool)
            g["truncations"] = np.zeros(len(d["actions"]) - 1, bool)
            for key in ("qpos", "qvel", "door_body_pos"):
                g[f"infos/state/{key}"] = d[key]
            g["infos/success"] = np.concatenate([[False], d["success"][:-1]])


def test_d4rl_layout_renders_frames_that_match_a_direct_render(demos, tmp_path):
    path = tmp_path / "door-demos.hdf5"
    write_d4rl(path, demos)
    out = tmp_path / "ds"
    assert cli.main(["import-demos", str(path), "--task", "door", "--out", str(out), "--action-repeat", "1",
                     "--test-fraction", "0.5", "--no-progress"]) == 0
    ds = load_dataset(out)
    assert len(ds) == 2 and sorted(e["split"] for e in ds.entries) == ["test", "train"]
    assert ds.attributes["action_repeat"] == 1 and ds.attributes["image_size"] == 64
    for i, entry in enumerate(ds.entries):
        k = 0 if entry["original"].endswith("steps 0-8") else 1
        n = len(demos[k]["actions"]) - 1  # D4RL keeps n states: the last action's result is not in the file
        ep = ds[i]
        assert entry["camera"] == "top" and entry["source"] == "d4rl" and entry["policy"] == "expert"
        assert ep.frames.shape == (n, 64, 64, 3)
        np.testing.assert_array_equal(ep.frames, demos[k]["frames"][:n])
        np.testing.assert_allclose(ep.actions, demos[k]["actions"][:n - 1])
        np.testing.assert_allclose(ep.dense, demos[k]["rewards"][:n - 1], rtol=1e-5)
        np.testing.assert_allclose(ep.states, demos[k]["observations"][:n], rtol=1e-5)
    # Re-running imports nothing twice.
    report = import_demos(path, out, task="door", action_repeat=1, progress=False)
    assert not report.written and len(report.already_present) == 2


def test_action_repeat_subsamples_to_the_agent_step_rate(demos, tmp_path):
    path = tmp_path / "door-demos.hdf5"
    write_d4rl(path, demos)
    report = import_demos(path, tmp_path / "ds", task="door", action_repeat=2, progress=False)
    ds = load_dataset(tmp_path / "ds")
    episodes = [ds[i] for i in range(len(ds))]
    assert sorted(len(ep) for ep in episodes) == [3, 5]  # states 0,2,4 of 6 and 0,2,4,6,8 of 9
    ep = next(ep for ep in episodes if len(ep) == 5)
    np.testing.assert_array_equal(ep.frames, demos[0]["frames"][0:9:2])
    np.testing.assert_allclose(ep.dense, demos[0]["rewards"][0:8].reshape(4, 2).sum(1), rtol=1e-5)
    assert len(report.written) == 2


def test_minari_layout(demos, tmp_path):
    path = tmp_path / "door-minari.hdf5"
    write_minari(path, demos)
    assert [d.key for d in read_demos(path, "door")] == ["episode_0", "episode_1"]
    report = import_demos(path, tmp_path / "ds", task="door", action_repeat=1, progress=False)
    ds = load_dataset(tmp_path / "ds")
    assert len(report.written) == 2
    for i, entry in enumerate(ds.entries):
        k = int(entry["original"].rsplit("_", 1)[1])
        ep = ds[i]
        assert entry["source"] == "minari"
        assert len(ep) == len(demos[k]["frames"])  # Minari keeps the final state: n + 1 frames
        np.testing.assert_array_equal(ep.frames, demos[k]["frames"])
        np.testing.assert_array_equal(ep.success, demos[k]["success"][:-1])


def test_bad_demo_files_are_one_line_errors(demos, tmp_path, capsys):
    garbage = tmp_path / "garbage.hdf5"
    garbage.write_bytes(b"not hdf5 at all" * 20)
    assert cli.main(["import-demos", str(garbage), "--task", "door", "--out", str(tmp_path / "ds")]) == 2
    err = capsys.readouterr().err
    assert str(garbage) in err and "HDF5" in err and len(err.strip().splitlines()) == 1
    door = tmp_path / "door.hdf5"
    write_d4rl(door, demos)
    # The door file lacks hammer's board position.
    assert cli.main(["import-demos", str(door), "--task", "hammer", "--out", str(tmp_path / "ds")]) == 2
    err = capsys.readouterr().err
    assert str(door) in err and "infos/board_pos" in err
    # Demonstrations too short for the video model's history.
    assert cli.main(["import-demos", str(door), "--task", "door", "--out", str(tmp_path / "ds"), "--min-frames", "7",
                     "--no-progress"]) == 2
    assert "fewer than --min-frames 7" in capsys.readouterr().err
    report = import_demos(door, tmp_path / "ds", task="door", min_frames=7, action_repeat=1, skip_bad=True,
                          progress=False)
    assert len(report.written) == 1 and len(report.skipped) == 1 and "steps 9-14" in report.skipped[0][1]


def test_a_reward_learned_from_imported_demos_trains_an_adroit_agent(demos, tmp_path, tiny_diffusion_reward):
    """The whole path on Adroit through the real commands: demonstrations -> import-demos -> codec ->
    VQ-Diffusion -> fit-reward -> train-rl --task door --reward diffusion (tiny sizes, a few steps each)."""
    import csv

    path = tmp_path / "door-demos.hdf5"
    write_d4rl(path, demos)
    data, run = tmp_path / "ds", tmp_path / "run"
    assert cli.main(["import-demos", str(path), "--task", "door", "--out", str(data), "--action-repeat", "1",
                     "--test-fraction", "0", "--no-progress"]) == 0
    reward = tiny_diffusion_reward(data)
    assert cli.main(["train-rl", "--preset", "tiny", "--task", "door", "--reward", "diffusion", "--reward-model",
                     str(reward), "--obs", "state", "--frames", "100", "--max-episode-steps", "25",
                     "--num-seed-frames", "50", "--eval-every-frames", "100", "--num-eval-episodes", "1",
                     "--eval-video-episodes", "0", "--no-env-worker", "--learner-threads", "1", "--reward-threads", "1",
                     "--run-dir", str(run), "--no-tensorboard", "--no-progress"]) == 0
    with (run / "reward.csv").open() as f:
        rows = list(csv.DictReader(f))
    # the learned reward of each finished episode, computed on its rendered door frames, and the learned
    # term of the sampled batches once updates start
    returns = [float(r["episode_model_return"]) for r in rows]
    assert len(returns) == 2 and all(np.isfinite(returns)) and returns[0] != returns[1]
    assert np.isfinite(float(rows[-1]["model"])) and float(rows[-1]["model"]) != 0.0
    with (run / "eval.csv").open() as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [0, 100]
