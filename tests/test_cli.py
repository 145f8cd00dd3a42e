"""Every subcommand's --help works and documents every option."""

import argparse
import importlib

import pytest

from diffusion_reward import cli


def test_top_level_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in cli._available():
        assert name in out


def test_unknown_command_is_rejected(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["no-such-command"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(cli._available()))
def test_every_option_has_help(name, capsys):
    module, _ = cli._available()[name]
    parser = argparse.ArgumentParser(prog=name)
    importlib.import_module(f"diffusion_reward.commands.{module}").add_arguments(parser)
    undocumented = [a.dest for a in parser._actions
                    if a.dest != "help" and not (a.help and a.help.strip() and a.help != argparse.SUPPRESS)]
    assert not undocumented, f"{name}: options without help: {undocumented}"
    with pytest.raises(SystemExit) as exc:
        cli.main([name, "--help"])
    assert exc.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_train_video_help_shows_each_presets_network_size():
    # --preset small trains 6 VQ-Diffusion blocks; the help must not claim the paper's 16 as the default
    from diffusion_reward.commands import train_video
    from diffusion_reward.train.video import MODEL_PRESETS

    parser = argparse.ArgumentParser(prog="train-video")
    train_video.add_arguments(parser)
    depth = next(a for a in parser._actions if a.dest == "depth").help
    for model, presets in MODEL_PRESETS.items():
        for preset, config in presets.items():
            assert f"{model}/{preset}: {config.depth}" in depth
    cond_width = next(a for a in parser._actions if a.dest == "cond_width").help
    assert "vqdiffusion/small" in cond_width and "videogpt" not in cond_width  # VQ-Diffusion-only field
