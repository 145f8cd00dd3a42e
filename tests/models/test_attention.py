"""The attention layer: the batched bf16 inference path computes the same function as PyTorch's kernel."""

import pytest
import torch
import torch.nn.functional as F

from diffusion_reward.models.video.layers import Attention, batched_attention


@pytest.mark.parametrize("keys", [16, 32])
@pytest.mark.parametrize("with_bias", [False, True])
def test_batched_attention_equals_scaled_dot_product_attention(keys, with_bias):
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(3, 4, 16, 8, generator=gen)
    k, v = torch.randn(3, 4, keys, 8, generator=gen), torch.randn(3, 4, keys, 8, generator=gen)
    bias = torch.randn(1, 4, 16, keys, generator=gen) if with_bias else None
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    torch.testing.assert_close(batched_attention(q, k, v, bias), want, rtol=1e-5, atol=1e-5)


def test_bf16_inference_path_matches_the_training_path():
    """Without gradients, bf16 attention on CPU takes the batched path; with them, PyTorch's math kernel."""
    torch.manual_seed(0)
    layer = Attention(32, heads=4, kv_width=16)
    x, context = torch.randn(2, 10, 32), torch.randn(2, 20, 16)
    bias = torch.randn(1, 4, 10, 20)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        kv = layer.keys_values(context)
        with torch.no_grad():
            inference = layer(x, kv=kv, bias=bias)
        training = layer(x, kv=kv, bias=bias)
    fp32 = layer(x, kv=layer.keys_values(context), bias=bias)
    assert inference.dtype == torch.bfloat16
    torch.testing.assert_close(inference.float(), training.float().detach(), rtol=0.03, atol=0.03)
    torch.testing.assert_close(inference.float(), fp32.detach(), rtol=0.05, atol=0.05)
