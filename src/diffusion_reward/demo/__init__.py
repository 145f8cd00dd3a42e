"""The end-to-end demo, in one package: the pipeline and its cached stages (:mod:`.pipeline`), the short
RL comparison it runs (:mod:`.rl_runs`) and its HTML/Markdown report (:mod:`.report`).
``diffusion-reward demo`` (:mod:`diffusion_reward.commands.demo`) is its command line."""

from diffusion_reward.demo.pipeline import PRESETS, DemoConfig, expected_seconds, run_demo

__all__ = ["PRESETS", "DemoConfig", "expected_seconds", "run_demo"]
