"""The RL benchmark: a grid of ``train-rl`` cells (task x reward x seed), each one run directory + one record.

    spec = load_grid("benchmarks/rl_grid.toml")
    for cell in spec.cells():
        record = run_cell(cell)          # trains (or resumes, or skips) the cell, writes its record

A grid is described by a TOML file (``benchmarks/rl_grid.toml`` is the paper's MetaWorld grid)::

    name = "metaworld-state-small"       # names the folders below
    preset = "small"                     # train-rl preset of every cell
    obs = "state"
    frames = 100_000                     # environment frames per cell
    seeds = [0, 1, 2]
    tasks = ["dial-turn-v3", "reach-v3"]
    runs = "runs/benchmark-rl"           # run directories: <runs>/<name>/<task>__<reward>__<seed>
    results = "benchmarks/results/rl"    # records: <results>/<name>/<task>__<reward>__<seed>.json

    [settings]                           # any other RLConfig field, for every cell
    eval_video_episodes = 1

    [rewards.diffusion]                  # one table per reward; the key names it in the results
    reward = "diffusion"                 # the train-rl method (default: the key)
    reward_model = "pretrained/metaworld-small/reward-entropy"
    [rewards.amp]
    expert_data = "data/mw"
    [rewards.sparse]

Relative paths are relative to the directory the command runs in.

A cell is **finished** when its record exists and was written for the same settings; running a
grid skips finished cells, resumes a cell whose run directory holds a checkpoint (a killed cell
continues exactly where its newest checkpoint left it, see :mod:`diffusion_reward.rl.loop`), and
starts the others. The record is written atomically once the run has ended, so a cell is never
counted twice or half. Each cell holds an exclusive lock (``<run dir>.lock``) while it runs: a
second process given the same cell waits for the first and then finds its record.

The record (JSON, a few kilobytes; :data:`RECORD_FORMAT`) holds the evaluation curve (frames,
success rate, sparse return, the simulator's dense reward, which no method trains on), the wall
time per stage of the loop, the task, reward and seed, the fingerprints of the reward model and
expert data the cell read, the resolved config, the code version and the machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import math
import os
import time
import tomllib
from pathlib import Path
from typing import Any, Iterator

from diffusion_reward.config import from_dict, to_dict
from diffusion_reward.errors import UserError

RECORD_FORMAT = "diffusion-reward/rl-cell"
RECORD_FORMAT_VERSION = 1
SPEC_KEYS = ("name", "preset", "obs", "frames", "seeds", "tasks", "rewards", "settings", "runs", "results")
REWARD_KEYS = ("reward", "reward_model", "expert_data", "alpha")
CORES_ENV = "DIFFUSION_REWARD_CELL_CORES"  # the cores a local cell process is pinned to


@dataclasses.dataclass(frozen=True)
class RewardSpec:
    """One reward of a grid: its name in the results, the train-rl method and what the method reads."""

    name: str
    reward: str
    reward_model: str | None = None
    expert_data: str | None = None
    alpha: float | None = None


@dataclasses.dataclass(frozen=True)
class Cell:
    """One (task, reward, seed) of a grid: its resolved train-rl config and where it writes."""

    grid: str
    task: str
    reward: RewardSpec
    seed: int
    config: dict[str, Any]  # the resolved RLConfig as a dict (picklable and JSON-ready; rebuilt with from_dict)
    run_dir: str
    record_path: str

    @property
    def key(self) -> str:
        return f"{self.task}__{self.reward.name}__{self.seed}"

    @property
    def frames(self) -> int:
        return int(self.config["num_train_frames"])

    def rl_config(self) -> Any:
        from diffusion_reward.rl.loop import RLConfig

        return from_dict(RLConfig, self.config)


@dataclasses.dataclass(frozen=True)
class GridSpec:
    """A grid of cells; see the module docstring for the file that describes one."""

    name: str
    tasks: tuple[str, ...]
    rewards: tuple[RewardSpec, ...]
    seeds: tuple[int, ...]
    frames: int
    obs: str = "state"
    preset: str = "small"
    settings: tuple[tuple[str, Any], ...] = ()
    runs: str = "runs/benchmark-rl"
    results: str = "benchmarks/results/rl"

    @property
    def runs_dir(self) -> Path:
        return Path(self.runs) / self.name

    @property
    def results_dir(self) -> Path:
        return Path(self.results) / self.name

    def cells(self) -> list[Cell]:
        """Every cell, task by task, then reward, then seed."""
        from diffusion_reward.rl.loop import PRESETS

        base = dataclasses.replace(PRESETS[self.preset], obs=self.obs)
        settings = dict(self.settings)
        if settings:
            try:
                base = from_dict(type(base), {**to_dict(base), **settings})
            except (TypeError, ValueError) as exc:
                raise UserError(f"grid {self.name}: [settings]: {exc}") from None
        cells = []
        for task in self.tasks:
            for reward in self.rewards:
                for seed in self.seeds:
                    config = dataclasses.replace(
                        base, task=task, reward=reward.reward, reward_model=reward.reward_model,
                        expert_data=reward.expert_data, alpha=reward.alpha, seed=seed,
                        num_train_frames=self.frames)
                    config.validate()
                    key = f"{task}__{reward.name}__{seed}"
                    cells.append(Cell(self.name, task, reward, seed, to_dict(config.resolved()),
                                      str(self.runs_dir / key),
                                      str(self.results_dir / f"{key}.json")))
        return cells

    def select(self, tasks: list[str] | None = None, rewards: list[str] | None = None,
               seeds: list[int] | None = None, frames: int | None = None, preset: str | None = None) -> "GridSpec":
        """This grid narrowed to some tasks, rewards or seeds (each must be in the grid); or another grid with other
        frames per cell or another preset, named ``<name>-<frames>k`` or ``<name>-<preset>`` so that its runs and
        records never mix with this grid's."""
        def pick(wanted: list[Any] | None, have: tuple[Any, ...], what: str) -> tuple[Any, ...]:
            if not wanted:
                return have
            unknown = [w for w in wanted if w not in have]
            if unknown:
                hint = " (separate names with spaces, not commas)" if any("," in str(w) for w in unknown) else ""
                raise UserError(f"grid {self.name}: no {what} {', '.join(map(str, unknown))}; the grid has "
                                f"{', '.join(map(str, have))}{hint}")
            return tuple(w for w in have if w in wanted)

        names = pick(rewards, tuple(r.name for r in self.rewards), "reward")
        changes: dict[str, Any] = {"tasks": pick(tasks, self.tasks, "task"), "seeds": pick(seeds, self.seeds, "seed"),
                                   "rewards": tuple(r for r in self.rewards if r.name in names)}
        name = self.name
        if frames is not None and frames != self.frames:
            if frames < 1:
                raise UserError(f"--frames must be >= 1, got {frames}")
            changes["frames"] = frames
            name += f"-{frames // 1000}k" if frames % 1000 == 0 else f"-{frames}"
        if preset is not None and preset != self.preset:
            from diffusion_reward.rl.loop import PRESETS

            if preset not in PRESETS:
                raise UserError(f"--preset {preset!r} is not one of {', '.join(sorted(PRESETS))}")
            changes["preset"] = preset
            name += f"-{preset}"
        return dataclasses.replace(self, name=name, **changes)


