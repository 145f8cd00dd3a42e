"""Metric writers: one ``log(step, metrics)`` call goes to CSV, TensorBoard and the console.

Metric keys are namespaced (``train/loss``, ``eval/success_rate``, ``reward/rnd``); each
namespace gets its own CSV file (``train.csv``, ``eval.csv``, ...) whose columns grow as new
keys appear, so the files stay readable with any CSV tool.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping

log = logging.getLogger("diffusion_reward")


class _StderrHandler(logging.StreamHandler):
    """Writes each message to ``sys.stderr`` as it is at that moment, so a redirection made after the
    logger was set up (a notebook, a test, ``contextlib.redirect_stderr``) is followed."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:  # the base class assigns it once; the property ignores that
        pass


def get_logger() -> logging.Logger:
    """The package logger, configured once to print ``[diffusion-reward] message`` lines."""
    if not log.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("[diffusion-reward] %(message)s"))
        log.addHandler(handler)
        log.setLevel(os.environ.get("DIFFUSION_REWARD_LOGLEVEL", "INFO"))
        log.propagate = False
    return log


class CSVWriter:
    """Append rows to ``<dir>/<namespace>.csv``; rewrites the header when new columns appear."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._columns: dict[str, list[str]] = {}

    def _load_columns(self, path: Path) -> list[str]:
        if path.exists():
            with path.open() as f:
                header = next(csv.reader(f), None)
            return list(header or [])
        return []

    def write(self, namespace: str, step: int, values: Mapping[str, float]) -> None:
        path = self.directory / f"{namespace}.csv"
        columns = self._columns.get(namespace)
        if columns is None:
            columns = self._load_columns(path) or ["step"]
        new = [k for k in values if k not in columns]
        if new:
            columns = columns + new
            if path.exists():  # rewrite with the wider header, keeping old rows
                with path.open(newline="") as f:
                    rows = list(csv.DictReader(f))
                _rewrite(path, columns, rows)
        self._columns[namespace] = columns
        write_header = not path.exists()
        with path.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=columns)
            if write_header:
                w.writeheader()
            w.writerow({"step": step, **values})


def _rewrite(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    """Replace a CSV file atomically: a kill while it is written leaves the old file, never half of one."""
    from diffusion_reward.utils.checkpoint import atomic_path  # here: this module stays free of torch

    with atomic_path(path) as tmp:
        with tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=columns)
            w.writeheader()
            w.writerows(rows)


def drop_rows_after(directory: str | os.PathLike, step: float, namespaces: Iterable[str] | None = None) -> None:
    """Drop the rows logged after ``step`` from the CSV files of ``directory`` (every namespace, or only
    ``namespaces``): what a run killed after its last checkpoint logged, and logs again once it resumes there."""
    wanted = None if namespaces is None else set(namespaces)
    for path in sorted(Path(directory).glob("*.csv")):
        if wanted is not None and path.stem not in wanted:
            continue
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            columns = list(reader.fieldnames or [])
            rows = list(reader)
        kept = [r for r in rows if float(r.get("step") or 0) <= step]
        if len(kept) < len(rows):
            _rewrite(path, columns, kept)


class MetricsWriter:
    """Fan ``log(step, {"ns/key": value})`` out to CSV files and TensorBoard.

    Pass ``tensorboard=False`` to skip TensorBoard (for example in tests). Non-finite values are
    written as they are (so they are visible), never silently dropped.
    """

    def __init__(self, run_dir: str | os.PathLike, tensorboard: bool = True):
        self.run_dir = Path(run_dir)
        self.csv = CSVWriter(self.run_dir)
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(self.run_dir / "tb"))

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        grouped: dict[str, dict[str, float]] = {}
        for key, value in metrics.items():
            namespace, _, name = key.partition("/")
            if not name:
                namespace, name = "misc", key
            value = float(value)
            grouped.setdefault(namespace, {})[name] = value
            if self._tb is not None and not math.isnan(value):
                self._tb.add_scalar(key, value, step)
        for namespace, values in grouped.items():
            self.csv.write(namespace, step, values)

    def flush(self) -> None:
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
