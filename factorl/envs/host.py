"""Environment adapters: DeepMind Control Suite and Gymnasium behind one Gymnasium API.

`make_env("dmc:cheetah-run")` or `make_env("gym:Pendulum-v1")` returns a `gymnasium.Env` with a
flat float32 observation vector and a float32 `Box` action space. Episodes that hit a time limit
end with `truncated=True`; only a real terminal state (discount 0 in dm_control) sets
`terminated=True`, so bootstrapping stays correct.
"""

from __future__ import annotations

import ctypes.util
import difflib
import importlib
import logging
import os
import sys
import traceback
import warnings
from collections.abc import Sequence
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

from factorl.core.config import ConfigError, one_line


def _configure_mujoco_gl() -> None:
    """Pick a headless-safe MUJOCO_GL before dm_control reads it (only if the user has not).

    dm_control 1.0.50 reads MUJOCO_GL once, when `dm_control._render` is first imported. Accepted:
    glfw (also on/enable/true/1/""), egl, osmesa, and off/disable/disabled/false/0. Left unset it
    tries glfw first, which "succeeds" on a headless Linux box but prints GLFW/X11 warnings and
    cannot render. An explicit "egl" or "osmesa" raises at import when the library or device is
    unusable (no libEGL, no EGL device, no libOSMesa), which would break training even though
    training never renders. So on headless Linux we choose egl if libEGL is installed, else osmesa
    if libOSMesa is, else "disable"; if the chosen backend then fails to import we fall back to
    "disable", so `render()` raises a clear error while everything else works. With a display, or
    on macOS/Windows, dm_control's own choice (glfw) is fine and we leave the variable alone.
    """
    if "dm_control._render" in sys.modules:
        return  # dm_control has already picked its backend
    if "MUJOCO_GL" in os.environ:
        _check_user_mujoco_gl(os.environ["MUJOCO_GL"])
        return  # the user decided
    has_display = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if not sys.platform.startswith("linux") or has_display:
        return
    pyopengl_platform = os.environ.get("PYOPENGL_PLATFORM")
    if pyopengl_platform in ("egl", "osmesa"):
        choice = pyopengl_platform  # the other backend would refuse to load under this setting
    elif ctypes.util.find_library("EGL"):
        choice = "egl"
    elif ctypes.util.find_library("OSMesa"):
        choice = "osmesa"
    else:
        choice = "disable"
    os.environ["MUJOCO_GL"] = choice
    if choice != "disable":
        _import_renderer_or_disable()


def _import_renderer_or_disable() -> Exception | None:
    """Import dm_control's renderer under the current MUJOCO_GL; if that backend's library is
    present but unusable (or missing), which must not make dm_control unimportable, forget the
    half-imported renderer modules and import again with rendering disabled. Returns the
    import's error, or None where the backend loaded."""
    pyopengl_platform = os.environ.get("PYOPENGL_PLATFORM")
    try:
        importlib.import_module("dm_control._render")
    except Exception as e:  # dm_control raises several types here (ImportError, AttributeError)
        for name in [m for m in sys.modules if m.startswith("dm_control._render")]:
            del sys.modules[name]
        if pyopengl_platform is None:
            os.environ.pop("PYOPENGL_PLATFORM", None)  # set by dm_control's failed renderer import
        os.environ["MUJOCO_GL"] = "disable"
        importlib.import_module("dm_control._render")
        return e
    return None


#: the system package that provides each headless MuJoCo rendering backend (Debian/Ubuntu)
GL_PACKAGES = {"egl": "libegl1", "osmesa": "libosmesa6"}


def _check_user_mujoco_gl(choice: str) -> None:
    """The user's MUJOCO_GL=egl|osmesa, when its library is missing or unusable, makes
    dm_control raise at import, which would stop every factorl command, though only rendering
    needs it. Rendering is turned off instead, with one line that says how to get it back."""
    if choice.lower() not in GL_PACKAGES:
        return
    e = _import_renderer_or_disable()
    if e is not None:
        reason = one_line(f"{type(e).__name__}: {e}")[:160]
        print(
            f"factorl: MUJOCO_GL={choice} cannot be used ({reason}), so MuJoCo rendering is off "
            f"(training does not need it); for videos install {GL_PACKAGES[choice.lower()]} "
            "(apt install) or unset MUJOCO_GL",
            file=sys.stderr,
        )


_configure_mujoco_gl()

from dm_control import suite  # noqa: E402  (MUJOCO_GL must be chosen first)


