"""Does a video-model reward generalize from the training experts to new expert episodes?

For each task, the raw reward (nats per frame for the diffusion rewards) of expert episodes the
video model was trained on, of held-out expert episodes, and of held-out random-policy episodes,
over the whole episode ([lowest, highest] episode), over an early window of steps (the expert still
moving) and over a late one (the expert done, its arm at rest), with the number of the codec's tokens (of
64) that change from one frame to the next in each window and the codec's reconstruction PSNR (does it
keep new experts' frames, and the random policy's, as well as those it trained on?). A reward that
generalizes scores held-out experts like training experts. docs/experiments/reach-diagnosis.md and
adroit-reward-quality.md quote its numbers.

    python scripts/generalization_gap.py runs/reward-entropy-noise-off --train-data data/mw \\
        --test-data data/mw --tasks reach-v3 door-close-v3 lever-pull-v3 --episodes 8
    python scripts/generalization_gap.py pretrained/adroit-small/reward-entropy \\
        --train-data pretrained/adroit-small/expert-data --test-data data/adroit --tasks door hammer pen --episodes 4

One JSON line per task and group on stdout; a table on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from diffusion_reward.data.episodes import load_dataset
from diffusion_reward.models.codec.vqgan import frames_to_tensor, psnr
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
    parser.add_argument("--plot", default=None, metavar="PNG",
                        help="also draw each group's mean reward per step, one panel per task, with the tokens that "
                             "change per step beneath")
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
    print(f"{'task':22s} {'group':16s} {'episode [min, max]':>22s} {'early':>8s} {'late':>8s} "
          f"{'tokens changed early/late':>26s} {'codec PSNR':>10s}", file=sys.stderr)
    curves: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for task in args.tasks:
        for name, (data, policy, split) in groups.items():
            episodes = data.select(task=task, policy=policy, split=split).limit(args.episodes)
            if not len(episodes):
                raise SystemExit(f"no {split}-split {policy} episodes of {task} in {data.roots[0]}")
            whole, early, late, changed_early, changed, quality = [], [], [], [], [], []
            steps, step_tokens = [], []
            for episode in episodes:
                frames = episode.frames
                raw = model.rewards(frames, raw=True)
                steps.append(np.asarray(raw, dtype=np.float64))
                whole.append(float(raw[1:].mean()))
                early.append(window_mean(raw, args.early))
                late.append(window_mean(raw, args.late))
                if codec is not None:
                    tokens = codec.encode_frames(frames)
                    step_changes = torch.cat([torch.zeros(1), (tokens[1:] != tokens[:-1]).flatten(1).sum(1).float()])
                    step_tokens.append(step_changes.numpy())
                    changed_early.append(window_mean(step_changes.numpy(), args.early))
                    changed.append(window_mean(step_changes.numpy(), args.late))
                    decoded = codec.decode_to_frames(tokens)
                    quality.append(float(psnr(frames_to_tensor(frames), frames_to_tensor(decoded)).mean()))
            row = {"task": task, "group": name, "episodes": len(episodes), "episode_mean": float(np.mean(whole)),
                   "episode_min": float(np.min(whole)), "episode_max": float(np.max(whole)),
                   "early_mean": mean_or_none(early), "late_mean": mean_or_none(late),
                   "tokens_changed_early": mean_or_none(changed_early), "tokens_changed_late": mean_or_none(changed),
                   "codec_psnr_db": float(np.mean(quality)) if quality else None, **provenance}
            length = min(len(x) for x in steps)
            per_step = np.mean([x[:length] for x in steps], axis=0)
            tokens_per_step = np.mean([x[:length] for x in step_tokens], axis=0) if step_tokens else None
            curves.setdefault(task, {})[name] = (per_step, tokens_per_step)
            row["per_step_mean"] = [round(float(v), 3) for v in per_step]
            print(json.dumps(row))
            tok = f"{fmt(row['tokens_changed_early'], 2)} / {fmt(row['tokens_changed_late'], 2)}"
            db = f"{row['codec_psnr_db']:.1f}" if quality else "-"
            span = f"{row['episode_mean']:.1f} [{row['episode_min']:.1f}, {row['episode_max']:.1f}]"
            print(f"{task:22s} {name:16s} {span:>22s} {fmt(row['early_mean'], 1):>8s} {fmt(row['late_mean'], 1):>8s} "
                  f"{tok:>26s} {db:>10s}",
                  file=sys.stderr)
    if args.plot:
        plot_curves(curves, args.plot)


def window_mean(values: np.ndarray, window: tuple[int, int]) -> float | None:
    """Mean over steps ``window`` (end excluded); None when the episode is too short to reach it (pen: 51 steps)."""
    part = np.asarray(values)[slice(*window)]
    return float(part.mean()) if len(part) else None


def mean_or_none(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def plot_curves(curves: dict[str, dict[str, tuple[np.ndarray, np.ndarray | None]]], path: str) -> None:
    """Mean raw reward per step of each group (top row) and the tokens that change per step (bottom row)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"train expert": "tab:blue", "held-out expert": "tab:green", "held-out random": "tab:red"}
    fig, axes = plt.subplots(2, len(curves), figsize=(4 * len(curves), 5.5), sharex=True, squeeze=False)
    for col, (task, groups) in enumerate(curves.items()):
        for name, (reward, tokens) in groups.items():
            axes[0, col].plot(np.arange(1, len(reward)), reward[1:], label=name, color=colors.get(name))
            if tokens is not None:
                axes[1, col].plot(np.arange(1, len(tokens)), tokens[1:], color=colors.get(name))
        axes[0, col].set_title(task)
        axes[1, col].set_xlabel("step")
    axes[0, 0].set_ylabel("raw reward (nats per frame)")
    axes[1, 0].set_ylabel("tokens changed (of 64)")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
