"""Video-model speed: training windows/s and denoising passes/s, one JSON line per variant.

    python benchmarks/video_model_throughput.py [--presets tiny small paper] [--batch-size 32]
        [--score-batch 64] [--repeats 3] [--device auto] [--threads N]
        [--variants base heads=2 depth=4,heads=2] [--kinds train sample bound] [--precisions fp32 bf16]

For each VQ-Diffusion preset, fp32 vs bf16 autocast:

* ``train``: optimisation steps (forward + backward + AdamW) on random windows of
  ``--batch-size``; reports windows/s;
* ``sample``: the entropy reward's work, sampling a next frame for ``--score-batch`` windows
  with stride 10 (11 network evaluations), with and without the condition cache; reports
  denoising passes/s (one pass = one network evaluation of one window) and windows/s;
* ``bound``: the likelihood variant (``log_likelihood_bound``, stride 10, cache on).

``--variants`` also measures each preset with some of its fields changed (``heads=2``,
``depth=4,heads=2``; ``base`` is the preset itself): architecture choices priced side by side,
with their parameter counts (speed does not depend on the weights, so they are freshly
initialised). Every line carries ``ratio``: throughput relative to the same preset's first
variant and precision of the same kind (with cache for ``sample``), all measured in this run.
Codebook 1024, 8x8 tokens, 2 condition frames: the paper's shapes. Timings are medians over
``--repeats`` after one warm-up.
"""

from __future__ import annotations

import argparse
import json

import torch

from diffusion_reward.models.video.vqdiffusion import build
from diffusion_reward.utils.device import autocast, resolve_device
from timing import median_seconds


def parse_variant(text: str) -> dict[str, int | str | bool]:
    """``"base"`` -> {}; ``"depth=4,heads=2"`` -> {"depth": 4, "heads": 2}."""
    if text == "base":
        return {}
    overrides: dict[str, int | str | bool] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"variant {text!r}: expected KEY=VALUE[,KEY=VALUE...] or 'base'")
        overrides[key] = int(value) if value.lstrip("-").isdigit() else {"true": True, "false": False}.get(value, value)
    return overrides


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["tiny", "small", "paper"], help="VQ-Diffusion presets")
    parser.add_argument("--variants", nargs="+", default=["base"],
                        help="field overrides of each preset to compare, e.g. base heads=2 depth=4,heads=2")
    kinds = ["train", "sample", "bound"]
    parser.add_argument("--kinds", nargs="+", choices=kinds, default=kinds, help="what to time")
    parser.add_argument("--precisions", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"])
    parser.add_argument("--batch-size", type=int, default=32, help="windows per training step")
    parser.add_argument("--score-batch", type=int, default=64, help="windows sampled/scored as one batch")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per variant (after one warm-up)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="PyTorch CPU threads (default: PyTorch's choice)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    train_cond = torch.randint(0, 1024, (args.batch_size, 2, 8, 8), generator=gen).to(device)
    train_target = torch.randint(0, 1024, (args.batch_size, 8, 8), generator=gen).to(device)
    score_cond = torch.randint(0, 1024, (args.score_batch, 2, 8, 8), generator=gen).to(device)
    score_target = torch.randint(0, 1024, (args.score_batch, 8, 8), generator=gen).to(device)
    common = {"device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__}

    for preset in args.presets:
        base: dict[str, float] = {}
        for variant in args.variants:
            overrides = parse_variant(variant)
            torch.manual_seed(0)
            model = build(preset, **overrides).to(device)
            tags = {"preset": preset, "variant": variant, "parameters": model.num_parameters(), **common}
            run_variant(args, model, device, tags, base, train_cond, train_target, score_cond, score_target)


def run_variant(args: argparse.Namespace, model, device: torch.device, tags: dict, base: dict[str, float],
                train_cond: torch.Tensor, train_target: torch.Tensor, score_cond: torch.Tensor,
                score_target: torch.Tensor) -> None:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for precision in args.precisions:
        bf16 = precision == "bf16"
        if "train" in args.kinds:
            model.train()

            def train_step() -> None:
                with autocast(device, bf16):
                    loss, _ = model.training_loss(train_cond, train_target)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            seconds = median_seconds(train_step, args.repeats)
            rate = args.batch_size / seconds
            base.setdefault("train", rate)
            print(json.dumps({"benchmark": "video_model_throughput", "kind": "train", "precision": precision,
                              "batch": args.batch_size, "seconds_per_step": seconds, "windows_per_s": rate,
                              "ratio": rate / base["train"], **tags}), flush=True)

        model.eval()
        evaluations = len(model.diffusion.strided_times(10))
        if "sample" in args.kinds:
            for cache in (True, False):
                def sample() -> None:
                    model.sample(score_cond, stride=10, generator=torch.Generator(device).manual_seed(0),
                                 amp=bf16, use_cache=cache)

                seconds = median_seconds(sample, args.repeats)
                passes = args.score_batch * evaluations / seconds
                base.setdefault("sample", passes)
                print(json.dumps({"benchmark": "video_model_throughput", "kind": "sample", "precision": precision,
                                  "condition_cache": cache, "batch": args.score_batch, "stride": 10,
                                  "evaluations": evaluations, "seconds": seconds, "passes_per_s": passes,
                                  "windows_per_s": args.score_batch / seconds, "ratio": passes / base["sample"],
                                  **tags}), flush=True)

        if "bound" in args.kinds:
            def bound() -> None:
                model.log_likelihood_bound(score_cond, score_target, stride=10,
                                           generator=torch.Generator(device).manual_seed(0), amp=bf16)

            seconds = median_seconds(bound, args.repeats)
            passes = args.score_batch * evaluations / seconds
            base.setdefault("bound", passes)
            print(json.dumps({"benchmark": "video_model_throughput", "kind": "bound", "precision": precision,
                              "condition_cache": True, "batch": args.score_batch, "stride": 10,
                              "evaluations": evaluations, "seconds": seconds, "passes_per_s": passes,
                              "windows_per_s": args.score_batch / seconds, "ratio": passes / base["bound"],
                              **tags}), flush=True)


if __name__ == "__main__":
    main()
