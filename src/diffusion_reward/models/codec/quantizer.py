"""Vector quantizer with the codebook-health measures that matter at small scale.

Encoder outputs are snapped to their nearest codebook entry (straight-through gradients to
the encoder, codebook + beta * commitment loss). Three measures keep most of the codebook in
use, which is what decides reconstruction quality when training is short:

* **l2-normalised (cosine) codes**: inputs and codes live on the unit sphere, so no code can
  drift far from the data and never be picked again;
* **low-dimensional lookup** (optional): the nearest-neighbour search runs in a small
  projected space (``lookup_dim``), where codes cover the data much more evenly;
* **data initialisation and dead-code revival**: a code that no token picked for
  ``revive_after`` training steps is reset to a randomly chosen encoder output of the current
  batch. Every code starts out "dead", so the first training batch initialises the whole
  codebook from encoder outputs (instead of random vectors that most of the data never
  comes near).

Under DistributedDataParallel the usage counts are summed over processes and the revived
codes are chosen by rank 0 and broadcast, so every process keeps the same codebook.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


@dataclasses.dataclass
class Quantized:
    """What the quantizer returns for a batch of encoder outputs ``(B, C, h, w)``."""

    z_q: torch.Tensor          # (B, C, h, w) quantized vectors, straight-through to the input
    indices: torch.Tensor      # (B, h, w) int64 code indices
    loss: torch.Tensor         # codebook + beta * commitment loss (scalar)
    perplexity: torch.Tensor   # exp(entropy) of the code histogram of this batch
    usage: torch.Tensor        # fraction of the codebook picked at least once in this batch
    revived: int = 0           # codes reset by dead-code revival in this call


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class VectorQuantizer(nn.Module):
    """Nearest-neighbour quantizer over ``num_codes`` codes of size ``dim``.

    ``lookup_dim`` < ``dim`` searches in a learned projection of that size (the codebook is
    stored in the lookup space and projected back to ``dim``); ``lookup_dim`` = ``dim`` (or 0)
    searches directly. ``revive_after`` = 0 turns dead-code revival off.
    """

    def __init__(self, num_codes: int, dim: int, lookup_dim: int = 0, l2_normalize: bool = True,
                 beta: float = 0.25, revive_after: int = 0):
        super().__init__()
        lookup_dim = lookup_dim or dim
        if lookup_dim > dim:
            raise ValueError(f"lookup_dim ({lookup_dim}) cannot exceed the code dimension ({dim})")
        self.num_codes, self.dim, self.lookup_dim = num_codes, dim, lookup_dim
        self.l2_normalize, self.beta, self.revive_after = l2_normalize, beta, revive_after
        projected = lookup_dim != dim
        self.project_in = nn.Linear(dim, lookup_dim) if projected else nn.Identity()
        self.project_out = nn.Linear(lookup_dim, dim) if projected else nn.Identity()
        self.codebook = nn.Parameter(torch.randn(num_codes, lookup_dim) / lookup_dim ** 0.5)
        # training steps since each code was last picked (persistent: part of a resumable state);
        # starting at `revive_after` makes the first training batch initialise every code
        self.register_buffer("idle_steps", torch.full((num_codes,), max(revive_after, 0), dtype=torch.int64))

    def codes(self) -> torch.Tensor:
        """The codebook as used for lookup (normalised when ``l2_normalize``)."""
        return F.normalize(self.codebook, dim=-1) if self.l2_normalize else self.codebook

    def _lookup_space(self, z: torch.Tensor) -> torch.Tensor:
        z = self.project_in(z)
        return F.normalize(z, dim=-1) if self.l2_normalize else z

    def _nearest(self, z: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        # ||z - e||^2 = ||z||^2 - 2 z.e + ||e||^2; ||z||^2 does not change the argmin
        scores = 2 * z @ codes.t() - codes.pow(2).sum(-1)
        return scores.argmax(-1)

    def embed(self, indices: torch.Tensor) -> torch.Tensor:
        """Code vectors for ``indices`` of any shape ``S``, as a ``(*S, dim)`` tensor."""
        return self.project_out(self.codes()[indices])

    def forward(self, z: torch.Tensor) -> Quantized:
        b, c, h, w = z.shape
        with torch.autocast(z.device.type, enabled=False):  # the argmin must not depend on bf16 rounding
            flat = z.float().permute(0, 2, 3, 1).reshape(-1, c)
            z_l = self._lookup_space(flat)
            revived = self._revive(z_l.detach()) if self.training and self.revive_after > 0 else 0
            codes = self.codes()
            idx = self._nearest(z_l.detach(), codes.detach())
            picked = codes[idx]
            loss = F.mse_loss(picked, z_l.detach()) + self.beta * F.mse_loss(z_l, picked.detach())
            # straight-through: the value is exactly `picked`, the gradient flows to z_l unchanged
            z_st = picked + (z_l - z_l.detach())
            z_q = self.project_out(z_st).reshape(b, h, w, c).permute(0, 3, 1, 2)
            counts = torch.bincount(idx, minlength=self.num_codes)
            if self.training and self.revive_after > 0:
                self._count(counts)
            probs = counts.float() / counts.sum()
            perplexity = torch.exp(-(probs * torch.log(probs.clamp_min(1e-10))).sum())
            usage = (counts > 0).float().mean()
        return Quantized(z_q=z_q.contiguous(), indices=idx.reshape(b, h, w), loss=loss, perplexity=perplexity,
                         usage=usage, revived=revived)

    @torch.no_grad()
    def _count(self, counts: torch.Tensor) -> None:
        if _distributed():
            counts = counts.clone()
            dist.all_reduce(counts)
        self.idle_steps.add_(1).masked_fill_(counts > 0, 0)

    @torch.no_grad()
    def _revive(self, z_l: torch.Tensor) -> int:
        dead = (self.idle_steps >= self.revive_after).nonzero().squeeze(1)
        n = int(dead.numel())
        if n == 0:
            return 0
        pick = torch.randperm(len(z_l), device=z_l.device)[:n]
        if len(pick) < n:  # fewer tokens than dead codes: sample with replacement
            pick = torch.randint(len(z_l), (n,), device=z_l.device)
        new = z_l[pick].to(self.codebook.dtype)
        if _distributed():
            dist.broadcast(new, src=0)
        # when the codes are normalised for lookup, only the direction matters; keep the scale
        self.codebook[dead] = new
        self.idle_steps[dead] = 0
        return n
