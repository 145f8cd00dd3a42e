"""`diffusion-reward import-lerobot` on small LeRobot datasets written here to the published v2.1 and v3.0 layouts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from diffusion_reward import cli
from diffusion_reward.data.episodes import load_dataset
from diffusion_reward.data.lerobot_import import import_lerobot
from diffusion_reward.utils.video_io import write_video

FPS = 10
H, W = 96, 128
FRONT, WRIST = "observation.images.front", "observation.images.wrist"
LENGTHS = (10, 8, 12)
TASKS = ("pick up the red cube", "open the drawer")
EPISODE_TASK = (0, 1, 0)
# Episode e of camera c is a flat colour (red, green) = COLOURS[c][e]; blue counts the frames (10, 30, 50, ...).
COLOURS = {FRONT: ((220, 30), (30, 220), (220, 220)), WRIST: ((120, 30), (30, 120), (120, 120))}


def episode_frames(camera: str, episode: int) -> np.ndarray:
    frames = np.zeros((LENGTHS[episode], H, W, 3), np.uint8)
    frames[..., 0], frames[..., 1] = COLOURS[camera][episode]
    frames[..., 2] = (10 + 20 * np.arange(LENGTHS[episode]))[:, None, None]
    return frames


def features(cameras: tuple[str, ...]) -> dict:
    out = {cam: {"dtype": "video", "shape": [H, W, 3], "names": ["height", "width", "channels"],
                 "info": {"video.height": H, "video.width": W, "video.codec": "h264", "video.pix_fmt": "yuv420p",
                          "video.is_depth_map": False, "video.fps": FPS, "video.channels": 3, "has_audio": False}}
           for cam in cameras}
    out["observation.state"] = {"dtype": "float32", "shape": [2], "names": ["x", "y"]}
    out["action"] = {"dtype": "float32", "shape": [2], "names": ["x", "y"]}
    for name, dtype in (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
                        ("index", "int64"), ("task_index", "int64")):
        out[name] = {"dtype": dtype, "shape": [1], "names": None}
    return out


def data_rows(episodes: list[int]) -> pa.Table:
    """The per-frame table of ``episodes``, as LeRobot writes it (global ``index`` over the whole dataset)."""
    cols: dict[str, list] = {k: [] for k in ("observation.state", "action", "timestamp", "frame_index",
                                             "episode_index", "index", "task_index")}
    for e in episodes:
        start = sum(LENGTHS[:e])
        for i in range(LENGTHS[e]):
            cols["observation.state"].append([float(i), float(e)])
            cols["action"].append([0.1 * i, -0.1 * i])
            cols["timestamp"].append(i / FPS)
            cols["frame_index"].append(i)
            cols["episode_index"].append(e)
            cols["index"].append(start + i)
            cols["task_index"].append(EPISODE_TASK[e])
    types = {"observation.state": pa.list_(pa.float32()), "action": pa.list_(pa.float32()),
             "timestamp": pa.float32()}
    return pa.table({k: pa.array(v, type=types.get(k, pa.int64())) for k, v in cols.items()})


def base_info(version: str, cameras: tuple[str, ...]) -> dict:
    return {"codebase_version": version, "robot_type": "so100", "total_episodes": len(LENGTHS),
            "total_frames": sum(LENGTHS), "total_tasks": len(TASKS), "chunks_size": 1000, "fps": FPS,
            "splits": {"train": f"0:{len(LENGTHS)}"}, "features": features(cameras)}


def make_v21(root: Path, cameras: tuple[str, ...] = (FRONT,)) -> Path:
    """v2.1: one parquet file and one MP4 per episode and camera; episodes.jsonl and tasks.jsonl."""
    info = base_info("v2.1", cameras) | {
        "total_videos": len(LENGTHS) * len(cameras), "total_chunks": 1,
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"}
    (root / "meta").mkdir(parents=True)
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    (root / "meta/tasks.jsonl").write_text("".join(json.dumps({"task_index": i, "task": t}) + "\n"
                                                   for i, t in enumerate(TASKS)))
    (root / "meta/episodes.jsonl").write_text("".join(
        json.dumps({"episode_index": e, "tasks": [TASKS[EPISODE_TASK[e]]], "length": n}) + "\n"
        for e, n in enumerate(LENGTHS)))
    for e in range(len(LENGTHS)):
        path = root / f"data/chunk-000/episode_{e:06d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(data_rows([e]), path)
        for cam in cameras:
            write_video(root / f"videos/chunk-000/{cam}/episode_{e:06d}.mp4", episode_frames(cam, e), fps=FPS)
    return root


# v3.0 file assignment: episodes 0 and 1 share data file 0 and video file 0, episode 2 is alone in file 1.
V30_FILES = ((0, 1), (2,))


def make_v30(root: Path, cameras: tuple[str, ...] = (FRONT, WRIST), task_index_name: str | None = "task") -> Path:
    """v3.0: episodes share chunk-XXX/file-YYY parquet and MP4 files; meta/episodes/*.parquet locate them."""
    import pandas as pd

    info = base_info("v3.0", cameras) | {
        "data_files_size_in_mb": 100, "video_files_size_in_mb": 200,
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"}
    (root / "meta/episodes/chunk-000").mkdir(parents=True)
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    # As lerobot writes it: a pandas frame indexed by the task strings (lerobot 0.4.4 leaves the index unnamed).
    pd.DataFrame({"task_index": range(len(TASKS))}, index=pd.Index(TASKS, name=task_index_name)).to_parquet(
        root / "meta/tasks.parquet")
    for file_index, episodes in enumerate(V30_FILES):
        data = root / f"data/chunk-000/file-{file_index:03d}.parquet"
        data.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(data_rows(list(episodes)), data)
        for cam in cameras:
            write_video(root / f"videos/{cam}/chunk-000/file-{file_index:03d}.mp4",
                        np.concatenate([episode_frames(cam, e) for e in episodes]), fps=FPS)
        rows: dict[str, list] = {"episode_index": [], "tasks": [], "length": [], "data/chunk_index": [],
                                 "data/file_index": [], "dataset_from_index": [], "dataset_to_index": []}
        for cam in cameras:
            for k in ("chunk_index", "file_index", "from_timestamp", "to_timestamp"):
                rows[f"videos/{cam}/{k}"] = []
        rows["meta/episodes/chunk_index"], rows["meta/episodes/file_index"] = [], []
        rows["stats/action/mean"] = []
        offset = 0.0
        for e in episodes:
            n = LENGTHS[e]
            rows["episode_index"].append(e)
            rows["tasks"].append([TASKS[EPISODE_TASK[e]]])
            rows["length"].append(n)
            rows["data/chunk_index"].append(0)
            rows["data/file_index"].append(file_index)
            rows["dataset_from_index"].append(sum(LENGTHS[:e]))
            rows["dataset_to_index"].append(sum(LENGTHS[:e + 1]))
            for cam in cameras:
                rows[f"videos/{cam}/chunk_index"].append(0)
                rows[f"videos/{cam}/file_index"].append(file_index)
                rows[f"videos/{cam}/from_timestamp"].append(offset)
                rows[f"videos/{cam}/to_timestamp"].append(offset + n / FPS)
            rows["meta/episodes/chunk_index"].append(0)
            rows["meta/episodes/file_index"].append(file_index)
            rows["stats/action/mean"].append([0.0, 0.0])
            offset += n / FPS
        pq.write_table(pa.table(rows), root / f"meta/episodes/chunk-000/file-{file_index:03d}.parquet")
    return root


def import_cli(capsys, *argv: str) -> tuple[int, str]:
    code = cli.main(["import-lerobot", *argv, "--no-progress"])
    return code, capsys.readouterr().err


def check_episode_frames(frames: np.ndarray, camera: str, episode: int) -> None:
    """The frames are episode ``episode``'s of ``camera``: its colour, every frame, in order, at 64x64."""
    assert frames.shape == (LENGTHS[episode], 64, 64, 3) and frames.dtype == np.uint8
    mean = frames.reshape(len(frames), -1, 3).mean(1)
    assert np.abs(mean[:, :2] - COLOURS[camera][episode]).max() < 12, mean[:, :2]
    assert np.abs(mean[:, 2] - (10 + 20 * np.arange(len(frames)))).max() < 8, mean[:, 2]


def test_import_v21(tmp_path, capsys):
    source = make_v21(tmp_path / "so100_pick")
    out = tmp_path / "ds"
    code, err = import_cli(capsys, str(source), "--out", str(out), "--size", "64", "--test-fraction", "0.34")
    assert code == 0, err
    ds = load_dataset(out)
    assert ds.image_size == 64 and len(ds) == 3
    by_episode = {e["lerobot_episode"]: i for i, e in enumerate(ds.entries)}
    assert sorted(by_episode) == [0, 1, 2]
    assert [e["split"] for e in ds.entries].count("test") == 1
    for episode, i in by_episode.items():
        entry = ds.entries[i]
        assert entry["task"] == TASKS[EPISODE_TASK[episode]] and entry["lerobot_tasks"] == [entry["task"]]
        assert entry["length"] == LENGTHS[episode] and entry["policy"] == "video" and entry["source"] == "lerobot"
        assert entry["camera"] == FRONT and entry["lerobot_version"] == "v2.1" and entry["lerobot_fps"] == FPS
        assert entry["lerobot_dataset"] == str(source.resolve()) and entry["original_size"] == [H, W]
        assert entry["lerobot_video"] == f"videos/chunk-000/{FRONT}/episode_{episode:06d}.mp4"
        ep = ds[i]
        check_episode_frames(ep.frames, FRONT, episode)
        assert ep.actions.shape == (LENGTHS[episode] - 1, 0) and np.all(np.isnan(ep.rewards))
    # Re-running writes nothing new.
    code, err = import_cli(capsys, str(source), "--out", str(out), "--size", "64")
    assert code == 0 and "already in the dataset" in err
    assert len(json.loads((out / "manifest.json").read_text())["episodes"]) == 3


def test_import_v30_shared_files(tmp_path):
    source = make_v30(tmp_path / "aloha_towel")
    out = tmp_path / "front"
    report = import_lerobot(source, out, camera=FRONT, test_fraction=0.0, progress=False)
    assert [e["lerobot_episode"] for e in report.written] == [0, 1, 2]
    ds = load_dataset(out)
    for i, entry in enumerate(ds.entries):
        episode = entry["lerobot_episode"]
        assert entry["task"] == TASKS[EPISODE_TASK[episode]] and entry["length"] == LENGTHS[episode]
        assert entry["lerobot_version"] == "v3.0" and entry["camera"] == FRONT
        assert entry["lerobot_video"] == f"videos/{FRONT}/chunk-000/file-{0 if episode < 2 else 1:03d}.mp4"
        check_episode_frames(ds[i].frames, FRONT, episode)
    # The other camera, by its short name, with a task name of our own, into its own dataset.
    report = import_lerobot(source, tmp_path / "wrist", camera="wrist", task="fold-towel", progress=False)
    wrist = load_dataset(tmp_path / "wrist")
    assert wrist.tasks == ["fold-towel"] and wrist.cameras == {"fold-towel": [WRIST]}
    for i, entry in enumerate(wrist.entries):
        assert entry["lerobot_tasks"] == [TASKS[EPISODE_TASK[entry["lerobot_episode"]]]]
        check_episode_frames(wrist[i].frames, WRIST, entry["lerobot_episode"])
    # Idempotent: nothing is written twice.
    again = import_lerobot(source, out, camera=FRONT, test_fraction=0.0, progress=False)
    assert again.written == [] and len(again.already_present) == 3 and len(load_dataset(out)) == 3


def test_interrupted_import_resumes(tmp_path):
    source = make_v30(tmp_path / "src", cameras=(FRONT,), task_index_name=None)
    out = tmp_path / "ds"
    first = import_lerobot(source, out, max_episodes=1, every=2, progress=False)  # one camera: no --camera needed
    assert [e["lerobot_episode"] for e in first.written] == [0] and first.written[0]["length"] == 5
    rest = import_lerobot(source, out, every=2, progress=False)
    assert [e["lerobot_episode"] for e in rest.written] == [1, 2] and len(rest.already_present) == 1
    ds = load_dataset(out)
    assert sorted(e["length"] for e in ds.entries) == [4, 5, 6]
    assert {e["fps"] for e in ds.entries} == {FPS / 2}
    assert [e["task"] for e in ds.entries] == [TASKS[EPISODE_TASK[e["lerobot_episode"]]] for e in ds.entries]


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_not_a_lerobot_dataset_and_unsupported_version(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert_one_line_error(*import_cli(capsys, str(tmp_path / "empty"), "--out", str(tmp_path / "ds")),
                          str(tmp_path / "empty"), "not a LeRobot dataset", "meta/info.json")
    source = make_v21(tmp_path / "old")
    info = json.loads((source / "meta/info.json").read_text())
    (source / "meta/info.json").write_text(json.dumps(info | {"codebase_version": "v1.6"}))
    assert_one_line_error(*import_cli(capsys, str(source), "--out", str(tmp_path / "ds")),
                          str(source / "meta/info.json"), "'v1.6'", "v2.1, v3.0")
    assert not (tmp_path / "ds").exists()


def test_camera_choice_errors(tmp_path, capsys):
    source = make_v30(tmp_path / "two_cams")
    assert_one_line_error(*import_cli(capsys, str(source), "--out", str(tmp_path / "ds")),
                          "--camera", FRONT, WRIST)
    assert_one_line_error(*import_cli(capsys, str(source), "--camera", "observation.images.side",
                                      "--out", str(tmp_path / "ds")),
                          str(source), "no camera 'observation.images.side'", FRONT, WRIST)
    assert_one_line_error(*import_cli(capsys, str(source), "--camera", "action", "--out", str(tmp_path / "ds")),
                          "'action' is a feature of dtype 'float32', not a video")


def test_damaged_parquet_and_video(tmp_path, capsys):
    source = make_v30(tmp_path / "src", cameras=(FRONT,))
    data = source / "data/chunk-000/file-000.parquet"
    good = data.read_bytes()
    data.write_bytes(good[: len(good) // 2])
    assert_one_line_error(*import_cli(capsys, str(source), "--out", str(tmp_path / "a")),
                          str(data), "not a readable parquet file")
    data.write_bytes(good)
    video = source / f"videos/{FRONT}/chunk-000/file-000.mp4"
    video.write_bytes(b"\x00not a video" * 100)
    assert_one_line_error(*import_cli(capsys, str(source), "--out", str(tmp_path / "b")),
                          str(video), "cannot decode video", "episode 0")
    meta = source / "meta/episodes/chunk-000/file-001.parquet"
    meta.write_bytes(b"PAR1 garbage")
    assert_one_line_error(*import_cli(capsys, str(source), "--out", str(tmp_path / "c")),
                          str(meta), "not a readable parquet file")


def test_video_shorter_than_its_timestamps(tmp_path, capsys):
    source = make_v21(tmp_path / "src")
    video = source / f"videos/chunk-000/{FRONT}/episode_000002.mp4"
    write_video(video, episode_frames(FRONT, 2)[:6], fps=FPS)
    assert_one_line_error(*import_cli(capsys, str(source), "--out", str(tmp_path / "ds")),
                          str(video), "episode 2", "needs frame 6", "only 6 frames", "shorter than")
    # The episodes finished before the error stay; with --skip-bad the others come in and the short one is reported.
    assert [e["lerobot_episode"] for e in load_dataset(tmp_path / "ds").entries] == [0, 1]
    report = import_lerobot(source, tmp_path / "skipping", skip_bad=True, progress=False)
    assert [e["lerobot_episode"] for e in report.written] == [0, 1]
    assert len(report.skipped) == 1 and "shorter than" in report.skipped[0][1]


def test_data_and_metadata_disagree(tmp_path, capsys):
    source = make_v21(tmp_path / "src")
    lines = (source / "meta/episodes.jsonl").read_text().splitlines()
    row = json.loads(lines[1]) | {"length": 9}
    (source / "meta/episodes.jsonl").write_text("\n".join([lines[0], json.dumps(row), lines[2]]) + "\n")
    assert_one_line_error(*import_cli(capsys, str(source), "--out", str(tmp_path / "ds")),
                          str(source / "data/chunk-000/episode_000001.parquet"), "episode 1 has 8 rows", "length 9")


@pytest.mark.slow
def test_import_dataset_written_by_lerobot(tmp_path):
    """A dataset recorded with lerobot's own API (whichever format version it writes) imports frame for frame."""
    pytest.importorskip("lerobot", reason="the lerobot package is not installed (its torch pin conflicts with ours)")
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    cam = "observation.images.front"
    dataset = LeRobotDataset.create(
        repo_id="local/colours", fps=FPS, root=tmp_path / "recorded", use_videos=True,
        features={cam: {"dtype": "video", "shape": (H, W, 3), "names": ["height", "width", "channels"]},
                  "observation.state": {"dtype": "float32", "shape": (2,), "names": ["x", "y"]},
                  "action": {"dtype": "float32", "shape": (2,), "names": ["x", "y"]}})
    for e in range(len(LENGTHS)):
        for i, frame in enumerate(episode_frames(FRONT, e)):
            dataset.add_frame({cam: frame, "observation.state": np.array([i, e], np.float32),
                               "action": np.zeros(2, np.float32), "task": TASKS[EPISODE_TASK[e]]})
        dataset.save_episode()
    if hasattr(dataset, "finalize"):
        dataset.finalize()
    report = import_lerobot(tmp_path / "recorded", tmp_path / "ds", test_fraction=0.0, progress=False)
    assert [e["lerobot_episode"] for e in report.written] == [0, 1, 2]
    ds = load_dataset(tmp_path / "ds")
    for i, entry in enumerate(ds.entries):
        assert entry["task"] == TASKS[EPISODE_TASK[entry["lerobot_episode"]]]
        check_episode_frames(ds[i].frames, FRONT, entry["lerobot_episode"])


@pytest.mark.slow
def test_imported_dataset_feeds_the_pipeline(tmp_path, tiny_diffusion_reward):
    """The imported dataset is an ordinary one: train-codec, train-video, fit-reward, score and evaluate-reward
    read it (tiny sizes, a few steps each)."""
    source = make_v30(tmp_path / "src", cameras=(FRONT,))
    data = tmp_path / "ds"
    assert cli.main(["import-lerobot", str(source), "--out", str(data), "--test-fraction", "0.34",
                     "--no-progress"]) == 0
    reward = tiny_diffusion_reward(data)
    assert cli.main(["score", str(reward), str(data), "--out", str(tmp_path / "scores")]) == 0
    assert (tmp_path / "scores" / "rewards.csv").is_file()
    assert cli.main(["evaluate-reward", "--model", str(reward), "--data", str(data),
                     "--out", str(tmp_path / "eval")]) == 0
