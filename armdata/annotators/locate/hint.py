"""The ``hint`` locator: a pixel or a region given in the source file for the first frame.

Cheapest seed of all: a person looked at one frame of the source and wrote down where the gripper starts. It
answers for frame 0 only; every other frame is "not found" (the tracker carries the point from there).
"""

from __future__ import annotations

from collections.abc import Sequence

from armdata.annotators.locate.base import LOCATORS, LocateResult, check_frame_indices
from armdata.schemas.errors import RecordError
from armdata.schemas.records import StandardEpisode
from armdata.schemas.source import SourceConfig

NAME = "hint"


class HintLocator:
    """Reads ``locator_hint`` (pixel or region) from the source file.

    A pixel is the point itself (confidence ``pixel_confidence``). A region's centre is the point and its
    smaller side the gripper's size (confidence ``region_confidence``: a box is coarser than a click).
    """

    name = NAME

    def __init__(self, pixel_confidence: float = 1.0, region_confidence: float = 0.8) -> None:
        self.pixel_confidence = pixel_confidence
        self.region_confidence = region_confidence
        self.calls = 0

    def setup(self) -> None:
        """Nothing to load."""

    def locate(
        self, episode: StandardEpisode, source: SourceConfig, frame_indices: Sequence[int]
    ) -> list[LocateResult]:
        idx = check_frame_indices(episode, frame_indices)
        hint = source.locator_hint
        if hint is None:
            raise RecordError(
                source.name, episode.episode_key, None, "locator_hint", "missing_hint",
                "the hint locator needs locator_hint (pixel or region) in the source file",
            )
        h, w = episode.image_size
        if hint.pixel is not None:
            u, v = float(hint.pixel[0]), float(hint.pixel[1])
            first = LocateResult((u, v), self.pixel_confidence, NAME)
        else:
            u0, v0, u1, v1 = (float(x) for x in hint.region)
            if not (u1 > u0 and v1 > v0):
                raise RecordError(
                    source.name, episode.episode_key, None, "locator_hint.region", "bad_hint",
                    f"region must be (u0, v0, u1, v1) with u1 > u0 and v1 > v0, got {hint.region}",
                )
            u, v = (u0 + u1) / 2, (v0 + v1) / 2
            first = LocateResult((u, v), self.region_confidence, NAME, size_px=min(u1 - u0, v1 - v0))
        if not (0 <= u <= w - 1 and 0 <= v <= h - 1):
            raise RecordError(
                source.name, episode.episode_key, 0, "locator_hint", "bad_hint",
                f"hint point ({u:.1f}, {v:.1f}) lies outside the {w}x{h} primary image",
            )
        return [first if i == 0 else LocateResult.not_found(NAME, "hint_first_frame_only") for i in idx]


LOCATORS.register(NAME, HintLocator)
