"""How busy the CPU is right now, measured without importing torch (the CLI asks before torch loads)."""

from __future__ import annotations

import os
import time


def busy_cores(seconds: float = 0.25) -> float | None:
    """Cores kept busy right now by every process (Linux: ``/proc/stat`` sampled ``seconds`` apart).

    Called before a process starts its own heavy work, this is the load of the *other* processes.
    Unlike the load average, which lags by a minute, it sees a job that has just ended as ended.
    ``None`` where ``/proc/stat`` cannot be read.
    """
    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        return sum(values), values[3] + values[4]  # all jiffies, idle + iowait

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return (os.cpu_count() or 1) * (1 - (idle1 - idle0) / max(total1 - total0, 1))
