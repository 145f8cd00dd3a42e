"""A progress bar as a context manager yielding ``advance(n)``; silent when there is nothing to count."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Callable, Iterator


@contextlib.contextmanager
def progress_bar(description: str, total: int, unit: str = "it") -> Iterator[Callable[[int], None]]:
    """A tqdm bar of ``total`` units (disabled when ``total`` is 0, or when ``DIFFUSION_REWARD_PROGRESS=0``)."""
    from tqdm import tqdm

    disable = total <= 0 or os.environ.get("DIFFUSION_REWARD_PROGRESS", "1") == "0"
    bar = tqdm(total=total, desc=description, unit=unit, dynamic_ncols=True, disable=disable, file=sys.stderr)
    try:
        yield lambda n=1: bar.update(n)
    finally:
        bar.close()