class _SettotalmassFilter(logging.Filter):
    """dm_control 1.0.x models use MuJoCo's deprecated 'settotalmass' attribute, and MuJoCo 3.x
    logs a warning through absl on every model load (each env and eval env). Users can do nothing
    about it, so we drop exactly that message and nothing else."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "settotalmass" not in record.getMessage()


logging.getLogger("absl").addFilter(_SettotalmassFilter())

_PREFIXES = ("dmc:", "gym:", "pettingzoo:")
_RENDER_HINT = (
    "MuJoCo could not create an OpenGL context for rendering. On a headless machine set "
    "MUJOCO_GL=egl (GPU or Mesa EGL; needs libEGL) or MUJOCO_GL=osmesa (CPU; needs libOSMesa, "
    "e.g. apt-get install libosmesa6) before importing factorl, and install that library."
)


def available_envs() -> list[str]:
    """All DeepMind Control Suite ids accepted by `make_env`, as sorted "dmc:domain-task" strings.

    Gymnasium ids are not listed (they depend on what is installed); any registered id with a Box
    action space works as "gym:<id>".
    """
    return sorted(f"dmc:{domain}-{task}" for domain, task in suite.ALL_TASKS)


def _close_matches(name: str, candidates: list[str]) -> str:
    """A "Did you mean" sentence for `name`, or "" when nothing is close."""
    matches = difflib.get_close_matches(name, candidates, n=5, cutoff=0.6)
    return f" Did you mean: {', '.join(matches)}?" if matches else ""


#: the camera a Control Suite domain renders from where none is given: DrQ-v2's and CQN's
#: choice, camera 2 ("y", which follows the body from the side) for quadruped, camera 0 otherwise
DMC_CAMERAS = {"quadruped": 2}


def _unknown_dmc_error(env_id: str) -> ValueError:
    ids = available_envs()
    return ValueError(
        f"Unknown DeepMind Control Suite id {env_id!r} (expected 'dmc:<domain>-<task>')."
        f"{_close_matches(env_id, ids)} Available: {', '.join(ids)}."
    )


class DMCEnv(gymnasium.Env[np.ndarray, np.ndarray]):
    """A DeepMind Control Suite task as a Gymnasium env with a flat float32 observation.

    Observations concatenate the suite's observation dict in its own key order (scalars become one
    entry). The action space is the action spec's per-dimension bounds as float32; actions are
    passed on unclipped. The suite's time limit ends an episode with `truncated=True`; a terminal
    state (discount 0) gives `terminated=True`.
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 100}  # noqa: RUF012

    def __init__(
        self,
        domain: str,
        task: str,
        *,
        seed: int | None = None,
        render_mode: str | None = None,
        render_height: int = 84,
        render_width: int = 84,
        camera_id: int | None = None,
    ) -> None:
        """Load `domain`-`task` from the suite, seeding the task's random state with `seed`;
        frames come from `camera_id` (None: the domain's entry in `DMC_CAMERAS`, else 0)."""
        if (domain, task) not in suite.ALL_TASKS:
            raise _unknown_dmc_error(f"dmc:{domain}-{task}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self._env = suite.load(domain, task, task_kwargs={"random": seed})
        self.render_mode = render_mode
        self._render_size = (render_height, render_width)
        self._camera_id = DMC_CAMERAS.get(domain, 0) if camera_id is None else camera_id
        self.metadata = {**self.metadata, "render_fps": round(1.0 / self._env.control_timestep())}

        obs_spec = self._env.observation_spec()
        obs_dim = sum(int(np.prod(spec.shape)) for spec in obs_spec.values())
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(obs_dim,), dtype=np.float32)
        act_spec = self._env.action_spec()
        low = np.broadcast_to(act_spec.minimum, act_spec.shape).astype(np.float32)
        high = np.broadcast_to(act_spec.maximum, act_spec.shape).astype(np.float32)
        self.action_space = spaces.Box(low, high, dtype=np.float32)
        self._action_dtype = act_spec.dtype
        self._needs_reset = True

    @property
    def dm_env(self) -> Any:
        """The wrapped `dm_control.rl.control.Environment` (physics, task, specs)."""
        return self._env

    @staticmethod
    def _flatten(observation: Any) -> np.ndarray:
        return np.concatenate(
            [np.asarray(v, dtype=np.float32).ravel() for v in observation.values()]
        )

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode; with `seed`, the episode is a deterministic function of it."""
        super().reset(seed=seed)
        if seed is not None:
            # dm_control draws all episode randomness from the task's RandomState (`task.random`
            # is a read-only property over `_random`). Replacing it re-seeds in place; reloading
            # with suite.load(task_kwargs={"random": seed}) would recompile the model (~70 ms)
            # and drop any rendering context.
            self._env.task._random = np.random.RandomState(seed)
        timestep = self._env.reset()
        self._needs_reset = False
        return self._flatten(timestep.observation), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply `action` (not clipped) for one control step."""
        if self._needs_reset:
            # dm_control would silently start a new episode here and return a FIRST step.
            raise RuntimeError("DMCEnv.step() called before reset() or after the episode ended")
        action = np.asarray(action)
        if action.shape != self.action_space.shape:
            raise ValueError(f"action has shape {action.shape}, expected {self.action_space.shape}")
        timestep = self._env.step(action.astype(self._action_dtype, copy=False))
        reward = 0.0 if timestep.reward is None else float(timestep.reward)
        terminated = truncated = False
        if timestep.last():
            self._needs_reset = True
            # Discount 0 marks a terminal state; the time limit ends with discount 1.
            if timestep.discount is not None and float(timestep.discount) == 0.0:
                terminated = True
            else:
                truncated = True
        return self._flatten(timestep.observation), reward, terminated, truncated, {}

    def render(self) -> np.ndarray | None:
        """An RGB frame (height, width, 3) uint8 from camera `camera_id` in "rgb_array" mode."""
        if self.render_mode is None:
            gymnasium.logger.warn("render() called without render_mode='rgb_array'")
            return None
        physics = self._env.physics
        try:
            physics.contexts  # noqa: B018  (creates the OpenGL context: where a missing backend fails)
        except Exception as exc:
            raise RuntimeError(_RENDER_HINT) from exc
        height, width = self._render_size
        return physics.render(height, width, camera_id=self._camera_id)

    def close(self) -> None:
        """Release the underlying dm_control environment."""
        self._env.close()


