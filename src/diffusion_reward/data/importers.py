"""Bring outside data into the episode format: folders of videos, and Adroit HDF5 demonstrations.

:func:`import_videos`
    A folder of video files (mp4, webm, gif, avi, mov, ...) and/or of image-sequence folders
    (one folder of png/jpg frames per clip) becomes a dataset: every clip one episode with
    policy ``video``, source ``video``, unknown (NaN) rewards and no actions, centre-cropped and
    resized to the dataset's image size. This is how real-robot footage comes in.

:func:`import_demos`
    Adroit demonstrations (door, hammer, pen) in the D4RL HDF5 layout (flat arrays split into
    episodes at ``timeouts``/``terminals``, simulator states under ``infos/``) or the Minari
    layout (``episode_N`` groups, states under ``infos/state/``) are replayed state by state
    through the simulator and rendered with the task's camera, so the frames match what the RL
    agent sees.

Both write one episode at a time through :class:`DatasetWriter` (the manifest is flushed after
every episode, so an interrupted import keeps what it finished) and skip sources that the dataset
already holds, so re-running the same command resumes instead of duplicating. A bad source stops
the import with a one-line :class:`UserError` naming it, unless ``skip_bad`` is set, in which case
it is reported in :attr:`ImportReport.skipped` and the import goes on.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from diffusion_reward.data.episodes import DatasetError, DatasetWriter, Episode, check_existing
from diffusion_reward.errors import UserError
from diffusion_reward.utils.video_io import (IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, VideoError, image_sequence,
                                             is_image_file, is_video_file, read_video, resize_center_crop,
                                             video_fps)


@dataclasses.dataclass
class ImportReport:
    """What an import did: entries written, sources skipped as bad (with the reason), sources already present."""

    written: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    already_present: list[str] = dataclasses.field(default_factory=list)
    bad_existing: list[str] = dataclasses.field(default_factory=list)

    @property
    def frames(self) -> int:
        return int(sum(e["length"] for e in self.written))

    def summary(self) -> str:
        lines = [f"imported {len(self.written)} episodes ({self.frames} frames)"
                 + (f", {len(self.already_present)} already in the dataset" if self.already_present else "")]
        by_split: dict[str, int] = {}
        for e in self.written:
            by_split[e["split"]] = by_split.get(e["split"], 0) + 1
        if by_split:
            lines[0] += " [" + ", ".join(f"{k}: {v}" for k, v in sorted(by_split.items())) + "]"
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} bad source(s):")
            lines.extend(f"  {reason}" for _, reason in self.skipped)
        if self.bad_existing:
            lines.append(f"{len(self.bad_existing)} episode file(s) already in the dataset are unreadable:")
            lines.extend(f"  {reason}" for reason in self.bad_existing)
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Videos


def check_frame_options(min_frames: int, every: int, image_size: int) -> None:
    """One line for an importer's frame option out of range."""
    if min_frames < 1:
        raise UserError(f"--min-frames must be at least 1, got {min_frames}")
    if every < 1:
        raise UserError(f"--every must be at least 1, got {every}")
    if image_size < 8:
        raise UserError(f"--image-size must be at least 8, got {image_size}")


def find_clips(directory: str | os.PathLike) -> list[Path]:
    """The clips in ``directory``: video files, and sub-folders that hold image sequences.

    A folder that holds image files directly (and no videos or sub-folders with images) is itself
    one clip. ``directory`` may also be a single video file. Order is natural (``clip2`` before
    ``clip10``).
    """
    from diffusion_reward.utils.video_io import _natural_key

    directory = Path(directory)
    if directory.is_file():
        if not is_video_file(directory):
            raise UserError(f"{directory}: not a video file (expected one of {', '.join(VIDEO_EXTENSIONS)})")
        return [directory]
    if not directory.is_dir():
        raise UserError(f"{directory}: no such folder")
    clips = []
    loose_images = False
    for child in sorted(directory.iterdir(), key=lambda p: _natural_key(p.name)):
        if child.name.startswith("."):
            continue
        if child.is_file() and is_video_file(child):
            clips.append(child)
        elif child.is_dir() and image_sequence(child):
            clips.append(child)
        elif child.is_file() and is_image_file(child):
            loose_images = True
    if not clips and loose_images:
        clips.append(directory)
    if not clips:
        raise UserError(f"{directory}: no video files ({', '.join(VIDEO_EXTENSIONS)}) or image-sequence folders "
                        f"({', '.join(IMAGE_EXTENSIONS)}) found")
    return clips


