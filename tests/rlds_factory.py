"""Factories that write small RLDS datasets (real TFDS builder dirs) for tests, in the layouts robots use.

Each factory writes a builder directory with ``tfds.dataset_builders.store_as_tfds_dataset`` -- the same files
(``dataset_info.json``, ``features.json``, ``<name>-<split>.tfrecord-*``) that ``gs://gresearch/robotics/<name>/
<version>`` holds -- and returns a :class:`FactoryDataset` with

- ``builder_dir``: the directory ``tfds.builder_from_directory`` and armdata read,
- ``episodes``: what was written, per episode (raw actions, instruction, frames),
- ``expected``: the canonical 7-D actions ``[x y z roll pitch yaw gripper]`` (gripper 1 = open) each episode must
  standardize to. They are built *first*, and the raw layout is derived from them (signs, scales, relative gripper
  commands), so a test compares the standardizer against a value fixed by construction, not against a second copy
  of the standardizer's arithmetic.
- ``source``: a source-file mapping (the YAML schema of ``armdata.schemas.source``) that describes the layout;
  :func:`write_source` writes it next to the data.

Layouts (the three the issue names, plus the same with defects for bad-input tests):

- :func:`bridge_like`: flat ``action`` float32[7], absolute gripper (1 = open), ``language_instruction`` step Text,
  cameras ``observation/image_0..`` (one may be all black), ``observation/state`` float32[7].
- :func:`rt1_like`: nested action dict (``world_vector``, ``rotation_delta``, relative
  ``gripper_closedness_action`` +1 close / -1 open / 0 keep, ``terminate_episode``), instruction in
  ``observation/natural_language_instruction``, ``observation/image``, ``observation/base_pose_tool_reached``.
- :func:`metadata_instruction`: flat action, instruction only in ``episode_metadata/language_instruction``.

Everything is seeded; images are PNG by default so pixel values round-trip exactly.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

IMAGE_HW = (16, 20)


@dataclass
class FactoryEpisode:
    """One written episode: its raw fields (as stored) and what it must become."""

    episode_id: int
    instruction: str
    frames: dict[str, np.ndarray]  # camera path -> uint8 [T, H, W, 3]
    actions_raw: dict[str, np.ndarray]  # action path -> [T, ...]
    expected_actions: np.ndarray  # float32 [T, 7] canonical
    state: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_steps(self) -> int:
        return int(self.expected_actions.shape[0])


@dataclass
class FactoryDataset:
    name: str
    builder_dir: Path
    split: str
    episodes: list[FactoryEpisode]
    source: dict[str, Any]

    def by_instruction(self) -> dict[str, FactoryEpisode]:
        return {e.instruction: e for e in self.episodes}


# ----------------------------------------------------------------------------------------------------------
# building blocks


def _tfds():
    import tensorflow_datasets as tfds  # heavy import, only when a factory runs

    return tfds


def _frames(rng: np.random.Generator, t: int, kind: str = "random") -> np.ndarray:
    h, w = IMAGE_HW
    if kind == "black":
        return np.zeros((t, h, w, 3), np.uint8)
    if kind == "constant":
        return np.full((t, h, w, 3), 128, np.uint8)
    return rng.integers(0, 256, size=(t, h, w, 3), dtype=np.uint8)


def _canonical(rng: np.random.Generator, t: int, gripper: np.ndarray | None = None) -> np.ndarray:
    """Canonical actions: small arm deltas and an open->closed(->open) gripper track of 0/1 values."""
    arm = rng.normal(0.0, 0.02, size=(t, 6)).astype(np.float32)
    if gripper is None:
        close_at = int(rng.integers(1, max(2, t)))
        gripper = np.ones(t, np.float32)
        gripper[close_at:] = 0.0
    return np.concatenate([arm, gripper.astype(np.float32)[:, None]], axis=1)


def _instruction(i: int) -> str:
    words = ["pick up the red block", "put the cup in the sink", "open the drawer", "wipe the table", "stack cups"]
    return f"{words[i % len(words)]} {i}"


def write_rlds(
    root: str | Path,
    name: str,
    features: Any,
    examples: list[dict],
    split: str = "train",
    version: str = "1.0.0",
) -> Path:
    """Write `examples` (RLDS episodes as nested dicts) as a TFDS builder dir; returns ``root/name/version``.

    Record order is the input order (shuffling disabled), so episode i is record i of the single shard.
    """
    tfds = _tfds()
    root = Path(root)
    tfds.dataset_builders.store_as_tfds_dataset(
        name=name,
        version=version,
        features=features,
        data_dir=str(root),
        split_datasets={split: [(f"ep{i:05d}", ex) for i, ex in enumerate(examples)]},
        disable_shuffling=True,
    )
    return root / name / version


def write_source(folder: str | Path, source: dict[str, Any], filename: str | None = None) -> Path:
    """Write a source mapping as YAML in `folder`; ``data.dir`` is kept as given (absolute in factories)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (filename or f"{source['name']}.yaml")
    path.write_text(yaml.safe_dump(source, sort_keys=False), encoding="utf-8")
    return path


