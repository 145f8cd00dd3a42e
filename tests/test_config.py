import argparse
import dataclasses
from typing import Literal

import pytest

from diffusion_reward.config import add_config_args, config_from_args, from_dict, option, to_dict


@dataclasses.dataclass(frozen=True)
class Inner:
    width: int = option(8, "layer width")


@dataclasses.dataclass(frozen=True)
class Demo:
    lr: float = option(1e-4, "learning rate")
    name: str = option("x", "a name")
    bf16: bool = option(False, "use bfloat16")
    mode: Literal["a", "b"] = option("a", "which mode")
    channels: tuple[int, ...] = option((1, 2), "channels per level")
    inner: Inner = option(Inner(), "nested", cli=False)


def _parse(argv):
    p = argparse.ArgumentParser()
    add_config_args(p, Demo)
    return p, p.parse_args(argv)


def test_flags_override_preset_and_help_documents_every_field():
    p, args = _parse(["--lr", "0.5", "--bf16", "--channels", "3", "4", "5"])
    cfg = config_from_args(Demo, args, base=Demo(name="preset"))
    assert cfg == Demo(lr=0.5, name="preset", bf16=True, channels=(3, 4, 5))
    text = p.format_help()
    for flag in ("--lr", "--name", "--bf16", "--mode", "--channels"):
        assert flag in text
    assert "learning rate" in text and "(default: 0.0001)" in text


def test_bad_choice_is_rejected():
    with pytest.raises(SystemExit):
        _parse(["--mode", "c"])


def test_json_round_trip_and_unknown_key():
    cfg = Demo(lr=0.1, channels=(4,), inner=Inner(3))
    assert from_dict(Demo, to_dict(cfg)) == cfg
    with pytest.raises(ValueError, match="unknown config key"):
        from_dict(Demo, {**to_dict(cfg), "lrr": 1})


def test_mutable_defaults_are_refused():
    with pytest.raises(TypeError):
        option([1, 2], "a list")
