"""Does a video-model reward generalize from the training experts to new expert episodes?

For each task, the raw reward (nats per frame for the diffusion rewards) of expert episodes the
video model was trained on, of held-out expert episodes, and of held-out random-policy episodes,
averaged over an early window of steps (the expert still moving) and a late one (the expert done,
its arm at rest), with the number of the codec's tokens that change from one frame to the next in
the late window. A reward that generalizes scores held-out experts like training experts; the README
quotes this script's numbers for the 128-code `small` models.

    python scripts/generalization_gap.py runs/reward-entropy-noise-off --train-data data/mw \\
        --test-data data/mw --tasks reach-v3 door-close-v3 lever-pull-v3 --episodes 8

One JSON line per task and group on stdout; a table on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from diffusion_reward.data.episodes import load_dataset
from diffusion_reward.rewards.base import load_reward_model
from diffusion_reward.utils.provenance import code_version, directory_fingerprint


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="reward model directory (a diffusion or VIPER reward)")
    parser.add_argument("--train-data", default=None,
                        help="dataset whose train-split experts trained the model (leave out for unseen tasks: "
                             "the training-expert row is then left out)")
    parser.add_argument("--test-data", required=True, help="dataset with test-split expert and random episodes")
    parser.add_argument("--tasks", nargs="+", required=True, help="tasks to measure")
    parser.add_argument("--episodes", type=int, default=8, help="episodes per task and group (default: 8)")
    parser.add_argument("--early", type=int, nargs=2, default=(1, 30), metavar=("FROM", "TO"),
                        help="early window of steps, end excluded (default: 1 30)")
    parser.add_argument("--late", type=int, nargs=2, default=(60, 101), metavar=("FROM", "TO"),
                        help="late window of steps, end excluded (default: 60 101)")
    parser.add_argument("--threads", type=int, default=0, help="PyTorch threads (0: its default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_reward_model(args.model)
    provenance = {"model": args.model, "fingerprint": directory_fingerprint(args.model), "code": code_version()}
    codec = getattr(model, "codec", None)
    test_data = load_dataset(args.test_data)
    groups = {"train expert": (load_dataset(args.train_data), "expert", "train")} if args.train_data else {}
    groups.update({"held-out expert": (test_data, "expert", "test"),
                   "held-out random": (test_data, "random", "test")})
    print(f"{'task':22s} {'group':16s} {'early':>8s} {'late':>8s} {'tokens changed (late)':>22s}", file=sys.stderr)
    for task in args.tasks:
        for name, (data, policy, split) in groups.items():
            episodes = data.select(task=task, policy=policy, split=split).limit(args.episodes)
            if not len(episodes):
                raise SystemExit(f"no {split}-split {policy} episodes of {task} in {data.roots[0]}")
            early, late, changed = [], [], []
            for episode in episodes:
                frames = episode.frames
                raw = model.rewards(frames, raw=True)
                early.append(float(raw[slice(*args.early)].mean()))
                late.append(float(raw[slice(*args.late)].mean()))
                if codec is not None:
                    tokens = codec.encode_frames(frames[slice(*args.late)]).flatten(1)
                    changed.append(float((tokens[1:] != tokens[:-1]).sum(1).float().mean()))
            row = {"task": task, "group": name, "episodes": len(episodes), "early_mean": float(np.mean(early)),
                   "late_mean": float(np.mean(late)),
                   "tokens_changed_late": float(np.mean(changed)) if changed else None, **provenance}
            print(json.dumps(row))
            tok = f"{row['tokens_changed_late']:.2f}" if changed else "-"
            print(f"{task:22s} {name:16s} {row['early_mean']:8.1f} {row['late_mean']:8.1f} {tok:>22s}",
                  file=sys.stderr)


if __name__ == "__main__":
    main()
