"""Offline datasets in Minari's format (the Farama standard for offline RL), read and written
locally.

A dataset lives under Minari's datasets folder (`MINARI_DATASETS_PATH`, else
~/.minari/datasets) as `NAMESPACE/NAME-vN/data` (an HDF5 file and metadata.json), and is named by
its id, `NAMESPACE/NAME-vN` or `NAME-vN`. Nothing is downloaded: an id not found locally is an
error that lists the local ones. Reading goes through Minari's own reader, which parses the
spaces and metadata from JSON and the arrays from HDF5, so a dataset can never import or run
code (factorl never asks Minari to rebuild the environment a dataset names).

This module sits on the io floor: it moves episodes between arrays and files and checks spaces,
and knows nothing of agents. Recording a saved agent's episodes is `factorl.train.collect`, and
loading a dataset into replay is the host runner's (`factorl.runners.host`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np

from factorl.core.config import ConfigError, install_hint
from factorl.io.runfolder import nearest_existing

INSTALL_HINT = install_hint("datasets")

#: the episode arrays a dataset holds; observations have one more step than the others
EPISODE_KEYS = ("observations", "actions", "rewards", "terminations", "truncations")


class DatasetError(ConfigError):
    """A dataset is missing, malformed or does not fit; the message says what to do (a
    ConfigError, so the command line shows it as its one-line error)."""


def _minari() -> Any:
    try:
        import minari
    except ImportError:
        raise DatasetError(f"datasets need Minari: {INSTALL_HINT}") from None
    return minari


def datasets_root() -> Path:
    """Minari's local datasets folder (MINARI_DATASETS_PATH, else ~/.minari/datasets)."""
    root = os.environ.get("MINARI_DATASETS_PATH")
    return Path(root) if root else Path.home() / ".minari" / "datasets"


def check_dataset_id(name: str) -> None:
    """A one-line error unless `name` is a Minari dataset id, `[NAMESPACE/]NAME-vN`."""
    _minari()
    from minari.dataset.minari_dataset import parse_dataset_id

    try:
        parse_dataset_id(name)
    # Minari's parser raises TypeError, not ValueError, for an id without its -vN (int(None))
    except (ValueError, TypeError):
        raise DatasetError(
            f"dataset name {name!r} is not a Minari id; use NAME-vN or NAMESPACE/NAME-vN of "
            "letters, digits, '-' and '_', a namespace at least two characters long (e.g. "
            "pendulum/decqn-v0)"
        ) from None


def local_datasets() -> list[str]:
    """The ids of the datasets in the local folder (sorted)."""
    root = datasets_root()
    if not root.is_dir():
        return []
    found = []
    for meta in root.rglob("data/metadata.json"):
        found.append(meta.parent.parent.relative_to(root).as_posix())
    return sorted(found)


def dataset_path(name: str) -> Path:
    """The folder of dataset `name` (it may not exist)."""
    check_dataset_id(name)
    return datasets_root() / name


def dataset_exists(name: str) -> bool:
    """Whether dataset `name` is in the local folder (its data/metadata.json is)."""
    return (dataset_path(name) / "data" / "metadata.json").is_file()


def check_new_dataset(name: str, *, overwrite: bool = False) -> Path:
    """The folder dataset `name` would be written to, or a one-line error saying why it cannot
    be: `name` is not a Minari id; a file stands where a folder of its path should be (the
    datasets folder, its namespace); or something is already at that path (a dataset, any other
    file or folder) and `overwrite` is not set. A symbolic link there is refused even with
    `overwrite`: writing through it would put the dataset somewhere else than the datasets
    folder, and replacing it would strand what it points to, so the user decides."""
    final = dataset_path(name)
    folder = nearest_existing(final.parent)  # where the dataset's path will be made
    if not folder.is_dir():
        raise DatasetError(
            f"cannot write dataset {name}: {folder} is not a folder; move it aside, "
            "choose another name, or set MINARI_DATASETS_PATH to a folder"
        )
    if final.is_symlink():
        raise DatasetError(
            f"cannot write dataset {name}: {final} is a symbolic link, which factorl neither "
            "writes through nor replaces; remove the link or choose another name"
        )
    if final.exists() and not overwrite:
        what = "already exists" if dataset_exists(name) else "exists and is not a Minari dataset"
        raise DatasetError(
            f"dataset {name} {what} at {final}; choose another name, or pass --overwrite to "
            "replace it and everything in it"
        )
    return final


