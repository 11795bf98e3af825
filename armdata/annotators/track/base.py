"""What every point tracker takes and returns, and the strict registry of trackers.

Input: frames uint8 [T, H, W, 3] and query points float [N, 3] as (frame index, u, v) in pixels.
Output: tracks float32 [T, N, 2] (u, v) and visibility bool [T, N]. A tracker follows each point both ways from
its query frame. Where a point is not visible its track holds the tracker's best position (CoTracker's
convention), and the caller must not use it as a found point.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from armdata.schemas.records import as_frames
from armdata.schemas.registry import Registry


@dataclass(frozen=True)
class TrackResult:
    """tracks: float32 [T, N, 2] pixel (u, v); visible: bool [T, N]."""

    tracks: np.ndarray
    visible: np.ndarray

    def __post_init__(self) -> None:
        if self.tracks.ndim != 3 or self.tracks.shape[-1] != 2:
            raise ValueError(f"tracks must be [T, N, 2], got {self.tracks.shape}")
        if self.visible.shape != self.tracks.shape[:2] or self.visible.dtype != np.bool_:
            raise ValueError(f"visible must be bool [T, N] = {self.tracks.shape[:2]}, got {self.visible.dtype} {self.visible.shape}")


class Tracker(Protocol):
    """A point tracker: ``setup()`` loads what it needs once; ``track`` follows the query points.

    size_px: the gripper's apparent size in pixels where a locator knows it (sizes a window), else None.
    """

    name: str

    def setup(self) -> None: ...

    def track(self, frames: np.ndarray, queries: np.ndarray, size_px: float | None = None) -> TrackResult: ...

    def provenance(self) -> dict[str, Any]: ...


TRACKERS: Registry[Callable[..., Tracker]] = Registry("tracker")


def check_inputs(frames: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate shapes and ranges; returns (frames, queries as float64 [N, 3])."""
    frames = as_frames(frames, "T")
    q = np.asarray(queries, dtype=np.float64).reshape(-1, 3)
    t = frames.shape[0]
    if q.size and (not np.isfinite(q).all() or q[:, 0].min() < 0 or q[:, 0].max() > t - 1):
        raise ValueError(f"query frame indices must lie in [0, {t - 1}] and points be finite, got {q.tolist()}")
    if q.size and np.any(q[:, 0] != np.round(q[:, 0])):
        raise ValueError("query frame indices must be whole numbers")
    return frames, q
