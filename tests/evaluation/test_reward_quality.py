import math

import numpy as np
import pytest

from diffusion_reward.data.episodes import DatasetWriter, Episode, load_dataset
from diffusion_reward.evaluation.reward_quality import (auroc, evaluate_reward_models, markdown_table,
                                                         policy_rank, spearman)


def test_auroc_extremes_and_ties():
    assert auroc([3, 4, 5], [0, 1, 2]) == 1.0
    assert auroc([0, 1], [2, 3]) == 0.0
    assert auroc([1, 1], [1, 1]) == 0.5
    assert math.isnan(auroc([], [1.0]))


def test_spearman_handles_constant_input():
    assert spearman([1, 2, 3, 4], [2, 4, 6, 8]) == pytest.approx(1.0)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_policy_rank_orders_expert_noise_random():
    ranks = [policy_rank(p) for p in ("expert", "noisy:0.1", "noisy:1.0", "random")]
    assert ranks == sorted(ranks)
    assert policy_rank("video") is None


class BrightnessScorer:
    """Reward = mean brightness of each frame: the synthetic data below makes experts bright."""

    def rewards(self, frames):
        return frames.reshape(len(frames), -1).mean(1).astype(np.float32) / 255.0


def _write(tmp_path, tasks=("toy-v3",)):
    rng = np.random.default_rng(0)
    w = DatasetWriter(tmp_path, {"image_size": 8})
    levels = {"expert": 200, "noisy:0.1": 150, "noisy:0.5": 100, "random": 30}
    for task in tasks:
        for policy, level in levels.items():
            for i in range(4):
                t = 6
                ramp = np.linspace(0, 1, t)
                frames = (level * ramp[:, None, None, None] + rng.integers(0, 20, (t, 8, 8, 3))).clip(0, 255)
                dense = ramp[1:] * 10 + rng.normal(0, 0.01, t - 1)
                w.add(Episode(frames=frames.astype(np.uint8), dense=dense), task=task, policy=policy,
                      split="test", seed=i)
    return load_dataset(tmp_path)


def test_evaluate_reward_models_on_known_ordering(tmp_path):
    result = evaluate_reward_models({"brightness": BrightnessScorer()}, _write(tmp_path))
    m = result["models"]["brightness"]["tasks"]["toy-v3"]
    assert m["auroc_random"] == 1.0
    assert m["auroc_noisy:0.5"] == 1.0
    assert m["spearman_quality"] > 0.9
    assert m["spearman_dense_within"] > 0.9
    assert m["spearman_clear"] > 0.9
    assert set(result["curves"]["brightness"]["toy-v3"]) == {"expert", "noisy:0.1", "noisy:0.5", "random"}
    table = markdown_table(result)
    assert "brightness" in table and "toy-v3" in table and "**mean**" in table


def test_clear_spearman_leaves_out_slightly_noisy_experts(tmp_path):
    class PrefersSlightNoise(BrightnessScorer):
        """Ranks noisy:0.1 above the expert, everything else in order."""

        def rewards(self, frames):
            b = super().rewards(frames)
            return np.where((b.mean() > 0.25) & (b.mean() < 0.4), b + 1.0, b).astype(np.float32)

    result = evaluate_reward_models({"r": PrefersSlightNoise()}, _write(tmp_path))
    m = result["models"]["r"]["tasks"]["toy-v3"]
    assert m["spearman_clear"] > 0.9 > m["spearman_quality"]


def test_smoothing_keeps_constants_and_ignores_gaps(tmp_path):
    from diffusion_reward.evaluation.plots import plot_reward_curves, smooth

    np.testing.assert_allclose(smooth(np.full(7, 2.0), 3), 2.0)
    x = np.array([0.0, 1.0, np.nan, 3.0])
    np.testing.assert_array_equal(smooth(x, 1), x)
    assert np.all(np.isfinite(smooth(x, 3)))
    plot_reward_curves({"t": {"expert": [[1, 2, 3], [1, 2]], "random": [[0, 0, 0]]}}, tmp_path / "c.png", "title")
    assert (tmp_path / "c.png").stat().st_size > 1000


