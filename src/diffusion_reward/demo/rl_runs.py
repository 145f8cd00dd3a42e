"""Short RL comparisons for the demo: one DrQ-v2 run per reward on one task, then a success plot."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from diffusion_reward.rl.drqv2 import DrQV2Config
from diffusion_reward.rl.loop import RLConfig, train


def comparison_config(task: str, reward: str, frames: int, seed: int, reward_model: str | None,
                      expert_data: str | None) -> RLConfig:
    """A CPU-sized run: state observations (the learned reward still reads rendered frames), a
    smaller batch and network, evaluation five times over the run (and at frame 0), on 5 episodes
    (3 for runs under 4000 frames, where evaluation would otherwise dominate the time)."""
    agent = dataclasses.replace(DrQV2Config(), obs_type="state", batch_size=128, hidden_dim=256,
                                num_expl_steps=min(1000, frames // 10))
    return RLConfig(task=task, reward=reward, reward_model=reward_model, expert_data=expert_data, obs="state",
                    seed=seed, num_train_frames=frames, num_seed_frames=min(2000, frames // 5),
                    eval_every_frames=max(frames // 5, 200), num_eval_episodes=5 if frames >= 4000 else 3,
                    eval_video_episodes=1,
                    checkpoint_every_frames=frames, bonus_preset="small", tensorboard=False, agent=agent)


def run_rl_comparison(task: str, rewards: Sequence[str], reward_dirs: Mapping[str, str], frames: int,
                      out: str | os.PathLike, seed: int = 0, expert_data: str | os.PathLike | None = None) -> dict[str, Any]:
    """Train one agent per reward in ``rewards`` and plot their success rates; returns facts for the report."""
    from diffusion_reward.evaluation.plots import plot_learning_curves

    out = Path(out)
    series, rows, runs = {}, [], {}
    for reward in rewards:
        cfg = comparison_config(task, reward, frames, seed, reward_dirs.get(reward),
                                str(expert_data) if expert_data is not None else None)
        result = train(cfg, out / reward, progress=True)
        x = [e["frame"] for e in result.evaluations]
        y = [e["success_rate"] for e in result.evaluations]
        series[reward] = (x, y)
        best = max(y) if y else float("nan")
        rows.append([reward, frames, result.final_success_rate, best,
                     round(frames / max(sum(result.seconds.values()), 1e-9), 1)])
        runs[reward] = {"run_dir": str(result.run_dir), "evaluations": result.evaluations}
    figure = out / "success.png"
    plot_learning_curves(series, figure, title=f"{task}: DrQ-v2 (state observations), seed {seed}")
    return {"figure": str(figure), "runs": runs,
            "table": {"header": ["reward", "frames", "final success rate", "best success rate", "frames/s"],
                      "rows": rows},
            "description": (f"DrQ-v2 on {task} with state observations for {frames} environment frames per run "
                            "(the learned reward is computed from rendered frames at the end of each episode, as "
                            "in the paper). A short run on a CPU: the demo shows the pipeline working end to end; "
                            "see the README for longer runs.")}
