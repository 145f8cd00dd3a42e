"""The demo end to end at toy size: every stage runs, the report is written, a second run reuses the work."""

from __future__ import annotations

import dataclasses
import json

from diffusion_reward import cli
from diffusion_reward.demo.pipeline import PRESETS, DemoConfig, _stages, _time_left, expected_seconds, run_demo
from diffusion_reward.models.video import vqdiffusion

TOY = dataclasses.replace(PRESETS["quick"], expert_episodes=2, test_episodes=1, random_train_episodes=1,
                          max_steps=60, codec_steps=6, video_steps=4, baseline_steps=4, stats_episodes=1,
                          eval_windows=8, rl_frames=0)


def test_toy_demo_writes_the_report_and_caches_its_stages(tmp_path, monkeypatch) -> None:
    messages: list[str] = []
    html = run_demo(TOY, tmp_path / "demo", announce=messages.append)
    assert html == tmp_path / "demo" / "report.html" and html.is_file()
    page = html.read_text()
    assert "data:image/png;base64," in page and "diffusion (entropy)" in page
    md = (tmp_path / "demo" / "report.md").read_text()
    assert "motion (reference)" in md  # the reference scorer sits in the reward-quality table
    for stage in ("data", "codec", "video", "rewards", "evaluate"):
        assert json.loads((tmp_path / "demo" / stage / "stage.json").read_text())["key"]
    assert not any("reusing" in m for m in messages)

    again: list[str] = []
    run_demo(TOY, tmp_path / "demo", announce=again.append)
    assert sum("reusing finished work" in m for m in again) == 5

    # a changed setting redoes the stages that depend on it, not the data
    third: list[str] = []
    run_demo(dataclasses.replace(TOY, baseline_steps=5), tmp_path / "demo", announce=third.append)
    reused = {m.split("]")[1].split(":")[0].strip() for m in third if "reusing" in m}
    assert reused == {"data", "codec", "video"}

    # so does a preset that names a different network than when the stage ran (a new version's preset)
    fourth: list[str] = []
    monkeypatch.setitem(vqdiffusion.PRESETS, TOY.video_preset,
                        dataclasses.replace(vqdiffusion.PRESETS[TOY.video_preset], heads=1))
    run_demo(dataclasses.replace(TOY, baseline_steps=5), tmp_path / "demo", announce=fourth.append)
    reused = {m.split("]")[1].split(":")[0].strip() for m in fourth if "reusing" in m}
    assert reused == {"data", "codec"}


def test_time_left_scales_reference_times_by_this_machines_speed() -> None:
    expected = {"data": 100.0, "codec": 200.0, "video": 300.0}
    assert _time_left(expected, {}, ["data", "codec", "video"]) == " (about 10 min left)"
    # this machine ran the data stage twice as slowly as the reference
    assert _time_left(expected, {"data": 200.0}, ["codec", "video"]) == " (about 17 min left)"
    assert _time_left(expected, {"data": 10.0}, ["video"]) == " (about 30 s left)"
    assert _time_left(None, {}, ["data"]) == ""
    assert expected_seconds(DemoConfig(seed=12345)) is None  # no estimate for custom settings
    for name, preset in PRESETS.items():  # every stage of every preset has a measured reference time
        assert set(expected_seconds(preset)) == {stage for stage, _, _ in _stages(preset)}, name


def test_demo_help_documents_every_option(capsys) -> None:
    parser = cli.build_parser("demo")
    sub = next(a for a in parser._actions if a.dest == "command").choices["demo"]
    for action in sub._actions:
        assert action.help and action.help.strip(), action.dest
    assert "--stats-episodes" in sub.format_help() and "--quick" in sub.format_help()