def assign_splits(n: int, test_fraction: float, seed: int) -> list[str]:
    """Split ``n`` sources into train/test: ``round(n * test_fraction)`` test ones, chosen by ``seed``.

    With a positive fraction and at least two sources, at least one is test and one is train.
    """
    if not 0.0 <= test_fraction <= 1.0:
        raise UserError(f"--test-fraction must be between 0 and 1, got {test_fraction}")
    n_test = int(round(n * test_fraction))
    if n >= 2 and test_fraction > 0:
        n_test = min(max(n_test, 1), n - 1 if test_fraction < 1 else n)
    order = np.random.default_rng(seed).permutation(n)
    splits = ["train"] * n
    for i in order[:n_test]:
        splits[int(i)] = "test"
    return splits


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "clip"


def import_videos(source: str | os.PathLike, out: str | os.PathLike, *, task: str | None = None,
                  image_size: int = 64, test_fraction: float = 0.2, min_frames: int = 3, every: int = 1,
                  max_frames: int | None = None, seed: int = 0, skip_bad: bool = False,
                  progress: bool = True, log: Callable[[str], None] | None = None) -> ImportReport:
    """Turn the clips in ``source`` (see :func:`find_clips`) into episodes of the dataset ``out``.

    Each clip is read (one frame in ``every``, at most ``max_frames``), centre-cropped and
    resized to ``image_size`` and stored as policy ``video`` under ``task`` (default: the source
    folder's name). Clips shorter than ``min_frames`` (after subsampling) are bad input. Clips
    whose path is already recorded for ``task`` are skipped, so re-running resumes.
    """
    source = Path(source)
    check_frame_options(min_frames, every, image_size)
    task = task or _slug(source.stem if source.is_file() else source.resolve().name)
    clips = find_clips(source)
    splits = assign_splits(len(clips), test_fraction, seed)
    report = ImportReport()
    report.bad_existing = check_existing(out, skip_bad)
    writer = DatasetWriter(out, {"image_size": image_size})
    done = {e.get("original") for e in writer.manifest["episodes"] if e["task"] == task}
    todo = []
    for clip, split in zip(clips, splits):
        if str(clip.resolve()) in done:
            report.already_present.append(str(clip))
        else:
            todo.append((clip, split))
    for clip, split in _progress(todo, progress, f"importing {task}"):
        try:
            raw = read_video(clip, max_frames=max_frames, every=every)
            if len(raw) < min_frames:
                raise VideoError(f"{clip}: clip has {len(raw)} frame(s), fewer than --min-frames {min_frames} "
                                 "(the video model needs a history of frames)")
            frames = resize_center_crop(raw, image_size)
        except UserError as exc:
            if not skip_bad:
                raise
            report.skipped.append((str(clip), str(exc)))
            if log:
                log(f"skipping {exc}")
            continue
        fps = video_fps(clip)
        entry = writer.add(Episode(frames=frames), task=task, policy="video", split=split, seed=None,
                           camera=None, source="video",
                           file=_free_file(writer, f"episodes/{task}/video-{split}-{_slug(clip.stem)}"),
                           original=str(clip.resolve()), original_size=[int(raw.shape[1]), int(raw.shape[2])],
                           fps=(fps / every) if fps else None, every=every)
        report.written.append(entry)
    return report


# ---------------------------------------------------------------------------------------------
# Adroit demonstrations (D4RL / Minari HDF5)

# The task-specific part of an Adroit simulator state (beside qpos and qvel), as the
# gymnasium-robotics environments' set_env_state() expects it.
ADROIT_EXTRA_STATE = {"door": ("door_body_pos",), "hammer": ("board_pos",), "pen": ("desired_orien",)}
SUCCESS_KEYS = ("goal_achieved", "success")


