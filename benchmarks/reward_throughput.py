"""Reward-model speed: frames/s of every reward kind on one 100-frame episode, one JSON line per variant.

    python benchmarks/reward_throughput.py [--presets tiny small paper] [--frames 100] [--repeats 3]
        [--device auto] [--threads 1 2] [--precisions fp32 bf16] [--models NAME=DIR ...]

For each preset (the codec, VQ-Diffusion and VideoGPT of that name together, freshly initialised:
speed does not depend on the weights) and each precision (fp32, bf16 autocast), the time of
``model.rewards(frames)`` on one episode of ``--frames`` frames:

* ``diffusion/entropy``: the paper's reward (11 denoising passes per frame), with and without
  the condition cache;
* ``diffusion/likelihood``: the bound of the observed frame (11 passes, cache on);
* ``viper``: VideoGPT log-likelihood of the observed frame;
* ``amp``, ``rnd``: their networks at the same preset (float32 only: they have no bf16 switch);
  ``motion``: the pixel-change reference.

Precisions: fp32, and bf16 where it is fast here (``--precisions`` to choose). Every line carries
``ratio``: frames/s relative to the same preset and kind at the first thread count and precision
(with cache for the entropy reward), measured in this run. For the ``paper`` preset the lines also carry the
FLOPs per frame (counted by ``torch.utils.flop_counter`` on the same episode) and the fraction of
this machine's matmul peak they reach, where the peak is a large square matrix product measured
in the same run at the same precision (``{"kind": "matmul_peak"}`` lines). Timings are medians
over ``--repeats`` after one warm-up.

``--allocator both`` runs everything twice, in two child processes: with glibc's default
allocator settings and with the freed-memory tuning the video rewards apply on CPUs
(``diffusion_reward.utils.allocator``); every line carries ``allocator``.

``--models`` also times saved reward models (``fit-reward``'s directories, e.g. two trained
architectures side by side) on the same episode, at their own precision setting, one line each
(``"kind": "saved"``); ``--presets`` with no value times only those.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from diffusion_reward.models.codec.vqgan import PRESETS as CODEC_PRESETS, VQGAN
from diffusion_reward.models.video import videogpt, vqdiffusion
from diffusion_reward.rewards import load_reward_model
from diffusion_reward.rewards.amp import PRESETS as AMP_PRESETS, AMPReward
from diffusion_reward.rewards.diffusion import DiffusionReward, DiffusionRewardConfig
from diffusion_reward.rewards.motion import MotionReward
from diffusion_reward.rewards.rnd import PRESETS as RND_PRESETS, RNDReward
from diffusion_reward.rewards.viper import ViperConfig, ViperReward
from diffusion_reward.utils.allocator import keep_freed_memory
from diffusion_reward.utils.device import bf16_is_fast, resolve_device
from timing import median_seconds


def matmul_peak(device: torch.device, bf16: bool, size: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of a ``size`` x ``size`` matrix product at the given precision (the machine's practical peak)."""
    dtype = torch.bfloat16 if bf16 else torch.float32
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)

    def product() -> None:
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()

    return 2 * size ** 3 / median_seconds(product, repeats)


def count_flops(model, frames: np.ndarray) -> int:
    with FlopCounterMode(display=False) as counter:
        model.rewards(frames, raw=True, resize=True)
    return int(counter.get_total_flops())


