"""PatchGAN discriminator: one real/fake logit per overlapping image patch.

The reference design: a 4x4 stride-2 convolution with ``base_channels`` filters, then
``num_layers - 1`` more stride-2 convolutions doubling the width (capped at 8x), one stride-1
convolution and a 1-channel output convolution; BatchNorm and LeakyReLU(0.2) in between.
With 3 layers and 64 base filters it has about 2.8M parameters and sees 70x70-pixel patches
(on a 64x64 frame: a 6x6 grid of logits).

BatchNorm always normalises with the statistics of the batch at hand and keeps no running
averages: the discriminator only ever runs in training, and without running buffers the
processes of a distributed run cannot drift apart.
"""

from __future__ import annotations

import torch
from torch import nn


class PatchDiscriminator(nn.Module):
    """Frames ``(B, 3, H, W)`` in ``[-1, 1]`` -> patch logits ``(B, 1, h', w')``."""

    def __init__(self, num_layers: int = 3, base_channels: int = 64):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, base_channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        width = base_channels
        for i in range(1, num_layers + 1):
            stride = 2 if i < num_layers else 1
            out = base_channels * min(2 ** i, 8)
            layers += [nn.Conv2d(width, out, 4, stride=stride, padding=1, bias=False), nn.BatchNorm2d(out, track_running_stats=False),
                       nn.LeakyReLU(0.2)]
            width = out
        layers.append(nn.Conv2d(width, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*layers)
        self.apply(_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _init(module: nn.Module) -> None:
    # the usual GAN initialisation: N(0, 0.02) convolutions, N(1, 0.02) norm scales
    if isinstance(module, nn.Conv2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
