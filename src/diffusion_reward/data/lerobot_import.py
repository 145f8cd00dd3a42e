"""Bring a local LeRobot dataset (format v2.1 or v3.0) into the episode format, one camera at a time.

A LeRobot dataset is a folder with ``meta/info.json`` (``codebase_version``, ``fps``, ``features``
-- the cameras are the features of dtype ``video`` --, and the ``data_path``/``video_path``
templates), parquet tables of per-frame rows (``episode_index``, ``frame_index``, ``timestamp``,
``task_index``, states, actions) and one MP4 stream per camera. The two published layouts differ
in how episodes map to files:

``v2.1``
    One parquet file and one MP4 per episode, at ``data_path``/``video_path`` formatted with
    ``episode_chunk = episode_index // chunks_size``; episodes listed in ``meta/episodes.jsonl``
    (``episode_index``, ``tasks``, ``length``), tasks in ``meta/tasks.jsonl`` (``task_index``, ``task``).
``v3.0``
    Many episodes share one parquet file and one MP4 per camera (``chunk-XXX/file-YYY``). The
    episodes table ``meta/episodes/chunk-*/file-*.parquet`` gives, per episode, its data file
    (``data/chunk_index``, ``data/file_index``) and, per camera, its video file and where the
    episode lies in it (``videos/<key>/chunk_index``, ``file_index``, ``from_timestamp``,
    ``to_timestamp``); tasks are in ``meta/tasks.parquet`` (the ``task`` strings and their ``task_index``).

Frame ``i`` of an episode is the video frame shown at ``from_timestamp + timestamp[i]`` (``from_timestamp``
is 0 in v2.1), i.e. frame number ``round((from_timestamp + timestamp[i]) * fps)`` of its MP4. Every
MP4 is decoded once, front to back, and each episode is written as soon as its last frame has gone
by, so a file of many episodes is never held in memory whole. Frames are centre-cropped and resized
exactly as :func:`diffusion_reward.data.importers.import_videos` does, and episodes are written,
skipped when already present, split into train/test and reported by the same machinery.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from diffusion_reward.data.episodes import DatasetWriter, Episode, policy_slug
from diffusion_reward.data.importers import (ImportReport, _free_file, _slug, assign_splits, check_existing,
                                            check_frame_options)
from diffusion_reward.errors import UserError
from diffusion_reward.utils.video_io import VideoError, iter_video, resize_center_crop

SUPPORTED_VERSIONS = ("v2.1", "v3.0")
CAMERA_PREFIX = "observation.images."
INFO_PATH = "meta/info.json"


@dataclasses.dataclass
class LeRobotInfo:
    """What ``meta/info.json`` says that the import needs."""

    root: Path
    version: str
    fps: float
    features: dict[str, Any]
    data_path: str
    video_path: str
    chunks_size: int

    @property
    def video_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if isinstance(f, dict) and f.get("dtype") == "video"]

    def video_fps(self, key: str) -> float:
        """The frame rate of a camera's MP4s: its ``video.fps`` when recorded, else the dataset's ``fps``."""
        feature = self.features.get(key, {})
        for block in ("info", "video_info"):
            value = (feature.get(block) or {}).get("video.fps")
            if isinstance(value, (int, float)) and value > 0:
                return float(value)
        return self.fps

    def choose_camera(self, camera: str | None) -> str:
        """The video key to import: ``camera`` (``front`` means ``observation.images.front``), or the only one."""
        keys = self.video_keys
        if not keys:
            raise UserError(f"{self.root / INFO_PATH}: no camera stored as video (no feature of dtype 'video'); "
                            "import-lerobot reads MP4 cameras")
        if camera is None:
            if len(keys) > 1:
                raise UserError(f"{self.root}: {len(keys)} cameras, choose one with --camera: {', '.join(keys)}")
            return keys[0]
        if camera in keys:
            return camera
        if CAMERA_PREFIX + camera in keys:
            return CAMERA_PREFIX + camera
        dtype = (self.features.get(camera) or self.features.get(CAMERA_PREFIX + camera) or {}).get("dtype")
        what = f"{camera!r} is a feature of dtype {dtype!r}, not a video" if dtype else f"no camera {camera!r}"
        raise UserError(f"{self.root}: {what}; its cameras are: {', '.join(keys)}")


def read_info(root: str | os.PathLike) -> LeRobotInfo:
    """Read and check ``meta/info.json`` of the LeRobot dataset at ``root``; one-line :class:`UserError` otherwise."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: no such folder (expected a LeRobot dataset)")
    path = root / INFO_PATH
    if not path.is_file():
        raise UserError(f"{root}: not a LeRobot dataset (no {INFO_PATH})")
    try:
        info = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not readable JSON ({type(exc).__name__}: {exc})") from None
    if not isinstance(info, dict):
        raise UserError(f"{path}: expected a JSON object")
    version = info.get("codebase_version")
    if version not in SUPPORTED_VERSIONS:
        raise UserError(f"{path}: codebase_version {version!r} is not supported (expected one of "
                        f"{', '.join(SUPPORTED_VERSIONS)}; convert older datasets with lerobot first)")
    missing = [k for k in ("fps", "features", "data_path", "video_path") if not info.get(k)]
    if missing:
        raise UserError(f"{path}: lacks {', '.join(missing)} (expected the LeRobot {version} info.json)")
    fps = info["fps"]
    if not isinstance(fps, (int, float)) or fps <= 0 or not isinstance(info["features"], dict):
        raise UserError(f"{path}: fps must be a positive number and features an object")
    return LeRobotInfo(root, version, float(fps), info["features"], str(info["data_path"]),
                       str(info["video_path"]), int(info.get("chunks_size") or 1000))