@dataclasses.dataclass
class Demo:
    """One demonstration as read from the file: ``M`` simulator states, ``L`` actions (``L`` = M-1 or M)."""

    key: str  # where it is in the file: "episode_3" (Minari) or "steps 0-199" (D4RL)
    layout: str  # "d4rl" | "minari"
    sim_states: dict[str, np.ndarray]  # qpos (M, nq), qvel (M, nv), task extras (M, k)
    observations: np.ndarray | None  # (M, S) native observations, when present
    actions: np.ndarray  # (L, A)
    rewards: np.ndarray | None  # (L,) the simulator's dense reward
    success: np.ndarray | None  # (L,) per-step success flags, when the file has them


def _hdf5_error(path: Path, what: str) -> UserError:
    return UserError(f"{path}: {what}")


def _dataset(group: Any, name: str, path: Path, where: str) -> np.ndarray:
    import h5py

    item = group.get(name)
    if item is None or not isinstance(item, h5py.Dataset):
        raise _hdf5_error(path, f"no dataset {where}{name} (expected the D4RL or Minari layout)")
    return np.asarray(item[()])


def read_demos(path: str | os.PathLike, task: str) -> list[Demo]:
    """Read the demonstrations of ``task`` (door, hammer, pen) from a D4RL- or Minari-layout HDF5 file.

    D4RL: flat ``observations``, ``actions``, ``rewards``, ``terminals``/``timeouts`` and
    ``infos/qpos``, ``infos/qvel``, ``infos/<task extra>``, split into episodes after every step
    flagged in ``timeouts`` or ``terminals``. Minari: groups ``episode_N`` with ``observations``,
    ``actions``, ``rewards`` and ``infos/state/{qpos,qvel,<task extra>}``. Raises
    :class:`UserError` naming the file and what is missing or inconsistent.
    """
    import h5py

    path = Path(path)
    if task not in ADROIT_EXTRA_STATE:
        raise UserError(f"import-demos: task must be one of {sorted(ADROIT_EXTRA_STATE)}, got {task!r}")
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise _hdf5_error(path, f"not a readable HDF5 file ({exc})") from None
    try:
        with handle as f:
            episode_groups = sorted((k for k in f.keys() if re.fullmatch(r"episode_\d+", k)),
                                    key=lambda k: int(k.split("_")[1]))
            if episode_groups:
                return [_read_minari_episode(f[k], k, path, task) for k in episode_groups]
            if "actions" in f and "infos" in f:
                return _read_d4rl(f, path, task)
            raise _hdf5_error(path, "neither the D4RL layout (actions, infos/qpos, ...) nor the Minari layout "
                                    "(episode_0/, episode_1/, ...)")
    except UserError:
        raise
    except (OSError, KeyError, ValueError) as exc:  # truncated or damaged HDF5 content
        raise _hdf5_error(path, f"cannot read ({type(exc).__name__}: {exc})") from None


def _read_d4rl(f: Any, path: Path, task: str) -> list[Demo]:
    actions = _dataset(f, "actions", path, "")
    n = len(actions)
    infos = f["infos"]
    states = {k: _dataset(infos, k, path, "infos/") for k in ("qpos", "qvel", *ADROIT_EXTRA_STATE[task])}
    observations = _dataset(f, "observations", path, "") if "observations" in f else None
    rewards = _dataset(f, "rewards", path, "").reshape(-1) if "rewards" in f else None
    success = next((_dataset(infos, k, path, "infos/").reshape(-1).astype(bool) for k in SUCCESS_KEYS if k in infos),
                   None)
    for name, arr in [*states.items(), ("observations", observations), ("rewards", rewards),
                      ("success", success)]:
        if arr is not None and len(arr) != n:
            raise _hdf5_error(path, f"{name} has {len(arr)} rows but actions has {n}")
    ends = np.zeros(n, bool)
    for key in ("timeouts", "terminals"):
        if key in f:
            flags = _dataset(f, key, path, "").reshape(-1).astype(bool)
            if len(flags) != n:
                raise _hdf5_error(path, f"{key} has {len(flags)} rows but actions has {n}")
            ends |= flags
    bounds, start = [], 0
    for i in np.flatnonzero(ends):
        bounds.append((start, int(i) + 1))
        start = int(i) + 1
    if start < n:
        bounds.append((start, n))
    demos = []
    for a, b in bounds:
        # D4RL stores the state *before* each action: M = L states, the final state is not in the file.
        demos.append(Demo(f"steps {a}-{b - 1}", "d4rl", {k: v[a:b] for k, v in states.items()},
                          None if observations is None else observations[a:b], actions[a:b],
                          None if rewards is None else rewards[a:b], None if success is None else success[a:b]))
    return demos


