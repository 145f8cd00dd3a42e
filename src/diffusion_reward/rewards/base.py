"""The ``RewardModel`` contract every reward (learned or baseline) follows, and its registry.

A reward model turns the frames of an episode into one reward per frame::

    frames: uint8 (T, H, W, 3)  ->  rewards: float32 (T,)

**Reward ``j`` scores reaching frame ``j``.** Frame 0 is the reset frame, so in RL the reward of
step ``t`` (the step that produced frame ``t``) is ``rewards(frames)[t]`` for ``t >= 1``; the
reward of frame 0 exists for plots and statistics but no RL step receives it.

**History and windows.** The reward at frame ``j`` may depend on the ``history`` frames before
it (0 for single-frame models such as RND and AMP, 1 for motion, 2 for a video model that
conditions on two frames). It is computed from the *window* ``frames[j - history : j + 1]``
(``history + 1`` frames, oldest first). Before the episode has that many frames, the window is
padded at the front by repeating frame 0, as the paper does for the first steps; so any episode
with at least one frame has a reward per frame, and an episode of zero frames is an error.

One code path serves both uses: a model implements only :meth:`RewardModel.score_windows`
(a batch of windows and their step indices -> raw rewards). :meth:`RewardModel.rewards` builds
every window of an episode and scores them in batches; :meth:`RewardModel.rewards_windows` scores
the windows environment wrappers keep while their episodes run (one window per environment, all
environments in one call), :meth:`RewardModel.rewards_window` a single one. All give the same
numbers (up to the float rounding by which a network's kernels differ between batch sizes). A
stochastic model (one that samples, like the diffusion reward) keeps that equality by
drawing the randomness of window ``j`` from :meth:`RewardModel.step_generator` (``j``), a
generator seeded by ``(sample_seed, j)`` only, never from a generator shared across the batch.

**Frames in.** Frames must be ``uint8`` ``(T, H, W, 3)``; a model with an ``image_size`` needs
``H == W == image_size``. Frames of another size are an error, never silently resized: pass
``resize=True`` (or call :func:`resize_frames` yourself) to resize them with antialiased
bilinear interpolation (the aspect ratio is not kept).

**Standardization.** A model may carry :class:`~diffusion_reward.rewards.standardize.RewardStats`,
fitted on expert episodes with :meth:`RewardModel.fit_stats` and saved with the model: as the
paper does, one mean and std per task (``model.task_stats``, measured on that task's expert
videos), and the same over every expert episode together (``model.stats``). Then
:meth:`RewardModel.rewards` returns standardized rewards: ``task="reach-v3"`` standardizes with
that task's statistics, and a task the model has no statistics for (an unseen task) or no task at
all falls back to the pooled ones (:meth:`RewardModel.stats_for`). ``raw=True`` returns the
model's own scale.

**Artefacts.** :meth:`RewardModel.save_pretrained` writes ``config.json`` (``kind``, the model
config, the stats) and ``model.safetensors``; :func:`load_reward_model` reads ``kind`` and
dispatches to the class registered for it with :func:`register_reward`.

Writing a new reward model::

    @register_reward("mine")
    class MyReward(RewardModel):
        history = 1
        def __init__(self, config: MyConfig, device="auto"): ...
        def score_windows(self, windows, steps): ...      # (N, history+1, H, W, 3) -> float32 (N,)
        def config_dict(self): return to_dict(self.config)
        @classmethod
        def from_config(cls, config, device="auto"): return cls(from_dict(MyConfig, config), device)
        def torch_modules(self): return {"net": self.net}  # what model.safetensors holds
"""

from __future__ import annotations

import abc
import importlib
import importlib.util
import os
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Mapping, Sequence, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from diffusion_reward.errors import UserError
from diffusion_reward.rewards.kinds import BUILTIN_KINDS
from diffusion_reward.rewards.standardize import RewardStats
from diffusion_reward.utils.checkpoint import (CONFIG_NAME, WEIGHTS_NAME, ArtefactError, artefact_header, load_tensors,
                                               read_artefact_config, save_artefact)
from diffusion_reward.utils.device import resolve_device
from diffusion_reward.utils.frames import to_unit_range

_REGISTRY: dict[str, type["RewardModel"]] = {}

