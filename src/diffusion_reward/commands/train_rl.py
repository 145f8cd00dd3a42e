"""``diffusion-reward train-rl``: train a DrQ-v2 agent on a task with a learned or baseline reward."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from diffusion_reward.config import add_config_args, config_from_args
from diffusion_reward.utils.logging import get_logger


# RLConfig's settings beyond the run's what and where, shown in groups by --help (the others stay on top).
RL_OPTION_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("environment", ("action_repeat", "image_size", "camera", "max_episode_steps", "frame_stack")),
    ("schedule and logging", ("num_seed_frames", "replay_capacity", "eval_every_frames", "num_eval_episodes",
                              "eval_video_episodes", "checkpoint_every_frames", "tensorboard")),
    ("online reward models (RND, AMP)", ("bonus_preset", "amp_scoring", "amp_update_every", "amp_batch_size",
                                         "rnd_input")),
    ("processes and threads", ("env_worker", "render_threads", "learner_threads", "reward_threads")),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from diffusion_reward.rl.drqv2 import DrQV2Config
    from diffusion_reward.rl.loop import PRESETS, RLConfig

    parser.description = (
        "Train a DrQ-v2 agent with r = (1 - alpha) r_model + alpha r_rnd + r_sparse. The learned reward of a "
        "finished episode is computed from its frames all at once (AMP's too, with its discriminator as it is "
        "then); RND is recomputed on every sampled batch; both train online. Evaluates every --eval-every-frames frames (success rate, return, a video), "
        "writes CSV + TensorBoard metrics, resumable checkpoints and a success-rate plot into the run directory.")
    parser.epilog = (
        "examples:\n"
        "  diffusion-reward train-rl --task reach-v3 --reward diffusion --reward-model runs/reward-mw --seed 0\n"
        "  diffusion-reward train-rl --task reach-v3 --reward rnd --obs state --frames 100000\n"
        "  diffusion-reward train-rl --task door --reward amp --expert-data data/adroit\n"
        "  diffusion-reward train-rl --resume --run-dir runs/reach-v3__rnd__0__20250101-120000")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="paper",
                        help="starting configuration that the other flags override: paper (the paper's DrQ-v2), "
                             "small, tiny (seconds, for smoke tests)")
    parser.add_argument("--run-dir", default=None, metavar="DIR",
                        help="run directory (default: runs/<task>__<reward>__<seed>__<time>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --run-dir from its newest checkpoint; settings not given on the "
                             "command line are taken from the run's config.json")
    parser.add_argument("--frames", "--num-train-frames", dest="num_train_frames", type=int, default=None,
                        metavar="N", help="environment frames to train for (agent steps x action repeat; "
                                          "default: 1000000)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="do not show a progress bar")
    parser.add_argument("--task", default=None, help="task to learn: a MetaWorld 3.x name such as reach-v3, or "
                                                    "door, hammer, pen (required unless resuming)")
    parser.add_argument("--reward", default=None, metavar="METHOD",
                        help="reward method: diffusion or viper (need --reward-model), amp (needs --expert-data), "
                             "rnd, sparse, or any reward kind saved in --reward-model such as motion (required "
                             "unless resuming)")
    grouped = tuple(name for _, names in RL_OPTION_GROUPS for name in names)
    add_config_args(parser, RLConfig, skip=("num_train_frames", "task", "reward", *grouped))
    for title, names in RL_OPTION_GROUPS:
        add_config_args(parser.add_argument_group(title), RLConfig, only=names)
    group = parser.add_argument_group("DrQ-v2 agent", "hyperparameters of the agent (defaults: the preset's)")
    add_config_args(group, DrQV2Config, prefix="agent_", skip=("obs_type", "frame_stack"))


def run(args: argparse.Namespace) -> int:
    from diffusion_reward.errors import UserError
    from diffusion_reward.evaluation.rl_comparison import plot_run
    from diffusion_reward.rl.drqv2 import DrQV2Config
    from diffusion_reward.rl.loop import PRESETS, RLConfig, load_run_config, train

    log = get_logger()
    if args.resume and args.run_dir is not None and (Path(args.run_dir) / "config.json").exists():
        base = load_run_config(args.run_dir)
    else:
        if args.task is None or args.reward is None:
            raise UserError("--task and --reward are required (unless resuming a run with --resume --run-dir)")
        base = PRESETS[args.preset]
    agent = config_from_args(DrQV2Config, args, base=base.agent, prefix="agent_")
    config = config_from_args(RLConfig, args, base=dataclasses.replace(base, agent=agent))
    result = train(config, args.run_dir, resume=args.resume, progress=args.progress)
    figure = plot_run(result.run_dir)
    for evaluation in result.evaluations[-3:]:
        log.info(f"frame {evaluation['frame']}: success rate {evaluation['success_rate']:.2f}, "
                 f"return {evaluation['episode_return']:.1f}")
    seconds = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
    log.info(f"{result.frames} frames, {result.episodes} episodes, {result.updates} updates; time: {seconds}")
    log.info(f"run directory: {result.run_dir}" + (f"; success against frames: {figure}" if figure else ""))
    return 0
