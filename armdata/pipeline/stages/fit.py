"""The camera fit over whole sources: which points tables a source uses, which table rows belong to an episode,
and the fit per source (or per episode where the source's camera moves), with a summary for the run record.

The fit runs before the annotate job as a pass of its own (``armdata.beam_jobs.fit_cameras``) that reads only the
end-effector state of each episode, never its images; the annotate job's trace stage then projects every step
through the fitted camera (``armdata.annotators.locate.fit.FitLocator``).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from armdata.annotators.locate.fit import FIT_FLAGS, CameraFit, FitSettings, fit_camera, fit_key
from armdata.annotators.locate.points import PointsTable, parse_points
from armdata.pipeline import fs
from armdata.schemas.errors import ArmdataError
from armdata.schemas.source import SourceConfig

log = logging.getLogger(__name__)

FIT_FILE = "cameras.json"  # the fitted cameras, in the output folder beside run.json


def as_text(v: Any) -> str:
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="replace")
    if isinstance(v, np.ndarray):
        v = v.reshape(-1)
        return as_text(v[0]) if v.size else ""
    return str(v)


def episode_aliases(episode_key: str, metadata: dict) -> tuple[list[str], str | None]:
    """The names a points table may know an episode by (its source episode id ``file_path#episode_id``, its
    ``episode_metadata/file_path``, armdata's key) and its ``episode_metadata/episode_id`` (None where absent)."""
    from armdata.pipeline.sources.rlds import source_episode_id

    aliases = [source_episode_id(metadata)]
    if "file_path" in metadata:
        aliases.append(as_text(metadata["file_path"]).strip())
    aliases.append(episode_key)
    eid = metadata.get("episode_id")
    if eid is not None:
        eid = np.asarray(eid)
        eid = as_text(eid) if eid.dtype.kind in "SUO" else str(eid.item())
    return [a for a in aliases if a], eid


def points_paths(extra: list[str], source: SourceConfig) -> list[str]:
    """The tables a source uses: the source file's ``locator_points`` then those given on the command line."""
    return list(dict.fromkeys([*source.locator_points_paths(), *[fs.absolute(p) for p in extra]]))


@dataclass
class LoadedTables:
    """Points tables read once in the driver: the merged table per source and each file's fingerprint."""

    tables: dict[str, PointsTable] = field(default_factory=dict)
    files: dict[str, dict] = field(default_factory=dict)  # path -> {"sha256", "rows", "dropped", "problems"}

    def fingerprints(self) -> list[str]:
        return [f"points:{p}:{d['sha256']}" for p, d in sorted(self.files.items())]


def load_tables(sources: list[SourceConfig], extra: list[str], uses_fit: dict[str, bool]) -> LoadedTables:
    """Read every table the fitting sources use (each file once); a missing or unreadable file is an error."""
    out = LoadedTables()
    cache: dict[str, PointsTable] = {}
    for s in sources:
        if not uses_fit.get(s.name):
            continue
        merged = PointsTable()
        for path in points_paths(extra, s):
            if path not in cache:
                if not fs.exists(path):
                    raise ArmdataError(f"source {s.name}: points table {path} does not exist")
                data = fs.read_bytes(path)
                cache[path] = parse_points(data, path)
                t = cache[path]
                out.files[path] = {"sha256": hashlib.sha256(data).hexdigest(), "rows": len(t.rows),
                                   "dropped": t.dropped, "problems": t.problems}
                if t.dropped:
                    log.warning("points table %s: %d rows dropped, e.g. %s", path, t.dropped, t.problems[:3])
            merged.extend(cache[path])
        out.tables[s.name] = merged
    return out


@dataclass(frozen=True)
class EpisodeObservations:
    """The table's points of one episode with the end-effector position at each of their steps."""

    source: str
    episode_key: str
    steps: list[int]
    xyz: list[list[float]]
    uv: list[list[float]]
    image_size: list[int]
    problems: list[str] = field(default_factory=list)


def observations(source: SourceConfig, table: PointsTable, episode_key: str, metadata: dict,
                 eef: np.ndarray | None, height: int, width: int, source_id: str = "") -> EpisodeObservations | None:
    """The episode's table points and positions, or None when the table has none for it. ``source_id``: the
    reader's own id for the episode (``StandardEpisode.source_episode_id``), where it has one."""
    aliases, episode_id = episode_aliases(episode_key, metadata)
    if source_id and source_id not in aliases:
        aliases.insert(0, source_id)
    num_steps = 0 if eef is None else int(eef.shape[0])
    pts, problems = table.for_episode(aliases, episode_id, height, width, num_steps or 10**9)
    if pts.size == 0 and not problems:
        return None
    if eef is None:
        raise ArmdataError(f"source {source.name}: the fit locator needs state.eef_position in the source file")
    return EpisodeObservations(
        source.name, episode_key, pts.steps.tolist(), eef[pts.steps].astype(np.float64).tolist(), pts.uv.tolist(),
        [height, width], problems,
    )


def fit_group(key: str, obs: list[EpisodeObservations], settings: FitSettings) -> dict:
    """One fit over the observations of a fit key: ``{"key", "camera", "points": {episode id: {...}}}``."""
    obs = sorted(obs, key=lambda o: o.episode_key)
    sizes = {tuple(o.image_size) for o in obs}
    h, w = obs[0].image_size
    xyz = np.array([p for o in obs for p in o.xyz], dtype=np.float64).reshape(-1, 3)
    uv = np.array([p for o in obs for p in o.uv], dtype=np.float64).reshape(-1, 2)
    out = fit_camera(xyz, uv, h, w, settings)
    cam = out.camera
    if len(sizes) > 1:
        cam = CameraFit(**{**cam.to_dict(), "ok": False,
                           "problem": f"episodes of different image sizes {sorted(sizes)} cannot share a camera"})
    points, i = {}, 0
    for o in obs:
        n = len(o.steps)
        inl = out.inliers[i : i + n]
        # An episode whose own points the shared camera mostly does not explain was filmed by another camera (it
        # moved, or the episode is from another rig): its steps are flagged, not projected through the wrong one.
        agrees = n < settings.min_episode_points or inl.mean() >= settings.min_inlier_fraction
        points[f"{o.source}__{o.episode_key}"] = {
            "steps": o.steps,
            "inlier": [bool(x) for x in inl],
            "residual_px": [round(float(x), 3) if np.isfinite(x) else None for x in out.residuals[i : i + n]],
            "episode_agrees": bool(agrees),
            "problems": o.problems,
        }
        i += n
    checked = [p for p, o in zip(points.values(), obs) if len(o.steps) >= settings.min_episode_points]
    disagree = sum(not p["episode_agrees"] for p in checked)
    if cam.ok and checked and disagree / len(checked) > settings.max_disagreeing_episodes:
        cam = CameraFit(**{**cam.to_dict(), "ok": False, "problem": (
            f"{disagree} of {len(checked)} episodes disagree with one camera: it seems to move between episodes "
            f"(set camera_moves_between_episodes: true in the source file)")})
    return {"key": key, "camera": cam.to_dict(), "points": points}


@dataclass(frozen=True)
class FitData:
    """Every fit of a run: cameras by fit key, the table points by episode id, and the tables read."""

    cameras: dict[str, dict]
    points: dict[str, dict]
    per_episode: list[str]
    tables: dict[str, dict]
    extrapolate_margin: float = 0.25

    def locator_kwargs(self) -> dict:
        return {"cameras": self.cameras, "points": self.points, "per_episode": self.per_episode,
                "extrapolate_margin": self.extrapolate_margin}

    def to_dict(self) -> dict:
        return {"cameras": self.cameras, "points": self.points, "per_episode": self.per_episode,
                "tables": self.tables, "extrapolate_margin": self.extrapolate_margin}

    @classmethod
    def from_dict(cls, d: dict) -> "FitData":
        return cls(d["cameras"], d["points"], d["per_episode"], d["tables"], d.get("extrapolate_margin", 0.25))

    def summary(self, sources: list[str]) -> dict:
        """Per source: fits made and usable, points used and flagged as disagreeing, residuals; for run.json and
        the card (per-episode fits are summarised, the full list is in cameras.json)."""
        out: dict[str, Any] = {"flags": list(FIT_FLAGS), "tables": self.tables, "per_source": {}}
        for s in sources:
            keys = [k for k in self.cameras if k == s or k.startswith(s + "__")]
            cams = [CameraFit.from_dict(self.cameras[k]) for k in keys]
            pts = [p for k, p in self.points.items() if k.startswith(s + "__")]
            n_pts = sum(len(p["steps"]) for p in pts)
            n_out = sum(sum(not x for x in p["inlier"]) for p in pts)
            ok = [c for c in cams if c.ok]
            entry = {
                "fit": "per-episode" if s in self.per_episode else "per-source",
                "fits": len(cams), "fits_ok": len(ok), "episodes_with_points": len(pts),
                "points": n_pts, "points_disagreeing": n_out,
                "residual_rms_px_median": float(np.median([c.residual_rms_px for c in ok])) if ok else None,
                "problems": sorted({c.problem for c in cams if not c.ok})[:10],
            }
            if s not in self.per_episode and cams:
                entry["camera"] = cams[0].to_dict()
            out["per_source"][s] = entry
        return out


def settings_from(trace_cfg: Any, seed: int = 0) -> FitSettings:
    return FitSettings(inlier_px=trace_cfg.fit_inlier_px, min_points=trace_cfg.fit_min_points,
                       min_inlier_fraction=trace_cfg.fit_min_inlier_fraction,
                       extrapolate_margin=trace_cfg.fit_extrapolate_margin, seed=seed)


def fit_key_of(source: SourceConfig, episode_key: str) -> str:
    return fit_key(source.name, episode_key, source.camera_moves_between_episodes)


class EefDecoder:
    """Decodes only what a fit needs from a serialized RLDS episode: its end-effector positions [T, 3] (the source
    file's ``state.eef_position`` with index, sign and scale) and its metadata; every image is left undecoded."""

    def __init__(self, source: SourceConfig):
        from armdata.pipeline.sources.rlds import EpisodeDecoder

        self.source = source
        self._base = EpisodeDecoder(source)
        self._features = None
        self._skip = None

    def __getstate__(self):
        return {"source": self.source}

    def __setstate__(self, state):
        self.__init__(state["source"])

    def image_size(self) -> tuple[int, int] | None:
        """(height, width) of the primary camera from the feature spec, None where it varies."""
        from armdata.pipeline.sources.rlds import flatten_features

        f = flatten_features(self._base.features).get(f"steps/{self.source.cameras.primary}")
        shape = getattr(f, "shape", None)
        if not shape or shape[0] is None or shape[1] is None:
            return None
        return int(shape[0]), int(shape[1])

    def decode(self, record: bytes, shard: str, index: int) -> tuple[str, dict, np.ndarray | None]:
        """(episode key, flattened metadata, eef float64 [T, 3] or None when the source names none)."""
        from armdata.pipeline.sources.rlds import _flatten_dict, _skip_images, episode_key, get_path
        from armdata.pipeline.sources.standardize import _take
        from armdata.schemas.errors import RecordError
        from armdata.schemas.records import Episode

        src = self.source
        key = episode_key(src.data.split, shard, index)
        if self._features is None:
            self._features = self._base.features
            self._skip = _skip_images(self._features, set()) or None
        try:
            ex = self._features.deserialize_example_np(record, decoders=self._skip)
        except Exception as e:
            raise RecordError(src.name, key, None, "record", "unreadable_record", f"{type(e).__name__}: {e}") from None
        steps = ex["steps"]
        metadata = _flatten_dict(ex.get("episode_metadata", {}) or {})
        seg = src.state.eef_position
        if seg is None:
            return key, metadata, None
        try:
            raw = np.stack([np.asarray(get_path(steps[i], seg.path)) for i in range(len(steps))])
        except KeyError:
            raise RecordError(src.name, key, None, seg.path, "missing_field", "state.eef_position field missing") from None
        ep = Episode(source=src.name, episode_key=key, frames={}, actions_raw={seg.path: raw})
        eef = _take(ep, {seg.path: raw}, seg, "state.eef_position")
        if eef.shape[1] != 3:
            raise RecordError(src.name, key, None, seg.path, "wrong_width",
                              f"state.eef_position gives {eef.shape[1]} values, expected 3")
        return key, metadata, eef
