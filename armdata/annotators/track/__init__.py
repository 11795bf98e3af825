"""Point trackers: ``TRACKERS.create(name, **kwargs)``; names: hybrid (the default without CoTracker3: LK where LK
holds, else the template tracker; no weights), lk, template, cotracker (CoTracker3, CC-BY-NC, user-installed), sam2
(transformers' SAM2 video, mask centroid). Input frames uint8 [T, H, W, 3] and queries (t, u, v); output
``TrackResult`` (tracks float32 [T, N, 2], visible bool [T, N]).

``resolve_tracker("auto", checkpoint)``: CoTracker3 where it is installed and a checkpoint is given, else hybrid."""

from armdata.annotators.track import cotracker, hybrid, lk, sam2, template  # noqa: F401  (registers them)
from armdata.annotators.track.base import TRACKERS, Tracker, TrackResult

AUTO = "auto"


def resolve_tracker(name: str, checkpoint: str | None) -> str:
    """The tracker ``name`` stands for: ``auto`` is cotracker where the package is importable and a checkpoint is
    given (the best tracker), else hybrid (no weights needed); any other name is itself."""
    import importlib.util

    if name != AUTO:
        return name
    return "cotracker" if checkpoint and importlib.util.find_spec("cotracker") is not None else "hybrid"


__all__ = ["AUTO", "TRACKERS", "Tracker", "TrackResult", "resolve_tracker"]
