"""The end-to-end demo: from nothing to a report that shows Diffusion Reward working.

Stages, each cached in its own folder of the demo directory (a stage whose ``stage.json``
records the same settings is reused; ``fresh=True`` starts over):

1. ``data``: expert episodes (train and test), noisy experts and a random policy (test), and a
   few random train episodes (the negatives AMP trains against);
2. ``codec``: the VQ-GAN on the expert frames;
3. ``video``: VQ-Diffusion (and VideoGPT for VIPER) on the codec's tokens of expert windows;
4. ``rewards``: Diffusion Reward (entropy; the likelihood variant with ``likelihood``), VIPER
   (with ``viper``), AMP, RND, and the motion reference, fitted on the training expert episodes;
5. ``evaluate``: reward quality on the held-out episodes (table + figures);
6. ``rl``: a short DrQ-v2 comparison (state observations, learned reward from frames);
7. the report: ``report.html`` (self-contained) and ``report.md``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from diffusion_reward.config import option, to_dict
from diffusion_reward.errors import UserError
from diffusion_reward.utils.checkpoint import atomic_write_json, read_json
from diffusion_reward.utils.logging import get_logger


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """What the demo runs; ``PRESETS['full']`` fits in ~15 minutes on two CPU cores, ``quick`` in ~3."""

    tasks: tuple[str, ...] = option(("drawer-open-v3", "coffee-push-v3"), "MetaWorld tasks")
    expert_episodes: int = option(10, "expert train episodes per task (the video model's training data)")
    test_episodes: int = option(3, "held-out episodes per task and policy (expert, each noise level, random)")
    noise_levels: tuple[float, ...] = option((0.3, 1.0), "std of the Gaussian action noise of the noisy experts")
    random_train_episodes: int = option(3, "random-policy train episodes per task (AMP's negatives)")
    max_steps: int = option(100, "episode horizon in agent steps")
    codec_preset: str = option("small", "codec preset")
    codec_steps: int = option(600, "codec training steps")
    video_preset: str = option("small", "VQ-Diffusion preset")
    video_steps: int = option(400, "VQ-Diffusion training steps")
    likelihood: bool = option(False, "also evaluate Diffusion Reward's likelihood variant (as costly as the "
                                     "entropy reward: about 3 more minutes on two CPU cores)")
    viper: bool = option(False, "also train a VideoGPT and evaluate the VIPER baseline (about 4 more minutes on "
                                "two CPU cores)")
    viper_preset: str = option("small", "VideoGPT preset")
    viper_steps: int = option(200, "VideoGPT training steps")
    baseline_steps: int = option(300, "offline training updates of AMP and RND")
    stats_episodes: int = option(3, "expert train episodes per task whose rewards give the video-model rewards' "
                                    "standardization statistics")
    eval_windows: int = option(64, "held-out windows on which the video models' bits per token are reported")
    rl_task: str = option("drawer-open-v3", "task of the RL comparison (one of --tasks: the reward model knows "
                                            "only those)")
    rl_rewards: tuple[str, ...] = option(("diffusion", "sparse"), "rewards compared in RL")
    rl_frames: int = option(4000, "environment frames per RL run (0: skip RL)")
    bf16: bool | None = option(None, "bfloat16 autocast for training and reward inference (default: each "
                                     "preset's choice, on where bf16 matrix products beat float32 on this machine)")
    seed: int = option(0, "seed of every stage")


PRESETS: dict[str, DemoConfig] = {
    "full": DemoConfig(),
    "quick": DemoConfig(tasks=("drawer-open-v3",), expert_episodes=6, test_episodes=3, noise_levels=(1.0,),
                        random_train_episodes=2, codec_preset="tiny", codec_steps=150, video_preset="tiny",
                        video_steps=250, baseline_steps=100, rl_frames=2000),
}


# Seconds each stage of the presets took on the reference machine (2 cores of an AMD EPYC with
# AVX512-BF16, quiet, 2026-12-03, with the 128-code small codec and the 2-block small VQ-Diffusion):
# the time-left estimate scales them by this machine's speed on the stages done. (A 2-core EPYC
# without bf16 units took 11.5 min for the full demo with the former 6-block model: data 46 s, codec
# 86 s, video 206 s.) The quick times are from the 1024-code build; its tiny codec has not changed.
REFERENCE_SECONDS: dict[str, dict[str, float]] = {
    "full": {"data": 44.2, "codec": 58.7, "video": 89.6, "rewards": 34.7, "evaluate": 25.3, "rl": 88.3},
    "quick": {"data": 17.2, "codec": 16.4, "video": 10.3, "rewards": 10.5, "evaluate": 4.6, "rl": 43.0},
}


class Stage:
    """A cached step of the demo: ``run`` is skipped when ``stage.json`` records the same ``key``."""

    def __init__(self, root: Path, name: str, key: dict[str, Any], fresh: bool):
        self.dir = root / name
        self.name = name
        self.key = json.loads(json.dumps(key, default=str))
        self.marker = self.dir / "stage.json"
        if fresh and self.dir.exists():
            shutil.rmtree(self.dir)

    def cached(self) -> dict[str, Any] | None:
        if self.marker.is_file():
            data = read_json(self.marker)
            if data.get("key") == self.key:
                return data
        return None

    def finish(self, result: dict[str, Any], seconds: float) -> dict[str, Any]:
        data = {"key": self.key, "result": result, "seconds": seconds}
        atomic_write_json(self.marker, data)
        return data


def run_demo(config: DemoConfig, out: str | Path = "runs/demo", fresh: bool = False,
             announce: Callable[[str], None] | None = None) -> Path:
    """Run (or resume) the demo into ``out``; returns the path of ``report.html``."""
    from diffusion_reward.utils.seeding import seed_everything

    if config.rl_frames > 0 and config.rl_rewards and config.rl_task not in config.tasks:
        raise UserError(f"rl_task {config.rl_task!r} is not one of the demo's tasks {list(config.tasks)}: the "
                        "learned reward knows only those (pass --rl-task, or --rl-frames 0 to skip RL)")
    root = Path(out)
    if fresh and root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    say = announce or get_logger().info
    seed_everything(config.seed)
    timings: dict[str, float] = {}
    results: dict[str, Any] = {}
    plan = _stages(config)
    expected = expected_seconds(config)
    started = time.perf_counter()
    for i, (name, key_fields, fn) in enumerate(plan, 1):
        key = {k: getattr(config, k) for k in key_fields}
        key.update(_preset_contents(key))
        stage = Stage(root, name, key, fresh=False)
        hit = stage.cached()
        if hit is not None:
            say(f"[{i}/{len(plan)}] {name}: reusing finished work in {stage.dir}")
            results[name], timings[name] = hit["result"], hit["seconds"]
            continue
        left = _time_left(expected, timings, [s[0] for s in plan[i - 1:]])
        say(f"[{i}/{len(plan)}] {name} ...{left}")
        t0 = time.perf_counter()
        if stage.dir.exists():
            shutil.rmtree(stage.dir)  # unfinished or outdated: redo it whole
        stage.dir.mkdir(parents=True)
        result = fn(config, root, results)
        timings[name] = time.perf_counter() - t0
        results[name] = stage.finish(result, timings[name])["result"]
        say(f"[{i}/{len(plan)}] {name} done in {timings[name]:.0f} s (demo so far {time.perf_counter() - started:.0f} s)")
    from diffusion_reward.demo.report import write_demo_report
    from diffusion_reward.utils.provenance import machine

    atomic_write_json(root / "config.json", to_dict(config))
    html = write_demo_report(config, root, results, timings, machine())
    say(f"report: {html}")
    return html


def expected_seconds(config: DemoConfig) -> dict[str, float] | None:
    """Seconds each stage of ``config`` took on the reference machine, when it is a preset."""
    for name, preset in PRESETS.items():
        if config == preset:
            return REFERENCE_SECONDS.get(name)
    return None


def _time_left(expected: dict[str, float] | None, done: dict[str, float], remaining: list[str]) -> str:
    """`` (about N min left)``: the reference times of the remaining stages, scaled by how much
    slower or faster this machine ran the stages done so far in this run."""
    if not expected:
        return ""
    ran = [s for s in done if s in expected and expected[s] > 0]
    speed = sum(done[s] for s in ran) / sum(expected[s] for s in ran) if ran else 1.0
    seconds = speed * sum(expected.get(s, 0.0) for s in remaining)
    return f" (about {max(1, round(seconds / 60))} min left)" if seconds >= 60 else f" (about {seconds:.0f} s left)"


# ---- the stages ------------------------------------------------------------------------------------

DATA_KEYS = ("tasks", "expert_episodes", "test_episodes", "noise_levels", "random_train_episodes", "max_steps", "seed")


def _stages(config: DemoConfig) -> list[tuple[str, tuple[str, ...], Callable]]:
    stages = [("data", DATA_KEYS, stage_data),
              ("codec", DATA_KEYS + ("codec_preset", "codec_steps", "bf16"), stage_codec),
              ("video", DATA_KEYS + ("codec_preset", "codec_steps", "video_preset", "video_steps", "viper",
                                     "viper_preset", "viper_steps", "eval_windows", "bf16"), stage_video)]
    model_keys = stages[-1][1]
    reward_keys = model_keys + ("likelihood", "baseline_steps", "stats_episodes")
    stages.append(("rewards", reward_keys, stage_rewards))
    stages.append(("evaluate", reward_keys, stage_evaluate))
    if config.rl_frames > 0 and config.rl_rewards:
        stages.append(("rl", model_keys + ("rl_task", "rl_rewards", "rl_frames"), stage_rl))
    return stages


def _preset_contents(key: dict[str, Any]) -> dict[str, Any]:
    """What the named network presets in a stage's key stand for, so that a stage cached by an
    earlier version whose ``small`` preset was a different network is redone, not reused."""
    from diffusion_reward.config import to_dict
    from diffusion_reward.models.codec.vqgan import PRESETS as CODEC_PRESETS
    from diffusion_reward.models.video import videogpt, vqdiffusion

    tables = {"codec_preset": CODEC_PRESETS, "video_preset": vqdiffusion.PRESETS, "viper_preset": videogpt.PRESETS}
    return {f"{field}_network": to_dict(tables[field][key[field]]) for field in tables if field in key}


def stage_data(config: DemoConfig, root: Path, results: dict[str, Any]) -> dict[str, Any]:
    from diffusion_reward.data.collect import CollectConfig, collect

    out = root / "data"
    policies = ("expert", "random", *(f"noisy:{s}" for s in config.noise_levels))
    runs = [CollectConfig(task=config.tasks, policy=("expert",), episodes=config.expert_episodes,
                          test_episodes=config.test_episodes, max_steps=config.max_steps, seed=config.seed),
            CollectConfig(task=config.tasks, policy=policies[1:], episodes=0, test_episodes=config.test_episodes,
                          max_steps=config.max_steps, seed=config.seed),
            CollectConfig(task=config.tasks, policy=("random",), episodes=config.random_train_episodes,
                          test_episodes=config.test_episodes, max_steps=config.max_steps, seed=config.seed)]
    frames, seconds = 0, 0.0
    for cfg in runs:
        report = collect(cfg, out)
        frames += report.frames
        seconds += report.seconds
    from diffusion_reward.data.episodes import load_dataset

    ds = load_dataset(out)
    return {"dataset": str(out), "episodes": len(ds), "frames": ds.num_frames(), "collect_frames_per_s":
            frames / max(seconds, 1e-9), "summary": ds.summary()}


def _trainer(config: DemoConfig, run_dir: Path, steps: int, base: Any) -> Any:
    bf16 = base.bf16 if config.bf16 is None else config.bf16  # auto: each preset's own choice
    return dataclasses.replace(base, run_dir=str(run_dir), steps=steps, seed=config.seed, bf16=bf16,
                               tensorboard=False, checkpoint_every=max(steps, 1))


def stage_codec(config: DemoConfig, root: Path, results: dict[str, Any]) -> dict[str, Any]:
    from diffusion_reward.train.codec import TRAIN_PRESETS, train_codec

    run_dir = root / "codec"
    trainer = _trainer(config, run_dir / "run", config.codec_steps, TRAIN_PRESETS[config.codec_preset][1])
    res = train_codec(root / "data", out=run_dir / "model", preset=config.codec_preset, trainer_config=trainer)
    return {"model": str(res.artefact), "metrics": _jsonable(res.metrics),
            "reconstructions": str(_find(run_dir, "reconstructions.png"))}


def stage_video(config: DemoConfig, root: Path, results: dict[str, Any]) -> dict[str, Any]:
    from diffusion_reward.train.video import TRAIN_PRESETS, train_video

    codec = Path(results["codec"]["model"])
    out: dict[str, Any] = {}
    jobs = [("vqdiffusion", config.video_preset, config.video_steps)]
    if config.viper:
        jobs.append(("videogpt", config.viper_preset, config.viper_steps))
    for kind, preset, steps in jobs:
        run_dir = root / "video" / kind
        trainer = _trainer(config, run_dir / "run", steps, TRAIN_PRESETS[kind][preset][1])
        base = TRAIN_PRESETS[kind][preset][0]
        train_cfg = dataclasses.replace(base, warmup_steps=min(base.warmup_steps, max(1, steps // 10)),
                                        eval_windows=min(base.eval_windows, config.eval_windows))
        res = train_video(root / "data", codec, model=kind, out=run_dir / "model", preset=preset,
                          train_config=train_cfg, trainer_config=trainer)
        out[kind] = {"model": str(res.artefact), "metrics": _jsonable(res.metrics),
                     "samples": str(_find(run_dir, "samples.png"))}
    return out


def stage_rewards(config: DemoConfig, root: Path, results: dict[str, Any]) -> dict[str, Any]:
    from diffusion_reward.data.episodes import load_dataset
    from diffusion_reward.rewards.fit import fit_reward_model

    ds = load_dataset(root / "data")
    video = results["video"]
    specs: dict[str, dict[str, Any]] = {
        "diffusion (entropy)": dict(kind="diffusion", video_dir=video["vqdiffusion"]["model"], variant="entropy"),
    }
    if config.likelihood:
        specs["diffusion (likelihood)"] = dict(kind="diffusion", video_dir=video["vqdiffusion"]["model"],
                                               variant="likelihood")
    if "videogpt" in video:
        specs["viper"] = dict(kind="viper", video_dir=video["videogpt"]["model"])
    specs["amp"] = dict(kind="amp", steps=config.baseline_steps, preset="small")
    specs["rnd"] = dict(kind="rnd", steps=config.baseline_steps, preset="small")
    out = {}
    for name, spec in specs.items():
        directory = root / "rewards" / name.replace(" ", "-").replace("(", "").replace(")", "")
        model, info = fit_reward_model(dataset=ds, bf16=config.bf16, seed=config.seed,
                                       stats_episodes=config.stats_episodes, **spec)
        model.save_pretrained(directory)
        out[name] = {"dir": str(directory), "info": _jsonable(info)}
    return out


def stage_evaluate(config: DemoConfig, root: Path, results: dict[str, Any]) -> dict[str, Any]:
    from diffusion_reward.data.episodes import load_dataset
    from diffusion_reward.evaluation.reward_quality import evaluate_and_write
    from diffusion_reward.rewards import load_reward_model
    from diffusion_reward.rewards.motion import MotionReward

    models = {name: load_reward_model(r["dir"]) for name, r in results["rewards"].items()}
    models["motion (reference)"] = MotionReward()
    ds = load_dataset(root / "data").select(split="test")
    res = evaluate_and_write(models, ds, root / "evaluate")
    return {"models": res["models"], "figures": res["figures"], "table": res["table"]}


def stage_rl(config: DemoConfig, root: Path, results: dict[str, Any]) -> dict[str, Any]:
    from diffusion_reward.demo.rl_runs import run_rl_comparison

    reward_dirs = {"diffusion": results["rewards"]["diffusion (entropy)"]["dir"]}
    if "viper" in results["rewards"]:
        reward_dirs["viper"] = results["rewards"]["viper"]["dir"]
    return run_rl_comparison(config.rl_task, config.rl_rewards, reward_dirs, config.rl_frames, root / "rl",
                             seed=config.seed, expert_data=root / "data")


def _find(directory: Path, name: str) -> Path | None:
    hits = sorted(directory.rglob(name))
    return hits[0] if hits else None


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=lambda o: float(o) if hasattr(o, "__float__") else str(o)))
