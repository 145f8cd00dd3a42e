"""Saving and loading video models, and the reference to the codec whose tokens they model.

A video model is only meaningful with the codec it was trained on: the same code means the
same image patch only under the same codebook. Its artefact directory therefore records the
codec's directory and a fingerprint of the codec's weights (SHA-256 of its weights file), and
loading checks that fingerprint against the codec actually found (or passed), failing with a
clear :class:`CodecMismatchError` instead of producing nonsense rewards.

Artefact layout: :class:`~diffusion_reward.models.PretrainedModel`'s (``config.json`` with the
artefact header, ``config``, ``extra`` and ``codec``, plus ``model.safetensors``: the weights,
the EMA weights for a model trained with EMA). :func:`diffusion_reward.models.video.load_video_model`
loads whichever video model a directory holds.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

import torch

from diffusion_reward.errors import UserError
from diffusion_reward.models import PretrainedModel
from diffusion_reward.utils.checkpoint import WEIGHTS_NAME
from diffusion_reward.utils.logging import get_logger
from diffusion_reward.utils.provenance import file_digest

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


class VideoModelArtefact(PretrainedModel):
    """Base of the video models: a :class:`PretrainedModel` that also records the codec it was trained on.

    Subclasses set ``kind`` and ``config_class`` and take their config as the only constructor
    argument; ``codec`` (a reference dict or ``None``) is kept beside the config.
    """

    what = "video model"
    codec: dict[str, str] | None = None

    def artefact_fields(self) -> dict[str, Any]:
        return {"codec": self.codec}

    def restore_fields(self, meta: dict[str, Any]) -> None:
        self.codec = meta.get("codec")

    @classmethod
    def from_pretrained(cls: type[M], directory: str | os.PathLike, device: str | torch.device = "cpu",
                        codec: str | os.PathLike | None = None) -> M:
        """Load a model saved by :meth:`save_pretrained` (strictly: every weight must match).

        ``codec``: the codec directory you will use with it; by default the recorded one is
        checked when present. A codec with different weights raises :class:`CodecMismatchError`.
        """
        meta = cls.read_config(directory)
        check_codec(meta.get("codec"), codec, directory)
        return cls._build(directory, meta, device)