def _remove(path: Path) -> None:
    """Remove a folder with its contents, or a file or a link (never what a link points to)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------- writing
def _as_episode(episode: Mapping[str, Any], index: int, name: str) -> dict[str, np.ndarray]:
    """An episode's arrays checked for consistent lengths (errors name dataset `name`)."""
    missing = [k for k in EPISODE_KEYS if k not in episode]
    if missing:
        raise DatasetError(f"dataset {name}: episode {index} lacks {', '.join(missing)}")
    arrays = {k: np.asarray(episode[k]) for k in EPISODE_KEYS}
    steps = len(arrays["actions"])
    if steps == 0 or len(arrays["observations"]) != steps + 1:
        raise DatasetError(
            f"dataset {name}: episode {index} has {len(arrays['observations'])} observations for "
            f"{steps} actions; an episode has one observation more than actions, and at least "
            "one step"
        )
    for k in ("rewards", "terminations", "truncations"):
        if arrays[k].shape != (steps,):
            raise DatasetError(
                f"dataset {name}: episode {index}: {k} has shape {arrays[k].shape}, not ({steps},)"
            )
    for k in ("observations", "actions", "rewards"):
        # a NaN or inf learned from would surface as a non-finite loss that blames the learner
        numeric = arrays[k].dtype.kind in "fiub"
        if not numeric or not np.isfinite(arrays[k].astype(np.float64, copy=False)).all():
            what = "non-finite values" if numeric else f"{arrays[k].dtype} values, not numbers"
            raise DatasetError(
                f"dataset {name}: episode {index}'s {k} hold {what}; record the dataset again"
            )
    return arrays


