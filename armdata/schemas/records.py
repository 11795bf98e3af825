"""Records that cross stages. Frozen dataclasses; shapes and units are in the docstrings and names.

Episode          one raw RLDS episode of one source, fields as read (no source-specific meaning applied yet)
StandardEpisode  the same episode in canonical form, per the source file
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

_KEY_RE = re.compile(r"[A-Za-z0-9_\-]+")


def check_key(key: str, what: str = "key") -> str:
    """Keys are stable and have no dots: WebDataset groups a sample's files by the name before the first dot."""
    if not _KEY_RE.fullmatch(key):
        raise ValueError(f"{what} {key!r} may hold letters, digits, '_' and '-' only")
    return key


def as_frames(frames, axis: str = "N") -> np.ndarray:
    """``frames`` as an array, checked to be RGB uint8 ``[axis, H, W, 3]`` (``axis`` names the first dimension in
    the message: N frames of a batch, T steps of an episode). A wrong shape is a caller's bug: ValueError."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [{axis}, H, W, 3], got {frames.dtype} {list(frames.shape)}")
    return frames


@dataclass(frozen=True)
class Episode:
    """One RLDS episode as read, before any source-specific mapping.

    frames:      camera field path -> uint8 [T, H, W, 3] (decoded; the cameras the source file names)
    jpeg:        camera field path -> T encoded images as stored (bytes), for pass-through without re-encoding
    actions_raw: action field path -> [T, ...] arrays (``action`` or ``action/world_vector``, ...)
    state:       state field path -> float [T, ...]
    instruction: the raw instruction text (first non-empty value of the source's instruction field)
    steps:       every other numeric step field the source file names, path -> [T, ...]
    metadata:    episode_metadata, flattened with '/' paths (numpy values)
    source_episode_id: the episode's id in the source data, so annotations map back to it: RLDS
                 ``episode_metadata/file_path`` (``#episode_id`` appended where the metadata has one); a reader without one leaves it empty and
                 ``source_id`` falls back to ``episode_key``
    """

    source: str
    episode_key: str
    frames: dict[str, np.ndarray]
    actions_raw: dict[str, np.ndarray]
    state: dict[str, np.ndarray] = field(default_factory=dict)
    instruction: str = ""
    jpeg: dict[str, list[bytes]] = field(default_factory=dict)
    steps: dict[str, np.ndarray] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    source_episode_id: str = ""

    def __post_init__(self) -> None:
        check_key(self.episode_key, "episode key")

    @property
    def num_steps(self) -> int:
        for v in self.frames.values():
            return int(v.shape[0])
        for v in self.actions_raw.values():
            return int(v.shape[0])
        return 0


@dataclass(frozen=True)
class StandardEpisode:
    """An episode in canonical form.

    actions:        float32 [T, 7] delta end effector ``[x, y, z, roll, pitch, yaw, gripper]``; gripper 1 = open,
                    0 = closed (absolute). The action at step t moves the robot from step t to t+1.
    primary:        uint8 [T, H, W, 3], the camera annotations are made on
    primary_jpeg:   T encoded images of the primary camera as stored (pass-through), or None
    extra_views:    name -> uint8 [T, H', W', 3] (extra third-person views, then the wrist camera as "wrist")
    extra_jpeg:     name -> T encoded images, where the source stored them encoded
    instruction:    cleaned text (whitespace collapsed, stripped)
    proprio:        float32 [T, S] concatenated state keys, or None
    eef_position:   float32 [T, 3] end effector position in the robot base frame, or None
    depth_camera:   float32 [T, H, W] depth in metres from a depth camera, or None
    metadata:       episode metadata (flattened), passed through for audits and ground truth
    source_episode_id: the episode's id in the source data (see ``Episode``); ``source_id`` never empty
    flags:          episode-level flags every sample of it carries (``empty_instruction``, ``constant_camera``
                    where the source's checks say keep-with-flag)
    """

    source: str
    episode_key: str
    actions: np.ndarray
    primary: np.ndarray
    instruction: str
    primary_jpeg: list[bytes] | None = None
    extra_views: dict[str, np.ndarray] = field(default_factory=dict)
    extra_jpeg: dict[str, list[bytes]] = field(default_factory=dict)
    proprio: np.ndarray | None = None
    eef_position: np.ndarray | None = None
    depth_camera: np.ndarray | None = None
    control_hz: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    source_episode_id: str = ""
    flags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_key(self.episode_key, "episode key")
        t = self.actions.shape[0]
        if self.actions.shape != (t, 7) or self.actions.dtype != np.float32:
            raise ValueError(f"actions must be float32 [T, 7], got {self.actions.dtype} {self.actions.shape}")
        if self.primary.ndim != 4 or self.primary.shape[0] != t or self.primary.shape[-1] != 3:
            raise ValueError(f"primary frames must be uint8 [T={t}, H, W, 3], got {self.primary.shape}")

    @property
    def num_steps(self) -> int:
        return int(self.actions.shape[0])

    @property
    def source_id(self) -> str:
        """The source's own episode id, else armdata's episode key."""
        return self.source_episode_id or self.episode_key

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of the primary camera."""
        return int(self.primary.shape[1]), int(self.primary.shape[2])
