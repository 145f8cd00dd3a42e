"""The conditional VQ-Diffusion network: predicts a frame's codes from noisy codes and previous frames.

Input: the ``N = grid * grid`` (64) codes of the next frame at diffusion time ``t``, each in
``{0..K-1}`` or the mask ``K``; and the codes of the ``k`` previous frames (the condition).
Output: logits over the ``K`` codes of the clean frame, per position.

Network. The condition's codes get trainable code, position and frame-index embeddings and
pass through a small transformer encoder (the reference release froze this embedding and gave
it no position or frame information; we do neither). The content stream is a stack of blocks,
each: self-attention over the 64 content tokens, cross-attention to the encoded condition,
and a convolutional MLP (3x3 convolutions on the 8x8 grid, hidden ``mlp_ratio`` x width, or the
cheaper 1x1 -> depthwise 3x3 -> 1x1 of ``mlp_conv="separable"``); the
time enters the two attention sublayers through adaptive LayerNorm. The cross-attention logits
get a learned bias per (head, condition frame, row offset, column offset), zero at the start:
most codes of the next frame repeat the code at the same place one frame earlier, and this lets
the network find "the same place" directly instead of through two unrelated position tables
(``relative_bias=False`` removes it).

Inference. The condition's cross-attention keys and values depend only on the condition, so
:meth:`VQDiffusion.encode_condition` computes them once per window and every denoising step
reuses them (exactly: the same tensors, not an approximation). Many windows go through as one
batch; ``amp=True`` runs the network in bf16 (autocast on a GPU; on a CPU a cached copy with bf16
weights, which skips autocast's per-call casts), the diffusion arithmetic staying fp32.

The diffusion process itself (schedule, posteriors, bound, sampler) lives in
:mod:`diffusion_reward.models.video.schedule`; all bounds are in nats per frame.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from diffusion_reward.config import option, retired
from diffusion_reward.models.video.artefact import VideoModelArtefact
from diffusion_reward.models.video.layers import Attention, EncoderLayer, KeyValue, init_weights
from diffusion_reward.models.video.schedule import Generators, MaskReplaceDiffusion, TimestepSampler, diffusion_loss
from diffusion_reward.utils.device import autocast


@dataclasses.dataclass(frozen=True)
class VQDiffusionConfig:
    """Architecture and diffusion settings of a conditional VQ-Diffusion model."""

    codebook_size: int = option(1024, "K, the codec's number of codes (the mask token is index K)")
    grid: int = option(8, "codes per side of one frame's token grid (8 for 64x64 frames)")
    cond_frames: int = option(2, "k, the number of previous frames the next frame is conditioned on")
    frame_skip: int = option(1, "frames between consecutive frames of a window (1: adjacent frames)")
    sticky_codes: bool = option(False, "a token cell whose pixels equal those of the window's previous frame keeps "
                                       "that frame's code, in training and reward windows alike: codes change only "
                                       "where the picture did (train-codec's token_flicker measures the rest)")
    width: int = option(128, "width of the content transformer")
    depth: int = option(16, "number of content blocks (self-attention, cross-attention, conv MLP)")
    heads: int = option(16, "attention heads of the content blocks")
    mlp_ratio: int = option(2, "hidden channels of the conv MLP, as a multiple of the width")
    mlp_conv: Literal["full", "separable"] = option(
        "full", "conv MLP: 'full' 3x3 convolutions in and out (the paper's), or 'separable' (1x1 in, depthwise "
                "3x3, 1x1 out: the same 3x3 neighbourhood at ~1/8 of the compute)")
    cond_width: int = option(512, "width of the condition encoder (the cross-attention keys/values come from it)")
    cond_depth: int = option(1, "transformer layers of the condition encoder")
    cond_heads: int = option(8, "attention heads of the condition encoder")
    relative_bias: bool = option(True, "learned relative-position bias (per head and condition frame) on the "
                                       "cross-attention logits, so a content token finds its place in the "
                                       "previous frames from the start")
    num_steps: int = option(100, "diffusion steps T")
    keep_start: float = option(0.99999, "cumulative keep probability at t = 0")
    keep_end: float = option(0.000009, "cumulative keep probability at t = T-1")
    mask_start: float = option(0.000009, "cumulative mask probability at t = 0")
    mask_end: float = option(0.99999, "cumulative mask probability at t = T-1")
    aux_weight: float = option(1e-3, "weight of the auxiliary x0 cross-entropy loss")
    adaptive_aux: bool = option(True, "scale the auxiliary loss by (2 - t/T): more weight at low noise")
    importance_sampling: bool = option(True, "sample training times by the running loss (else uniformly)")
    RETIRED: ClassVar[dict[str, tuple[Any, str]]] = {
        "copy_previous": retired(False, "docs/experiments/reach-diagnosis.md"),
        "dropout": retired(0.0, "docs/experiments/reach-diagnosis.md"),
    }

    @property
    def num_tokens(self) -> int:
        return self.grid * self.grid

    def __post_init__(self) -> None:
        for name in ("codebook_size", "grid", "cond_frames", "frame_skip", "width", "depth", "heads",
                     "mlp_ratio", "cond_width", "cond_depth", "cond_heads", "num_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"VQDiffusionConfig.{name} must be >= 1, got {getattr(self, name)}")


PRESETS: dict[str, VQDiffusionConfig] = {
    "tiny": VQDiffusionConfig(width=32, depth=2, heads=2, cond_width=32, cond_depth=1, cond_heads=2),
    # 2 blocks, 2 heads of width 64, a separable convolutional MLP, sticky codes: what made it train and score
    # fast on a CPU at no loss of reward quality (docs/experiments/preset-choices.md)
    "small": VQDiffusionConfig(width=128, depth=2, heads=2, mlp_conv="separable", cond_width=128, cond_depth=1,
                               cond_heads=2, sticky_codes=True),
    "paper": VQDiffusionConfig(),
}


class AdaLayerNorm(nn.Module):
    """LayerNorm whose scale and shift are functions of the diffusion time's embedding."""

    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False)
        self.modulation = nn.Linear(width, 2 * width)

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.modulation(F.silu(time_emb)).unsqueeze(1).chunk(2, dim=-1)
        return self.norm(x) * (1 + scale) + shift


