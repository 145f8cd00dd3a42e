"""Kill-anywhere soak test: every long command, SIGKILLed at random moments and run again, must end with
the results of a run that was never interrupted. One JSON line per command.

    nice -n 5 python benchmarks/soak.py [--commands collect train-codec ...] [--kills 3] [--seed 0]
                                        [--out benchmarks/results/soak_<machine>.jsonl] [--workdir DIR]

For each command (``collect``, ``train-codec``, ``train-video``, ``fit-reward``, ``train-rl``,
``benchmark-rl``), on a tiny configuration (:class:`Budget`):

1. the reference: the command once, uninterrupted, into a fresh output; its wall time is T;
2. ``--kills`` trials: the same command into another fresh output, its whole process group SIGKILLed
   at a moment drawn uniformly in [0, T); then, with probability 1/2 each time (at most 3 kills in a
   row), the rerun killed again the same way; then rerun (with ``--resume`` where the command needs
   it) until it finishes;
3. each trial's end result compared exactly with the reference's: weights (every tensor of every
   safetensors file), datasets (the manifest without its creation time, the file list, every episode
   array), reward models (config.json with the reward statistics), RL runs (the final checkpoint's
   tensors, eval.csv, the other metric CSVs without their timing columns) and benchmark records (the
   evaluation curve of every cell).

Lost work, per trial: the wall time of all its attempts minus T (the killed attempts' work that was
redone, plus the start-up of every restart; timings are noisy on a shared machine), and, where the files
tell, the units (steps, frames, episodes) done at each kill minus those that survived it (the newest
checkpoint, or the manifest).

The commands run as ``python -m diffusion_reward.cli`` child processes of a new session each, with this
checkout's ``src`` first on ``PYTHONPATH``. The inputs they share (a dataset, a codec, a video model, a
reward model) are the references of the commands that make them, made once at the start.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
sys.path.insert(0, str(SRC))  # measure (and name the code version of) this checkout, as the children run it

ORDER = ("collect", "train-codec", "train-video", "fit-reward", "train-rl", "benchmark-rl")
MAX_KILLS_IN_A_ROW = 3
# keys of result JSON files that hold times, durations or the output's own path: not compared
VOLATILE_KEY = re.compile(r"(^|_)time(_s)?$|^(created|finished|elapsed_s|seconds|wall_s_this_process|run_dir|resume)$")
TIMING_COLUMN = re.compile(r"time|fps|per_s")


@dataclasses.dataclass(frozen=True)
class Budget:
    """How big the tiny configurations are (the defaults: each uninterrupted run takes seconds to tens of
    seconds on two busy CPU cores)."""

    task: str = "reach-v3"
    policies: tuple[str, ...] = ("expert", "random")
    episodes: int = 2  # collect: train episodes per policy
    test_episodes: int = 1
    max_steps: int = 25  # agent steps per collected episode
    collect_workers: int = 0  # 0: the command's default, one worker process per core
    train_steps: int = 32  # train-codec and train-video
    fit_kind: str = "diffusion"  # diffusion/viper read train-video's model; rnd/amp train on the data alone
    fit_steps: int = 20  # rnd/amp only
    rl_frames: int = 1000  # train-rl (reward: fit-reward's model if it is a video reward, else rnd)
    grid_frames: int = 400  # benchmark-rl: frames per cell of a grid of 2 cells (sparse, rnd)


@dataclasses.dataclass
class Command:
    """One command under test: its arguments, what a rerun adds, and how its results are compared."""

    name: str
    args: Callable[[Path, dict[str, Path]], list[str]]  # (output, inputs) -> arguments, the command name first
    compare: Callable[[Path, Path], list[str]]  # (reference output, trial output) -> differences
    needs: tuple[str, ...] = ()  # commands whose reference output this one reads (by that command's name)
    artefact: str = ""  # what dependants read, relative to the output
    rerun: tuple[str, ...] = ()  # added to the command line of every attempt after a kill
    prepare: Callable[[Path], None] | None = None  # writes input files into a fresh output (a grid file)
    progress: Callable[[Path], tuple[int, int]] | None = None  # output -> (units done, units that survive a kill)
    unit: str = ""


# ---- comparing results ------------------------------------------------------------------------------

def _stable(value: Any) -> Any:
    """``value`` without the keys that hold times, durations or the output's own path."""
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if not VOLATILE_KEY.search(str(k))}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def compare_json(a: Path, b: Path) -> list[str]:
    if not a.exists() or not b.exists():
        return [f"{b.name}: {'missing' if not b.exists() else 'not in the reference'}"]
    first, second = _stable(json.loads(a.read_text())), _stable(json.loads(b.read_text()))
    if first == second:
        return []
    if isinstance(first, dict) and isinstance(second, dict):
        keys = sorted(k for k in first.keys() | second.keys() if first.get(k) != second.get(k))
        return [f"{b.name}: differs in {', '.join(map(str, keys))}"]
    return [f"{b.name}: differs"]


