"""Train Stable-Baselines3 SAC on a MetaWorld task with a learned reward, several environments side by side.

    pip install "diffusion-reward[sb3]"
    python examples/sb3_sac_metaworld.py --task reach-v3 \\
        --reward-model pretrained/metaworld-small/reward-entropy --steps 100000 --n-envs 8 --seed 0

The policy acts on the simulator's state (cheap enough for a CPU). Every environment renders the frame
each step reaches (``RenderFrameObservation``), and ``LearnedRewardVecWrapper`` scores the windows of all
environments in one reward-model call per step: the reward of a step equals that frame's reward when its
whole episode is scored, standardized with the task's expert statistics. It is mixed with the
environment's sparse success reward with the paper's weight of the model term (``--mix``; the wrapper
has no RND bonus). SB3 prints the mixed return of finished episodes (``rollout/ep_rew_mean``); ``--out``
saves the policy.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from diffusion_reward.cli import choose_openmp_waiting


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from diffusion_reward.rewards.combine import DEFAULT_ALPHA

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="reach-v3", help="MetaWorld task (diffusion-reward's task names)")
    parser.add_argument("--reward-model", default="pretrained/metaworld-small/reward-entropy",
                        help="reward model directory (fit-reward's output or a pretrained one)")
    parser.add_argument("--steps", type=int, default=100_000,
                        help="environment steps to train for, all environments together (SB3's total_timesteps)")
    parser.add_argument("--n-envs", type=int, default=8,
                        help="environments stepping side by side; their frames are scored in one model call per step")
    parser.add_argument("--seed", type=int, default=0, help="seed of SAC, its networks and the environments' resets")
    parser.add_argument("--mix", default=None, choices=["none", *DEFAULT_ALPHA],
                        help="how the learned reward is mixed with the sparse success reward: a reward method's "
                             "weights (learned weight 1 - alpha, sparse 1; default: the reward model's own kind), "
                             "or 'none' for the learned reward alone")
    parser.add_argument("--episode-steps", type=int, default=None,
                        help="agent steps per episode (default: the task's)")
    parser.add_argument("--learning-starts", type=int, default=1000,
                        help="environment steps of random actions before SAC starts updating")
    parser.add_argument("--subproc", action="store_true",
                        help="step and render each environment in its own process (pays off with a core per "
                             "environment to spare; the reward is scored in the main process either way)")
    parser.add_argument("--threads", type=int, default=1,
                        help="PyTorch intra-op threads in the main process (1: on a busy 2-core machine a second "
                             "thread made the reward several times slower, benchmarks/sb3_wrapper.py)")
    parser.add_argument("--device", default="auto", help="device of the reward model and SAC: auto, cpu or cuda")
    parser.add_argument("--out", default=None, help="directory to save the trained policy in (SB3's zip)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.n_envs < 1 or args.learning_starts < 0:
        parser.error("--steps and --n-envs must be >= 1 and --learning-starts >= 0")
    return args


def make_env_fn(task: str, image_size: int, episode_steps: int | None):
    """A picklable builder of one environment (for SubprocVecEnv): state observations plus rendered frames."""
    def make():
        from diffusion_reward import make_env
        from diffusion_reward.rewards.gym_wrapper import RenderFrameObservation

        env = make_env(task, image_size=image_size, max_episode_steps=episode_steps, pixels=False)
        return RenderFrameObservation(env, frame_shape=(image_size, image_size, 3))
    return make


def train(args: argparse.Namespace, callback: Any = None):
    """Build the environments and the reward, train SAC for ``args.steps`` steps and return it."""
    import torch
    from stable_baselines3 import SAC
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecMonitor

    from diffusion_reward import load_reward_model
    from diffusion_reward.rewards.sb3 import LearnedRewardVecWrapper

    torch.set_num_threads(args.threads)
    reward_model = load_reward_model(args.reward_model, device=args.device)
    fns = [make_env_fn(args.task, reward_model.image_size, args.episode_steps) for _ in range(args.n_envs)]
    venv = SubprocVecEnv(fns, start_method="spawn") if args.subproc else DummyVecEnv(fns)
    mix = None if args.mix == "none" else (args.mix or reward_model.kind)
    venv = LearnedRewardVecWrapper(venv, reward_model, use_render=True, mix=mix, task=args.task)
    venv = VecMonitor(venv)
    agent = SAC("MlpPolicy", venv, learning_starts=args.learning_starts, seed=args.seed, device=args.device,
                verbose=1)
    agent.learn(total_timesteps=args.steps, callback=callback)
    if args.out is not None:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        agent.save(Path(args.out) / "sac")
    return agent


def main(argv: list[str] | None = None) -> None:
    choose_openmp_waiting()  # before torch loads: on a busy machine OpenMP threads then sleep rather than spin
    train(parse_args(argv))


if __name__ == "__main__":
    main()
