"""Episode replay buffer with n-step sampling, reward components, sample-time bonuses and resume.

Storage. The loop adds a whole episode when it finishes: observations ``(T + 1, ...)`` (the
reset observation included; pixels ``uint8``, states ``float32``), actions ``(T, A)``, the
per-step reward ``(T,)`` the agent should learn from (e.g. sparse + learned), optionally named
per-step reward components ``{name: (T,)}`` (e.g. ``sparse``, ``learned``) kept alongside, and
whether the episode ended in a true terminal state. The capacity counts transitions; adding an
episode that would exceed it evicts the oldest episodes first. Observations are stored once
per episode (``T + 1`` of them), never duplicated per transition.

n-step targets. A sample starting at step ``t`` has ``reward = sum_k gamma**k r[t + k]`` over
``k < n``, ``next_obs = obs[t + n]`` and ``discount = gamma**n``. The end of an episode is
handled by where a sample may start, never by clipping a return silently:

* an episode cut by a time limit (``terminated=False``, the default, and the case of every
  MetaWorld/Adroit episode) is **not** terminal: only starts with all ``n`` steps inside the
  episode are sampled (``t <= T - n``), so every sample bootstraps with ``gamma**n`` from a real
  observation. The last ``n - 1`` transitions still count in the returns of earlier starts; an
  episode shorter than ``n`` steps is stored but never sampled.
* a terminated episode (``terminated=True``) has no future after its last step: every step
  may start a sample; a window that reaches the end is summed up to the terminal step only
  and gets ``discount = 0`` (``next_obs`` is then the terminal observation, never used).

Sample-time rewards. Bonuses such as RND or AMP depend on the observation reached at each
step and are recomputed from the current bonus model on every batch. Because an n-step return
needs the bonus of each of its ``n`` steps, a sample also carries its per-step pieces:
``step_reward (B, n)`` (the stored rewards, 0 past a terminal), ``step_mask (B, n)`` (1 for
steps inside the episode), ``component/<name> (B, n)`` and, on request or whenever a
``reward_fn`` is given, ``step_next_obs (B, n, ...)`` (the observation after each step).
``sample(..., reward_fn=f)`` calls ``f(batch)`` on the batch (already on ``device``); it returns
a per-step bonus ``(B, n)`` that is **added** to the stored per-step reward before the
discounted sum, so ``reward = sum_k gamma**k * mask_k * (r_k + bonus_k)``. To replace the
stored reward instead, store the part to keep (e.g. sparse) as the reward and the rest as
components, and let ``reward_fn`` build the bonus from them.

On disk (``save`` / ``load``): ``replay.json`` (settings and the ordered list of episodes) and
one safetensors file per episode under ``episodes/``. Episode files never change once written,
so saving again writes only the new ones and deletes evicted ones; the index is written last
and atomically, so a run killed while saving leaves the previous consistent state.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch

from diffusion_reward.utils.checkpoint import atomic_write_json, load_tensors, read_json, save_tensors

FORMAT_NAME = "diffusion-reward-replay"
FORMAT_VERSION = 1
INDEX_NAME = "replay.json"
EPISODE_DIR = "episodes"

RewardFn = Callable[[dict[str, torch.Tensor]], torch.Tensor]


@dataclasses.dataclass
class _Episode:
    id: int
    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    components: dict[str, np.ndarray]
    terminated: bool

    @property
    def length(self) -> int:
        return len(self.reward)

    def num_starts(self, nstep: int) -> int:
        if self.terminated:
            return self.length
        return max(0, self.length - nstep + 1)

    @property
    def file_name(self) -> str:
        return f"episode_{self.id:08d}.safetensors"


class ReplayBuffer:
    """Finished episodes, sampled as n-step transitions (see the module docstring).

    ``capacity`` is the most transitions (steps) kept; ``nstep`` and ``discount`` define the
    sampled returns and may differ between a run and the one that resumes it, since only raw
    per-step data is stored.
    """

    def __init__(self, capacity: int = 1_000_000, nstep: int = 3, discount: float = 0.99):
        if capacity < 1 or nstep < 1 or not 0.0 <= discount <= 1.0:
            raise ValueError(f"need capacity >= 1, nstep >= 1 and 0 <= discount <= 1; got capacity={capacity}, "
                             f"nstep={nstep}, discount={discount}")
        self.capacity = int(capacity)
        self.nstep = int(nstep)
        self.discount = float(discount)
        self._episodes: list[_Episode] = []
        self._num_transitions = 0
        self._next_id = 0
        self._uid = uuid.uuid4().hex
        # Sample starts per episode and their running total, rebuilt after the episodes change.
        self._counts = np.zeros(0, np.int64)
        self._starts_end: np.ndarray | None = None

    # ------------------------------------------------------------------ contents
    def __len__(self) -> int:
        return self._num_transitions

    @property
    def num_episodes(self) -> int:
        return len(self._episodes)

    @property
    def num_samplable(self) -> int:
        """How many distinct transitions :meth:`sample` can start from."""
        return sum(ep.num_starts(self.nstep) for ep in self._episodes)

    @property
    def component_names(self) -> tuple[str, ...]:
        return tuple(sorted(self._episodes[0].components)) if self._episodes else ()

    def add(self, obs: np.ndarray, action: np.ndarray, reward: np.ndarray,
            components: Mapping[str, np.ndarray] | None = None, terminated: bool = False) -> None:
        """Store one finished episode of ``T`` steps; evicts the oldest episodes when full.

        ``obs`` is ``(T + 1, ...)`` (uint8 pixels or float state), ``action`` ``(T, A)``,
        ``reward`` ``(T,)`` the per-step reward to learn from, ``components`` optional named
        ``(T,)`` arrays stored beside it, ``terminated`` whether the last step reached a true
        terminal state (a time limit is not one).
        """
        episode = self._make_episode(self._next_id, obs, action, reward, components or {}, terminated)
        self._check_schema(episode)
        self._next_id += 1
        self._append(episode)

    def _make_episode(self, episode_id: int, obs, action, reward, components, terminated) -> _Episode:
        obs = np.asarray(obs)
        if obs.dtype == np.uint8:
            obs = np.ascontiguousarray(obs)
        elif np.issubdtype(obs.dtype, np.floating):
            obs = np.ascontiguousarray(obs, dtype=np.float32)
        else:
            raise ValueError(f"observations must be uint8 pixels or float states, got dtype {obs.dtype}")
        reward = np.asarray(reward, dtype=np.float32).reshape(-1)
        steps = len(reward)
        if steps < 1:
            raise ValueError("an episode needs at least one step (one reward)")
        if obs.ndim < 2 or len(obs) != steps + 1:
            raise ValueError(f"an episode of {steps} steps needs {steps + 1} observations (reset included), "
                             f"got obs of shape {obs.shape}")
        action = np.asarray(action, dtype=np.float32)
        if action.ndim != 2 or action.shape[0] != steps:
            raise ValueError(f"expected actions of shape ({steps}, A), got {action.shape}")
        action = np.ascontiguousarray(action)
        comps = {}
        for name, values in components.items():
            values = np.asarray(values, dtype=np.float32).reshape(-1)
            if len(values) != steps:
                raise ValueError(f"reward component {name!r} has {len(values)} values for {steps} steps")
            comps[str(name)] = np.ascontiguousarray(values)
        for name, values in [("reward", reward), *comps.items()]:
            if not np.all(np.isfinite(values)):
                raise ValueError(f"{name} contains NaN or infinite values; the critic cannot learn from them")
        if steps > self.capacity:
            raise ValueError(f"an episode of {steps} steps does not fit a replay capacity of {self.capacity}")
        return _Episode(episode_id, obs, action, reward, comps, bool(terminated))

    def _check_schema(self, episode: _Episode) -> None:
        if not self._episodes:
            return
        first = self._episodes[0]
        if episode.obs.shape[1:] != first.obs.shape[1:] or episode.obs.dtype != first.obs.dtype:
            raise ValueError(f"observations {episode.obs.dtype}{episode.obs.shape[1:]} differ from the stored "
                             f"{first.obs.dtype}{first.obs.shape[1:]}")
        if episode.action.shape[1:] != first.action.shape[1:]:
            raise ValueError(f"action dimension {episode.action.shape[1:]} differs from the stored "
                             f"{first.action.shape[1:]}")
        if set(episode.components) != set(first.components):
            raise ValueError(f"reward components {sorted(episode.components)} differ from the stored "
                             f"{sorted(first.components)}")

    def _append(self, episode: _Episode) -> None:
        while self._episodes and self._num_transitions + episode.length > self.capacity:
            self._num_transitions -= self._episodes.pop(0).length
        self._episodes.append(episode)
        self._num_transitions += episode.length
        self._starts_end = None

    # ------------------------------------------------------------------ sampling
    def sample(self, batch_size: int, generator: np.random.Generator, reward_fn: RewardFn | None = None,
               device: str | torch.device = "cpu", with_step_obs: bool = False) -> dict[str, torch.Tensor]:
        """``batch_size`` n-step transitions drawn uniformly (with replacement) from all starts.

        Returns tensors on ``device``: ``obs``, ``action``, ``reward`` (n-step discounted sum),
        ``discount`` (``gamma**n``, 0 where the window reached a terminal), ``next_obs``, and the
        per-step ``step_reward``, ``step_mask``, ``component/<name>`` (each ``(B, n)``) and
        ``step_next_obs`` ``(B, n, ...)`` when ``with_step_obs`` or ``reward_fn`` is given.
        ``reward_fn(batch) -> (B, n)`` adds a per-step bonus before the discounted sum.
        """
        if self._starts_end is None:
            self._counts = np.array([ep.num_starts(self.nstep) for ep in self._episodes], dtype=np.int64)
            self._starts_end = np.cumsum(self._counts)
        total = int(self._starts_end[-1]) if len(self._starts_end) else 0
        if total == 0:
            raise ValueError(f"nothing to sample: the buffer holds {self.num_episodes} episode(s) and none has "
                             f"{self.nstep} steps (or a terminal)")
        with_step_obs = with_step_obs or reward_fn is not None
        n = self.nstep
        flat = generator.integers(0, total, size=batch_size)
        ep_index = np.searchsorted(self._starts_end, flat, side="right")
        starts = flat - (self._starts_end[ep_index] - self._counts[ep_index])

        first = self._episodes[0]
        obs_shape, obs_dtype = first.obs.shape[1:], first.obs.dtype
        obs = np.empty((batch_size, *obs_shape), obs_dtype)
        next_obs = np.empty_like(obs)
        action = np.empty((batch_size, *first.action.shape[1:]), np.float32)
        step_reward = np.zeros((batch_size, n), np.float32)
        step_mask = np.zeros((batch_size, n), np.float32)
        terminal = np.zeros(batch_size, bool)
        comps = {name: np.zeros((batch_size, n), np.float32) for name in first.components}
        step_next_obs = np.empty((batch_size, n, *obs_shape), obs_dtype) if with_step_obs else None
        for i, (e, t) in enumerate(zip(ep_index, starts)):
            ep = self._episodes[e]
            k = min(n, ep.length - t)  # < n only at the end of a terminated episode
            obs[i] = ep.obs[t]
            action[i] = ep.action[t]
            next_obs[i] = ep.obs[t + k]
            step_reward[i, :k] = ep.reward[t:t + k]
            step_mask[i, :k] = 1.0
            terminal[i] = ep.terminated and t + k == ep.length
            for name, values in ep.components.items():
                comps[name][i, :k] = values[t:t + k]
            if step_next_obs is not None:
                step_next_obs[i, :k] = ep.obs[t + 1:t + 1 + k]
                step_next_obs[i, k:] = ep.obs[t + k]

        def put(array: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(array).to(device)

        batch = {"obs": put(obs), "action": put(action), "next_obs": put(next_obs),
                 "discount": put(np.where(terminal, 0.0, self.discount ** n).astype(np.float32)),
                 "step_reward": put(step_reward), "step_mask": put(step_mask)}
        for name, values in comps.items():
            batch[f"component/{name}"] = put(values)
        if step_next_obs is not None:
            batch["step_next_obs"] = put(step_next_obs)
        per_step = batch["step_reward"]
        if reward_fn is not None:
            bonus = torch.as_tensor(reward_fn(batch)).to(device=per_step.device, dtype=torch.float32)
            if bonus.shape != per_step.shape:
                raise ValueError(f"reward_fn must return a per-step bonus of shape {tuple(per_step.shape)}, "
                                 f"got {tuple(bonus.shape)}")
            per_step = per_step + bonus
        weights = self.discount ** torch.arange(n, dtype=torch.float32, device=per_step.device)
        batch["reward"] = (per_step * batch["step_mask"] * weights).sum(dim=1)
        return batch

    # ---------------------------------------------------------------- persistence
    def save(self, directory: str | os.PathLike) -> None:
        """Write the buffer to ``directory`` so a killed run can :meth:`load` it (incremental, atomic)."""
        directory = Path(directory)
        episodes_dir = directory / EPISODE_DIR
        episodes_dir.mkdir(parents=True, exist_ok=True)
        index_path = directory / INDEX_NAME
        previous = read_json(index_path) if index_path.exists() else {}
        same_buffer = previous.get("uid") == self._uid
        for ep in self._episodes:
            path = episodes_dir / ep.file_name
            if same_buffer and path.exists():
                continue
            tensors = {"obs": torch.from_numpy(ep.obs), "action": torch.from_numpy(ep.action),
                       "reward": torch.from_numpy(ep.reward)}
            tensors.update({f"component/{name}": torch.from_numpy(v) for name, v in ep.components.items()})
            save_tensors(path, tensors)
        atomic_write_json(index_path, {
            "format": FORMAT_NAME, "version": FORMAT_VERSION, "uid": self._uid, "next_id": self._next_id,
            "capacity": self.capacity, "nstep": self.nstep, "discount": self.discount,
            "episodes": [{"id": ep.id, "file": f"{EPISODE_DIR}/{ep.file_name}", "length": ep.length,
                          "terminated": ep.terminated} for ep in self._episodes],
        })
        keep = {ep.file_name for ep in self._episodes}
        for path in episodes_dir.glob("episode_*.safetensors"):
            if path.name not in keep:
                path.unlink()

    def load(self, directory: str | os.PathLike) -> None:
        """Replace the contents with a buffer saved by :meth:`save` (this buffer's capacity applies)."""
        directory = Path(directory)
        index = read_json(directory / INDEX_NAME)
        if index.get("format") != FORMAT_NAME or index.get("version") != FORMAT_VERSION:
            raise ValueError(f"{directory / INDEX_NAME}: not a {FORMAT_NAME} v{FORMAT_VERSION} index")
        self._episodes, self._num_transitions, self._starts_end = [], 0, None
        for entry in index["episodes"]:
            path = directory / entry["file"]
            tensors = load_tensors(path)
            components = {k.split("/", 1)[1]: v.numpy() for k, v in tensors.items() if k.startswith("component/")}
            try:
                episode = self._make_episode(int(entry["id"]), tensors["obs"].numpy(), tensors["action"].numpy(),
                                             tensors["reward"].numpy(), components, entry["terminated"])
                self._check_schema(episode)
            except (KeyError, ValueError) as exc:
                raise ValueError(f"{path}: not a valid replay episode ({exc})") from None
            self._append(episode)
        self._next_id = int(index["next_id"])
        self._uid = str(index["uid"])