def _image_feature(encoding: str):
    tfds = _tfds()
    return tfds.features.Image(shape=(*IMAGE_HW, 3), dtype=np.uint8, encoding_format=encoding)


# ----------------------------------------------------------------------------------------------------------
# layouts


def bridge_like(
    root: str | Path,
    *,
    name: str = "bridge_like",
    num_episodes: int = 3,
    num_steps: int | list[int] = 6,
    seed: int = 0,
    black_camera: bool = True,
    constant_camera: bool = False,
    image_encoding: str = "png",
    nan_action_at: tuple[int, int] | None = None,
    empty_episode: int | None = None,
    instruction_override: dict[int, str] | None = None,
    split: str = "train",
) -> FactoryDataset:
    """Bridge-like: flat float32[7] action (xyz, rpy deltas, absolute gripper 1 = open), step-level Text instruction.

    Cameras: ``observation/image_0`` (primary), ``observation/image_1``, and ``observation/image_3`` all black
    when `black_camera` (the padded camera of BridgeData V2); ``observation/image_2`` constant grey when
    `constant_camera`. `nan_action_at=(episode, step)` writes a NaN into that action; `empty_episode` writes an
    episode with 0 steps; `instruction_override` replaces an episode's instruction (e.g. with "" to test that check).
    """
    tfds = _tfds()
    rng = np.random.default_rng(seed)
    lengths = [num_steps] * num_episodes if isinstance(num_steps, int) else list(num_steps)
    cams = ["observation/image_0", "observation/image_1"]
    if constant_camera:
        cams.append("observation/image_2")
    if black_camera:
        cams.append("observation/image_3")
    obs_features = {c.split("/")[1]: _image_feature(image_encoding) for c in cams}
    obs_features["state"] = tfds.features.Tensor(shape=(7,), dtype=np.float32)
    features = tfds.features.FeaturesDict(
        {
            "steps": tfds.features.Dataset(
                {
                    "observation": tfds.features.FeaturesDict(obs_features),
                    "action": tfds.features.Tensor(shape=(7,), dtype=np.float32),
                    "language_instruction": tfds.features.Text(),
                    "reward": tfds.features.Scalar(dtype=np.float32),
                    "is_first": tfds.features.Scalar(dtype=np.bool_),
                    "is_last": tfds.features.Scalar(dtype=np.bool_),
                    "is_terminal": tfds.features.Scalar(dtype=np.bool_),
                }
            ),
            "episode_metadata": tfds.features.FeaturesDict(
                {"file_path": tfds.features.Text(), "episode_id": tfds.features.Scalar(dtype=np.int32)}
            ),
        }
    )
    episodes, examples = [], []
    for i, t in enumerate(lengths):
        if i == empty_episode:
            t = 0
        instr = (instruction_override or {}).get(i, _instruction(i))
        expected = _canonical(rng, t)
        raw = expected.copy()  # Bridge stores exactly the canonical convention
        if nan_action_at is not None and nan_action_at[0] == i:
            raw[nan_action_at[1], 2] = np.nan
        frames = {"observation/image_0": _frames(rng, t), "observation/image_1": _frames(rng, t)}
        if constant_camera:
            frames["observation/image_2"] = _frames(rng, t, "constant")
        if black_camera:
            frames["observation/image_3"] = _frames(rng, t, "black")
        state = rng.normal(0, 0.1, size=(t, 7)).astype(np.float32)
        steps = []
        for s in range(t):
            obs = {c.split("/")[1]: frames[c][s] for c in cams}
            obs["state"] = state[s]
            steps.append(
                {
                    "observation": obs,
                    "action": raw[s],
                    "language_instruction": instr,
                    "reward": float(s == t - 1),
                    "is_first": s == 0,
                    "is_last": s == t - 1,
                    "is_terminal": s == t - 1,
                }
            )
        examples.append({"steps": steps, "episode_metadata": {"file_path": f"/data/ep{i}.npy", "episode_id": i}})
        episodes.append(
            FactoryEpisode(i, instr, frames, {"action": raw}, expected, {"observation/state": state})
        )
    builder_dir = write_rlds(root, name, features, examples, split=split)
    source = {
        "name": name,
        "description": "factory: Bridge-like flat action, absolute gripper",
        "data": {"dir": str(builder_dir), "split": split},
        "cameras": {"primary": "observation/image_0", "extra": ["observation/image_1"]},
        "instruction": {"path": "language_instruction"},
        "action": {
            "arm": [{"path": "action", "index": [0, 1, 2, 3, 4, 5]}],
            "gripper": {"path": "action", "index": 6, "mode": "absolute", "open_value": 1.0, "closed_value": 0.0},
            "raw_width": {"action": 7},
        },
        "state": {"keys": ["observation/state"]},
        "control_hz": 5.0,
    }
    return FactoryDataset(name, builder_dir, split, episodes, source)