def compare_tensors(a: Path, b: Path, under: str = "") -> list[str]:
    """Every ``*.safetensors`` file below ``under``: the same files, keys, dtypes, shapes and values."""
    import torch
    from safetensors.torch import load_file

    def files(root: Path) -> set[str]:
        base = root / under
        return {p.relative_to(root).as_posix() for p in base.rglob("*.safetensors")} if base.is_dir() else set()

    names_a, names_b = files(a), files(b)
    out = [f"{name}: {'missing' if name in names_a else 'not in the reference'}" for name in
           sorted(names_a ^ names_b)]
    for name in sorted(names_a & names_b):
        ta, tb = load_file(a / name), load_file(b / name)
        if ta.keys() != tb.keys():
            out.append(f"{name}: tensors {sorted(ta.keys() ^ tb.keys())} in one file only")
        out += [f"{name}: tensor {key} differs" for key in sorted(ta.keys() & tb.keys())
                if ta[key].dtype != tb[key].dtype or not torch.equal(ta[key], tb[key])]
    if not names_a:
        out.append(f"{under or '.'}: no weights in the reference")
    return out


def compare_csvs(a: Path, b: Path) -> list[str]:
    """The metric CSVs of a run directory, row by row, without the columns that hold timings."""
    import csv

    def rows(path: Path) -> list[dict[str, str]]:
        with path.open(newline="") as f:
            return [{k: v for k, v in r.items() if not TIMING_COLUMN.search(k or "")} for r in csv.DictReader(f)]

    names_a, names_b = ({p.name for p in d.glob("*.csv")} for d in (a, b))
    out = [f"{name}: {'missing' if name in names_a else 'not in the reference'}" for name in sorted(names_a ^ names_b)]
    for name in sorted(names_a & names_b):
        ra, rb = rows(a / name), rows(b / name)
        if ra != rb:
            steps = [r.get("step") for r in rb]
            repeated = sorted({s for s in steps if steps.count(s) > 1}, key=lambda s: float(s or 0))
            out.append(f"{name}: {len(rb)} rows, the reference {len(ra)}"
                       + (f"; steps logged twice: {', '.join(map(str, repeated[:5]))}" if repeated else
                          "; values differ"))
    return out


def compare_dataset(a: Path, b: Path) -> list[str]:
    """Manifest (without its creation time), the list of files, and every array of every episode."""
    import numpy as np

    out = compare_json(a / "manifest.json", b / "manifest.json")
    if not (b / "manifest.json").exists():
        return out
    ma, mb = (json.loads((d / "manifest.json").read_text()) for d in (a, b))
    order_a, order_b = ([e["file"] for e in m["episodes"]] for m in (ma, mb))
    if out and sorted(order_a) == sorted(order_b) and order_a != order_b:
        out.append("manifest.json: the same episodes in another order")
    visible = (lambda root: {p.relative_to(root).as_posix() for p in root.rglob("*")
                             if p.is_file() and not p.name.startswith(".")})
    files_a, files_b = visible(a), visible(b)
    out += [f"{name}: {'missing' if name in files_a else 'not in the reference'}" for name in sorted(files_a ^ files_b)]
    for name in sorted(n for n in files_a & files_b if n.endswith(".npz")):
        with np.load(a / name) as ea, np.load(b / name) as eb:
            if set(ea.files) != set(eb.files):
                out.append(f"{name}: arrays {sorted(set(ea.files) ^ set(eb.files))} in one file only")
            out += [f"{name}: {key} differs" for key in sorted(set(ea.files) & set(eb.files))
                    if not np.array_equal(ea[key], eb[key], equal_nan=ea[key].dtype.kind == "f")]
    return out


def compare_trained(a: Path, b: Path) -> list[str]:
    """A trainer's output: the exported model (weights, config, metrics) and the run's metric CSVs."""
    return (compare_tensors(a, b, "model") + compare_json(a / "model" / "config.json", b / "model" / "config.json")
            + compare_json(a / "model" / "metrics.json", b / "model" / "metrics.json")
            + compare_csvs(a / "run", b / "run"))


