"""Pixel values <-> the ``[-1, 1]`` range every network here reads, in one place.

Frames are stored and passed around as ``uint8`` (0..255); the codec, the reward models and the
DrQ-v2 encoder read ``float32`` in ``[-1, 1]`` (``x / 127.5 - 1``), and the codec's outputs are
turned back into 8-bit values by :func:`to_pixel_values`. Layout (channels first or last) is the
caller's business: both functions work elementwise.
"""

from __future__ import annotations

import torch


def to_unit_range(pixels: torch.Tensor) -> torch.Tensor:
    """Pixel values (``uint8``, or floats in ``[0, 255]``) -> ``float32`` in ``[-1, 1]``."""
    return pixels.float() / 127.5 - 1.0


def to_pixel_values(x: torch.Tensor) -> torch.Tensor:
    """Floats in ``[-1, 1]`` -> the 8-bit values a viewer sees, as rounded ``float32`` (clamped first)."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round()
