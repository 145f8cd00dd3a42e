"""Headless MuJoCo rendering: the OpenGL backend, the visual settings, and an upright frame renderer.

Backend. MuJoCo picks its OpenGL platform from ``MUJOCO_GL`` when ``mujoco`` is first imported,
so this module decides before importing it (``diffusion_reward.envs`` imports this module first).
A ``MUJOCO_GL`` set by the user is respected as is. (If ``mujoco`` was imported earlier without
it, MuJoCo settled on GLFW, which needs a display; the probe below then swaps MuJoCo's context
class for the chosen headless one, so import order does not matter.) Otherwise EGL is tried (an EGL device display
is initialised through ``ctypes``, which also finds Mesa's software llvmpipe device on machines
without a GPU), then OSMesa (its library is loaded); the choice is exported as ``MUJOCO_GL`` so
worker processes inherit it. :data:`BACKEND` records the choice and the reason; ``doctor``
prints it. When nothing works (or ``MUJOCO_GL`` names an unknown backend, or a windowed one without
a display), rendering is switched off so that ``mujoco`` still imports: pixel observations raise
:class:`RenderingUnavailable` with the fix, while ``pixels=False`` environments keep working.

Settings. :class:`RenderSettings` are the visual options that change pixels and speed (shadows,
multisampling, reflections). They are recorded in dataset manifests, and expert videos and RL must
use identical settings. ``RenderSettings.fast()`` (the default) turns shadows, multisampling and
reflections off, more than 10x faster than the simulator's own visuals with llvmpipe at 64x64
(``benchmarks/env_throughput.py``); ``RenderSettings.default()`` keeps the simulator's visuals.

Orientation. Some cameras are rolled upside down (MetaWorld's corner cameras have an image-up axis
pointing at the floor). A frame whose camera up-vector has a negative world-z component is rotated
180 degrees, which is the physical fix (a vertical flip alone would mirror the world). The
decision is made once per renderer, from the first rendered scene.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import importlib
import os
import sys
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from diffusion_reward.config import option
from diffusion_reward.errors import UserError

RENDERING_FIX = ("install the system libraries with `apt-get install libegl1 libegl-mesa0 libosmesa6` "
                 "(or run scripts/setup.sh), or pick a working backend with `export MUJOCO_GL=egl` "
                 "or `export MUJOCO_GL=osmesa`")


class RenderingUnavailable(UserError):
    """Pixel rendering cannot work on this machine; the message says why and how to fix it."""


@dataclass(frozen=True)
class RenderBackend:
    """The OpenGL platform MuJoCo renders with, why it was chosen, and what stops it, if anything."""

    name: str  # the MUJOCO_GL value in use: "egl", "osmesa", "glfw", ... ("disable" when none works)
    reason: str
    auto: bool  # True when chosen by probing rather than given through MUJOCO_GL
    problem: str | None = None  # why rendering cannot work; None when it should

    @property
    def usable(self) -> bool:
        return self.problem is None


_MUJOCO_GL_VALUES = ("egl", "osmesa", "glfw", "glx", "enable", "enabled", "on", "true", "1")
_MUJOCO_GL_OFF = ("disable", "disabled", "off", "false", "0")


def _egl_probe() -> str | None:
    """``None`` when an EGL device display initialises, else why it did not."""
    try:
        lib = ctypes.CDLL("libEGL.so.1")
    except OSError:
        return "libEGL.so.1 not found"
    get_proc = lib.eglGetProcAddress
    get_proc.restype = ctypes.c_void_p
    get_proc.argtypes = [ctypes.c_char_p]
    query_addr = get_proc(b"eglQueryDevicesEXT")
    display_addr = get_proc(b"eglGetPlatformDisplayEXT")
    if not query_addr or not display_addr:
        return "the EGL library lacks the device extensions (eglQueryDevicesEXT)"
    query = ctypes.CFUNCTYPE(ctypes.c_uint, ctypes.c_int, ctypes.POINTER(ctypes.c_void_p),
                             ctypes.POINTER(ctypes.c_int))(query_addr)
    get_display = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_uint, ctypes.c_void_p,
                                   ctypes.c_void_p)(display_addr)
    count = ctypes.c_int(0)
    if not query(0, None, ctypes.byref(count)) or count.value < 1:
        return "no EGL device found (libegl-mesa0 provides a software one)"
    devices = (ctypes.c_void_p * count.value)()
    query(count.value, devices, ctypes.byref(count))
    lib.eglInitialize.restype = ctypes.c_uint
    lib.eglInitialize.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    lib.eglTerminate.argtypes = [ctypes.c_void_p]
    egl_platform_device = 0x313F
    for device in devices[:count.value]:
        display = get_display(egl_platform_device, device, None)
        if display and lib.eglInitialize(display, None, None):
            lib.eglTerminate(display)
            return None
    return "no EGL device display could be initialised"


def _osmesa_probe() -> str | None:
    """``None`` when the OSMesa library loads, else why it did not."""
    name = ctypes.util.find_library("OSMesa")
    if name is None:
        return "libOSMesa not found"
    try:
        ctypes.CDLL(name)
    except OSError as exc:
        return f"{name} does not load ({exc})"
    return None


def _check_requested(name: str) -> str | None:
    if name in _MUJOCO_GL_OFF:
        return f"MUJOCO_GL={name} turns rendering off"
    if name not in _MUJOCO_GL_VALUES:
        return f"MUJOCO_GL={name!r} is not a MuJoCo backend (egl, osmesa, glfw)"
    if name not in ("egl", "osmesa") and not os.environ.get("DISPLAY"):
        return f"MUJOCO_GL={name} needs a display and DISPLAY is not set"
    return None


def _align_pyopengl(name: str) -> None:
    # MuJoCo's EGL and OSMesa modules refuse to import when PYOPENGL_PLATFORM names the other one
    # (a parent process that rendered with EGL exports PYOPENGL_PLATFORM=egl to its children).
    if name in ("egl", "osmesa") and "OpenGL" not in sys.modules:
        if os.environ.get("PYOPENGL_PLATFORM", name).lower() != name:
            os.environ["PYOPENGL_PLATFORM"] = name


def _use(name: str, late: bool) -> str | None:
    """Make ``name`` MuJoCo's backend: through ``MUJOCO_GL``, or by swapping the context class when
    mujoco was already imported (it reads ``MUJOCO_GL`` only once). ``None`` on success."""
    os.environ["MUJOCO_GL"] = name
    _align_pyopengl(name)
    if late:
        try:
            context = importlib.import_module(f"mujoco.{name}").GLContext
        except Exception as exc:  # e.g. PYOPENGL_PLATFORM set to another platform
            return f"mujoco.{name} does not import ({type(exc).__name__}: {exc})"
        sys.modules["mujoco"].gl_context.GLContext = context
    return None


def _choose_backend() -> RenderBackend:
    late = "mujoco" in sys.modules
    requested = os.environ.get("MUJOCO_GL", "").strip().lower()
    if late:  # what mujoco saw when it was imported is what counts
        requested = getattr(sys.modules["mujoco"].gl_context, "_MUJOCO_GL", requested)
    if requested:
        problem = _check_requested(requested)
        if problem is not None and requested not in _MUJOCO_GL_VALUES and not late:
            os.environ["MUJOCO_GL"] = "disable"  # mujoco refuses to import with an unknown value
        if not late:
            _align_pyopengl(requested)
        return RenderBackend(requested, "MUJOCO_GL is set", auto=False, problem=problem)
    if late and os.environ.get("DISPLAY"):
        return RenderBackend("glfw", "mujoco was imported first, without MUJOCO_GL, on a display", auto=False)
    when = "auto (mujoco was imported first; its context was switched)" if late else "auto"
    egl_problem = _egl_probe()
    if egl_problem is None:
        egl_problem = _use("egl", late)
        if egl_problem is None:
            return RenderBackend("egl", f"{when}: an EGL device display initialises", auto=True)
    osmesa_problem = _osmesa_probe()
    if osmesa_problem is None:
        osmesa_problem = _use("osmesa", late)
        if osmesa_problem is None:
            return RenderBackend("osmesa", f"{when}: EGL unusable ({egl_problem}); OSMesa loads", auto=True)
    if not late:
        os.environ["MUJOCO_GL"] = "disable"
    return RenderBackend("disable", f"{when}: no headless OpenGL found", auto=True,
                         problem=f"EGL unusable ({egl_problem}) and OSMesa unusable ({osmesa_problem})")


BACKEND: RenderBackend = _choose_backend()

import mujoco  # noqa: E402  (must follow the backend choice above)


@dataclass(frozen=True)
class RenderSettings:
    """Visual options of rendered frames; stored with every dataset so that RL sees the same pixels."""

    shadows: bool = option(False, "render shadows (the simulators' own visuals have them)")
    shadow_size: int | None = option(0, "shadow-map resolution in texels; None keeps the model's own (4096)")
    multisample: int | None = option(0, "offscreen multisampling (anti-aliasing) samples; None keeps the model's own")
    reflections: bool = option(False, "render reflective surfaces (mirror-like floors)")

    @classmethod
    def fast(cls) -> "RenderSettings":
        """No shadows, no multisampling, no reflections: the default, over 10x faster with llvmpipe."""
        return cls()

    @classmethod
    def default(cls) -> "RenderSettings":
        """The simulator's own visuals (shadows, its multisampling and shadow map, reflections)."""
        return cls(shadows=True, shadow_size=None, multisample=None, reflections=True)

    def __post_init__(self) -> None:
        if self.shadow_size is not None and self.shadow_size < 0:
            raise ValueError(f"RenderSettings.shadow_size must be >= 0 or None, got {self.shadow_size}")
        if self.multisample is not None and self.multisample < 0:
            raise ValueError(f"RenderSettings.multisample must be >= 0 or None, got {self.multisample}")
        if self.shadows and self.shadow_size == 0:
            raise ValueError("RenderSettings: shadows need a shadow map; give shadow_size > 0 or None")


