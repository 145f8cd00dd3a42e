"""The episode dataset format: one compressed ``.npz`` file per episode plus a JSON manifest.

Layout of a dataset directory::

    DATASET/
      manifest.json                   dataset-level facts and one entry per episode
      episodes/<task>/<policy>-<split>-<index>.npz

Each ``.npz`` holds (``T`` = number of frames = number of steps + 1, the reset frame included):

============  ===================  =========================================================
key           dtype, shape         meaning
============  ===================  =========================================================
frames        uint8 (T, H, W, 3)   RGB observations, upright
actions       float32 (T-1, A)     action taken after each frame (A = 0 for plain videos)
rewards       float32 (T-1,)       sparse environment reward per step (success, summed over
                                   action repeats); NaN when unknown (imported videos)
dense         float32 (T-1,)       the simulator's shaped reward per step; NaN when unknown
success       bool (T-1,)          the task was solved at this step
states        float32 (T, S)       proprioceptive/simulator state per frame (S may be 0)
============  ===================  =========================================================

The manifest records, per episode: file, task, policy (``expert``, ``random``,
``noisy:<std>``, ``video``, ...), split (``train``/``test``), seed, length (frames), success,
camera and source; and for the dataset: image size, render settings, format and package
version. Loading is lazy: opening a dataset reads only the manifest; an episode's arrays are
read when it is accessed. Several dataset directories open together as one dataset.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import itertools
import os
import re
import time
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from diffusion_reward.errors import UserError
from diffusion_reward.utils.checkpoint import atomic_path, atomic_write_json, check_format_version, read_json

MANIFEST = "manifest.json"
FORMAT_NAME = "diffusion-reward-episodes"
FORMAT_VERSION = 1
SPLITS = ("train", "test")


class DatasetError(UserError, ValueError):
    """A dataset or one of its episode files cannot be used; the message names the path."""


@dataclasses.dataclass
class Episode:
    """One episode in memory. See the module docstring for the meaning and shape of each array."""

    frames: np.ndarray
    actions: np.ndarray | None = None
    rewards: np.ndarray | None = None
    dense: np.ndarray | None = None
    success: np.ndarray | None = None
    states: np.ndarray | None = None
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        frames = np.asarray(self.frames)
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
        if len(frames) < 1:
            raise ValueError("an episode needs at least one frame")
        self.frames = frames
        steps = len(frames) - 1
        self.actions = _or_default(self.actions, np.zeros((steps, 0), np.float32), np.float32)
        self.rewards = _or_default(self.rewards, np.full(steps, np.nan, np.float32), np.float32)
        self.dense = _or_default(self.dense, np.full(steps, np.nan, np.float32), np.float32)
        self.success = _or_default(self.success, np.zeros(steps, bool), bool)
        self.states = _or_default(self.states, np.zeros((steps + 1, 0), np.float32), np.float32)
        for name, arr, n in (("actions", self.actions, steps), ("rewards", self.rewards, steps),
                             ("dense", self.dense, steps), ("success", self.success, steps),
                             ("states", self.states, steps + 1)):
            if len(arr) != n:
                raise ValueError(f"episode with {steps + 1} frames needs {n} {name}, got {len(arr)}")

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def solved(self) -> bool:
        """Whether the task was solved at any step."""
        return bool(np.any(self.success))

    def arrays(self) -> dict[str, np.ndarray]:
        return {"frames": self.frames, "actions": self.actions, "rewards": self.rewards,
                "dense": self.dense, "success": self.success, "states": self.states}


def _or_default(value: Any, default: np.ndarray, dtype: Any) -> np.ndarray:
    return default if value is None else np.asarray(value, dtype=dtype)


EXPERT_POLICIES = ("expert", "video")
"""Policies whose episodes are demonstrations: scripted or replayed experts, and imported videos."""


def policy_filter(policy: str) -> str | tuple[str, ...] | None:
    """A ``--policy`` option as a :meth:`EpisodeDataset.select` filter: ``''`` = every policy,
    ``expert`` = every demonstration policy (:data:`EXPERT_POLICIES`), anything else itself."""
    if not policy:
        return None
    return EXPERT_POLICIES if policy == "expert" else policy


def policy_slug(policy: str) -> str:
    """A file-name-safe form of a policy name (``noisy:0.1`` -> ``noisy-0.1``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", policy)


def save_episode(path: str | os.PathLike, episode: Episode) -> None:
    """Write one episode as a compressed ``.npz``, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **episode.arrays())


def load_episode(path: str | os.PathLike, info: dict[str, Any] | None = None) -> Episode:
    """Read one episode file; a missing, truncated or corrupt file raises :class:`DatasetError` naming it."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("frames",) if k not in data.files]
            if missing:
                raise DatasetError(f"{path}: episode file lacks {missing}")
            arrays = {k: data[k] for k in data.files}
    except DatasetError:
        raise
    except FileNotFoundError:
        raise DatasetError(f"{path}: episode file is missing") from None
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, zlib_error()) as exc:
        raise DatasetError(f"{path}: corrupt or truncated episode file ({type(exc).__name__}: {exc})") from None
    try:
        return Episode(**{k: arrays.get(k) for k in ("frames", "actions", "rewards", "dense", "success", "states")},
                       info=dict(info or {}))
    except ValueError as exc:
        raise DatasetError(f"{path}: {exc}") from None


