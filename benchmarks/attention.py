"""Attention kernels at the video models' shapes: milliseconds per call, one JSON line per variant.

    python benchmarks/attention.py [--batch 64] [--width 128] [--heads 8 4 2 1] [--threads 1 2]
        [--precisions fp32 bf16] [--repeats 20]

For a batch of windows whose 64 content tokens attend to themselves (self-attention, 64 keys)
or to two condition frames (cross-attention, 128 keys, with the additive relative-position
bias), compares in the same run:

* ``sdpa``: ``torch.nn.functional.scaled_dot_product_attention`` with PyTorch's default CPU
  choice (the fused flash kernel);
* ``math``: the same call restricted to the unfused math backend;
* ``batched``: :func:`diffusion_reward.models.video.layers.batched_attention`, two batched
  matrix products around a softmax, which :class:`~diffusion_reward.models.video.layers.Attention`
  uses for bf16 inference on CPU.

Every line carries ``ratio``: the ``sdpa`` time divided by this variant's (above 1: faster than
the fused kernel) and ``max_abs_diff`` from the ``sdpa`` output. Inference only (no gradients).
"""

from __future__ import annotations

import argparse
import json
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from diffusion_reward.models.video.layers import batched_attention
from timing import median_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64, help="windows per call (the reward's batch size)")
    parser.add_argument("--width", type=int, default=128, help="model width, split over the heads")
    parser.add_argument("--tokens", type=int, default=64, help="query tokens (an 8x8 frame: 64)")
    parser.add_argument("--heads", type=int, nargs="+", default=[8, 4, 2, 1], help="head counts to compare")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="PyTorch CPU thread counts")
    parser.add_argument("--precisions", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"])
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per variant (after one warm-up)")
    args = parser.parse_args()
    gen = torch.Generator().manual_seed(0)
    for threads in args.threads:
        torch.set_num_threads(threads)
        for precision in args.precisions:
            dtype = torch.bfloat16 if precision == "bf16" else torch.float32
            for heads in args.heads:
                head_dim = args.width // heads
                for kind, keys in (("self", args.tokens), ("cross", 2 * args.tokens)):
                    def rand(*shape):
                        return torch.randn(*shape, generator=gen).to(dtype)

                    q = rand(args.batch, heads, args.tokens, head_dim)
                    k, v = rand(args.batch, heads, keys, head_dim), rand(args.batch, heads, keys, head_dim)
                    bias = rand(1, heads, args.tokens, keys) if kind == "cross" else None

                    def sdpa():
                        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)

                    def math():
                        with sdpa_kernel(SDPBackend.MATH):
                            return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)

                    def batched():
                        return batched_attention(q, k, v, bias)

                    with torch.no_grad():
                        reference = sdpa().float()
                        base = 1e3 * median_seconds(sdpa, args.repeats)
                        for name, fn in (("sdpa", sdpa), ("math", math), ("batched", batched)):
                            ms = base if name == "sdpa" else 1e3 * median_seconds(fn, args.repeats)
                            diff = float((fn().float() - reference).abs().max())
                            print(json.dumps({"benchmark": "attention", "torch": torch.__version__, "threads": threads,
                                              "precision": precision, "heads": heads, "head_dim": head_dim,
                                              "attention": kind, "keys": keys, "batch": args.batch,
                                              "variant": name, "ms": ms, "ratio": base / ms,
                                              "max_abs_diff": diff}), flush=True)


if __name__ == "__main__":
    main()