def load_grid(path: str | os.PathLike, **overrides: Any) -> GridSpec:
    """Read a grid TOML file (module docstring); ``overrides`` replace top-level keys (``runs``, ``results``)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such grid file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not a valid TOML grid file ({exc})") from None
    data.update({k: v for k, v in overrides.items() if v is not None})
    return grid_from_dict(data, where=str(path))


def grid_from_dict(data: dict[str, Any], where: str = "grid") -> GridSpec:
    """A :class:`GridSpec` from the parsed TOML; every mistake is a :class:`UserError` naming the key."""
    from diffusion_reward.rl.loop import PRESETS

    unknown = sorted(set(data) - set(SPEC_KEYS))
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(unknown)}; a grid has {', '.join(SPEC_KEYS)}")
    for key in ("name", "tasks", "rewards", "seeds", "frames"):
        if key not in data:
            raise UserError(f"{where}: missing key {key!r}")
    preset = data.get("preset", "small")
    if preset not in PRESETS:
        raise UserError(f"{where}: preset {preset!r} is not one of {', '.join(sorted(PRESETS))}")
    rewards = []
    if not isinstance(data["rewards"], dict) or not data["rewards"]:
        raise UserError(f"{where}: [rewards.NAME] tables expected, one per reward")
    for name, table in data["rewards"].items():
        table = table or {}
        bad = sorted(set(table) - set(REWARD_KEYS))
        if bad:
            raise UserError(f"{where}: [rewards.{name}]: unknown key(s) {', '.join(bad)}; expected some of "
                            f"{', '.join(REWARD_KEYS)}")
        rewards.append(RewardSpec(name=name, reward=str(table.get("reward", name)),
                                  reward_model=table.get("reward_model"), expert_data=table.get("expert_data"),
                                  alpha=table.get("alpha")))
    seeds = data["seeds"]
    if not isinstance(seeds, list) or not all(isinstance(s, int) for s in seeds) or not seeds:
        raise UserError(f"{where}: seeds must be a list of integers, got {seeds!r}")
    tasks = data["tasks"]
    if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks) or not tasks:
        raise UserError(f"{where}: tasks must be a list of task names, got {tasks!r}")
    if not isinstance(data["frames"], int) or data["frames"] < 1:
        raise UserError(f"{where}: frames must be a positive integer, got {data['frames']!r}")
    grid = GridSpec(name=str(data["name"]), tasks=tuple(tasks), rewards=tuple(rewards), seeds=tuple(seeds),
                    frames=int(data["frames"]), obs=str(data.get("obs", "state")), preset=preset,
                    settings=tuple(sorted((data.get("settings") or {}).items())),
                    runs=str(data.get("runs", GridSpec.runs)), results=str(data.get("results", GridSpec.results)))
    grid.cells()  # validates every cell's config now, before anything runs
    return grid


# ---- one cell ------------------------------------------------------------------------------------

def read_record(path: str | os.PathLike) -> dict[str, Any]:
    """A cell record; :class:`UserError` naming the file when it is not one this version reads."""
    from diffusion_reward.utils.checkpoint import check_format_version, read_json

    try:
        record = read_json(path)
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(str(exc)) from None
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        raise UserError(f"{path}: not an RL cell record (format {RECORD_FORMAT!r})")
    check_format_version(record, RECORD_FORMAT_VERSION, path, "record")
    return record


def finished_record(cell: Cell) -> dict[str, Any] | None:
    """The cell's record when it exists and was written for the cell's settings; else ``None``."""
    path = Path(cell.record_path)
    if not path.is_file():
        return None
    try:
        record = read_record(path)
    except UserError:
        return None
    return record if _same_settings(record.get("config", {}), cell.config) else None


def _same_settings(stored: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether a record's config is the cell's, up to settings that change neither what is learned nor how it
    is evaluated (threads, devices, checkpoint period, videos), and AMP's settings in a cell without AMP. A
    record written before a setting existed counts as having its default."""
    from diffusion_reward.rl.loop import RESUMABLE_CHANGES, RLConfig

    ignore = set(RESUMABLE_CHANGES) - {"num_train_frames", "eval_every_frames", "num_eval_episodes"}
    if wanted.get("reward") != "amp":
        ignore |= {f.name for f in dataclasses.fields(RLConfig) if f.name.startswith("amp_")}
    try:
        stored = to_dict(from_dict(RLConfig, stored))
    except (TypeError, ValueError):
        return False
    return ({k: v for k, v in stored.items() if k not in ignore}
            == {k: v for k, v in wanted.items() if k not in ignore})


