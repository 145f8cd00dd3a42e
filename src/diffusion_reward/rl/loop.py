"""The RL loop: DrQ-v2 on a simulated task with a learned or baseline reward, evaluated, resumable.

    from diffusion_reward.rl.loop import PRESETS, train
    result = train(dataclasses.replace(PRESETS["paper"], task="reach-v3", reward="rnd", obs="state"))

One agent step: act on the latest observation, hand the action to the environment
(:mod:`diffusion_reward.rl.env_worker`; in a worker process the step overlaps the update), update
once every ``update_every_steps`` steps after the seed frames, collect the step. When an episode
ends its rewards are computed from its frames, all at once, and it enters the replay
(:mod:`diffusion_reward.rl.reward_terms` composes ``(1 - alpha) r_model + alpha r_rnd + r_sparse``).

Counting. Time is counted in **environment frames** (agent steps x ``action_repeat``):
``num_train_frames``, ``num_seed_frames``, ``eval_every_frames``, ``checkpoint_every_frames``.
Training ends with the episode in which ``num_train_frames`` is reached; evaluations and
checkpoints happen at the first episode end at or after each multiple of their period, so every
checkpoint sits between two episodes.

Observations. ``obs="pixels"``: the agent sees the rendered frames (the paper's setting).
``obs="state"``: the agent sees the simulator's low-dimensional state (cheap enough for a CPU);
a learned reward still scores rendered frames, so the environment renders a frame per step only
when the reward reads frames, and the RND bonus reads the state vector
(:class:`~diffusion_reward.rl.state_rnd.StateRND`) unless ``rnd_input="pixels"``: a state-mode
``sparse`` or ``rnd`` run renders nothing but its evaluation videos.

Seeds. Training episode ``i`` resets with a seed derived from ``(seed, "train", i)``; evaluation
episode ``j`` with one from ``(seed, "eval", j)``, the same ``num_eval_episodes`` goals at every
evaluation. Evaluation runs on the training environment between two episodes (every reset is
seeded, so it changes nothing that follows) with the actor's mean action; an episode succeeds if
any of its steps succeeds.

Run directory (``runs/<task>__<reward>__<seed>__<time>`` unless given)::

    config.json            the resolved RLConfig (agent schedule included)
    train.csv eval.csv reward.csv, tb/    metrics (MetricsWriter), one train row per episode
    videos/eval-<frame>.mp4               the first evaluation episodes of each evaluation
    checkpoints/frame-<N>/                agent + optimizers, replay, online reward models,
                                          RNG states, counters (the newest one is kept)

Processes and threads. When frames are rendered at every step (pixel runs, or state runs whose
reward reads frames) and at least three CPUs (or two quiet ones) are available, the environment
steps and renders in a worker process while the networks update (``env_worker``; results are
identical either way).
The worker only pays off with a core to spare: on a busy two-core machine it hid the rendering
but slowed the updates by more than it saved (``benchmarks/rl_throughput.py``), so there the
environment stays in this process unless asked; on two quiet cores it is used
(:func:`worker_pays_off`). The worker is started with ``spawn``, so a script
that calls :func:`train` with it needs the usual ``if __name__ == "__main__":`` guard. The renderer
gets ``render_threads`` llvmpipe threads (0 by default: the rendering thread rasterizes) and the
learner ``learner_threads`` PyTorch threads (1 by default: on a busy two-core machine a second
intra-op thread made updates 3 to 16 times slower). The learned reward of a finished episode is
computed with ``reward_threads`` threads
(default: every core), since nothing else runs in the process meanwhile.

Resume. A run killed at any moment continues from its newest checkpoint with
``train(..., resume=True)`` (``--resume``): the agent (weights, Adam moments, its generator),
the replay, the online reward models (weights, statistics, optimizers, generators), the replay
sampler, the global RNGs and the counters are restored, and metric rows written after the
checkpoint are dropped; with the same settings the run continues exactly as if it had never
stopped. A checkpoint is a directory written under a temporary name and renamed; the replay's
episode files are hard links shared between consecutive checkpoints.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch

from diffusion_reward.config import from_dict, option, to_dict
from diffusion_reward.errors import UserError
from diffusion_reward.rl.drqv2 import PRESETS as AGENT_PRESETS
from diffusion_reward.rl.drqv2 import DrQV2Agent, DrQV2Config
from diffusion_reward.rl.env_worker import frames_from_obs
from diffusion_reward.rl.replay import EPISODE_DIR, INDEX_NAME, ReplayBuffer
from diffusion_reward.utils.checkpoint import atomic_write_json, load_tensors, read_json, save_tensors
from diffusion_reward.utils.device import available_cpus, torch_threads
from diffusion_reward.utils.logging import MetricsWriter, drop_rows_after, get_logger
from diffusion_reward.utils.rundir import Checkpoints, config_changes, refuse_existing_run
from diffusion_reward.utils.seeding import rng_state, seed_everything, set_rng_state

CHECKPOINT_FORMAT_VERSION = 1
# Settings a resumed run may change: they decide how long it runs, how it is watched and how fast
# it goes, not what it learns (thread counts and devices may change float rounding, though).
RESUMABLE_CHANGES = ("num_train_frames", "eval_every_frames", "num_eval_episodes", "eval_video_episodes",
                     "checkpoint_every_frames", "env_worker", "render_threads", "learner_threads", "reward_threads",
                     "device", "tensorboard")


@dataclasses.dataclass(frozen=True)
class RLConfig:
    """One RL run. Defaults are the paper's (DrQ-v2 as used by Diffusion Reward); frames are environment frames."""

    task: str = option("reach-v3", "task to learn (MetaWorld 3.x name such as reach-v3, or door/hammer/pen)")
    reward: str = option("sparse", "reward method: diffusion, viper (need --reward-model), amp (needs --expert-data), "
                                   "rnd, sparse; or any reward kind saved in --reward-model (motion, ...)")
    reward_model: str | None = option(None, "directory of a reward model saved with save_pretrained (fit-reward's "
                                            "output); required for diffusion and viper")
    expert_data: str | None = option(None, "episode dataset whose expert episodes of this task train AMP's "
                                           "discriminator (--reward amp)")
    alpha: float | None = option(None, "RND weight in r = (1 - alpha) r_model + alpha r_rnd + r_sparse; default "
                                       "per method: diffusion 0.95, viper 0.5, rnd 1, amp/sparse/motion 0")
    obs: Literal["pixels", "state"] = option("pixels", "what the agent sees: 'pixels' (rendered frames) or 'state' "
                                                       "(the simulator's low-dim state; frames are then rendered only "
                                                       "when a reward model needs them)")
    seed: int = option(0, "seed of the agent, the replay sampling and the environment's goals")
    num_train_frames: int = option(1_000_000, "environment frames to train for (agent steps x action repeat); the "
                                              "run ends with the episode that reaches it")
    num_seed_frames: int = option(4000, "environment frames collected before the first update")
    action_repeat: int = option(2, "simulator steps per agent step (each action is repeated)")
    image_size: int = option(64, "side of the square rendered frames")
    camera: str | None = option(None, "camera to render from (default: the task's); must be the camera the "
                                      "reward model's videos came from")
    max_episode_steps: int | None = option(None, "episode length in agent steps (default: the task's, 100 for "
                                                 "MetaWorld)")
    frame_stack: int = option(1, "frames stacked into one pixel observation (the paper uses 1)")
    replay_capacity: int = option(1_000_000, "transitions (agent steps) the replay keeps; the oldest episodes go first")
    eval_every_frames: int = option(20_000, "evaluate after every this many environment frames (0: only at the "
                                            "start and the end)")
    num_eval_episodes: int = option(10, "episodes per evaluation (success rate and return)")
    eval_video_episodes: int = option(1, "evaluation episodes recorded to videos/eval-<frame>.mp4 per evaluation")
    checkpoint_every_frames: int = option(20_000, "write a resumable checkpoint after every this many environment "
                                                  "frames (0: only at the end)")
    bonus_preset: str = option("paper", "size of the RND / AMP networks trained online: tiny, small or paper")
    amp_scoring: Literal["episode", "batch"] = option(
        "episode", "when AMP's discriminator scores frames: 'episode' (once, when the episode ends, stored in the "
                   "replay) or 'batch' (every step of every sampled batch again, with the discriminator as it is "
                   "then: ~190x more scoring)")
    amp_update_every: int = option(16, "AMP's discriminator trains one step every this many agent updates (with "
                                       "--amp-scoring batch: every update)")
    amp_batch_size: int = option(64, "agent frames (and as many expert frames) per discriminator step; 0: the "
                                     "agent's batch size")
    rnd_input: Literal["auto", "state", "pixels"] = option(
        "auto", "what the RND bonus reads: auto = what the agent sees (frames in a pixel run, the state vector in a "
                "state run), or 'pixels' in a state run (frames are then rendered and kept for it)")
    env_worker: bool | None = option(
        None, "step the environment in a worker process that overlaps the network updates (results are identical "
              "either way); default: when frames are rendered every step and at least 3 CPUs, or 2 quiet ones, "
              "are available")
    render_threads: int = option(0, "LP_NUM_THREADS of the software renderer (Mesa llvmpipe) that renders the "
                                    "frames: 0 rasterizes in the rendering thread itself (no hand-off per frame; "
                                    "the pixels are the same for every value); -1 leaves the environment's setting")
    learner_threads: int = option(1, "PyTorch intra-op threads of the learner (0: PyTorch's default)")
    reward_threads: int = option(0, "PyTorch intra-op threads while the learned reward of a finished episode is "
                                    "computed, when nothing else runs in this process (0: every core this process "
                                    "may use; the small entropy reward ran 1.8x faster on 2 threads than on 1 here)")
    device: str = option("auto", "device of the agent and reward models: auto, cpu, cuda, cuda:N")
    tensorboard: bool = option(True, "write TensorBoard events beside the CSV files")
    agent: DrQV2Config = option(DrQV2Config(), "DrQ-v2 hyperparameters (command line: --agent-* flags)")

    def validate(self) -> None:
        """Raise :class:`UserError` naming the first setting that cannot work."""
        positive = {"num_train_frames": self.num_train_frames, "action_repeat": self.action_repeat,
                    "image_size": self.image_size, "replay_capacity": self.replay_capacity,
                    "frame_stack": self.frame_stack}
        for name, value in positive.items():
            if value < 1:
                raise UserError(f"{name} must be >= 1, got {value}")
        non_negative = {"num_seed_frames": self.num_seed_frames, "eval_every_frames": self.eval_every_frames,
                        "num_eval_episodes": self.num_eval_episodes, "eval_video_episodes": self.eval_video_episodes,
                        "checkpoint_every_frames": self.checkpoint_every_frames,
                        "learner_threads": self.learner_threads,
                        "reward_threads": self.reward_threads}
        for name, value in non_negative.items():
            if value < 0:
                raise UserError(f"{name} must be >= 0, got {value}")
        if self.render_threads < -1:
            raise UserError(f"render_threads must be >= -1, got {self.render_threads}")
        if self.max_episode_steps is not None and self.max_episode_steps < 1:
            raise UserError(f"max_episode_steps must be >= 1, got {self.max_episode_steps}")
        if self.obs not in ("pixels", "state"):
            raise UserError(f"obs must be 'pixels' or 'state', got {self.obs!r}")
        if self.obs == "state" and self.frame_stack != 1:
            raise UserError("frame_stack stacks pixel observations; a state run takes frame_stack 1")
        if self.amp_update_every < 1 or self.amp_batch_size < 0:
            raise UserError(f"amp_update_every must be >= 1 and amp_batch_size >= 0, got {self.amp_update_every} "
                            f"and {self.amp_batch_size}")
        if self.alpha is not None and not 0.0 <= self.alpha <= 1.0:
            raise UserError(f"alpha must be in [0, 1], got {self.alpha}")

    @property
    def num_train_steps(self) -> int:
        return -(-self.num_train_frames // self.action_repeat)

    def resolved(self) -> "RLConfig":
        """This config with the agent's observation type and exploration schedule filled in."""
        agent = dataclasses.replace(self.agent, obs_type=self.obs, frame_stack=self.frame_stack)
        return dataclasses.replace(self, agent=agent.for_run(self.num_train_steps))


PRESETS: dict[str, RLConfig] = {
    "paper": RLConfig(),
    "small": RLConfig(agent=AGENT_PRESETS["small"], bonus_preset="small"),
    "tiny": RLConfig(agent=AGENT_PRESETS["tiny"], num_train_frames=2000, num_seed_frames=400,
                     replay_capacity=20_000, eval_every_frames=1000, num_eval_episodes=2, eval_video_episodes=1,
                     checkpoint_every_frames=1000, bonus_preset="tiny"),
}


@dataclasses.dataclass
class RLResult:
    """What a run did: where it lives, how far it got, its evaluations and where the time went."""

    run_dir: Path
    frames: int
    episodes: int
    updates: int
    evaluations: list[dict[str, float]]
    seconds: dict[str, float]

    @property
    def final_success_rate(self) -> float:
        return self.evaluations[-1]["success_rate"] if self.evaluations else float("nan")


def default_run_dir(config: RLConfig, root: str | os.PathLike = "runs") -> Path:
    """``runs/<task>__<reward>__<seed>__<time>``."""
    return Path(root) / f"{config.task}__{config.reward}__{config.seed}__{time.strftime('%Y%m%d-%H%M%S')}"


def episode_seed(seed: int, stream: str, index: int) -> int:
    """The reset seed of episode ``index`` of ``stream`` ("train" or "eval") in a run seeded ``seed``."""
    streams = {"train": 0, "eval": 1}
    sequence = np.random.SeedSequence([int(seed) % 2**32, streams[stream], int(index)])
    return int(sequence.generate_state(1, np.uint32)[0])


def renders_every_step(config: RLConfig) -> bool:
    """Whether training renders a frame at every step: pixel observations, or a state run whose reward reads
    frames (a learned model, AMP, or RND on pixels)."""
    from diffusion_reward.rl.reward_terms import resolve_alpha

    if config.obs == "pixels":
        return True
    rnd_on_frames = config.rnd_input == "pixels" and resolve_alpha(config.reward, config.alpha) > 0
    return config.reward not in ("sparse", "rnd") or rnd_on_frames


def online_scoring(config: RLConfig) -> Any:
    """How the run uses an online reward model (AMP): scored per episode or per batch, trained how often."""
    from diffusion_reward.rl.reward_terms import OnlineScoring

    if config.amp_scoring == "batch":
        return OnlineScoring("batch")
    return OnlineScoring("episode", config.amp_update_every, config.amp_batch_size)


def worker_pays_off() -> bool:
    """Whether stepping and rendering in a worker process beside the updates is faster here: from 3 cores on, or
    on 2 cores that nothing else keeps busy (on a quiet 2-core machine it took a diffusion cell from 27.5 to 18.2
    ms per frame, ``benchmarks/rl_cells.py``; beside another busy process it slowed the updates more than it hid)."""
    from diffusion_reward.utils.cpu_load import busy_cores

    cpus = available_cpus()
    if cpus >= 3:
        return True
    if cpus < 2:
        return False
    busy = busy_cores()
    return busy is not None and busy < 0.5


def run_checkpoints(run_dir: str | os.PathLike) -> Checkpoints:
    """The RL loop's checkpoints of a run directory (``checkpoints/frame-<frame>``)."""
    return Checkpoints(run_dir, "frame", "loop.json", digits=9, format_version=CHECKPOINT_FORMAT_VERSION)


def checkpoint_dirs(run_dir: str | os.PathLike) -> list[Path]:
    """The complete checkpoints of a run, oldest first."""
    return run_checkpoints(run_dir).complete()


def load_run_config(run_dir: str | os.PathLike) -> RLConfig:
    """The resolved :class:`RLConfig` stored in a run directory."""
    path = Path(run_dir) / "config.json"
    try:
        return from_dict(RLConfig, read_json(path))
    except FileNotFoundError:
        raise UserError(f"{run_dir}: not an RL run directory (no config.json)") from None
    except (TypeError, ValueError) as exc:
        raise UserError(f"{path}: not an RL run config ({exc})") from None


def _config_changes(stored: RLConfig, new: RLConfig) -> list[str]:
    ignore_amp = stored.reward != "amp"  # AMP's settings, in a run without AMP
    return [path for path in config_changes(to_dict(stored), to_dict(new))
            if path.split(".")[0] not in RESUMABLE_CHANGES and not (ignore_amp and path.startswith("amp_"))]


class _FrameStack:
    """Pixel observations stacked along channels (the first one repeated at reset); identity for k = 1."""

    def __init__(self, k: int):
        self.k = k
        self._frames: list[np.ndarray] = []

    def reset(self, obs: np.ndarray) -> np.ndarray:
        self._frames = [obs] * self.k
        return self.current()

    def push(self, obs: np.ndarray) -> np.ndarray:
        self._frames = self._frames[1:] + [obs]
        return self.current()

    def current(self) -> np.ndarray:
        return self._frames[0] if self.k == 1 else np.concatenate(self._frames, axis=0)


class _Episode:
    """The steps of the running episode, kept until it ends and enters the replay."""

    def __init__(self, obs: np.ndarray):
        self.obs = [obs]
        self.actions: list[np.ndarray] = []
        self.rewards: list[float] = []
        self.success = False
        self.terminated = False

    def add(self, action: np.ndarray, obs: np.ndarray, reward: float, success: bool, terminated: bool) -> None:
        self.actions.append(action)
        self.obs.append(obs)
        self.rewards.append(reward)
        self.success = self.success or success
        self.terminated = terminated

    def __len__(self) -> int:
        return len(self.actions)


class _Clock:
    """Seconds spent per part of the loop, in total and since the last report."""

    PARTS = ("act", "sample", "update", "env_wait", "reward", "eval", "checkpoint")

    def __init__(self) -> None:
        self.total = dict.fromkeys(self.PARTS, 0.0)
        self.recent = dict.fromkeys(self.PARTS, 0.0)

    def add(self, part: str, seconds: float) -> None:
        self.total[part] += seconds
        self.recent[part] += seconds

    def take_recent(self) -> dict[str, float]:
        recent, self.recent = self.recent, dict.fromkeys(self.PARTS, 0.0)
        return recent


class RLRun:
    """One training run (see the module docstring); :func:`train` is the usual way in."""

    def __init__(self, config: RLConfig, run_dir: str | os.PathLike | None = None, *, resume: bool = False,
                 progress: bool = True, log: Callable[[str], None] | None = None):
        from diffusion_reward.envs import resolve_task

        self.logger = get_logger()
        self.log = log or self.logger.info
        config.validate()
        spec = resolve_task(config.task)
        config = dataclasses.replace(config, task=spec.name)
        if resume and run_dir is None:
            raise UserError("--resume needs --run-dir: the run directory to continue")
        self.run_dir = Path(run_dir) if run_dir is not None else default_run_dir(config)
        self.progress = progress
        self.checkpoint: Path | None = None
        self.config = self._prepare_run_dir(config, resume)
        cfg = self.config
        self.reward_threads = cfg.reward_threads or available_cpus()
        if cfg.learner_threads > 0:
            torch.set_num_threads(cfg.learner_threads)
        self.clock = _Clock()
        self._build()
        # Written only once everything is built, so that a mistyped setting leaves no run directory behind.
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.run_dir / "config.json", to_dict(self.config))
        run_checkpoints(self.run_dir).clear_partial()  # a checkpoint cut short by a kill
        self.writer = MetricsWriter(self.run_dir, tensorboard=cfg.tensorboard)

    # ---- set-up ------------------------------------------------------------------------------
    def _prepare_run_dir(self, config: RLConfig, resume: bool) -> RLConfig:
        existing = checkpoint_dirs(self.run_dir)
        stored_path = self.run_dir / "config.json"
        if not resume:
            refuse_existing_run(self.run_dir, bool(existing) or stored_path.exists(), "a run")
        resolved = config.resolved()
        if resume and stored_path.exists():
            stored = load_run_config(self.run_dir)
            if config.agent.stddev_schedule_steps == 0:  # keep the schedule the run started with
                resolved = dataclasses.replace(resolved, agent=dataclasses.replace(
                    resolved.agent, stddev_schedule_steps=stored.agent.stddev_schedule_steps))
            changed = _config_changes(stored, resolved)
            if changed:
                raise UserError(f"{stored_path}: cannot resume with different settings: {', '.join(changed)} "
                                f"(only {', '.join(RESUMABLE_CHANGES)} may change)")
        if resume and existing:
            self.checkpoint = existing[-1]
        elif resume:
            self.log(f"{self.run_dir}: no checkpoint to resume from; starting the run from the beginning")
            self._clear_outputs()
        return resolved

    def _clear_outputs(self) -> None:
        for path in list(self.run_dir.glob("*.csv")) + [self.run_dir / "tb", self.run_dir / "videos"]:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            elif path.exists():
                path.unlink()

    def _build(self) -> None:
        from diffusion_reward.rl.env_worker import EnvSpec, make_runner
        from diffusion_reward.rl.reward_terms import build_reward_terms
        from diffusion_reward.utils.device import resolve_device

        cfg = self.config
        self.pixels = cfg.obs == "pixels"
        seed_everything(cfg.seed)
        self.device = resolve_device(cfg.device)
        self.env_spec = EnvSpec(task=cfg.task, pixels=self.pixels, image_size=cfg.image_size, camera=cfg.camera,
                                action_repeat=cfg.action_repeat, max_episode_steps=cfg.max_episode_steps)
        self.renders = renders_every_step(cfg)
        self.use_worker = cfg.env_worker if cfg.env_worker is not None else (self.renders and worker_pays_off())
        self.env = make_runner(self.env_spec, self.use_worker, cfg.render_threads)
        try:
            info = self.env.info
            obs_shape = info.obs_shape
            if self.pixels:
                obs_shape = (3 * cfg.frame_stack, *obs_shape[1:])
            self.agent = DrQV2Agent(obs_shape, info.action_dim, cfg.agent, self.device)
            self.terms = build_reward_terms(
                cfg.reward, pixels=self.pixels, image_size=cfg.image_size,
                state_dim=info.obs_shape[0] if not self.pixels else 0, task=cfg.task,
                reward_model=cfg.reward_model, expert_data=cfg.expert_data, alpha=cfg.alpha,
                bonus_preset=cfg.bonus_preset, rnd_input=cfg.rnd_input, seed=cfg.seed, device=self.device,
                camera=info.camera, warn=self.logger.warning, online_scoring=online_scoring(cfg))
        except BaseException:
            self.env.close()
            raise
        rendered = self.pixels or self.terms.needs_episode_frames or self.terms.needs_frame_replay
        assert rendered == self.renders, "renders_every_step disagrees with the reward terms"
        agent_cfg = cfg.agent
        self.replay = ReplayBuffer(cfg.replay_capacity, nstep=agent_cfg.nstep, discount=agent_cfg.discount)
        self.frame_replay = (ReplayBuffer(cfg.replay_capacity, nstep=agent_cfg.nstep, discount=agent_cfg.discount)
                             if self.terms.needs_frame_replay else None)
        self.sampler = np.random.default_rng(np.random.SeedSequence([cfg.seed % 2**32, 2]))
        self.stack = _FrameStack(cfg.frame_stack)
        self.global_step = 0
        self.episode = 0
        self.updates = 0
        self.last_eval_frame: int | None = None
        self.last_success = float("nan")
        self.elapsed = 0.0
        if self.checkpoint is not None:
            try:
                self._load_checkpoint(self.checkpoint)
            except BaseException:
                self.env.close()
                raise

    @property
    def global_frame(self) -> int:
        return self.global_step * self.config.action_repeat

    @property
    def _record(self) -> bool:
        """Whether training episodes must render frames besides the observation (state runs)."""
        return not self.pixels and (self.terms.needs_episode_frames or self.frame_replay is not None)

    # ---- the loop ----------------------------------------------------------------------------
    def fit(self) -> RLResult:
        cfg = self.config
        where = "a worker process" if self.use_worker else "this process"
        self.log(f"{self.run_dir}: {cfg.task}, {cfg.obs} observations, reward = {self.terms.describe()}; "
                 f"{cfg.num_train_frames} frames; environment in {where}"
                 + (f"; resumed at frame {self.global_frame}" if self.checkpoint else ""))
        if self.last_eval_frame is None:
            self.evaluate()
        if self.global_frame < cfg.num_train_frames:
            self._train()
        if self.last_eval_frame != self.global_frame:
            self.evaluate()
        if self._checkpoint_frame() != self.global_frame:
            self.save_checkpoint()
        return self.result()

    def _train(self) -> None:
        """Agent steps until the episode that reaches ``num_train_frames`` ends."""
        cfg = self.config
        bar = self._progress_bar()
        report_start, report_frame = time.perf_counter(), self.global_frame
        update_metrics: list[dict[str, float]] = []
        update_every = cfg.agent.update_every_steps
        try:
            self.env.reset_async(episode_seed(cfg.seed, "train", self.episode), self._record)
            episode = self._start_episode()
            while True:
                tick = time.perf_counter()
                action = self.agent.act(self.stack.current(), self.global_step, eval_mode=False)
                self.env.step_async(action)
                tock = time.perf_counter()
                self.clock.add("act", tock - tick)
                if (self.global_frame >= cfg.num_seed_frames and self.global_step % update_every == 0
                        and self.replay.num_samplable > 0):
                    update_metrics.append(self._update())
                    tock = time.perf_counter()
                step = self.env.step_wait()
                self.clock.add("env_wait", time.perf_counter() - tock)
                self.global_step += 1
                episode.add(action, self.stack.push(step.obs), step.reward, step.success, step.terminated)
                if bar is not None:
                    bar.update(cfg.action_repeat)
                if not step.done:
                    continue
                # One report per episode; its interval runs from the previous episode's end (and so
                # includes that boundary's scoring, evaluation and checkpoint).
                now = time.perf_counter()
                seconds, frames = now - report_start, self.global_frame - report_frame
                report_start, report_frame = now, self.global_frame
                self.elapsed += seconds
                finished = self.global_frame >= cfg.num_train_frames
                episode_frames = self._episode_frames(episode)
                if self._due(cfg.eval_every_frames, self.last_eval_frame) and not finished:
                    self.evaluate()
                self.episode += 1
                if not finished:  # the reset runs in the worker while the episode is scored
                    self.env.reset_async(episode_seed(cfg.seed, "train", self.episode), self._record)
                self._finish_episode(episode, episode_frames, update_metrics, seconds, frames)
                update_metrics = []
                if bar is not None:
                    bar.set_postfix_str(self._postfix(), refresh=False)
                if finished:
                    break
                if self._due(cfg.checkpoint_every_frames, self._checkpoint_frame()):
                    self.save_checkpoint()
                episode = self._start_episode()
        finally:
            if bar is not None:
                bar.close()

    def _due(self, every: int, last: int | None) -> bool:
        """Whether a multiple of ``every`` frames was passed since frame ``last`` (``None``: frame 0)."""
        return every > 0 and self.global_frame // every > (last or 0) // every

    def _checkpoint_frame(self) -> int | None:
        checkpoints = run_checkpoints(self.run_dir)
        newest = checkpoints.newest()
        return checkpoints.number(newest) if newest is not None else None

    def _start_episode(self) -> _Episode:
        tick = time.perf_counter()
        obs = self.env.reset_wait()
        self.clock.add("env_wait", time.perf_counter() - tick)
        return _Episode(self.stack.reset(obs))

    def _episode_frames(self, episode: _Episode) -> np.ndarray | None:
        """The episode's ``uint8 (T + 1, H, W, 3)`` frames when its rewards need them: the newest frame of
        each pixel observation, or the frames the environment rendered for a state run."""
        if self.pixels:
            if not self.terms.needs_episode_frames:
                return None
            return frames_from_obs(np.stack([obs[-3:] for obs in episode.obs]))
        if not self._record:
            return None
        tick = time.perf_counter()
        frames = self.env.episode_frames()
        self.clock.add("env_wait", time.perf_counter() - tick)
        return frames

    def _update(self) -> dict[str, float]:
        tick = time.perf_counter()
        batch, metrics = self.terms.sample(self.replay, self.sampler, self.config.agent.batch_size, self.device,
                                           frame_replay=self.frame_replay)
        tock = time.perf_counter()
        self.clock.add("sample", tock - tick)
        metrics.update(self.agent.update(batch, self.global_step))
        self.clock.add("update", time.perf_counter() - tock)
        self.updates += 1
        return metrics

    def _finish_episode(self, episode: _Episode, frames_array: np.ndarray | None,
                        update_metrics: list[dict[str, float]], seconds: float, frames: int) -> None:
        tick = time.perf_counter()
        steps = len(episode)
        sparse = np.asarray(episode.rewards, np.float32)
        with torch_threads(self.reward_threads):
            components = self.terms.episode_components(frames_array, steps)
        self.clock.add("reward", time.perf_counter() - tick)
        obs = np.stack(episode.obs)
        actions = np.stack(episode.actions).astype(np.float32)
        self.replay.add(obs, actions, sparse, components, terminated=episode.terminated)
        if self.frame_replay is not None:
            self.frame_replay.add(np.ascontiguousarray(frames_array.transpose(0, 3, 1, 2)), actions, sparse,
                                  terminated=episode.terminated)
        metrics: dict[str, float] = {
            "train/episodes": self.episode, "train/episode_return": float(sparse.sum()),
            "train/episode_success": float(episode.success), "train/episode_length": steps,
            "train/updates": self.updates, "train/buffer_size": len(self.replay),
            "train/fps": frames / seconds if seconds > 0 else float("nan"),
            "train/total_time_s": self.elapsed,
        }
        if "model" in components:
            metrics["reward/episode_model_return"] = float(components["model"].sum())
        for key in dict.fromkeys(k for m in update_metrics for k in m):  # some (the discriminator's) not every update
            metrics[key] = float(np.mean([m[key] for m in update_metrics if key in m]))
        for part, value in self.clock.take_recent().items():
            metrics[f"train/time_{part}_s"] = value
        self.writer.log(self.global_frame, metrics)

    def evaluate(self) -> dict[str, float]:
        """Run ``num_eval_episodes`` episodes with the actor's mean action; log and return the results."""
        cfg = self.config
        tick = time.perf_counter()
        returns, successes, lengths, dense, video = [], [], [], [], []
        stack = _FrameStack(cfg.frame_stack)
        for j in range(cfg.num_eval_episodes):
            record = j < cfg.eval_video_episodes
            first = self.env.reset(episode_seed(cfg.seed, "eval", j), record=record and not self.pixels)
            observed = [first]
            obs = stack.reset(first)
            total, dense_total, success, steps = 0.0, 0.0, False, 0
            while True:
                step = self.env.step(self.agent.act(obs, self.global_step, eval_mode=True))
                obs = stack.push(step.obs)
                total += step.reward
                dense_total += step.dense_reward
                success = success or step.success
                steps += 1
                if record and self.pixels:
                    observed.append(step.obs)
                if step.done:
                    break
            if record:
                video.append(frames_from_obs(np.stack(observed)) if self.pixels else self.env.episode_frames())
            returns.append(total)
            dense.append(dense_total / (steps * cfg.action_repeat))
            successes.append(float(success))
            lengths.append(steps)
        metrics = {}
        if cfg.num_eval_episodes:
            metrics = {"eval/success_rate": float(np.mean(successes)), "eval/episode_return": float(np.mean(returns)),
                       "eval/episode_length": float(np.mean(lengths)), "eval/episodes": len(returns),
                       "eval/dense_reward": float(np.mean(dense))}
            self.last_success = metrics["eval/success_rate"]
            self.writer.log(self.global_frame, metrics)
        if video:
            from diffusion_reward.utils.video_io import write_video

            write_video(self.run_dir / "videos" / f"eval-{self.global_frame:09d}.mp4", np.concatenate(video),
                        fps=20.0)
        self.last_eval_frame = self.global_frame
        self.clock.add("eval", time.perf_counter() - tick)
        return metrics

    # ---- checkpoints ---------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        """Write ``checkpoints/frame-<N>`` atomically and drop older checkpoints."""
        tick = time.perf_counter()
        checkpoints = run_checkpoints(self.run_dir)
        previous = checkpoints.complete()
        if checkpoints.path(self.global_frame).exists():
            return checkpoints.path(self.global_frame)
        tmp = checkpoints.begin(self.global_frame)
        replays = {"replay": self.replay, "frame_replay": self.frame_replay}
        for name, replay in replays.items():
            if replay is None:
                continue
            if previous:
                _link_replay(previous[-1] / name, tmp / name)
            replay.save(tmp / name)
        save_tensors(tmp / "agent.safetensors", self.agent.state_dict())
        save_tensors(tmp / "rng.safetensors", rng_state())
        self.terms.save_state(tmp / "reward")
        checkpoints.write_marker(tmp, {
            "global_step": self.global_step, "global_frame": self.global_frame, "episode": self.episode,
            "updates": self.updates, "last_eval_frame": self.last_eval_frame, "last_success": self.last_success,
            "elapsed_s": self.elapsed, "seconds": self.clock.total, "sampler": self.sampler.bit_generator.state,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
        final = checkpoints.commit(self.global_frame)
        checkpoints.prune(1)
        self.clock.add("checkpoint", time.perf_counter() - tick)
        return final

    def _load_checkpoint(self, path: Path) -> None:
        loop = run_checkpoints(self.run_dir).read_marker(path)
        try:
            self.agent.load_state_dict(load_tensors(path / "agent.safetensors"))
        except ValueError as exc:
            raise UserError(f"{path}: {exc}") from None
        self.replay.load(path / "replay")
        if self.frame_replay is not None:
            self.frame_replay.load(path / "frame_replay")
        self.terms.load_state(path / "reward")
        set_rng_state(load_tensors(path / "rng.safetensors"))
        self.sampler.bit_generator.state = loop["sampler"]
        self.global_step = int(loop["global_step"])
        self.episode = int(loop["episode"])
        self.updates = int(loop["updates"])
        self.last_eval_frame = loop["last_eval_frame"]
        self.last_success = float(loop["last_success"])
        self.elapsed = float(loop["elapsed_s"])
        self.clock.total.update({k: float(v) for k, v in loop.get("seconds", {}).items() if k in self.clock.total})
        drop_rows_after(self.run_dir, self.global_frame)

    # ---- reporting -----------------------------------------------------------------------------
    def evaluations(self) -> list[dict[str, float]]:
        """Every evaluation of the run so far (from ``eval.csv``): frame, success rate, return and the
        simulator's dense reward per simulator step (see :func:`read_evaluations`)."""
        return read_evaluations(self.run_dir)

    def result(self) -> RLResult:
        return RLResult(self.run_dir, self.global_frame, self.episode, self.updates, self.evaluations(),
                        dict(self.clock.total))

    def _progress_bar(self) -> Any:
        if not self.progress:
            return None
        from tqdm import tqdm

        return tqdm(total=self.config.num_train_frames, initial=min(self.global_frame, self.config.num_train_frames),
                    desc=self.config.task, unit="frame", dynamic_ncols=True)

    def _postfix(self) -> str:
        total = self.elapsed
        fps = self.global_frame / total if total > 0 else float("nan")
        return f"{fps:.0f} frames/s, success {self.last_success:.2f}"

    def close(self) -> None:
        self.env.close()
        writer = getattr(self, "writer", None)
        if writer is not None:
            writer.close()


def read_evaluations(run_dir: str | os.PathLike) -> list[dict[str, float]]:
    """The evaluations in a run directory's ``eval.csv``, oldest first: ``frame``, ``success_rate``,
    ``episode_return`` (sparse) and ``dense_reward`` (the simulator's hand-shaped reward per simulator
    step, averaged over the evaluation episodes; NaN in runs made before it was recorded). No file: no
    evaluations; a row without numbers is a :class:`UserError` naming the file and row."""
    path = Path(run_dir) / "eval.csv"
    if not path.exists():
        return []
    out = []
    with path.open(newline="") as f:
        for i, r in enumerate(csv.DictReader(f)):
            try:
                out.append({"frame": int(float(r["step"])), "success_rate": float(r["success_rate"]),
                            "episode_return": float(r["episode_return"]),
                            "dense_reward": float(r.get("dense_reward") or "nan")})
            except (KeyError, TypeError, ValueError):
                raise UserError(f"{path}: row {i + 2} lacks a number in 'step', 'success_rate' or "
                                "'episode_return'") from None
    return out


def _link_replay(source: Path, target: Path) -> None:
    """Start ``target`` as a copy of the replay saved in ``source``: the index copied, episode files hard-linked
    (they never change once written, so two checkpoints share them)."""
    if not (source / INDEX_NAME).exists():
        return
    (target / EPISODE_DIR).mkdir(parents=True, exist_ok=True)
    shutil.copy2(source / INDEX_NAME, target / INDEX_NAME)
    for path in (source / EPISODE_DIR).iterdir():
        try:
            os.link(path, target / EPISODE_DIR / path.name)
        except OSError:  # a file system without hard links
            shutil.copy2(path, target / EPISODE_DIR / path.name)


def train(config: RLConfig, run_dir: str | os.PathLike | None = None, *, resume: bool = False,
          progress: bool = True) -> RLResult:
    """Train a DrQ-v2 agent as ``config`` says (see the module docstring); returns what the run did."""
    run = RLRun(config, run_dir, resume=resume, progress=progress)
    try:
        return run.fit()
    finally:
        run.close()
