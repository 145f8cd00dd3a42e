"""VideoGPT for the VIPER baseline: an autoregressive transformer over the codes of k+1 frames.

A window's codes are read frame by frame, each frame row-major, into one sequence of
``(k + 1) * N`` codes. A causal transformer predicts every code from the ones before it (a
begin token stands before the first). VIPER's reward is the log-likelihood of the observed
next frame's codes given the previous frames' codes (:meth:`VideoGPT.log_likelihood`, teacher
forcing); :meth:`VideoGPT.sample` draws a next frame code by code, reusing keys and values.
All log-probabilities are in **nats per frame** (summed over the frame's codes).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from diffusion_reward.config import option
from diffusion_reward.models.video.artefact import VideoModelArtefact
from diffusion_reward.models.video.layers import MLP, Attention, KeyValue, init_weights
from diffusion_reward.models.video.schedule import Generators, nats_to_bits_per_token, sample_categorical
from diffusion_reward.utils.device import autocast


@dataclasses.dataclass(frozen=True)
class VideoGPTConfig:
    """Architecture of an autoregressive VideoGPT over codec tokens."""

    codebook_size: int = option(1024, "K, the codec's number of codes")
    grid: int = option(8, "codes per side of one frame's token grid (8 for 64x64 frames)")
    cond_frames: int = option(2, "k, the number of previous frames the next frame is conditioned on")
    frame_skip: int = option(1, "frames between consecutive frames of a window (1: adjacent frames)")
    sticky_codes: bool = option(False, "a token cell whose pixels equal those of the window's previous frame keeps "
                                       "that frame's code, in training and reward windows alike: codes change only "
                                       "where the picture did (train-codec's token_flicker measures the rest)")
    width: int = option(512, "transformer width")
    depth: int = option(8, "transformer layers")
    heads: int = option(8, "attention heads")
    mlp_ratio: int = option(4, "MLP hidden size as a multiple of the width")

    @property
    def num_tokens(self) -> int:
        return self.grid * self.grid

    def __post_init__(self) -> None:
        for name in ("codebook_size", "grid", "cond_frames", "frame_skip", "width", "depth", "heads", "mlp_ratio"):
            if getattr(self, name) < 1:
                raise ValueError(f"VideoGPTConfig.{name} must be >= 1, got {getattr(self, name)}")


PRESETS: dict[str, VideoGPTConfig] = {
    "tiny": VideoGPTConfig(width=32, depth=2, heads=2),
    "small": VideoGPTConfig(width=192, depth=4, heads=6),
    "paper": VideoGPTConfig(),
}


class DecoderLayer(nn.Module):
    """Pre-norm causal transformer layer that returns its keys/values for incremental decoding."""

    def __init__(self, width: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = MLP(width, mlp_ratio)

    def forward(self, x: torch.Tensor, past: KeyValue | None = None) -> tuple[torch.Tensor, KeyValue]:
        h = self.norm1(x)
        k, v = self.attn.keys_values(h)
        if past is not None:
            if x.shape[1] != 1:
                raise ValueError("incremental decoding takes one new token at a time")
            k, v = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)
        x = x + self.attn(h, kv=(k, v), causal=past is None)
        return x + self.mlp(self.norm2(x)), (k, v)


class VideoGPT(VideoModelArtefact):
    """Autoregressive model of a window's codes; conditions ``(B, k, grid, grid)``, frames ``(B, grid, grid)``."""

    kind = "videogpt"
    config_class = VideoGPTConfig

    def __init__(self, config: VideoGPTConfig):
        super().__init__(config)
        self.codec = None
        cfg = config
        self.begin_index = cfg.codebook_size
        self.code = nn.Embedding(cfg.codebook_size + 1, cfg.width)
        self.position = nn.Embedding(cfg.num_tokens, cfg.width)
        self.frame = nn.Embedding(cfg.cond_frames + 1, cfg.width)
        self.layers = nn.ModuleList(DecoderLayer(cfg.width, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.width)
        self.head = nn.Linear(cfg.width, cfg.codebook_size)
        init_weights(self, cfg.depth)

    @property
    def seq_len(self) -> int:
        return (self.config.cond_frames + 1) * self.config.num_tokens

    def _embed(self, inputs: torch.Tensor, start: int) -> torch.Tensor:
        """Embed input codes placed at sequence positions ``start, start + 1, ...``."""
        n = self.config.num_tokens
        pos = torch.arange(start, start + inputs.shape[1], device=inputs.device)
        return self.code(inputs) + self.position(pos % n) + self.frame(pos // n)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, L, K)``: position ``i`` predicts ``tokens[:, i]`` from ``tokens[:, :i]``."""
        begin = torch.full_like(tokens[:, :1], self.begin_index)
        x = self._embed(torch.cat([begin, tokens[:, :-1]], 1), 0)
        for layer in self.layers:
            x, _ = layer(x)
        return self.head(self.norm(x))

    def check_tokens(self, tokens: torch.Tensor, name: str, frames: int | None) -> None:
        """Raise ``ValueError`` unless ``tokens`` are codes of shape (B, [frames,] grid, grid) in [0, K)."""
        g, K = self.config.grid, self.config.codebook_size
        want = (frames, g, g) if frames is not None else (g, g)
        if tokens.dtype != torch.long or tuple(tokens.shape[1:]) != want:
            raise ValueError(f"{name} must be long codes of shape (B, {', '.join(map(str, want))}), "
                             f"got {tokens.dtype} {tuple(tokens.shape)}")
        if tokens.numel() and (tokens.min() < 0 or tokens.max() >= K):
            raise ValueError(f"{name} must be codes in [0, {K}), got values in "
                             f"[{int(tokens.min())}, {int(tokens.max())}]")

    def _sequence(self, cond_tokens: torch.Tensor, target_tokens: torch.Tensor) -> torch.Tensor:
        self.check_tokens(cond_tokens, "cond_tokens", self.config.cond_frames)
        self.check_tokens(target_tokens, "target_tokens", None)
        if cond_tokens.shape[0] != target_tokens.shape[0]:
            raise ValueError(f"{cond_tokens.shape[0]} conditions but {target_tokens.shape[0]} targets")
        return torch.cat([cond_tokens.flatten(1), target_tokens.flatten(1)], 1)

    def training_loss(self, cond_tokens: torch.Tensor, target_tokens: torch.Tensor,
                      generator: torch.Generator | None = None,
                      net: nn.Module | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Mean next-code cross-entropy over the whole window (nats per token) and metrics.

        ``net`` is the module to call (a DistributedDataParallel wrapper; default: ``self``);
        ``generator`` is unused (the objective is deterministic) and accepted for symmetry.
        """
        seq = self._sequence(cond_tokens, target_tokens)
        logits = (self if net is None else net)(seq)
        nll = F.cross_entropy(logits.float().flatten(0, 1), seq.flatten(), reduction="none").view_as(seq)
        n = self.config.num_tokens
        metrics = {"loss": nll.mean().detach(),
                   "target_bits_per_token": nats_to_bits_per_token(nll[:, -n:].sum(1).mean().detach(), n)}
        return nll.mean(), metrics

    @torch.no_grad()
    def log_likelihood(self, cond_tokens: torch.Tensor, target_tokens: torch.Tensor,
                       amp: bool = False) -> torch.Tensor:
        """``log p(target | condition)`` in **nats per frame**, shape (B,): the sum over the target's
        codes of their log-probability given the previous frames' codes and the target's earlier
        codes (teacher forcing). The condition holds only previous frames."""
        device = self.head.weight.device
        seq = self._sequence(cond_tokens.to(device), target_tokens.to(device))
        with autocast(device, amp):
            logits = self(seq)
        n = self.config.num_tokens
        log_probs = logits[:, -n:].float().log_softmax(-1)
        return log_probs.gather(-1, seq[:, -n:, None]).squeeze(-1).sum(1)

    @torch.no_grad()
    def sample(self, cond_tokens: torch.Tensor, generator: Generators = None,
               temperature: float = 1.0, top_k: int | None = None,
               amp: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw the next frame code by code: ``(tokens (B, grid, grid), log_prob (B,))``.

        ``log_prob`` is the model's log-probability of the drawn frame (nats per frame, at
        temperature 1 and without top-k, whatever was used to draw). Keys and values of earlier
        positions are cached, so each new code costs one single-position pass. Deterministic
        given ``generator`` (one for the batch, or one per window).
        """
        device = self.head.weight.device
        cond_tokens = cond_tokens.to(device)
        self.check_tokens(cond_tokens, "cond_tokens", self.config.cond_frames)
        b, n = cond_tokens.shape[0], self.config.num_tokens
        begin = torch.full((b, 1), self.begin_index, dtype=torch.long, device=device)
        inputs = torch.cat([begin, cond_tokens.flatten(1)], 1)
        past: list[KeyValue | None] = [None] * len(self.layers)
        out, total, start = [], torch.zeros(b, device=device), 0
        for _ in range(n):
            with autocast(device, amp):
                x = self._embed(inputs, start)
                for i, layer in enumerate(self.layers):
                    x, past[i] = layer(x, past[i])
                logits = self.head(self.norm(x[:, -1]))
            log_probs = logits.float().log_softmax(-1)
            draw_from = log_probs / temperature
            if top_k is not None:
                kth = draw_from.topk(top_k, -1).values[:, -1:]
                draw_from = draw_from.masked_fill(draw_from < kth, float("-inf"))
            code = sample_categorical(draw_from.log_softmax(-1), generator)
            total += log_probs.gather(-1, code[:, None]).squeeze(-1)
            out.append(code)
            start += inputs.shape[1]
            inputs = code[:, None]
        return torch.stack(out, 1).view(b, self.config.grid, self.config.grid), total


def build(preset: Literal["tiny", "small", "paper"] | str = "small", **overrides) -> VideoGPT:
    """A fresh model from a named preset with optional field overrides."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
    return VideoGPT(dataclasses.replace(PRESETS[preset], **overrides))
