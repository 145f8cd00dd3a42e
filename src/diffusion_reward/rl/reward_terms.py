"""The reward a DrQ-v2 agent learns from, term by term: per-episode model rewards, sample-time bonuses.

    r = (1 - alpha) * r_model + alpha * r_rnd + r_sparse        (rewards/combine.py)

Where each term comes from:

- ``r_sparse``: the environment's success reward, stored as the replay's per-step reward.
- ``r_model`` of an *offline* reward model (diffusion, viper, motion, ... any
  :class:`~diffusion_reward.rewards.base.RewardModel` that does not learn during RL): computed
  once per finished episode from its frames, ``rewards(frames, task=task)`` on ``uint8 (T + 1, H,
  W, 3)`` (reset frame included), standardized with the statistics of the run's task as the paper
  does (the pooled ones for a task without expert videos); reward ``j`` scores reaching frame
  ``j``, so step ``t`` (1-based) gets ``rewards[t]``. Stored beside the sparse reward as the replay component ``model``.
- ``r_rnd`` (RND), and ``r_model`` of an *online* model (AMP) scored per batch: recomputed on every
  sampled batch from the observation reached at each of the ``n`` steps of the n-step window (the
  replay's ``step_next_obs``), with the model as it is now; then the model trains one step on the
  batch's ``next_obs`` (``update(batch)``).
- ``r_model`` of an online model scored **per episode** (AMP's default here, :class:`OnlineScoring`):
  computed once when the episode ends, from its frames, with the model as it is then, and stored
  like an offline model's reward; the model trains one step every ``update_every`` sampled batches
  on ``batch_size`` frames drawn from the replay of frames (its own generator). Scoring each frame
  once instead of ``n`` times per batch, and training less often, made the AMP cell many times
  cheaper; ``OnlineScoring("batch", 1)`` is the per-batch recipe.

The n-step return sums the composed per-step reward: ``sum_k gamma**k (r_sparse + (1 - alpha)
r_model + alpha r_rnd)_k`` (the replay adds the bonus to the stored reward before discounting).

Observations the bonuses read. Pixel runs: the replay's frames (the last 3 channels of a stacked
observation). State runs: RND reads the state vector by default (:class:`StateRND`, nothing to
render); a frame model (AMP, or RND with ``rnd_input="pixels"``) reads frames from a second
replay of frames kept in step with the state replay (same episodes, same lengths, sampled with a
copy of the same generator, so both draw the same transitions; checked on every batch).
"""

from __future__ import annotations

import copy
import dataclasses
import io
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from diffusion_reward.errors import UserError
from diffusion_reward.rewards.base import RewardModel, load_reward_model
from diffusion_reward.rewards.combine import DEFAULT_ALPHA, combine_rewards, default_alpha
from diffusion_reward.rl.replay import ReplayBuffer
from diffusion_reward.utils.checkpoint import atomic_write_json, load_tensors, read_json, save_tensors


class Bonus:
    """An online model used as a reward term: which model, which term, which observations it reads."""

    def __init__(self, name: str, model: Any, reads_frames: bool):
        self.name = name  # "model" or "rnd": the term it fills
        self.model = model
        self.reads_frames = reads_frames

    def values(self, step_obs: torch.Tensor) -> torch.Tensor:
        """The bonus of every step of a ``(B, n, ...)`` batch of observations -> ``(B, n)``."""
        b, n = step_obs.shape[:2]
        flat = step_obs.reshape(b * n, *step_obs.shape[2:])
        if self.reads_frames:
            flat = flat[:, -3:]  # the newest frame of a stacked observation
        return self.model.bonus(flat).reshape(b, n).float()

    def update(self, next_obs: torch.Tensor) -> dict[str, float]:
        if self.reads_frames:
            next_obs = next_obs[:, -3:]
        return self.model.update({"next_obs": next_obs})


