"""What every locator returns, and the strict registry of locators.

A locator answers one question per frame: where is the end effector in the primary image? The answer is a pixel
point or "not found" (never a guess), a confidence in [0, 1], the method's name, and, where the method knows it,
the gripper's apparent size in pixels (the tracker sizes its window by it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from armdata.schemas.records import StandardEpisode
from armdata.schemas.source import SourceConfig
from armdata.schemas.registry import Registry


@dataclass(frozen=True)
class LocateResult:
    """One frame's answer.

    uv:         (u, v) pixel of the end effector in the primary image (u right, v down), or None if not found
    confidence: in [0, 1]; 0 when not found
    method:     the locator's registry name ("pointer", "projection", "hint")
    reason:     why not found (or a note on a found point, such as "merged 2 points"), "" otherwise
    size_px:    the gripper's apparent size in pixels where the method knows it, else None
    flags:      named notes the step must carry (e.g. the fit locator's ``fit_point_outlier``); reports count them
    """

    uv: tuple[float, float] | None
    confidence: float
    method: str
    reason: str = ""
    size_px: float | None = None
    flags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.uv is not None and not all(math.isfinite(c) for c in self.uv):
            raise ValueError(f"a found point must be finite, got {self.uv}")
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence must be in [0, 1], got {self.confidence}")

    @property
    def found(self) -> bool:
        return self.uv is not None

    @classmethod
    def not_found(cls, method: str, reason: str, flags: tuple[str, ...] = ()) -> "LocateResult":
        return cls(None, 0.0, method, reason, flags=tuple(flags))


class Locator(Protocol):
    """A locator: ``setup()`` loads what it needs once; ``locate`` answers for the frames asked, in order.

    ``calls`` counts the frames a costly model was asked about (the pointer's VLM calls); 0 for the others.
    """

    name: str
    calls: int

    def setup(self) -> None: ...

    def locate(
        self, episode: StandardEpisode, source: SourceConfig, frame_indices: Sequence[int]
    ) -> list[LocateResult]: ...


LOCATORS: Registry[Callable[..., Locator]] = Registry("locator")


def check_frame_indices(episode: StandardEpisode, frame_indices: Sequence[int]) -> np.ndarray:
    """The indices as an int array, each within the episode (a wrong index is a caller's bug, not bad data)."""
    idx = np.asarray(list(frame_indices), dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= episode.num_steps):
        raise IndexError(f"frame indices must lie in [0, {episode.num_steps}), got {idx.min()}..{idx.max()}")
    return idx


class FrameLocator:
    """Base of the locators that look at frames alone (a pointer, a detector): ``locate`` is ``locate_frames`` on
    the episode's primary frames at the asked indices, so a job can also batch frames of several episodes into
    one ``locate_frames`` call."""

    def locate_frames(self, frames: np.ndarray) -> list[LocateResult]:
        raise NotImplementedError

    def locate(
        self, episode: StandardEpisode, source: SourceConfig, frame_indices: Sequence[int]
    ) -> list[LocateResult]:
        idx = check_frame_indices(episode, frame_indices)
        if idx.size == 0:
            return []
        return self.locate_frames(episode.primary[idx])