def episodes_from_steps(steps: Mapping[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """One stream's consecutive steps, oldest first (obs, action, reward, next_obs, terminated,
    truncated, each [T, ...], as `Dataset.transitions` gives them), as episodes of
    EPISODE_KEYS arrays: the inverse of `transitions`. An episode ends at a terminated or
    truncated step; the steps after the last end (an episode still in progress) are a last
    episode, marked truncated at its last step. Each episode's observations are its steps' obs
    and its last next_obs; a step that does not start from the previous step's next_obs is a
    DatasetError (the steps are not one stream's consecutive steps)."""
    terminated = np.asarray(steps["terminated"], bool)
    truncated = np.asarray(steps["truncated"], bool)
    total = len(terminated)
    if total == 0:
        return []
    stops = (np.flatnonzero(terminated | truncated) + 1).tolist()
    if not stops or stops[-1] != total:
        stops.append(total)
    episodes, start = [], 0
    for stop in stops:
        obs, next_obs = steps["obs"][start:stop], steps["next_obs"][start:stop]
        broken = np.flatnonzero(
            (obs[1:] != next_obs[:-1]).reshape(stop - start - 1, -1).any(axis=1)
        )
        if broken.size:
            raise DatasetError(
                f"step {start + int(broken[0]) + 1} of the stream does not start from the "
                "previous step's next_obs, so its episode cannot be stored as one sequence of "
                "observations"
            )
        truncations = truncated[start:stop].copy()
        if not (terminated[stop - 1] or truncations[-1]):
            truncations[-1] = True  # no end stored yet: cut at the last stored step
        episodes.append(
            {
                "observations": np.concatenate([obs, next_obs[-1:]]),
                "actions": np.asarray(steps["action"][start:stop]),
                "rewards": np.asarray(steps["reward"][start:stop]),
                "terminations": terminated[start:stop].copy(),
                "truncations": truncations,
            }
        )
        start = stop
    return episodes


def write_dataset(
    name: str,
    episodes: Sequence[Mapping[str, Any]],
    observation_space: gymnasium.spaces.Space,
    action_space: gymnasium.spaces.Space,
    *,
    metadata: Mapping[str, Any],
    algorithm: str = "",
    description: str = "",
    overwrite: bool = False,
) -> Path:
    """Write `episodes` (each a dict of EPISODE_KEYS arrays) as local Minari dataset `name`.

    `metadata` (JSON values) is stored under the dataset metadata's "factorl" key. The dataset is
    built in a hidden folder beside its final place and renamed into it once complete, so an
    interrupted write never leaves a dataset that loads. Anything already at the dataset's path
    (a dataset or not) is refused unless `overwrite`, and a symbolic link there always is
    (`check_new_dataset`).
    """
    minari = _minari()
    from minari.data_collector import EpisodeBuffer
    from minari.dataset.minari_storage import MinariStorage

    final = check_new_dataset(name, overwrite=overwrite)
    buffers = []
    for i, episode in enumerate(episodes):
        arrays = _as_episode(episode, i, name)
        buffers.append(
            EpisodeBuffer(
                id=i,
                observations=arrays["observations"],
                actions=arrays["actions"],
                rewards=arrays["rewards"],
                terminations=arrays["terminations"].astype(bool),
                truncations=arrays["truncations"].astype(bool),
                infos={},
            )
        )
    if not buffers:
        raise DatasetError("a dataset needs at least one episode")
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}"
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        _remove(tmp)  # a leftover of an interrupted write by an earlier process of this id
        tmp.mkdir()
        storage = MinariStorage.new(
            tmp / "data",
            observation_space=observation_space,
            action_space=action_space,
            data_format="hdf5",
        )
        storage.update_metadata(
            {
                "dataset_id": name,
                "minari_version": minari.__version__,
                "algorithm_name": algorithm,
                "description": description,
                "factorl": json.dumps(dict(metadata), sort_keys=True),
            }
        )
        storage.update_episodes(buffers)
        # checked again: the path may have changed while the episodes were written
        check_new_dataset(name, overwrite=overwrite)
        if final.exists():  # overwrite: swap the old one out, then drop it
            old = final.parent / f".old-{final.name}-{os.getpid()}"
            _remove(old)
            os.rename(final, old)
            os.rename(tmp, final)
            with contextlib.suppress(OSError):  # the new dataset is in place either way
                _remove(old)
        else:
            os.rename(tmp, final)
    except BaseException as e:
        with contextlib.suppress(OSError):
            _remove(tmp)
        if isinstance(e, OSError):  # a full disk, no permission: one line, not a traceback
            raise DatasetError(
                f"cannot write dataset {name} in {final.parent} ({e.strerror or e}); free "
                "space or fix the folder's permissions, or set MINARI_DATASETS_PATH elsewhere"
            ) from None
        raise
    return final


# ------------------------------------------------------------------------------------- reading
@dataclass
class Dataset:
    """A dataset read into memory: its episodes (each a dict of EPISODE_KEYS arrays), spaces,
    factorl metadata (empty for a dataset written elsewhere) and the SHA-256 of its arrays."""

    name: str
    episodes: list[dict[str, np.ndarray]]
    observation_space: gymnasium.spaces.Space
    action_space: gymnasium.spaces.Box
    metadata: dict[str, Any]
    sha256: str

    @property
    def steps(self) -> int:
        return sum(len(e["actions"]) for e in self.episodes)

    def transitions(self) -> dict[str, np.ndarray]:
        """All episodes one after the other as `ReplayBuffer.extend` takes them, [T, ...]: obs,
        action, reward, next_obs, terminated, truncated. An episode whose last step carries
        neither flag (a dataset cut mid-episode) is marked truncated there, so no n-step window
        runs from one episode into the next."""
        parts: dict[str, list[np.ndarray]] = {
            k: [] for k in ("obs", "action", "reward", "next_obs", "terminated", "truncated")
        }
        for e in self.episodes:
            obs = np.asarray(e["observations"], np.float32)
            truncated = np.asarray(e["truncations"], bool).copy()
            terminated = np.asarray(e["terminations"], bool)
            if not (terminated[-1] or truncated[-1]):
                truncated[-1] = True
            parts["obs"].append(obs[:-1])
            parts["next_obs"].append(obs[1:])
            parts["action"].append(np.asarray(e["actions"], np.float32))
            parts["reward"].append(np.asarray(e["rewards"], np.float32))
            parts["terminated"].append(terminated)
            parts["truncated"].append(truncated)
        return {k: np.concatenate(v) for k, v in parts.items()}

    def check_spaces(
        self,
        observation_space: gymnasium.spaces.Space,
        action_space: gymnasium.spaces.Box,
        env_id: str,
    ) -> None:
        """A one-line error unless the dataset's observations and actions fit the environment's:
        the same observation shape, and the same action shape and bounds."""
        obs_shape = getattr(self.observation_space, "shape", None)
        if not isinstance(self.observation_space, gymnasium.spaces.Box) or (
            obs_shape != observation_space.shape
        ):
            raise DatasetError(
                f"dataset {self.name} has observations {_describe(self.observation_space)} but "
                f"{env_id}'s are {_describe(observation_space)}; use a dataset of this environment"
            )
        mine, theirs = self.action_space, action_space
        if mine.shape != theirs.shape or not (
            np.array_equal(np.asarray(mine.low, np.float32), np.asarray(theirs.low, np.float32))
            and np.array_equal(
                np.asarray(mine.high, np.float32), np.asarray(theirs.high, np.float32)
            )
        ):
            raise DatasetError(
                f"dataset {self.name} has actions {_describe(mine)} but {env_id}'s are "
                f"{_describe(theirs)}; use a dataset of this environment"
            )

    def check_action_repeat(self, action_repeat: int) -> None:
        """A one-line error if `factorl collect` recorded the dataset at another action repeat:
        its steps would each span another number of environment steps than the run's. (A
        dataset written elsewhere does not say, and is taken as it is.)"""
        recorded = self.metadata.get("action_repeat")
        if recorded is not None and recorded != action_repeat:
            raise DatasetError(
                f"dataset {self.name} was recorded with env.action_repeat {recorded} but this "
                f"run has {action_repeat}; set --env.action-repeat {recorded}"
            )


def _describe(space: gymnasium.spaces.Space) -> str:
    """A space in one line: a Box by its shape and bounds."""
    if isinstance(space, gymnasium.spaces.Box):
        low, high = np.asarray(space.low).ravel(), np.asarray(space.high).ravel()
        if low.size and (low == low[0]).all() and (high == high[0]).all():
            bounds = f"[{low[0]:g}, {high[0]:g}]"
        else:
            bounds = f"low {low.tolist()}, high {high.tolist()}"
        return f"Box shape {tuple(space.shape)} in {bounds}"
    return type(space).__name__


def _digest(episodes: Sequence[Mapping[str, np.ndarray]]) -> str:
    """SHA-256 of every episode's arrays (dtype, shape and bytes), in order."""
    h = hashlib.sha256()
    for e in episodes:
        for k in EPISODE_KEYS:
            a = np.ascontiguousarray(e[k])
            h.update(f"{k}:{a.dtype.str}:{a.shape};".encode())
            h.update(a.tobytes())
    return h.hexdigest()


#: what Minari's reader needs in a dataset's metadata.json; without either space it would rebuild
#: the environment the metadata names to get it, which imports code, so both are required here
REQUIRED_METADATA = (
    "observation_space",
    "action_space",
    "data_format",
    "dataset_id",
    "minari_version",
    "total_episodes",
    "total_steps",
)


def _reason(error: BaseException) -> str:
    """An exception as a short reason for a one-line message (a KeyError's text is only the
    quoted key, and some of Minari's errors have none)."""
    if isinstance(error, KeyError) and error.args:
        key = error.args[0]
        # a bare key is what is missing; h5py's KeyErrors carry a sentence instead
        if not (isinstance(key, str) and " " in key):
            return f"missing {key!r}"
        text = " ".join(key.split())
    else:
        text = " ".join(str(error).split())
    return text or type(error).__name__


def _check_metadata(name: str) -> None:
    """A one-line error unless dataset `name`'s data/metadata.json is a JSON object with what
    Minari's reader needs (REQUIRED_METADATA, the spaces as JSON text) and HDF5 arrays."""
    path = dataset_path(name) / "data" / "metadata.json"
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as e:  # unreadable, not UTF-8 (a ValueError), not JSON
        raise DatasetError(
            f"dataset {name} cannot be read ({path}: {_reason(e)}); record it again"
        ) from None
    if not isinstance(meta, dict):
        raise DatasetError(
            f"dataset {name} cannot be read ({path} holds a JSON {type(meta).__name__}, not an "
            "object); record it again"
        )
    missing = [key for key in REQUIRED_METADATA if key not in meta]
    if missing:
        raise DatasetError(
            f"dataset {name} cannot be read ({path} is missing "
            f"{', '.join(repr(k) for k in missing)}); record it again"
        )
    for key in ("observation_space", "action_space"):
        if not isinstance(meta[key], str):
            raise DatasetError(
                f"dataset {name} cannot be read ({path}: {key!r} is not a serialised space); "
                "record it again"
            )
    if meta["data_format"] != "hdf5":
        raise DatasetError(
            f"dataset {name} stores its arrays as {meta['data_format']!r}; factorl reads "
            'Minari\'s HDF5 format only (data_format "hdf5"): record it again with factorl '
            "collect"
        )


def read_dataset(name: str) -> Dataset:
    """Local dataset `name` read into memory, or a one-line error: an unknown name (listing the
    local ones), a dataset that cannot be read (damaged metadata, arrays or episodes, each
    named), or an action space that is not a Box."""
    minari = _minari()
    if not dataset_exists(name):
        local = ", ".join(local_datasets()) or "none"
        raise DatasetError(
            f"no local Minari dataset {name!r} in {datasets_root()} (local datasets: {local}); "
            "record one with factorl collect, or set MINARI_DATASETS_PATH"
        )
    _check_metadata(name)
    try:
        data = minari.load_dataset(name)
        episodes = [
            {
                "observations": np.asarray(e.observations),
                "actions": np.asarray(e.actions),
                "rewards": np.asarray(e.rewards),
                "terminations": np.asarray(e.terminations),
                "truncations": np.asarray(e.truncations),
            }
            for e in data.iterate_episodes()
        ]
        meta = data.storage.metadata
    # Broad on purpose: Minari's reader and h5py parse files that may be damaged in any way, and
    # report it as whatever they hit (a missing key or HDF5 object, a bad value, a failed assert,
    # a wrong type, an optional package); each is a dataset that cannot be read, in one line.
    except (
        OSError,
        ValueError,
        KeyError,
        IndexError,
        TypeError,
        AttributeError,
        AssertionError,
        ImportError,
    ) as e:
        raise DatasetError(
            f"dataset {name} cannot be read ({_reason(e)}); record it again"
        ) from None
    if not isinstance(data.action_space, gymnasium.spaces.Box):
        raise DatasetError(
            f"dataset {name} has a {_describe(data.action_space)} action space; factorl learns "
            "from continuous (Box) actions only"
        )
    if not episodes:
        raise DatasetError(f"dataset {name} holds no episodes")
    obs_shape = getattr(data.observation_space, "shape", None)
    for i, e in enumerate(episodes):
        if not isinstance(e["observations"], np.ndarray) or e["observations"].dtype.hasobject:
            raise DatasetError(f"dataset {name}: episode {i}'s observations are not one array")
        _as_episode(e, i, name)
        # every step's arrays must have the space's shape, or the episodes cannot be stacked
        if obs_shape is None:
            obs_shape = episodes[0]["observations"].shape[1:]
        for key, shape, space in (
            ("observations", obs_shape, "observation space"),
            ("actions", data.action_space.shape, "action space"),
        ):
            if e[key].shape[1:] != tuple(shape):
                raise DatasetError(
                    f"dataset {name}: episode {i}'s {key} have shape {e[key].shape[1:]} per "
                    f"step, not the {space}'s {tuple(shape)}; record the dataset again"
                )
    try:
        extra = json.loads(meta.get("factorl", "{}"))
    except (TypeError, json.JSONDecodeError):
        extra = {}
    return Dataset(
        name,
        episodes,
        data.observation_space,
        data.action_space,
        extra if isinstance(extra, dict) else {},
        _digest(episodes),
    )