def _read_minari_episode(group: Any, key: str, path: Path, task: str) -> Demo:
    where = f"{key}/"
    actions = _dataset(group, "actions", path, where)
    infos = group.get("infos")
    state_group = infos.get("state") if infos is not None else None
    if state_group is None:
        raise _hdf5_error(path, f"no group {where}infos/state (the simulator states to replay)")
    states = {k: _dataset(state_group, k, path, f"{where}infos/state/") for k in ("qpos", "qvel",
                                                                               *ADROIT_EXTRA_STATE[task])}
    observations = _dataset(group, "observations", path, where) if "observations" in group else None
    rewards = _dataset(group, "rewards", path, where).reshape(-1) if "rewards" in group else None
    success = next((_dataset(infos, k, path, f"{where}infos/").reshape(-1).astype(bool)
                    for k in SUCCESS_KEYS if k in infos), None)
    n = len(actions)
    m = len(states["qpos"])
    if m not in (n, n + 1) or any(len(v) != m for v in states.values()):
        raise _hdf5_error(path, f"{where}infos/state has {[len(v) for v in states.values()]} rows for {n} actions "
                                "(expected one per step, or one more)")
    if observations is not None and len(observations) != m:
        observations = observations[:m] if len(observations) > m else None
    if success is not None and len(success) == n + 1:
        success = success[1:]  # Minari's infos start with the reset's
    if (rewards is not None and len(rewards) != n) or (success is not None and len(success) != n):
        raise _hdf5_error(path, f"{where}rewards/success do not have one row per action ({n})")
    return Demo(key, "minari", states, observations, actions, rewards, success)


def render_demo(env: Any, demo: Demo, task: str, action_repeat: int) -> Episode:
    """Replay ``demo`` state by state through ``env``'s simulator and render every ``action_repeat``-th state.

    Frames are taken at the agent's step rate (one per ``action_repeat`` simulator steps, as the
    RL agent sees them); each agent step stores the first of its simulator actions, the dense
    reward summed over its simulator steps, and the sparse reward/success when the file has them
    (NaN rewards otherwise).
    """
    sim = env.simulator.env  # the gymnasium-robotics environment (has set_env_state)
    nq, nv = sim.model.nq, sim.model.nv
    qpos, qvel = demo.sim_states["qpos"], demo.sim_states["qvel"]
    if qpos.ndim != 2 or qpos.shape[1] != nq or qvel.ndim != 2 or qvel.shape[1] != nv:
        raise UserError(f"{demo.key}: qpos/qvel have shapes {qpos.shape}/{qvel.shape}, but the {task} model has "
                        f"nq={nq}, nv={nv}; is this file for another task?")
    m, n = len(qpos), len(demo.actions)
    keep = np.arange(0, m, action_repeat)
    frames, states = [], []
    for i in keep:
        state = {"qpos": qpos[i].astype(np.float64), "qvel": qvel[i].astype(np.float64)}
        for name in ADROIT_EXTRA_STATE[task]:
            state[name] = np.asarray(demo.sim_states[name][i], np.float64).reshape(-1)
        sim.set_env_state(state)
        frames.append(env.render_frame())
        if demo.observations is not None:
            states.append(np.asarray(demo.observations[i], np.float32).reshape(-1))
    steps = len(keep) - 1
    actions = np.stack([demo.actions[keep[j]] for j in range(steps)]).astype(np.float32) if steps else None
    spans = [(int(keep[j]), min(int(keep[j + 1]), n)) for j in range(steps)]
    dense = (np.asarray([demo.rewards[a:b].sum() for a, b in spans], np.float32)
             if demo.rewards is not None else None)
    if demo.success is not None:
        success = np.asarray([demo.success[a:b].any() for a, b in spans], bool)
        sparse = np.asarray([demo.success[a:b].sum() for a, b in spans], np.float32)
    else:
        success, sparse = None, None
    return Episode(frames=np.stack(frames), actions=actions, rewards=sparse, dense=dense, success=success,
                   states=np.stack(states) if states else None)


