"""The VQ-GAN codec: a convolutional encoder, a vector quantizer and a decoder.

A 64x64 frame becomes an 8x8 grid of code indices (``encode_to_indices``) and back
(``decode_indices``). The ``paper`` preset is the reference network (channels 128-128-256-256,
2 residual blocks per level in encoder and decoder, self-attention after the residual blocks at
16x16 and in the middle blocks at 8x8, GroupNorm(32) + Swish, 1024 x 64 codebook: 20.5M parameters); ``small`` and ``tiny`` are narrower versions that
train in minutes on a CPU.

Frames enter as float ``(B, 3, H, W)`` in ``[-1, 1]``; :func:`frames_to_tensor` and
:func:`tensor_to_frames` convert from and to the ``uint8 (N, H, W, 3)`` frames used everywhere
else.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from diffusion_reward.config import option
from diffusion_reward.models import PretrainedModel
from diffusion_reward.models.codec.quantizer import Quantized, VectorQuantizer
from diffusion_reward.utils.frames import to_pixel_values, to_unit_range


@dataclasses.dataclass(frozen=True)
class CodecConfig:
    """The codec network: everything needed to rebuild it (saved in ``config.json``)."""

    image_size: int = option(64, "frame height and width in pixels (square frames)")
    channels: tuple[int, ...] = option((128, 128, 256, 256),
                                       "channels per resolution level; each level after the first halves the "
                                       "resolution, so the token grid is image_size / 2**(levels - 1)")
    num_res_blocks: int = option(2, "residual blocks per resolution level, in the encoder and in the decoder")
    attn_resolutions: tuple[int, ...] = option((16,), "feature-map sizes (in pixels) whose residual blocks are "
                                                      "followed by self-attention (0: none)")
    mid_attention: bool = option(True, "self-attention in the middle blocks, at the token resolution")
    norm_groups: int = option(32, "groups of each GroupNorm (must divide every channel count)")
    dropout: float = option(0.0, "dropout inside residual blocks")
    codebook_size: int = option(1024, "number of codes in the codebook")
    codebook_dim: int = option(64, "size of each code vector (latent channels at the token grid)")
    lookup_dim: int = option(0, "nearest-code search in a learned projection of this size (0: search the "
                                "codes directly); small values keep more of the codebook in use")
    l2_normalize: bool = option(True, "cosine codes: l2-normalise codes and encoder outputs before lookup")
    beta: float = option(0.25, "commitment loss weight")
    revive_after: int = option(200, "reset a code to a random encoder output once no token picked it for "
                                    "this many training steps (0: never)")

    def __post_init__(self) -> None:
        levels = len(self.channels)
        if levels < 1 or self.image_size % 2 ** (levels - 1):
            raise ValueError(f"image_size {self.image_size} is not divisible by 2**{levels - 1} "
                             f"({levels} levels in channels={self.channels})")
        bad = [c for c in self.channels + (self.codebook_dim,) if c % self.norm_groups]
        if bad:
            raise ValueError(f"norm_groups={self.norm_groups} must divide every channel count; it does not "
                             f"divide {bad}")

    @property
    def token_grid(self) -> int:
        """Side of the token grid (8 for 64x64 frames and four levels)."""
        return self.image_size // 2 ** (len(self.channels) - 1)

    @property
    def num_tokens(self) -> int:
        return self.token_grid ** 2


PRESETS: dict[str, CodecConfig] = {
    "tiny": CodecConfig(channels=(16, 16, 32, 32), num_res_blocks=1, attn_resolutions=(), mid_attention=False,
                        norm_groups=8, codebook_size=128, codebook_dim=16, lookup_dim=8, revive_after=20),
    # convolutional, 128 codes (the paper's has 1024): docs/experiments/preset-choices.md, codebook-size.md
    "small": CodecConfig(channels=(32, 32, 64, 128), num_res_blocks=1, attn_resolutions=(), mid_attention=False,
                         norm_groups=16, codebook_size=128, codebook_dim=64, lookup_dim=16, revive_after=25),
    "paper": CodecConfig(),
}


def frames_to_tensor(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``uint8 (N, H, W, 3)`` frames -> float32 ``(N, 3, H, W)`` in ``[-1, 1]``."""
    t = torch.as_tensor(frames)
    if t.dtype != torch.uint8 or t.ndim != 4 or t.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 (N, H, W, 3), got {t.dtype} {tuple(t.shape)}")
    return to_unit_range(t.permute(0, 3, 1, 2))


