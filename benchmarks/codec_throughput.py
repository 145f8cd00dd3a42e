"""Codec throughput: training images/s and encoding frames/s per preset, fp32 vs bf16.

Every variant runs in the same process, one after another, on random frames, and prints one
JSON line per measurement::

    {"benchmark": "codec_throughput", "preset": "small", "precision": "bf16", "channels_last": true,
     "mode": "train_gan", "batch": 32, "images_per_s": 61.2, "threads": 2, "load_avg_1m": 0.4, ...}

Modes: ``train`` (a codec step: reconstruction + codebook losses, backward, Adam), ``train_gan``
(the same plus the adaptive-weight GAN term and a discriminator step, as after ``disc_start``)
and ``encode`` (frames -> token indices, no gradients). ``load_avg_1m`` is the machine's load
when the line was written: on a shared machine, compare variants measured at similar load.

    python benchmarks/codec_throughput.py                       # tiny, small, paper; fp32 and bf16
    python benchmarks/codec_throughput.py --presets small --seconds 20 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import torch

from diffusion_reward.models.codec import PRESETS, VQGAN
from diffusion_reward.train.codec import CodecTask, CodecTrainConfig
from diffusion_reward.train.trainer import Trainer, TrainerConfig
from diffusion_reward.utils.device import autocast, resolve_device


def _timed(fn, seconds: float, min_reps: int, warmup: int = 1) -> float:
    """Seconds per call of ``fn``: the median over repetitions filling about ``seconds``."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < seconds:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        if len(times) >= 200:
            break
    return sorted(times)[len(times) // 2]


def measure(preset: str, bf16: bool, channels_last: bool, batch: int, encode_batch: int, device: str,
            seconds: float, min_reps: int) -> list[dict]:
    torch.manual_seed(0)
    model = VQGAN(PRESETS[preset])
    rows = []
    for mode in ("train", "train_gan"):
        cfg = CodecTrainConfig(disc_start=0 if mode == "train_gan" else 10 ** 9)
        task = CodecTask(model, cfg)
        with tempfile.TemporaryDirectory() as tmp:
            trainer = Trainer(task, [0], TrainerConfig(run_dir=tmp, device=device, bf16=bf16,
                                                       channels_last=channels_last, progress=False,
                                                       tensorboard=False))
            trainer.setup()  # the benchmark drives training steps itself, without a run directory
            x = torch.rand(batch, 3, 64, 64, device=trainer.device) * 2 - 1
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            task.modules["model"].train()

            def step() -> None:
                task.training_step(trainer, x)
                if trainer.device.type == "cuda":
                    torch.cuda.synchronize()

            per = _timed(step, seconds, min_reps)
        rows.append({"mode": mode, "batch": batch, "images_per_s": batch / per, "seconds_per_step": per})
    model.eval()
    x = torch.rand(encode_batch, 3, 64, 64, device=model.device) * 2 - 1
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    def encode() -> None:
        with torch.no_grad(), autocast(model.device, bf16):
            model.encode_to_indices(x)
        if model.device.type == "cuda":
            torch.cuda.synchronize()

    per = _timed(encode, seconds, min_reps)
    rows.append({"mode": "encode", "batch": encode_batch, "images_per_s": encode_batch / per, "seconds_per_step": per})
    base = {"benchmark": "codec_throughput", "preset": preset, "precision": "bf16" if bf16 else "fp32",
            "channels_last": channels_last, "parameters": model.num_parameters(), "device": str(resolve_device(device)),
            "threads": torch.get_num_threads()}
    return [{**base, **r, "load_avg_1m": round(os.getloadavg()[0], 2)} for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "small", "paper"], choices=sorted(PRESETS),
                        help="codec presets to measure (default: all)")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"],
                        help="precisions to compare (default: both)")
    parser.add_argument("--channels-last", nargs="+", default=["on"], choices=["on", "off"],
                        help="memory formats to compare (default: on, the codec's default)")
    parser.add_argument("--batch", type=int, default=32, help="training batch size (default: 32)")
    parser.add_argument("--paper-batch", type=int, default=8,
                        help="training batch size for the paper preset, slow on CPUs (default: 8)")
    parser.add_argument("--encode-batch", type=int, default=256, help="encoding batch size (default: 256)")
    parser.add_argument("--seconds", type=float, default=10.0, help="time per measurement (default: 10)")
    parser.add_argument("--min-reps", type=int, default=3, help="at least this many timed repetitions (default: 3)")
    parser.add_argument("--device", default="auto", help="auto|cpu|cuda (default: auto)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: PyTorch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for preset in args.presets:
        batch = args.paper_batch if preset == "paper" else args.batch
        encode_batch = min(args.encode_batch, 64) if preset == "paper" else args.encode_batch
        for cl in args.channels_last:
            for precision in args.precisions:
                for row in measure(preset, precision == "bf16", cl == "on", batch, encode_batch, args.device,
                                   args.seconds, args.min_reps):
                    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
