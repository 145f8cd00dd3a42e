"""benchmark-rl: a grid of tiny cells finishes with the same records whatever is killed, wherever it runs."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from diffusion_reward import cli
from diffusion_reward.errors import UserError
from diffusion_reward.rl.benchmark import finished_record, load_grid, read_record, run_grid

GRID = """
name = "tiny"
preset = "tiny"
obs = "state"
frames = 400
seeds = [0]
tasks = ["reach-v3"]
runs = "{root}/runs"
results = "{root}/results"

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


def write_grid(root: Path, text: str = GRID) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "grid.toml"
    path.write_text(text.format(root=root))
    return path


def curves(root: Path) -> dict[str, dict]:
    """The evaluation curves of every record under ``root/results``, by cell."""
    return {p.stem: read_record(p)["evaluations"] for p in sorted((root / "results").rglob("*.json"))}


def start(grid: Path) -> subprocess.Popen:
    env = dict(os.environ, DIFFUSION_REWARD_PROGRESS="0")
    return subprocess.Popen([sys.executable, "-m", "diffusion_reward.cli", "benchmark-rl", str(grid), "--jobs", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)


def wait_for(condition, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, dict]:
    root = tmp_path_factory.mktemp("reference")
    assert cli.main(["benchmark-rl", str(write_grid(root)), "--jobs", "2", "--no-progress"]) == 0
    return curves(root)


def test_grid_writes_one_record_per_cell_and_skips_finished_cells(tmp_path, reference):
    assert sorted(reference) == ["reach-v3__rnd__0", "reach-v3__sparse__0"]
    for evaluations in reference.values():
        assert evaluations["frame"] == [0, 100, 200, 300, 400]
        assert len(evaluations["dense_reward"]) == 5 and all(v is not None for v in evaluations["dense_reward"])
    record = read_record(next((tmp_path.parent).glob("reference*/results/tiny/reach-v3__rnd__0.json")))
    assert record["task"] == "reach-v3" and record["reward"] == "rnd" and record["seed"] == 0
    assert record["config"]["num_train_frames"] == 400 and record["code"]["package"]
    assert {"update", "env_wait", "eval", "loop_total"} <= set(record["seconds"])
    grid = load_grid(next((tmp_path.parent).glob("reference*/grid.toml")))
    report = run_grid(grid, jobs=2, progress=False, log=lambda *_: None)
    assert sorted(report.skipped) == sorted(reference) and not report.finished and not report.failed


def test_kill_9_anywhere_then_rerun_gives_the_uninterrupted_records(tmp_path, reference):
    grid = write_grid(tmp_path)
    rng = random.Random(0)
    # 1. kill -9 the command and its cells together, at a random moment after the first checkpoint
    proc = start(grid)
    wait_for(lambda: any((tmp_path / "runs" / "tiny").glob("*/checkpoints/frame-*")))
    time.sleep(rng.uniform(0.0, 1.0))
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # 2. rerun, and kill -9 one cell process alone while it runs
    lock = tmp_path / "runs" / "tiny" / "reach-v3__rnd__0.lock"

    def cell_pid() -> int | None:
        text = lock.read_text() if lock.exists() else ""
        return int(text.split()[1]) if text.startswith("pid ") else None

    stale = cell_pid()  # written by a process killed in step 1
    proc = start(grid)
    wait_for(lambda: cell_pid() not in (None, stale) or finished_record(_cell(grid, "reach-v3__rnd__0")) is not None)
    pid = cell_pid()
    if pid not in (None, stale) and finished_record(_cell(grid, "reach-v3__rnd__0")) is None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=300)
    # 3. the same command once more finishes what is left
    assert cli.main(["benchmark-rl", str(grid), "--jobs", "2", "--no-progress"]) == 0
    assert curves(tmp_path) == reference


def _cell(grid: Path, key: str):
    return next(c for c in load_grid(grid).cells() if c.key == key)


def test_submitit_local_executor_gives_the_same_records(tmp_path, reference):
    pytest.importorskip("submitit")
    grid = load_grid(write_grid(tmp_path))
    report = run_grid(grid, jobs=2, executor="submitit-local", progress=False, log=lambda *_: None)
    assert not report.failed and sorted(report.finished) == sorted(reference)
    assert curves(tmp_path) == reference