class ActionRepeat(gymnasium.Wrapper):
    """Repeat each action `repeat` times, summing rewards and stopping early at episode end."""

    def __init__(self, env: gymnasium.Env, repeat: int) -> None:
        """Wrap `env`; `repeat` must be an int >= 1."""
        super().__init__(env)
        self.repeat = _check_action_repeat(repeat)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """Step the wrapped env up to `repeat` times with the same action."""
        total = 0.0
        for _ in range(self.repeat):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            if terminated or truncated:
                break
        return obs, total, terminated, truncated, info


class _SeedFirstReset(gymnasium.Wrapper):
    """Use `seed` for the first reset unless that reset brings its own."""

    def __init__(self, env: gymnasium.Env, seed: int) -> None:
        super().__init__(env)
        self._pending_seed: int | None = seed

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        if seed is None:
            seed = self._pending_seed
        self._pending_seed = None
        return self.env.reset(seed=seed, options=options)


def _check_action_repeat(repeat: Any) -> int:
    if isinstance(repeat, bool) or not isinstance(repeat, int | np.integer) or repeat < 1:
        raise ValueError(f"action_repeat must be an int >= 1, got {repeat!r}")
    return int(repeat)


def _make_gym(name: str, seed: int | None, render_mode: str | None) -> gymnasium.Env:
    env_name = name
    if ":" in name:
        # Gymnasium's "module:EnvId" form imports the module, that is, runs its code. An id can
        # come from a run folder's config.json, so an id never imports anything: the user names
        # modules to import on the command line (--import) or imports them in Python.
        module, env_name = name.split(":", 1)
        raise ValueError(
            f"'gym:{name}' would import the Python module {module!r}, and factorl never imports "
            f"code named in an environment id. Import it explicitly: 'factorl train --import "
            f"{module} --env.id gym:{env_name}' (or 'import {module}' before calling factorl)."
        )
    if env_name not in gymnasium.registry:
        registered = [f"gym:{k}" for k in gymnasium.registry]
        raise ValueError(
            f"Unknown Gymnasium id 'gym:{name}'.{_close_matches(f'gym:{env_name}', registered)}"
            " Registered ids are listed by gymnasium.pprint_registry(); an id a package of"
            " yours registers needs it named with --import MODULE."
        )
    env = gymnasium.make(env_name, render_mode=render_mode)
    if not isinstance(env.action_space, spaces.Box):
        env.close()
        raise ValueError(
            f"'gym:{name}' has action space {env.action_space}; factorl needs a Box (continuous) "
            "action space."
        )
    obs_space = env.observation_space
    if not (isinstance(obs_space, spaces.Box) and len(obs_space.shape) == 1):
        env = gymnasium.wrappers.FlattenObservation(env)
    if env.observation_space.dtype != np.float32:
        with warnings.catch_warnings():
            # Box warns on every float64 -> float32 bound cast; here that cast is the point.
            warnings.filterwarnings("ignore", message=".*precision lowered by casting")
            env = gymnasium.wrappers.DtypeObservation(env, np.float32)
    if seed is not None:
        env = _SeedFirstReset(env, seed)
    return env


