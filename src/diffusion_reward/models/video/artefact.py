"""Saving and loading video models, and the reference to the codec whose tokens they model.

A video model is only meaningful with the codec it was trained on: the same code means the
same image patch only under the same codebook. Its artefact directory therefore records the
codec's directory and a fingerprint of the codec's weights (SHA-256 of its weights file), and
loading checks that fingerprint against the codec actually found (or passed), failing with a
clear :class:`CodecMismatchError` instead of producing nonsense rewards.

Artefact layout: ``config.json`` = ``{"kind", "format_version", "config", "codec", "extra"}``
plus ``model.safetensors`` (the weights; the EMA weights for a model trained with EMA).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from diffusion_reward.config import from_dict, to_dict
from diffusion_reward.errors import UserError
from diffusion_reward.utils.checkpoint import CONFIG_NAME, WEIGHTS_NAME, load_artefact, read_json, save_artefact
from diffusion_reward.utils.provenance import file_digest
from diffusion_reward.utils.logging import get_logger

FORMAT_VERSION = 1
M = TypeVar("M", bound="VideoModelArtefact")


class CodecMismatchError(UserError):
    """The codec found or given is not the one a video model was trained with."""


def codec_fingerprint(codec_dir: str | os.PathLike) -> str:
    """SHA-256 (hex) of a codec directory's weights file; raises :class:`UserError` when it has none."""
    path = Path(codec_dir) / WEIGHTS_NAME
    if not path.is_file():
        raise UserError(f"{codec_dir}: not a codec directory (no {WEIGHTS_NAME})")
    return file_digest(path)


def codec_reference(codec_dir: str | os.PathLike) -> dict[str, str]:
    """What a video model records about its codec: absolute path and weights fingerprint."""
    return {"path": str(Path(codec_dir).resolve()), "fingerprint": codec_fingerprint(codec_dir)}


def check_codec(reference: dict[str, str] | None, codec_dir: str | os.PathLike | None, model_dir: str | os.PathLike) -> None:
    """Check ``codec_dir`` (default: the recorded path) against the recorded fingerprint.

    A missing recorded codec is only a warning when no ``codec_dir`` is given (the model may be
    used on tokens alone); a codec whose weights differ is an error naming both directories.
    """
    if reference is None:
        return
    explicit = codec_dir is not None
    codec_dir = Path(codec_dir if explicit else reference["path"])
    if not (codec_dir / WEIGHTS_NAME).is_file():
        if explicit:
            raise UserError(f"{codec_dir}: not a codec directory (no {WEIGHTS_NAME})")
        get_logger().warning("%s: the codec it was trained with (%s) is not there; pass the codec "
                             "explicitly to use this model on frames", model_dir, codec_dir)
        return
    found = codec_fingerprint(codec_dir)
    if found != reference["fingerprint"]:
        raise CodecMismatchError(
            f"{model_dir}: trained with the codec at {reference['path']} (weights sha256 "
            f"{reference['fingerprint'][:12]}...), but the codec at {codec_dir} has different weights "
            f"(sha256 {found[:12]}...); use the codec it was trained with or retrain the video model")


class VideoModelArtefact(nn.Module):
    """Mixin for video models: ``save_pretrained`` / ``from_pretrained`` and the codec reference.

    Subclasses set ``kind`` and ``config_class`` and take their config as the only constructor
    argument; ``codec`` (a reference dict or ``None``) is kept beside the config.
    """

    kind: ClassVar[str]
    config_class: ClassVar[type]
    codec: dict[str, str] | None = None

    def save_pretrained(self, directory: str | os.PathLike, extra: dict[str, Any] | None = None,
                        state_dict: dict[str, torch.Tensor] | None = None) -> Path:
        """Write ``config.json`` + ``model.safetensors``; ``state_dict`` overrides the weights
        (for example EMA weights); ``extra`` is free-form JSON (training facts, metrics)."""
        config = {"kind": self.kind, "format_version": FORMAT_VERSION, "config": to_dict(self.config),
                  "codec": self.codec, "extra": extra or {}}
        return save_artefact(directory, config, dict(state_dict if state_dict is not None else self.state_dict()))

    @classmethod
    def from_pretrained(cls: type[M], directory: str | os.PathLike, device: str | torch.device = "cpu",
                        codec: str | os.PathLike | None = None) -> M:
        """Load a model saved by :meth:`save_pretrained` (strictly: every weight must match).

        ``codec``: the codec directory you will use with it; by default the recorded one is
        checked when present. A codec with different weights raises :class:`CodecMismatchError`.
        """
        directory = Path(directory)
        if not (directory / CONFIG_NAME).is_file():
            raise UserError(f"{directory}: not a video model directory (no {CONFIG_NAME})")
        meta = read_json(directory / CONFIG_NAME)
        if meta.get("kind") != cls.kind:
            raise UserError(f"{directory}: holds a {meta.get('kind')!r} model, not {cls.kind!r}")
        if meta.get("format_version", 0) > FORMAT_VERSION:
            raise UserError(f"{directory}: model format {meta['format_version']} is newer than this package "
                            f"reads ({FORMAT_VERSION}); upgrade diffusion-reward")
        check_codec(meta.get("codec"), codec, directory)
        _, tensors = load_artefact(directory, device=device)
        model = cls(from_dict(cls.config_class, meta["config"]))
        model.codec = meta.get("codec")
        model.extra = meta.get("extra", {})
        try:
            model.load_state_dict(tensors, strict=True)
        except RuntimeError as exc:
            raise UserError(f"{directory}: weights do not match its config ({exc})") from None
        return model.to(device).eval()

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def load_video_model(directory: str | os.PathLike, device: str | torch.device = "cpu",
                     codec: str | os.PathLike | None = None) -> VideoModelArtefact:
    """Load whichever video model (``vqdiffusion`` or ``videogpt``) a directory holds."""
    from diffusion_reward.models.video.videogpt import VideoGPT
    from diffusion_reward.models.video.vqdiffusion import VQDiffusion

    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise UserError(f"{directory}: not a video model directory (no {CONFIG_NAME})")
    kind = read_json(path).get("kind")
    classes = {VQDiffusion.kind: VQDiffusion, VideoGPT.kind: VideoGPT}
    if kind not in classes:
        raise UserError(f"{directory}: unknown video model kind {kind!r}; expected one of {sorted(classes)}")
    return classes[kind].from_pretrained(directory, device=device, codec=codec)
