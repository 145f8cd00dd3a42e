"""Collect episodes from simulated tasks with expert, random and noisy policies, on every core.

    from diffusion_reward.data.collect import CollectConfig, collect
    report = collect(CollectConfig(task=("reach-v3",), episodes=20, test_episodes=5), "data/reach")

What is collected. For every task and every policy, ``episodes`` train episodes and
``test_episodes`` test episodes (or, with ``test_fraction``, ``episodes`` in all of which that
fraction is test). The expert is MetaWorld's scripted one, or Adroit's planner
(:mod:`diffusion_reward.envs.adroit_expert`, up to a minute of one core per episode). An episode
runs the full horizon (100 agent steps for MetaWorld; ``max_steps`` shortens it), or stops ``stop_on_success`` steps after the first success when that is given. It
stores T = steps + 1 frames (the reset frame included), actions, sparse and dense rewards,
per-step success and the native low-dim states.

Success filtering and retries. Expert episodes are kept only when they succeed (unless
``keep_failed``): an episode that never succeeds is retried with the next seed, up to
``max_attempts`` attempts; an episode whose every attempt fails is reported and left out.
``random`` and ``noisy:<std>`` episodes are evaluation data and are always kept, successful or not.

Seeds. Episode ``i`` of a split, attempt ``a``, runs with seed
``seed * 10**8 + {train: 0, test: 5 * 10**7} + 100 * i + a``: train and test seeds never meet,
every attempt has its own seed, and the seed is recorded in the manifest. Policies share seeds, so
test episode ``i`` of ``random`` and of ``expert`` start from the same state and goal (paired
comparisons). An episode is reproducible from (task, policy, seed).

Resuming. Episode ``i`` of (task, policy, split) always goes to
``episodes/<task>/<policy>-<split>-<i>.npz``. Worker processes write their episode files and return
manifest entries; the main process records each with :meth:`DatasetWriter.add_entry` as it
arrives, so a killed collection keeps every finished episode. Running the same command again skips
the episodes the manifest already lists and collects only the missing ones (asking for more
episodes later adds the new indices); nothing is duplicated. One collection at a time per dataset.
The manifest lists a collection's episodes in the order of the plan (task, policy, split, index),
whatever order the workers finish them in and however often the collection was killed and rerun:
training reads episodes in manifest order, so the same command gives the same dataset.

Speed. ``workers`` processes (default: one per core) each keep their environments. MuJoCo's
software renderer (Mesa llvmpipe) spreads its work over every core by default, which oversubscribes
the machine when several workers render at once, so each worker gets ``LP_NUM_THREADS`` = its fair
share of the cores (and one OpenMP/PyTorch thread) before its renderer is created. With one worker
the collection runs in the calling process with the renderer's defaults. Workers are started with
``spawn`` (no OpenGL state is inherited), so a script that calls :func:`collect` with several
workers needs the usual ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import multiprocessing
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from diffusion_reward.config import option
from diffusion_reward.data.episodes import DatasetWriter, Episode, check_existing, policy_slug, save_episode
from diffusion_reward.data.policies import PolicySpec, make_policy, parse_policy
from diffusion_reward.errors import UserError

SEED_STRIDE_RUN = 10**8
SEED_OFFSET_SPLIT = {"train": 0, "test": 5 * 10**7}
SEED_STRIDE_EPISODE = 100  # attempts per episode are at most this many


@dataclasses.dataclass(frozen=True)
class CollectConfig:
    """What to collect. The same dataclass serves Python and ``diffusion-reward collect``."""

    task: tuple[str, ...] = option((), "tasks to collect (MetaWorld 3.x names such as reach-v3, or door/hammer/pen)")
    suite: tuple[str, ...] = option((), "named task suites to collect: metaworld-paper (the paper's 7 training "
                                        "tasks), metaworld-unseen (its 8 unseen tasks), adroit")
    policy: tuple[str, ...] = option(("expert",), "policies: expert (MetaWorld's scripted one; for Adroit a "
                                                  "planner on the simulator, ~30-40 s of one core per episode), "
                                                  "random, noisy:<std> (expert plus Gaussian action noise of that "
                                                  "std, clipped to [-1, 1]); several allowed")
    episodes: int = option(20, "train episodes per task and policy (with --test-fraction: the total, train and "
                               "test together)")
    test_episodes: int = option(0, "test episodes per task and policy (held out; seeds distinct from train)")
    test_fraction: float | None = option(None, "instead of --test-episodes: the fraction of --episodes that is "
                                               "test, rounded to whole episodes")
    keep_failed: bool = option(False, "keep expert episodes that never succeed (otherwise only successful ones "
                                      "are kept and failed ones retried with new seeds); random/noisy episodes "
                                      "are always kept")
    max_attempts: int = option(5, "seeds tried per expert episode before it is reported as failed and left out")
    stop_on_success: int | None = option(None, "end an episode this many agent steps after its first success; "
                                               "None runs the full horizon, as the paper's fixed-length episodes")
    max_steps: int | None = option(None, "episode horizon in agent steps; None: the task's (100 for MetaWorld)")
    image_size: int = option(64, "side of the square rendered frames, in pixels")
    camera: str | None = option(None, "camera to render from; None: the task's (corner2 for MetaWorld; "
                                      "corner2-near is corner2 moved closer)")
    action_repeat: int = option(2, "simulator steps per agent step (the paper's 2); must match RL")
    seed: int = option(0, "base seed; episode seeds derive from it (see the data.collect docs)")
    workers: int | None = option(None, "worker processes; None: one per CPU core; 1 runs in this process")

    def tasks(self) -> list[str]:
        """The canonical task names, suites expanded, duplicates dropped, order kept."""
        from diffusion_reward.envs import resolve_suite, resolve_task

        names: list[str] = []
        for suite in self.suite:
            names.extend(resolve_suite(suite))
        names.extend(self.task)
        out: list[str] = []
        for name in names:
            canonical = resolve_task(name).name
            if canonical not in out:
                out.append(canonical)
        if not out:
            raise UserError("no task given; name tasks with --task (e.g. --task reach-v3) or a suite with "
                            "--suite metaworld-paper")
        return out

    def policies(self) -> list[PolicySpec]:
        specs: list[PolicySpec] = []
        for name in self.policy:
            spec = parse_policy(name)
            if spec not in specs:
                specs.append(spec)
        if not specs:
            raise UserError("no policy given; use --policy expert (or random, noisy:<std>)")
        return specs

    def split_counts(self) -> dict[str, int]:
        """Episodes per split for each (task, policy)."""
        if self.episodes < 0 or self.test_episodes < 0:
            raise UserError("--episodes and --test-episodes must be >= 0")
        if self.test_fraction is None:
            return {"train": self.episodes, "test": self.test_episodes}
        if self.test_episodes:
            raise UserError("give either --test-episodes or --test-fraction, not both")
        if not 0.0 <= self.test_fraction <= 1.0:
            raise UserError(f"--test-fraction must be between 0 and 1, got {self.test_fraction}")
        n_test = int(round(self.episodes * self.test_fraction))
        return {"train": self.episodes - n_test, "test": n_test}

    def validate(self) -> None:
        if not 1 <= self.max_attempts <= SEED_STRIDE_EPISODE:
            raise UserError(f"--max-attempts must be between 1 and {SEED_STRIDE_EPISODE}, got {self.max_attempts}")
        if self.stop_on_success is not None and self.stop_on_success < 0:
            raise UserError(f"--stop-on-success must be >= 0, got {self.stop_on_success}")
        if self.max_steps is not None and self.max_steps < 1:
            raise UserError(f"--max-steps must be >= 1, got {self.max_steps}")
        if self.image_size < 8:
            raise UserError(f"--image-size must be at least 8 pixels, got {self.image_size}")
        if self.action_repeat < 1:
            raise UserError(f"--action-repeat must be >= 1, got {self.action_repeat}")
        if self.workers is not None and self.workers < 1:
            raise UserError(f"--workers must be >= 1, got {self.workers}")
        if self.seed < 0:
            raise UserError(f"--seed must be >= 0, got {self.seed}")


def episode_seed(base: int, split: str, index: int, attempt: int) -> int:
    """The environment seed of attempt ``attempt`` of episode ``index`` in ``split`` (see the module docs)."""
    if index >= SEED_OFFSET_SPLIT["test"] // SEED_STRIDE_EPISODE:
        raise UserError(f"episode index {index} is too large for the seed scheme")
    return base * SEED_STRIDE_RUN + SEED_OFFSET_SPLIT[split] + SEED_STRIDE_EPISODE * index + attempt


def episode_file(task: str, policy: str, split: str, index: int) -> str:
    return f"episodes/{task}/{policy_slug(policy)}-{split}-{index:05d}.npz"


@dataclasses.dataclass(frozen=True)
class Job:
    """One episode to collect (with its retry seeds); everything a worker needs, picklable."""

    task: str
    policy: str
    split: str
    index: int
    seeds: tuple[int, ...]
    require_success: bool
    file: str
    root: str
    image_size: int
    camera: str | None
    action_repeat: int
    max_steps: int | None
    stop_on_success: int | None
    render: dict[str, Any]


def plan(config: CollectConfig, root: str | os.PathLike, done: Iterable[str] = ()) -> list[Job]:
    """The episodes to collect, skipping files in ``done``; ordered task by task (workers keep their envs)."""
    config.validate()
    done = set(done)
    counts = config.split_counts()
    tasks, policies = config.tasks(), config.policies()
    from diffusion_reward.envs.rendering import default_render_settings

    render = default_render_settings()
    jobs = []
    for task in tasks:
        for spec in policies:
            retry = spec.kind == "expert" and not config.keep_failed
            for split in ("train", "test"):
                for index in range(counts[split]):
                    file = episode_file(task, spec.name, split, index)
                    if file in done:
                        continue
                    attempts = config.max_attempts if retry else 1
                    seeds = tuple(episode_seed(config.seed, split, index, a) for a in range(attempts))
                    jobs.append(Job(task, spec.name, split, index, seeds, retry, file, str(root), config.image_size,
                                    config.camera, config.action_repeat, config.max_steps, config.stop_on_success,
                                    render))
    return jobs


# ---------------------------------------------------------------------------------------------
# Running episodes (in worker processes, or in this one)

_ENV_CACHE: "collections.OrderedDict[tuple, Any]" = collections.OrderedDict()
_EXPERT_CACHE: dict[str, Any] = {}
_ENV_CACHE_SIZE = 3


def _get_env(job: Job) -> Any:
    from diffusion_reward.envs import RenderSettings, make_env

    key = (job.task, job.image_size, job.camera, job.action_repeat, job.max_steps, tuple(sorted(job.render.items())))
    env = _ENV_CACHE.pop(key, None)
    if env is None:
        env = make_env(job.task, image_size=job.image_size, camera=job.camera, action_repeat=job.action_repeat,
                       max_episode_steps=job.max_steps, render=RenderSettings(**job.render))
        while len(_ENV_CACHE) >= _ENV_CACHE_SIZE:
            _, old = _ENV_CACHE.popitem(last=False)
            old.close()
    _ENV_CACHE[key] = env
    return env


def close_cached_envs() -> None:
    while _ENV_CACHE:
        _, env = _ENV_CACHE.popitem()
        env.close()


def rollout(env: Any, policy: Callable[[np.ndarray], np.ndarray], seed: int,
            stop_on_success: int | None = None) -> Episode:
    """Run one episode of ``policy`` in ``env`` from ``reset(seed=seed)`` to the time limit.

    With ``stop_on_success`` the episode ends that many steps after the first successful step.
    """
    obs, info = env.reset(seed=seed)
    frames = [np.asarray(obs).transpose(1, 2, 0)]
    states = [np.asarray(info["state"], np.float32)]
    actions, rewards, dense, success = [], [], [], []
    first_success = None
    step = 0
    while True:
        action = np.asarray(policy(states[-1]), np.float32)
        obs, reward, terminated, truncated, info = env.step(action)
        frames.append(np.asarray(obs).transpose(1, 2, 0))
        states.append(np.asarray(info["state"], np.float32))
        actions.append(action)
        rewards.append(reward)
        dense.append(info["dense_reward"])
        success.append(bool(info["success"]))
        if success[-1] and first_success is None:
            first_success = step
        step += 1
        if terminated or truncated:
            break
        if stop_on_success is not None and first_success is not None and step - 1 - first_success >= stop_on_success:
            break
    return Episode(frames=np.stack(frames), actions=np.stack(actions), rewards=np.asarray(rewards, np.float32),
                   dense=np.asarray(dense, np.float32), success=np.asarray(success, bool), states=np.stack(states),
                   info={"first_success": first_success})


def run_job(job: Job) -> dict[str, Any]:
    """Collect one episode (retrying failed expert attempts); write its file; return the outcome.

    The outcome holds ``entry`` (the manifest entry, or ``None`` when every attempt failed),
    ``attempts``, ``successes`` (attempts that succeeded), ``frames`` (rendered, all attempts)
    and ``seconds``.
    """
    start = time.perf_counter()
    env = _get_env(job)
    spec = parse_policy(job.policy)
    expert = None
    if spec.needs_expert and not env.task_spec.expert_plans:  # a planner (Adroit) is built per episode
        if job.task not in _EXPERT_CACHE:
            from diffusion_reward.envs import expert_policy

            _EXPERT_CACHE[job.task] = expert_policy(job.task)
        expert = _EXPERT_CACHE[job.task]
    attempts = successes = frames = 0
    kept: tuple[Episode, int, int] | None = None
    for attempt, seed in enumerate(job.seeds):
        policy = make_policy(spec, job.task, env.action_space, seed=seed, expert=expert, env=env)
        episode = rollout(env, policy, seed, job.stop_on_success)
        attempts += 1
        frames += len(episode)
        successes += int(episode.solved)
        if episode.solved or not job.require_success:
            kept = (episode, seed, attempt)
            break
    entry = None
    if kept is not None:
        episode, seed, attempt = kept
        save_episode(Path(job.root) / job.file, episode)
        entry = {"file": job.file, "task": job.task, "policy": job.policy, "split": job.split, "seed": seed,
                 "length": len(episode), "success": episode.solved, "camera": env.camera,
                 "source": env.task_spec.domain, "index": job.index, "attempt": attempt,
                 "horizon": env.max_episode_steps, "stop_on_success": job.stop_on_success,
                 "first_success": episode.info["first_success"], "return": float(np.sum(episode.rewards)),
                 "dense_return": float(np.sum(episode.dense))}
    return {"job": job, "entry": entry, "attempts": attempts, "successes": successes, "frames": frames,
            "seconds": time.perf_counter() - start}


def _worker_init(render_threads: int) -> None:
    """Runs first in every worker process: thread counts before any renderer or torch exists."""
    os.environ["LP_NUM_THREADS"] = str(render_threads)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = "1"
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


# ---------------------------------------------------------------------------------------------
# The driver


@dataclasses.dataclass
class CollectReport:
    """What a collection did, per (task, policy) and in total."""

    workers: int
    seconds: float = 0.0
    frames: int = 0
    already_present: int = 0
    bad_existing: list[str] = dataclasses.field(default_factory=list)
    stats: dict[tuple[str, str], dict[str, int]] = dataclasses.field(default_factory=dict)
    failed: list[str] = dataclasses.field(default_factory=list)
    written: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("nan")

    def record(self, outcome: dict[str, Any]) -> None:
        job: Job = outcome["job"]
        s = self.stats.setdefault((job.task, job.policy), {"attempts": 0, "successes": 0, "train": 0, "test": 0,
                                                           "failed": 0, "frames": 0})
        s["attempts"] += outcome["attempts"]
        s["successes"] += outcome["successes"]
        s["frames"] += outcome["frames"]
        self.frames += outcome["frames"]
        if outcome["entry"] is None:
            s["failed"] += 1
            self.failed.append(f"{job.task} {job.policy} {job.split} episode {job.index}: no success in "
                               f"{outcome['attempts']} attempts (seeds {job.seeds[0]}..{job.seeds[-1]})")
        else:
            s[job.split] += 1
            self.written.append(outcome["entry"])

    def success_rate(self, task: str, policy: str) -> float:
        s = self.stats.get((task, policy))
        return s["successes"] / s["attempts"] if s and s["attempts"] else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {"workers": self.workers, "seconds": self.seconds, "frames": self.frames,
                "frames_per_second": self.frames_per_second, "already_present": self.already_present,
                "episodes_written": len(self.written), "failed": list(self.failed),
                "per_task": [{"task": t, "policy": p, **s, "success_rate": self.success_rate(t, p)}
                             for (t, p), s in self.stats.items()]}

    def table(self) -> str:
        lines = [f"{'task':22s} {'policy':10s} {'train':>5s} {'test':>5s} {'failed':>6s} {'attempts':>8s} "
                 f"{'success':>8s}"]
        for (task, policy), s in sorted(self.stats.items()):
            lines.append(f"{task:22s} {policy:10s} {s['train']:5d} {s['test']:5d} {s['failed']:6d} "
                         f"{s['attempts']:8d} {100 * self.success_rate(task, policy):7.1f}%")
        if not self.stats:
            return f"nothing to collect: all {self.already_present} episodes are already in the dataset"
        lines.append(f"{self.frames} frames in {self.seconds:.1f} s with {self.workers} worker(s): "
                     f"{self.frames_per_second:.1f} frames/s"
                     + (f"; {self.already_present} episodes were already in the dataset" if self.already_present
                        else ""))
        return "\n".join(lines)


def default_workers() -> int:
    from diffusion_reward.utils.device import available_cpus

    return available_cpus()


def collect(config: CollectConfig, out: str | os.PathLike, *, skip_bad: bool = False, progress: bool = True,
            log: Callable[[str], None] | None = None) -> CollectReport:
    """Collect the episodes ``config`` asks for into the dataset ``out`` (created or extended).

    Episodes the dataset already lists are skipped (see the module docs on resuming). Episode
    files already in the dataset are read first: a corrupt one is an error naming it, or, with
    ``skip_bad``, is reported, dropped from the manifest and collected again.
    """

    from diffusion_reward.envs.rendering import default_render_settings

    config.validate()
    root = Path(out)
    bad_existing = check_existing(root, skip_bad)
    for message in bad_existing:
        if log:
            log(f"will collect again: {message}")
    attributes = {"image_size": config.image_size, "render": default_render_settings(),
                  "action_repeat": config.action_repeat}
    writer = DatasetWriter(root, attributes)
    writer.flush()  # the dataset and its attributes exist from the start
    done = {e["file"] for e in writer.manifest["episodes"]}
    jobs = plan(config, root, done)
    order = {job.file: rank for rank, job in enumerate(plan(config, root, ()))}
    workers = min(config.workers or default_workers(), max(1, len(jobs)))
    report = CollectReport(workers=workers, already_present=len(order) - len(jobs), bad_existing=bad_existing)
    if not jobs:
        return report
    from diffusion_reward.utils.provenance import code_version

    code = code_version()  # which code made each episode (the expert's planner may change between collections)
    bar = _progress_bar(len(jobs), progress)
    start = time.perf_counter()

    def record(outcome: dict[str, Any]) -> None:
        if outcome["entry"] is not None:
            writer.add_entry({**outcome["entry"], "code": code}, order=order)
        report.record(outcome)
        report.seconds = time.perf_counter() - start
        if bar is not None:
            bar.set_postfix_str(f"{report.frames_per_second:.0f} frames/s", refresh=False)
            bar.update(1)
        elif log and outcome["entry"] is None:
            log(report.failed[-1])

    try:
        if workers == 1:
            try:
                for job in jobs:
                    record(run_job(job))
            finally:
                close_cached_envs()
        else:
            _run_pool(jobs, workers, record)
    finally:
        if bar is not None:
            bar.close()
        report.seconds = time.perf_counter() - start
    return report


def _run_pool(jobs: list[Job], workers: int, record: Callable[[dict[str, Any]], None]) -> None:
    render_threads = max(1, default_workers() // workers)
    # "spawn": fresh interpreters, no OpenGL or MuJoCo state inherited from this process.
    context = multiprocessing.get_context("spawn")
    executor = concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context,
                                                      initializer=_worker_init, initargs=(render_threads,))
    try:
        pending = {executor.submit(run_job, job) for job in jobs}
        while pending:
            finished, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in finished:
                record(future.result())  # a worker's exception is raised here
    except BaseException:
        executor.shutdown(wait=False, cancel_futures=True)
        raise
    executor.shutdown(wait=True)


def _progress_bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="collecting", unit="episode", dynamic_ncols=True)


def format_failed(report: CollectReport, limit: int = 10) -> list[str]:
    lines = report.failed[:limit]
    if len(report.failed) > limit:
        lines.append(f"... and {len(report.failed) - limit} more")
    return lines


__all__ = ["CollectConfig", "CollectReport", "Job", "collect", "episode_file", "episode_seed", "plan", "rollout",
           "run_job"]
