"""DrQ-v2 update and replay-sampling speed: one JSON line per variant, variants in the same run.

    python benchmarks/drqv2_update.py [--batch-size 256] [--updates 10] [--device auto]

Variants: pixels (3x64x64) vs state (39-dim, MetaWorld's size) observations, fp32 vs bf16
autocast. Each line gives updates per second (after warm-up) and the ratio to pixels-fp32.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np
import torch

from diffusion_reward.rl import DrQV2Agent, DrQV2Config, ReplayBuffer
from diffusion_reward.utils.device import resolve_device

SHAPES = {"pixels": (3, 64, 64), "state": (39,)}
ACTION_DIM = 4


def filled_replay(obs_type: str, episodes: int, steps: int, rng: np.random.Generator) -> ReplayBuffer:
    buffer = ReplayBuffer(capacity=episodes * steps)
    for _ in range(episodes):
        shape = (steps + 1, *SHAPES[obs_type])
        obs = (rng.integers(0, 256, shape, dtype=np.uint8) if obs_type == "pixels"
               else rng.normal(size=shape).astype(np.float32))
        reward = rng.random(steps).astype(np.float32)
        buffer.add(obs, rng.uniform(-1, 1, (steps, ACTION_DIM)), reward, components={"sparse": reward})
    return buffer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=256, help="transitions per update")
    parser.add_argument("--updates", type=int, default=10, help="timed updates per variant (after 2 warm-up)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="PyTorch CPU threads (default: PyTorch's choice)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    baseline = None
    for obs_type in ("pixels", "state"):
        buffer = filled_replay(obs_type, episodes=20, steps=100, rng=rng)
        start = time.perf_counter()
        for _ in range(args.updates):
            buffer.sample(args.batch_size, rng)
        sample_s = (time.perf_counter() - start) / args.updates
        for bf16 in (False, True):
            torch.manual_seed(0)
            cfg = dataclasses.replace(DrQV2Config(obs_type=obs_type, batch_size=args.batch_size, bf16=bf16),
                                      stddev_schedule_steps=1000)
            agent = DrQV2Agent(SHAPES[obs_type], ACTION_DIM, cfg, device)
            batches = [buffer.sample(args.batch_size, rng, device=device) for _ in range(args.updates + 2)]
            for batch in batches[:2]:
                agent.update(batch, step=5000)
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for batch in batches[2:]:
                agent.update(batch, step=5000)
            if device.type == "cuda":
                torch.cuda.synchronize()
            rate = args.updates / (time.perf_counter() - start)
            baseline = baseline or rate
            print(json.dumps({"benchmark": "drqv2_update", "obs_type": obs_type, "bf16": bf16,
                              "batch_size": args.batch_size, "device": str(device),
                              "threads": torch.get_num_threads(), "updates_per_s": round(rate, 3),
                              "ratio_to_pixels_fp32": round(rate / baseline, 3),
                              "sample_ms": round(1000 * sample_s, 3)}), flush=True)


if __name__ == "__main__":
    main()