class ConvMLP(nn.Module):
    """Convolutions over the token grid that mix each token with its spatial neighbours: two 3x3
    convolutions (``full``), or 1x1 -> depthwise 3x3 -> 1x1 (``separable``)."""

    def __init__(self, width: int, ratio: int, grid: int, kind: str = "full"):
        super().__init__()
        self.grid = grid
        hidden = ratio * width
        if kind == "full":
            self.conv1 = nn.Conv2d(width, hidden, 3, padding=1)
            self.depthwise = None
            self.conv2 = nn.Conv2d(hidden, width, 3, padding=1)
        elif kind == "separable":
            self.conv1 = nn.Conv2d(width, hidden, 1)
            self.depthwise = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
            self.conv2 = nn.Conv2d(hidden, width, 1)
        else:
            raise ValueError(f"unknown conv MLP {kind!r}: expected 'full' or 'separable'")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        g = self.grid

        def as_grid(t: torch.Tensor) -> torch.Tensor:  # (B, N, C) -> (B, C, g, g), channels-last: no copy
            return t.view(b, g, g, -1).permute(0, 3, 1, 2)

        def as_tokens(t: torch.Tensor) -> torch.Tensor:  # back; a view when the conv kept channels-last
            return t.permute(0, 2, 3, 1).reshape(b, n, -1)

        # Exact GELU: 4x faster than the tanh approximation on CPU (measured), equal within bf16
        # rounding. The token stream is already channels-last; the depthwise convolution runs ~9x
        # faster on it than on a channels-first copy (bf16, CPU), and the 1x1 convolutions are linear layers.
        if self.depthwise is None:
            return as_tokens(self.conv2(F.gelu(self.conv1(as_grid(x)))))
        h = as_tokens(self.depthwise(as_grid(F.linear(x, self.conv1.weight.flatten(1), self.conv1.bias))))
        return F.linear(F.gelu(h), self.conv2.weight.flatten(1), self.conv2.bias)