@dataclasses.dataclass
class EpisodeRecord:
    """One episode as the LeRobot metadata describes it, for one camera."""

    index: int
    length: int
    tasks: list[str]  # the metadata's task strings (used when the data has no task_index)
    data_file: Path
    video_file: Path
    from_timestamp: float


def _format(template: str, path: Path, **fields: Any) -> str:
    try:
        return template.format(**fields)
    except (KeyError, IndexError, ValueError) as exc:
        raise UserError(f"{path}: cannot fill the path template {template!r} ({type(exc).__name__}: {exc})") from None


def _read_table(path: Path, columns: Sequence[str] | None = None, what: str = "parquet table") -> Any:
    """A pyarrow table of the ``columns`` of ``path`` that exist (all when None); :class:`UserError` when unreadable."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.is_file():
        raise UserError(f"{path}: no such file (the {what})")
    try:
        names = pq.read_schema(path).names
        return pq.read_table(path, columns=[c for c in columns if c in names] if columns is not None else None)
    except (OSError, ValueError, pa.ArrowException) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise UserError(f"{path}: not a readable parquet file ({type(exc).__name__}: {message})") from None


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    rows = []
    try:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise ValueError("not an object")
                rows.append(row)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"{path}: line {n} is not a JSON object ({exc})") from None
    return rows


def read_tasks(info: LeRobotInfo) -> dict[int, str]:
    """``task_index -> task`` from ``meta/tasks.jsonl`` (v2.1) or ``meta/tasks.parquet`` (v3.0)."""
    if info.version == "v2.1":
        path = info.root / "meta/tasks.jsonl"
        try:
            return {int(row["task_index"]): str(row["task"]) for row in _read_jsonl(path)}
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{path}: every line needs task_index and task ({type(exc).__name__}: {exc})") from None
    path = info.root / "meta/tasks.parquet"
    table = _read_table(path, what="task table")
    # Written by pandas with the task strings as its index, named "task" (or unnamed in hand-made files).
    name = next((n for n in ("task", "__index_level_0__") if n in table.column_names), None)
    if name is None or "task_index" not in table.column_names:
        raise UserError(f"{path}: expected columns task_index and task, found {', '.join(table.column_names)}")
    return {int(i): str(t) for i, t in zip(table.column("task_index").to_pylist(), table.column(name).to_pylist())}


def read_episodes(info: LeRobotInfo, camera: str) -> list[EpisodeRecord]:
    """Every episode the metadata lists, in episode order, with its data file and ``camera``'s video file."""
    if info.version == "v2.1":
        path = info.root / "meta/episodes.jsonl"
        records = []
        for row in _read_jsonl(path):
            try:
                index, length = int(row["episode_index"]), int(row["length"])
            except (KeyError, TypeError, ValueError):
                raise UserError(f"{path}: every line needs episode_index and length, got {row}") from None
            chunk = index // info.chunks_size
            fields = {"episode_chunk": chunk, "episode_index": index, "video_key": camera}
            records.append(EpisodeRecord(index, length, [str(t) for t in row.get("tasks") or []],
                                         info.root / _format(info.data_path, info.root / INFO_PATH, **fields),
                                         info.root / _format(info.video_path, info.root / INFO_PATH, **fields), 0.0))
        return sorted(records, key=lambda r: r.index)
    files = sorted((info.root / "meta/episodes").glob("chunk-*/file-*.parquet"))
    if not files:
        raise UserError(f"{info.root / 'meta/episodes'}: no chunk-*/file-*.parquet (the LeRobot v3.0 episodes table)")
    video = f"videos/{camera}/"
    columns = ["episode_index", "length", "tasks", "data/chunk_index", "data/file_index", video + "chunk_index",
               video + "file_index", video + "from_timestamp"]
    records = []
    for path in files:
        table = _read_table(path, columns, what="episodes table")
        lacking = [c for c in columns if c != "tasks" and c not in table.column_names]
        if lacking:
            raise UserError(f"{path}: no column {', '.join(lacking)} (expected the LeRobot v3.0 episodes table)")
        rows = {c: table.column(c).to_pylist() for c in table.column_names}
        for i in range(table.num_rows):
            data = _format(info.data_path, info.root / INFO_PATH, chunk_index=rows["data/chunk_index"][i],
                           file_index=rows["data/file_index"][i])
            mp4 = _format(info.video_path, info.root / INFO_PATH, video_key=camera,
                          chunk_index=rows[video + "chunk_index"][i], file_index=rows[video + "file_index"][i])
            tasks = rows["tasks"][i] if "tasks" in rows else None
            records.append(EpisodeRecord(int(rows["episode_index"][i]), int(rows["length"][i]),
                                         [str(t) for t in tasks or []], info.root / data, info.root / mp4,
                                         float(rows[video + "from_timestamp"][i])))
    return sorted(records, key=lambda r: r.index)