@contextlib.contextmanager
def cell_lock(cell: Cell, on_wait: Any = None) -> Iterator[None]:
    """Hold ``<run dir>.lock`` exclusively; while another process holds it, call ``on_wait(message)`` once and wait."""
    path = Path(cell.run_dir + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            if on_wait is not None:
                on_wait(f"{cell.key}: running in {holder}; waiting for it to finish")
            fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {os.uname().nodename}\n")
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()  # released: nobody holds it (a killed holder leaves its line, and the lock is free)


def run_cell(cell: Cell, progress: bool = False, log: Any = None) -> dict[str, Any]:
    """Finish ``cell`` (skip, resume or start it) and return its record; see the module docstring."""
    from diffusion_reward.rl.loop import checkpoint_dirs, train
    from diffusion_reward.utils.checkpoint import atomic_write_json

    record = finished_record(cell)
    if record is not None:
        return record
    with cell_lock(cell, on_wait=log):
        record = finished_record(cell)  # finished by the process we waited for
        if record is not None:
            return record
        run_dir = Path(cell.run_dir)
        resume = (run_dir / "config.json").exists() or bool(checkpoint_dirs(run_dir))
        started = time.time()
        inputs = inputs_fingerprint(cell)  # what the run reads, as it starts
        result = train(cell.rl_config(), run_dir, resume=resume, progress=progress)
        record = cell_record(cell, result.seconds, wall_s=time.time() - started, inputs=inputs)
        atomic_write_json(cell.record_path, record)
        return record


def cell_record(cell: Cell, seconds: dict[str, float], wall_s: float | None = None,
                inputs: dict[str, Any] | None = None) -> dict[str, Any]:
    """The record of a cell whose run has ended (its curve read back from the run directory)."""
    from diffusion_reward.rl.loop import load_run_config, read_evaluations
    from diffusion_reward.utils.provenance import code_version, machine

    run_dir = Path(cell.run_dir)
    config = load_run_config(run_dir)
    evaluations = read_evaluations(run_dir)
    curve = {key: [e[key] for e in evaluations] for key in ("frame", "success_rate", "episode_return",
                                                             "dense_reward")}
    curve["frame"] = [int(f) for f in curve["frame"]]
    return {
        "format": RECORD_FORMAT, "format_version": RECORD_FORMAT_VERSION,
        "grid": cell.grid, "task": cell.task, "reward": cell.reward.name, "method": cell.reward.reward,
        "seed": cell.seed, "budget": cell.frames, "frames": curve["frame"][-1] if curve["frame"] else 0,
        "evaluations": {k: vals if k == "frame" else [_finite(v) for v in vals] for k, vals in curve.items()},
        "seconds": {**{k: round(float(v), 2) for k, v in seconds.items()},
                    "loop_total": round(float(sum(seconds.values())), 2)},
        "wall_s_this_process": None if wall_s is None else round(wall_s, 2),
        "inputs": inputs if inputs is not None else inputs_fingerprint(cell),
        "config": to_dict(config),
        "code": code_version(), "machine": machine(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _finite(value: float) -> float | None:
    """``value`` to 6 significant digits (JSON has no NaN: ``None`` for a value that is not finite)."""
    return None if value is None or not math.isfinite(value) else float(f"{float(value):.6g}")


def inputs_fingerprint(cell: Cell) -> dict[str, Any]:
    """What the cell read besides its config: the reward model directory and the task's expert episodes."""
    from diffusion_reward.utils.provenance import directory_fingerprint

    out: dict[str, Any] = {}
    if cell.reward.reward_model:
        out["reward_model"] = {"path": cell.reward.reward_model,
                               "fingerprint": directory_fingerprint(cell.reward.reward_model)}
    if cell.reward.expert_data:
        episodes, fingerprint = expert_fingerprint(cell.reward.expert_data, cell.task)
        out["expert_data"] = {"path": cell.reward.expert_data, "episodes": episodes, "fingerprint": fingerprint}
    return out


def expert_fingerprint(dataset: str | os.PathLike, task: str) -> tuple[int, str]:
    """How many expert train episodes of ``task`` the dataset holds (what AMP learns from), and a SHA-256 over
    their files (name and content digest, in name order)."""
    import hashlib

    from diffusion_reward.data.episodes import EXPERT_POLICIES, load_dataset
    from diffusion_reward.utils.provenance import file_digest

    picked = load_dataset(dataset).select(task=task, policy=EXPERT_POLICIES, split="train")
    digest = hashlib.sha256()
    for i in sorted(range(len(picked)), key=lambda i: picked.entries[i]["file"]):
        digest.update(f"{picked.entries[i]['file']}\0{file_digest(picked.path(i))}\n".encode())
    return len(picked), digest.hexdigest()


def cell_progress(cell: Cell) -> int:
    """Environment frames the cell has done so far (its budget once finished), read from its files."""
    if finished_record(cell) is not None:
        return cell.frames
    path = Path(cell.run_dir) / "train.csv"
    try:
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - 4096))
            last = f.read().decode(errors="replace").strip().splitlines()[-1]
        return min(cell.frames, int(float(last.split(",", 1)[0])))
    except (OSError, IndexError, ValueError):
        return 0


# ---- the grid ------------------------------------------------------------------------------------

@dataclasses.dataclass
class GridReport:
    """How a grid run ended: cells finished before it, finished by it, and failed (key -> reason)."""

    skipped: list[str]
    finished: list[str]
    failed: dict[str, str]


def cell_to_json(cell: Cell) -> str:
    import json

    return json.dumps(dataclasses.asdict(cell), sort_keys=True)


def cell_from_json(text: str) -> Cell:
    import json

    data = json.loads(text)
    return Cell(**{**data, "reward": RewardSpec(**data["reward"])})


def run_grid(grid: GridSpec, *, jobs: int = 1, executor: str = "local", slurm: dict[str, Any] | None = None,
             progress: bool = True, log: Any = print) -> GridReport:
    """Finish every cell of ``grid``: ``jobs`` at once on this machine (``executor="local"``: one process per
    cell), or through submitit (``"slurm"``: one SLURM array task per cell, ``jobs`` of them at once;
    ``"submitit-local"``: submitit's local executor, the same path without a cluster)."""
    cells = grid.cells()
    skipped = [c.key for c in cells if finished_record(c) is not None]
    todo = [c for c in cells if c.key not in skipped]
    report = GridReport(skipped=skipped, finished=[], failed={})
    log(f"grid {grid.name}: {len(cells)} cells, {len(skipped)} finished before, {len(todo)} to run "
        f"({executor}, {jobs} at once); records in {grid.results_dir}")
    if not todo:
        return report
    if jobs < 1:
        raise UserError(f"--jobs must be >= 1, got {jobs}")
    with _GridProgress(cells, enabled=progress) as bar:
        if executor == "local":
            _run_local(todo, jobs, report, bar, log)
        elif executor in ("slurm", "submitit-local"):
            _run_submitit(todo, grid, jobs, executor, slurm or {}, report, bar, log)
        else:
            raise UserError(f"unknown executor {executor!r}; expected local, slurm or submitit-local")
    return report


def _run_local(cells: list[Cell], jobs: int, report: GridReport, bar: "_GridProgress", log: Any) -> None:
    """One child process per cell, ``jobs`` at a time; each child gets its own share of this process's cores."""
    import subprocess
    import sys
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
    from queue import SimpleQueue

    try:
        cores = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux: no pinning
        cores = []
    share = len(cores) // jobs  # 0 (no pinning) when there are more jobs than cores
    slots: SimpleQueue = SimpleQueue()
    for i in range(jobs):
        slots.put(cores[i * share:(i + 1) * share] if share else None)

    def work(cell: Cell) -> int:
        slot = slots.get()
        try:
            log_path = Path(cell.run_dir + ".log")
            log_path.parent.mkdir(parents=True, exist_ok=True)
            env = dict(os.environ, DIFFUSION_REWARD_PROGRESS="0")
            if slot:
                env[CORES_ENV] = ",".join(map(str, slot))
            with log_path.open("a") as out:
                child = subprocess.Popen([sys.executable, "-m", "diffusion_reward.rl.benchmark", cell_to_json(cell)],
                                         stdout=out, stderr=subprocess.STDOUT, env=env)
                return child.wait()
        finally:
            slots.put(slot)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(work, cell): cell for cell in cells}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=2.0, return_when=FIRST_COMPLETED)
            for future in done:
                _settle(futures[future], _exit_reason(future.result()), report, log, bar)
            bar.refresh_from_files()