def test_grid_file_mistakes_are_one_line_errors_naming_the_key(tmp_path):
    bad = GRID.replace('seeds = [0]', 'seeds = "0"')
    with pytest.raises(UserError, match="seeds must be a list"):
        load_grid(write_grid(tmp_path / "a", bad))
    with pytest.raises(UserError, match=r"\[rewards.amp\]: unknown key\(s\) expert"):
        load_grid(write_grid(tmp_path / "b", GRID + '[rewards.amp]\nexpert = "x"\n'))
    with pytest.raises(UserError, match="no reward viper"):
        load_grid(write_grid(tmp_path / "c")).select(rewards=["viper"])
    with pytest.raises(UserError, match="separate names with spaces"):  # --rewards sparse,rnd
        load_grid(write_grid(tmp_path / "d")).select(rewards=["sparse,rnd"])
    with pytest.raises(UserError, match="no such grid file"):
        load_grid(tmp_path / "missing.toml")


def test_a_changed_budget_is_a_new_cell(tmp_path, reference):
    grid = load_grid(write_grid(tmp_path))
    for cell in grid.cells():  # the records of the 400-frame grid
        Path(cell.record_path).parent.mkdir(parents=True, exist_ok=True)
        src = next((tmp_path.parent).glob(f"reference*/results/tiny/{cell.key}.json"))
        Path(cell.record_path).write_text(src.read_text())
    assert all(finished_record(c) is not None for c in grid.cells())
    longer = grid.select(frames=600)  # another grid: its own folders, nothing of the 400-frame grid is touched
    assert longer.name == "tiny-600"
    assert all(finished_record(c) is None and "tiny-600" in c.record_path for c in longer.cells())
    listing = subprocess.run([sys.executable, "-m", "diffusion_reward.cli", "benchmark-rl",
                              str(tmp_path / "grid.toml"), "--list"], capture_output=True, text=True, check=True)
    assert listing.stdout.count("finished") == 2
    assert json.loads(Path(grid.cells()[0].record_path).read_text())["budget"] == 400


ROOT = Path(__file__).resolve().parents[2]


def test_the_pixel_grid_for_gpus_runs_on_a_cpu_with_the_tiny_preset(tmp_path, monkeypatch):
    """benchmarks/rl_grid_pixels.toml (the paper's setting) end to end, tiny and short, with the rewards that read
    frames in their own ways: a pretrained model per episode, a discriminator trained online."""
    import dataclasses

    monkeypatch.chdir(ROOT)  # the grid's reward models are paths in the repository
    grid = load_grid(ROOT / "benchmarks" / "rl_grid_pixels.toml", runs=str(tmp_path / "runs"),
                     results=str(tmp_path / "results")).select(tasks=["reach-v3"], seeds=[0], frames=200,
                                                              preset="tiny", rewards=["diffusion", "amp"])
    assert grid.name == "metaworld-pixels-paper-200-tiny" and grid.obs == "pixels"
    settings = {**dict(grid.settings), "max_episode_steps": 25, "num_seed_frames": 100, "num_eval_episodes": 1,
                "eval_video_episodes": 0, "tensorboard": False}
    grid = dataclasses.replace(grid, settings=tuple(settings.items()))
    report = run_grid(grid, jobs=2, progress=False, log=lambda *_: None)
    assert not report.failed, report.failed
    records = {p.stem: read_record(p) for p in (tmp_path / "results").rglob("*.json")}
    assert sorted(records) == ["reach-v3__amp__0", "reach-v3__diffusion__0"]  # the rewards that read frames
    for record in records.values():
        assert record["config"]["obs"] == "pixels" and record["evaluations"]["frame"][-1] == 200
    assert set(records["reach-v3__diffusion__0"]["inputs"]["reward_model"]) == {"path", "fingerprint"}
    assert records["reach-v3__amp__0"]["inputs"]["expert_data"]["episodes"] == 20


def test_a_record_from_before_a_setting_existed_still_counts(tmp_path, reference):
    grid = load_grid(write_grid(tmp_path))
    for cell in grid.cells():
        record = json.loads(next((tmp_path.parent).glob(f"reference*/results/tiny/{cell.key}.json")).read_text())
        for key in [k for k in record["config"] if k.startswith("amp_")]:
            del record["config"][key]  # as written by a version without AMP's settings
        record["config"]["render_threads"] = 7  # how fast frames render changes nothing learned
        Path(cell.record_path).parent.mkdir(parents=True, exist_ok=True)
        Path(cell.record_path).write_text(json.dumps(record))
        assert finished_record(cell) is not None
        record["config"]["seed"] = 5
        Path(cell.record_path).write_text(json.dumps(record))
        assert finished_record(cell) is None


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "benchmarks").glob("rl_grid*.toml")))
def test_every_committed_grid_file_loads_with_models_and_data_that_exist(name):
    grid = load_grid(ROOT / "benchmarks" / name)
    cells = grid.cells()
    assert cells and len({c.key for c in cells}) == len(cells)
    for reward in grid.rewards:
        for path in (reward.reward_model, reward.expert_data):
            assert path is None or (ROOT / path).is_dir(), f"{name}: {reward.name} reads {path}, which is not committed"