def reward_models(preset: str, bf16: bool, device: torch.device):
    """(kind, variant, model) for every reward kind at ``preset``."""
    torch.manual_seed(0)
    codec = VQGAN(CODEC_PRESETS[preset])
    codes = codec.config.codebook_size
    diffusion = vqdiffusion.build(preset, codebook_size=codes, grid=codec.config.token_grid)
    gpt = videogpt.build(preset, codebook_size=codes, grid=codec.config.token_grid)
    for variant, caches in (("entropy", (True, False)), ("likelihood", (True,))):
        for cache in caches:
            cfg = DiffusionRewardConfig(variant=variant, bf16=bf16, condition_cache=cache)
            yield "diffusion", variant, cache, DiffusionReward(codec, diffusion, cfg, device=device)
    yield "viper", "likelihood", None, ViperReward(codec, gpt, ViperConfig(bf16=bf16), device=device)
    if not bf16:  # AMP and RND have no bf16 switch
        yield "amp", "", None, AMPReward(AMP_PRESETS[preset], device=device)
        yield "rnd", "", None, RNDReward(RND_PRESETS[preset], device=device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="*", default=["tiny", "small", "paper"],
                        help="model presets (codec, VQ-Diffusion, VideoGPT, AMP and RND of the same name)")
    parser.add_argument("--frames", type=int, default=100, help="frames in the scored episode")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per variant (after one warm-up)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, nargs="+", default=None,
                        help="PyTorch CPU thread counts to compare, e.g. 1 2 (default: PyTorch's choice only)")
    parser.add_argument("--precisions", nargs="+", choices=["fp32", "bf16"], default=None,
                        help="precisions to compare (default: fp32, and bf16 where this machine runs bf16 matrix "
                             "products faster than fp32; CPUs without bf16 units emulate it ~100x slower)")
    parser.add_argument("--models", nargs="+", default=[], metavar="NAME=DIR",
                        help="saved reward models to time as well, e.g. depth6=runs/reward depth2=runs/reward-d2")
    parser.add_argument("--allocator", choices=["tuned", "default", "both"], default="tuned",
                        help="glibc allocator settings: 'tuned' (what the video rewards apply on CPUs: freed "
                             "memory kept), 'default' (glibc's), or 'both' (one child process each, same run)")
    args = parser.parse_args()
    if args.allocator == "both":
        for choice in ("default", "tuned"):
            argv = [a for a in sys.argv[1:] if a not in ("--allocator", "both", "--allocator=both")]
            argv += ["--allocator", choice]
            subprocess.run([sys.executable, sys.argv[0], *argv], check=True,
                           env={**os.environ, "DIFFUSION_REWARD_MALLOC_TUNING": "1" if choice == "tuned" else "0"})
        return
    if args.allocator == "default":
        os.environ["DIFFUSION_REWARD_MALLOC_TUNING"] = "0"
    allocator = "keep freed" if keep_freed_memory() else "glibc default"
    device = resolve_device(args.device)
    thread_counts = args.threads or [torch.get_num_threads()]
    precisions = args.precisions or (["fp32", "bf16"] if bf16_is_fast(device.type) else ["fp32"])
    frames = np.random.default_rng(0).integers(0, 256, (args.frames, 64, 64, 3), dtype=np.uint8)
    base: dict[tuple[str, str, str], float] = {}  # the first thread count and precision of each model
    saved = {}  # --models, loaded once for every thread count
    for spec in args.models:
        name, _, directory = spec.rpartition("=")
        saved[name or directory] = (directory, load_reward_model(directory, device=device))
    for threads in thread_counts:
        torch.set_num_threads(threads)
        common = {"benchmark": "reward_throughput", "device": str(device), "threads": threads,
                  "torch": torch.__version__, "frames": args.frames, "allocator": allocator}
        run_thread_count(args, device, precisions, frames, common, base, saved)


def run_thread_count(args: argparse.Namespace, device: torch.device, precisions: list[str], frames: np.ndarray,
                     common: dict, base: dict[tuple[str, str, str], float], saved: dict) -> None:

    peaks = {}
    if "paper" in args.presets:
        for precision in precisions:
            peaks[precision] = matmul_peak(device, precision == "bf16")
            print(json.dumps({**common, "kind": "matmul_peak", "precision": precision,
                              "flops_per_s": peaks[precision]}), flush=True)

    motion = MotionReward()
    seconds = median_seconds(lambda: motion.rewards(frames), args.repeats)
    print(json.dumps({**common, "kind": "motion", "frames_per_s": args.frames / seconds}), flush=True)

    for name, (directory, model) in saved.items():
        seconds = median_seconds(lambda: model.rewards(frames, raw=True, resize=True), args.repeats)
        precision = "bf16" if getattr(model, "bf16", False) else "fp32"
        print(json.dumps({**common, "kind": "saved", "name": name, "directory": directory,
                          "reward_kind": model.kind, "precision": precision, "frames_per_s": args.frames / seconds,
                          "seconds": seconds}), flush=True)

    for preset in args.presets:
        flops: dict[tuple[str, str, bool | None], int] = {}
        for precision in precisions:
            bf16 = precision == "bf16"
            for kind, variant, cache, model in reward_models(preset, bf16, device):
                seconds = median_seconds(lambda: model.rewards(frames, raw=True, resize=True), args.repeats)
                rate = args.frames / seconds
                base.setdefault((preset, kind, variant), rate)
                line = {**common, "kind": kind, "variant": variant, "preset": preset, "precision": precision,
                        "frames_per_s": rate, "seconds": seconds, "ratio": rate / base[(preset, kind, variant)]}
                if cache is not None:
                    line["condition_cache"] = cache
                if preset == "paper":
                    key = (kind, variant, cache)
                    if key not in flops:
                        flops[key] = count_flops(model, frames)
                    per_frame = flops[key] / args.frames
                    line.update(flops_per_frame=per_frame, flops_per_s=per_frame * rate,
                                fraction_of_matmul_peak=per_frame * rate / peaks[precision])
                print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