class _DataRows:
    """The per-frame columns an import needs, read once per data file (v3.0 files hold many episodes)."""

    COLUMNS = ("episode_index", "frame_index", "timestamp", "task_index")

    def __init__(self) -> None:
        self._path: Path | None = None
        self._columns: dict[str, np.ndarray] = {}

    def episode(self, record: EpisodeRecord) -> dict[str, np.ndarray]:
        """The rows of ``record``'s episode, in frame order: ``timestamp`` and, when present, ``task_index``."""
        if record.data_file != self._path:
            table = _read_table(record.data_file, self.COLUMNS, what=f"data of episode {record.index}")
            self._columns = {c: table.column(c).to_numpy() for c in table.column_names}
            self._path = record.data_file
        cols = self._columns
        if "episode_index" not in cols:
            raise UserError(f"{record.data_file}: no episode_index column (expected LeRobot's per-frame table)")
        rows = np.flatnonzero(cols["episode_index"] == record.index)
        if "frame_index" in cols:
            rows = rows[np.argsort(cols["frame_index"][rows], kind="stable")]
        if len(rows) != record.length:
            raise UserError(f"{record.data_file}: episode {record.index} has {len(rows)} rows, but the episodes "
                            f"metadata gives it length {record.length}")
        out = {"timestamp": (cols["timestamp"][rows].astype(np.float64) if "timestamp" in cols else None)}
        if "task_index" in cols:
            out["task_index"] = cols["task_index"][rows]
        return out


