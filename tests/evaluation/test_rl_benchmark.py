"""plot-rl on benchmark records: the per-task numbers, the rliable aggregates, the figures and the README block."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diffusion_reward import cli
from diffusion_reward.errors import UserError
from diffusion_reward.evaluation.rl_benchmark import (README_BEGIN, README_END, area_under_curve, benchmark_report,
                                                      readme_block, rl_block)
from diffusion_reward.rl.benchmark import RECORD_FORMAT, RECORD_FORMAT_VERSION

FRAMES = [0, 25, 50, 75, 100]
# task -> reward -> one success curve per seed
CURVES = {
    "dial-turn-v3": {"diffusion": [[0, 0.2, 0.9, 1, 1], [0, 0, 0.5, 0.8, 1], [0, 0, 0, 0.4, 0.6]],
                     "sparse": [[0, 0, 0, 0, 0], [0, 0, 0, 0.2, 0.9], [0, 0, 0, 0, 0.1]]},
    "reach-v3": {"diffusion": [[0, 0, 0, 0.1, 0.2], [0, 0, 0, 0, 0], [0, 0.1, 0.1, 0.3, 0.3]],
                 "sparse": [[0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0.1]]},
}


def write_records(root: Path, curves=CURVES) -> Path:
    out = root / "results" / "toy"
    out.mkdir(parents=True)
    for task, rewards in curves.items():
        for reward, seeds in rewards.items():
            for seed, success in enumerate(seeds):
                record = {"format": RECORD_FORMAT, "format_version": RECORD_FORMAT_VERSION, "grid": "toy",
                          "task": task, "reward": reward, "method": reward, "seed": seed, "budget": 100,
                          "frames": 100, "evaluations": {"frame": FRAMES, "success_rate": success,
                                                         "episode_return": [0] * 5,
                                                         "dense_reward": [1.0, 1.5, 2.0, 2.5, 3.0 + seed]}}
                (out / f"{task}__{reward}__{seed}.json").write_text(json.dumps(record))
    return out


def test_area_under_curve_is_the_mean_success_over_the_budget():
    assert area_under_curve([0, 50, 100], [0.0, 1.0, 1.0], 100) == pytest.approx(0.75)
    assert area_under_curve([0, 50], [0.0, 1.0], 100) == pytest.approx(0.75)  # held flat after the last point
    assert area_under_curve([0, 50, 100], [1.0, 1.0, 0.0], 50) == pytest.approx(1.0)


def test_per_task_rows_and_aggregates(tmp_path):
    report = benchmark_report([write_records(tmp_path)], tmp_path / "out", reps=200)
    rows = {(r["task"], r["reward"]): r for r in report["rows"]}
    dial = rows[("dial-turn-v3", "diffusion")]
    assert (dial["success"], dial["success_min"], dial["success_max"]) == pytest.approx((13 / 15, 0.6, 1.0))
    assert dial["seeds_solved"] == 2 and dial["frames_to_solved"] == pytest.approx((50 + 75) / 2)
    assert rows[("reach-v3", "sparse")]["frames_to_solved"] is None
    assert rows[("dial-turn-v3", "sparse")]["dense"] == pytest.approx(4.0)
    agg = report["aggregate"]
    assert agg["tasks"] == ["dial-turn-v3", "reach-v3"] and agg["seeds"] == [0, 1, 2]
    for score in ("success", "auc"):
        for reward in ("diffusion", "sparse"):
            v = agg["iqm"][score][reward]
            assert 0.0 <= v["low"] <= v["value"] <= v["high"] <= 1.0
    assert agg["iqm"]["success"]["diffusion"]["value"] > agg["iqm"]["success"]["sparse"]["value"]
    poi = agg["probability_of_improvement"]["sparse"]
    assert 0.5 < poi["value"] <= 1.0 and poi["low"] <= poi["value"] <= poi["high"]
    for name in ("rl_curves.png", "rl_aggregate.png", "rl_benchmark.md", "rl_benchmark.json"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    again = benchmark_report([tmp_path / "results"], tmp_path / "out2", reps=200)
    assert again["markdown"].replace("out2", "out") == report["markdown"]  # seeded bootstrap: same every time


def test_aggregates_use_only_tasks_with_every_reward_and_seed(tmp_path):
    partial = {"dial-turn-v3": CURVES["dial-turn-v3"],
               "reach-v3": {"diffusion": CURVES["reach-v3"]["diffusion"], "sparse": CURVES["reach-v3"]["sparse"][:2]}}
    report = benchmark_report([write_records(tmp_path, partial)], tmp_path / "out", reps=100)
    assert report["aggregate"]["tasks"] == ["dial-turn-v3"]
    assert "left out until every reward has every seed: reach-v3" in report["markdown"]


def test_a_pilot_of_one_seed_has_no_aggregate(tmp_path):
    """One seed of two rewards (the Adroit pilot) is a table row, not an IQM over one sample."""
    pilot = {"dial-turn-v3": {reward: seeds[:1] for reward, seeds in CURVES["dial-turn-v3"].items()}}
    report = benchmark_report([write_records(tmp_path, pilot)], tmp_path / "out", reps=100)
    assert report["aggregate"]["tasks"] == [] and not (tmp_path / "out" / "rl_aggregate.png").exists()
    assert "no aggregate" in report["readme"]


def test_command_writes_the_readme_block_and_refuses_a_readme_without_one(tmp_path, capsys):
    records = write_records(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\n## RL\n{README_BEGIN}\nold table\n{README_END}\n\nafter\n")
    argv = ["plot-rl", str(records), "--out", str(tmp_path / "fig"), "--figures-link", "docs/rl",
            "--bootstrap-reps", "100", "--readme", str(readme)]
    assert cli.main(argv) == 0
    text = readme.read_text()
    assert text.startswith("# title\n\n## RL\n") and text.endswith("\n\nafter\n") and "old table" not in text
    assert "![success against frames per task" in text and "(docs/rl/rl_curves.png)" in text
    assert "[full report](docs/rl/rl_benchmark.md)" in text
    assert "| dial-turn-v3 | 0.87 [0.6, 1.0] | 0.33 [0.0, 0.9] |" in text  # ours first, then the baselines
    full = (tmp_path / "fig" / "rl_benchmark.md").read_text()
    assert readme_block(readme).split("Over 2 tasks")[1].split("![")[0] in full
    assert "(rl_curves.png)" in full and "(rl_aggregate.png)" in full  # the full report's figures sit beside it
    bare = tmp_path / "bare.md"
    bare.write_text("# nothing\n")
    assert cli.main([*argv[:-1], str(bare)]) == 2
    assert "no generated block" in capsys.readouterr().err


def test_readme_block_option_replaces_only_the_named_block(tmp_path):
    """Two grids' blocks in one README (MetaWorld's and Adroit's): --readme-block picks which one is rewritten."""
    records = write_records(tmp_path)
    readme = tmp_path / "README.md"
    other = rl_block("rl-benchmark-adroit")
    readme.write_text(f"{README_BEGIN}\nmetaworld table\n{README_END}\n\n{other.begin}\nold\n{other.end}\n")
    argv = ["plot-rl", str(records), "--out", str(tmp_path / "fig"), "--bootstrap-reps", "100", "--readme",
            str(readme), "--readme-block", "rl-benchmark-adroit"]
    assert cli.main(argv) == 0
    assert readme_block(readme) == "metaworld table"
    assert "| dial-turn-v3 | 0.87 [0.6, 1.0] |" in readme_block(readme, "rl-benchmark-adroit")