class RelativeBias(nn.Module):
    """Additive cross-attention logits indexed by (head, condition frame, row offset, column offset)
    between a content token and a condition token; zero at initialisation."""

    def __init__(self, heads: int, frames: int, grid: int):
        super().__init__()
        self.frames = frames
        span = 2 * grid - 1
        self.table = nn.Parameter(torch.zeros(heads, frames, span * span))
        rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
        rows, cols = rows.flatten(), cols.flatten()
        offset = (rows[:, None] - rows[None, :] + grid - 1) * span + (cols[:, None] - cols[None, :] + grid - 1)
        self.register_buffer("offset", offset, persistent=False)  # (N content, N condition)

    def forward(self) -> torch.Tensor:
        heads, n = self.table.shape[0], self.offset.shape[0]
        bias = self.table[:, :, self.offset]  # (heads, frames, N, N)
        return bias.permute(0, 2, 1, 3).reshape(1, heads, n, self.frames * n)


class ContentBlock(nn.Module):
    """Self-attention, cross-attention to the condition, conv MLP; time through adaptive LayerNorm."""

    def __init__(self, cfg: VQDiffusionConfig):
        super().__init__()
        self.relative_bias = RelativeBias(cfg.heads, cfg.cond_frames, cfg.grid) if cfg.relative_bias else None
        self.norm_self = AdaLayerNorm(cfg.width)
        self.self_attn = Attention(cfg.width, cfg.heads)
        self.norm_cross = AdaLayerNorm(cfg.width)
        self.cross_attn = Attention(cfg.width, cfg.heads, kv_width=cfg.cond_width)
        self.norm_mlp = nn.LayerNorm(cfg.width)
        self.mlp = ConvMLP(cfg.width, cfg.mlp_ratio, cfg.grid, cfg.mlp_conv)

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor, cond_kv: KeyValue) -> torch.Tensor:
        x = x + self.self_attn(self.norm_self(x, time_emb))
        bias = self.relative_bias() if self.relative_bias is not None else None
        x = x + self.cross_attn(self.norm_cross(x, time_emb), kv=cond_kv, bias=bias)
        return x + self.mlp(self.norm_mlp(x))


class ConditionEncoder(nn.Module):
    """Codes of ``k`` frames -> ``(B, k * N, cond_width)`` features with code, position and frame embeddings."""

    def __init__(self, cfg: VQDiffusionConfig):
        super().__init__()
        self.code = nn.Embedding(cfg.codebook_size, cfg.cond_width)
        self.position = nn.Embedding(cfg.num_tokens, cfg.cond_width)
        self.frame = nn.Embedding(cfg.cond_frames, cfg.cond_width)
        self.layers = nn.ModuleList(EncoderLayer(cfg.cond_width, cfg.cond_heads) for _ in range(cfg.cond_depth))
        self.norm = nn.LayerNorm(cfg.cond_width)

    def forward(self, cond_tokens: torch.Tensor) -> torch.Tensor:
        b, k, h, w = cond_tokens.shape
        x = self.code(cond_tokens.reshape(b, k, h * w))
        x = x + self.position.weight[None, None] + self.frame.weight[None, :, None]
        x = x.reshape(b, k * h * w, -1)
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)


@dataclasses.dataclass
class ConditionCache:
    """The cross-attention keys and values of every block for a batch of conditions."""

    kv: list[KeyValue]

    @property
    def batch_size(self) -> int:
        return self.kv[0][0].shape[0]

    def repeat_interleave(self, repeats: int) -> "ConditionCache":
        """Each condition ``repeats`` times in a row (several samples per window without re-encoding)."""
        return ConditionCache([(k.repeat_interleave(repeats, 0), v.repeat_interleave(repeats, 0)) for k, v in self.kv])


