"""Training datasets built from episode datasets: single frames and windows of consecutive steps.

Both keep everything in memory (uint8 frames or int64 tokens: a 140-episode MetaWorld dataset
is about 170 MB of frames) and serve whole batches through ``get_batch(indices)``, which is what
:class:`~diffusion_reward.train.trainer.Trainer` calls.

* :class:`FrameDataset`: every frame of the chosen episodes; batches are float ``(B, 3, H, W)``
  in ``[-1, 1]`` (the codec's input).
* :class:`WindowDataset`: for every step ``t`` of every episode, the items
  ``t - (length-1)*skip, ..., t - skip, t`` of one per-episode array (frames, or the token grids
  of a codec); indices before the episode's start repeat its first item. Batches are
  ``(B, length, ...)``: the video models' history + target.

The frame converters :func:`frames_to_tensor` / :func:`tensor_to_frames` live in
:mod:`diffusion_reward.models.codec.vqgan` and are re-exported here.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import numpy as np
import torch

from diffusion_reward.data.episodes import DatasetError, EpisodeDataset, load_dataset
from diffusion_reward.models.codec.vqgan import frames_to_tensor, tensor_to_frames

__all__ = ["FrameDataset", "WindowDataset", "open_episodes", "load_frames", "frames_to_tensor", "tensor_to_frames"]


def open_episodes(data: EpisodeDataset | str | os.PathLike | Sequence[str | os.PathLike],
                  split: str | None = None, policy: str | Sequence[str] | None = None) -> EpisodeDataset:
    """An episode dataset (opened from one or more paths if needed), filtered by split and policy."""
    dataset = data if isinstance(data, EpisodeDataset) else load_dataset(data)
    return dataset.select(split=split, policy=policy)


def load_frames(data: EpisodeDataset | str | os.PathLike | Sequence[str | os.PathLike], split: str | None = "train",
                policy: str | Sequence[str] | None = None, every: int = 1,
                max_frames: int | None = None, seed: int = 0) -> np.ndarray:
    """All frames (every ``every``-th per episode) of the matching episodes as ``uint8 (N, H, W, 3)``.

    ``max_frames`` keeps an evenly random subset (seeded). Raises :class:`DatasetError` naming the
    dataset when no episode matches or the episodes disagree on the frame size.
    """
    dataset = open_episodes(data, split=split, policy=policy)
    if len(dataset) == 0:
        roots = ", ".join(str(r) for r in dataset.roots)
        what = " ".join(f"{k}={v}" for k, v in (("split", split), ("policy", policy)) if v is not None) or "any"
        raise DatasetError(f"{roots}: no episodes with {what} (the dataset has {len(load_dataset(dataset.roots))} "
                           "episodes in all)")
    chunks = [episode.frames[::every] for episode in dataset]
    shapes = {c.shape[1:] for c in chunks}
    if len(shapes) > 1:
        raise DatasetError(f"{', '.join(map(str, dataset.roots))}: episodes have different frame shapes {sorted(shapes)}")
    frames = np.concatenate(chunks)
    if max_frames is not None and len(frames) > max_frames:
        pick = np.sort(np.random.default_rng(seed).choice(len(frames), max_frames, replace=False))
        frames = frames[pick]
    return frames


class FrameDataset:
    """Frames ``uint8 (N, H, W, 3)`` served as float ``(B, 3, H, W)`` batches in ``[-1, 1]``.

    Frames may carry a fourth channel, a per-pixel weight in ``0..255``: batches are then
    ``(B, 4, H, W)``, the colours in ``[-1, 1]`` and the weight in ``[0, 1]`` as channel 3, cropped
    with the colours (the codec's foreground weighting uses it).

    With ``crop`` > 0, :meth:`get_batch` serves a random ``crop`` x ``crop`` window of each frame
    instead, its corner on a multiple of ``align`` pixels (the codec's token stride, so that crop
    tokens sit where whole-frame tokens do). The offsets come from PyTorch's global generator,
    which the trainer seeds and checkpoints.
    """

    def __init__(self, frames: np.ndarray | torch.Tensor, crop: int = 0, align: int = 1):
        frames = torch.as_tensor(frames)
        if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] not in (3, 4):
            raise ValueError(f"frames must be uint8 (N, H, W, 3), or (N, H, W, 4) with a weight channel, got "
                             f"{frames.dtype} {tuple(frames.shape)}")
        size = min(frames.shape[1:3])
        if crop and (crop > size or crop % align or crop < 0):
            raise ValueError(f"crop {crop} must be a multiple of {align} no larger than the frames ({size})")
        self.frames = frames.contiguous()
        self.crop, self.align = int(crop), int(align)

    @classmethod
    def from_episodes(cls, data: Any, split: str | None = "train", **kwargs: Any) -> "FrameDataset":
        """Frames of an episode dataset (or dataset paths); see :func:`load_frames` for the options."""
        return cls(load_frames(data, split=split, **kwargs))

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> torch.Tensor:
        return frames_to_tensor(self.frames[i:i + 1, ..., :3])[0]

    def get_batch(self, indices: torch.Tensor) -> torch.Tensor:
        frames = self.frames[indices]
        if self.crop:
            c = self.crop
            n, h, w = frames.shape[:3]
            top = torch.randint(0, (h - c) // self.align + 1, (n,)) * self.align
            left = torch.randint(0, (w - c) // self.align + 1, (n,)) * self.align
            rows = (top[:, None] + torch.arange(c))[:, :, None]
            cols = (left[:, None] + torch.arange(c))[:, None, :]
            frames = frames[torch.arange(n)[:, None, None], rows, cols]
        if frames.shape[-1] == 4:
            weight = frames[..., 3:].permute(0, 3, 1, 2).float().div_(255.0)
            return torch.cat([frames_to_tensor(frames[..., :3]), weight], dim=1)
        return frames_to_tensor(frames)

    @property
    def image_size(self) -> int:
        return int(self.frames.shape[1])


class WindowDataset:
    """Windows of ``length`` items, ``skip`` steps apart, ending at every step of every episode.

    ``sequences`` holds one array per episode, ``(T_i, ...)`` with equal trailing shapes (uint8
    frames, int64 token grids, ...). With ``pad_start`` (the default) windows that reach before
    an episode's first step repeat that step, so every step is a window end; without, only
    windows that fit inside the episode are kept. ``transform`` is applied to each batch
    ``(B, length, ...)`` (for example to turn uint8 frames into floats).
    """

    def __init__(self, sequences: Sequence[np.ndarray | torch.Tensor], length: int, skip: int = 1,
                 pad_start: bool = True, transform: Callable[[torch.Tensor], Any] | None = None):
        if length < 1 or skip < 1:
            raise ValueError(f"length and skip must be >= 1, got {length} and {skip}")
        tensors = [torch.as_tensor(np.asarray(s)) for s in sequences]
        if not tensors or sum(len(t) for t in tensors) == 0:
            raise ValueError("WindowDataset needs at least one non-empty sequence")
        if len({tuple(t.shape[1:]) for t in tensors}) > 1:
            raise ValueError(f"sequences differ in item shape: {sorted({tuple(t.shape[1:]) for t in tensors})}")
        self.items = torch.cat(tensors)
        self.length, self.skip, self.transform = length, skip, transform
        offsets = (torch.arange(length) - (length - 1)) * skip  # e.g. (-2, -1, 0)
        rows, episodes, starts = [], [], 0
        for e, t in enumerate(tensors):
            steps = torch.arange(len(t))
            if not pad_start:
                steps = steps[steps >= (length - 1) * skip]
            idx = (steps[:, None] + offsets[None, :]).clamp_min(0) + starts
            rows.append(idx)
            episodes.append(torch.full((len(idx),), e, dtype=torch.int64))
            starts += len(t)
        self.index = torch.cat(rows)
        self.episode = torch.cat(episodes)  # which sequence each window comes from
        if len(self.index) == 0:
            raise ValueError(f"no sequence is long enough for a window of {length} items {skip} apart")

    def __len__(self) -> int:
        return len(self.index)

    def get_batch(self, indices: torch.Tensor) -> Any:
        batch = self.items[self.index[indices]]
        return self.transform(batch) if self.transform is not None else batch

    def __getitem__(self, i: int) -> torch.Tensor:
        """The raw items of window ``i``, ``(length, ...)`` (``transform`` applies to batches only)."""
        return self.items[self.index[i]]
