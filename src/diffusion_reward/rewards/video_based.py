"""What the two video-model rewards (Diffusion Reward and VIPER) share: codec + video model in one artefact.

Both turn a window of frames into codec tokens and ask a conditional video model about the
next frame; they differ only in the question. This base class holds the codec and the video
model, tokenises windows (each distinct frame of a batch once), saves both networks' configs
and weights into the reward model's own artefact directory (so a reward model directory is
self-contained: nothing else needs to be kept next to it), and picks the condition frames out of
a window.

Windows: with ``k`` condition frames ``frame_skip`` apart,

- ``score="next"`` (the entropy reward): reward ``j`` asks about the frame after ``j`` given the
  frames ending at ``j`` (``j - (k-1) s, ..., j``), so ``history = (k-1) s``;
- ``score="observed"`` (likelihood rewards, VIPER): reward ``j`` scores the observed frame
  ``j`` given ``j - k s, ..., j - s``: the target is never part of its own condition, so
  ``history = k s``.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable

import numpy as np
import torch

from diffusion_reward.config import from_dict, to_dict
from diffusion_reward.errors import UserError
from diffusion_reward.models.codec import VQGAN, CodecConfig, keep_unchanged_codes, unchanged_cells
from diffusion_reward.rewards.base import RewardModel
from diffusion_reward.utils.allocator import keep_freed_memory
from diffusion_reward.utils.checkpoint import CONFIG_NAME, read_json
from diffusion_reward.utils.device import use_bf16


class VideoModelReward(RewardModel):
    """A reward computed by a codec + conditional video model pair (see the module docstring)."""

    #: Which frame a window's reward is about: the unseen ``"next"`` one or the ``"observed"`` last one.
    score: str = "next"
    #: The reward's own config dataclass (``self.config``) and the video model class it queries.
    reward_config_class: ClassVar[type]
    video_class: ClassVar[type]

    def __init__(self, codec: VQGAN, video: torch.nn.Module, bf16: bool | None = None, batch_size: int = 64,
                 device: str | torch.device = "auto"):
        super().__init__(device)
        vcfg = video.config
        if vcfg.codebook_size != codec.config.codebook_size:
            raise UserError(f"video model expects {vcfg.codebook_size} codes but the codec has "
                            f"{codec.config.codebook_size}: they were not trained together")
        if getattr(vcfg, "grid", codec.config.token_grid) != codec.config.token_grid:
            raise UserError(f"video model expects a {vcfg.grid}x{vcfg.grid} token grid but the codec makes "
                            f"{codec.config.token_grid}x{codec.config.token_grid}")
        if self.device.type == "cpu":
            keep_freed_memory()  # the samplers' large per-step tensors: see utils/allocator.py
        self.codec = codec.to(self.device).eval()
        self.video = video.to(self.device).eval()
        self.bf16 = use_bf16(bf16, self.device)
        self.max_batch = int(batch_size)
        self.image_size = codec.config.image_size
        self.cond_frames, self.frame_skip = int(vcfg.cond_frames), int(getattr(vcfg, "frame_skip", 1))
        k, s = self.cond_frames, self.frame_skip
        self.history = (k - 1) * s if self.score == "next" else k * s
        #: The codes of the frames the latest call encoded; ``None`` encodes every frame of every call
        #: (the same codes, slower: only to measure the gain).
        self.code_cache: FrameCodeCache | None = FrameCodeCache()

    # ---- tokens and windows ---------------------------------------------------------------------

    @torch.no_grad()
    def window_tokens(self, windows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        """uint8 windows ``(N, history+1, H, W, 3)`` -> condition tokens ``(N, k, g, g)`` and, for
        ``score="observed"``, the target tokens ``(N, g, g)`` (else ``None``)."""
        n, length = windows.shape[:2]
        s = self.frame_skip
        if self.score == "next":
            cond_pos, target_pos = list(range(0, length, s)), None
        else:
            cond_pos, target_pos = list(range(0, length - 1, s)), length - 1
        used = cond_pos + ([target_pos] if target_pos is not None else [])
        frames = windows[:, used].reshape(-1, *windows.shape[2:])
        # Windows overlap (and the first ones repeat frame 0): encode each distinct frame once, and
        # none that the previous call encoded (a wrapper's windows slide by one frame per step).
        uniq, inverse = distinct_frames(frames)
        codes = self.codes_of(frames[uniq])
        tokens = codes[torch.from_numpy(inverse)].view(n, len(used), *codes.shape[1:])
        if getattr(self.video.config, "sticky_codes", False):  # as the model's training windows were made
            grid = codes.shape[-1]
            same = unchanged_cells(frames, grid, 1).reshape(n, len(used), grid, grid)
            same[:, 0] = False  # each window's first frame keeps its own codes
            tokens = keep_unchanged_codes(tokens, torch.from_numpy(same))
        cond = tokens[:, : len(cond_pos)].to(self.device)
        target = tokens[:, -1].to(self.device) if target_pos is not None else None
        return cond, target

    def codes_of(self, frames: np.ndarray) -> torch.Tensor:
        """Codec codes ``(N, g, g)`` (CPU, int64) of distinct uint8 frames ``(N, H, W, 3)``, taken from
        :attr:`code_cache` for frames the previous call encoded and encoded for the rest. In float32, as
        the video model's training tokens were made: under bf16 autocast ~8% of the codes of held-out
        MetaWorld frames came out different (near-ties of the nearest-code search)."""
        if self.code_cache is None:
            return self.codec.encode_frames(frames)
        return self.code_cache.codes(self.codec, frames)

    def generators(self, steps: np.ndarray) -> list[torch.Generator]:
        """One generator per window, seeded by its step only (see ``RewardModel.step_generator``)."""
        return [self.step_generator(int(j)) for j in steps]

    # ---- artefacts ------------------------------------------------------------------------------

    def torch_modules(self) -> dict[str, torch.nn.Module]:
        return {"codec": self.codec, "video": self.video}

    def config_dict(self) -> dict[str, Any]:
        return {"reward": to_dict(self.config), "codec": to_dict(self.codec.config),
                "video": to_dict(self.video.config), "video_kind": self.video.kind,
                "video_codec": getattr(self.video, "codec", None)}

    @classmethod
    def from_config(cls, config: dict[str, Any], device: str | torch.device = "auto") -> "VideoModelReward":
        codec = VQGAN(from_dict(CodecConfig, config["codec"]))
        video = cls.video_class(from_dict(cls.video_class.config_class, config["video"]))
        video.codec = config.get("video_codec")
        return cls(codec, video, from_dict(cls.reward_config_class, config["reward"]), device=device)

    @classmethod
    def from_video_model(cls, video_dir: str | os.PathLike, expert_episodes: Iterable[Any], config: Any = None,
                         codec_dir: str | os.PathLike | None = None, device: str | torch.device = "auto",
                         sample_seed: int = 0, progress: Callable[[int], None] | None = None
                         ) -> "VideoModelReward":
        """Load a trained video model and its codec (``codec_dir``, default: the one it recorded; its
        fingerprint is checked) and fit the reward statistics on the training expert episodes (per
        task and pooled; ``progress(n)`` after each batch of ``n`` scored frames)."""
        codec_dir = resolve_codec_dir(video_dir, codec_dir)
        video = cls.video_class.from_pretrained(video_dir, codec=codec_dir)
        model = cls(VQGAN.from_pretrained(codec_dir), video, config, device=device)
        model.sample_seed = int(sample_seed)
        model.fit_stats(expert_episodes, progress=progress)
        return model


class FrameCodeCache:
    """The codec's codes of the frames of the latest call, found by the frames' bytes.

    An environment wrapper scores, at every step, windows that share all but their newest frame with
    the windows of the step before (and whole-episode batches share ``history`` frames with the batch
    before): those frames are not encoded again. Only the latest call's frames are kept, so memory
    stays at one batch of frames, and everything is forgotten when a codec weight changes (moved,
    loaded or trained). A frame's codes do not depend on the frames encoded beside it (up to the float
    rounding by which the encoder's kernels differ between batch sizes, as everywhere in the rewards).
    """

    def __init__(self) -> None:
        self._codes: dict[bytes, torch.Tensor] = {}
        self._weights: tuple = ()

    def codes(self, codec: VQGAN, frames: np.ndarray) -> torch.Tensor:
        """Codes ``(N, g, g)`` of distinct uint8 frames ``(N, H, W, 3)``; see the class docstring."""
        weights = tuple((t.data_ptr(), t._version) for t in itertools.chain(codec.parameters(), codec.buffers()))
        if weights != self._weights:
            self._codes, self._weights = {}, weights
        keys = [np.ascontiguousarray(frame).tobytes() for frame in frames]
        new = [i for i, key in enumerate(keys) if key not in self._codes]
        fresh = iter(codec.encode_frames(frames[new]) if new else ())
        codes = [self._codes[key] if key in self._codes else next(fresh) for key in keys]
        self._codes = dict(zip(keys, codes))
        g = codec.config.token_grid
        return torch.stack(codes) if codes else torch.zeros((0, g, g), dtype=torch.int64)


def distinct_frames(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the first occurrence of each distinct frame and, per frame, which distinct frame it
    is: ``frames[first][inverse] == frames``. Hashes each frame's bytes (``np.unique(axis=0)`` sorted
    the rows and took ~20% of the reward's time on an episode)."""
    seen: dict[bytes, int] = {}
    first: list[int] = []
    inverse = np.empty(len(frames), dtype=np.int64)
    for i, frame in enumerate(frames):
        j = seen.setdefault(np.ascontiguousarray(frame).tobytes(), len(first))
        if j == len(first):
            first.append(i)
        inverse[i] = j
    return np.asarray(first, dtype=np.int64), inverse


def resolve_codec_dir(video_dir: str | os.PathLike, codec_dir: str | os.PathLike | None = None) -> Path:
    """The codec directory to use with a video model: ``codec_dir`` if given, else the one it recorded."""
    if codec_dir is not None:
        return Path(codec_dir)
    path = Path(video_dir) / CONFIG_NAME
    if not path.is_file():
        raise UserError(f"{video_dir}: not a video model directory (no {CONFIG_NAME})")
    recorded = (read_json(path).get("codec") or {}).get("path")
    if not recorded:
        raise UserError(f"{video_dir}: records no codec; pass the codec directory it was trained with (--codec)")
    if not Path(recorded).is_dir():
        raise UserError(f"{video_dir}: was trained with the codec at {recorded}, which is gone; "
                        "pass its new location with --codec")
    return Path(recorded)