def _exit_reason(code: int) -> str | None:
    if code == 0:
        return None
    if code < 0:
        import signal

        return f"killed by {signal.Signals(-code).name}"
    return f"exit status {code}"


def _settle(cell: Cell, failure: str | None, report: GridReport, log: Any, bar: "_GridProgress") -> None:
    record = finished_record(cell) if failure is None else None
    if record is not None:
        report.finished.append(cell.key)
        final = record["evaluations"]["success_rate"][-1] if record["evaluations"]["success_rate"] else float("nan")
        log(f"{cell.key}: finished, success {final:.2f} at {record['frames']} frames; {bar.summary()}")
        return
    reason = failure or "ended without a record"
    report.failed[cell.key] = reason
    log(f"{cell.key}: FAILED ({reason}); log: {cell.run_dir}.log; run the same command again to resume it")


def _run_submitit(cells: list[Cell], grid: GridSpec, jobs: int, executor: str, slurm: dict[str, Any],
                  report: GridReport, bar: "_GridProgress", log: Any) -> None:
    try:
        import submitit
    except ImportError:
        raise UserError("--executor slurm needs submitit: pip install submitit") from None
    folder = grid.runs_dir / "submitit" / "%j"
    if executor == "slurm":
        ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
        params = {"slurm_array_parallelism": jobs, "timeout_min": int(slurm.get("time_min", 24 * 60)),
                  "cpus_per_task": int(slurm.get("cpus", 2)), "name": f"benchmark-rl-{grid.name}"}
        if slurm.get("partition"):
            params["slurm_partition"] = slurm["partition"]
        if slurm.get("gpus"):
            params["gpus_per_node"] = int(slurm["gpus"])
        ex.update_parameters(**params)
    else:
        ex = submitit.LocalExecutor(folder=folder)
        ex.update_parameters(timeout_min=int(slurm.get("time_min", 24 * 60)))
    batches = [cells] if executor == "slurm" else [cells[i:i + jobs] for i in range(0, len(cells), jobs)]
    for batch in batches:
        submitted = ex.map_array(run_cell, batch)
        log(f"submitted {len(batch)} cell(s): job(s) {', '.join(j.job_id for j in submitted[:3])}"
            + (" ..." if len(submitted) > 3 else ""))
        pending = dict(zip(submitted, batch))
        while pending:
            for job in [j for j in pending if j.done()]:
                cell = pending.pop(job)
                try:
                    job.result()
                    failure = None
                except Exception as exc:  # the job's own error, re-raised by submitit
                    failure = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
                _settle(cell, failure, report, log, bar)
            bar.refresh_from_files()
            if pending:
                time.sleep(2.0)


