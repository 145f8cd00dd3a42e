"""The RL loop's environment, stepped in this process or in a worker process that overlaps the updates.

DrQ-v2 acts on the latest observation, updates the networks, then steps the environment with
the action it chose before the update. The update never needs the step it precedes (a finished
episode reaches the replay only at its end), so the step can run *while* the networks update:
:meth:`step_async` hands the action over, :meth:`step_wait` collects the result. The two runners
give identical results; only the wall clock differs:

- :class:`LocalEnv` steps inside :meth:`step_wait`, in this process (no overlap);
- :class:`WorkerEnv` sends the action to a worker process (started with ``spawn``, so no OpenGL
  or MuJoCo state is inherited) that simulates and renders while this process updates.
  ``reset_async`` / ``reset_wait`` do the same for the next episode's reset.

Thread counts. Mesa's software rasteriser (llvmpipe) starts one thread per core when its first
OpenGL context is made, and a learner beside an unconstrained renderer slows down many times on a
small machine; at 64x64 the default is none (``LP_NUM_THREADS=0`` rasterizes in the rendering
thread itself, without a hand-off per frame; the pixels are the same for every value).
The worker is started with ``LP_NUM_THREADS=render_threads`` (and one OpenMP
thread) in its environment, so the setting holds from its first instruction. :class:`LocalEnv`
sets ``LP_NUM_THREADS`` in this process before making its environment, which only takes effect
if no OpenGL context was made in this process before.

Frames. In pixel mode the observation is the frame. In state mode the agent sees the simulator's
state, and frames are rendered only for episodes reset with ``record=True`` (the learned reward
of a training episode, the video of an evaluation episode), otherwise nothing is rendered; the
episode's frames come back all at once from :meth:`episode_frames` at its end. The agent never
needs them to act, so the worker renders each one *after* replying to its step: the render
overlaps the learner's acting and updating at every step, not only at the steps that update.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import signal
import traceback
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

if TYPE_CHECKING:
    from diffusion_reward.envs.rendering import RenderSettings


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """Everything needed to build the environment in any process (picklable)."""

    task: str
    pixels: bool
    image_size: int = 64
    camera: str | None = None
    action_repeat: int = 2
    max_episode_steps: int | None = None
    render: RenderSettings | None = None  # None: RenderSettings.fast(), the project's default

    def make(self) -> Any:
        from diffusion_reward.envs import make_env

        return make_env(self.task, image_size=self.image_size, camera=self.camera,
                        action_repeat=self.action_repeat, max_episode_steps=self.max_episode_steps,
                        render=self.render, pixels=self.pixels)


@dataclasses.dataclass(frozen=True)
class EnvInfo:
    """What the loop needs to know about the environment before stepping it."""

    obs_shape: tuple[int, ...]
    obs_dtype: str
    action_dim: int
    max_episode_steps: int
    domain: str
    camera: str  # the camera the frames are rendered from (the task's default resolved)


@dataclasses.dataclass
class Step:
    """One agent step: the next observation, the sparse reward (summed over action repeats), whether
    the task was solved at any repeat, the episode's end flags, and the simulator's hand-shaped dense
    reward (summed over action repeats; reported, never trained on)."""

    obs: np.ndarray
    reward: float
    success: bool
    terminated: bool
    truncated: bool
    dense_reward: float = float("nan")

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated


class _Stepper:
    """The environment plus the frames of a recorded episode (it lives where the environment lives).

    In a state run with ``record=True`` the frame reached by every step is rendered by
    :meth:`record`, which the worker calls *after* replying: the agent never waits for these frames,
    only the episode's end does.
    """

    def __init__(self, spec: EnvSpec):
        self.spec = spec
        self.env = spec.make()
        self.frames: list[np.ndarray] | None = None
        self.info = EnvInfo(tuple(self.env.observation_space.shape), str(self.env.observation_space.dtype),
                            int(self.env.action_space.shape[0]), int(self.env.max_episode_steps),
                            self.env.task_spec.domain, self.env.camera)

    def reset(self, seed: int, record: bool) -> np.ndarray:
        if record and self.spec.pixels:
            raise ValueError("a pixel run's frames are its observations; record only state runs")
        self.frames = [] if record else None
        obs, _ = self.env.reset(seed=int(seed))
        return obs

    def step(self, action: np.ndarray) -> Step:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return Step(obs, float(reward), bool(info["success"]), bool(terminated), bool(truncated),
                    float(info.get("dense_reward", float("nan"))))

    def record(self) -> None:
        """Render the frame of the current state into the recorded episode (when recording)."""
        if self.frames is not None:
            self.frames.append(self.env.render_frame())

    def episode_frames(self) -> np.ndarray:
        if not self.frames:
            raise RuntimeError("no frames recorded: reset with record=True first")
        return np.stack(self.frames)

    def close(self) -> None:
        self.env.close()


def frames_from_obs(obs: Any) -> np.ndarray:
    """``uint8 (T, H, W, 3)`` frames from pixel observations ``(T, 3, H, W)``."""
    return np.ascontiguousarray(np.asarray(obs).transpose(0, 2, 3, 1))


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class LocalEnv:
    """The environment in this process: ``step_async`` only records the action, ``step_wait`` steps."""

    overlaps = False

    def __init__(self, spec: EnvSpec, render_threads: int = 0):
        if render_threads >= 0:
            os.environ["LP_NUM_THREADS"] = str(render_threads)
        self.spec = spec
        self._stepper = _Stepper(spec)
        self.info = self._stepper.info
        self._action: np.ndarray | None = None
        self._reset: tuple[int, bool] | None = None

    def reset_async(self, seed: int, record: bool = False) -> None:
        self._reset = (seed, record)

    def reset_wait(self) -> np.ndarray:
        if self._reset is None:
            raise RuntimeError("reset_wait without reset_async")
        (seed, record), self._reset = self._reset, None
        obs = self._stepper.reset(seed, record)
        self._stepper.record()
        return obs

    def reset(self, seed: int, record: bool = False) -> np.ndarray:
        self.reset_async(seed, record)
        return self.reset_wait()

    def step_async(self, action: np.ndarray) -> None:
        self._action = np.asarray(action)

    def step_wait(self) -> Step:
        if self._action is None:
            raise RuntimeError("step_wait without step_async")
        action, self._action = self._action, None
        result = self._stepper.step(action)
        self._stepper.record()
        return result

    def step(self, action: np.ndarray) -> Step:
        self.step_async(action)
        return self.step_wait()

    def episode_frames(self) -> np.ndarray:
        """The frames of the episode recorded since the last ``reset(..., record=True)``, ``(T + 1, H, W, 3)``."""
        return self._stepper.episode_frames()

    def close(self) -> None:
        self._stepper.close()


def _worker_main(conn: Any, spec: EnvSpec) -> None:
    """The worker process: build the environment, then answer commands until told to stop."""
    # Ctrl-C reaches the whole process group; the parent handles it and closes the worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        stepper = _Stepper(spec)
    except BaseException:
        conn.send(("error", traceback.format_exc()))
        return
    conn.send(("ok", stepper.info))
    failure = None  # a frame that failed to render after its reply: reported with the next reply
    try:
        while True:
            try:
                command, arg = conn.recv()
            except (EOFError, OSError):  # the parent is gone (closed, or killed: connection reset)
                return
            if command == "close":
                return
            try:
                if failure is not None:
                    raise RuntimeError(f"rendering a recorded frame failed:\n{failure}")
                if command == "step":
                    result: Any = stepper.step(arg)
                elif command == "reset":
                    result = stepper.reset(*arg)
                elif command == "frames":
                    result = stepper.episode_frames()
                else:
                    raise ValueError(f"unknown command {command!r}")
            except BaseException:
                conn.send(("error", traceback.format_exc()))
                continue
            conn.send(("ok", result))
            if command in ("step", "reset"):
                try:
                    stepper.record()  # while the learner acts and updates
                except BaseException:
                    failure = traceback.format_exc()
    finally:
        stepper.close()


class EnvWorkerError(RuntimeError):
    """The worker process failed; the message carries its traceback or exit code."""


class WorkerEnv:
    """The environment in a worker process; ``step_async`` returns at once, ``step_wait`` collects.

    ``render_threads`` becomes the worker's ``LP_NUM_THREADS`` (-1 leaves this process's value).
    The worker exits when :meth:`close` is called or when this process goes away.
    """

    overlaps = True

    def __init__(self, spec: EnvSpec, render_threads: int = 0, start_timeout: float = 300.0):
        self.spec = spec
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
        if render_threads >= 0:
            env["LP_NUM_THREADS"] = str(render_threads)
        self._process = context.Process(target=_worker_main, args=(child, spec), daemon=True,
                                        name=f"env-worker-{spec.task}")
        with _environ(env):  # a spawned interpreter starts with this process's environment
            self._process.start()
        child.close()
        self._pending: str | None = None
        self._closed = False
        if not self._conn.poll(start_timeout):
            self.close()
            raise EnvWorkerError(f"the environment worker for {spec.task} did not start in {start_timeout:.0f} s")
        self.info: EnvInfo = self._receive("start")

    def _receive(self, what: str) -> Any:
        try:
            status, payload = self._conn.recv()
        except (EOFError, ConnectionResetError, OSError):
            self._process.join(timeout=5)
            code = self._process.exitcode
            self._closed = True
            raise EnvWorkerError(f"the environment worker for {self.spec.task} died during {what} "
                                 f"(exit code {code})") from None
        if status == "error":
            raise EnvWorkerError(f"the environment worker for {self.spec.task} failed during {what}:\n{payload}")
        return payload

    def _send(self, command: str, arg: Any) -> None:
        if self._pending is not None:
            raise RuntimeError(f"{command} while a {self._pending} is pending")
        if self._closed:
            raise EnvWorkerError("the environment worker is closed")
        self._conn.send((command, arg))
        self._pending = command

    def _wait(self, command: str) -> Any:
        if self._pending != command:
            raise RuntimeError(f"{command}_wait without {command}_async")
        self._pending = None
        return self._receive(command)

    def reset_async(self, seed: int, record: bool = False) -> None:
        self._send("reset", (int(seed), bool(record)))

    def reset_wait(self) -> np.ndarray:
        return self._wait("reset")

    def reset(self, seed: int, record: bool = False) -> np.ndarray:
        self.reset_async(seed, record)
        return self.reset_wait()

    def step_async(self, action: np.ndarray) -> None:
        self._send("step", np.asarray(action, dtype=np.float32))

    def step_wait(self) -> Step:
        return self._wait("step")

    def step(self, action: np.ndarray) -> Step:
        self.step_async(action)
        return self.step_wait()

    def episode_frames(self) -> np.ndarray:
        """The frames of the episode recorded since the last ``reset(..., record=True)``, ``(T + 1, H, W, 3)``
        (the worker renders each one after answering its step, so here it only waits for the last)."""
        self._send("frames", None)
        return self._wait("frames")

    @property
    def alive(self) -> bool:
        """Whether the worker process is running."""
        return self._process.is_alive()

    def close(self) -> None:
        """Stop the worker (idempotent): ask politely, then terminate it if it does not exit."""
        if not self._closed:
            self._closed = True
            with contextlib.suppress(OSError, BrokenPipeError):
                if self._pending is not None:
                    with contextlib.suppress(Exception):
                        self._conn.recv()
                self._conn.send(("close", None))
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout=5)
        self._conn.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            if not self._closed:
                self.close()


def make_runner(spec: EnvSpec, worker: bool, render_threads: int = 0) -> LocalEnv | WorkerEnv:
    """A :class:`WorkerEnv` when ``worker``, else a :class:`LocalEnv`."""
    return WorkerEnv(spec, render_threads) if worker else LocalEnv(spec, render_threads)
