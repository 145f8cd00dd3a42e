"""The discrete mask-and-replace diffusion process of VQ-Diffusion, separate from any network.

Tokens take values in ``{0, ..., K-1}`` (codebook entries) plus the absorbing mask token ``K``.
One forward step keeps a token with probability ``a``, replaces it with each of the ``K``
codes with probability ``b`` (so possibly with itself) and masks it with probability ``g``; a
masked token stays masked. Products of such steps have the same form, so every jump from a
noise level to a later one is described by three numbers (keep, replace-per-code, mask).

**Time.** ``x_t`` for ``t = 0 .. T-1`` is the state after ``t + 1`` corruption steps, as in the
paper and its reference release; ``t = -1`` denotes the clean data ``x_0`` (written ``x_start``
below). Internally a *level* ``l = t + 1`` indexes the tables, level 0 being clean.

**Schedule.** The cumulative keep probability falls linearly from ``keep_start`` (~1) at
``t = 0`` to ``keep_end`` (~0) at ``t = T-1`` and the cumulative mask probability rises
linearly from ``mask_start`` (~0) to ``mask_end`` (~1); what is left (1e-6 with the defaults)
is spread over the ``K`` codes as replacement, so the process is effectively absorbing-state.

**Model.** A network predicts ``p_theta(x_start | x_t)``; the reverse step to any earlier time
``s`` is ``p(x_s | x_t) = sum_x0 q(x_s | x_t, x0) p_theta(x0 | x_t)``. The same formula with a
one-hot ``x0`` is the true posterior, and ``s`` may be any time before ``t`` (strided jumps for
fast sampling and scoring). Training and the general posterior work in log space, with
``LOG_ZERO`` standing for the log of an impossible event so that no ``-inf - -inf`` ever
appears. The sampler and the scorer's strided bound take the same reverse step in probability
space without forming its rows: each step is a four-part mixture drawn and scored per token
(:meth:`MaskReplaceDiffusion.draw_reverse_step`), its logs floored at ``LOG_ZERO`` likewise;
:meth:`MaskReplaceDiffusion.reverse_step_probs` gives the full rows from the same weights.

**Units.** Every loss, KL and bound returned here is in **nats per frame** (summed over the
frame's tokens); divide by ``num_tokens * ln 2`` for bits per token (:func:`nats_to_bits_per_token`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import torch
from torch import nn

LOG_ZERO = -70.0
"""Stand-in for ``log 0``: ``exp(-70) ~ 4e-31``, far below any probability the schedule uses."""

Predictor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``predict(x_t (B, N) long, t (B,) long) -> log p_theta(x_start | x_t)``, float ``(B, N, K)``; the
sampler (:meth:`MaskReplaceDiffusion.sample`) also takes unnormalised logits, in any float dtype."""


Generators = torch.Generator | Sequence[torch.Generator] | None
"""Randomness for a batch: one generator for all rows, or one per row (then row ``i``'s draws come
from ``generator[i]`` alone, so its result does not depend on what else is in the batch)."""


def uniform(shape: tuple[int, ...], generator: Generators, device: torch.device | str) -> torch.Tensor:
    """``U[0, 1)`` float32 draws of ``shape``; with one generator per row, row ``i`` uses ``generator[i]``."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.rand(shape, generator=generator, device=device)
    if len(generator) != shape[0]:
        raise ValueError(f"got {len(generator)} generators for a batch of {shape[0]}")
    return torch.stack([torch.rand(shape[1:], generator=g, device=g.device) for g in generator]).to(device)


def randint(high: int, shape: tuple[int, ...], generator: Generators, device: torch.device | str) -> torch.Tensor:
    """Integers in ``[0, high)`` of ``shape``, drawn like :func:`uniform`."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.randint(0, high, shape, generator=generator, device=device)
    if len(generator) != shape[0]:
        raise ValueError(f"got {len(generator)} generators for a batch of {shape[0]}")
    return torch.stack([torch.randint(0, high, shape[1:], generator=g, device=g.device) for g in generator]).to(device)


def nats_to_bits_per_token(nats: torch.Tensor | float, num_tokens: int) -> torch.Tensor | float:
    """Convert a per-frame quantity in nats to bits per token."""
    return nats / (num_tokens * math.log(2.0))


def _log(p: torch.Tensor) -> torch.Tensor:
    return torch.log(p.clamp_min(0.0)).clamp_min(LOG_ZERO)