def test_unseen_tasks_are_marked_and_averaged_apart(tmp_path):
    from diffusion_reward.rewards import MotionReward

    dataset = _write(tmp_path, tasks=("seen-v3", "new-v3"))
    learned = MotionReward(device="cpu")  # stands in for a learned model fitted on seen-v3's experts only
    learned.fit_stats(dataset.select(task="seen-v3", policy="expert"))
    assert list(learned.task_stats) == ["seen-v3"]
    result = evaluate_reward_models({"learned": learned, "brightness": BrightnessScorer()}, dataset)
    assert result["seen_tasks"] == ["seen-v3"]
    for name in ("learned", "brightness"):  # every model is averaged over the same two groups
        model = result["models"][name]
        assert model["mean_seen"] == model["tasks"]["seen-v3"] and model["mean_unseen"] == model["tasks"]["new-v3"]
    # episodes of the seen task are standardized with its own statistics, the unseen with the pooled ones
    expert = dataset.select(task="seen-v3", policy="expert")[0]
    np.testing.assert_allclose(result["curves"]["learned"]["seen-v3"]["expert"][0],
                               learned.rewards(expert.frames, task="seen-v3"), rtol=1e-6)
    table = markdown_table(result)
    assert "| learned | new-v3 (unseen) |" in table and "| learned | seen-v3 |" in table
    assert "**mean, seen tasks**" in table and "**mean, unseen tasks**" in table


def test_value_order_correlation_is_the_mean_within_expert_spearman_with_time():
    from diffusion_reward.evaluation.reward_quality import ScoredEpisode, task_metrics

    rising = ScoredEpisode("t", "expert", np.arange(11, dtype=float), np.zeros(10))
    falling = ScoredEpisode("t", "expert", -np.arange(11, dtype=float), np.zeros(10))
    random = ScoredEpisode("t", "random", np.arange(11, dtype=float), np.zeros(10))  # not an expert: left out
    assert task_metrics([rising, rising, random])["voc"] == pytest.approx(1.0)
    assert task_metrics([rising, falling])["voc"] == pytest.approx(0.0)
    assert np.isnan(task_metrics([random])["voc"])


def test_command_writes_a_traceable_record_and_the_readme_block_which_the_record_alone_regenerates(tmp_path, capsys):
    from diffusion_reward import cli
    from diffusion_reward.evaluation.reward_quality import README_BLOCK
    from diffusion_reward.rewards.motion import MotionReward
    from diffusion_reward.utils.checkpoint import read_json

    _write(tmp_path / "data", tasks=("toy-v3", "other-v3"))
    MotionReward().save_pretrained(tmp_path / "motion")
    readme = tmp_path / "README.md"
    readme.write_text(f"# tool\n\n## Reward quality\n{README_BLOCK.begin}\nold\n{README_BLOCK.end}\n\nafter\n")
    record_path = tmp_path / "results" / "rq.json"
    common = ["--out", str(tmp_path / "out"), "--readme", str(readme)]
    assert cli.main(["evaluate-reward", "--model", f"pixel-change={tmp_path / 'motion'}", "--data",
                     str(tmp_path / "data"), "--no-motion", "--results", str(record_path), *common]) == 0
    record = read_json(record_path)
    assert record["run"]["episodes_per_policy"] == {"expert": "4", "noisy:0.1": "4", "noisy:0.5": "4", "random": "4"}
    assert set(record["run"]["fingerprints"]) == {"pixel-change"} and "package" in record["run"]["code"]
    assert record["run"]["models"] == {"pixel-change": str(tmp_path / "motion")}
    block = README_BLOCK.read(readme)
    value = record["models"]["pixel-change"]["mean"]["auroc_random"]
    assert f"| pixel-change | {value:.2f} |" in block and "4 expert, 4 noisy:0.1" in block
    tasks = record["models"]["pixel-change"]["tasks"]
    lowest = min(tasks, key=lambda t: (tasks[t]["auroc_random"], t))
    assert f"| {tasks[lowest]['auroc_random']:.2f} {lowest} |" in block  # the weakest task is named
    assert readme.read_text().endswith("after\n")

    README_BLOCK.write(readme, "edited by hand")
    assert cli.main(["evaluate-reward", "--from-results", str(record_path), *common]) == 0
    assert README_BLOCK.read(readme) == block

    readme.write_text("# no block here\n")
    assert cli.main(["evaluate-reward", "--from-results", str(record_path), *common]) == 2
    assert "no generated block to replace" in capsys.readouterr().err
    assert cli.main(["evaluate-reward", "--from-results", str(record_path), "--model", "x"]) == 2
    assert "drop --model and --data" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{}")
    assert cli.main(["evaluate-reward", "--from-results", str(tmp_path / "bad.json")]) == 2
    assert "not a reward-quality result" in capsys.readouterr().err


