"""A small task for the trainer tests, also runnable as a script (killed runs, torchrun).

    python trainer_toy.py kill RUN_DIR STEP          train the toy task, SIGKILL itself during STEP
    torchrun --nproc-per-node 2 trainer_toy.py ddp OUT_DIR   toy + tiny codec under DDP, weights per rank
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys

import torch
import torch.nn.functional as F
from torch import nn

from diffusion_reward.config import option
from diffusion_reward.models import PretrainedModel
from diffusion_reward.train.trainer import OptimizerSpec, Trainer, TrainerConfig, TrainTask
from diffusion_reward.utils.seeding import seed_everything


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    width: int = option(16, "hidden width")


class ToyNet(PretrainedModel):
    config_class = ToyConfig
    kind = "toy"

    def __init__(self, config: ToyConfig):
        super().__init__(config)
        self.net = nn.Sequential(nn.Linear(4, config.width), nn.Tanh(), nn.Dropout(0.2), nn.Linear(config.width, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ToyData:
    """50 (x, y) pairs served item by item (the trainer collates them)."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(123)
        self.x = torch.randn(50, 4, generator=g)
        self.y = (self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0]))[:, None]

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]


class ToyTask(TrainTask):
    """A regression net (AdamW, warm-up, clipping, dropout, input noise) and a second optimiser."""

    def __init__(self, width: int = 16, kill_at: int = -1, nan_at: int = -1, random: bool = True):
        self.modules = {"model": ToyNet(ToyConfig(width)), "critic": nn.Linear(4, 1)}
        if not random:  # no dropout, no input noise: the same on one process as on several
            self.modules["model"].net[2].p = 0.0
        self.kill_at, self.nan_at, self.width, self.random = kill_at, nan_at, width, random

    def optimizers(self) -> list[OptimizerSpec]:
        return [OptimizerSpec("model", ("model",), lr=0.05, kind="adamw", weight_decay=0.01, warmup_steps=3,
                              grad_clip=1.0),
                OptimizerSpec("critic", ("critic",), lr=0.01)]

    def training_step(self, trainer: Trainer, batch):
        if trainer.step == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        x, y = batch
        if self.random:
            x = x + 0.01 * torch.randn_like(x)  # draws from the global RNG: resume must restore it
        with trainer.autocast():
            loss = F.mse_loss(trainer.module("model")(x).float(), y)
        if trainer.step == self.nan_at:
            loss = loss * float("nan")
        trainer.optimize("model", loss)
        critic = F.mse_loss(trainer.module("critic")(x), y)
        trainer.optimize("critic", critic)
        return {"loss": loss.detach(), "critic": critic.detach()}

    def evaluate(self, trainer: Trainer):
        data = ToyData()
        return {"mse": float(F.mse_loss(trainer.raw("model")(data.x), data.y))}

    def config_dict(self):
        return {"width": self.width}


def toy_config(run_dir, **kw) -> TrainerConfig:
    base = dict(run_dir=str(run_dir), steps=10, batch_size=8, seed=3, device="cpu", threads=1, log_every=2,
                checkpoint_every=3, keep_checkpoints=2, ema_decay=0.9, tensorboard=False, progress=False,
                bf16=False)  # float32: DDP and one process must agree to 1e-5 on CPUs where bf16 is auto-on
    base.update(kw)
    return TrainerConfig(**base)


def train_toy(run_dir, task: dict | None = None, **kw) -> Trainer:
    """Seed, build ``ToyTask(**task)`` and train it with ``toy_config(run_dir, **kw)``."""
    seed_everything(0)
    trainer = Trainer(ToyTask(**(task or {})), ToyData(), toy_config(run_dir, **kw))
    trainer.fit()
    return trainer


def _ddp(out_dir: str) -> None:
    from safetensors.torch import save_file

    from diffusion_reward.models.codec import PRESETS, VQGAN
    from diffusion_reward.train.codec import CodecTask, CodecTrainConfig
    from diffusion_reward.train.data import FrameDataset

    rank = int(os.environ["RANK"])
    toy = train_toy(os.path.join(out_dir, "toy"), {"random": False}, ema_decay=0.0)
    save_file({k: v.contiguous() for k, v in toy.raw("model").state_dict().items()},
              os.path.join(out_dir, f"toy-rank{rank}.safetensors"))
    seed_everything(0)
    frames = torch.randint(0, 256, (24, 64, 64, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))
    cfg = dataclasses.replace(PRESETS["tiny"], revive_after=1)
    task = CodecTask(VQGAN(cfg), CodecTrainConfig(lr=1e-3, disc_start=1))
    config = toy_config(os.path.join(out_dir, "codec"), steps=3, batch_size=4, ema_decay=0.0, checkpoint_every=2)
    with Trainer(task, FrameDataset(frames), config) as trainer:
        trainer.fit()
        state = {f"model.{k}": v for k, v in trainer.raw("model").state_dict().items()}
        state.update({f"disc.{k}": v for k, v in trainer.raw("discriminator").state_dict().items()})
        save_file({k: v.contiguous() for k, v in state.items()}, os.path.join(out_dir, f"codec-rank{rank}.safetensors"))
    toy.close()  # the first trainer joined the process group: it leaves it


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "kill":
        train_toy(sys.argv[2], {"kill_at": int(sys.argv[3])})
    elif mode == "ddp":
        _ddp(sys.argv[2])
    else:
        raise SystemExit(f"unknown mode {mode}")