class VQDiffusion(VideoModelArtefact):
    """Conditional discrete diffusion over a frame's codec tokens given previous frames' tokens.

    Shapes: condition codes ``(B, k, grid, grid)``; frame codes ``(B, grid, grid)``; both long
    in ``[0, K)``. See the module docstring for the architecture.
    """

    kind = "vqdiffusion"
    config_class = VQDiffusionConfig

    def __init__(self, config: VQDiffusionConfig):
        super().__init__(config)
        self.codec = None
        cfg = config
        self.diffusion = MaskReplaceDiffusion(cfg.codebook_size, cfg.num_steps, cfg.keep_start, cfg.keep_end,
                                              cfg.mask_start, cfg.mask_end)
        self.timestep_sampler = TimestepSampler(cfg.num_steps, importance=cfg.importance_sampling)
        self.condition = ConditionEncoder(cfg)
        self.code = nn.Embedding(cfg.codebook_size + 1, cfg.width)
        self.position = nn.Embedding(cfg.num_tokens, cfg.width)
        self.time = nn.Embedding(cfg.num_steps, cfg.width)
        self.blocks = nn.ModuleList(ContentBlock(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.width)
        self.head = nn.Linear(cfg.width, cfg.codebook_size)
        init_weights(self, cfg.depth)

    # ------------------------------------------------------------------ network
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

    def encode_condition(self, cond_tokens: torch.Tensor) -> ConditionCache:
        """Encode the condition once: every block's cross-attention keys and values."""
        self.check_tokens(cond_tokens, "cond_tokens", self.config.cond_frames)
        context = self.condition(cond_tokens)
        return ConditionCache([block.cross_attn.keys_values(context) for block in self.blocks])

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | ConditionCache) -> torch.Tensor:
        """Logits ``(B, N, K)`` of the clean codes given noisy codes ``x_t`` (B, N) in [0, K] at times
        ``t`` (B,) and the condition: its codes (B, k, grid, grid) or an :class:`ConditionCache`."""
        cache = cond if isinstance(cond, ConditionCache) else self.encode_condition(cond)
        positions = self.position.weight[: x_t.shape[1]]
        x = self.code(x_t) + positions
        time_emb = self.time(t)
        for block, kv in zip(self.blocks, cache.kv):
            x = block(x, time_emb, kv)
        return self.head(self.norm(x))

    def _inference_network(self, amp: bool) -> tuple["VQDiffusion", bool]:
        """The network to run inference with and whether to autocast it: with ``amp`` on a CPU, a
        copy whose network weights are bf16 (cached until a weight changes), run without autocast.

        Autocast keeps the residual stream in fp32 and casts every sublayer's input and weights to
        bf16 on each call; on a CPU those casts cost more than the matmuls at these sizes (measured
        with the small preset: the sampler 1.35 s -> 1.10 s for 64 windows). The diffusion
        arithmetic stays fp32 either way.
        """
        if not amp or self.head.weight.device.type != "cpu":
            return self, amp
        key = tuple((p.data_ptr(), p._version) for p in self.parameters())
        cached = self.__dict__.get("_bf16_copy")
        if cached is None or cached[0] != key:
            copy = VQDiffusion(self.config)
            copy.load_state_dict(self.state_dict())
            for part in (copy.condition, copy.code, copy.position, copy.time, copy.blocks, copy.norm,
                         copy.head):
                if part is not None:
                    part.to(torch.bfloat16)
            copy.eval().requires_grad_(False)
            self.__dict__["_bf16_copy"] = cached = (key, copy)  # not a submodule: never saved or trained
        return cached[1], False

    def _predictor(self, cond: torch.Tensor | ConditionCache, amp: bool, normalize: bool = True):
        """``predict(x_t, t)`` for the diffusion process: fp32 log-probabilities, or with
        ``normalize=False`` the raw logits in the network's dtype (the sampler normalises them itself)."""
        device = self.head.weight.device

        def predict(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            with autocast(device, amp):
                logits = self(x_t, t, cond)
            return logits.float().log_softmax(-1) if normalize else logits

        return predict

    # ------------------------------------------------------------------ training
    def training_loss(self, cond_tokens: torch.Tensor, target_tokens: torch.Tensor,
                      generator: torch.Generator | None = None,
                      net: nn.Module | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The training objective on a batch of windows, in nats per token, and metrics.

        ``net`` is the module to call for the forward pass (a DistributedDataParallel wrapper of
        this model; default: the model itself). See :func:`schedule.diffusion_loss`.
        """
        self.check_tokens(cond_tokens, "cond_tokens", self.config.cond_frames)
        self.check_tokens(target_tokens, "target_tokens", None)
        net = self if net is None else net

        def predict(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return net(x_t, t, cond_tokens)

        return diffusion_loss(self.diffusion, predict, target_tokens.flatten(1), self.timestep_sampler, generator,
                              self.config.aux_weight, self.config.adaptive_aux)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def sample(self, cond_tokens: torch.Tensor, stride: int = 10, generator: Generators = None,
               gumbel: bool = True, amp: bool = False,
               use_cache: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample the next frame's codes and score the sample: ``(tokens (B, grid, grid), elbo (B,))``.

        Starts from all-mask at ``t = T-1`` and denoises with the given stride (``T-1,
        T-1-stride, ..., 0``: 11 network evaluations for T=100, stride 10), drawing ``x0`` with
        Gumbel noise (``gumbel=False``: argmax) and then the posterior. ``elbo`` is the model's
        variational lower bound of its own final sample, in **nats per frame**: the
        log-probability of the sample at the last step minus the KL terms along the chain. Its
        mean over samples estimates ``-H(next frame | condition)``, the entropy reward.
        Deterministic given ``generator``: one ``torch.Generator`` for the batch, or a sequence of
        one per window (then each window's draws come from its own generator, so its result does
        not depend on the rest of the batch up to floating-point rounding).
        ``use_cache=False`` re-encodes the condition at every step (same result, slower).
        """
        cond_tokens = cond_tokens.to(self.head.weight.device)
        net, amp = self._inference_network(amp)
        with autocast(cond_tokens.device, amp):
            cond = net.encode_condition(cond_tokens) if use_cache else cond_tokens
        self.check_tokens(cond_tokens, "cond_tokens", self.config.cond_frames)
        b, g = cond_tokens.shape[0], self.config.grid
        predict = net._predictor(cond, amp, normalize=False)
        tokens, elbo = self.diffusion.sample(predict, (b, g * g), cond_tokens.device, stride, generator, gumbel)
        return tokens.view(b, g, g), elbo

    @torch.no_grad()
    def log_likelihood_bound(self, cond_tokens: torch.Tensor, target_tokens: torch.Tensor, stride: int = 10,
                             generator: Generators = None, amp: bool = False,
                             use_cache: bool = True) -> torch.Tensor:
        """A lower bound on ``log p(target | condition)``, in **nats per frame**, shape (B,).

        The observed target codes (B, grid, grid) are forward-noised along the strided chain and
        the bound sums the reconstruction log-likelihood and the negative KL terms (one network
        evaluation per visited time; the condition is encoded once). The condition holds only
        the previous frames, never the target. One-sample estimate: deterministic given
        ``generator`` (one for the batch or one per window, as in :meth:`sample`); average
        several calls for a tighter estimate. ``use_cache=False`` re-encodes the condition at
        every evaluation (same result, slower).
        """
        device = self.head.weight.device
        cond_tokens, target_tokens = cond_tokens.to(device), target_tokens.to(device)
        self.check_tokens(target_tokens, "target_tokens", None)
        if target_tokens.shape[0] != cond_tokens.shape[0]:
            raise ValueError(f"{cond_tokens.shape[0]} conditions but {target_tokens.shape[0]} targets")
        net, amp = self._inference_network(amp)
        with autocast(device, amp):
            cond = net.encode_condition(cond_tokens) if use_cache else cond_tokens
        self.check_tokens(cond_tokens, "cond_tokens", self.config.cond_frames)
        return self.diffusion.bound(net._predictor(cond, amp), target_tokens.flatten(1), stride, generator)


def build(preset: Literal["tiny", "small", "paper"] | str = "small", **overrides) -> VQDiffusion:
    """A fresh model from a named preset with optional field overrides (``codebook_size=...``)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
    return VQDiffusion(dataclasses.replace(PRESETS[preset], **overrides))