def compare_reward_model(a: Path, b: Path) -> list[str]:
    return compare_json(a / "model" / "config.json", b / "model" / "config.json") + compare_tensors(a, b, "model")


def compare_rl_run(a: Path, b: Path) -> list[str]:
    """An RL run directory: the final checkpoint (agent, replay, reward models, generators) and the metric CSVs."""
    from diffusion_reward.rl.loop import checkpoint_dirs

    ca, cb = checkpoint_dirs(a), checkpoint_dirs(b)
    if [c.name for c in ca] != [c.name for c in cb]:
        return [f"checkpoints: {[c.name for c in cb]}, the reference {[c.name for c in ca]}"]
    out = [f"checkpoint {d}" for d in compare_tensors(ca[-1], cb[-1])] if ca else []
    return out + compare_csvs(a, b)


def compare_grid(a: Path, b: Path) -> list[str]:
    """benchmark-rl: every cell's record (its evaluation curve) and run directory."""
    records_a, records_b = ({p.relative_to(d).as_posix(): p for p in (d / "results").rglob("*.json")} for d in (a, b))
    out = [f"record {name}: {'missing' if name in records_a else 'not in the reference'}"
           for name in sorted(records_a.keys() ^ records_b.keys())]
    for name in sorted(records_a.keys() & records_b.keys()):
        ea, eb = (json.loads(records[name].read_text())["evaluations"] for records in (records_a, records_b))
        if ea != eb:
            out.append(f"record {name}: evaluation curve differs")
    runs_a = {p.relative_to(a / "runs").as_posix() for p in (a / "runs").glob("*/*") if p.is_dir()}
    for name in sorted(runs_a):
        out += [f"{name}: {d}" for d in compare_rl_run(a / "runs" / name, b / "runs" / name)]
    return out


# ---- progress at a kill -------------------------------------------------------------------------

def _last_step(csv_path: Path) -> int:
    try:
        lines = csv_path.read_text().strip().splitlines()
        return int(float(lines[-1].split(",", 1)[0])) if len(lines) > 1 else 0
    except (OSError, ValueError):
        return 0  # no log yet, or a row cut short by the kill


def trainer_progress(out: Path) -> tuple[int, int]:
    """Steps logged by the killed attempt, and the step of the newest checkpoint (where a rerun resumes)."""
    from diffusion_reward.train.trainer import run_checkpoints

    checkpoints = run_checkpoints(out / "run")
    newest = checkpoints.newest()
    saved = checkpoints.number(newest) if newest is not None else 0
    return max(saved, _last_step(out / "run" / "train.csv")), saved


def rl_progress(run_dir: Path) -> tuple[int, int]:
    from diffusion_reward.rl.loop import run_checkpoints

    checkpoints = run_checkpoints(run_dir)
    newest = checkpoints.newest()
    saved = checkpoints.number(newest) if newest is not None else 0
    return max(saved, _last_step(run_dir / "train.csv")), saved


def grid_progress(out: Path) -> tuple[int, int]:
    """Frames over every cell; a cell with its record has its frames saved for good."""
    done = saved = 0
    for run_dir in (out / "runs").glob("*/*"):
        if run_dir.is_dir():
            d, s = rl_progress(run_dir)
            record = next((out / "results").rglob(f"{run_dir.name}.json"), None)
            done, saved = done + d, saved + (d if record is not None else s)
    return done, saved


def collect_progress(out: Path) -> tuple[int, int]:
    """Episode files written, and those the manifest lists (a rerun skips only these)."""
    written = sum(1 for p in out.glob("episodes/*/*.npz") if p.stat().st_size > 0)
    try:
        listed = len(json.loads((out / "manifest.json").read_text())["episodes"])
    except (OSError, ValueError, KeyError):
        listed = 0
    return written, listed


# ---- the commands ------------------------------------------------------------------------------------

RL_FLAGS = ["--preset", "tiny", "--max-episode-steps", "25", "--num-seed-frames", "100", "--eval-every-frames", "200",
            "--num-eval-episodes", "1", "--checkpoint-every-frames", "100", "--no-tensorboard", "--no-progress",
            "--agent-stddev-schedule-steps", "200", "--eval-video-episodes", "0"]
TRAINER_FLAGS = ["--preset", "tiny", "--batch-size", "4", "--checkpoint-every", "4", "--log-every", "1",
                 "--no-tensorboard", "--no-progress"]
