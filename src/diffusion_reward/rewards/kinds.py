"""The reward kinds that ship with the package, declared once.

``fit-reward`` (which kinds it builds and from what), ``train-rl`` and the reward mix (the RND
weight ``alpha`` of each method, :mod:`diffusion_reward.rewards.combine`) and the loader (which
module registers a kind, imported only when a model of that kind is loaded) all read this table.
It imports nothing heavy, so ``--help`` can list the kinds quickly.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class BuiltinKind:
    """A reward kind that ships with the package: the one declaration that ``fit-reward``, ``train-rl``,
    the reward mix and the loader read."""

    module: str  # the module that registers it (imported only when the kind is loaded)
    alpha: float  # the RND weight it is mixed with in RL (the paper's, where it has one; see rewards.combine)
    needs: str  # what fit-reward builds it from: "video" (a train-video model), "expert" (expert frames), "" (nothing)
    help: str  # one line for --help


BUILTIN_KINDS: dict[str, BuiltinKind] = {
    "diffusion": BuiltinKind("diffusion_reward.rewards.diffusion", 0.95, "video",
                             "Diffusion Reward (ours): negative conditional entropy of the next frame"),
    "viper": BuiltinKind("diffusion_reward.rewards.viper", 0.5, "video", "VIPER: VideoGPT log-likelihood"),
    "amp": BuiltinKind("diffusion_reward.rewards.amp", 0.0, "expert", "AMP: a discriminator of expert frames"),
    "rnd": BuiltinKind("diffusion_reward.rewards.rnd", 1.0, "expert", "RND: novelty bonus alone"),
    "motion": BuiltinKind("diffusion_reward.rewards.motion", 0.0, "", "pixel change between frames (a reference)"),
    "sparse": BuiltinKind("diffusion_reward.rewards.sparse", 0.0, "", "the task's success signal alone"),
}
FITTED_KINDS = tuple(kind for kind, spec in BUILTIN_KINDS.items() if kind != "sparse")  # fit-reward writes these
