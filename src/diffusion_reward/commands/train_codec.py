"""``diffusion-reward train-codec``: train the VQ-GAN codec on episode datasets.

Examples::

    diffusion-reward train-codec --data data/metaworld --preset small
    diffusion-reward train-codec --data data/a --data data/b --preset paper --steps 200000 --out models/codec
    torchrun --nproc-per-node 2 -m diffusion_reward.cli train-codec --data data/metaworld --device cpu
    diffusion-reward train-codec --data data/metaworld --run-dir runs/codec-small --resume
"""

from __future__ import annotations

import argparse
import json

from diffusion_reward.config import add_config_args, config_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from diffusion_reward.models.codec.vqgan import PRESETS, CodecConfig
    from diffusion_reward.train.codec import TRAIN_PRESETS, CodecTrainConfig
    from diffusion_reward.train.trainer import TrainerConfig

    parser.description = (parser.description or "") + (
        "\n\nTrains on the split=train frames of the datasets and reports PSNR on them and on the held-out "
        "split=test frames. Writes the model directory (config.json + model.safetensors, load with "
        "VQGAN.from_pretrained), metrics.json and reconstructions.png. Options left out take the preset's value.")
    parser.add_argument("--data", action="append", required=True, metavar="DATASET",
                        help="episode dataset directory; repeat to train on several together")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small",
                        help="model size and training defaults: tiny (seconds, for tests), small (minutes on a "
                             "CPU), paper (the reference 20.5M-parameter codec) (default: 'small')")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="model directory to write (default: <run dir>/model)")
    groups = (("codec network", CodecConfig, PRESETS),
              ("losses and optimisers", CodecTrainConfig, {k: v[0] for k, v in TRAIN_PRESETS.items()}),
              ("training loop", TrainerConfig, {k: v[1] for k, v in TRAIN_PRESETS.items()}))
    for title, cls, presets in groups:
        group = parser.add_argument_group(f"{title} (defaults: the preset's)")
        add_config_args(group, cls)
        _show_preset_defaults(group, presets)


def _show_preset_defaults(group: argparse._ArgumentGroup, presets: dict) -> None:
    """Replace the "(default: x)" of each flag by the presets' values where they differ."""
    for action in group._group_actions:
        values = {name: getattr(cfg, action.dest) for name, cfg in presets.items()}
        if len({repr(v) for v in values.values()}) > 1 and action.help:
            shown = ", ".join(f"{name}: {v!r}" for name, v in values.items()).replace("%", "%%")
            action.help = action.help[:action.help.rfind("(default:")] + f"(default: {shown})"


def run(args: argparse.Namespace) -> int:
    from diffusion_reward.models.codec.vqgan import PRESETS, CodecConfig
    from diffusion_reward.train.codec import TRAIN_PRESETS, CodecTrainConfig, format_metrics, train_codec
    from diffusion_reward.train.trainer import TrainerConfig

    try:
        model_cfg = config_from_args(CodecConfig, args, base=PRESETS[args.preset])
        train_base, trainer_base = TRAIN_PRESETS[args.preset]
        train_cfg = config_from_args(CodecTrainConfig, args, base=train_base)
        trainer_cfg = config_from_args(TrainerConfig, args, base=trainer_base)
    except (TypeError, ValueError) as exc:
        from diffusion_reward.errors import UserError

        raise UserError(f"bad option: {exc}") from None
    result = train_codec(args.data, out=args.out, preset=args.preset, model_config=model_cfg,
                         train_config=train_cfg, trainer_config=trainer_cfg)
    if result.metrics:
        print(f"codec written to {result.artefact} (run directory {result.run_dir})")
        print(format_metrics(result.metrics))
        print(json.dumps({k: v for k, v in result.metrics.items() if "/" in k}, sort_keys=True))
    return 0