def test_records_of_the_training_and_the_unseen_tasks_merge_into_one_table(tmp_path, capsys):
    """Training and unseen tasks scored in two runs give the table one run over both would give."""
    from diffusion_reward import cli
    from diffusion_reward.evaluation.reward_quality import README_BLOCK, evaluate_reward_models
    from diffusion_reward.rewards.motion import MotionReward
    from diffusion_reward.utils.checkpoint import read_json

    both = _write(tmp_path / "both", tasks=("seen-v3", "new-v3"))
    learned = MotionReward()
    learned.fit_stats(both.select(task="seen-v3", policy="expert"))
    learned.save_pretrained(tmp_path / "learned")
    for part in ("seen", "new"):
        assert cli.main(["evaluate-reward", "--model", f"learned={tmp_path / 'learned'}", "--data",
                         str(tmp_path / "both"), "--task", f"{part}-v3", "--out", str(tmp_path / f"out-{part}"),
                         "--results", str(tmp_path / f"{part}.json")]) == 0
    readme = tmp_path / "README.md"
    readme.write_text(f"{README_BLOCK.begin}\n{README_BLOCK.end}\n")
    records = [str(tmp_path / "seen.json"), str(tmp_path / "new.json")]
    assert cli.main(["evaluate-reward", "--from-results", *records, "--out", str(tmp_path / "out"),
                     "--readme", str(readme), "--results", str(tmp_path / "merged.json")]) == 0
    merged = read_json(tmp_path / "merged.json")
    whole = evaluate_reward_models({"learned": MotionReward.from_pretrained(tmp_path / "learned"),
                                    "motion": MotionReward()}, both)
    assert merged["seen_tasks"] == ["seen-v3"] and merged["run"]["merged_from"] == records
    for name in ("learned", "motion"):
        for key in ("mean", "mean_seen", "mean_unseen"):
            assert merged["models"][name][key] == pytest.approx(whole["models"][name][key], nan_ok=True)
    block = README_BLOCK.read(readme)
    assert "1 training tasks and 1 unseen tasks, which no model was trained on." in block
    assert "new-v3" not in block  # the lowest-task column names training tasks only
    unseen = merged["models"]["learned"]["mean_unseen"]["auroc_random"]
    assert f"| learned | {merged['models']['learned']['mean_seen']['auroc_random']:.2f} |" in block
    assert f"| {unseen:.2f} |" in block.split("| learned |")[1].splitlines()[0]

    assert cli.main(["evaluate-reward", "--from-results", records[0], records[0]]) == 2
    assert "task seen-v3 is also in" in capsys.readouterr().err
    assert cli.main(["evaluate-reward", "--model", f"other={tmp_path / 'learned'}", "--data", str(tmp_path / "both"),
                     "--task", "new-v3", "--out", str(tmp_path / "out-other"), "--results", str(tmp_path / "other.json")]) == 0
    assert cli.main(["evaluate-reward", "--from-results", records[0], str(tmp_path / "other.json")]) == 2
    assert "merge records of the same reward models" in capsys.readouterr().err