def test_two_records_of_one_cell_are_refused(tmp_path):
    records = write_records(tmp_path)
    extra = records / "copy"
    extra.mkdir()
    (extra / "x.json").write_text((records / "reach-v3__sparse__0.json").read_text())
    with pytest.raises(UserError, match="two records of reach-v3 / sparse / seed 0"):
        benchmark_report([records], tmp_path / "out", reps=100)


def _row(reward, per_seed, auc=0.5):
    return {"reward": reward, "seeds": list(range(len(per_seed))), "success": sum(per_seed) / len(per_seed),
            "success_min": min(per_seed), "success_max": max(per_seed), "auc": auc}


def test_verdict_calls_a_difference_only_when_the_seeds_do_not_overlap():
    from diffusion_reward.evaluation.rl_benchmark import verdict

    base = {"sparse": _row("sparse", [0.0, 0.9, 0.6]), "rnd": _row("rnd", [0.0, 0.2, 0.1])}
    assert verdict({**base, "diffusion": _row("diffusion", [1.0, 0.9, 1.0])}, "diffusion") == "ahead of sparse (+0.47)"
    assert verdict({**base, "diffusion": _row("diffusion", [1.0, 1.0, 0.0])}, "diffusion") == \
        "level with sparse (+0.17)"
    strong = {"viper": _row("viper", [0.8, 0.9, 1.0])}
    assert verdict({**strong, "diffusion": _row("diffusion", [0.1, 0.0, 0.8])}, "diffusion") == "behind viper (-0.60)"
    zeros = {name: _row(name, [0.0, 0.0, 0.0]) for name in ("diffusion", "sparse")}
    assert verdict(zeros, "diffusion") == "nothing succeeds"
    assert verdict({"diffusion": _row("diffusion", [1.0, 1.0])} | base, "diffusion") == ""  # ours not finished
    assert verdict({"diffusion": _row("diffusion", [1.0, 1.0, 1.0])}, "diffusion") == ""  # nothing to compare with
    # while another reward of the grid is unfinished (amp: one seed) or not started (viper), the verdict says so
    partial = {**base, "amp": _row("amp", [1.0]), "diffusion": _row("diffusion", [1.0, 0.9, 1.0])}
    assert verdict(partial, "diffusion", ["diffusion", "amp", "rnd", "sparse"]) == "so far: ahead of sparse (+0.47)"
    assert verdict({**base, "diffusion": _row("diffusion", [1.0, 0.9, 1.0])}, "diffusion",
                   ["diffusion", "rnd", "sparse", "viper"]).startswith("so far: ")
    assert verdict({**base, "diffusion": _row("diffusion", [1.0, 0.9, 1.0])}, "diffusion",
                   ["diffusion", "rnd", "sparse"]) == "ahead of sparse (+0.47)"
