"""Run directories: their numbered checkpoints, written atomically, and the settings check on resume.

Every long command (``train-codec``, ``train-video``, ``train-rl``) keeps its state in
``<run_dir>/checkpoints/<prefix>-<number>`` folders (``step-00001200`` for the trainers,
``frame-000100000`` for RL). A checkpoint is written into a hidden temporary folder beside it
(:meth:`Checkpoints.begin`), then renamed into place (:meth:`Checkpoints.commit`), so a kill at
any moment leaves the previous checkpoint intact and at most a temporary folder, which the next
start removes (:meth:`Checkpoints.clear_partial`). A checkpoint counts only once it holds its
``marker`` file (the JSON written last, with the loop's counters and ``format_version``).

On ``--resume`` a run compares the stored settings with the new ones: :func:`config_changes`
names every setting that differs, as dotted paths.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

from diffusion_reward.errors import UserError
from diffusion_reward.utils.checkpoint import atomic_write_json, check_format_version, read_json

CHECKPOINT_DIR = "checkpoints"


class Checkpoints:
    """The checkpoints of one run directory (see the module docstring)."""

    def __init__(self, run_dir: str | os.PathLike, prefix: str, marker: str, digits: int, format_version: int):
        self.root = Path(run_dir) / CHECKPOINT_DIR
        self.prefix, self.marker, self.digits = prefix, marker, digits
        self.format_version = format_version
        self._pattern = re.compile(rf"{re.escape(prefix)}-(\d+)")

    def path(self, number: int) -> Path:
        return self.root / f"{self.prefix}-{number:0{self.digits}d}"

    def number(self, path: Path) -> int:
        """The step or frame a checkpoint folder was written at."""
        match = self._pattern.fullmatch(path.name)
        if match is None:
            raise ValueError(f"{path}: not a checkpoint folder")
        return int(match.group(1))

    def complete(self) -> list[Path]:
        """The complete checkpoints, oldest first."""
        if not self.root.is_dir():
            return []
        found = [p for p in self.root.iterdir()
                 if p.is_dir() and self._pattern.fullmatch(p.name) and (p / self.marker).exists()]
        return sorted(found, key=self.number)

    def newest(self) -> Path | None:
        found = self.complete()
        return found[-1] if found else None

    def begin(self, number: int) -> Path:
        """A fresh, empty temporary folder for the checkpoint at ``number``."""
        tmp = self.tmp_path(number)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        return tmp

    def write_marker(self, tmp: Path, counters: dict[str, Any]) -> None:
        """Write the marker file (last, so that the folder is complete once it is renamed)."""
        atomic_write_json(tmp / self.marker, {"format_version": self.format_version, **counters})

    def commit(self, number: int) -> Path:
        """Rename the temporary folder into place (replacing a checkpoint of the same number)."""
        final = self.path(number)
        if final.exists():
            shutil.rmtree(final)
        os.replace(self.tmp_path(number), final)
        return final

    def read_marker(self, path: Path) -> dict[str, Any]:
        """The marker of a checkpoint; one line naming it when it was written by a newer package."""
        meta = read_json(path / self.marker)
        check_format_version(meta, self.format_version, path, "checkpoint")
        return meta

    def prune(self, keep: int) -> None:
        """Delete all but the ``keep`` newest complete checkpoints."""
        for old in self.complete()[:-max(1, keep)]:
            shutil.rmtree(old, ignore_errors=True)

    def clear_partial(self) -> None:
        """Remove temporary folders that a kill left behind."""
        if self.root.is_dir():
            for stale in self.root.glob(f".{self.prefix}-*.tmp"):
                shutil.rmtree(stale, ignore_errors=True)

    def tmp_path(self, number: int) -> Path:
        """Where :meth:`begin` puts the checkpoint at ``number`` while it is written."""
        return self.root / f".{self.path(number).name}.tmp"


def config_changes(stored: Any, now: Any, prefix: str = "") -> list[str]:
    """The dotted paths of every setting that differs between two JSON-like configs. A setting that only
    ``stored`` has is not compared: this version of the code has no such setting (it was retired)."""
    if isinstance(stored, dict) and isinstance(now, dict):
        out: list[str] = []
        for key in sorted(now, key=str):
            out += config_changes(stored.get(key), now.get(key), f"{prefix}{key}.")
        return out
    return [] if stored == now else [prefix.rstrip(".")]


def refuse_existing_run(run_dir: str | os.PathLike, has_run: bool, what: str) -> None:
    """One line when a run directory already holds a run and ``--resume`` was not given."""
    if has_run:
        raise UserError(f"{run_dir}: run directory already holds {what}; pass --resume to continue it, or choose "
                        "another --run-dir (or delete this one)")