def zlib_error() -> type[Exception]:
    import zlib

    return zlib.error


class DatasetWriter:
    """Create (or extend) a dataset directory, one episode at a time.

    The manifest is rewritten atomically after every episode, so a collection that is killed
    keeps every episode finished before it. Several processes may write one dataset at once (two
    ``collect`` commands, a SLURM array): every change of the manifest happens under an exclusive
    OS lock on ``.manifest.lock`` and is applied to the manifest as it is on disk at that moment,
    so the dataset ends with the union of what every writer added; readers only ever see a whole
    manifest (it is replaced atomically).
    """

    def __init__(self, root: str | os.PathLike, attributes: dict[str, Any] | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.attributes = dict(attributes or {})
        with self._locked():
            self.manifest = self._merged(self._read())

    def _read(self) -> dict[str, Any]:
        from diffusion_reward.version import __version__

        path = self.root / MANIFEST
        if path.exists():
            return _check_manifest(read_json(path), path)
        return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "package_version": __version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "episodes": []}

    def _merged(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """``manifest`` with this writer's attributes, which must agree with the dataset's."""
        for key, value in self.attributes.items():
            old = manifest.get(key)
            if old is not None and old != value and key not in ("package_version", "created"):
                raise DatasetError(f"{self.root / MANIFEST}: dataset has {key}={old!r}, cannot add episodes with "
                                   f"{key}={value!r}")
            manifest[key] = value
        return manifest

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.root / ".manifest.lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def update(self, change: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> None:
        """Replace the episode list by ``change(episodes)``, applied under the lock to the manifest on disk."""
        with self._locked():
            manifest = self._merged(self._read())
            manifest["episodes"] = change(manifest["episodes"])
            atomic_write_json(self.root / MANIFEST, manifest)
            self.manifest = manifest

    def next_file(self, task: str, policy: str, split: str) -> str:
        """A free episode file name of ``task``/``policy``/``split`` (numbered), claimed for this writer."""
        prefix = f"episodes/{task}/{policy_slug(policy)}-{split}-"
        start = sum(1 for e in self.manifest["episodes"] if e["file"].startswith(prefix))
        return self.claim_file(f"{prefix}{i:05d}.npz" for i in itertools.count(start))

    def claim_file(self, candidates: Iterable[str]) -> str:
        """The first of ``candidates`` that no episode of the dataset uses and no file occupies, claimed on disk
        (an empty file made exclusively, under the lock) so that no other writer picks it too."""
        with self._locked():
            taken = {e["file"] for e in self._read()["episodes"]} | {e["file"] for e in self.manifest["episodes"]}
            for name in candidates:
                if name in taken:
                    continue
                path = self.root / name
                path.parent.mkdir(parents=True, exist_ok=True)
                try:
                    with open(path, "x"):
                        return name
                except FileExistsError:
                    continue
        raise DatasetError(f"{self.root}: no free episode file name")

    def add(self, episode: Episode, *, task: str, policy: str, split: str, seed: int | None = None,
            camera: str | None = None, source: str = "metaworld", file: str | None = None,
            **extra: Any) -> dict[str, Any]:
        """Write ``episode`` and record it in the manifest; returns the manifest entry."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        file = file or self.next_file(task, policy, split)
        save_episode(self.root / file, episode)
        entry = {"file": file, "task": task, "policy": policy, "split": split, "seed": seed,
                 "length": len(episode), "success": episode.solved, "camera": camera, "source": source, **extra}
        self.add_entry(entry)
        return entry

    def add_entry(self, entry: dict[str, Any], order: Mapping[str, int] | None = None) -> None:
        """Record an episode file that is already written (by a worker process, say).

        With ``order`` (file -> rank), the episodes it ranks stay in the places they hold in the manifest but
        are sorted by rank among themselves: the manifest, and every result that reads the episodes in its
        order, does not depend on the order the entries arrive in (which worker finished first, where a killed
        collection stopped and a rerun went on).
        """
        if not (self.root / entry["file"]).exists():
            raise DatasetError(f"{self.root / entry['file']}: episode file is missing")

        def change(episodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
            episodes = [e for e in episodes if e["file"] != entry["file"]] + [entry]
            return ranked(episodes, order) if order else episodes

        self.update(change)

    def flush(self) -> None:
        """Write the manifest (with this writer's attributes) as it is on disk now, creating it if need be."""
        self.update(lambda episodes: episodes)


def ranked(episodes: list[dict[str, Any]], order: Mapping[str, int]) -> list[dict[str, Any]]:
    """``episodes`` with those whose file ``order`` ranks sorted by rank in the places they hold; the others stay."""
    in_order = iter(sorted((e for e in episodes if e["file"] in order), key=lambda e: order[e["file"]]))
    return [next(in_order) if e["file"] in order else e for e in episodes]


def _check_manifest(manifest: Any, path: Path) -> dict[str, Any]:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise DatasetError(f"{path}: not a diffusion-reward dataset manifest")
    check_format_version(manifest, FORMAT_VERSION, path, "dataset", DatasetError)
    if not isinstance(manifest.get("episodes"), list):
        raise DatasetError(f"{path}: manifest has no 'episodes' list")
    return manifest


class EpisodeDataset(Sequence[Episode]):
    """A lazily loaded collection of episodes from one or more dataset directories.

    ``dataset[i]`` reads episode ``i`` from disk; ``dataset.entries[i]`` is its manifest entry
    (task, policy, split, ...) and costs nothing. :meth:`select` filters without reading.
    """

    def __init__(self, roots: Sequence[Path], entries: list[dict[str, Any]], attributes: dict[str, Any],
                 skip_bad: bool = False):
        self.roots = list(roots)
        self.entries = entries
        self.attributes = attributes
        self.skip_bad = skip_bad
        self.skipped: list[str] = []

    def __len__(self) -> int:
        return len(self.entries)

    def path(self, i: int) -> Path:
        return Path(self.entries[i]["_root"]) / self.entries[i]["file"]

    def __getitem__(self, i: int) -> Episode:  # type: ignore[override]
        if isinstance(i, slice):
            raise TypeError("use select() to take a subset of a dataset")
        entry = self.entries[i]
        return load_episode(self.path(i), {k: v for k, v in entry.items() if k != "_root"})

    def __iter__(self) -> Iterator[Episode]:
        for i in range(len(self)):
            try:
                yield self[i]
            except DatasetError as exc:
                if not self.skip_bad:
                    raise
                self.skipped.append(str(exc))

    def select(self, task: str | Iterable[str] | None = None, policy: str | Iterable[str] | None = None,
               split: str | None = None) -> "EpisodeDataset":
        """The episodes matching every given filter (each may be one value or several)."""
        def match(value: Any, wanted: Any) -> bool:
            if wanted is None:
                return True
            return value == wanted if isinstance(wanted, str) else value in set(wanted)

        picked = [e for e in self.entries
                  if match(e["task"], task) and match(e["policy"], policy) and match(e["split"], split)]
        return self._subset(picked)

    def limit(self, per_task_policy: int | None) -> "EpisodeDataset":
        """At most the first ``per_task_policy`` episodes of every (task, policy) pair (``None``: all)."""
        if per_task_policy is None:
            return self
        seen: dict[tuple[str, str], int] = {}
        keep = []
        for e in self.entries:
            key = (e["task"], e["policy"])
            if seen.get(key, 0) < per_task_policy:
                seen[key] = seen.get(key, 0) + 1
                keep.append(e)
        return self._subset(keep)

    def _subset(self, entries: list[dict[str, Any]]) -> "EpisodeDataset":
        sub = EpisodeDataset(self.roots, entries, self.attributes, self.skip_bad)
        sub.skipped = self.skipped
        return sub

    @property
    def tasks(self) -> list[str]:
        return sorted({e["task"] for e in self.entries})

    @property
    def policies(self) -> list[str]:
        return sorted({e["policy"] for e in self.entries})

    @property
    def cameras(self) -> dict[str, list[str]]:
        """Task -> the cameras its episodes were rendered from (episodes without one, e.g. imported
        videos, are left out)."""
        found: dict[str, set[str]] = {}
        for e in self.entries:
            if e.get("camera"):
                found.setdefault(e["task"], set()).add(str(e["camera"]))
        return {task: sorted(names) for task, names in sorted(found.items())}

    @property
    def image_size(self) -> int | None:
        return self.attributes.get("image_size")

    def num_frames(self) -> int:
        return int(sum(e["length"] for e in self.entries))

    def validate(self) -> list[str]:
        """Read every episode; return the errors (and raise on the first unless ``skip_bad``)."""
        errors = []
        keep = []
        for i, entry in enumerate(self.entries):
            try:
                self[i]
                keep.append(entry)
            except DatasetError as exc:
                if not self.skip_bad:
                    raise
                errors.append(str(exc))
        self.entries = keep
        self.skipped.extend(errors)
        return errors

    def summary(self) -> str:
        lines = [f"{len(self)} episodes, {self.num_frames()} frames, tasks: {', '.join(self.tasks)}"]
        for split in SPLITS:
            for policy in self.policies:
                n = len(self.select(policy=policy, split=split))
                if n:
                    lines.append(f"  {split:5s} {policy:12s} {n} episodes")
        return "\n".join(lines)


def load_dataset(paths: str | os.PathLike | Sequence[str | os.PathLike], skip_bad: bool = False) -> EpisodeDataset:
    """Open one or several dataset directories as one :class:`EpisodeDataset` (lazily).

    Raises :class:`DatasetError` naming the path when a directory or its manifest is missing or
    unreadable. Datasets of different image sizes cannot be combined.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise DatasetError("no dataset given")
    roots, entries, attributes = [], [], {}
    for p in paths:
        root = Path(p)
        manifest_path = root / MANIFEST
        if not root.is_dir():
            raise DatasetError(f"{root}: no such dataset directory")
        if not manifest_path.exists():
            raise DatasetError(f"{root}: not a dataset (no {MANIFEST}); create one with "
                               "`diffusion-reward collect` or `diffusion-reward import-videos`")
        try:
            manifest = _check_manifest(read_json(manifest_path), manifest_path)
        except ValueError as exc:
            raise DatasetError(str(exc)) from None
        size = manifest.get("image_size")
        if attributes.get("image_size") not in (None, size):
            raise DatasetError(f"{root}: image size {size} differs from {attributes['image_size']} of the "
                               "other datasets; they cannot be combined")
        for key, value in manifest.items():
            if key != "episodes":
                attributes.setdefault(key, value)
        roots.append(root)
        entries.extend({**e, "_root": str(root)} for e in manifest["episodes"])
    dataset = EpisodeDataset(roots, entries, attributes, skip_bad=skip_bad)
    return dataset


def check_existing(out: str | os.PathLike, skip_bad: bool) -> list[str]:
    """Read every episode already recorded in ``out`` (if it is a dataset).

    A corrupt or missing episode file raises :class:`DatasetError` naming it; with ``skip_bad``
    the errors are returned instead and the entries are dropped from the manifest, so the
    sources they came from are imported (or collected) again.
    """
    root = Path(out)
    if not (root / "manifest.json").exists():
        return []
    dataset = load_dataset(root, skip_bad=skip_bad)
    errors = dataset.validate()
    if errors:
        writer = DatasetWriter(root)
        good = {e["file"] for e in dataset.entries}
        bad = {e["file"] for e in writer.manifest["episodes"]} - good
        writer.update(lambda episodes: [e for e in episodes if e["file"] not in bad])
    return errors