GRID = """name = "soak"
preset = "tiny"
obs = "state"
frames = {frames}
seeds = [0]
tasks = ["{task}"]
runs = "{out}/runs"
results = "{out}/results"

[settings]
max_episode_steps = 25
num_seed_frames = 100
eval_every_frames = 100
num_eval_episodes = 1
checkpoint_every_frames = 50
tensorboard = false
eval_video_episodes = 0

[rewards.sparse]
[rewards.rnd]
"""


def commands(budget: Budget = Budget()) -> dict[str, Command]:
    """The commands under test on ``budget``'s tiny configurations, in pipeline order."""
    b = budget
    video_reward = b.fit_kind in ("diffusion", "viper")

    def collect(out: Path, _: dict[str, Path]) -> list[str]:
        workers = ["--workers", str(b.collect_workers)] if b.collect_workers else []
        return ["collect", "--task", b.task, "--policy", *b.policies, "--episodes", str(b.episodes),
                "--test-episodes", str(b.test_episodes), "--max-steps", str(b.max_steps), "--keep-failed",
                *workers, "--no-progress", "--out", str(out)]

    def train_codec(out: Path, inputs: dict[str, Path]) -> list[str]:
        return ["train-codec", "--data", str(inputs["collect"]), *TRAINER_FLAGS, "--steps", str(b.train_steps),
                "--run-dir", str(out / "run"), "--out", str(out / "model")]

    def train_video(out: Path, inputs: dict[str, Path]) -> list[str]:
        return ["train-video", "--codec", str(inputs["train-codec"]), "--data", str(inputs["collect"]),
                *TRAINER_FLAGS, "--steps", str(b.train_steps), "--eval-windows", "8", "--grid-samples", "2",
                "--run-dir", str(out / "run"), "--out", str(out / "model")]

    def fit_reward(out: Path, inputs: dict[str, Path]) -> list[str]:
        kind = ["--kind", b.fit_kind, "--data", str(inputs["collect"])]
        extra = (["--video", str(inputs["train-video"])] if video_reward else
                 ["--preset", "tiny", "--steps", str(b.fit_steps), "--batch-size", "8"])
        return ["fit-reward", *kind, *extra, "--out", str(out / "model")]

    def train_rl(out: Path, inputs: dict[str, Path]) -> list[str]:
        reward = ["--reward", b.fit_kind, "--reward-model", str(inputs["fit-reward"])] if video_reward else \
            ["--reward", "rnd"]
        return ["train-rl", *RL_FLAGS, "--task", b.task, "--obs", "state", *reward, "--frames", str(b.rl_frames),
                "--seed", "0", "--run-dir", str(out / "run")]

    def write_grid(out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "grid.toml").write_text(GRID.format(frames=b.grid_frames, task=b.task, out=out))

    return {
        "collect": Command("collect", collect, compare_dataset, progress=collect_progress, unit="episodes"),
        "train-codec": Command("train-codec", train_codec, compare_trained, needs=("collect",), artefact="model",
                               rerun=("--resume",), progress=trainer_progress, unit="steps"),
        "train-video": Command("train-video", train_video, compare_trained, needs=("collect", "train-codec"),
                               artefact="model", rerun=("--resume",), progress=trainer_progress, unit="steps"),
        "fit-reward": Command("fit-reward", fit_reward, compare_reward_model,
                              needs=("collect", "train-video") if video_reward else ("collect",), artefact="model"),
        "train-rl": Command("train-rl", train_rl, lambda a, b_: compare_rl_run(a / "run", b_ / "run"),
                            needs=("fit-reward",) if video_reward else (), rerun=("--resume",),
                            progress=lambda out: rl_progress(out / "run"), unit="frames"),
        "benchmark-rl": Command("benchmark-rl", lambda out, _: ["benchmark-rl", str(out / "grid.toml"), "--jobs", "2",
                                                                "--no-progress"],
                                compare_grid, prepare=write_grid, progress=grid_progress, unit="frames"),
    }


# ---- running and killing --------------------------------------------------------------------------

