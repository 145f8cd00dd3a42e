"""Transformer pieces shared by the video models: attention with reusable keys/values, MLPs, init."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

KeyValue = tuple[torch.Tensor, torch.Tensor]
"""Keys and values of one attention layer, each ``(B, heads, L, head_dim)``."""


class Attention(nn.Module):
    """Multi-head attention whose keys and values can be computed once and reused.

    ``keys_values(context)`` projects a context sequence (width ``kv_width``); ``forward(x, kv)``
    attends from ``x`` to them with ``scaled_dot_product_attention``. Self-attention passes
    ``kv=None`` and attends to ``x`` itself.
    """

    def __init__(self, width: int, heads: int, kv_width: int | None = None):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(kv_width or width, width)
        self.value = nn.Linear(kv_width or width, width)
        self.out = nn.Linear(width, width)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.heads, -1).transpose(1, 2)

    def keys_values(self, context: torch.Tensor) -> KeyValue:
        return self._split(self.key(context)), self._split(self.value(context))

    def forward(self, x: torch.Tensor, kv: KeyValue | None = None, causal: bool = False,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        """``bias``: additive attention logits broadcastable to ``(B, heads, L_x, L_kv)``."""
        k, v = self.keys_values(x) if kv is None else kv
        q = self._split(self.query(x))
        mask = None if bias is None else bias.to(q.dtype)
        k, v = k.to(q.dtype), v.to(q.dtype)
        if q.device.type == "cpu" and q.dtype == torch.bfloat16 and torch.is_grad_enabled():
            # PyTorch's fused CPU kernel has a slow bf16 backward (several times the unfused one)
            with sdpa_kernel(SDPBackend.MATH):
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
        elif q.device.type == "cpu" and q.dtype == torch.bfloat16 and not causal:
            y = batched_attention(q, k, v, mask)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
        b, _, n, _ = y.shape
        return self.out(y.transpose(1, 2).reshape(b, n, -1))


def batched_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + bias) v with two batched matrix products, for bf16 inference on CPU.

    The same function as ``scaled_dot_product_attention``. For the short sequences (64 tokens
    attending to 64 or 128) and small heads (8-64 channels) of the video models, PyTorch's fused
    CPU kernel is slower in bf16: measured 1.6-3x for self-attention and 1.0-3x for the
    cross-attention with its bias, the gain growing as the heads get fewer and wider
    (``benchmarks/attention.py``). In float32 the fused kernel is as fast or faster, so it stays.
    """
    b, h, n, d = q.shape
    length = k.shape[2]
    queries = (q * d ** -0.5).reshape(b * h, n, d)
    keys = k.reshape(b * h, length, d).transpose(1, 2)
    if bias is None:
        logits = torch.bmm(queries, keys)
    else:
        logits = torch.baddbmm(bias.expand(b, h, n, length).reshape(b * h, n, length), queries, keys)
    return torch.bmm(logits.softmax(-1), v.reshape(b * h, length, d)).view(b, h, n, d)


class MLP(nn.Module):
    """Position-wise two-layer perceptron with GELU."""

    def __init__(self, width: int, ratio: int = 4):
        super().__init__()
        self.fc = nn.Linear(width, ratio * width)
        self.out = nn.Linear(ratio * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.gelu(self.fc(x), approximate="tanh"))


class EncoderLayer(nn.Module):
    """Pre-norm transformer layer (bidirectional self-attention + MLP)."""

    def __init__(self, width: int, heads: int, mlp_ratio: int = 4):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = MLP(width, mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def init_weights(module: nn.Module, depth: int) -> None:
    """GPT-2 style initialisation: N(0, 0.02) for linear and embedding weights, zero biases, and
    residual output projections (``*.out``) scaled down by ``sqrt(2 * depth)``."""
    for name, m in module.named_modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            std = 0.02 / math.sqrt(2 * depth) if name.endswith(".out") else 0.02
            nn.init.normal_(m.weight, 0.0, std)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm) and m.elementwise_affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
