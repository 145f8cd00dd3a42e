"""Device selection: ``auto`` picks CUDA when present, else CPU. Nothing assumes CUDA."""

from __future__ import annotations

import contextlib
import functools
import os
import time
from typing import Iterator

import torch


def resolve_device(name: str = "auto") -> torch.device:
    """Turn ``auto|cpu|cuda|cuda:N`` into a ``torch.device``, with a clear error when CUDA is absent."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available here; use --device cpu or auto")
    return device


@functools.lru_cache(maxsize=None)
def bf16_is_fast(device_type: str = "cpu") -> bool:
    """Whether bf16 matrix products run faster than float32 ones on this machine's ``device_type``.

    CUDA: whenever the GPU supports bf16. CPU: measured once per process on a 256 x 256 product
    (a few milliseconds): CPUs with bf16 matrix units (AMX, AVX512-BF16) run bf16 several times
    faster than float32, while CPUs without them (AVX2 only) emulate it, measured 100x slower.
    """
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device_type != "cpu":
        return False

    def best_seconds(dtype: torch.dtype) -> float:
        a = torch.randn(256, 256).to(dtype)
        a @ a  # warm-up
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            a @ a
            best = min(best, time.perf_counter() - start)
        return best

    return best_seconds(torch.bfloat16) < best_seconds(torch.float32)


def use_bf16(setting: bool | None, device: torch.device | str) -> bool:
    """A ``bf16`` option resolved: ``True``/``False`` as given, ``None`` (auto) = :func:`bf16_is_fast`."""
    if setting is not None:
        return bool(setting)
    return bf16_is_fast(torch.device(device).type)


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` when ``enabled``, else a no-op context."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Temporarily set PyTorch's intra-op thread count (``None`` leaves it alone)."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(max(1, n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def available_cpus() -> int:
    """The CPU cores this process may run on (its affinity mask on Linux, else every core)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)
