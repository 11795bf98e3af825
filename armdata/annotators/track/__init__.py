"""Point trackers: ``TRACKERS.create(name, **kwargs)``; names: lk (default, no weights), cotracker (CoTracker3,
CC-BY-NC, user-installed), sam2 (transformers' SAM2 video, mask centroid). Input frames uint8 [T, H, W, 3] and
queries (t, u, v); output ``TrackResult`` (tracks float32 [T, N, 2], visible bool [T, N])."""

from armdata.annotators.track import cotracker, lk, sam2, template  # noqa: F401  (registers them)
from armdata.annotators.track.base import TRACKERS, Tracker, TrackResult

__all__ = ["TRACKERS", "Tracker", "TrackResult"]