def relative_gripper_commands(gripper_open: np.ndarray, close_sign: float = 1.0) -> np.ndarray:
    """RT-1 style commands that reproduce an absolute open(1)/closed(0) track under the Octo/OpenVLA rule.

    A command is issued at the first step and at every change (close -> +close_sign, open -> -close_sign), 0
    elsewhere; the first command is always issued, so the first state is well defined (its opposite is the state
    before the episode).
    """
    cmd = np.zeros(len(gripper_open), np.float32)
    prev = None
    for s, g in enumerate(gripper_open):
        if prev is None or g != prev:
            cmd[s] = -close_sign if g >= 0.5 else close_sign
        prev = g
    return cmd


def rt1_like(
    root: str | Path,
    *,
    name: str = "rt1_like",
    num_episodes: int = 3,
    num_steps: int | list[int] = 7,
    seed: int = 1,
    sign_flip_y: bool = True,
    rotation_scale: float = 2.0,
    split: str = "train",
) -> FactoryDataset:
    """RT-1-like: nested action dict, relative gripper, instruction inside ``observation``.

    Raw ``world_vector`` is canonical xyz with y negated when `sign_flip_y` (so the source file needs a sign);
    raw ``rotation_delta`` is canonical rpy divided by `rotation_scale` (so the file needs ``scale``); raw
    ``gripper_closedness_action`` float32[1] holds relative commands (+1 close, -1 open, 0 keep) that reproduce
    an open -> closed -> open track. The instruction is a ``Tensor(dtype=string)`` like RT-1's, not ``Text``.
    """
    tfds = _tfds()
    rng = np.random.default_rng(seed)
    lengths = [num_steps] * num_episodes if isinstance(num_steps, int) else list(num_steps)
    features = tfds.features.FeaturesDict(
        {
            "steps": tfds.features.Dataset(
                {
                    "observation": tfds.features.FeaturesDict(
                        {
                            "image": _image_feature("png"),
                            "natural_language_instruction": tfds.features.Tensor(shape=(), dtype=np.str_),
                            "base_pose_tool_reached": tfds.features.Tensor(shape=(7,), dtype=np.float32),
                        }
                    ),
                    "action": tfds.features.FeaturesDict(
                        {
                            "world_vector": tfds.features.Tensor(shape=(3,), dtype=np.float32),
                            "rotation_delta": tfds.features.Tensor(shape=(3,), dtype=np.float32),
                            "gripper_closedness_action": tfds.features.Tensor(shape=(1,), dtype=np.float32),
                            "terminate_episode": tfds.features.Tensor(shape=(3,), dtype=np.int32),
                        }
                    ),
                    "reward": tfds.features.Scalar(dtype=np.float32),
                    "is_first": tfds.features.Scalar(dtype=np.bool_),
                    "is_last": tfds.features.Scalar(dtype=np.bool_),
                    "is_terminal": tfds.features.Scalar(dtype=np.bool_),
                }
            ),
        }
    )
    sign = np.array([1.0, -1.0 if sign_flip_y else 1.0, 1.0], np.float32)
    episodes, examples = [], []
    for i, t in enumerate(lengths):
        g = np.ones(t, np.float32)
        a, b = sorted(rng.choice(np.arange(1, t), size=2, replace=False)) if t > 2 else (1, t)
        g[a:b] = 0.0  # open, closed from a, open again from b
        expected = _canonical(rng, t, g)
        world = (expected[:, :3] * sign).astype(np.float32)
        rot = (expected[:, 3:6] / rotation_scale).astype(np.float32)
        cmd = relative_gripper_commands(g)[:, None]
        # Re-derive the canonical arm values from the stored float32 raw values (sign and scale are exact in
        # binary except the division, which we undo the way a reader will: raw * scale).
        expected[:, :3] = world * sign
        expected[:, 3:6] = rot * np.float32(rotation_scale)
        instr = _instruction(i + 10)
        frames = {"observation/image": _frames(rng, t)}
        pose = rng.normal(0, 0.1, size=(t, 7)).astype(np.float32)
        steps = []
        for s in range(t):
            steps.append(
                {
                    "observation": {
                        "image": frames["observation/image"][s],
                        "natural_language_instruction": instr,
                        "base_pose_tool_reached": pose[s],
                    },
                    "action": {
                        "world_vector": world[s],
                        "rotation_delta": rot[s],
                        "gripper_closedness_action": cmd[s],
                        "terminate_episode": np.array([0, 1, 0] if s < t - 1 else [1, 0, 0], np.int32),
                    },
                    "reward": float(s == t - 1),
                    "is_first": s == 0,
                    "is_last": s == t - 1,
                    "is_terminal": s == t - 1,
                }
            )
        examples.append({"steps": steps})
        raw = {"action/world_vector": world, "action/rotation_delta": rot, "action/gripper_closedness_action": cmd}
        episodes.append(
            FactoryEpisode(i, instr, frames, raw, expected, {"observation/base_pose_tool_reached": pose})
        )
    builder_dir = write_rlds(root, name, features, examples, split=split, version="0.1.0")
    source = {
        "name": name,
        "description": "factory: RT-1-like nested action dict, relative gripper",
        "data": {"dir": str(builder_dir), "split": split},
        "cameras": {"primary": "observation/image"},
        "instruction": {"path": "observation/natural_language_instruction"},
        "action": {
            "arm": [
                {"path": "action/world_vector", "sign": [1.0, float(sign[1]), 1.0]},
                {"path": "action/rotation_delta", "scale": rotation_scale},
            ],
            "gripper": {
                "path": "action/gripper_closedness_action",
                "index": 0,
                "mode": "relative",
                "close_command_sign": 1.0,
            },
            "raw_width": {
                "action/world_vector": 3,
                "action/rotation_delta": 3,
                "action/gripper_closedness_action": 1,
            },
        },
        "state": {"keys": ["observation/base_pose_tool_reached"]},
        "control_hz": 3.0,
    }
    return FactoryDataset(name, builder_dir, split, episodes, source)