def tensor_to_frames(x: torch.Tensor) -> np.ndarray:
    """float ``(N, 3, H, W)`` in ``[-1, 1]`` -> ``uint8 (N, H, W, 3)`` (values clamped, rounded)."""
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected a float (N, 3, H, W) tensor, got {tuple(x.shape)}")
    x = to_pixel_values(x).to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def unchanged_cells(frames: np.ndarray, grid: int, skip: int = 1) -> np.ndarray:
    """``bool (T, grid, grid)``: whether each token cell of frame ``t`` is pixel-identical to the same
    cell of frame ``t - skip`` of ``uint8 (T, H, W, 3)`` frames (False for ``t < skip``)."""
    t, h, w, c = frames.shape
    cells = frames.reshape(t, grid, h // grid, grid, w // grid, c)
    same = np.zeros((t, grid, grid), dtype=bool)
    if t > skip:
        same[skip:] = (cells[skip:] == cells[:-skip]).all(axis=(2, 4, 5))
    return same


def keep_unchanged_codes(codes: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
    """Codes ``(B, L, g, g)`` of windows of ``L`` frames in which a cell marked in ``same[:, i]`` (its
    pixels equal those of frame ``i - 1`` of the window) keeps frame ``i - 1``'s code, so that codes
    change only where the picture did. Window by window: frame 0 of a window keeps its own codes."""
    out = codes.clone()
    same = same.to(torch.bool)
    for i in range(1, out.shape[1]):
        out[:, i] = torch.where(same[:, i], out[:, i - 1], out[:, i])
    return out


class GroupNorm(nn.GroupNorm):
    """GroupNorm computed in float32 whatever the autocast setting, returned in the input's dtype.

    Under CPU bf16 autocast a plain GroupNorm runs in bf16, whose backward pass is several times
    slower than float32's (it dominated the training step) and less precise.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return F.group_norm(x.float(), self.num_groups, self.weight, self.bias, self.eps).to(x.dtype)


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return GroupNorm(groups, channels, eps=1e-6)


class ResBlock(nn.Module):
    """GroupNorm -> Swish -> 3x3 conv, twice, with a 1x1 skip when the width changes."""

    def __init__(self, cin: int, cout: int, groups: int, dropout: float):
        super().__init__()
        self.norm1 = _norm(cin, groups)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = _norm(cout, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the pixels of a feature map, with a residual connection."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm = _norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)  # (b, hw, c)
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _mid(channels: int, cfg: CodecConfig) -> nn.Sequential:
    layers: list[nn.Module] = [ResBlock(channels, channels, cfg.norm_groups, cfg.dropout)]
    if cfg.mid_attention:
        layers.append(AttnBlock(channels, cfg.norm_groups))
    layers.append(ResBlock(channels, channels, cfg.norm_groups, cfg.dropout))
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """Frames ``(B, 3, H, W)`` -> latents ``(B, codebook_dim, h, w)``."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        ch, g = cfg.channels, cfg.norm_groups
        self.conv_in = nn.Conv2d(3, ch[0], 3, padding=1)
        blocks: list[nn.Module] = []
        res, cin = cfg.image_size, ch[0]
        for level, cout in enumerate(ch):
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResBlock(cin, cout, g, cfg.dropout))
                cin = cout
                if res in cfg.attn_resolutions:
                    blocks.append(AttnBlock(cin, g))
            if level < len(ch) - 1:
                blocks.append(Downsample(cin))
                res //= 2
        self.down = nn.Sequential(*blocks)
        self.mid = _mid(cin, cfg)
        self.norm_out = _norm(cin, g)
        self.conv_out = nn.Conv2d(cin, cfg.codebook_dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.down(self.conv_in(x)))
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """Quantized latents ``(B, codebook_dim, h, w)`` -> frames ``(B, 3, H, W)`` (unbounded floats)."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        ch, g = cfg.channels, cfg.norm_groups
        cin = ch[-1]
        res = cfg.token_grid
        self.conv_in = nn.Conv2d(cfg.codebook_dim, cin, 3, padding=1)
        self.mid = _mid(cin, cfg)
        blocks: list[nn.Module] = []
        for level in reversed(range(len(ch))):
            cout = ch[level]
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResBlock(cin, cout, g, cfg.dropout))
                cin = cout
                if res in cfg.attn_resolutions:
                    blocks.append(AttnBlock(cin, g))
            if level > 0:
                blocks.append(Upsample(cin))
                res *= 2
        self.up = nn.Sequential(*blocks)
        self.norm_out = _norm(cin, g)
        self.conv_out = nn.Conv2d(cin, 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.up(self.mid(self.conv_in(z)))
        return self.conv_out(F.silu(self.norm_out(h)))


class VQGAN(PretrainedModel):
    """Encoder + vector quantizer + decoder (the discriminator lives with the training code).

    ``model(x)`` returns ``(reconstruction, Quantized)`` for float frames in ``[-1, 1]``;
    ``encode_to_indices`` / ``decode_indices`` map frames to token grids and back.
    """

    config_class = CodecConfig
    kind = "vqgan"
    what = "codec"

    def __init__(self, config: CodecConfig):
        super().__init__(config)
        self.encoder = Encoder(config)
        self.quant_conv = nn.Conv2d(config.codebook_dim, config.codebook_dim, 1)
        self.quantizer = VectorQuantizer(config.codebook_size, config.codebook_dim, lookup_dim=config.lookup_dim,
                                         l2_normalize=config.l2_normalize, beta=config.beta,
                                         revive_after=config.revive_after)
        self.post_quant_conv = nn.Conv2d(config.codebook_dim, config.codebook_dim, 1)
        self.decoder = Decoder(config)

    @property
    def last_layer(self) -> torch.Tensor:
        """The decoder's output weight, where the adaptive GAN weight compares gradient norms."""
        return self.decoder.conv_out.weight

    @property
    def device(self) -> torch.device:
        return self.quantizer.codebook.device

    def _check(self, x: torch.Tensor) -> None:
        s, stride = self.config.image_size, self.config.image_size // self.config.token_grid
        h, w = x.shape[-2:] if x.ndim == 4 else (0, 0)
        if x.ndim != 4 or x.shape[1] != 3 or not (0 < h <= s and 0 < w <= s) or h % stride or w % stride:
            raise ValueError(f"expected frames as a float (B, 3, {s}, {s}) tensor (or training crops whose sides "
                             f"are multiples of {stride}), got {tuple(x.shape)}")

    def quantize(self, x: torch.Tensor) -> Quantized:
        """Encode frames (or training crops of them) and quantize the latents."""
        self._check(x)
        return self.quantizer(self.quant_conv(self.encoder(x)))

    def decode(self, z_q: torch.Tensor) -> torch.Tensor:
        """Quantized latents ``(B, codebook_dim, h, w)`` -> frames ``(B, 3, H, W)``."""
        return self.decoder(self.post_quant_conv(z_q))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Quantized]:
        q = self.quantize(x)
        return self.decode(q.z_q), q

    def encode_to_indices(self, frames: torch.Tensor) -> torch.Tensor:
        """Float frames ``(B, 3, H, W)`` in ``[-1, 1]`` -> code indices ``(B, h, w)`` (int64)."""
        return self.quantize(frames).indices

    def indices_to_latents(self, indices: torch.Tensor) -> torch.Tensor:
        """Code indices ``(B, h, w)`` -> quantized latents ``(B, codebook_dim, h, w)``."""
        if indices.ndim != 3:
            raise ValueError(f"expected indices (B, h, w), got {tuple(indices.shape)}")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.config.codebook_size):
            raise ValueError(f"indices must lie in [0, {self.config.codebook_size})")
        with torch.autocast(indices.device.type, enabled=False):
            return self.quantizer.embed(indices.long()).permute(0, 3, 1, 2).contiguous()

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Code indices ``(B, h, w)`` -> float frames ``(B, 3, H, W)`` (roughly ``[-1, 1]``, not clamped)."""
        return self.decode(self.indices_to_latents(indices))

    @torch.no_grad()
    def encode_frames(self, frames: np.ndarray, batch_size: int = 32) -> torch.Tensor:
        """``uint8 (N, H, W, 3)`` frames -> code indices ``(N, h, w)`` on the CPU, in batches.

        32 frames at a time: the small codec's full-resolution activations then stay in the CPU's
        caches (measured on 2 cores, float32: 2.6 ms per frame against 3.6 in batches of 64)."""
        out = []
        for i in range(0, len(frames), batch_size):
            x = frames_to_tensor(frames[i:i + batch_size]).to(self.device)
            out.append(self.encode_to_indices(x).cpu())
        g = self.config.token_grid
        return torch.cat(out) if out else torch.zeros((0, g, g), dtype=torch.int64)

    @torch.no_grad()
    def decode_to_frames(self, indices: torch.Tensor, batch_size: int = 256) -> np.ndarray:
        """Code indices ``(N, h, w)`` -> ``uint8 (N, H, W, 3)`` frames, in batches."""
        out = [tensor_to_frames(self.decode_indices(indices[i:i + batch_size].to(self.device)))
               for i in range(0, len(indices), batch_size)]
        s = self.config.image_size
        return np.concatenate(out) if out else np.zeros((0, s, s, 3), np.uint8)


def psnr(original: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """Per-frame PSNR in dB of float frames in ``[-1, 1]``, measured on the 8-bit values a viewer sees."""
    a, b = to_pixel_values(original), to_pixel_values(reconstruction)
    mse = (a - b).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return 10 * torch.log10(255.0 ** 2 / mse)

