"""Loss terms of the VQ-GAN: reconstruction, hinge GAN losses and the adaptive GAN weight.

The codebook/commitment term comes from the quantizer, the perceptual term from
:mod:`diffusion_reward.models.codec.lpips`; the training step that combines them lives in
:mod:`diffusion_reward.train.codec`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def l1_loss(original: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    return (original.float() - reconstruction.float()).abs().mean()


def hinge_discriminator_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """``0.5 * (mean(relu(1 - D(x))) + mean(relu(1 + D(G(z)))))``; pass ``D(G(z))`` on detached fakes."""
    return 0.5 * (F.relu(1.0 - logits_real.float()).mean() + F.relu(1.0 + logits_fake.float()).mean())


def hinge_generator_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """The generator's side of the hinge GAN: ``-mean(D(G(z)))``."""
    return -logits_fake.float().mean()


def adaptive_gan_weight(rec_loss: torch.Tensor, gan_loss: torch.Tensor, last_layer: torch.Tensor,
                        max_weight: float = 1e4) -> torch.Tensor:
    """``||grad rec_loss|| / (||grad gan_loss|| + 1e-4)`` w.r.t. ``last_layer``, detached and clamped.

    Balances the GAN term against reconstruction by the size of their gradients at the decoder's
    output layer, so the GAN never dominates whatever the scale of the logits.
    """
    g_rec = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_gan = torch.autograd.grad(gan_loss, last_layer, retain_graph=True)[0]
    weight = g_rec.norm() / (g_gan.norm() + 1e-4)
    return weight.clamp(0.0, max_weight).detach()