@dataclasses.dataclass(frozen=True)
class OnlineScoring:
    """How an online reward model (AMP) is used: ``when`` its rewards are computed ("episode": once per finished
    episode, stored in the replay; "batch": recomputed on every sampled batch), and how it trains: one step every
    ``update_every`` sampled batches on ``batch_size`` agent frames (0: the agent's batch size)."""

    when: str = "episode"
    update_every: int = 1
    batch_size: int = 0

    def __post_init__(self) -> None:
        if self.when not in ("episode", "batch"):
            raise UserError(f"online reward scoring must be 'episode' or 'batch', got {self.when!r}")
        if self.update_every < 1 or self.batch_size < 0:
            raise UserError(f"online reward model: update_every must be >= 1 and batch_size >= 0, got "
                            f"{self.update_every} and {self.batch_size}")
        if self.when == "batch" and (self.update_every != 1 or self.batch_size != 0):
            raise UserError("a reward model scored per batch trains on every batch (update_every 1, batch_size 0)")


class RewardTerms:
    """Builds the per-episode components and the sample-time reward of a run; see the module docstring.

    ``model``: an offline reward model (per-episode term) or ``None``; ``bonuses``: the online
    terms. Use :func:`build_reward_terms` to make one from a run's settings.
    """

    def __init__(self, method: str, alpha: float, model: RewardModel | None, bonuses: list[Bonus],
                 pixels: bool, task: str | None = None, episode_bonus: Bonus | None = None,
                 scoring: OnlineScoring | None = None, seed: int = 0):
        if not 0.0 <= alpha <= 1.0:
            raise UserError(f"alpha (the RND weight) must be in [0, 1], got {alpha}")
        if model is not None and model.is_online:
            raise ValueError("an online reward model is a Bonus, not the per-episode model")
        if model is not None and episode_bonus is not None:
            raise ValueError("one model fills the 'model' term: an offline model or an online one scored per episode")
        self.method = method
        self.alpha = float(alpha)
        self.model = model
        self.bonuses = bonuses
        self.episode_bonus = episode_bonus  # an online model scored per episode (fills "model")
        self.scoring = scoring or OnlineScoring()
        self.pixels = pixels
        self.task = task  # the per-episode model's rewards are standardized with this task's statistics
        self.batches = 0  # sampled batches so far: the online model trains every scoring.update_every of them
        self.frame_sampler = np.random.default_rng(np.random.SeedSequence([int(seed) % 2**32, 3]))

    # ---- what the loop needs to provide --------------------------------------------------------
    @property
    def needs_episode_frames(self) -> bool:
        """Whether finished episodes must come with their frames (a model scores them)."""
        return self.model is not None or self.episode_bonus is not None

    @property
    def needs_frame_replay(self) -> bool:
        """Whether a state run must keep a replay of frames for an online model that reads frames."""
        online = self.bonuses + ([self.episode_bonus] if self.episode_bonus is not None else [])
        return not self.pixels and any(b.reads_frames for b in online)

    # ---- per episode ---------------------------------------------------------------------------
    def episode_components(self, frames: np.ndarray | None, steps: int) -> dict[str, np.ndarray]:
        """Replay components of a finished episode of ``steps`` steps: ``{"model": rewards[1:]}`` for
        an offline model (``frames``: uint8 ``(steps + 1, H, W, 3)``), else nothing."""
        if self.model is None and self.episode_bonus is None:
            return {}
        if frames is None or len(frames) != steps + 1:
            raise ValueError(f"an episode of {steps} steps needs {steps + 1} frames for the reward model, "
                             f"got {None if frames is None else len(frames)}")
        if self.episode_bonus is not None:  # the online model as it is now, on the frames each step reached
            bonus = self.episode_bonus.model.bonus(np.ascontiguousarray(frames[1:]))
            return {"model": bonus.detach().float().cpu().numpy().astype(np.float32)}
        rewards = np.asarray(self.model.rewards(frames, task=self.task), dtype=np.float32)
        return {"model": rewards[1:]}

    # ---- per sampled batch ---------------------------------------------------------------------
    def sample(self, replay: ReplayBuffer, generator: np.random.Generator, batch_size: int,
               device: torch.device | str, frame_replay: ReplayBuffer | None = None,
               update: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """Sample an n-step batch with the composed reward; then train the online models on it.

        Returns the batch (``reward`` is the discounted sum of the composed per-step reward) and
        metrics: the mean per-step weighted terms ``reward/model``, ``reward/rnd``,
        ``reward/sparse``, ``reward/total`` and the online models' update metrics.
        """
        frame_batch = None
        if not self.pixels and any(b.reads_frames for b in self.bonuses):
            if frame_replay is None:
                raise ValueError("this reward reads frames in a state run: pass the frame replay")
            frame_batch = frame_replay.sample(batch_size, copy.deepcopy(generator), device=device,
                                              with_step_obs=True)
        terms: dict[str, torch.Tensor] = {}
        stored = self.model is not None or self.episode_bonus is not None
        reward_fn = self._reward_fn(frame_batch, terms) if (stored or self.bonuses) else None
        batch = replay.sample(batch_size, generator, reward_fn=reward_fn, device=device)
        if frame_batch is not None and not torch.equal(frame_batch["action"], batch["action"]):
            raise RuntimeError("the frame replay fell out of step with the state replay")
        if not terms:
            terms = {"reward/sparse": batch["step_reward"], "reward/total": batch["step_reward"]}
        mask = batch["step_mask"]
        metrics = {key: float((value * mask).sum() / mask.sum().clamp(min=1)) for key, value in terms.items()}
        if update:
            for bonus in self.bonuses:
                source = frame_batch if (bonus.reads_frames and frame_batch is not None) else batch
                metrics.update(bonus.update(source["next_obs"]))
            self.batches += 1
            if self.episode_bonus is not None and self.batches % self.scoring.update_every == 0:
                source_replay = frame_replay if (not self.pixels and frame_replay is not None) else replay
                n = self.scoring.batch_size or batch_size
                frames = source_replay.sample(n, self.frame_sampler, device=device)["next_obs"]
                metrics.update(self.episode_bonus.update(frames))
        return batch, metrics

    def _reward_fn(self, frame_batch: dict[str, torch.Tensor] | None,
                   terms: dict[str, torch.Tensor]) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
        def reward_fn(batch: dict[str, torch.Tensor]) -> torch.Tensor:
            values: dict[str, torch.Tensor] = {}
            if self.model is not None or self.episode_bonus is not None:
                values["model"] = batch["component/model"]
            for bonus in self.bonuses:
                source = frame_batch if (bonus.reads_frames and frame_batch is not None) else batch
                values[bonus.name] = bonus.values(source["step_next_obs"]).to(batch["step_reward"].device)
            parts = combine_rewards(values.get("model"), values.get("rnd"), batch["step_reward"], alpha=self.alpha)
            terms.update(parts)
            return parts["reward/model"] + parts["reward/rnd"]

        return reward_fn

    # ---- resume --------------------------------------------------------------------------------
    def save_state(self, directory: str | Path) -> None:
        """Write every online model's weights, statistics, optimizer and generators to ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_json(directory / "terms.json", {"batches": self.batches,
                                                     "frame_sampler": self.frame_sampler.bit_generator.state})
        for bonus in self._online():
            model = bonus.model
            tensors = {f"state.{k}": v for k, v in model.state_tensors().items()}
            for attr, value in vars(model).items():
                if isinstance(value, torch.Generator):
                    tensors[f"generator.{attr}"] = value.get_state()
            save_tensors(directory / f"{bonus.name}.safetensors", tensors)
            optimizer = getattr(model, "optimizer", None)
            if optimizer is not None:
                buffer = io.BytesIO()
                torch.save(optimizer.state_dict(), buffer)
                (directory / f"{bonus.name}-optimizer.pt").write_bytes(buffer.getvalue())

    def load_state(self, directory: str | Path) -> None:
        """Restore what :meth:`save_state` wrote (the models must have been built the same way)."""
        directory = Path(directory)
        if (directory / "terms.json").exists():
            state = read_json(directory / "terms.json")
            self.batches = int(state["batches"])
            self.frame_sampler.bit_generator.state = state["frame_sampler"]
        for bonus in self._online():
            model = bonus.model
            path = directory / f"{bonus.name}.safetensors"
            tensors = load_tensors(path)
            model.load_state_tensors({k[len("state."):]: v for k, v in tensors.items() if k.startswith("state.")},
                                     source=str(path))
            for key, value in tensors.items():
                if key.startswith("generator."):
                    getattr(model, key[len("generator."):]).set_state(value)
            optimizer = getattr(model, "optimizer", None)
            if optimizer is not None:
                state = torch.load(directory / f"{bonus.name}-optimizer.pt", map_location=model.device,
                                   weights_only=True)
                optimizer.load_state_dict(state)

    def _online(self) -> list[Bonus]:
        return self.bonuses + ([self.episode_bonus] if self.episode_bonus is not None else [])

    def describe(self) -> str:
        parts = ["sparse"]
        if self.model is not None:
            if self.model.stats is None:
                scale = "raw"
            elif self.task in self.model.task_stats:
                scale = f"standardized with {self.task}'s expert statistics"
            else:
                scale = "standardized with pooled expert statistics"
            parts.append(f"{1 - self.alpha:g} x {self.model.kind} (per episode, {scale})")
        if self.episode_bonus is not None:
            every = self.scoring.update_every
            parts.append(f"{1 - self.alpha:g} x {self.episode_bonus.model.kind} on frames (per episode, trained "
                         f"online every {every} batch{'es' if every > 1 else ''})")
        for bonus in self.bonuses:
            weight = self.alpha if bonus.name == "rnd" else 1 - self.alpha
            source = "frames" if bonus.reads_frames else "states"
            parts.append(f"{weight:g} x {bonus.model.kind} on {source} (per batch, trained online)")
        return " + ".join(parts)


def resolve_alpha(method: str, alpha: float | None) -> float:
    """``alpha`` when given, else the method's default (:func:`default_alpha`)."""
    if alpha is not None:
        return float(alpha)
    return default_alpha(method)


def build_reward_terms(method: str, *, pixels: bool, image_size: int, state_dim: int, task: str,
                       reward_model: str | None = None, expert_data: str | None = None,
                       alpha: float | None = None, bonus_preset: str = "paper", rnd_input: str = "auto",
                       seed: int = 0, device: str | torch.device = "cpu", camera: str | None = None,
                       warn: Callable[[str], None] | None = None,
                       online_scoring: OnlineScoring | None = None) -> RewardTerms:
    """The :class:`RewardTerms` of ``method`` for a run (see ``train-rl --help`` for the methods).

    ``reward_model`` is a directory saved with ``save_pretrained`` (required for diffusion, viper
    and motion; optional for amp and rnd, whose saved weights are then the starting point);
    ``expert_data`` the dataset whose expert frames AMP's discriminator learns from. An RND
    bonus is added whenever ``alpha > 0``. The run's ``camera`` must be one that the reward model's
    videos (and AMP's expert data) came from, where they record it.
    """
    from diffusion_reward.rewards.amp import PRESETS as AMP_PRESETS
    from diffusion_reward.rewards.amp import AMPReward
    from diffusion_reward.rewards.rnd import PRESETS as RND_PRESETS
    from diffusion_reward.rewards.rnd import RNDReward
    from diffusion_reward.rl.state_rnd import PRESETS as STATE_RND_PRESETS
    from diffusion_reward.rl.state_rnd import StateRND

    alpha = resolve_alpha(method, alpha)
    if rnd_input not in ("auto", "state", "pixels"):
        raise UserError(f"rnd_input must be auto, state or pixels, got {rnd_input!r}")
    if pixels and rnd_input == "state":
        raise UserError("rnd_input=state needs a state run (--obs state): a pixel run has no state in its replay")
    if bonus_preset not in RND_PRESETS:
        raise UserError(f"unknown bonus preset {bonus_preset!r}; expected one of {sorted(RND_PRESETS)}")
    rnd_on_frames = pixels or rnd_input == "pixels"
    device = torch.device(device)

    def check_size(model: RewardModel, where: str) -> None:
        if model.image_size is not None and model.image_size != image_size:
            raise UserError(f"{where}: the reward model reads {model.image_size}x{model.image_size} frames but the "
                            f"run renders {image_size}x{image_size}; pass --image-size {model.image_size}")

    loaded = None
    if reward_model is not None:
        if method == "sparse":
            raise UserError("--reward sparse uses the environment's success signal only; drop --reward-model")
        loaded = load_reward_model(reward_model, device=device)
        check_size(loaded, reward_model)
        loaded.check_camera(task, camera, where=str(reward_model))
        if method in DEFAULT_ALPHA and loaded.kind != method and warn is not None:
            warn(f"{reward_model} holds a {loaded.kind!r} reward model; using it as the {method!r} reward")

    scoring = online_scoring or OnlineScoring()
    model: RewardModel | None = None
    bonuses: list[Bonus] = []
    episode_bonus: Bonus | None = None
    if method == "sparse":
        pass
    elif method == "rnd":
        if loaded is not None and loaded.kind != "rnd":
            raise UserError(f"{reward_model}: --reward rnd needs an RND model, the directory holds "
                            f"{loaded.kind!r}")
    elif method == "amp":
        if loaded is not None:
            if not hasattr(loaded, "attach_expert"):
                raise UserError(f"{reward_model}: --reward amp needs an AMP model, the directory holds "
                                f"{loaded.kind!r}")
            amp = loaded
            if expert_data is None:
                raise UserError("--reward amp keeps training its discriminator during RL: pass --expert-data "
                                "DATASET (the expert episodes of this task)")
            _attach_expert(amp, expert_data, task)
        else:
            if expert_data is None:
                raise UserError("--reward amp needs --expert-data DATASET (expert episodes of this task) to build "
                                "its discriminator, or --reward-model DIR of a saved AMP model plus --expert-data")
            amp = AMPReward(dataclasses.replace(AMP_PRESETS[bonus_preset], image_size=image_size, seed=seed),
                            device=device)
            _attach_expert(amp, expert_data, task)
        amp.check_camera(task, camera, where=f"--expert-data {expert_data}")
        if scoring.when == "episode":
            episode_bonus = Bonus("model", amp, reads_frames=True)
        else:
            bonuses.append(Bonus("model", amp, reads_frames=True))
    else:
        if loaded is None:
            raise UserError(f"--reward {method} needs --reward-model DIR: a reward model saved with save_pretrained "
                            "(for diffusion and viper, the output of fit-reward)")
        if loaded.is_online and scoring.when == "episode":
            episode_bonus = Bonus("model", loaded, reads_frames=True)
        elif loaded.is_online:
            bonuses.append(Bonus("model", loaded, reads_frames=True))
        else:
            model = loaded

    if alpha > 0:
        if method == "rnd" and loaded is not None:
            rnd: Any = loaded
            if not rnd_on_frames:
                raise UserError(f"{reward_model}: a saved RND model reads frames; in a state run pass --rnd-input "
                                "pixels to use it, or drop --reward-model")
        elif rnd_on_frames:
            rnd = RNDReward(dataclasses.replace(RND_PRESETS[bonus_preset], image_size=image_size, seed=seed),
                            device=device)
        else:
            rnd = StateRND(state_dim, dataclasses.replace(STATE_RND_PRESETS[bonus_preset], seed=seed), device=device)
        bonuses.append(Bonus("rnd", rnd, reads_frames=rnd_on_frames))
    elif method == "rnd":
        raise UserError("--reward rnd with --alpha 0 leaves no RND bonus; use --reward sparse instead")
    if model is not None and warn is not None and model.stats is not None and task not in model.task_stats:
        warn(f"{reward_model} has no reward statistics of {task} (its expert videos were not among the reward "
             "model's): standardizing with the statistics pooled over its tasks")
    return RewardTerms(method, alpha, model, bonuses, pixels, task=task, episode_bonus=episode_bonus,
                       scoring=scoring, seed=seed)


def _attach_expert(amp: Any, expert_data: str, task: str) -> None:
    try:
        amp.attach_expert(expert_data, task=task)
    except UserError as exc:
        raise UserError(f"--expert-data {expert_data}: {exc}") from None