M = TypeVar("M", bound="RewardModel")


# --------------------------------------------------------------------------------------------
# Frames: validation, resizing, windows, layout conversion


def check_frames(frames: Any, image_size: int | None = None, resize: bool = False,
                 what: str = "frames") -> np.ndarray:
    """Return ``frames`` as a uint8 ``(T, H, W, 3)`` array, or raise :class:`UserError` saying why not.

    With ``image_size``, frames must be ``image_size`` x ``image_size``; ``resize=True`` resizes
    frames of another size (see :func:`resize_frames`) instead of raising.
    """
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    frames = np.asarray(frames)
    expected = "uint8 (T, H, W, 3) RGB frames" + (f" of {image_size}x{image_size}" if image_size else "")
    if frames.dtype != np.uint8:
        hint = " (scale [0, 1] floats with (x * 255).round().astype(np.uint8))" if frames.dtype.kind == "f" else ""
        raise UserError(f"{what}: expected {expected}, got dtype {frames.dtype}{hint}")
    if frames.ndim != 4 or frames.shape[-1] != 3:
        hint = ""
        if frames.ndim == 4 and frames.shape[1] == 3:
            hint = " (channel-first; use frames.transpose(0, 2, 3, 1))"
        elif frames.ndim == 3 and frames.shape[-1] == 3:
            hint = " (one frame; use frames[None] for a one-frame episode)"
        raise UserError(f"{what}: expected {expected}, got shape {tuple(frames.shape)}{hint}")
    if len(frames) == 0:
        raise UserError(f"{what}: expected at least one frame, got T=0")
    if image_size is not None and frames.shape[1:3] != (image_size, image_size):
        if not resize:
            raise UserError(f"{what}: expected {expected}, got {frames.shape[1]}x{frames.shape[2]}; "
                            "frames are not resized silently: pass resize=True or use resize_frames()")
        frames = resize_frames(frames, image_size)
    return frames