@dataclasses.dataclass
class Attempt:
    wall_s: float
    returncode: int
    killed: bool  # by us, while it ran
    done: int | None = None  # units done when killed, and those that survived (see Command.progress)
    saved: int | None = None


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` is still running (zombies waiting for their reaper do not count)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def run_attempt(argv: list[str], log_path: Path, kill_after: float | None, timeout: float, cwd: Path) -> Attempt:
    """Run ``argv`` in a new session; SIGKILL its whole process group after ``kill_after`` seconds (or at
    ``timeout``), and wait until every process of the group is gone."""
    env = dict(os.environ, DIFFUSION_REWARD_PROGRESS="0",
               PYTHONPATH=os.pathsep.join([str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])]))
    start = time.perf_counter()
    with log_path.open("ab") as log:
        log.write(f"\n$ {' '.join(argv)}  (kill after {kill_after})\n".encode())
        log.flush()
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True)
        killed = False
        try:
            proc.wait(timeout=min(kill_after, timeout) if kill_after is not None else timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            killed = True
        wall = time.perf_counter() - start
        deadline = time.monotonic() + 30
        while _group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
    return Attempt(wall, proc.returncode, killed)


def _cli(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "diffusion_reward.cli", *args]


def _tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").strip().splitlines()[-lines:])


def leftovers(out: Path) -> list[str]:
    """Temporary files a kill left behind (hidden ``*.tmp`` files and folders) under ``out``."""
    return sorted(p.relative_to(out).as_posix() for p in out.rglob(".*.tmp"))


def reference_run(command: Command, work: Path, inputs: dict[str, Path], timeout: float = 1800) -> dict[str, Any]:
    """The uninterrupted run into ``work/<name>/reference``; its output path and wall time."""
    out = work / command.name / "reference"
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    if command.prepare is not None:
        command.prepare(out)
    log = out.parent / "reference.log"
    attempt = run_attempt(_cli(command.args(out, inputs)), log, None, timeout, work)
    if attempt.killed or attempt.returncode != 0:
        raise RuntimeError(f"{command.name}: the uninterrupted run failed (exit status {attempt.returncode}):\n"
                           + _tail(log))
    return {"out": out, "wall_s": attempt.wall_s}


def soak_trial(command: Command, work: Path, inputs: dict[str, Path], reference: dict[str, Any], index: int,
               rng: random.Random) -> dict[str, Any]:
    """One trial: kill the command one or more times at random moments, rerun it to the end, compare.

    A first run that finishes before its kill (the machine was quicker than for the reference) killed
    nothing: the trial starts again with new draws, up to ``MAX_KILLS_IN_A_ROW`` times.
    """
    out = work / command.name / f"trial-{index}"
    log = out.parent / f"trial-{index}.log"
    argv = _cli(command.args(out, inputs))
    t_ref = reference["wall_s"]
    timeout = 20 * t_ref + 300  # a rerun that waits for ever (a stale lock) ends here, as a failure
    missed = 0
    while True:
        shutil.rmtree(out, ignore_errors=True)
        if command.prepare is not None:
            command.prepare(out)
        kill_times = [rng.uniform(0, t_ref)]
        while len(kill_times) < MAX_KILLS_IN_A_ROW and rng.random() < 0.5:
            kill_times.append(rng.uniform(0, t_ref))
        attempts: list[Attempt] = []
        for kill_after in [*kill_times, None]:
            attempt = run_attempt(argv + (list(command.rerun) if attempts else []), log, kill_after, timeout, work)
            if attempt.killed and kill_after is not None and command.progress is not None:
                attempt.done, attempt.saved = command.progress(out)
            attempts.append(attempt)
            if kill_after is None or not attempt.killed:
                break  # the last run, or one that ended before its kill came
        if attempts[0].killed or attempts[0].returncode != 0 or missed == MAX_KILLS_IN_A_ROW:
            break
        missed += 1
    final, kills = attempts[-1], attempts[:-1]
    if final.killed:
        differences = [f"the last run did not finish within {timeout:.0f} s"]
    elif final.returncode != 0:
        differences = [f"a run failed with exit status {final.returncode}: {_tail(log, 3)}"]
    else:
        differences = command.compare(reference["out"], out)
    progress = [[a.done, a.saved] for a in kills] if command.progress is not None else None
    redone = [a.done - a.saved for a in kills if a.done is not None and a.saved is not None]
    return {"kill_at_s": [round(t, 2) for t in kill_times[:len(kills)]],
            f"{command.unit or 'units'}_done_and_kept_at_each_kill": progress,
            "kills": len(kills), "kills_drawn": len(kill_times), "first_runs_done_before_their_kill": missed,
            "attempts_wall_s": [round(a.wall_s, 2) for a in attempts],
            "exit_status": [a.returncode for a in attempts],
            "identical": not differences, "differences": differences[:8],
            "lost_s": round(sum(a.wall_s for a in attempts) - t_ref, 2),
            f"redone_{command.unit or 'units'}": redone if command.progress is not None else None,
            "leftover_temporary_files": leftovers(out)}


def soak(names: list[str], *, kills: int = 3, seed: int = 0, work: Path, budget: Budget = Budget(),
         log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Soak the commands ``names`` (see the module docstring); returns one result per command (no provenance).

    Commands they read from (``Command.needs``) get their reference run first, once, whether soaked or not.
    """
    specs = commands(budget)
    references: dict[str, dict[str, Any]] = {}

    def reference(name: str) -> dict[str, Any]:
        if name not in references:
            inputs = {dep: reference(dep)["artefact"] for dep in specs[name].needs}
            log(f"{name}: uninterrupted run")
            ref = reference_run(specs[name], work, inputs)
            references[name] = {**ref, "inputs": inputs, "artefact": ref["out"] / specs[name].artefact}
            log(f"{name}: uninterrupted run took {ref['wall_s']:.1f} s")
        return references[name]

    results = []
    for name in sorted(names, key=ORDER.index):
        command = specs[name]
        ref = reference(name)
        rng = random.Random(f"{seed}:{name}")
        trials = []
        for i in range(kills):
            trial = soak_trial(command, work, ref["inputs"], ref, i, rng)
            trials.append(trial)
            log(f"{name}: trial {i}: {trial['kills']} kill(s) at {trial['kill_at_s']} s, "
                f"{'identical' if trial['identical'] else 'DIFFERENT: ' + '; '.join(trial['differences'][:3])}, "
                f"lost {trial['lost_s']:.1f} s")
        placeholders = {dep: Path(f"<{dep}>") / specs[dep].artefact for dep in command.needs}
        results.append({
            "command": name,
            "command_line": ["diffusion-reward", *command.args(Path("<out>"), placeholders)],
            "rerun_adds": list(command.rerun),
            "reference_wall_s": round(ref["wall_s"], 2),
            "trials": len(trials), "kills": sum(t["kills"] for t in trials),
            "identical": sum(t["identical"] for t in trials),
            "lost_s": round(sum(t["lost_s"] for t in trials), 2),
            "trial_results": trials,
        })
    return results


def table(results: list[dict[str, Any]]) -> str:
    lines = [f"{'command':14s} {'trials':>6s} {'kills':>5s} {'identical':>9s} {'lost s':>7s} {'per trial':>9s} "
             f"{'reference s':>11s}"]
    for r in results:
        lines.append(f"{r['command']:14s} {r['trials']:6d} {r['kills']:5d} {r['identical']:>5d}/{r['trials']:<3d} "
                     f"{r['lost_s']:7.1f} {r['lost_s'] / max(1, r['trials']):9.1f} {r['reference_wall_s']:11.1f}")
    return "\n".join(lines)


def main() -> None:
    from diffusion_reward.utils.provenance import code_version, machine, machine_tag

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commands", nargs="+", choices=ORDER, default=list(ORDER), metavar="COMMAND",
                        help=f"the commands to soak, any of {', '.join(ORDER)} (default: all)")
    parser.add_argument("--kills", type=int, default=3, metavar="K",
                        help="trials per command; each kills the command 1 to 3 times in a row before the rerun "
                             "that finishes (default: 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments (default: 0)")
    parser.add_argument("--out", default=None, metavar="JSONL",
                        help="file to append the JSON lines to (default: benchmarks/results/soak_<machine>.jsonl)")
    parser.add_argument("--workdir", default=None, metavar="DIR",
                        help="where the runs write their outputs and logs (kept); default: a temporary directory, "
                             "removed at the end")
    parser.add_argument("--note", default="", help="a remark stored with every line (what else ran on the machine)")
    args = parser.parse_args()
    if args.kills < 1:
        parser.error("--kills must be at least 1")
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"soak_{machine_tag()}.jsonl"
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="soak-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        results = soak(args.commands, kills=args.kills, seed=args.seed, work=work, log=lambda m: print(m, flush=True))
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    base = {"bench": "soak", "config": {"kills": args.kills, "seed": args.seed, "budget": dataclasses.asdict(Budget()),
                                        "max_kills_in_a_row": MAX_KILLS_IN_A_ROW},
            "code": code_version(), "machine": machine(), "note": args.note}
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as f:
        for result in results:
            f.write(json.dumps({**base, **result}) + "\n")
    print(table(results))
    print(f"wrote {len(results)} line(s) to {out}")


if __name__ == "__main__":
    main()