def metadata_instruction(
    root: str | Path,
    *,
    name: str = "meta_instr",
    num_episodes: int = 3,
    num_steps: int | list[int] = 5,
    seed: int = 2,
    gripper_open_value: float = 0.0,
    gripper_closed_value: float = 1.0,
    split: str = "train",
) -> FactoryDataset:
    """Instruction only in ``episode_metadata/language_instruction``; flat action whose gripper is inverted.

    The raw gripper is ``open_value`` when open and ``closed_value`` when closed (by default 0 = open, 1 = closed,
    the opposite of canonical), so the source file must say which value means open.
    """
    tfds = _tfds()
    rng = np.random.default_rng(seed)
    lengths = [num_steps] * num_episodes if isinstance(num_steps, int) else list(num_steps)
    features = tfds.features.FeaturesDict(
        {
            "steps": tfds.features.Dataset(
                {
                    "observation": tfds.features.FeaturesDict({"rgb": _image_feature("png")}),
                    "action": tfds.features.Tensor(shape=(7,), dtype=np.float32),
                    "is_first": tfds.features.Scalar(dtype=np.bool_),
                    "is_last": tfds.features.Scalar(dtype=np.bool_),
                }
            ),
            "episode_metadata": tfds.features.FeaturesDict({"language_instruction": tfds.features.Text()}),
        }
    )
    episodes, examples = [], []
    for i, t in enumerate(lengths):
        expected = _canonical(rng, t)
        raw = expected.copy()
        g = expected[:, 6]
        raw[:, 6] = np.where(g >= 0.5, gripper_open_value, gripper_closed_value).astype(np.float32)
        instr = _instruction(i + 20)
        frames = {"observation/rgb": _frames(rng, t)}
        steps = [
            {"observation": {"rgb": frames["observation/rgb"][s]}, "action": raw[s], "is_first": s == 0,
             "is_last": s == t - 1}
            for s in range(t)
        ]
        examples.append({"steps": steps, "episode_metadata": {"language_instruction": instr}})
        episodes.append(FactoryEpisode(i, instr, frames, {"action": raw}, expected))
    builder_dir = write_rlds(root, name, features, examples, split=split)
    source = {
        "name": name,
        "description": "factory: instruction only in episode metadata, inverted absolute gripper",
        "data": {"dir": str(builder_dir), "split": split},
        "cameras": {"primary": "observation/rgb"},
        "instruction": {"path": "episode_metadata/language_instruction"},
        "action": {
            "arm": [{"path": "action", "index": [0, 1, 2, 3, 4, 5]}],
            "gripper": {
                "path": "action",
                "index": 6,
                "mode": "absolute",
                "open_value": gripper_open_value,
                "closed_value": gripper_closed_value,
            },
            "raw_width": {"action": 7},
        },
    }
    return FactoryDataset(name, builder_dir, split, episodes, source)