@dataclasses.dataclass
class _Pending:
    """An episode being gathered from its video: the frame numbers it wants and the frames found so far."""

    record: EpisodeRecord
    split: str
    original: str
    tasks: list[str]
    numbers: np.ndarray
    frames: list[np.ndarray] = dataclasses.field(default_factory=list)


def import_lerobot(source: str | os.PathLike, out: str | os.PathLike, *, camera: str | None = None,
                   task: str | None = None, image_size: int = 64, policy: str = "video", test_fraction: float = 0.2,
                   min_frames: int = 3, every: int = 1, max_frames: int | None = None,
                   max_episodes: int | None = None, seed: int = 0, skip_bad: bool = False, progress: bool = True,
                   log: Callable[[str], None] | None = None) -> ImportReport:
    """Import one camera of the local LeRobot dataset ``source`` (v2.1 or v3.0) into the dataset ``out``.

    Every episode becomes one episode of ``out`` under its task from the dataset's task table
    (``task`` overrides it), with policy ``policy``, no actions and unknown rewards; frames are
    one in ``every`` (at most ``max_frames``), centre-cropped and resized to ``image_size``. The
    train/test split is drawn over all the dataset's episodes with ``seed``; ``max_episodes``
    then keeps the first ones. Episodes already imported from this dataset and camera are
    skipped, so re-running resumes. A bad episode (unreadable file, video shorter than its
    timestamps, fewer than ``min_frames`` frames) stops the import with a one-line
    :class:`UserError`, or with ``skip_bad`` is reported and skipped.
    """
    from diffusion_reward.utils.progress import progress_bar

    check_frame_options(min_frames, every, image_size)
    info = read_info(source)
    root = info.root.resolve()
    camera = info.choose_camera(camera)
    task_table = read_tasks(info)
    records = read_episodes(info, camera)
    if not records:
        raise UserError(f"{info.root}: the episodes metadata lists no episodes")
    splits = assign_splits(len(records), test_fraction, seed)
    chosen = list(zip(records, splits))[:max_episodes]
    report = ImportReport()
    report.bad_existing = check_existing(out, skip_bad)
    writer = DatasetWriter(out, {"image_size": image_size})
    done = {(e.get("original"), e.get("camera")) for e in writer.manifest["episodes"] if e.get("source") == "lerobot"}
    todo = []
    for record, split in chosen:
        original = f"{root}#episode_{record.index:06d}"
        if (original, camera) in done:
            report.already_present.append(original)
        else:
            todo.append((record, split, original))
    fps = info.video_fps(camera)
    camera_name = _slug(camera[len(CAMERA_PREFIX):] if camera.startswith(CAMERA_PREFIX) else camera)

    def fail(original: str, message: str) -> None:
        if not skip_bad:
            raise UserError(message)
        report.skipped.append((original, message))
        if log:
            log(f"skipping {message}")

    def write(item: _Pending) -> None:
        raw = np.stack(item.frames)
        if len(raw) < min_frames:
            fail(item.original, f"{item.record.video_file}: episode {item.record.index} has {len(raw)} frame(s), "
                                f"fewer than --min-frames {min_frames} (the video model needs a history of frames)")
            return
        name = task or (item.tasks[0] if item.tasks else _slug(root.name))
        entry = writer.add(
            Episode(frames=resize_center_crop(raw, image_size)), task=name, policy=policy, split=item.split,
            seed=None, camera=camera, source="lerobot",
            file=_free_file(writer, f"episodes/{_slug(name)}/{policy_slug(policy)}-{item.split}-{camera_name}-"
                                    f"{item.record.index:06d}"),
            original=item.original, original_size=[int(raw.shape[1]), int(raw.shape[2])], fps=info.fps / every,
            every=every, lerobot_dataset=str(root), lerobot_version=info.version, lerobot_fps=info.fps,
            lerobot_episode=item.record.index, lerobot_tasks=item.tasks,
            lerobot_video=str(item.record.video_file.relative_to(info.root)))
        report.written.append(entry)

    data_rows = _DataRows()
    with progress_bar(f"importing {info.root.name} ({camera})", len(todo) if progress else 0,
                      unit="episode") as advance:
        for video, group in _by_video(todo):
            pending = []
            for record, split, original in group:
                try:
                    item = _plan(record, split, original, data_rows, task_table, fps, every, max_frames)
                except UserError as exc:
                    fail(original, str(exc))
                    advance(1)
                    continue
                pending.append(item)
            _gather(video, pending, fps, write, fail, advance)
    return report