def resize_frames(frames: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize uint8 ``(T, H, W, 3)`` frames to ``size`` (an int for square) with antialiased bilinear
    interpolation; the aspect ratio is not kept. Returns uint8 ``(T, size, size, 3)``."""
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if frames.shape[1:3] == hw:
        return frames
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    y = F.interpolate(x, size=hw, mode="bilinear", antialias=True, align_corners=False)
    return y.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def make_windows(frames: np.ndarray, history: int) -> np.ndarray:
    """Every reward window of an episode: ``(T, history + 1, H, W, 3)``, window ``j`` =
    ``frames[j - history : j + 1]`` with indices below 0 replaced by 0 (frame 0 repeated)."""
    T = len(frames)
    idx = np.arange(T)[:, None] + np.arange(-history, 1)[None, :]
    return frames[np.clip(idx, 0, None)]


def frames_to_model_input(frames: torch.Tensor | np.ndarray, image_size: int | None = None,
                          device: torch.device | str = "cpu", resize: bool = False,
                          what: str = "frames") -> torch.Tensor:
    """A batch of uint8 frames, channel-first ``(B, 3, H, W)`` (the RL replay layout) or channel-last
    ``(B, H, W, 3)``, NumPy or torch, -> float ``(B, 3, H, W)`` in ``[-1, 1]`` on ``device``.

    Float tensors are accepted too and read as pixel values in ``[0, 255]`` (DrQ-v2 passes
    ``obs.float()``); a float batch with values outside that range is an error (it is probably
    already normalised). When both layouts fit the shape, ``image_size`` decides.
    """
    x = torch.as_tensor(frames) if isinstance(frames, np.ndarray) else frames
    if not isinstance(x, torch.Tensor):
        raise UserError(f"{what}: expected a uint8 array or tensor of frames, got {type(frames).__name__}")
    if x.ndim != 4:
        raise UserError(f"{what}: expected a batch (B, 3, H, W) or (B, H, W, 3), got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        pass
    elif x.dtype.is_floating_point:
        lo, hi = (float(x.min()), float(x.max())) if x.numel() else (0.0, 0.0)
        if lo < 0 or hi > 255:
            raise UserError(f"{what}: float frames must hold pixel values in [0, 255], got range "
                            f"[{lo:.3g}, {hi:.3g}]; pass uint8 frames")
    else:
        raise UserError(f"{what}: expected uint8 frames, got dtype {x.dtype}")
    chw = x.shape[1] == 3 and (x.shape[-1] != 3 or (image_size is not None and x.shape[2:] == (image_size,) * 2))
    if not chw:
        if x.shape[-1] != 3:
            raise UserError(f"{what}: expected 3 colour channels first (B, 3, H, W) or last (B, H, W, 3), "
                            f"got shape {tuple(x.shape)}")
        x = x.permute(0, 3, 1, 2)
    x = x.to(device=device, dtype=torch.float32)
    if image_size is not None and tuple(x.shape[2:]) != (image_size, image_size):
        if not resize:
            raise UserError(f"{what}: expected {image_size}x{image_size} frames, got {x.shape[2]}x{x.shape[3]}; "
                            "pass resize=True to resize them")
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
    return to_unit_range(x.contiguous())


# --------------------------------------------------------------------------------------------
# The contract


class RewardModel(abc.ABC):
    """A reward computed from video frames; see the module docstring for the conventions.

    Attributes every model has: ``kind`` (its registry name, set by :func:`register_reward`),
    ``history`` (frames before frame ``j`` that reward ``j`` needs), ``image_size`` (required
    frame size, or ``None`` for any), ``device``, ``stats`` and ``task_stats`` (optional
    standardization, pooled and per task), ``sample_seed`` (seeds :meth:`step_generator`),
    ``max_batch`` (windows per :meth:`score_windows` call) and ``cameras`` (task -> the cameras of
    the frames it was fit on, empty when unknown; :meth:`check_camera`).
    """

    kind: ClassVar[str] = ""
    history: int = 0
    image_size: int | None = None
    max_batch: int = 256

    def __init__(self, device: str | torch.device = "auto"):
        self.device = resolve_device(device) if isinstance(device, str) else torch.device(device)
        self.stats: RewardStats | None = None
        self.task_stats: dict[str, RewardStats] = {}
        self.sample_seed = 0
        self.cameras: dict[str, list[str]] = {}

    # ---- what a model implements ------------------------------------------------------------

    @abc.abstractmethod
    def score_windows(self, windows: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """Raw (unstandardized) rewards of a batch of windows.

        ``windows``: uint8 ``(N, history + 1, H, W, 3)``, already validated (and resized);
        window ``i`` ends at frame ``steps[i]`` of its episode (int64 ``(N,)``). Returns float32
        ``(N,)``. The result for a window must not depend on the other windows in the batch
        (draw any randomness from ``self.step_generator(steps[i])``).
        """

    def config_dict(self) -> dict[str, Any]:
        """Everything besides the weights needed to rebuild the model (JSON-ready)."""
        return {}

    @classmethod
    def from_config(cls: type[M], config: dict[str, Any], device: str | torch.device = "auto") -> M:
        """Build an (untrained) model from :meth:`config_dict` output."""
        if config:
            raise UserError(f"{cls.__name__}: takes no config, got keys {sorted(config)}")
        return cls(device=device)

    def torch_modules(self) -> dict[str, torch.nn.Module]:
        """The modules whose state (parameters and buffers) ``model.safetensors`` holds."""
        return {}

    # ---- the public API -----------------------------------------------------------------------

    @property
    def is_online(self) -> bool:
        """Whether the model learns during RL (then the loop calls :meth:`update`)."""
        return False

    def update(self, batch: Mapping[str, Any]) -> dict[str, float]:
        """One online training step on a replay batch; returns metrics. A no-op for offline models."""
        return {}

    def rewards(self, frames: np.ndarray, *, resize: bool = False, raw: bool = False,
                task: str | None = None) -> np.ndarray:
        """One reward per frame of one episode: uint8 ``(T, H, W, 3)`` -> float32 ``(T,)``.

        Reward ``j`` scores reaching frame ``j`` from the window ending there (frame 0 repeated
        before the start). Standardized with ``stats_for(task)`` when there are statistics, unless
        ``raw``.
        """
        frames = check_frames(frames, self.image_size, resize)
        return self._finish(self._score_clips([frames]), raw, task)

    def rewards_batch(self, episodes: Sequence[Any], *, resize: bool = False, raw: bool = False,
                      tasks: Sequence[str | None] | None = None,
                      progress: Callable[[int], None] | None = None) -> list[np.ndarray]:
        """:meth:`rewards` of several episodes (arrays or :class:`~diffusion_reward.data.episodes.Episode`),
        their windows scored together in batches of ``max_batch`` (built batch by batch, so memory
        stays at one batch of windows); same numbers as one episode at a time. ``tasks`` (one per
        episode, or ``None``) picks each episode's standardization as ``task`` does in :meth:`rewards`;
        ``progress(n)`` is called after each batch with the number of frames it scored."""
        clips = [check_frames(getattr(e, "frames", e), self.image_size, resize, what=f"episode {i}")
                 for i, e in enumerate(episodes)]
        if not clips:
            return []
        if tasks is not None and len(tasks) != len(clips):
            raise ValueError(f"got {len(tasks)} tasks for {len(clips)} episodes")
        parts = np.split(self._score_clips(clips, progress), np.cumsum([len(c) for c in clips])[:-1])
        return [self._finish(p, raw, None if tasks is None else tasks[i]) for i, p in enumerate(parts)]

    def rewards_window(self, window: np.ndarray, step: int, *, resize: bool = False, raw: bool = False,
                       task: str | None = None) -> float:
        """The reward of frame ``step`` from its window: uint8 ``(history + 1, H, W, 3)``, oldest first,
        padded by repeating frame 0 while ``step < history``. Equals ``rewards(frames, task=task)[step]``."""
        window = check_frames(window, self.image_size, resize, what="window")
        if len(window) != self.history + 1:
            raise UserError(f"window: expected history + 1 = {self.history + 1} frames, got {len(window)}")
        return float(self.rewards_windows(window[None], [step], raw=raw, tasks=task)[0])

    def rewards_windows(self, windows: np.ndarray, steps: Sequence[int] | np.ndarray, *, resize: bool = False,
                        raw: bool = False, tasks: str | Sequence[str | None] | None = None) -> np.ndarray:
        """The rewards of a batch of windows, each from its own episode (environments stepping side by
        side): uint8 ``(N, history + 1, H, W, 3)``, window ``i`` ending at frame ``steps[i]`` of its episode,
        -> float32 ``(N,)``, scored in one :meth:`score_windows` call (``max_batch`` windows at most per call).

        Reward ``i`` equals ``rewards(frames_i, task=tasks[i])[steps[i]]``; ``tasks`` is one task for every
        window, or one per window (each window standardized with its own task's statistics)."""
        windows = windows.detach().cpu().numpy() if isinstance(windows, torch.Tensor) else np.asarray(windows)
        if windows.ndim != 5 or windows.shape[1] != self.history + 1:
            hint = " (one window; use window[None])" if windows.ndim == 4 else ""
            raise UserError(f"windows: expected (N, history + 1 = {self.history + 1}, H, W, 3), "
                            f"got shape {tuple(windows.shape)}{hint}")
        n = len(windows)
        flat = check_frames(windows.reshape(-1, *windows.shape[2:]), self.image_size, resize, what="windows")
        windows = flat.reshape(n, self.history + 1, *flat.shape[1:])
        steps = np.asarray(steps, dtype=np.int64).reshape(-1)
        if steps.shape != (n,):
            raise UserError(f"windows: expected one step index per window ({n}), got {len(steps)}")
        if (steps < 0).any():
            raise UserError(f"windows: step indices must be >= 0, got {int(steps.min())}")
        per_window = [tasks] * n if tasks is None or isinstance(tasks, str) else list(tasks)
        if len(per_window) != n:
            raise UserError(f"windows: expected one task per window ({n}), got {len(per_window)}")
        batch = max(1, int(self.max_batch))
        raw_rewards = np.concatenate([self._score_checked(windows[i:i + batch], steps[i:i + batch])
                                      for i in range(0, n, batch)])
        if raw:
            return raw_rewards
        out = np.empty(n, dtype=np.float32)
        for task in dict.fromkeys(per_window):
            rows = [i for i, t in enumerate(per_window) if t == task]
            out[rows] = self._finish(raw_rewards[rows], False, task)
        return out

    def stats_for(self, task: str | None = None) -> RewardStats | None:
        """The statistics that standardize rewards of ``task``: its own when the model has them, else
        the pooled ones (``None`` when the model has no statistics)."""
        if task is not None and task in self.task_stats:
            return self.task_stats[task]
        return self.stats

    def fit_stats(self, expert_episodes: Iterable[Any], *, resize: bool = False,
                  min_std: float | None = None, tasks: Sequence[str | None] | None = None,
                  progress: Callable[[int], None] | None = None) -> RewardStats:
        """Measure the raw reward's mean and std on expert episodes, pooled (``self.stats``) and per
        task (``self.task_stats``), keep them (and so save them with the model) and return the pooled ones.

        Each episode's task comes from ``tasks`` (one per episode), else from ``episode.info["task"]``
        (where episodes read from a dataset carry it); episodes with no known task count only
        towards the pooled statistics. ``progress(n)``: as in :meth:`rewards_batch`.
        """
        episodes = list(expert_episodes)
        if tasks is None:
            tasks = [(getattr(e, "info", None) or {}).get("task") for e in episodes]
        if len(tasks) != len(episodes):
            raise ValueError(f"got {len(tasks)} tasks for {len(episodes)} episodes")
        kwargs = {} if min_std is None else {"min_std": min_std}
        raw = self.rewards_batch(episodes, resize=resize, raw=True, progress=progress)
        self.stats = RewardStats.from_rewards(raw, **kwargs)
        by_task: dict[str, list[np.ndarray]] = {}
        for task, rewards in zip(tasks, raw):
            if task is not None:
                by_task.setdefault(str(task), []).append(rewards)
        self.task_stats = {task: RewardStats.from_rewards(parts, **kwargs) for task, parts in sorted(by_task.items())}
        return self.stats

    def step_generator(self, step: int, device: torch.device | str | None = None) -> torch.Generator:
        """A torch generator seeded from ``(sample_seed, step)`` only, for the randomness of one window."""
        seed = int(np.random.SeedSequence([int(self.sample_seed), int(step)]).generate_state(1, np.uint64)[0] >> 1)
        gen = torch.Generator(device=torch.device(device) if device is not None else self.device)
        gen.manual_seed(seed)
        return gen

    # ---- artefacts -----------------------------------------------------------------------------

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """A flat dict ``"<module>.<name>" -> tensor`` of every module in :meth:`torch_modules`."""
        out = {}
        for name, module in self.torch_modules().items():
            for key, value in module.state_dict().items():
                out[f"{name}.{key}"] = value
        return out

    def load_state_tensors(self, tensors: Mapping[str, torch.Tensor], source: str = "weights") -> None:
        """Load :meth:`state_tensors` output strictly: a missing or unexpected tensor is an error."""
        expected = set(self.state_tensors())
        missing, unexpected = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
        if missing or unexpected:
            raise UserError(f"{source}: does not match a {self.kind or type(self).__name__} reward model "
                            f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
        for name, module in self.torch_modules().items():
            prefix = name + "."
            part = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            try:
                module.load_state_dict(part, strict=True)
            except RuntimeError as exc:
                raise UserError(f"{source}: cannot load {name!r} ({exc})") from None

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (:meth:`state_tensors`) to ``directory``.

        ``config.json`` holds ``kind``, ``config`` (:meth:`config_dict`, from which the model is
        rebuilt), ``stats``, ``sample_seed`` and, for people reading the file, ``history`` and
        ``image_size``. Returns the directory."""
        if not self.kind:
            raise TypeError(f"{type(self).__name__} is not registered; decorate it with @register_reward(kind)")
        config = {**artefact_header(self.kind),
                  "history": self.history, "image_size": self.image_size, "sample_seed": self.sample_seed,
                  "stats": None if self.stats is None else self.stats.to_dict(),
                  "task_stats": {task: stats.to_dict() for task, stats in self.task_stats.items()},
                  "cameras": self.cameras, "config": self.config_dict()}
        return save_artefact(directory, config, self.state_tensors())

    @classmethod
    def from_pretrained(cls: type[M], directory: str | os.PathLike, device: str | torch.device = "auto") -> M:
        """Load a model written by :meth:`save_pretrained`. On ``RewardModel`` itself this dispatches
        on the saved kind (like :func:`load_reward_model`); on a subclass the kind must match."""
        directory = Path(directory)
        meta = _read_config(directory)
        if cls is RewardModel or not cls.kind:
            return load_reward_model(directory, device)  # type: ignore[return-value]
        if meta["kind"] != cls.kind:
            raise UserError(f"{directory}: holds a {meta['kind']!r} reward model, not {cls.kind!r}; "
                            "use load_reward_model() to load any kind")
        try:
            model = cls.from_config(meta.get("config") or {}, device=device)
        except (TypeError, ValueError) as exc:
            raise UserError(f"{directory / CONFIG_NAME}: invalid {cls.kind!r} config ({exc})") from None
        try:
            tensors = load_tensors(directory / WEIGHTS_NAME, device="cpu")
        except (FileNotFoundError, ValueError) as exc:
            raise UserError(str(exc)) from None
        model.load_state_tensors(tensors, source=str(directory / WEIGHTS_NAME))
        stats = meta.get("stats")
        model.stats = None if stats is None else RewardStats.from_dict(stats)
        task_stats = meta.get("task_stats") or {}
        if not isinstance(task_stats, dict):
            raise UserError(f"{directory / CONFIG_NAME}: \"task_stats\" must map task names to statistics, "
                            f"got {type(task_stats).__name__}")
        model.task_stats = {str(task): RewardStats.from_dict(value) for task, value in task_stats.items()}
        model.sample_seed = int(meta.get("sample_seed", 0))
        cameras = meta.get("cameras") or {}
        if not isinstance(cameras, dict):
            raise UserError(f"{directory / CONFIG_NAME}: \"cameras\" must map task names to camera lists, "
                            f"got {type(cameras).__name__}")
        model.cameras = {str(task): [str(c) for c in names] for task, names in cameras.items()}
        return model

    def check_dataset_cameras(self, cameras: dict[str, list[str]], where: str = "reward model") -> None:
        """:meth:`check_camera` for every (task, camera) of a dataset (``EpisodeDataset.cameras``)."""
        for task, names in cameras.items():
            for camera in names:
                self.check_camera(task, camera, where)

    def check_camera(self, task: str | None, camera: str | None, where: str = "reward model") -> None:
        """Raise :class:`UserError` when frames from ``camera`` are not what this model was fit on.

        The reference is the task's own cameras when the model saw the task, else every camera it saw.
        Nothing is checked when either side is unknown (``camera`` None, or no recorded cameras)."""
        if camera is None or not self.cameras:
            return
        known = self.cameras.get(task) if task is not None else None
        seen = known if known else sorted({c for names in self.cameras.values() for c in names})
        if seen and camera not in seen:
            about = f"{task}'s frames" if known else "frames"
            raise UserError(f"{where}: fit on {about} from camera {' / '.join(seen)}, but these come from camera "
                            f"{camera!r}; render from the same camera (e.g. --camera {seen[0]}) or fit a reward "
                            f"on {camera!r} videos")

    # ---- internals -----------------------------------------------------------------------------

    def _score_clips(self, clips: Sequence[np.ndarray], progress: Callable[[int], None] | None = None) -> np.ndarray:
        owners = np.concatenate([np.full(len(c), i) for i, c in enumerate(clips)])
        steps = np.concatenate([np.arange(len(c)) for c in clips]).astype(np.int64)
        offsets = np.arange(-self.history, 1)
        batch = max(1, int(self.max_batch))
        parts = []
        for start in range(0, len(steps), batch):
            o, st = owners[start:start + batch], steps[start:start + batch]
            windows = np.stack([clips[i][np.clip(j + offsets, 0, None)] for i, j in zip(o, st)])
            parts.append(self._score_checked(windows, st))
            if progress is not None:
                progress(len(st))
        return np.concatenate(parts)

    def _score_checked(self, windows: np.ndarray, steps: np.ndarray) -> np.ndarray:
        out = np.asarray(self.score_windows(windows, steps), dtype=np.float32)
        if out.shape != (len(windows),):
            raise RuntimeError(f"{type(self).__name__}.score_windows returned shape {out.shape}, "
                               f"expected ({len(windows)},)")
        return out

    def _finish(self, raw_rewards: np.ndarray, raw: bool, task: str | None = None) -> np.ndarray:
        stats = None if raw else self.stats_for(task)
        if stats is None:
            return raw_rewards.astype(np.float32, copy=False)
        return stats.standardize(raw_rewards)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(kind={self.kind!r}, history={self.history}, "
                f"image_size={self.image_size}, device={str(self.device)!r}, stats={self.stats})")


class OnlineRewardModel(RewardModel):
    """A reward model that keeps learning during RL (RND, AMP).

    Besides :meth:`rewards` on whole episodes, the RL loop calls :meth:`update` on every sampled
    replay batch and :meth:`bonus` to compute the reward of that batch's next observations on
    the fly, as the reference does. Single-frame: ``history = 0``.
    """

    history = 0

    @property
    def is_online(self) -> bool:
        return True

    @abc.abstractmethod
    def update(self, batch: Mapping[str, Any]) -> dict[str, float]:
        """Train on ``batch["next_obs"]`` (uint8 ``(B, 3, H, W)`` or ``(B, H, W, 3)``); returns metrics."""

    @abc.abstractmethod
    def bonus(self, next_obs: torch.Tensor) -> torch.Tensor:
        """Raw reward of a batch of uint8 observations as a float ``(B,)`` tensor on the model's device."""

    def score_windows(self, windows: np.ndarray, steps: np.ndarray) -> np.ndarray:
        frames = torch.from_numpy(np.ascontiguousarray(windows[:, -1]))
        return self.bonus(frames).detach().cpu().numpy().astype(np.float32)


# --------------------------------------------------------------------------------------------
# Registry


def register_reward(kind: str) -> Callable[[type[M]], type[M]]:
    """Class decorator: make ``kind`` (the ``"kind"`` in ``config.json``) load as this class."""
    if not kind or not isinstance(kind, str):
        raise ValueError("a reward kind is a non-empty string")

    def decorate(cls: type[M]) -> type[M]:
        if not (isinstance(cls, type) and issubclass(cls, RewardModel)):
            raise TypeError(f"@register_reward({kind!r}) needs a RewardModel subclass, got {cls!r}")
        old = _REGISTRY.get(kind)
        if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"reward kind {kind!r} is already registered to {old.__module__}.{old.__qualname__}")
        cls.kind = kind
        _REGISTRY[kind] = cls
        return cls

    return decorate


def known_kinds() -> list[str]:
    """Every kind that can be loaded here: the registered ones and the built-in modules installed."""
    available = {k for k, spec in BUILTIN_KINDS.items() if _module_exists(spec.module)}
    return sorted(available | set(_REGISTRY))


def reward_class(kind: str) -> type[RewardModel]:
    """The class registered for ``kind`` (importing its built-in module if needed)."""
    if kind not in _REGISTRY and kind in BUILTIN_KINDS and _module_exists(BUILTIN_KINDS[kind].module):
        importlib.import_module(BUILTIN_KINDS[kind].module)
    if kind not in _REGISTRY:
        raise UserError(f"unknown reward kind {kind!r}; known kinds: {', '.join(known_kinds())}")
    return _REGISTRY[kind]


def load_reward_model(directory: str | os.PathLike, device: str | torch.device = "auto") -> RewardModel:
    """Load any reward model saved with :meth:`RewardModel.save_pretrained`, by its ``kind``.

    A missing directory, a directory without ``config.json``, or an unknown kind raise
    :class:`UserError` naming the path and the known kinds.
    """
    directory = Path(directory)
    meta = _read_config(directory)
    try:
        cls = reward_class(meta["kind"])
    except UserError:
        raise UserError(f"{directory / CONFIG_NAME}: unknown reward kind {meta['kind']!r}; "
                        f"known kinds: {', '.join(known_kinds())}") from None
    return cls.from_pretrained(directory, device=device)


def _read_config(directory: Path) -> dict[str, Any]:
    kinds = ", ".join(known_kinds())
    if not directory.is_dir():
        raise UserError(f"{directory}: no such reward model directory (expected a folder with {CONFIG_NAME} "
                        f"and {WEIGHTS_NAME} written by save_pretrained; known kinds: {kinds})")
    try:
        return read_artefact_config(directory, "reward model")
    except ArtefactError as exc:
        raise UserError(f"{exc}; known kinds: {kinds}") from None


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False