def categorical_kl(log_q: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
    """KL(q || p) over the last dimension, from log-probabilities."""
    return (log_q.exp() * (log_q - log_p)).sum(-1)


def sample_categorical(log_probs: torch.Tensor, generator: Generators = None, gumbel: bool = True) -> torch.Tensor:
    """One draw per row of ``log_probs`` (..., C), normalised or not; ``gumbel=False`` takes the argmax.

    Draws by inverting the cumulative distribution with one uniform number per row: one pass of
    ``exp`` and a cumulative sum, where the Gumbel-max trick needs C random numbers and two
    logarithms per row (measured 2x faster for the 1025-way rows of the diffusion sampler).
    (The argument keeps its historical name: ``gumbel=True`` means "sample".)
    """
    if not gumbel:
        return log_probs.argmax(-1)
    log_probs = log_probs.float()
    return _invert_cdf((log_probs - log_probs.amax(-1, keepdim=True)).exp_().cumsum_(-1), generator)


def _invert_cdf(cdf: torch.Tensor, generator: Generators) -> torch.Tensor:
    return _invert_cdf_with(cdf, uniform(tuple(cdf.shape[:-1]) + (1,), generator, cdf.device))


def _invert_cdf_with(cdf: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The index each row's uniform number ``u`` (..., 1) falls at in the row's cumulative sums."""
    # scaled just below the total so that rounding can never select past the last non-zero entry
    target = u * (cdf[..., -1:] * (1.0 - 1e-6))
    return torch.searchsorted(cdf, target, right=True).squeeze(-1)


@dataclasses.dataclass
class ReverseStep:
    """One reverse step taken by :meth:`MaskReplaceDiffusion.draw_reverse_step`, kept for the bound:
    the step's log-probability at code ``j`` other than x_t's is ``log_rows_j - log_norm``; per-token
    tensors are (B, N), ``log_rows`` (B, N, K)."""

    x_t: torch.Tensor
    t: int
    s: int
    log_rows: torch.Tensor
    log_norm: torch.Tensor
    log_p_v: torch.Tensor
    log_p_mask: torch.Tensor
    sum_codes: torch.Tensor


class MaskReplaceDiffusion(nn.Module):
    """The mask-and-replace forward process, its posteriors, the bound and the samplers.

    A module only so that its (non-persistent) tables follow ``.to(device)``; it has no
    parameters and nothing of it is saved. ``num_classes`` is ``K``, the codebook size; the
    mask token is index ``K``.
    """

    def __init__(self, num_classes: int, num_steps: int = 100, keep_start: float = 0.99999,
                 keep_end: float = 0.000009, mask_start: float = 0.000009, mask_end: float = 0.99999):
        super().__init__()
        if num_classes < 2 or num_steps < 2:
            raise ValueError(f"need num_classes >= 2 and num_steps >= 2, got {num_classes}, {num_steps}")
        self.num_classes = num_classes
        self.num_steps = num_steps
        self.mask_index = num_classes
        ramp = torch.linspace(0.0, 1.0, num_steps, dtype=torch.float64)
        keep = torch.cat([torch.ones(1, dtype=torch.float64), keep_start + (keep_end - keep_start) * ramp])
        mask = torch.cat([torch.zeros(1, dtype=torch.float64), mask_start + (mask_end - mask_start) * ramp])
        if (keep.diff() > 0).any() or (mask.diff() < 0).any() or (keep + mask > 1 + 1e-12).any():
            raise ValueError("schedule must have falling keep, rising mask and keep + mask <= 1")
        # jump tables, [from level, to level]; only entries with to >= from are meaningful
        a = keep[None, :] / keep[:, None]
        not_masked = (1 - mask[None, :]) / (1 - mask[:, None])
        replace_total = not_masked - a
        later = torch.ones_like(a, dtype=torch.bool).triu()
        if (replace_total[later] < -1e-12).any():
            raise ValueError("schedule implies a negative replacement probability; keep must fall "
                             "at least as fast as the unmasked probability")
        replace = (replace_total / num_classes).clamp_min(0.0)
        masked = (1 - not_masked).clamp_min(0.0)
        a, replace, masked = (torch.where(later, v, torch.zeros_like(v)) for v in (a, replace, masked))
        for name, table in (("keep", a), ("replace", replace), ("mask", masked)):
            self.register_buffer(f"p_{name}", table.float(), persistent=False)
            self.register_buffer(f"log_{name}", _log(table).float(), persistent=False)
        self.register_buffer("cum_keep", keep[1:].float(), persistent=False)
        self.register_buffer("cum_mask", mask[1:].float(), persistent=False)

    # ---------------------------------------------------------------- helpers
    def _coef(self, table: torch.Tensor, s: torch.Tensor | int, t: torch.Tensor | int,
              ref: torch.Tensor) -> torch.Tensor:
        """``table[s+1, t+1]`` shaped to broadcast against ``ref`` (B, ...) along the batch."""
        s = torch.as_tensor(s, device=table.device).long() + 1
        t = torch.as_tensor(t, device=table.device).long() + 1
        value = table[s, t]
        if value.dim() == 0:
            return value
        return value.reshape(value.shape + (1,) * (ref.dim() - value.dim()))

    def _check_times(self, s: torch.Tensor | int, t: torch.Tensor | int) -> None:
        s_t = torch.as_tensor(s)
        t_t = torch.as_tensor(t)
        if (s_t < -1).any() or (t_t > self.num_steps - 1).any() or (s_t >= t_t).any():
            raise ValueError(f"need -1 <= s < t <= {self.num_steps - 1}, got s={s}, t={t}")

    def strided_times(self, stride: int) -> list[int]:
        """The times a strided sampler visits: ``T-1, T-1-stride, ...`` down to 0 (0 always included).

        Each visited time jumps to the next one in the list and the last (0) to the clean data,
        so there is one network evaluation per entry: 11 for ``T = 100, stride = 10``
        (99, 89, ..., 9, 0).
        """
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        times = list(range(self.num_steps - 1, -1, -stride))
        if times[-1] != 0:
            times.append(0)
        return times

    # ---------------------------------------------------------------- forward process
    def _rows(self, x: torch.Tensor, log_own: torch.Tensor, log_other: torch.Tensor,
              log_mask: torch.Tensor) -> torch.Tensor:
        """Log-prob rows over ``K+1`` values: ``log_own`` at index ``x``, ``log_other`` at the
        other codes and ``log_mask`` at the mask (coefficients broadcast against ``x``)."""
        K = self.num_classes
        shape = x.shape + (K + 1,)
        out = log_other[..., None].expand(shape).clone()
        out[..., K] = log_mask.expand(x.shape)
        out.scatter_(-1, x.clamp_max(K - 1).unsqueeze(-1), log_own.expand(x.shape).unsqueeze(-1).clone())
        return out

    def jump_log_probs(self, x_from: torch.Tensor, s: torch.Tensor | int, t: torch.Tensor | int) -> torch.Tensor:
        """``log q(x_t = . | x_s = x_from)``, shape ``x_from.shape + (K+1,)``; ``s = -1`` is clean data."""
        K = self.num_classes
        log_a, log_r, log_m = (self._coef(tab, s, t, x_from) for tab in (self.log_keep, self.log_replace, self.log_mask))
        out = self._rows(x_from, torch.logaddexp(log_a, log_r), log_r, log_m)
        stays_masked = torch.full_like(out, LOG_ZERO)
        stays_masked[..., K] = 0.0
        return torch.where((x_from == K).unsqueeze(-1), stays_masked, out)

    def marginal_log_probs(self, x_start: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """``log q(x_t = . | x_start)``, shape ``x_start.shape + (K+1,)``."""
        return self.jump_log_probs(x_start, -1, t)

    def sample_jump(self, x_from: torch.Tensor, s: torch.Tensor | int, t: torch.Tensor | int,
                    generator: Generators = None) -> torch.Tensor:
        """Draw ``x_t ~ q(x_t | x_s = x_from)`` (``s = -1``: from clean data); masked tokens stay masked."""
        self._check_times(s, t)
        K = self.num_classes
        p_r = self._coef(self.p_replace, s, t, x_from)
        p_m = self._coef(self.p_mask, s, t, x_from)
        u = uniform(tuple(x_from.shape), generator, x_from.device)
        random_code = randint(K, tuple(x_from.shape), generator, x_from.device)
        out = torch.where(u < p_m + K * p_r, random_code, x_from)
        out = torch.where(u < p_m, torch.full_like(x_from, K), out)
        return torch.where(x_from == K, x_from, out)

    def sample_marginal(self, x_start: torch.Tensor, t: torch.Tensor | int,
                        generator: Generators = None) -> torch.Tensor:
        """Draw ``x_t ~ q(x_t | x_start)``."""
        return self.sample_jump(x_start, -1, t, generator)

    def likelihood_log_probs(self, x_t: torch.Tensor, s: torch.Tensor | int, t: torch.Tensor | int) -> torch.Tensor:
        """``log q(x_t | x_s = j)`` for every value ``j`` of ``x_s`` (last dim, ``K+1``), given observed ``x_t``."""
        K = self.num_classes
        log_a, log_r, log_m = (self._coef(tab, s, t, x_t) for tab in (self.log_keep, self.log_replace, self.log_mask))
        zero = torch.zeros_like(log_m)
        # an observed code: kept (own value) or replaced (any code); a masked x_s cannot produce it
        code_rows = self._rows(x_t, torch.logaddexp(log_a, log_r), log_r, zero + LOG_ZERO)
        # an observed mask: any code was masked; a masked x_s stays masked
        mask_rows = self._rows(x_t, log_m, log_m, zero)
        return torch.where((x_t == K).unsqueeze(-1), mask_rows, code_rows)

    # ---------------------------------------------------------------- reverse process
    def posterior_log_probs(self, log_x_start: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int,
                            s: torch.Tensor | int) -> torch.Tensor:
        """``log sum_x0 q(x_s | x_t, x0) p(x0)`` over the ``K+1`` values of ``x_s``, for ``-1 <= s < t``.

        ``log_x_start`` (..., K) are normalised log-probabilities of the clean token: the network's
        prediction gives the model's reverse step ``p(x_s | x_t)``; a one-hot (see
        :meth:`one_hot_log_probs`) gives the true posterior ``q(x_s | x_t, x_start)``. For
        ``s = -1`` the answer is ``log_x_start`` itself (padded with an impossible mask).
        """
        self._check_times(s, t)
        K = self.num_classes
        log_x_start = log_x_start.float()
        is_mask = x_t == K
        code = x_t.clamp_max(K - 1).unsqueeze(-1)
        # Every row over codes is one value everywhere plus a different one at x_t's code: work with
        # the common value per token and correct the single entry, to keep full-size work small.
        log_w = log_x_start - self._likelihood_base(is_mask, -1, t).unsqueeze(-1)  # w_i = p(x0=i) / q(x_t | x0=i)
        log_w = log_w.scatter(-1, code, log_w.gather(-1, code) - self._likelihood_bump(is_mask, -1, t).unsqueeze(-1))
        log_total = torch.logsumexp(log_w, dim=-1, keepdim=True)
        log_a, log_r, log_m = (self._coef(tab, -1, s, x_t)[..., None]
                               for tab in (self.log_keep, self.log_replace, self.log_mask))
        # sum_i q(x_s = j | x0 = i) w_i, times q(x_t | x_s = j), for codes j and for the mask
        codes = torch.logaddexp(log_a + log_w, log_r + log_total) + self._likelihood_base(is_mask, s, t).unsqueeze(-1)
        codes = codes.scatter(-1, code, codes.gather(-1, code) + self._likelihood_bump(is_mask, s, t).unsqueeze(-1))
        mask = log_m + log_total + torch.where(is_mask, 0.0, LOG_ZERO).unsqueeze(-1)
        out = torch.cat([codes, mask], dim=-1)
        out = out - torch.logsumexp(out, dim=-1, keepdim=True)
        is_clean = torch.as_tensor(s, device=x_t.device) == -1
        if not bool(is_clean.any()):
            return out
        clean = torch.cat([log_x_start, torch.full_like(log_x_start[..., :1], LOG_ZERO)], dim=-1)
        if is_clean.dim():
            is_clean = is_clean.reshape(is_clean.shape + (1,) * (out.dim() - 1))
        return torch.where(is_clean, clean, out)

    def reverse_step_probs(self, log_x_start: torch.Tensor, x_t: torch.Tensor, t: int, s: int) -> torch.Tensor:
        """``exp(posterior_log_probs(log_x_start, x_t, t, s))`` for one pair of times ``0 <= s < t``
        (Python ints), computed in probability space from the per-token weights of
        :meth:`_step_weights`: the full normalised ``(..., K+1)`` rows that
        :meth:`draw_reverse_step` draws from and scores without forming.
        """
        self._check_times(s, t)
        if s < 0:
            raise ValueError(f"reverse_step_probs needs s >= 0, got {s}")
        K = self.num_classes
        is_mask = x_t == K
        probs = torch.softmax(log_x_start, -1, dtype=torch.float32)
        scale, floor, own, mask_w, _ = self._step_weights(probs, x_t, t, s)
        out = torch.empty(probs.shape[:-1] + (K + 1,), device=probs.device)
        codes = out[..., :K]
        torch.mul(probs, scale.unsqueeze(-1), out=codes).add_(floor.unsqueeze(-1))
        code = x_t.clamp_max(K - 1).unsqueeze(-1)
        codes.scatter_(-1, code, torch.where(is_mask.unsqueeze(-1), codes.gather(-1, code), own.unsqueeze(-1)))
        out[..., K] = mask_w
        return out.div_(out.sum(-1, keepdim=True))

    def _step_weights(self, probs: torch.Tensor, x_t: torch.Tensor, t: int, s: int) -> tuple[torch.Tensor, ...]:
        """Per-token weights ``(A, F, P_v, P_m, sum p)`` (each (B, N)) of the reverse step from ``t`` to
        ``s >= 0``, given the network's ``probs`` (B, N, K), whose entry at x_t's code is zeroed in
        place where x_t is a code.

        The step is affine in ``p`` for every code except x_t's own: ``(A p_j + F) / Z`` at codes
        ``j`` other than x_t's, ``P_v / Z`` at x_t's code, ``P_m / Z`` at the mask. For a masked
        x_t: ``A = m_st a_s``, ``F = m_st r_s``, ``P_m = m_s`` (and ``P_v`` is unused: 0); for an
        observed code ``v``: ``A = a_s``, ``F = B``, ``P_v = (a_st + r_st) / r_st (a_s c p_v + B)``,
        ``P_m = 0``, where ``c = r_t / (a_t + r_t)`` and ``B = r_s (sum_{j != v} p_j + c p_v)``
        (each up to a per-token factor that normalisation removes; ``a, r, m`` are the keep,
        per-code replace and mask probabilities of the jumps ``0 -> s`` (index ``s``), ``s -> t``
        (``st``) and ``0 -> t`` (``t``), floored at ``exp(LOG_ZERO)`` as in the log tables, and
        ``F`` likewise). The sum over ``j != v`` is taken with ``p_v`` zeroed, so it keeps its
        precision when ``p_v`` is close to 1.
        """
        K = self.num_classes
        a_s, r_s, m_s = self._jump_probs(-1, s)
        a_st, r_st, m_st = self._jump_probs(s, t)
        a_t, r_t, _ = self._jump_probs(-1, t)
        c = r_t / (a_t + r_t)
        is_mask = x_t == K
        code = x_t.clamp_max(K - 1).unsqueeze(-1)
        p_v = probs.gather(-1, code).squeeze(-1)
        probs.scatter_(-1, code, torch.where(is_mask, p_v, 0.0).unsqueeze(-1))  # observed codes: p_v out
        rest = probs.sum(-1)
        base = r_s * (rest + c * p_v)
        scale = torch.where(is_mask, m_st * a_s, a_s)
        floor = torch.where(is_mask, m_st * r_s, base).clamp_min(math.exp(LOG_ZERO))
        own = torch.where(is_mask, 0.0, (a_st + r_st) / r_st * (a_s * c * p_v + base))
        return scale, floor, own, torch.where(is_mask, m_s, 0.0), rest

    def _jump_probs(self, a: int, b: int) -> tuple[float, float, float]:
        """(keep, per-code replace, mask) probabilities of the jump from time ``a`` to ``b`` (floored
        at ``exp(LOG_ZERO)`` as in the log tables), as Python floats."""
        return tuple(float(table[a + 1, b + 1].double().exp()) for table in (self.log_keep, self.log_replace,
                                                                             self.log_mask))

    def draw_reverse_step(self, logits: torch.Tensor, x_t: torch.Tensor, t: int, s: int,
                          generator: Generators = None, gumbel: bool = True,
                          draw: bool = True) -> tuple[torch.Tensor | None, ReverseStep]:
        """Draw ``x_s ~ p(x_s | x_t)`` for one pair of times ``0 <= s < t`` (Python ints) without forming
        the ``(B, N, K+1)`` rows of :meth:`reverse_step_probs`: ``(x_s (B, N), ReverseStep)``.

        ``logits`` (B, N, K) are the network's ``log p_theta(x_start | x_t)`` up to a per-token constant.
        Per token the reverse step is ``(A p_j + F) / Z`` at every code ``j`` other than x_t's own
        (``p`` the network's distribution with x_t's code zeroed), a value ``P_v / Z`` at x_t's code
        and ``P_m / Z`` at the mask (the weights of :meth:`_step_weights`). So it is a mixture:
        the network's distribution without x_t's code (weight ``A sum p``), uniform over the codes
        (``K F``), x_t's code itself (``P_v - F``) and the mask (``P_m``); a draw picks a component
        with one uniform number and, for the network's, inverts the CDF of that token's row. The
        returned :class:`ReverseStep` keeps what the bound needs later (one sum of logs over the row,
        taken now; the logged rows, made in place of ``p``, for the value at the final sample). About
        five passes over the ``K``-way rows and no new row-sized tensor after the softmax, against about
        eleven passes and four such tensors for forming, sampling and logging the full rows.
        ``gumbel=False`` takes the most probable value instead of drawing; ``draw=False`` only
        scores (returns ``None`` for ``x_s``), as the likelihood bound needs.
        """
        self._check_times(s, t)
        if s < 0:
            raise ValueError(f"draw_reverse_step needs s >= 0, got {s}")
        K = self.num_classes
        is_mask = x_t == K
        probs = torch.softmax(logits, -1, dtype=torch.float32)
        scale, floor, own, mask_w, rest = self._step_weights(probs, x_t, t, s)
        extra = (own - floor).clamp_min(0.0)  # 0 at masked tokens: own is 0 there and floor > 0
        w_net, w_uniform = scale * rest, K * floor
        norm = w_net + w_uniform + extra + mask_w
        if not draw:
            x_s = None
        elif gumbel:
            u = uniform(tuple(x_t.shape) + (3,), generator, x_t.device)
            target = u[..., 0] * norm * (1.0 - 1e-6)
            x_s = torch.where(target < w_net + w_uniform + extra, x_t, torch.full_like(x_t, K))
            x_s = torch.where(target < w_net + w_uniform, (u[..., 1] * K).long().clamp_max(K - 1), x_s)
            net = target < w_net
            if bool(net.any()):
                cdf = probs[net].cumsum(-1)
                x_s[net] = _invert_cdf_with(cdf, u[..., 2][net].unsqueeze(-1))
        else:
            best = probs.argmax(-1)
            best_value = scale * probs.gather(-1, best.unsqueeze(-1)).squeeze(-1) + floor
            x_s = torch.where(best_value >= own, best, x_t)
            x_s = torch.where(mask_w > torch.maximum(best_value, own), torch.full_like(x_t, K), x_s)
        log_norm = norm.log()
        # in place (no new (B, N, K) tensor): log(A p_j + F) at every code, x_t's own entry being log F
        log_rows = probs.mul_(scale.unsqueeze(-1)).add_(floor.unsqueeze(-1)).log_()
        # sum over the K codes of log((A p_j + F) / Z), with x_t's own entry corrected to P_v
        sum_codes = log_rows.sum(-1) + torch.where(is_mask, 0.0, _log(own) - floor.log()) - K * log_norm
        step = ReverseStep(x_t=x_t, t=t, s=s, log_rows=log_rows, log_norm=log_norm,
                           log_p_v=torch.where(is_mask, LOG_ZERO, _log(own) - log_norm).clamp_min(LOG_ZERO),
                           log_p_mask=(_log(mask_w) - log_norm).clamp_min(LOG_ZERO), sum_codes=sum_codes)
        return x_s, step

    def reverse_step_kl(self, step: ReverseStep, x_start: torch.Tensor) -> torch.Tensor:
        """``KL(q(x_s | x_t, x_start) || p(x_s | x_t))`` per token (B, N) for a step taken by
        :meth:`draw_reverse_step`: :meth:`true_posterior_kl` without the full rows."""
        K = self.num_classes
        at_v = (step.x_t != K) & (x_start == step.x_t)
        log_p_i = (step.log_rows.gather(-1, x_start.unsqueeze(-1)).squeeze(-1) - step.log_norm).clamp_min(LOG_ZERO)
        log_p_i = torch.where(at_v, step.log_p_v, log_p_i)
        return self._posterior_kl(x_start, step.x_t, step.t, step.s, log_p_i, step.log_p_v, step.log_p_mask,
                                  step.sum_codes)

    def _likelihood_base(self, is_mask: torch.Tensor, s: torch.Tensor | int, t: torch.Tensor | int) -> torch.Tensor:
        """``log q(x_t | x_s = j)`` for a code ``j`` other than x_t's own, per token (B, N)."""
        log_r, log_m = self._coef(self.log_replace, s, t, is_mask), self._coef(self.log_mask, s, t, is_mask)
        return torch.where(is_mask, log_m, log_r)

    def _likelihood_bump(self, is_mask: torch.Tensor, s: torch.Tensor | int, t: torch.Tensor | int) -> torch.Tensor:
        """How much larger ``log q(x_t | x_s = j)`` is at x_t's own code (0 for a masked x_t), (B, N)."""
        log_a, log_r = self._coef(self.log_keep, s, t, is_mask), self._coef(self.log_replace, s, t, is_mask)
        return torch.where(is_mask, 0.0, torch.logaddexp(log_a, log_r) - log_r)

    def true_posterior_kl(self, log_model: torch.Tensor, x_start: torch.Tensor, x_t: torch.Tensor,
                          t: torch.Tensor | int, s: torch.Tensor | int) -> torch.Tensor:
        """``KL(q(x_s | x_t, x_start) || model)`` per token (B, N), for ``0 <= s < t``.

        ``log_model`` (B, N, K+1) is the model's reverse step from :meth:`posterior_log_probs`.
        The true posterior takes at most four distinct values (at ``x_start``, at x_t's code,
        at the mask, and one shared by every other code), so it is built in closed form per
        token and the KL needs only gathers and one sum over ``log_model``: the same number as
        ``categorical_kl(posterior_log_probs(one_hot), log_model)``, at a fraction of the work.
        """
        K = self.num_classes
        code_v = x_t.clamp_max(K - 1)
        log_p_i = log_model.gather(-1, x_start.unsqueeze(-1)).squeeze(-1)
        log_p_v = log_model.gather(-1, code_v.unsqueeze(-1)).squeeze(-1)
        return self._posterior_kl(x_start, x_t, t, s, log_p_i, log_p_v, log_model[..., K], log_model[..., :K].sum(-1))

    def _posterior_kl(self, x_start: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int, s: torch.Tensor | int,
                      log_p_i: torch.Tensor, log_p_v: torch.Tensor, log_p_mask: torch.Tensor,
                      sum_codes: torch.Tensor) -> torch.Tensor:
        """:meth:`true_posterior_kl` from what it needs of the model's row, per token (B, N): its
        log-probability at ``x_start``, at x_t's code, at the mask, and its sum over the ``K`` codes."""
        K = self.num_classes
        i, v = x_start, x_t
        is_mask = v == K
        same = (i == v)

        def coef(table, a, b):
            return self._coef(table, a, b, v)

        def pair(a, b):
            own = torch.logaddexp(coef(self.log_keep, a, b), coef(self.log_replace, a, b))
            return own, coef(self.log_replace, a, b), coef(self.log_mask, a, b)

        own_0s, rep_0s, mask_0s = pair(-1, s)   # q(x_s = j | x0 = i): j = i, other code, mask
        own_st, rep_st, mask_st = pair(s, t)    # q(x_t = v | x_s = j): j = v, other code; masked v: mask_st
        own_0t, rep_0t, mask_0t = pair(-1, t)   # q(x_t = v | x0 = i)
        log_norm = torch.where(is_mask, mask_0t, torch.where(same, own_0t, rep_0t))
        # log q(x_t = v | x_s = j) for j = i, for another code, and for j = mask
        lik_i = torch.where(is_mask, mask_st, torch.where(same, own_st, rep_st))
        lik_other = torch.where(is_mask, mask_st, rep_st)
        lik_mask = torch.where(is_mask, 0.0, LOG_ZERO)
        log_q_i = own_0s + lik_i - log_norm
        log_q_v = rep_0s + own_st - log_norm          # j = v, a code other than i (only when v is a code)
        log_q_mask = mask_0s + lik_mask - log_norm
        log_q_rest = rep_0s + lik_other - log_norm     # every remaining code
        has_v = ~is_mask & ~same
        n_rest = K - 1 - has_v.long()
        sum_rest = sum_codes - log_p_i - torch.where(has_v, log_p_v, 0.0)

        def term(log_q, log_p):
            return log_q.exp() * (log_q - log_p)

        kl = term(log_q_i, log_p_i) + term(log_q_mask, log_p_mask)
        kl = kl + torch.where(has_v, term(log_q_v, log_p_v), 0.0)
        return kl + log_q_rest.exp() * (n_rest * log_q_rest - sum_rest)

    def one_hot_log_probs(self, x_start: torch.Tensor) -> torch.Tensor:
        """Log-probabilities (..., K) that put all mass on ``x_start``."""
        out = torch.full(x_start.shape + (self.num_classes,), LOG_ZERO, device=x_start.device)
        return out.scatter_(-1, x_start.unsqueeze(-1), 0.0)

    def prior_log_probs(self, shape: torch.Size | tuple[int, ...], device: torch.device | str = "cpu") -> torch.Tensor:
        """The prior ``p(x_{T-1})``: the marginal at the last time of a uniformly random code."""
        K = self.num_classes
        keep, rep, mask = self.p_keep[0, -1], self.p_replace[0, -1], self.p_mask[0, -1]
        probs = torch.cat([(keep / K + rep).expand(K), mask.reshape(1)]).to(device)
        return _log(probs).expand(tuple(shape) + (K + 1,))

    def prior_kl(self, x_start: torch.Tensor) -> torch.Tensor:
        """``KL(q(x_{T-1} | x_start) || prior)`` summed over tokens, in nats, shape ``(B,)``.

        The same for every frame (the prior is symmetric in the codes) and tiny with the default
        schedule (~6e-5 nats per token), but part of the bound. By that symmetry it is computed
        for one token and scaled: forming the ``(B, N, K+1)`` rows cost the sampler ~10% of its time.
        """
        if bool(((x_start < 0) | (x_start >= self.num_classes)).any()):
            raise ValueError("prior_kl needs clean codes in [0, K), not masked tokens")
        one = torch.zeros((1, 1), dtype=torch.long, device=x_start.device)
        per_token = categorical_kl(self.marginal_log_probs(one, self.num_steps - 1),
                                   self.prior_log_probs(one.shape, x_start.device)).reshape(())
        return per_token.expand(x_start.shape[0]) * x_start[0].numel()

    def step_term(self, log_x_start_pred: torch.Tensor, x_start: torch.Tensor, x_t: torch.Tensor,
                  t: torch.Tensor | int, s: torch.Tensor | int) -> torch.Tensor:
        """One term of the negative bound, summed over tokens, in nats, shape ``(B,)``.

        For ``s >= 0``: ``KL(q(x_s | x_t, x_start) || p(x_s | x_t))``; for ``s = -1`` the
        reconstruction term ``-log p_theta(x_start | x_t)``. ``t``/``s`` may be per-sample tensors.
        """
        nll = -log_x_start_pred.float().gather(-1, x_start.unsqueeze(-1)).squeeze(-1)
        if isinstance(s, int) and isinstance(t, int) and s >= 0 and not torch.is_grad_enabled():
            # the scorer's strided bound: the sampler's compact reverse step (same values, no full rows)
            _, step = self.draw_reverse_step(log_x_start_pred, x_t, t, s, draw=False)
            return self.reverse_step_kl(step, x_start).sum(1)
        s_tensor = torch.as_tensor(s, device=x_t.device)
        if bool((s_tensor == -1).all()):
            return nll.flatten(1).sum(1)
        # rows with s = -1 take the NLL below; give them a valid (discarded) pair so their KL stays finite
        is_clean = s_tensor == -1
        s_safe, t_safe = s_tensor.clamp_min(0), torch.as_tensor(t, device=x_t.device) + is_clean.long()
        log_model = self.posterior_log_probs(log_x_start_pred, x_t, t_safe, s_safe)
        kl = self.true_posterior_kl(log_model, x_start, x_t, t_safe, s_safe)
        if is_clean.dim():
            is_clean = is_clean.reshape(is_clean.shape + (1,) * (kl.dim() - 1))
        return torch.where(is_clean, nll, kl).flatten(1).sum(1)

    # ---------------------------------------------------------------- bound, sampling
    @torch.no_grad()
    def bound(self, predict: Predictor, x_start: torch.Tensor, stride: int = 10,
              generator: Generators = None) -> torch.Tensor:
        """A one-sample estimate of the variational lower bound on ``log p(x_start)``, nats per frame (B,).

        The clean tokens ``x_start`` (B, N) are forward-noised along the strided chain
        (``x_0`` from ``x_start``, then each later visited time from the previous one) and the
        bound is ``-prior KL - sum of KL terms - reconstruction NLL``: the strided sub-chain
        of a Markov process is itself Markov, so this is a valid bound for any stride.
        """
        times = self.strided_times(stride)
        states, prev, prev_t = {}, x_start, -1
        for t in reversed(times):
            prev = self.sample_jump(prev, prev_t, t, generator)
            states[t], prev_t = prev, t
        total = -self.prior_kl(x_start)
        batch = x_start.shape[0]
        for i, t in enumerate(times):
            s = times[i + 1] if i + 1 < len(times) else -1
            t_vec = torch.full((batch,), t, device=x_start.device, dtype=torch.long)
            log_pred = predict(states[t], t_vec).float()
            total = total - self.step_term(log_pred, x_start, states[t], t, s)
        return total

    @torch.no_grad()
    def sample(self, predict: Predictor, shape: tuple[int, int], device: torch.device | str = "cpu",
               stride: int = 10, generator: Generators = None,
               gumbel: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Denoise from all-mask and score the result: ``(tokens (B, N) long, bound (B,) nats)``.

        Starting from all-mask at ``t = T-1``, each visited time (:meth:`strided_times`)
        predicts ``x_start``, forms the model's reverse step to the next visited time and draws
        from it (Gumbel-max; argmax with ``gumbel=False``); the step from ``t = 0`` draws the
        final codes, never the mask. The returned bound is the model's variational lower bound
        of its own final sample along the chain it actually took: the log-probability of the
        sample at the last step minus the KL terms of the earlier steps (and the tiny prior
        KL). Its mean over samples estimates ``-H(x | condition)`` in nats.
        """
        K = self.num_classes
        batch, n = shape
        times = self.strided_times(stride)
        x_t = torch.full((batch, n), K, dtype=torch.long, device=device)
        chain: list[ReverseStep] = []
        for t, s in zip(times[:-1], times[1:]):
            t_vec = torch.full((batch,), t, device=device, dtype=torch.long)
            x_t, step = self.draw_reverse_step(predict(x_t, t_vec), x_t, t, s, generator, gumbel)
            chain.append(step)
        t_vec = torch.full((batch,), times[-1], device=device, dtype=torch.long)
        logits = predict(x_t, t_vec).float()
        # log p(sample) = logit - logsumexp: no normalised (B, N, K) copy of the rows
        log_norm = torch.logsumexp(logits, -1)
        x_start = sample_categorical(logits, generator, gumbel)
        total = -self.prior_kl(x_start)
        for step in chain:
            total = total - self.reverse_step_kl(step, x_start).sum(1)
        log_p = logits.gather(-1, x_start.unsqueeze(-1)).squeeze(-1) - log_norm
        return x_start, total + log_p.sum(1)


class TimestepSampler(nn.Module):
    """Importance sampling of training times from a running mean of each time's squared loss.

    Uniform until every time has been seen ``warmup`` times; then ``p(t)`` is proportional to
    the root of the running mean square of ``L_t`` (``p(0)`` tied to ``p(1)``), so that
    ``L_t / p(t)`` is an unbiased, lower-variance estimate of the bound. The history lives in
    persistent buffers, so it is saved and resumed with the model's weights.
    """

    def __init__(self, num_steps: int, importance: bool = True, warmup: int = 10, decay: float = 0.9):
        super().__init__()
        self.num_steps = num_steps
        self.importance = importance
        self.warmup = warmup
        self.decay = decay
        self.register_buffer("loss_sq_history", torch.zeros(num_steps))
        self.register_buffer("count", torch.zeros(num_steps, dtype=torch.long))

    def probabilities(self) -> torch.Tensor:
        if not self.importance or bool((self.count < self.warmup).any()):
            return torch.full((self.num_steps,), 1.0 / self.num_steps, device=self.count.device)
        weight = torch.sqrt(self.loss_sq_history + 1e-10) + 1e-4
        weight[0] = weight[1]
        return weight / weight.sum()

    def sample(self, batch: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(t (B,) long, p(t) (B,))``."""
        probs = self.probabilities()
        t = torch.multinomial(probs.cpu(), batch, replacement=True, generator=generator).to(probs.device)
        return t, probs[t]

    @torch.no_grad()
    def update(self, t: torch.Tensor, losses: torch.Tensor) -> None:
        """Fold per-sample losses ``L_t`` (nats per frame) into the history."""
        t = t.to(self.count.device)
        sq = losses.detach().float().to(self.count.device) ** 2
        sums = torch.zeros(self.num_steps, device=sq.device).index_add_(0, t, sq)
        hits = torch.zeros(self.num_steps, dtype=torch.long, device=sq.device).index_add_(0, t, torch.ones_like(t))
        seen = hits > 0
        mean_sq = sums[seen] / hits[seen]
        self.loss_sq_history[seen] = self.decay * self.loss_sq_history[seen] + (1 - self.decay) * mean_sq
        self.count += hits


def diffusion_loss(diffusion: MaskReplaceDiffusion, predict: Predictor, x_start: torch.Tensor,
                   sampler: TimestepSampler, generator: torch.Generator | None = None,
                   aux_weight: float = 1e-3, adaptive_aux: bool = True) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The training objective: importance-sampled bound plus the auxiliary ``x_start`` cross-entropy.

    Draws ``t ~ p(t)`` per sample and ``x_t ~ q(x_t | x_start)``, evaluates the network once,
    and returns ``(loss, metrics)`` where ``loss`` is the batch mean of
    ``(L_t / p(t) + prior KL + w_aux(t) * CE(x_start | x_t) / p(t)) / N`` in nats per token
    (``N`` tokens per frame; ``w_aux = aux_weight * (2 - t/T)`` when adaptive, as in the
    reference configuration). ``metrics['bound_bits_per_token']`` is the bound part alone in
    bits per token: its expectation is the full negative bound.
    """
    batch, n = x_start.shape
    t, pt = sampler.sample(batch, generator)
    t = t.to(x_start.device)
    pt = pt.to(x_start.device)
    x_t = diffusion.sample_marginal(x_start, t, generator)
    log_pred = predict(x_t, t).float().log_softmax(-1)
    term = diffusion.step_term(log_pred, x_start, x_t, t, t - 1)
    sampler.update(t, term)
    prior = diffusion.prior_kl(x_start)
    vb = term / pt + prior
    ce = -log_pred.gather(-1, x_start.unsqueeze(-1)).squeeze(-1).flatten(1).sum(1)
    weight = aux_weight * ((2.0 - t.float() / diffusion.num_steps) if adaptive_aux else torch.ones_like(pt))
    loss = ((vb + weight * ce / pt) / n).mean()
    metrics = {
        "loss": loss.detach(),
        "bound_bits_per_token": nats_to_bits_per_token(vb.detach().mean(), n),
        "aux_ce_bits_per_token": nats_to_bits_per_token(ce.detach().mean(), n),
        "mean_t": t.float().mean(),
    }
    return loss, metrics
