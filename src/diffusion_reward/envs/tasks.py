"""Task names: the canonical name of every supported task, its defaults, the paper's suites.

Canonical names are MetaWorld 3.x's (``reach-v3``, ``door-open-v3``, ...; all 50) and the Adroit
tasks ``door``, ``hammer`` and ``pen``. The paper used MetaWorld 2.x names (``assembly-v2``) or bare
ones (``door-open``, ``reach``); those resolve to the ``-v3`` task with a warning, because the
3.x task is a re-implementation, not the same environment. ``adroit-door`` and the
gymnasium-robotics ids (``AdroitHandDoor-v1``) resolve to ``door`` silently. A bare ``door`` or
``hammer`` means Adroit (MetaWorld's are ``door-open-v3``, ``hammer-v3``).

Episode lengths are counted in agent steps (each agent step repeats the action ``action_repeat``
times, 2 by default): MetaWorld 100 (200 simulator steps, as in the paper); Adroit door 100,
hammer 100 and pen 50 (200, 200 and 100 simulator steps of 10 ms at repeat 2).
"""

from __future__ import annotations

import difflib
import functools
import re
import warnings
from dataclasses import dataclass

from diffusion_reward.errors import UserError

METAWORLD_CAMERA = "corner2"
METAWORLD_EPISODE_STEPS = 100

ADROIT_TASKS: dict[str, tuple[str, int]] = {
    # task: (default camera, episode length in agent steps)
    "door": ("top", 100),
    "hammer": ("top", 100),
    "pen": ("vil_camera", 50),
}

SUITES: dict[str, tuple[str, ...]] = {
    "metaworld-paper": ("assembly-v3", "coffee-push-v3", "dial-turn-v3", "door-close-v3",
                        "lever-pull-v3", "peg-unplug-side-v3", "reach-v3"),
    "metaworld-unseen": ("coffee-button-v3", "faucet-open-v3", "drawer-open-v3", "window-open-v3",
                         "button-press-v3", "door-lock-v3", "handle-press-v3", "reach-wall-v3"),
    "adroit": ("door", "hammer", "pen"),
}


@dataclass(frozen=True)
class TaskSpec:
    """A resolved task: its canonical name, simulator family, default camera and episode length."""

    name: str
    domain: str  # "metaworld" or "adroit"
    camera: str
    max_episode_steps: int  # in agent steps

    @property
    def expert_plans(self) -> bool:
        """Whether the task's expert plans on the environment's simulator (Adroit's; MetaWorld's are
        scripted), so is built per episode with the environment."""
        return self.domain == "adroit"


@functools.lru_cache(maxsize=1)
def metaworld_tasks() -> tuple[str, ...]:
    """The names of MetaWorld's 3.x tasks, as the installed MetaWorld lists them."""
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    return tuple(ALL_V3_ENVIRONMENTS)


def all_tasks() -> tuple[str, ...]:
    """Every canonical task name: MetaWorld's 50, then Adroit's."""
    return metaworld_tasks() + tuple(ADROIT_TASKS)


def _spec(name: str) -> TaskSpec:
    if name in ADROIT_TASKS:
        camera, steps = ADROIT_TASKS[name]
        return TaskSpec(name, "adroit", camera, steps)
    return TaskSpec(name, "metaworld", METAWORLD_CAMERA, METAWORLD_EPISODE_STEPS)


def resolve_task(name: str) -> TaskSpec:
    """The :class:`TaskSpec` of ``name``; warns when a paper (MetaWorld 2.x) name is mapped to 3.x.

    Raises :class:`UserError` naming the closest known tasks when ``name`` is unknown.
    """
    key = name.strip().lower().replace("_", "-")
    metaworld = metaworld_tasks()
    if key in metaworld or key in ADROIT_TASKS:
        return _spec(key)
    adroit = re.fullmatch(r"(?:adroit-?|adroithand)(door|hammer|pen)(?:-v\d+)?", key)
    if adroit:
        return _spec(adroit.group(1))
    base = re.sub(r"-v[0-9]+$", "", key)
    if base + "-v3" in metaworld:
        canonical = base + "-v3"
        warnings.warn(f"task {name!r} is a MetaWorld 2.x/paper name; using MetaWorld 3.x's {canonical!r}",
                      stacklevel=2)
        return _spec(canonical)
    known = all_tasks()
    close = difflib.get_close_matches(key, known, n=4, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else "run with a name from MetaWorld 3.x or door, hammer, pen"
    raise UserError(f"unknown task {name!r}; {hint} (known: {len(known)} tasks, e.g. reach-v3, door-open-v3, door)")


def resolve_suite(name: str) -> tuple[str, ...]:
    """The tasks of a suite in :data:`SUITES` (a clear error lists the suites)."""
    if name not in SUITES:
        raise UserError(f"unknown suite {name!r}; expected one of {sorted(SUITES)}")
    return SUITES[name]
