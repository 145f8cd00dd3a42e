"""``diffusion-reward import-demos FILE --task door --out DATASET``: Adroit demonstrations -> rendered episodes."""

from __future__ import annotations

import argparse

from diffusion_reward.commands._importing import add_dataset_options, log_report
from diffusion_reward.utils.logging import get_logger


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Replay Adroit demonstrations state by state through the simulator and render them with the task's "
        "camera and the same render settings as RL. Reads the D4RL HDF5 layout (observations, actions, rewards, "
        "timeouts/terminals, infos/qpos, infos/qvel, infos/<door_body_pos|board_pos|desired_orien>; episodes "
        "split at timeouts/terminals) and the Minari layout (episode_N/actions, episode_N/infos/state/...). "
        "Demonstrations already imported from FILE are skipped, so re-running resumes.")
    parser.add_argument("file", metavar="FILE", help="HDF5 file of demonstrations (D4RL or Minari layout)")
    parser.add_argument("--task", required=True, choices=["door", "hammer", "pen"],
                        help="the Adroit task the demonstrations are of")
    parser.add_argument("--out", required=True, metavar="DATASET", help="dataset directory to create or extend")
    parser.add_argument("--image-size", type=int, default=64, metavar="PIXELS",
                        help="side of the square rendered frames (default: 64)")
    parser.add_argument("--camera", default=None,
                        help="camera to render from (default: the task's: top for door and hammer, vil_camera "
                             "for pen)")
    parser.add_argument("--action-repeat", type=int, default=2, metavar="K",
                        help="simulator steps per stored frame, the RL agent's action repeat (default: 2)")
    parser.add_argument("--policy", default="expert",
                        help="policy name recorded for these episodes (default: expert)")
    parser.add_argument("--episodes", type=int, default=None, metavar="N",
                        help="import only the first N demonstrations (default: all)")
    add_dataset_options(parser, "demonstrations", frame_options=False)
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip demonstrations that cannot be rendered (and unreadable episodes already in the "
                             "dataset) and report them, instead of stopping at the first")


def run(args: argparse.Namespace) -> int:
    from diffusion_reward.data.importers import import_demos

    report = import_demos(args.file, args.out, task=args.task, image_size=args.image_size, camera=args.camera,
                          action_repeat=args.action_repeat, policy=args.policy, test_fraction=args.test_fraction,
                          max_episodes=args.episodes, min_frames=args.min_frames, seed=args.seed,
                          skip_bad=args.skip_bad, progress=args.progress, log=get_logger().warning)
    return log_report(report, args.out)
