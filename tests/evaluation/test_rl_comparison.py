"""plot-rl: grouping runs by task and reward, averaging seeds, and clear errors for unusable folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from diffusion_reward import cli
from diffusion_reward.errors import UserError
from diffusion_reward.evaluation.rl_comparison import compare_runs, load_run


def make_run(root, name, task, reward, seed, rows, reward_model=None):
    run = root / name
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"task": task, "reward": reward, "seed": seed, "obs": "state",
                                                 "reward_model": reward_model}))
    lines = ["step,success_rate,episode_return,episode_length,episodes"]
    lines += [f"{frame},{success},{ret},100.0,5.0" for frame, success, ret in rows]
    (run / "eval.csv").write_text("\n".join(lines) + "\n")
    return run


@pytest.fixture()
def runs(tmp_path):
    root = tmp_path / "rl"
    make_run(root, "dial__diffusion__0", "dial-turn-v3", "diffusion", 0, [(0, 0.0, 1.0), (1000, 0.2, 5.0), (2000, 0.6, 9.0)])
    make_run(root, "dial__diffusion__1", "dial-turn-v3", "diffusion", 1, [(0, 0.0, 2.0), (1000, 0.4, 6.0), (2000, 1.0, 11.0)])
    make_run(root, "dial__sparse__0", "dial-turn-v3", "sparse", 0, [(0, 0.0, 0.0), (1000, 0.0, 0.0), (2000, 0.0, 0.0)])
    # a seed that stopped early: averaged only where it has evaluations
    make_run(root, "dial__sparse__1", "dial-turn-v3", "sparse", 1, [(0, 0.0, 0.0), (1000, 0.2, 1.0)])
    make_run(root, "reach__rnd__0", "reach-v3", "rnd", 0, [(0, 0.0, 0.0), (1000, 0.4, 3.0)])
    return root


def test_seeds_are_averaged_per_task_and_reward(runs, tmp_path) -> None:
    result = compare_runs([runs], tmp_path / "out")
    rows = {(r["task"], r["reward"]): r for r in result["rows"]}
    assert set(rows) == {("dial-turn-v3", "diffusion"), ("dial-turn-v3", "sparse"), ("reach-v3", "rnd")}
    diffusion = rows[("dial-turn-v3", "diffusion")]
    assert diffusion["seeds"] == [0, 1] and diffusion["last_frames"] == 2000
    assert diffusion["curve"]["mean"] == pytest.approx([0.0, 0.3, 0.8])
    assert diffusion["curve"]["min"] == pytest.approx([0.0, 0.2, 0.6])
    assert diffusion["curve"]["max"] == pytest.approx([0.0, 0.4, 1.0])
    assert (diffusion["final_mean"], diffusion["final_min"], diffusion["final_max"]) == pytest.approx((0.8, 0.6, 1.0))
    assert diffusion["mean_over_evaluations"] == pytest.approx(np.mean([0.0, 0.3, 0.8]))
    sparse = rows[("dial-turn-v3", "sparse")]
    assert sparse["curve"]["count"] == [2, 2, 1] and sparse["curve"]["mean"] == pytest.approx([0.0, 0.1, 0.0])
    assert sparse["final_runs"] == 1 and sparse["best_mean"] == pytest.approx(0.1)

    table = (tmp_path / "out" / "rl_comparison.md").read_text()
    assert "| dial-turn-v3 | diffusion | 2 | 2000 | 0.80 [0.60, 1.00] | 0.80 | 0.37 |" in table
    saved = json.loads((tmp_path / "out" / "rl_comparison.json").read_text())
    assert saved["metric"] == "success_rate" and len(saved["groups"]) == 3
    image = np.asarray(Image.open(tmp_path / "out" / "rl_comparison.png").convert("L"))
    assert image.shape[1] > image.shape[0] and image.std() > 5  # two task panels side by side, not blank


def test_return_metric_and_single_run_directories(runs, tmp_path) -> None:
    result = compare_runs([runs / "dial__diffusion__0", runs / "dial__diffusion__1"], tmp_path / "out",
                          metric="episode_return")
    (row,) = result["rows"]
    assert row["curve"]["mean"] == pytest.approx([1.5, 5.5, 10.0])


def test_runs_with_different_reward_models_are_kept_apart(tmp_path) -> None:
    make_run(tmp_path / "rl", "a", "dial-turn-v3", "diffusion", 0, [(0, 0.0, 0.0)], reward_model="runs/rewards/entropy")
    make_run(tmp_path / "rl", "b", "dial-turn-v3", "diffusion", 0, [(0, 1.0, 0.0)], reward_model="runs/rewards2/entropy")
    rows = compare_runs([tmp_path / "rl"], tmp_path / "out")["rows"]
    assert [(r["reward"], r["final_mean"]) for r in rows] == [("diffusion [rewards/entropy]", 0.0),
                                                              ("diffusion [rewards2/entropy]", 1.0)]


def test_command_prints_a_summary_and_writes_the_outputs(runs, tmp_path, capsys) -> None:
    assert cli.main(["plot-rl", str(runs), "--out", str(tmp_path / "out"), "--title", "dial"]) == 0
    printed = capsys.readouterr().out
    assert "dial-turn-v3" in printed and "2 seed(s), 2000 frames: final success_rate 0.80 [0.60, 1.00]" in printed
    assert all((tmp_path / "out" / name).is_file() for name in ("rl_comparison.png", "rl_comparison.md"))


def test_files_from_a_shell_glob_are_left_out_with_a_note(runs, tmp_path, capsys) -> None:
    stray = tmp_path / "success.png"
    stray.write_bytes(b"not a run")
    run_dirs = sorted(str(d) for d in runs.iterdir())
    assert cli.main(["plot-rl", *run_dirs, str(stray), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "2 seed(s)" in printed and f"left out 1 file(s) that are not run directories: {stray}" in printed
    with pytest.raises(UserError, match="files, not train-rl run directories"):
        compare_runs([stray], tmp_path / "out")


def test_unusable_folders_give_one_clear_error(runs, tmp_path, capsys) -> None:
    with pytest.raises(UserError, match="no such run directory"):
        compare_runs([tmp_path / "missing"], tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="neither a train-rl run directory"):
        compare_runs([tmp_path / "empty"], tmp_path / "out")
    fresh = make_run(tmp_path, "fresh", "reach-v3", "rnd", 3, [])
    with pytest.raises(UserError, match="no evaluations yet"):
        load_run(fresh)
    (fresh / "eval.csv").unlink()
    with pytest.raises(UserError, match="no eval.csv yet"):
        load_run(fresh)
    copy = make_run(tmp_path, "copy", "dial-turn-v3", "diffusion", 0, [(0, 0.0, 0.0)])
    with pytest.raises(UserError, match=r"seed\(s\) \[0\] appear in more than one run directory"):
        compare_runs([runs, copy], tmp_path / "out")
    assert cli.main(["plot-rl", str(tmp_path / "missing"), "--out", str(tmp_path / "out2")]) != 0
    assert "no such run directory" in capsys.readouterr().err
    assert not (tmp_path / "out2").exists()  # nothing written on bad input