def import_demos(path: str | os.PathLike, out: str | os.PathLike, *, task: str, image_size: int = 64,
                 camera: str | None = None, action_repeat: int = 2, policy: str = "expert",
                 test_fraction: float = 0.2, max_episodes: int | None = None, min_frames: int = 3, seed: int = 0,
                 skip_bad: bool = False, progress: bool = True,
                 log: Callable[[str], None] | None = None) -> ImportReport:
    """Render the Adroit demonstrations in ``path`` (see :func:`read_demos`) into the dataset ``out``.

    Frames come from the same environment, camera and render settings as RL (``make_env``), at
    the agent's step rate. Demonstrations already imported from this file are skipped; ones that
    are too short or do not fit the task's model are bad input (see ``skip_bad``).
    """
    from diffusion_reward.envs import make_env, resolve_task

    from diffusion_reward.envs.rendering import default_render_settings

    path = Path(path)
    spec = resolve_task(task)
    if spec.domain != "adroit":
        raise UserError(f"import-demos reads Adroit demonstrations (door, hammer, pen); {task!r} is a "
                        f"{spec.domain} task (collect it with `diffusion-reward collect`)")
    if action_repeat < 1 or min_frames < 1:
        raise UserError("--action-repeat and --min-frames must be at least 1")
    demos = read_demos(path, spec.name)
    if not demos:
        raise UserError(f"{path}: holds no demonstrations")
    if max_episodes is not None:
        demos = demos[:max_episodes]
    splits = assign_splits(len(demos), test_fraction, seed)
    report = ImportReport()
    report.bad_existing = check_existing(out, skip_bad)
    render = default_render_settings()
    writer = DatasetWriter(out, {"image_size": image_size, "render": render, "action_repeat": action_repeat})
    source_id = str(path.resolve())
    done = {e.get("original") for e in writer.manifest["episodes"] if e["task"] == spec.name}
    todo = []
    for demo, split in zip(demos, splits):
        original = f"{source_id}#{demo.key}"
        if original in done:
            report.already_present.append(original)
        else:
            todo.append((demo, split, original))
    if not todo:
        return report
    from diffusion_reward.envs import RenderSettings

    env = make_env(spec.name, image_size=image_size, camera=camera, action_repeat=action_repeat,
                   render=RenderSettings(**render))
    try:
        env.reset(seed=seed)
        for demo, split, original in _progress(todo, progress, f"rendering {spec.name} demos"):
            try:
                episode = render_demo(env, demo, spec.name, action_repeat)
                if len(episode) < min_frames:
                    raise UserError(f"{path} {demo.key}: {len(episode)} frame(s) after rendering, fewer than "
                                    f"--min-frames {min_frames}")
            except UserError as exc:
                message = str(exc) if str(exc).startswith(str(path)) else f"{path}: {exc}"
                if not skip_bad:
                    raise UserError(message) from None
                report.skipped.append((original, message))
                _log(log, f"skipping {message}")
                continue
            index = sum(1 for e in writer.manifest["episodes"]
                        if e["task"] == spec.name and e["policy"] == policy and e["split"] == split)
            entry = writer.add(episode, task=spec.name, policy=policy, split=split, seed=None, camera=env.camera,
                               source=demo.layout,
                               file=_free_file(writer, f"episodes/{spec.name}/{_slug(policy)}-{split}-{index:05d}"),
                               original=original, demo_steps=len(demo.actions))
            report.written.append(entry)
    finally:
        env.close()
    return report


def _free_file(writer: DatasetWriter, stem: str) -> str:
    """``<stem>.npz``, or ``<stem>-1.npz``, ... when another episode (of this or another writer) has it."""
    return writer.claim_file(itertools.chain([f"{stem}.npz"], (f"{stem}-{i}.npz" for i in itertools.count(1))))


def _progress(items: list, enabled: bool, description: str) -> Iterator:
    if not enabled or not items:
        yield from items
        return
    from tqdm import tqdm

    yield from tqdm(items, desc=description, unit="clip", leave=False)


def _log(log: Callable[[str], None] | None, message: str) -> None:
    if log:
        log(message)


__all__ = ["ImportReport", "Demo", "assign_splits", "check_existing", "find_clips", "import_demos", "import_videos",
           "read_demos", "render_demo", "DatasetError"]
