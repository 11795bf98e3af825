"""Episodes ranked by trace quality, worst first, so a person looks at the worst traces before the rest.

An episode's badness is a weighted sum of the shares of its steps that carry each kind of trace trouble, plus how
little its found points are trusted:

- ``no_trace``: steps without a trace (no valid future point);
- ``no_point``: frames where the gripper was not found;
- ``drift``: tracker trouble (``tracker_lost``, ``tracker_drift``: tracks that disagree with a corroborated located
  point or with each other);
- ``disagree``: located points the evidence overruled (``pointer_tracker_disagree``);
- ``fit``: flags of a fitted camera (any flag whose name starts with ``fit`` or names a ``residual``: a step whose
  fit residual is poor, a pointer answer that disagrees with the fit);
- ``low_confidence``: 1 - the mean confidence of the points that were found.

The weights (``WEIGHTS``) say how much each matters for training: a step without a trace loses a sample's
reasoning, a drifting or overruled point can teach a wrong one.
"""

from __future__ import annotations

import heapq
from dataclasses import asdict, dataclass, field

from armdata.pipeline.stages.trace import FLAG_DRIFT, FLAG_LOST
from armdata.schemas.sample import FLAG_DISAGREE, FLAG_NO_POINT, FLAG_NO_TRACE

WEIGHTS: dict[str, float] = {
    "no_trace": 1.0,  # the step's sample has no trace at all
    "no_point": 0.5,  # a missing frame only thins the traces that would use it
    "drift": 1.0,  # a tracked point that may be wrong
    "disagree": 1.0,  # a located point the tracks overruled: the locator erred here, maybe nearby too
    "fit": 1.0,  # a poor fit residual or a pointer answer against the fit
    "low_confidence": 0.5,  # points the pipeline itself does not trust much
}
DEFAULT_WORST = 25  # episodes listed in the report


def step_troubles(flags: list[str]) -> set[str]:
    """The trouble kinds (keys of WEIGHTS, confidence aside) one step's flags show."""
    out = set()
    for f in flags:
        if f == FLAG_NO_TRACE:
            out.add("no_trace")
        elif f == FLAG_NO_POINT or f.startswith("locator_not_found"):
            out.add("no_point")
        elif f in (FLAG_DRIFT, FLAG_LOST):
            out.add("drift")
        elif f == FLAG_DISAGREE:
            out.add("disagree")
        elif f.startswith("fit") or "residual" in f:
            out.add("fit")
    return out


@dataclass(order=True)
class EpisodeTraceQuality:
    """One episode's trace figures; ``badness`` orders them (higher is worse)."""

    badness: float
    source: str = field(compare=False)
    episode: str = field(compare=False)
    steps: int = field(compare=False)
    shares: dict[str, float] = field(compare=False)
    mean_confidence: float | None = field(compare=False)
    methods: dict[str, int] = field(compare=False)

    @property
    def key(self) -> str:
        return f"{self.source}__{self.episode}"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["key"] = self.key
        return d


def episode_quality(source: str, episode: str, steps: list[tuple[list[str], str, float, bool]]) -> EpisodeTraceQuality:
    """steps: per step (flags, point method, point confidence, point found)."""
    n = max(1, len(steps))
    counts = {k: 0 for k in WEIGHTS if k != "low_confidence"}
    methods: dict[str, int] = {}
    confs = []
    for flags, method, conf, found in steps:
        for kind in step_troubles(flags):
            counts[kind] += 1
        if found:
            confs.append(float(conf))
            methods[method] = methods.get(method, 0) + 1
    shares = {k: v / n for k, v in counts.items()}
    mean_conf = sum(confs) / len(confs) if confs else None
    shares["low_confidence"] = 1.0 - mean_conf if mean_conf is not None else 1.0
    badness = sum(WEIGHTS[k] * v for k, v in shares.items())
    return EpisodeTraceQuality(round(badness, 4), source, episode, len(steps),
                               {k: round(v, 4) for k, v in shares.items()},
                               None if mean_conf is None else round(mean_conf, 4), dict(sorted(methods.items())))


class WorstEpisodes:
    """The ``k`` worst episodes of a stream (a bounded heap: memory does not grow with the dataset)."""

    def __init__(self, k: int = DEFAULT_WORST) -> None:
        self.k = k
        self._heap: list[tuple[float, str, EpisodeTraceQuality]] = []
        self.seen = 0

    def add(self, q: EpisodeTraceQuality) -> None:
        self.seen += 1
        item = (q.badness, q.key, q)
        if len(self._heap) < self.k:
            heapq.heappush(self._heap, item)
        elif item[:2] > self._heap[0][:2]:
            heapq.heapreplace(self._heap, item)

    def worst_first(self) -> list[EpisodeTraceQuality]:
        """Worst first; ties by key, so the order is the same on every run."""
        return [q for _, _, q in sorted(self._heap, key=lambda x: (-x[0], x[1]))]