def import_env_modules(modules: Sequence[str] | None) -> None:
    """Import modules that register environments (the commands' explicit `--import MODULE`); a
    ConfigError (the commands' one-line error) names one that is not a module name or cannot be
    imported."""
    for module in modules or ():
        if not all(part.isidentifier() for part in module.split(".")):
            raise ConfigError(f"--import expects a module name such as my_envs, got {module!r}")
        try:
            importlib.import_module(module)
        except ImportError as exc:
            # the factorl script, unlike `python -m`, does not put the working folder on the path
            hint = (
                "; put its folder on PYTHONPATH (PYTHONPATH=. for a file in this folder) or "
                "install it"
                if exc.name == module.split(".")[0]
                else ""
            )
            raise ConfigError(f"--import {module}: cannot import it ({exc}){hint}") from exc
        # the user's own module may raise anything as it runs: one line still, with where
        except Exception as exc:
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            raise ConfigError(
                f"--import {module}: importing it raised {type(exc).__name__}: "
                f"{one_line(exc)} ({frame.filename}, line {frame.lineno})"
            ) from exc


def make_env(
    env_id: str,
    *,
    seed: int | None = None,
    action_repeat: int = 1,
    render_mode: str | None = None,
) -> gymnasium.Env:
    """Build an environment from "dmc:<domain>-<task>", "gym:<Gymnasium id>" or, multi-agent,
    "pettingzoo:<module>" (`factorl.envs.marl.make_marl_host_env`).

    Observations are flat float32 vectors; the action space is a `Box` (float32 for dmc, the env's
    own for Gymnasium). An id never imports code: Gymnasium's "module:Id" form is refused (see
    `import_env_modules`).
    `seed` seeds the first episode (and the action space); later `reset()` calls continue the
    random stream unless given a seed. `action_repeat` repeats each action, summing rewards.
    """
    action_repeat = _check_action_repeat(action_repeat)
    prefix, sep, name = env_id.partition(":")
    if not sep:
        suggestions = []
        if f"dmc:{env_id}" in available_envs():
            suggestions.append(f"dmc:{env_id}")
        if env_id in gymnasium.registry:
            suggestions.append(f"gym:{env_id}")
        hint = f"Did you mean {' or '.join(repr(s) for s in suggestions)}?" if suggestions else ""
        raise ValueError(
            f"Environment id {env_id!r} has no prefix. {hint} Use 'gym:<Gymnasium id>' "
            "(e.g. 'gym:Pendulum-v1') or 'dmc:<domain>-<task>' (e.g. 'dmc:cheetah-run')."
        )
    if prefix == "dmc":
        domain, _, task = name.partition("-")
        if (domain, task) not in suite.ALL_TASKS:
            raise _unknown_dmc_error(env_id)
        env: gymnasium.Env = DMCEnv(domain, task, seed=seed, render_mode=render_mode)
    elif prefix == "gym":
        env = _make_gym(name, seed, render_mode)
    elif prefix == "pettingzoo":
        if action_repeat > 1:
            raise ValueError(f"env.action_repeat must be 1 for {env_id} (a multi-agent env)")
        # imported here: it is the multi-agent module, which a single-agent run never needs
        from factorl.envs.marl import make_marl_host_env

        env = make_marl_host_env(env_id, seed=seed)
    else:
        raise ValueError(
            f"Unknown environment prefix {prefix + ':'!r} in {env_id!r}; accepted prefixes are "
            f"{', '.join(repr(p) for p in _PREFIXES)} "
            "(e.g. 'dmc:cheetah-run', 'gym:Pendulum-v1', 'pettingzoo:mpe2.simple_spread_v3')."
        )
    if seed is not None:
        env.action_space.seed(seed)
    if action_repeat > 1:
        env = ActionRepeat(env, action_repeat)
    return env
