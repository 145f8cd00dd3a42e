"""What the three importers (import-videos, import-demos, import-lerobot) share on the command line: the
dataset options and the closing report."""

from __future__ import annotations

import argparse
from typing import Any

from diffusion_reward.utils.logging import get_logger


def add_dataset_options(parser: argparse.ArgumentParser, unit: str, frame_options: bool = True) -> None:
    """--test-fraction, --min-frames, (--every, --max-frames), --seed, --no-progress; ``unit`` names what is
    imported ("clips", "episodes", "demonstrations")."""
    parser.add_argument("--test-fraction", type=float, default=0.2, metavar="F",
                        help=f"fraction of the {unit} put in the test split, chosen with --seed (default: 0.2)")
    parser.add_argument("--min-frames", type=int, default=3, metavar="N",
                        help=f"{unit} with fewer frames{' (after --every)' if frame_options else ''} are bad input: "
                             "the video model needs a history (default: 3)")
    if frame_options:
        parser.add_argument("--every", type=int, default=1, metavar="K",
                            help="keep one frame in K, to bring high-frame-rate recordings closer to the "
                                 "simulator's step rate (default: 1, every frame)")
        parser.add_argument("--max-frames", type=int, default=None, metavar="N",
                            help=f"keep at most N frames of each of the {unit} (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/test assignment (default: 0)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="do not show a progress bar")


def log_report(report: Any, out: str) -> int:
    """Print an import's summary and where the dataset is; the command's exit code."""
    log = get_logger()
    for line in report.summary().splitlines():
        log.info(line)
    log.info(f"dataset: {out}")
    return 0
