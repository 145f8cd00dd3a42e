"""The demo's report: what was run, what the models learned, how the rewards compare, the RL curves."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from diffusion_reward.config import to_dict
from diffusion_reward.evaluation.report import Report
from diffusion_reward.evaluation.reward_quality import SUMMARY_COLUMNS, _row_value

COLUMN_TITLES = {
    "auroc_random": "AUROC expert vs random",
    "auroc_noisy": "AUROC expert vs noisy",
    "spearman_quality": "Spearman(policy quality, reward)",
    "spearman_clear": "Spearman(quality, reward): expert, clearly noisy, random",
    "spearman_dense": "Spearman(reward, dense)",
    "spearman_dense_within": "within-episode Spearman(reward, dense)",
    "voc": "value-order correlation (Spearman(reward, time) in expert episodes)",
}


def _headline(models: dict[str, Any]) -> str:
    best = max(models, key=lambda n: _score(models[n]["mean"]))
    ours = next((n for n in models if n.startswith("diffusion (entropy)")), None)
    parts = []
    if ours is not None:
        m = models[ours]["mean"]
        parts.append(f"**Diffusion Reward (entropy)**: expert vs random AUROC {m.get('auroc_random', math.nan):.2f}, "
                     f"expert vs noisy AUROC {_row_value(m, 'auroc_noisy'):.2f}, Spearman between policy quality "
                     f"and episode reward {m.get('spearman_quality', math.nan):.2f} (1 = perfect ranking).")
    parts.append(f"Best mean ranking of policies in this run: **{best}**.")
    return " ".join(parts)


def _score(m: dict[str, float]) -> float:
    v = m.get("spearman_quality", math.nan)
    return v if math.isfinite(v) else -2.0


def write_demo_report(config: Any, root: Path, results: dict[str, Any], timings: dict[str, float],
                      machine: dict[str, Any]) -> Path:
    r = Report("Diffusion Reward: end-to-end demo")
    data = results["data"]
    r.text(f"Tasks: {', '.join(config.tasks)}. {data['episodes']} episodes ({data['frames']} frames of 64x64 "
           f"video) collected with MetaWorld's scripted experts, noisy experts and a random policy; "
           f"everything below was trained on the **expert** train episodes only and evaluated on held-out episodes.",
           note=True)
    evaluation = results.get("evaluate")
    if evaluation:
        r.text(_headline(evaluation["models"]))

    r.heading("Learned reward along the episode")
    r.text("Mean reward per step (band: ±1 std over held-out episodes) for the expert, noisy experts and a "
           "random policy. A trustworthy reward keeps the expert on top.")
    if evaluation:
        for name, path in evaluation["figures"].items():
            if name.startswith("diffusion (entropy)"):
                r.image(path, f"{name}: reward along the episode, one panel per task")

    r.heading("Reward quality, every reward model side by side")
    if evaluation:
        header = ["reward model", "task", *[COLUMN_TITLES[c] for c in SUMMARY_COLUMNS], "frames/s"]
        rows = []
        for name, model in evaluation["models"].items():
            for task, m in [*model["tasks"].items(), ("mean", model["mean"])]:
                rows.append([name, task, *[_row_value(m, c) for c in SUMMARY_COLUMNS], model["frames_per_s"]])
        r.table(header, rows)
        r.text("AUROC: probability that an expert episode gets a higher mean reward than the other policy's. "
               "Spearman(policy quality, reward): rank correlation between policy quality (expert > less noise > "
               "more noise > random) and episode-mean reward. Dense: MetaWorld's hand-shaped reward. The motion "
               "reference (mean absolute pixel change) shows how much is explained by movement alone. RND is an "
               "exploration bonus: it rewards novelty, so low scores are expected.")
        for name, path in evaluation["figures"].items():
            if not name.startswith("diffusion (entropy)"):
                r.image(path, f"{name}: reward along the episode")

    rl = results.get("rl")
    if rl:
        r.heading(f"Reinforcement learning on {config.rl_task}")
        r.text(rl.get("description", ""))
        if rl.get("figure"):
            r.image(rl["figure"], "success rate against environment frames")
        if rl.get("table"):
            r.table(rl["table"]["header"], rl["table"]["rows"])

    r.heading("What the models learned")
    codec = results["codec"]
    cm = codec["metrics"]
    r.text(f"Codec (VQ-GAN, preset `{config.codec_preset}`, {config.codec_steps} steps): held-out PSNR "
           f"{_fmt(cm.get('test/psnr'))} dB (train {_fmt(cm.get('train/psnr'))} dB), codebook usage "
           f"{_fmt(cm.get('test/codebook_usage'))}, perplexity {_fmt(cm.get('test/perplexity'))}.")
    if codec.get("reconstructions"):
        r.image(codec["reconstructions"], "held-out frames (top) and their reconstructions from 8x8 tokens (bottom)")
    for kind, v in results["video"].items():
        m = v["metrics"]
        bound = {k: val for k, val in m.items() if "bits" in k}
        r.text(f"Video model `{kind}`, bits per token (lower = more confident; uniform = "
               f"{_fmt(m.get('uniform_bits_per_token'))}): " + ", ".join(
                   f"{k.replace('_bits_per_token', '')} {_fmt(val)}" for k, val in sorted(bound.items())
                   if k != "uniform_bits_per_token") + ". `test` = held-out expert windows, `compare` = random-policy windows.")
        if v.get("samples"):
            r.image(v["samples"], f"{kind}: condition frames, the true next frame, sampled next frames")

    r.heading("Timings and machine")
    r.table(["stage", "seconds"], [[k, round(v, 1)] for k, v in timings.items()] +
            [["total", round(sum(timings.values()), 1)]])
    r.table(["", ""], [[k, str(v)] for k, v in machine.items()])
    r.heading("Settings")
    r.table(["setting", "value"], [[k, str(v)] for k, v in to_dict(config).items()])
    _, html = r.write(root)
    return html


def _fmt(value: Any) -> str:
    if isinstance(value, (int, float)) and math.isfinite(float(value)):
        return f"{float(value):.3g}"
    return "–" if value is None else str(value)