def with_changes(source: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of `source` with dotted settings replaced (``{"cameras.primary": "observation/imgae_0"}``).

    A value of ``...`` (Ellipsis) deletes the setting. Used by bad-input tests to make one typo at a time.
    """
    out = copy.deepcopy(source)
    for dotted, value in changes.items():
        node = out
        parts = dotted.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        if value is ...:
            node.pop(parts[-1], None)
        else:
            node[parts[-1]] = value
    return out


def bc_z_like(
    root: str | Path,
    *,
    name: str = "bc_z_like",
    num_episodes: int = 2,
    num_steps: int | list[int] = 5,
    seed: int = 3,
    split: str = "train",
) -> FactoryDataset:
    """BC-Z-like: action keys that contain '/' (``future/xyz_residual`` float32[30] = 10 future xyz deltas,
    ``future/axis_angle_residual`` [30], ``future/target_close`` int64[10], 1 = closed); the first future action
    is the canonical one. Instruction in ``observation/natural_language_instruction``.
    """
    tfds = _tfds()
    rng = np.random.default_rng(seed)
    lengths = [num_steps] * num_episodes if isinstance(num_steps, int) else list(num_steps)
    features = tfds.features.FeaturesDict(
        {
            "steps": tfds.features.Dataset(
                {
                    "observation": tfds.features.FeaturesDict(
                        {
                            "image": _image_feature("png"),
                            "natural_language_instruction": tfds.features.Tensor(shape=(), dtype=np.str_),
                            "present/xyz": tfds.features.Tensor(shape=(3,), dtype=np.float32),
                        }
                    ),
                    "action": tfds.features.FeaturesDict(
                        {
                            "future/xyz_residual": tfds.features.Tensor(shape=(30,), dtype=np.float32),
                            "future/axis_angle_residual": tfds.features.Tensor(shape=(30,), dtype=np.float32),
                            "future/target_close": tfds.features.Tensor(shape=(10,), dtype=np.int64),
                        }
                    ),
                    "is_first": tfds.features.Scalar(dtype=np.bool_),
                    "is_last": tfds.features.Scalar(dtype=np.bool_),
                }
            ),
        }
    )
    episodes, examples = [], []
    for i, t in enumerate(lengths):
        expected = _canonical(rng, t)
        xyz = rng.normal(0, 0.02, size=(t, 30)).astype(np.float32)
        rot = rng.normal(0, 0.02, size=(t, 30)).astype(np.float32)
        xyz[:, :3] = expected[:, :3]
        rot[:, :3] = expected[:, 3:6]
        close = np.repeat((expected[:, 6] < 0.5).astype(np.int64)[:, None], 10, axis=1)
        instr = _instruction(i + 30)
        frames = {"observation/image": _frames(rng, t)}
        pos = rng.normal(0, 0.1, size=(t, 3)).astype(np.float32)
        steps = [
            {
                "observation": {"image": frames["observation/image"][s], "natural_language_instruction": instr,
                                "present/xyz": pos[s]},
                "action": {"future/xyz_residual": xyz[s], "future/axis_angle_residual": rot[s],
                           "future/target_close": close[s]},
                "is_first": s == 0,
                "is_last": s == t - 1,
            }
            for s in range(t)
        ]
        examples.append({"steps": steps})
        raw = {"action/future/xyz_residual": xyz, "action/future/axis_angle_residual": rot,
               "action/future/target_close": close}
        episodes.append(FactoryEpisode(i, instr, frames, raw, expected, {"observation/present/xyz": pos}))
    builder_dir = write_rlds(root, name, features, examples, split=split, version="0.1.0")
    source = {
        "name": name,
        "description": "factory: BC-Z-like action keys with '/', future action chunks, inverted gripper",
        "data": {"dir": str(builder_dir), "split": split},
        "cameras": {"primary": "observation/image"},
        "instruction": {"path": "observation/natural_language_instruction"},
        "action": {
            "arm": [
                {"path": "action/future/xyz_residual", "index": [0, 1, 2]},
                {"path": "action/future/axis_angle_residual", "index": [0, 1, 2]},
            ],
            "gripper": {"path": "action/future/target_close", "index": 0, "mode": "absolute",
                        "open_value": 0.0, "closed_value": 1.0},
            "raw_width": {"action/future/xyz_residual": 30, "action/future/axis_angle_residual": 30,
                          "action/future/target_close": 10},
        },
        "state": {"eef_position": {"path": "observation/present/xyz"}},
    }
    return FactoryDataset(name, builder_dir, split, episodes, source)
