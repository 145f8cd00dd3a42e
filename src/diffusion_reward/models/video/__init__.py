"""Conditional video models over codec tokens: VQ-Diffusion (ours) and VideoGPT (for VIPER).

Public API::

    from diffusion_reward.models.video import VQDiffusion, VideoGPT, load_video_model

    model = VQDiffusion.from_pretrained("runs/video-vqdiffusion-small/model")   # checks the codec
    tokens, elbo = model.sample(cond_tokens, stride=10, generator=gen)     # (B, 8, 8), (B,) nats
    bound = model.log_likelihood_bound(cond_tokens, target_tokens, stride=10, generator=gen)  # (B,) nats
    gpt = VideoGPT.from_pretrained("runs/video-videogpt-small/model")
    log_p = gpt.log_likelihood(cond_tokens, target_tokens)                 # (B,) nats

Condition tokens are long ``(B, k, 8, 8)`` codes of the ``k`` previous frames (oldest first),
frames ``(B, 8, 8)``; every log-probability and bound is in nats per frame (summed over its 64
tokens): divide by ``64 * ln 2`` for bits per token. The diffusion process (schedule,
posteriors, bound, sampler) is :mod:`diffusion_reward.models.video.schedule`.
"""

from __future__ import annotations

import os

import torch

from diffusion_reward.models.video.artefact import (CodecMismatchError, VideoModelArtefact, codec_fingerprint,
                                                    codec_reference)
from diffusion_reward.models.video.schedule import MaskReplaceDiffusion, nats_to_bits_per_token
from diffusion_reward.models.video.videogpt import VideoGPT, VideoGPTConfig
from diffusion_reward.models.video.vqdiffusion import ConditionCache, VQDiffusion, VQDiffusionConfig

VIDEO_MODELS: dict[str, type[VideoModelArtefact]] = {VQDiffusion.kind: VQDiffusion, VideoGPT.kind: VideoGPT}


def load_video_model(directory: str | os.PathLike, device: str | torch.device = "cpu",
                     codec: str | os.PathLike | None = None) -> VideoModelArtefact:
    """Load whichever video model (``vqdiffusion`` or ``videogpt``) a directory holds."""
    from diffusion_reward.utils.checkpoint import read_artefact_config

    kind = read_artefact_config(directory, "video model", tuple(VIDEO_MODELS))["kind"]
    return VIDEO_MODELS[kind].from_pretrained(directory, device=device, codec=codec)


__all__ = ["VQDiffusion", "VQDiffusionConfig", "ConditionCache", "VideoGPT", "VideoGPTConfig", "MaskReplaceDiffusion",
           "load_video_model", "VIDEO_MODELS", "VideoModelArtefact", "codec_fingerprint", "codec_reference", "CodecMismatchError", "nats_to_bits_per_token"]