def default_render_settings() -> dict[str, Any]:
    """The render settings datasets record (:meth:`RenderSettings.fast`), as a dict; RL renders the same."""
    from diffusion_reward.config import to_dict

    return to_dict(RenderSettings.fast())


def model_cameras(model: Any) -> list[str]:
    """The names of the cameras defined in a MuJoCo model, in model order."""
    return [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_CAMERA, i) for i in range(model.ncam)]


@dataclass(frozen=True)
class FreeCamera:
    """A camera that is not in the model: looks at ``lookat`` from ``distance`` metres (angles in degrees)."""

    lookat: tuple[float, float, float]
    distance: float
    azimuth: float
    elevation: float


_LIVE_RENDERERS: "weakref.WeakSet[FrameRenderer]" = weakref.WeakSet()
_EXIT_HOOK_REGISTERED = False


def _close_live_renderers() -> None:
    for renderer in list(_LIVE_RENDERERS):
        if renderer.pid == os.getpid():  # a forked child must not touch its parent's contexts
            renderer.close()


def _register(renderer: "FrameRenderer") -> None:
    # MuJoCo's EGL module registers eglTerminate at exit when the first context is made; atexit
    # runs handlers last-in first-out, so registering after that closes our contexts before the
    # display goes away (otherwise their destructors print EGLError tracebacks at exit).
    global _EXIT_HOOK_REGISTERED
    _LIVE_RENDERERS.add(renderer)
    if not _EXIT_HOOK_REGISTERED:
        atexit.register(_close_live_renderers)
        _EXIT_HOOK_REGISTERED = True


