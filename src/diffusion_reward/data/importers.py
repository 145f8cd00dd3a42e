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
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from diffusion_reward.data.episodes import DatasetError, DatasetWriter, Episode, load_dataset
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
        writer.manifest["episodes"] = [e for e in writer.manifest["episodes"] if e["file"] in good]
        writer.flush()
    return errors


# ---------------------------------------------------------------------------------------------
# Videos


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
    if min_frames < 1:
        raise UserError(f"--min-frames must be at least 1, got {min_frames}")
    if every < 1:
        raise UserError(f"--every must be at least 1, got {every}")
    if image_size < 8:
        raise UserError(f"--image-size must be at least 8, got {image_size}")
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


def _free_file(writer: DatasetWriter, stem: str) -> str:
    taken = {e["file"] for e in writer.manifest["episodes"]}
    name, i = f"{stem}.npz", 1
    while name in taken:
        name, i = f"{stem}-{i}.npz", i + 1
    return name


def _progress(items: list, enabled: bool, description: str) -> Iterator:
    if not enabled or not items:
        yield from items
        return
    from tqdm import tqdm

    yield from tqdm(items, desc=description, unit="clip", leave=False)


def _log(log: Callable[[str], None] | None, message: str) -> None:
    if log:
        log(message)


__all__ = ["ImportReport", "find_clips", "assign_splits", "import_videos", "check_existing", "DatasetError"]