class _GridProgress:
    """One bar over the grid's environment frames (finished cells count in full), with the time left."""

    def __init__(self, cells: list[Cell], enabled: bool = True):
        self.cells = cells
        self.enabled = enabled and os.environ.get("DIFFUSION_REWARD_PROGRESS", "1") != "0"
        self.bar = None
        self.total = sum(c.frames for c in cells)
        self.finished: set[str] = set()  # cells seen finished: their records are not read again
        self.start_frames = sum(self.progress())
        self.start_time = time.monotonic()

    def progress(self) -> list[int]:
        """Frames done per cell, read from the files of the cells not yet seen finished."""
        out = []
        for c in self.cells:
            done = c.frames if c.key in self.finished else cell_progress(c)
            if done >= c.frames:
                self.finished.add(c.key)
            out.append(done)
        return out

    def summary(self) -> str:
        """``N/M cells, F% of the frames, about T left`` (the rate so far in this run)."""
        progress = self.progress()
        done = sum(progress)
        finished = len(self.finished)
        text = f"{finished}/{len(self.cells)} cells, {100 * done / max(1, self.total):.0f}% of the frames"
        rate = (done - self.start_frames) / max(1e-9, time.monotonic() - self.start_time)
        if rate > 0 and done < self.total:
            left = (self.total - done) / rate
            text += f", about {left / 3600:.1f} h left" if left >= 3600 else f", about {left / 60:.0f} min left"
        return text

    def __enter__(self) -> "_GridProgress":
        if self.enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, initial=self.start_frames, unit="frame", unit_scale=True,
                            desc="grid", dynamic_ncols=True, smoothing=0.05)
        return self

    def refresh_from_files(self) -> None:
        if self.bar is None:
            return
        progress = self.progress()
        finished = len(self.finished)
        self.bar.set_postfix_str(f"{finished}/{len(self.cells)} cells", refresh=False)
        self.bar.update(max(0, sum(progress) - self.bar.n))

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.refresh_from_files()
            self.bar.close()


def _main(argv: list[str]) -> int:
    """``python -m diffusion_reward.rl.benchmark CELL_JSON``: run one cell (what ``--executor local`` starts)."""
    from diffusion_reward.utils.logging import get_logger

    cores = os.environ.get(CORES_ENV)
    if cores:  # before torch starts its threads
        os.sched_setaffinity(0, {int(c) for c in cores.split(",")})
    cell = cell_from_json(argv[0])
    logger = get_logger()
    logger.info(f"{cell.key}: pid {os.getpid()}, run directory {cell.run_dir}")
    try:
        record = run_cell(cell, progress=False, log=logger.info)
    except UserError as exc:
        logger.error(f"{cell.key}: error: {exc}")
        return 2
    logger.info(f"{cell.key}: record {cell.record_path} ({record['frames']} frames)")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(_main(sys.argv[1:]))
