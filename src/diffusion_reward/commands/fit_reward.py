"""``diffusion-reward fit-reward``: build a reward model directory from trained networks and expert data."""

from __future__ import annotations

import argparse
import json

from diffusion_reward.utils.progress import progress_bar


def add_arguments(p: argparse.ArgumentParser) -> None:
    from diffusion_reward.rewards.kinds import BUILTIN_KINDS, FITTED_KINDS

    p.add_argument("--kind", required=True, choices=FITTED_KINDS,
                   help="which reward: " + "; ".join(f"{k}: {BUILTIN_KINDS[k].help}" for k in FITTED_KINDS))
    p.add_argument("--data", nargs="+", default=None,
                   help="episode dataset(s); the train-split expert episodes fit the reward statistics "
                        "(and train AMP/RND)")
    p.add_argument("--out", required=True, help="directory to write the reward model to")
    p.add_argument("--video", default=None, help="video model directory from train-video (diffusion, viper)")
    p.add_argument("--codec", default=None, help="codec directory (default: the one the video model recorded)")
    p.add_argument("--variant", default="entropy", choices=["entropy", "likelihood"],
                   help="diffusion only: entropy of the next frame (the paper's reward) or likelihood of "
                        "the observed frame")
    p.add_argument("--num-samples", type=int, default=1, help="diffusion only: samples averaged per step")
    p.add_argument("--stride", type=int, default=10, help="diffusion only: denoising stride (10: 11 network passes)")
    p.add_argument("--gumbel", action=argparse.BooleanOptionalAction, default=True,
                   help="diffusion entropy only: draw each denoising step's codes at random, the paper's sampler "
                        "(--no-gumbel takes the most likely code at every step: the bound of the model's "
                        "most likely next frame, a deterministic confidence score)")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="bfloat16 autocast for the video networks (default: on where bf16 matrix products beat "
                        "float32 on this machine, measured at start; saved with the model as 'auto')")
    p.add_argument("--task", nargs="+", default=None, help="use only these tasks of the dataset")
    p.add_argument("--preset", default="small", choices=["tiny", "small", "paper"],
                   help="network size of AMP's discriminator or RND's networks")
    p.add_argument("--steps", type=int, default=500, help="amp/rnd: offline training updates")
    p.add_argument("--batch-size", type=int, default=64, help="amp/rnd: frames per update")
    p.add_argument("--negative-policy", default="random",
                   help="amp: the train-split policy whose frames the discriminator learns to reject")
    p.add_argument("--stats-episodes", type=int, default=5,
                   help="diffusion/viper: the reward statistics (mean, std) come from this many train-split expert "
                        "episodes per task (0: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initialisation and of the reward's sampling")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable episode files (and report them)")


def run(args: argparse.Namespace) -> int:
    from diffusion_reward.data.episodes import load_dataset
    from diffusion_reward.errors import UserError
    from diffusion_reward.rewards.fit import fit_reward_model, stats_frames
    from diffusion_reward.rewards.kinds import BUILTIN_KINDS
    from diffusion_reward.utils.seeding import seed_everything

    seed_everything(args.seed)
    if args.data is None:
        if args.kind != "motion":
            raise UserError(f"--data is required for --kind {args.kind}")
        from diffusion_reward.rewards.motion import MotionReward

        MotionReward().save_pretrained(args.out)
        print(f"wrote {args.out}")
        return 0
    dataset = load_dataset(args.data, skip_bad=args.skip_bad)
    if BUILTIN_KINDS[args.kind].needs == "expert":
        total, unit = args.steps, "step"
    elif BUILTIN_KINDS[args.kind].needs == "video":  # scoring the expert episodes for the statistics is the slow part
        total, unit = stats_frames(dataset, args.task, args.stats_episodes or None), "frame"
    else:
        total, unit = 0, "it"
    with progress_bar(f"fit {args.kind}", total, unit=unit) as advance:
        model, info = fit_reward_model(
            args.kind, dataset, video_dir=args.video, codec_dir=args.codec, variant=args.variant,
            num_samples=args.num_samples, stride=args.stride, gumbel=args.gumbel, bf16=args.bf16,
            preset=args.preset, steps=args.steps, batch_size=args.batch_size, negative_policy=args.negative_policy,
            tasks=args.task, seed=args.seed, stats_episodes=args.stats_episodes or None, device=args.device,
            progress=advance)
    model.save_pretrained(args.out)
    if dataset.skipped:
        print(f"skipped {len(dataset.skipped)} unreadable episode(s):\n  " + "\n  ".join(dataset.skipped))
    print(json.dumps(info, indent=2, default=str))
    print(f"wrote {args.out}")
    return 0