def _by_video(todo: list[tuple[EpisodeRecord, str, str]]) -> list[tuple[Path, list[tuple[EpisodeRecord, str, str]]]]:
    groups: dict[Path, list] = {}
    for item in todo:
        groups.setdefault(item[0].video_file, []).append(item)
    return list(groups.items())


def _plan(record: EpisodeRecord, split: str, original: str, data_rows: _DataRows, task_table: dict[int, str],
          fps: float, every: int, max_frames: int | None) -> _Pending:
    """Which frames of its video ``record`` needs (after ``every``/``max_frames``), and its task strings."""
    rows = data_rows.episode(record)
    timestamps = rows["timestamp"] if rows["timestamp"] is not None else np.arange(record.length) / fps
    numbers = np.rint((record.from_timestamp + timestamps) * fps).astype(np.int64)[::every][:max_frames]
    if len(numbers) and (np.any(np.diff(numbers) < 0) or numbers[0] < 0):
        raise UserError(f"{record.data_file}: the timestamps of episode {record.index} do not increase from 0")
    tasks = list(record.tasks)
    if "task_index" in rows:
        tasks = []
        for index in dict.fromkeys(int(i) for i in rows["task_index"]):
            if index not in task_table:
                raise UserError(f"{record.data_file}: episode {record.index} has task_index {index}, which the "
                                "task table does not list")
            tasks.append(task_table[index])
    return _Pending(record, split, original, tasks, numbers)


def _gather(video: Path, pending: list[_Pending], fps: float, write: Callable[[_Pending], None],
            fail: Callable[[str, str], None], advance: Callable[[int], None]) -> None:
    """Decode ``video`` once, front to back, handing each episode to ``write`` when its last frame has passed."""
    wanted: dict[int, list[_Pending]] = {}
    for item in pending:
        for n in item.numbers:
            wanted.setdefault(int(n), []).append(item)
    last = max(wanted, default=-1)
    open_items = [item for item in pending if len(item.numbers)]
    for item in pending:
        if not len(item.numbers):
            fail(item.original, f"{item.record.data_file}: episode {item.record.index} has no frames")
            advance(1)
    decoded = 0
    try:
        if last >= 0:
            with contextlib.closing(iter_video(video)) as frames:
                for n, frame in enumerate(frames):
                    decoded = n + 1
                    for item in wanted.pop(n, ()):
                        item.frames.append(frame)
                        if len(item.frames) == len(item.numbers):
                            open_items.remove(item)
                            write(item)
                            advance(1)
                    if n >= last:
                        break
    except VideoError as exc:
        for item in open_items:
            fail(item.original, f"{exc} (episode {item.record.index})")
            advance(1)
        return
    for item in open_items:
        missing = int(item.numbers[len(item.frames)])
        fail(item.original, f"{video}: episode {item.record.index} needs frame {missing} (at "
                            f"{missing / fps:.3f} s, {fps:g} fps) but the video has only {decoded} frames; it is "
                            "shorter than the episode's timestamps say")
        advance(1)


__all__ = ["LeRobotInfo", "EpisodeRecord", "SUPPORTED_VERSIONS", "import_lerobot", "read_episodes", "read_info",
           "read_tasks"]
