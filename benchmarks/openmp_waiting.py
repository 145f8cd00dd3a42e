"""How OpenMP's waiting policy changes PyTorch's speed, quiet and beside a busy process.

    python benchmarks/openmp_waiting.py [--seconds 8] [--policies passive spin:10000 spin:300000 active]

PyTorch's CPU kernels run on an OpenMP thread pool (GNU libgomp in the PyPI wheels). Between
parallel regions its threads either spin (fast to wake, but they burn the cores another process
needs) or sleep (free cores, but every wake-up costs tens of microseconds, which adds up over the
thousands of small kernels of a training step on small tensors). Policies compared, each in a
fresh child process because libgomp reads them at start-up:

* ``passive``: ``OMP_WAIT_POLICY=PASSIVE`` (sleep at once);
* ``spin:N``: ``GOMP_SPINCOUNT=N`` (spin N times, then sleep); libgomp's default is 300000;
* ``active``: ``OMP_WAIT_POLICY=ACTIVE`` (spin for a long time);
* ``threads:N``: N PyTorch threads (``OMP_NUM_THREADS``; waiting then matters little for N=1).

Workloads: a ``small`` codec training step on 32x32 crops in batches of 8 (its preset), and a
``small`` VQ-Diffusion training step in batches of 32. Each runs once on a quiet machine and
once beside a busy process (a single-threaded loop, as a renderer or a second run would be).
One JSON line per (policy, workload, contention) with steps/s and ``ratio`` to ``passive``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time

WORKER = r"""
import json, sys, time, dataclasses
import numpy as np, torch
workload, seconds = sys.argv[1], float(sys.argv[2])
if workload == "codec":
    from diffusion_reward.models.codec.vqgan import PRESETS, VQGAN
    from diffusion_reward.train.codec import CodecTask, TRAIN_PRESETS
    from diffusion_reward.train.data import FrameDataset
    from diffusion_reward.train.trainer import Trainer
    train, loop = TRAIN_PRESETS["small"]
    data = FrameDataset(np.random.default_rng(0).integers(0, 256, (64, 64, 64, 3), dtype=np.uint8),
                        crop=train.crop_size, align=8)
    task = CodecTask(VQGAN(PRESETS["small"]), train, total_steps=1000)
    trainer = Trainer(task, data, dataclasses.replace(loop, run_dir="unused", progress=False))
    trainer.setup()
    batch = data.get_batch(torch.arange(loop.batch_size))
    step = lambda: task.training_step(trainer, batch)
else:
    from diffusion_reward.models.video.vqdiffusion import build
    model = build("small")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    cond, target = torch.randint(0, 1024, (32, 2, 8, 8), generator=g), torch.randint(0, 1024, (32, 8, 8), generator=g)
    def step():
        loss, _ = model.training_loss(cond, target)
        opt.zero_grad(); loss.backward(); opt.step()
step(); step()
n, start = 0, time.perf_counter()
while time.perf_counter() - start < seconds:
    step(); n += 1
print(json.dumps({"steps_per_s": n / (time.perf_counter() - start)}))
"""


def busy_loop(stop) -> None:
    while not stop.is_set():
        sum(range(10_000))


def environment(policy: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    if policy in ("passive", "active"):
        env["OMP_WAIT_POLICY"] = policy.upper()
    elif policy.startswith("threads:"):
        env["OMP_NUM_THREADS"] = policy.split(":", 1)[1]
    elif policy.startswith("spin:"):
        env["GOMP_SPINCOUNT"] = policy.split(":", 1)[1]
    else:
        raise SystemExit(f"unknown policy {policy!r}: passive, active, spin:N or threads:N")
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policies", nargs="+", default=["passive", "spin:10000", "spin:300000", "active", "threads:1"],
                        help="waiting policies to compare (passive, active, spin:N, threads:N)")
    parser.add_argument("--workloads", nargs="+", default=["codec", "video"], choices=["codec", "video"],
                        help="training steps to time")
    parser.add_argument("--seconds", type=float, default=8.0, help="timed seconds per measurement")
    args = parser.parse_args()
    base: dict[tuple[str, bool], float] = {}
    for busy in (False, True):
        for workload in args.workloads:
            for policy in args.policies:
                stop = mp.Event()
                competitor = mp.Process(target=busy_loop, args=(stop,)) if busy else None
                if competitor:
                    competitor.start()
                try:
                    out = subprocess.run([sys.executable, "-c", WORKER, workload, str(args.seconds)],
                                         env=environment(policy), capture_output=True, text=True, check=True)
                finally:
                    if competitor:
                        stop.set()
                        competitor.join()
                rate = json.loads(out.stdout.strip().splitlines()[-1])["steps_per_s"]
                base.setdefault((workload, busy), rate)
                print(json.dumps({"benchmark": "openmp_waiting", "workload": workload, "policy": policy,
                                  "busy_neighbour": busy, "steps_per_s": rate,
                                  "ratio": rate / base[(workload, busy)], "cores": os.cpu_count(),
                                  "load_avg_1m": os.getloadavg()[0]}), flush=True)
                time.sleep(1)


if __name__ == "__main__":
    main()
