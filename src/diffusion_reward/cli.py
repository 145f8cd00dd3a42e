"""The ``diffusion-reward`` command line: a thin dispatcher over ``diffusion_reward.commands``.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``;
only the module of the command being run is imported, so ``--help`` and ``doctor`` stay quick.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys

from diffusion_reward.errors import PLACE_ERRORS, UserError
from diffusion_reward.utils.cpu_load import busy_cores

# name -> (module, one-line help). Order is the order of the pipeline.
COMMANDS: dict[str, tuple[str, str]] = {
    "doctor": ("doctor", "check this machine: versions, rendering backend and speed, torch device, bf16"),
    "collect": ("collect", "collect episodes (experts, random, noisy) from simulated tasks"),
    "import-videos": ("import_videos", "turn a folder of video files or PNG sequences into a dataset"),
    "import-demos": ("import_demos", "turn Adroit demonstrations (D4RL/Minari HDF5) into a rendered dataset"),
    "import-lerobot": ("import_lerobot", "turn one camera of a local LeRobot dataset (v2.1/v3.0) into a dataset"),
    "train-codec": ("train_codec", "train the VQ-GAN codec that turns frames into tokens"),
    "train-video": ("train_video", "train a conditional video model (VQ-Diffusion or VideoGPT) on tokens"),
    "fit-reward": ("fit_reward", "build a reward model from a trained video model (or a baseline) and expert data"),
    "score": ("score", "per-step rewards of a video file or dataset, as CSV and a plot"),
    "evaluate-reward": ("evaluate_reward", "compare reward models on expert, noisy and random episodes"),
    "train-rl": ("train_rl", "train a DrQ-v2 agent with a learned or baseline reward"),
    "benchmark-rl": ("benchmark_rl", "run an RL benchmark grid (tasks x rewards x seeds) and record every cell"),
    "plot-rl": ("plot_rl", "compare train-rl runs: success against frames per task and reward, seeds averaged"),
    "demo": ("demo", "the end-to-end demo: data, codec, video model, rewards, RL, report"),
}


def _available() -> dict[str, tuple[str, str]]:
    out = {}
    for name, (module, help_text) in COMMANDS.items():
        if importlib.util.find_spec(f"diffusion_reward.commands.{module}") is not None:
            out[name] = (module, help_text)
    return out


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; with ``command``, only that subcommand's arguments are built."""
    from diffusion_reward.version import __version__

    commands = _available()
    parser = argparse.ArgumentParser(
        prog="diffusion-reward",
        description="Learn dense RL rewards from expert videos with a conditional video diffusion model.",
        epilog="Run `diffusion-reward COMMAND --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"diffusion-reward {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, (module, help_text) in commands.items():
        p = sub.add_parser(name, help=help_text, description=help_text,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        if name == command:
            importlib.import_module(f"diffusion_reward.commands.{module}").add_arguments(p)
    return parser


def choose_openmp_waiting() -> str | None:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` when other processes keep the CPU busy; returns the reason, or ``None``.

    OpenMP threads that spin between kernels are fastest on a quiet machine, and slowest beside
    another busy process, whose cores they burn (benchmarks/openmp_waiting.py on 2 cores: spinning
    ran small training steps 1.2-1.9x faster than sleeping when quiet, 1.6-2.5x slower beside one
    busy process). libgomp reads the setting once, so it must precede importing torch; a user's own
    ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` is left alone. The load is measured now, over a
    quarter of a second (the load average lags by a minute).
    """
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return None
    busy = busy_cores()
    if busy is None or busy < 0.5:
        return None
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return (f"other processes keep {busy:.1f} of {os.cpu_count()} CPU cores busy: OpenMP threads will sleep "
            "rather than spin between kernels (set OMP_WAIT_POLICY yourself to choose)")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    asks_help = not argv or any(a in ("-h", "--help", "--version") for a in argv)
    openmp_note = None if asks_help else choose_openmp_waiting()
    commands = _available()
    command = next((a for a in argv if not a.startswith("-")), None)
    if command is not None and command not in commands:
        build_parser().parse_args(argv)  # argparse prints "invalid choice" with the list
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if openmp_note and args.command not in ("doctor",):
        print(f"diffusion-reward: {openmp_note}", file=sys.stderr)
    module = importlib.import_module(f"diffusion_reward.commands.{commands[args.command][0]}")
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("diffusion-reward: interrupted", file=sys.stderr)
        return 130
    except UserError as exc:
        print(f"diffusion-reward {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a write that did not go through atomic_path (logs, videos) into a full/read-only place
        if exc.errno not in PLACE_ERRORS:
            raise
        print(f"diffusion-reward {args.command}: error: {exc.filename}: cannot write here: "
              f"{PLACE_ERRORS[exc.errno]} ({exc.strerror})",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