def require_backend() -> None:
    """Raise :class:`RenderingUnavailable` (one line, with the fix) when no backend is usable."""
    if not BACKEND.usable:
        raise RenderingUnavailable(f"rendering is unavailable: {BACKEND.problem}; {RENDERING_FIX}")


class FrameRenderer:
    """Renders upright ``uint8 (H, W, 3)`` frames of one MuJoCo model from one camera.

    The renderer owns one OpenGL context; :meth:`close` frees it exactly once (also at exit).
    ``settings`` are applied to the model's visual options (shadow map, multisampling) before the
    context is made, and to the scene's flags (shadows, reflections).
    """

    def __init__(self, model: mujoco.MjModel, data: mujoco.MjData, *, image_size: int,
                 camera: str | FreeCamera, settings: RenderSettings) -> None:
        require_backend()
        self.model, self.data = model, data
        self.image_size = image_size
        self.settings = settings
        self.rotate: bool | None = None  # decided at the first frame
        self.pid = os.getpid()
        vis = model.vis
        # The offscreen buffer only needs the frame size; the models ask for up to 3024x1680.
        vis.global_.offwidth = image_size
        vis.global_.offheight = image_size
        if settings.shadow_size is not None:
            vis.quality.shadowsize = settings.shadow_size
        if settings.multisample is not None:
            vis.quality.offsamples = settings.multisample
        if isinstance(camera, FreeCamera):
            cam = mujoco.MjvCamera()
            cam.type = mujoco.mjtCamera.mjCAMERA_FREE
            cam.lookat[:] = camera.lookat
            cam.distance, cam.azimuth, cam.elevation = camera.distance, camera.azimuth, camera.elevation
            self._camera: Any = cam
        else:
            names = model_cameras(model)
            if camera not in names:
                raise UserError(f"camera {camera!r} is not in this model; its cameras are {names}")
            self._camera = camera
        try:
            self._renderer: mujoco.Renderer | None = mujoco.Renderer(model, image_size, image_size)
        except Exception as exc:  # the GL platform failed to give a context
            raise RenderingUnavailable(
                f"MuJoCo could not create an OpenGL context with MUJOCO_GL={BACKEND.name} "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); {RENDERING_FIX}") from exc
        flags = self._renderer.scene.flags
        flags[mujoco.mjtRndFlag.mjRND_SHADOW] = settings.shadows
        flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = settings.reflections
        _register(self)

    def _update(self) -> mujoco.Renderer:
        if self._renderer is None:
            raise RuntimeError("this renderer is closed")
        self._renderer.update_scene(self.data, camera=self._camera)
        if self.rotate is None:
            # scene.camera holds the two stereo eyes; their up vectors agree for a mono view. A camera
            # looking straight down has a horizontal up vector (z ~ 0, either sign): left as is.
            up_z = float(self._renderer.scene.camera[0].up[2])
            self.rotate = up_z < -1e-3
        return self._renderer

    def _orient(self, image: np.ndarray) -> np.ndarray:
        if self.rotate:
            return np.ascontiguousarray(image[::-1, ::-1])
        return image

    def render(self) -> np.ndarray:
        """The current state as an upright ``uint8 (H, W, 3)`` frame."""
        return self._orient(self._update().render())

    def render_raw(self) -> np.ndarray:
        """The frame exactly as the camera sees it, without the orientation fix (for checks)."""
        renderer = self._update()
        return renderer.render()

    def render_segmentation(self) -> np.ndarray:
        """Upright ``int32 (H, W)`` geom ids (-1 where no geometry: the background)."""
        renderer = self._update()
        renderer.enable_segmentation_rendering()
        try:
            seg = renderer.render()
        finally:
            renderer.disable_segmentation_rendering()
        return self._orient(np.where(seg[..., 1] == int(mujoco.mjtObj.mjOBJ_GEOM), seg[..., 0], -1))

    def close(self) -> None:
        """Free the OpenGL context (idempotent)."""
        renderer, self._renderer = self._renderer, None
        if renderer is not None:
            renderer.close()
        _LIVE_RENDERERS.discard(self)

