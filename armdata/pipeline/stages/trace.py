"""End-effector points over one episode, by one of three modes, ready for the trace builder.

Modes (``TraceConfig.mode``):
- ``point-every-frame``: MolmoAct's recipe; the locator answers on every frame (a 7B VLM call per frame when the
  locator is the pointer).
- ``track``: locate once (the first frame the locator finds the gripper on), then track both ways to the ends.
- ``point-keyframes``: locate on ceil(T / K) keyframes spread from the first frame to the last, track between
  consecutive found keyframes from both ends, blend the two tracks by distance, and re-anchor at each keyframe.
  Where a located point and the tracks arriving on it disagree (by more than ``disagreement_px``), evidence decides,
  never a standing preference for the tracker: a keyframe corroborated by a neighbour (a track between them agrees
  with both located points) is kept and the disagreeing tracks are marked as drift; an uncorroborated one is
  dropped as the locator's mistake (flag ``pointer_tracker_disagree``) only when a track from a corroborated
  neighbour disagrees with it and passes the segment's forward-backward round trip; otherwise it is kept, flagged
  ``tracker_drift``. Between keyframes, frames where the tracks from the two ends disagree get no point
  (``tracker_drift``): one of them drifted and nothing says which. Each decision is in the provenance
  (``disputes``).

A frame without a trusted point is NaN with visible False and a flag saying why: the trace builder then skips it,
and a step with no valid future point gets no trace (never a made-up one).
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from armdata.annotators.extras import require_extra
from armdata.annotators.locate import LOCATORS, LocateResult, Locator
from armdata.annotators.locate.pointer import PointerConfig, PointerLocator
from armdata.annotators.trace import NO_TRACE_FLAG, build_traces
from armdata.annotators.track import TRACKERS, Tracker, resolve_tracker
from armdata.schemas.errors import ArmdataError
from armdata.schemas.records import StandardEpisode
from armdata.schemas.source import SourceConfig

log = logging.getLogger(__name__)

MODES = ("point-every-frame", "track", "point-keyframes")

# Flags written on frames (strings, stable: reports count them).
FLAG_NOT_FOUND = "locator_not_found"  # + ":" + the locator's reason
FLAG_LOST = "tracker_lost"
FLAG_DISAGREE = "pointer_tracker_disagree"
FLAG_NO_SEED = "no_seed"
FLAG_DRIFT = "tracker_drift"  # tracks disagree with a located point that other evidence supports, or with each other


@dataclass(frozen=True)
class TraceConfig:
    """How the end effector is found over an episode."""

    mode: Literal["point-every-frame", "track", "point-keyframes"] = "track"  # see the module docstring
    locator: str = "projection"  # registry name: projection (calibrated sources), hint, pointer
    tracker: str = "hybrid"  # registry name: hybrid/lk/template need no weights; cotracker/sam2 when installed
    keyframe_every: int = 10  # point-keyframes: one locator call per this many frames (50 steps -> 5 calls)
    disagreement_px: float = 6.0  # a keyframe where pointer and arriving track differ by more is flagged
    seed_batch: int = 8  # track mode: frames asked per locator call while searching for the first found frame
    track_conf_horizon: float = 200.0  # a tracked point's confidence decays as exp(-steps from anchor / this)
    gripper_size_m: float = 0.08  # projection: physical gripper size that sizes the tracker's window
    pointer_model: str | None = None  # pointer: checkpoint dir or hub id (Molmo2 native, Molmo 1 remote code)
    pointer_trust_remote_code: bool = False  # pointer: allow Molmo 1's checkpoint code to run
    pointer_arm: Literal["left", "right"] | None = None  # pointer: two-arm robots, which gripper
    pointer_batch_size: int = 8  # pointer: frames per generate call
    pointer_device: str = "cpu"  # pointer: torch device ("cuda" on GPU workers)
    tracker_checkpoint: str | None = None  # cotracker: CoTracker3 .pth path; sam2: Sam2Video checkpoint dir or id
    tracker_device: str = "cpu"  # cotracker/sam2: torch device

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown trace mode {self.mode!r}; known: {', '.join(MODES)}")
        if self.keyframe_every < 1:
            raise ValueError("keyframe_every must be >= 1")
        if self.locator == "pointer" and self.pointer_model is None:
            raise ValueError("the pointer locator needs pointer_model (a checkpoint directory or hub id): "
                             "--pointer-model or --set trace.pointer_model=...")


@dataclass(frozen=True)
class EpisodePoints:
    """The end effector over one episode.

    points_uv:     float32 [T, 2] pixel (u, v) in the primary image, NaN where missing
    visible:       bool [T], True where points_uv holds a trusted point
    method:        per frame, what produced the point ("projection", "pointer", "lk", "blend:lk", "" if none)
    confidence:    float32 [T] in [0, 1], 0 where missing
    flags:         per frame, the notes on it (FLAG_* constants, "locator_not_found:<reason>")
    pointer_calls: frames a costly locator (the VLM) was asked about
    provenance:    how the points were made (config, locator, tracker, keyframes, disagreements)
    """

    points_uv: np.ndarray
    visible: np.ndarray
    method: list[str]
    confidence: np.ndarray
    flags: list[list[str]]
    pointer_calls: int
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        t = self.points_uv.shape[0]
        if self.points_uv.shape != (t, 2) or self.visible.shape != (t,) or self.confidence.shape != (t,):
            raise ValueError("points_uv [T, 2], visible [T] and confidence [T] must agree")
        if len(self.method) != t or len(self.flags) != t:
            raise ValueError("method and flags need one entry per frame")

    @property
    def num_steps(self) -> int:
        return int(self.points_uv.shape[0])

    def traces(self, height: int, width: int, max_points: int = 5) -> tuple[list[np.ndarray | None], list[list[str]]]:
        """The MolmoAct traces per step (see ``build_traces``) and per-step flags, NO_TRACE_FLAG added where a step
        gets none."""
        traces = build_traces(self.points_uv, self.visible, height, width, max_points)
        flags = [list(f) + ([NO_TRACE_FLAG] if tr is None else []) for f, tr in zip(self.flags, traces)]
        return traces, flags


def _dist(x, y) -> float:
    return float(np.linalg.norm(np.asarray(x, np.float64) - np.asarray(y, np.float64)))


def _arrivals(segs: dict) -> dict[int, list[np.ndarray]]:
    """keyframe -> the points where tracks from its neighbouring keyframes arrive on it (visible ones)."""
    arr: dict[int, list[np.ndarray]] = {}
    for (a, c), res in segs.items():
        if res.visible[-1, 0]:
            arr.setdefault(c, []).append(res.tracks[-1, 0])
        if res.visible[0, 1]:
            arr.setdefault(a, []).append(res.tracks[0, 1])
    return arr


def _arrivals_from(segs: dict, k: int) -> dict[int, np.ndarray]:
    """neighbour keyframe -> where its track arrives on keyframe k (visible ones only)."""
    out = {}
    for (a, c), res in segs.items():
        if c == k and res.visible[-1, 0]:
            out[a] = res.tracks[-1, 0]
        if a == k and res.visible[0, 1]:
            out[c] = res.tracks[0, 1]
    return out


class _Builder:
    """Mutable per-episode arrays behind an EpisodePoints."""

    def __init__(self, t: int) -> None:
        self.uv = np.full((t, 2), np.nan, np.float32)
        self.vis = np.zeros(t, bool)
        self.method = [""] * t
        self.conf = np.zeros(t, np.float32)
        self.flags: list[list[str]] = [[] for _ in range(t)]

    def put(self, t: int, uv, method: str, conf: float) -> None:
        self.uv[t] = uv
        self.vis[t] = True
        self.method[t] = method
        self.conf[t] = conf

    def done(self, calls: int, provenance: dict) -> EpisodePoints:
        return EpisodePoints(self.uv, self.vis, self.method, self.conf, self.flags, calls, provenance)


def keyframes(num_steps: int, every: int) -> list[int]:
    """ceil(T / every) keyframes (at least 2 when T > 1) spread evenly from the first frame to the last.

    The last frame is always one: every step's trace ends there, so an error carried into it would reach every
    trace of the episode.
    """
    if num_steps <= 0:
        return []
    if num_steps == 1:
        return [0]
    n = max(2, math.ceil(num_steps / every))
    return sorted(set(np.round(np.linspace(0, num_steps - 1, n)).astype(int).tolist()))


def build_locator(cfg: TraceConfig) -> Locator:
    """The configured locator (the composition root may hand its own to TraceAnnotator instead)."""
    if cfg.locator == "pointer":
        return PointerLocator(
            PointerConfig(
                model=cfg.pointer_model or "",
                trust_remote_code=cfg.pointer_trust_remote_code,
                arm=cfg.pointer_arm,
                batch_size=cfg.pointer_batch_size,
                device=cfg.pointer_device,
            )
        )
    if cfg.locator == "projection":
        return LOCATORS.create("projection", gripper_size_m=cfg.gripper_size_m)
    if cfg.locator == "detector":  # an open-vocabulary detector; trace.pointer_model names its checkpoint
        return LOCATORS.create("detector", model=cfg.pointer_model or "", device=cfg.pointer_device)
    return LOCATORS.create(cfg.locator)


def _resolved(cfg: TraceConfig) -> TraceConfig:
    """cfg with ``tracker: auto`` replaced by the tracker it stands for (see ``resolve_tracker``)."""
    from dataclasses import replace

    name = resolve_tracker(cfg.tracker, cfg.tracker_checkpoint)
    return cfg if name == cfg.tracker else replace(cfg, tracker=name)


def check_trace_parts(cfg: TraceConfig) -> None:
    """Fail before a job starts, with a named error, where the configured tracker cannot run: an unknown name, or
    a model tracker without its checkpoint."""
    cfg = _resolved(cfg)
    if cfg.tracker not in TRACKERS:
        raise ArmdataError(f"unknown tracker {cfg.tracker!r} (--tracker / trace.tracker); known: "
                           f"{', '.join(TRACKERS.names())}")
    if cfg.mode != "point-every-frame" and cfg.tracker == "cotracker":
        from armdata.annotators.track.cotracker import check_checkpoint

        check_checkpoint(cfg.tracker_checkpoint)
    elif cfg.mode != "point-every-frame" and cfg.tracker == "sam2":
        from armdata.annotators.track.sam2 import check_checkpoint as check_sam2

        check_sam2(cfg.tracker_checkpoint)


def check_trace_extras(cfg: TraceConfig) -> None:
    """A MissingExtraError naming the optional extra the configured pointer or tracker needs and lacks here."""
    if cfg.locator == "pointer":
        require_extra("molmo", "the pointer locator (--locator pointer)")
    if cfg.mode != "point-every-frame" and cfg.tracker in ("cotracker", "sam2"):
        require_extra(cfg.tracker, f"the {cfg.tracker} tracker (--tracker {cfg.tracker})")


def build_tracker(cfg: TraceConfig) -> Tracker:
    """The configured tracker (hybrid, lk, template need nothing; cotracker and sam2 take a checkpoint and a device;
    ``auto`` is resolved first)."""
    cfg = _resolved(cfg)
    if cfg.tracker == "cotracker":
        return TRACKERS.create("cotracker", checkpoint=cfg.tracker_checkpoint, device=cfg.tracker_device)
    if cfg.tracker == "sam2":
        return TRACKERS.create("sam2", model=cfg.tracker_checkpoint, device=cfg.tracker_device)
    return TRACKERS.create(cfg.tracker)


class _Prelocated:
    """A locator whose answers for some frames are known already; asks the real one about the rest. Answers given
    from ``located`` count as calls (the costly model was asked about them, in a batch)."""

    def __init__(self, inner: Locator, located: Mapping[int, LocateResult]) -> None:
        self.inner = inner
        self.located = dict(located)
        self.name = inner.name
        self.served = 0

    @property
    def calls(self) -> int:
        return self.inner.calls + self.served

    def __getattr__(self, name: str):
        if name == "inner":  # not set yet (copying): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    def locate(self, episode: StandardEpisode, source: SourceConfig, frame_indices) -> list[LocateResult]:
        idx = [int(i) for i in frame_indices]
        missing = [i for i in idx if i not in self.located]
        asked = dict(zip(missing, self.inner.locate(episode, source, missing))) if missing else {}
        self.served += len(idx) - len(missing)
        return [self.located[i] if i in self.located else asked[i] for i in idx]


class TraceAnnotator:
    """Finds the end effector over an episode by ``cfg.mode``; ``setup()`` once, then ``annotate`` per episode.

    locator / tracker: injected parts (tests hand stand-ins); by default built from cfg through the registries.
    """

    def __init__(self, cfg: TraceConfig, locator: Locator | None = None, tracker: Tracker | None = None) -> None:
        self.cfg = cfg
        self.locator = locator if locator is not None else build_locator(cfg)
        self.tracker = tracker if tracker is not None else build_tracker(cfg)
        self._ready = False

    def setup(self) -> None:
        if not self._ready:
            self.locator.setup()
            if self.cfg.mode != "point-every-frame":
                self.tracker.setup()
            self._ready = True

    def planned_locator_frames(self, num_steps: int) -> list[int]:
        """The frames this mode will ask a costly locator about (one with ``locate_frames``, whose answers depend
        on the frame alone), so that a job can ask for them in calls spanning episodes; [] for cheap locators.
        Track mode plans its first seed batch; further seed frames (rare) are asked during ``annotate``."""
        if num_steps <= 0 or not callable(getattr(self.locator, "locate_frames", None)):
            return []
        if self.cfg.mode == "point-every-frame":
            return list(range(num_steps))
        if self.cfg.mode == "point-keyframes":
            return keyframes(num_steps, self.cfg.keyframe_every)
        return list(range(min(num_steps, self.cfg.seed_batch)))

    def annotate(self, episode: StandardEpisode, source: SourceConfig,
                 located: Mapping[int, LocateResult] | None = None) -> EpisodePoints:
        """The points over ``episode``. ``located``: the locator's answers already asked for some frames
        (``planned_locator_frames``, in a batch spanning episodes); the locator is asked only about the others."""
        self.setup()
        if not located:
            return self._annotate(episode, source)
        view = copy.copy(self)  # the annotator may be shared by a worker's threads: never swap its locator
        view.locator = _Prelocated(self.locator, located)
        return view._annotate(episode, source)

    def _annotate(self, episode: StandardEpisode, source: SourceConfig) -> EpisodePoints:
        calls0 = self.locator.calls
        t = episode.num_steps
        b = _Builder(t)
        prov: dict[str, Any] = {"config": asdict(self.cfg), "locator": self.locator.name}
        if hasattr(self.locator, "provenance"):
            prov["locator_detail"] = self.locator.provenance()
        if self.cfg.mode != "point-every-frame":
            prov["tracker"] = self.tracker.provenance()
        if t > 0:
            if self.cfg.mode == "point-every-frame":
                self._every_frame(episode, source, b)
            elif self.cfg.mode == "track":
                self._track(episode, source, b, prov)
            else:
                self._keyframes(episode, source, b, prov)
        return b.done(self.locator.calls - calls0, prov)

    # -- modes -----------------------------------------------------------------------------------------------
    def _every_frame(self, ep: StandardEpisode, source: SourceConfig, b: _Builder) -> None:
        for i, r in enumerate(self.locator.locate(ep, source, range(ep.num_steps))):
            self._put_located(b, i, r)

    def _put_located(self, b: _Builder, i: int, r: LocateResult) -> None:
        if r.found:
            b.put(i, r.uv, r.method, r.confidence)
            if r.reason:
                b.flags[i].append(f"{r.method}:{r.reason}")
        else:
            b.flags[i].append(f"{FLAG_NOT_FOUND}:{r.reason}")
        b.flags[i].extend(f for f in r.flags if f not in b.flags[i])

    def _track_conf(self, seed_conf: float, dt: int) -> float:
        return float(seed_conf * math.exp(-abs(dt) / self.cfg.track_conf_horizon))

    def _track(self, ep: StandardEpisode, source: SourceConfig, b: _Builder, prov: dict) -> None:
        t = ep.num_steps
        seed_t, seed = None, None
        for start in range(0, t, self.cfg.seed_batch):
            idx = list(range(start, min(t, start + self.cfg.seed_batch)))
            for i, r in zip(idx, self.locator.locate(ep, source, idx)):
                if r.found:
                    seed_t, seed = i, r
                    break
                b.flags[i].append(f"{FLAG_NOT_FOUND}:{r.reason}")
            if seed is not None:
                break
        if seed is None:
            for i in range(t):
                b.flags[i].append(FLAG_NO_SEED)
            prov["seed_frame"] = None
            return
        prov["seed_frame"] = seed_t
        res = self.tracker.track(ep.primary, np.array([[seed_t, *seed.uv]]), size_px=seed.size_px)
        for i in range(t):
            if i == seed_t:
                b.put(i, seed.uv, seed.method, seed.confidence)
            elif res.visible[i, 0]:
                b.put(i, res.tracks[i, 0], self.tracker.name, self._track_conf(seed.confidence, i - seed_t))
            else:
                b.flags[i].append(FLAG_LOST)

    def _segments(self, ep: StandardEpisode, located: dict, anchors: list[int], size: float | None) -> dict:
        """(a, c) -> TrackResult over frames a..c, queried at both ends, for consecutive anchors."""
        out = {}
        for a, c in zip(anchors[:-1], anchors[1:]):
            q = np.array([[0, *located[a].uv], [c - a, *located[c].uv]])
            out[(a, c)] = self.tracker.track(ep.primary[a : c + 1], q, size_px=size)
        return out

    def _judge_keyframes(self, ep: StandardEpisode, located: dict, anchors: list[int], segs: dict,
                         size: float | None, b: _Builder, disagreements: dict, prov: dict) -> list[int]:
        """Which located keyframes are the locator's mistakes, decided by evidence (see the module docstring).

        Two neighbouring keyframes corroborate each other when a track from one arrives within disagreement_px
        of the other's located point. A corroborated keyframe is kept, whatever the other tracks say (they
        drifted). An uncorroborated one is dropped only when a track from a corroborated neighbour disagrees with
        it and that track is reliable: tracked back from where it arrived, it returns to its own start (the
        forward-backward round trip over the segment). Otherwise the located point stays, flagged: the tracker
        is not trusted over the locator without evidence. Returns the dropped keyframes."""
        thr = self.cfg.disagreement_px
        pairs = list(zip(anchors[:-1], anchors[1:]))
        agree: dict[tuple[int, int], bool] = {}
        for a, c in pairs:
            res = segs[(a, c)]
            fwd = res.visible[-1, 0] and _dist(res.tracks[-1, 0], located[c].uv) <= thr
            bwd = res.visible[0, 1] and _dist(res.tracks[0, 1], located[a].uv) <= thr
            agree[(a, c)] = bool(fwd or bwd)
        neighbours = {k: [n for pair in pairs if k in pair for n in pair if n != k] for k in anchors}
        corroborated = {k for (a, c), ok in agree.items() if ok for k in (a, c)}
        dropped, disputes = [], {}
        for k in anchors:
            arrivals = _arrivals_from(segs, k)
            far = {n: _dist(x, located[k].uv) for n, x in arrivals.items() if _dist(x, located[k].uv) > thr}
            if not far:
                continue
            if k in corroborated:  # the located point is right; the tracks that missed it drifted
                disputes[k] = {"decision": "located", "corroborated_by": [n for n in neighbours[k]
                                                                           if agree[tuple(sorted((k, n)))]],
                               "tracker_off_px": round(max(far.values()), 2)}
                b.flags[k].append(FLAG_DRIFT)
                continue
            fb = {n: self._round_trip_px(ep, located, n, k, arrivals[n], size) for n in far if n in corroborated}
            reliable = {n: e for n, e in fb.items() if e <= thr}
            if reliable:
                disagreements[k] = min(far[n] for n in reliable)
                b.flags[k].append(FLAG_DISAGREE)
                dropped.append(k)
                disputes[k] = {"decision": "tracker", "located_off_px": round(disagreements[k], 2),
                               "round_trip_px": {int(n): round(e, 2) for n, e in reliable.items()}}
            else:
                b.flags[k].append(FLAG_DRIFT)
                disputes[k] = {"decision": "located", "reason": "no reliable track disagrees",
                               "round_trip_px": {int(n): round(e, 2) for n, e in fb.items()},
                               "tracker_off_px": round(max(far.values()), 2)}
        prov["disputes"] = {int(k): v for k, v in disputes.items()}
        if len(dropped) == len(anchors):  # nothing would be left to anchor on: keep the locator's answers
            for k in dropped:
                b.flags[k].remove(FLAG_DISAGREE)
            disagreements.clear()
            return []
        return dropped

    def _round_trip_px(self, ep: StandardEpisode, located: dict, n: int, k: int, x, size: float | None) -> float:
        """Track from x at frame k back to keyframe n: how far from n's located point it lands (inf if lost)."""
        lo, hi = min(n, k), max(n, k)
        res = self.tracker.track(ep.primary[lo : hi + 1], np.array([[k - lo, *x]]), size_px=size)
        j = n - lo
        return _dist(res.tracks[j, 0], located[n].uv) if res.visible[j, 0] else math.inf

    def _keyframes(self, ep: StandardEpisode, source: SourceConfig, b: _Builder, prov: dict) -> None:
        t = ep.num_steps
        keys = keyframes(t, self.cfg.keyframe_every)
        located = dict(zip(keys, self.locator.locate(ep, source, keys)))
        anchors = [i for i in keys if located[i].found]
        for i in keys:
            self._put_located(b, i, located[i])
        prov["keyframes"] = keys
        disagreements: dict[int, float] = {}
        if not anchors:
            for i in range(t):
                if not b.flags[i]:
                    b.flags[i].append(FLAG_NO_SEED)
            prov["anchors"] = []
            prov["disagreements"] = disagreements
            return
        sizes = [located[a].size_px for a in anchors if located[a].size_px is not None]
        size = float(np.median(sizes)) if sizes else None
        segs = self._segments(ep, located, anchors, size)

        dropped = self._judge_keyframes(ep, located, anchors, segs, size, b, disagreements, prov)
        if dropped:
            anchors = [k for k in anchors if k not in dropped]
            for k in dropped:  # the locator's point there is not kept; the tracks fill the frame below
                b.vis[k], b.uv[k], b.method[k], b.conf[k] = False, np.nan, "", 0.0
            segs = self._segments(ep, located, anchors, size)
        arr = _arrivals(segs)
        prov["anchors"] = anchors

        for (a, c), res in segs.items():
            ra, rc = located[a], located[c]
            for j in range(1, c - a):
                i = a + j
                va, vc = bool(res.visible[j, 0]), bool(res.visible[j, 1])
                w = j / (c - a)
                if va and vc and np.linalg.norm(res.tracks[j, 0] - res.tracks[j, 1]) > self.cfg.disagreement_px:
                    # The tracks from the two ends disagree: at least one drifted, and nothing says which.
                    b.flags[i].append(FLAG_DRIFT)
                elif va and vc:
                    uv = (1 - w) * res.tracks[j, 0] + w * res.tracks[j, 1]
                    conf = max(self._track_conf(ra.confidence, j), self._track_conf(rc.confidence, c - a - j))
                    b.put(i, uv, f"blend:{self.tracker.name}", conf)
                elif va:
                    b.put(i, res.tracks[j, 0], self.tracker.name, self._track_conf(ra.confidence, j))
                elif vc:
                    b.put(i, res.tracks[j, 1], self.tracker.name, self._track_conf(rc.confidence, c - a - j))
                else:
                    b.flags[i].append(FLAG_LOST)
        # A kept keyframe's point: the locator's answer averaged with the agreeing arrivals (independent errors).
        for k in anchors:
            near = [x for x in arr.get(k, []) if np.linalg.norm(x - np.asarray(located[k].uv)) <= self.cfg.disagreement_px]
            if near:
                uv = np.mean([np.asarray(located[k].uv), *near], axis=0)
                b.put(k, uv, f"{located[k].method}+{self.tracker.name}", located[k].confidence)
        # Before the first anchor and after the last: one-sided tracks.
        first, last = anchors[0], anchors[-1]
        for lo, hi, anchor in ((0, first, first), (last, t - 1, last)):
            if hi - lo < 1:
                continue
            r = located[anchor]
            res = self.tracker.track(ep.primary[lo : hi + 1], np.array([[anchor - lo, *r.uv]]), size_px=size)
            for j in range(hi - lo + 1):
                i = lo + j
                if i == anchor or b.vis[i]:
                    continue
                if res.visible[j, 0]:
                    b.put(i, res.tracks[j, 0], self.tracker.name, self._track_conf(r.confidence, i - anchor))
                elif FLAG_LOST not in b.flags[i]:
                    b.flags[i].append(FLAG_LOST)
        prov["disagreements"] = {int(i): round(d, 2) for i, d in disagreements.items()}
