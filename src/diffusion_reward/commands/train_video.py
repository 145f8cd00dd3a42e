"""``diffusion-reward train-video``: train a conditional video model on a codec's tokens.

Examples::

    diffusion-reward train-video --model vqdiffusion --codec runs/codec-small/model --data data/metaworld
    diffusion-reward train-video --model videogpt --codec models/codec --data data/metaworld --preset paper
    torchrun --nproc-per-node 2 -m diffusion_reward.cli train-video --codec C --data D --device cpu
    diffusion-reward train-video --codec C --data D --run-dir runs/video-vqdiffusion-small --resume
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from diffusion_reward.config import add_config_args, config_from_args

# set from the codec, never from flags
_FROM_CODEC = ("codebook_size", "grid")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from diffusion_reward.models.video.vqdiffusion import VQDiffusionConfig
    from diffusion_reward.train.trainer import TrainerConfig
    from diffusion_reward.train.video import MODEL_PRESETS, TRAIN_PRESETS, VideoTrainConfig

    parser.description = (parser.description or "") + (
        "\n\nTokenises the datasets once with the codec (cached), trains on windows of k+1 frames from the "
        "split=train episodes, and reports on held-out split=test windows the bound (VQ-Diffusion) or the "
        "negative log-likelihood (VideoGPT) in bits per token next to the uniform baseline log2 K, and the same "
        "on random-policy windows when the data has them. Writes the model directory (config.json with the "
        "codec's path and fingerprint + model.safetensors), metrics.json and samples.png. Options left out "
        "take the preset's value.")
    parser.add_argument("--model", choices=("vqdiffusion", "videogpt"), default="vqdiffusion",
                        help="vqdiffusion (the Diffusion Reward model) or videogpt (VIPER's) (default: 'vqdiffusion')")
    parser.add_argument("--codec", required=True, metavar="CODEC_DIR",
                        help="the trained codec's directory (from train-codec); its codebook size and token grid "
                             "set the model's")
    parser.add_argument("--data", action="append", required=True, metavar="DATASET",
                        help="episode dataset directory; repeat to train on several together")
    parser.add_argument("--preset", choices=("tiny", "small", "paper"), default="small",
                        help="model size and training defaults: tiny (seconds, for tests), small (VQ-Diffusion about "
                             "15 minutes on two CPU cores, VideoGPT about 20), paper (the reference sizes) (default: 'small')")
    parser.add_argument("--out", metavar="DIR", default=None, help="model directory to write (default: <run dir>/model)")
    net = parser.add_argument_group("network (defaults: the preset's; VQ-Diffusion-only options are refused for "
                                    "videogpt)")
    add_config_args(net, VQDiffusionConfig, skip=_FROM_CODEC)
    _show_preset_defaults(net, {f"{m}/{p}": cfg for m, ps in MODEL_PRESETS.items() for p, cfg in ps.items()})
    train = parser.add_argument_group("optimiser, data and evaluation (defaults: the preset's)")
    add_config_args(train, VideoTrainConfig)
    _show_preset_defaults(train, {f"{m}/{p}": v[0] for m, ps in TRAIN_PRESETS.items() for p, v in ps.items()})
    loop = parser.add_argument_group("training loop (defaults: the preset's)")
    add_config_args(loop, TrainerConfig)
    _show_preset_defaults(loop, {f"{m}/{p}": v[1] for m, ps in TRAIN_PRESETS.items() for p, v in ps.items()})


def _show_preset_defaults(group: argparse._ArgumentGroup, presets: dict) -> None:
    """Replace the "(default: x)" of each flag by the presets' values where they differ (presets
    without the field, such as VideoGPT's for a VQ-Diffusion-only flag, are left out)."""
    for action in group._group_actions:
        values = {name: getattr(cfg, action.dest) for name, cfg in presets.items() if hasattr(cfg, action.dest)}
        if len({repr(v) for v in values.values()}) > 1 and action.help:
            shown = ", ".join(f"{name}: {v!r}" for name, v in values.items()).replace("%", "%%")
            action.help = action.help[:action.help.rfind("(default:")] + f"(default: {shown})"


def run(args: argparse.Namespace) -> int:
    from diffusion_reward.errors import UserError
    from diffusion_reward.models.video.videogpt import VideoGPTConfig
    from diffusion_reward.models.video.vqdiffusion import VQDiffusionConfig
    from diffusion_reward.train.trainer import TrainerConfig
    from diffusion_reward.train.video import MODEL_PRESETS, TRAIN_PRESETS, VideoTrainConfig, format_metrics, train_video

    config_class = VQDiffusionConfig if args.model == "vqdiffusion" else VideoGPTConfig
    own = {f.name for f in dataclasses.fields(config_class)}
    foreign = [f.name for f in dataclasses.fields(VQDiffusionConfig)
               if f.name not in own and getattr(args, f.name, None) is not None]
    if foreign:
        raise UserError(f"option(s) {', '.join('--' + n.replace('_', '-') for n in foreign)} apply to vqdiffusion, "
                        f"not {args.model}")
    try:
        model_cfg = config_from_args(config_class, args, base=MODEL_PRESETS[args.model][args.preset])
        train_base, trainer_base = TRAIN_PRESETS[args.model][args.preset]
        train_cfg = config_from_args(VideoTrainConfig, args, base=train_base)
        trainer_cfg = config_from_args(TrainerConfig, args, base=trainer_base)
    except (TypeError, ValueError) as exc:
        raise UserError(f"bad option: {exc}") from None
    result = train_video(args.data, args.codec, model=args.model, out=args.out, preset=args.preset,
                         model_config=model_cfg, train_config=train_cfg, trainer_config=trainer_cfg)
    if result.metrics:
        print(f"{args.model} written to {result.artefact} (run directory {result.run_dir})")
        print(format_metrics(result.metrics))
        print(json.dumps({k: v for k, v in result.metrics.items() if "/" in k}, sort_keys=True))
    return 0
