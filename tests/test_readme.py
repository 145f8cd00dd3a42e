"""The README's commands work as written: every `diffusion-reward ...` line parses with the real
command-line parser, the Python example's imports exist, and CI runs the README's test command."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from diffusion_reward import cli

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def readme_commands() -> list[str]:
    """Every diffusion-reward command line in the README (inline code and shell blocks), except
    abbreviated ones (``...``) and the ``COMMAND --help`` pattern."""
    found = re.findall(r"`([^`\n]*diffusion-reward [^`\n]*)`", README)
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S):
        lines = block.replace("\\\n", " ").splitlines()  # a command continued over lines is one command
        found += [line for line in lines if "diffusion-reward" in line or "diffusion_reward.cli" in line]
    return [c for c in dict.fromkeys(found) if "..." not in c and "COMMAND" not in c]


def command_argv(line: str) -> list[str]:
    """The arguments after the program name (``diffusion-reward``, ``.venv/bin/diffusion-reward``
    or ``-m diffusion_reward.cli``), from the last ``&&`` part of the line."""
    words = shlex.split(line.split("&&")[-1])
    for i, word in enumerate(words):
        if word.endswith("diffusion-reward") or word == "diffusion_reward.cli":
            return words[i + 1:]
    raise AssertionError(f"no diffusion-reward program in {line!r}")


def test_readme_lists_every_command() -> None:
    commands = readme_commands()
    named = {command_argv(c)[0] for c in commands if command_argv(c)}
    assert set(cli.COMMANDS) <= named, sorted(set(cli.COMMANDS) - named)


@pytest.mark.parametrize("line", readme_commands())
def test_readme_command_parses(line: str) -> None:
    argv = command_argv(line)
    try:
        args = cli.build_parser(argv[0]).parse_args(argv)
    except SystemExit as exc:  # argparse rejects unknown options and bad values this way
        pytest.fail(f"README command does not parse ({exc.code}): {line}")
    assert args.command == argv[0]


def test_readme_python_example_imports_exist() -> None:
    block = re.search(r"```python\n(.*?)```", README, flags=re.S)
    assert block is not None
    imports = [line.split("#")[0] for line in block.group(1).splitlines()
               if line.startswith("from diffusion_reward") or line.startswith("import diffusion_reward")]
    assert imports
    exec("\n".join(imports), {})


def test_ci_runs_the_readme_test_command() -> None:
    top = README.split("```bash\n", 1)[1].split("```", 1)[0].strip().splitlines()
    assert len(top) == 2 and "demo" in top[0] and "pytest" in top[1]
    assert top[1] in (ROOT / ".ci" / "run").read_text()


RL_GRIDS = [("metaworld-state-small", "docs/images/rl", "rl-benchmark")]


@pytest.mark.parametrize("grid, figures, block", RL_GRIDS)
def test_readme_rl_table_is_what_the_committed_records_give(grid: str, figures: str, block: str) -> None:
    """Each README RL block is `plot-rl benchmarks/results/rl/GRID --out FIGURES --readme README.md --readme-block
    BLOCK` as the committed records give it (rerun that command after adding records)."""
    from diffusion_reward.evaluation.rl_benchmark import find_records, load_records, readme_block, report_text

    records = ROOT / "benchmarks" / "results" / "rl" / grid
    text = readme_block(ROOT / "README.md", block)
    assert f"<!-- /{block} -->" in README, f"the README has no {block} block"
    if not find_records([records]):
        assert text == "", f"the README shows {grid} results but no records are committed"
        return
    curves, budget = load_records([records])
    _, _, _, short = report_text(curves, budget, figures_link=figures)
    assert text == short.strip()


def test_readme_reward_quality_tables_are_what_the_committed_record_gives() -> None:
    """The README's reward-quality block is `evaluate-reward --from-results RECORD [UNSEEN] --out
    docs/images/reward-quality --readme README.md` for the committed records (the training tasks', and the unseen
    tasks' when it is committed)."""
    from diffusion_reward.evaluation.reward_quality import README_BLOCK, merge_results, read_results, readme_markdown

    folder = ROOT / "benchmarks" / "results" / "reward_quality"
    record, unseen = folder / "metaworld-small.json", folder / "metaworld-small-unseen.json"
    block = README_BLOCK.read(ROOT / "README.md")
    if not record.exists():
        assert block == "", "the README shows reward-quality results but no record is committed"
        return
    paths = [record, unseen] if unseen.exists() else [record]
    result = merge_results([read_results(p) for p in paths], [str(p) for p in paths])
    expected = readme_markdown(result, full_table="docs/images/reward-quality/reward_quality.md")
    assert block == expected.strip()


def test_readme_adroit_reward_quality_table_is_what_the_committed_record_gives() -> None:
    """The README's Adroit block is `evaluate-reward --from-results benchmarks/results/reward_quality/adroit-small.json
    --out docs/images/reward-quality-adroit --readme README.md --readme-block reward-quality-adroit`."""
    from diffusion_reward.evaluation.reward_quality import read_results, readme_block, readme_markdown

    record = ROOT / "benchmarks" / "results" / "reward_quality" / "adroit-small.json"
    block = readme_block("reward-quality-adroit").read(ROOT / "README.md")
    if not record.exists():
        assert block == "", "the README shows Adroit reward-quality results but no record is committed"
        return
    expected = readme_markdown(read_results(record), full_table="docs/images/reward-quality-adroit/reward_quality.md")
    assert block == expected.strip()


def test_readme_stays_short() -> None:
    """The README is the front door (what it is, set-up, commands, current results); studies live in docs/."""
    assert len(README.encode()) <= 12 * 1024, "move detail to docs/ (docs/results.md indexes the studies)"
