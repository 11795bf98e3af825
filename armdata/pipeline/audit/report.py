"""The audit: quality figures and a static HTML report of a finished output, read from disk only.

``run_audit(OUT)`` reads the shards (with ``webdataset``), the index, the statistics, the dead letters and
``run.json``, runs the checker (:mod:`armdata.pipeline.output.check`), and writes ``OUT/audit/index.html`` with
PNGs beside it and ``OUT/audit/audit.json`` (every number the page shows, under the same dotted names the page
marks with ``data-audit``). ``write_episode_report(OUT, KEY)`` writes one episode step by step to
``OUT/audit/episode-KEY/index.html``. The pages fetch nothing from the network and open from disk.

Figures (per source): action histograms per dimension (normalized and raw with q01/q99), the share of values
clipped at +-1, points per trace and the share of steps without a trace, pointer/tracker disagreement, depth
code usage; where samples carry ``ground_truth.gripper_uv`` (the built-in sample does), the gripper error per
frame and per trace point in [0, 255] units. Cards: a seeded sample of steps, stratified by source and flags.
"""

from __future__ import annotations

import logging
import os
import re
from array import array
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from armdata.annotators.actions import normalize as act
from armdata.annotators.trace import select_indices
from armdata.pipeline.audit import plots
from armdata.pipeline.audit.ranking import WEIGHTS, WorstEpisodes, episode_quality
from armdata.pipeline.output import reader as rd
from armdata.pipeline.output.check import CheckReport, check_output
from armdata.schemas.errors import ArmdataError
from armdata.schemas.sample import (
    AUDIT_DIR,
    DEPTH_CODEBOOK,
    FLAG_DISAGREE,
    FLAG_NO_TRACE,
    TRACE_MAX_POINTS,
    SampleAnnotation,
)

logger = logging.getLogger(__name__)

AUDIT_JSON = "audit.json"
INDEX_HTML = "index.html"
TEMPLATES_DIR = Path(__file__).with_name("templates")
MAX_FAILURES_SHOWN = 200  # the page and audit.json list at most this many check failures (all are counted)
DEFAULT_SAMPLES = 12


# -- small helpers -------------------------------------------------------------------------------------------


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)


def _write_atomic(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
    os.replace(tmp, path)


def _stats_of(v: list[float]) -> dict[str, Any]:
    """n, mean, median, p90, max of a list of errors (None-valued when empty)."""
    if not v:
        return {"n": 0, "mean": None, "median": None, "p90": None, "max": None}
    a = np.asarray(v, dtype=np.float64)
    return {
        "n": int(a.size),
        "mean": float(a.mean()),
        "median": float(np.median(a)),
        "p90": float(np.percentile(a, 90)),
        "max": float(a.max()),
    }


def _to255(uv: list[float], h: int, w: int) -> np.ndarray:
    """Pixels -> [0, 255] units, unrounded (the trace's scale: u * 255 / (W-1))."""
    return np.array([uv[0] * 255.0 / max(w - 1, 1), uv[1] * 255.0 / max(h - 1, 1)])


RAW_RESERVOIR = (
    20_000  # raw actions kept per source (seeded reservoir) for the raw histograms and q01/q99 lines
)
NORM_EDGES = np.linspace(-1.0, 1.0, 52)  # normalized-action histogram bins (exact counts over every sample)


@dataclass
class _Step:
    """What the audit keeps of one sample while its episode is open (no images)."""

    key: str
    shard: str
    step: int
    flags: list[str]
    uv: list[float] | None
    gt: list[float] | None
    trace: list[list[int]] | None
    image_size: list[int]
    method: str = ""
    confidence: float = 0.0


def _step_of(ann: SampleAnnotation, shard: str) -> _Step:
    gt = ann.ground_truth.get("gripper_uv") if isinstance(ann.ground_truth, dict) else None
    return _Step(
        ann.key, shard, ann.step, list(ann.flags), ann.gripper.uv, gt, ann.trace_uv255, list(ann.image_size),
        ann.gripper.method, float(ann.gripper.confidence),
    )


class _Reservoir:
    """A uniform sample of at most ``cap`` items from a stream (Algorithm R), seeded: same stream, same
    sample."""

    def __init__(self, cap: int, seed: int):
        self.cap = cap
        self.items: list = []
        self.seen = 0
        self.rng = np.random.default_rng(seed)

    def add(self, item) -> None:
        if self.cap <= 0:
            return
        if len(self.items) < self.cap:
            self.items.append(item)
        else:
            j = int(self.rng.integers(0, self.seen + 1))
            if j < self.cap:
                self.items[j] = item
        self.seen += 1


@dataclass
class _SourceAcc:
    """Running figures of one source; memory does not grow with the number of samples (errors aside: 8 bytes
    per frame)."""

    stats: act.ActionStats | None = None
    samples: int = 0
    episodes: set = field(default_factory=set)
    actions: int = 0
    norm_counts: np.ndarray = field(
        default_factory=lambda: np.zeros((act.ACTION_DIM, NORM_EDGES.size - 1), np.int64)
    )
    clipped: np.ndarray = field(default_factory=lambda: np.zeros(act.ACTION_DIM, np.int64))
    raw: _Reservoir = field(default_factory=lambda: _Reservoir(RAW_RESERVOIR, 0))
    trace_points: Counter = field(default_factory=Counter)
    disagree: int = 0
    depth_counts: np.ndarray = field(default_factory=lambda: np.zeros(DEPTH_CODEBOOK, dtype=np.int64))
    frame_errors: array = field(default_factory=lambda: array("d"))
    point_errors: array = field(default_factory=lambda: array("d"))


# -- reading -------------------------------------------------------------------------------------------------


@dataclass
class _Scan:
    per_source: dict[str, _SourceAcc]
    episodes: set
    templates: Counter
    flags: Counter
    unreadable: int
    strata: dict[tuple[str, tuple[str, ...]], _Reservoir]  # candidate cards: (key, source, flags, shard)
    worst: WorstEpisodes = field(default_factory=WorstEpisodes)  # episodes ranked by trace quality


def _scan(out_dir: Path, statistics: dict[str, act.ActionStats], cards: int, seed: int) -> _Scan:
    """One pass over every sample's ``json`` member. Episodes are held only until all their steps were read
    (the job writes an episode's samples together), then their trace-point errors are computed."""
    per_source: dict[str, _SourceAcc] = {}
    open_eps: dict[tuple[str, str], dict[int, _Step]] = defaultdict(dict)
    scan = _Scan(per_source, set(), Counter(), Counter(), 0, {})
    for path in rd.shard_paths(out_dir):
        try:
            for key, members in rd.iter_shard(path):
                try:
                    ann = SampleAnnotation.from_json(members["json"])
                    if len(ann.image_size) != 2:
                        raise ValueError("image_size")
                except (KeyError, ValueError, TypeError):
                    scan.unreadable += 1  # the checker names it; the figures leave it out
                    continue
                if ann.source not in per_source:
                    per_source[ann.source] = _SourceAcc(stats=statistics.get(ann.source))
                acc = per_source[ann.source]
                _accumulate(ann, acc, scan)
                stratum = (ann.source, tuple(sorted(ann.flags)))
                if stratum not in scan.strata:
                    scan.strata[stratum] = _Reservoir(cards, seed + len(scan.strata))
                scan.strata[stratum].add((key, ann.source, tuple(ann.flags), path.name))
                ep = (ann.source, ann.episode)
                scan.episodes.add(ep)
                open_eps[ep][ann.step] = _step_of(ann, path.name)
                if len(open_eps[ep]) >= ann.num_steps:
                    steps = open_eps.pop(ep)
                    acc.point_errors.extend(_trace_point_errors(steps)[0])
                    scan.worst.add(episode_quality(ep[0], ep[1], [
                        (st.flags, st.method, st.confidence, st.uv is not None) for _, st in sorted(steps.items())]))
        except Exception as e:  # a damaged tar: the checker reports it; count what was read
            logger.warning("audit: %s could not be read to the end: %s", path.name, e)
    if open_eps:
        logger.info(
            "audit: %d episodes incomplete in the shards; no trace-point errors for them", len(open_eps)
        )
    return scan


def _accumulate(ann: SampleAnnotation, acc: _SourceAcc, scan: _Scan) -> None:
    acc.samples += 1
    acc.episodes.add(ann.episode)
    a = ann.action
    if len(a.normalized) == act.ACTION_DIM and len(a.raw) == act.ACTION_DIM:
        raw = np.asarray(a.raw, dtype=np.float64)
        normalized = np.clip(np.asarray(a.normalized, dtype=np.float64), -1.0, 1.0)
        acc.actions += 1
        idx = np.clip(np.searchsorted(NORM_EDGES, normalized, side="right") - 1, 0, NORM_EDGES.size - 2)
        acc.norm_counts[np.arange(act.ACTION_DIM), idx] += 1
        acc.clipped += _clipped(raw, normalized, acc.stats)
        acc.raw.add(raw)
    tr = ann.trace_uv255
    acc.trace_points[len(tr) if tr else 0] += 1
    if FLAG_DISAGREE in ann.flags:
        acc.disagree += 1
    codes = np.asarray(ann.depth_codes or [], dtype=np.int64)
    codes = codes[(codes >= 0) & (codes < DEPTH_CODEBOOK)]
    acc.depth_counts += np.bincount(codes, minlength=DEPTH_CODEBOOK)
    scan.templates.update(ann.text.keys())
    scan.flags.update(ann.flags)
    gt = ann.ground_truth.get("gripper_uv") if isinstance(ann.ground_truth, dict) else None
    h, w = ann.image_size
    if ann.gripper.uv is not None and gt is not None:
        acc.frame_errors.append(float(np.hypot(*(_to255(ann.gripper.uv, h, w) - _to255(gt, h, w)))))


def _clipped(raw: np.ndarray, normalized: np.ndarray, stats: act.ActionStats | None) -> np.ndarray:
    """Per dimension, 1 where normalization clipped the value at +-1: raw outside [q01, q99] on normalized
    dims, outside [-1, 1] on the others (from the normalized value alone when the statistics are missing)."""
    if stats is not None and stats.dim == raw.shape[0]:
        c = np.where(stats.mask, (raw < stats.q01) | (raw > stats.q99), np.abs(raw) > 1.0)
    else:
        c = np.abs(normalized) >= 1.0
    return c.astype(np.int64)


def trace_frames(uvs: list[list[float] | None], t: int) -> list[int]:
    """The frames step t's trace was built from: the valid points from t on, picked as the trace builder picks
    them (``linspace(0, m-1, 5, dtype=int)``, all of them when fewer than 5)."""
    future = [i for i in range(t, len(uvs)) if uvs[i] is not None]
    return [future[i] for i in select_indices(len(future), TRACE_MAX_POINTS)]


def _trace_point_errors(by_step: dict[int, _Step]) -> tuple[list[float], dict[int, list[float | None]]]:
    """Per trace point: the point vs the ground truth of the frame it came from, in [0, 255] units."""
    n = max(by_step) + 1
    if len(by_step) != n:
        return [], {}
    uvs = [by_step[t].uv for t in range(n)]
    out: list[float] = []
    per_step: dict[int, list[float | None]] = {}
    for t in range(n):
        s = by_step[t]
        if not s.trace:
            continue
        frames = trace_frames(uvs, t)
        if len(frames) != len(s.trace):
            continue  # the checker reports traces that do not follow the points
        h, w = s.image_size
        errs: list[float | None] = []
        for pt, f in zip(s.trace, frames):
            gt = by_step[f].gt
            e = None if gt is None else float(np.hypot(*(np.asarray(pt, float) - _to255(gt, h, w))))
            errs.append(e)
            if e is not None:
                out.append(e)
        per_step[t] = errs
    return out, per_step


# -- figures -------------------------------------------------------------------------------------------------


def _source_figures(name: str, acc: _SourceAcc, audit_dir: Path) -> dict:
    stats = acc.stats
    raw = np.asarray(acc.raw.items, dtype=np.float64).reshape(-1, act.ACTION_DIM)
    clipped = [float(c) / max(acc.actions, 1) for c in acc.clipped]
    q01 = stats.q01.tolist() if stats is not None else None
    q99 = stats.q99.tolist() if stats is not None else None
    safe = _safe(name)
    images = {
        "actions": f"actions-{safe}.png",
        "trace_points": f"trace-points-{safe}.png",
        "depth_codes": f"depth-codes-{safe}.png",
    }
    _write_atomic(
        audit_dir / images["actions"],
        plots.action_histograms(acc.norm_counts, NORM_EDGES, raw, clipped, q01, q99),
    )
    counts = [acc.trace_points.get(k, 0) for k in range(TRACE_MAX_POINTS + 1)]
    _write_atomic(
        audit_dir / images["trace_points"],
        plots.counts_bar(
            counts,
            "points per trace (0 = no trace)",
            f"{name}: trace length",
            labels=[str(k) for k in range(6)],
        ),
    )
    _write_atomic(
        audit_dir / images["depth_codes"],
        plots.counts_bar(acc.depth_counts.tolist(), "depth code", f"{name}: depth code usage", color="#7a4"),
    )
    n = max(acc.samples, 1)
    return {
        "samples": acc.samples,
        "episodes": len(acc.episodes),
        "actions": {
            "dims": list(plots.ACTION_DIMS),
            "clipped_share": clipped,
            "q01": q01,
            "q99": q99,
            "normalized_histogram": {"edges": NORM_EDGES.tolist(), "counts": acc.norm_counts.tolist()},
            "raw_histogram_sample": int(raw.shape[0]),
        },
        "trace": {
            "points_histogram": {str(k): c for k, c in enumerate(counts)},
            "no_trace_share": counts[0] / n,
            "mean_points": float(sum(k * c for k, c in enumerate(counts)) / max(sum(counts[1:]), 1)),
        },
        "pointer_tracker_disagree_share": acc.disagree / n,
        "depth": {
            "codes_used": int((acc.depth_counts > 0).sum()),
            "codebook": DEPTH_CODEBOOK,
            "histogram": acc.depth_counts.tolist(),
        },
        "trace_error": {
            "per_frame": _stats_of(list(acc.frame_errors)),
            "per_trace_point": _stats_of(list(acc.point_errors)),
        },
        "images": images,
    }


# -- cards ---------------------------------------------------------------------------------------------------


def stratified_sample(items: list[tuple[str, str, tuple[str, ...]]], n: int, seed: int) -> list[str]:
    """Keys of ``n`` samples drawn round-robin across strata (source, flags), shuffled with ``seed``.

    items: (key, source, flags). Every stratum gets a turn before any gets a second one, so rare flags show up
    even when most steps are clean.
    """
    rng = np.random.default_rng(seed)
    strata: dict[tuple[str, tuple[str, ...]], list[str]] = defaultdict(list)
    for key, source, flags in sorted(items):
        strata[(source, tuple(sorted(flags)))].append(key)
    names = sorted(strata)
    order = [names[i] for i in rng.permutation(len(names))]
    pools = {s: [strata[s][i] for i in rng.permutation(len(strata[s]))] for s in order}
    out: list[str] = []
    while len(out) < n and any(pools.values()):
        for s in order:
            if pools[s] and len(out) < n:
                out.append(pools[s].pop())
    return out


class _DepthDecoder:
    """Decodes depth codes with the job's tokenizer (run.json ``models.depth_tokenizer.path``), or draws the
    code grid itself when that checkpoint is not here (said in the report's notes)."""

    def __init__(self, out_dir: Path, run: dict, notes: list[str]):
        self.tokenizer = None
        path = rd.nested(run, "models.depth_tokenizer.path")
        candidates = [Path(path), out_dir / path] if path else []
        for p in candidates:
            if p.exists():
                try:
                    from armdata.annotators.depth.tokenizer import DepthTokenizer

                    self.tokenizer = DepthTokenizer.from_checkpoint(str(p))
                    self.path = str(p)
                    return
                except ArmdataError as e:
                    notes.append(f"depth tokenizer {p} not loadable ({e}); depth shown as the code grid")
                    return
        notes.append(
            f"depth tokenizer {path!r} (run.json models.depth_tokenizer.path) not found; depth shown as "
            "the 10x10 code grid, not decoded"
        )

    def images(self, codes: list[list[int] | None]) -> list[np.ndarray | None]:
        ok = [
            i
            for i, c in enumerate(codes)
            if c is not None and len(c) == 100 and all(0 <= int(x) < DEPTH_CODEBOOK for x in c)
        ]
        out: list[np.ndarray | None] = [None] * len(codes)
        if not ok:
            return out
        if self.tokenizer is not None:
            maps = self.tokenizer.decode(np.asarray([codes[i] for i in ok], dtype=np.int64))
            for i, m in zip(ok, maps):
                out[i] = plots.colorize_depth(m)
        else:
            for i in ok:
                out[i] = plots.code_grid_image(codes[i])
        return out

    @property
    def decoded(self) -> bool:
        return self.tokenizer is not None


def _read_cards_data(
    out_dir: Path, wanted: dict[str, str]
) -> tuple[dict[str, dict[str, bytes]], dict[tuple[str, str], dict[int, _Step]]]:
    """Members of the wanted keys (key -> shard file name) and the light steps of their episodes, reading only
    the shards that hold them (an episode's samples all lie in one shard)."""
    by_shard: dict[str, set[str]] = defaultdict(set)
    for k, sh in wanted.items():
        by_shard[sh].add(k)
    prefixes = {"__".join(k.split("__")[:2]) + "__" for k in wanted}
    found: dict[str, dict[str, bytes]] = {}
    episodes: dict[tuple[str, str], dict[int, _Step]] = defaultdict(dict)
    for shard, keys in sorted(by_shard.items()):
        for key, members in rd.iter_shard(Path(out_dir) / rd.SHARDS_DIR / shard):
            if key in keys:
                found[key] = members
            if "__".join(key.split("__")[:2]) + "__" in prefixes:
                try:
                    ann = SampleAnnotation.from_json(members["json"])
                except (KeyError, ValueError, TypeError):
                    continue
                episodes[(ann.source, ann.episode)][ann.step] = _step_of(ann, shard)
    return found, episodes


def _card_picture(members: dict[str, bytes], ann: SampleAnnotation, episode: dict[int, _Step]) -> np.ndarray:
    """The primary image with the trace drawn as MolmoAct's loader draws it, then enlarged, with the gripper
    points of the frames the trace came from (red) and their ground truth (green)."""
    from armdata.annotators.draw import draw_trace

    rgb = plots.decode_rgb(members["jpg"])
    if ann.trace_uv255:
        rgb = draw_trace(rgb, ann.trace_uv255)
    big, scale = plots.upscale(rgb)
    n = max(episode) + 1 if episode else 0
    if ann.trace_uv255 and len(episode) == n:
        frames = trace_frames([episode[t].uv for t in range(n)], ann.step)
    else:
        frames = [ann.step]
    est = [episode[f].uv if f in episode else None for f in frames]
    gt = [episode[f].gt if f in episode else None for f in frames]
    return plots.mark_points(big, scale, est, gt, current=0 if frames and frames[0] == ann.step else None)


def _cards(
    out_dir: Path, audit_dir: Path, chosen: list[tuple[str, str]], decoder: _DepthDecoder
) -> list[dict]:
    """chosen: (key, shard) of the sampled steps -> card dicts, their pictures written beside the page."""
    members, episodes = _read_cards_data(out_dir, dict(chosen))
    keys = [k for k, _ in chosen]
    anns = {k: SampleAnnotation.from_json(members[k]["json"]) for k in keys if k in members}
    keys = [k for k in keys if k in anns]
    depth = decoder.images([anns[k].depth_codes for k in keys])
    for old in audit_dir.glob("card-*.png"):
        old.unlink()
    cards = []
    for i, k in enumerate(keys):
        ann = anns[k]
        names = {
            "image": f"card-{i:03d}-image.png",
            "depth": f"card-{i:03d}-depth.png",
            "action": f"card-{i:03d}-action.png",
        }
        _write_atomic(
            audit_dir / names["image"],
            plots.png_bytes(_card_picture(members[k], ann, episodes[(ann.source, ann.episode)])),
        )
        if depth[i] is not None:
            _write_atomic(audit_dir / names["depth"], plots.png_bytes(depth[i]))
        else:
            names.pop("depth")
        _write_atomic(audit_dir / names["action"], plots.action_bins_chart(ann.action.bins))
        text_name = next((t for t in ("reasoning", "trajectory_conditioned") if t in ann.text), None)
        text_name = text_name or next(iter(ann.text), None)
        gt = ann.ground_truth.get("gripper_uv") if isinstance(ann.ground_truth, dict) else None
        err = None
        if ann.gripper.uv is not None and gt is not None:
            h, w = ann.image_size
            err = float(np.hypot(*(_to255(ann.gripper.uv, h, w) - _to255(gt, h, w))))
        cards.append(
            {
                "key": k,
                "source": ann.source,
                "episode": ann.episode,
                "step": ann.step,
                "num_steps": ann.num_steps,
                "flags": list(ann.flags),
                "instruction": ann.instruction,
                "trace_uv255": ann.trace_uv255,
                "action_bins": list(ann.action.bins),
                "action_ids": list(ann.action.ids),
                "template": text_name,
                "prompt": ann.text[text_name]["prompt"] if text_name else None,
                "answer": ann.text[text_name]["answer"] if text_name else None,
                "gripper_error": err,
                "images": names,
            }
        )
    return cards


# -- the report ----------------------------------------------------------------------------------------------


def _env():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = format_number
    return env


def format_number(x: Any) -> str:
    """How the page prints a number of audit.json (a test reads the page back and compares)."""
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    return f"{float(x):.4g}"


# Thresholds past which the report draws a person's eye to a figure (not failures: the data may be right).
WARN_CODES_USED = 16  # a depth tokenizer using fewer codes than this carries little depth information
WARN_NO_TRACE_SHARE = 0.2  # more untraced steps than this: the locator/tracker loses the gripper often
WARN_CLIPPED_SHARE = (
    0.05  # q01/q99 clip 2% by construction; much more means the statistics do not fit the data
)
WARN_DISAGREE_SHARE = 0.1


def quality_warnings(sources: dict, check: CheckReport) -> list[str]:
    """Plain sentences about figures that deserve a look."""
    out = []
    if not check.ok:
        out.append(f"the checker found {len(check.failures)} failure(s): see Checks")
    for name, s in sources.items():
        if s["depth"]["codes_used"] < WARN_CODES_USED:
            out.append(
                f"{name}: only {s['depth']['codes_used']} of {s['depth']['codebook']} depth codes are used"
            )
        if s["trace"]["no_trace_share"] > WARN_NO_TRACE_SHARE:
            out.append(f"{name}: {100 * s['trace']['no_trace_share']:.0f}% of steps have no trace")
        for dim, c in zip(s["actions"]["dims"], s["actions"]["clipped_share"]):
            if c > WARN_CLIPPED_SHARE:
                out.append(f"{name}: {100 * c:.0f}% of {dim} values are clipped at +-1")
        if s["pointer_tracker_disagree_share"] > WARN_DISAGREE_SHARE:
            out.append(
                f"{name}: pointer and tracker disagree on {100 * s['pointer_tracker_disagree_share']:.0f}% "
                "of steps"
            )
    return out


def compute_audit(
    out_dir: str | Path, samples: int = DEFAULT_SAMPLES, seed: int = 0, check: CheckReport | None = None
) -> dict:
    """Read the output, write the figures into ``OUT/audit`` and return the audit dict (audit.json's
    content)."""
    out_dir = Path(out_dir)
    audit_dir = out_dir / AUDIT_DIR
    audit_dir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    run = rd.read_run(out_dir)
    check = check if check is not None else check_output(out_dir)
    notes += check.notes
    raw_stats = rd.read_statistics(out_dir)
    statistics = {}
    for name, entry in raw_stats.items():
        try:
            statistics[name] = act.ActionStats.from_json(entry)
        except (KeyError, ValueError, TypeError):
            notes.append(f"statistics of {name} unreadable: clipping judged from the normalized values")
    scan = _scan(out_dir, statistics, samples, seed)
    dead, bad_dead = rd.read_dead_letters(out_dir)
    sources = {
        name: _source_figures(name, scan.per_source[name], audit_dir) for name in sorted(scan.per_source)
    }

    frame_all = [e for a in scan.per_source.values() for e in a.frame_errors]
    point_all = [e for a in scan.per_source.values() for e in a.point_errors]
    has_gt = bool(frame_all or point_all)
    images = {}
    if has_gt:
        images["trace_error"] = "trace-error.png"
        _write_atomic(
            audit_dir / images["trace_error"],
            plots.error_histogram(
                {"per frame": frame_all, "per trace point": point_all},
                "gripper / trace error against ground truth",
            ),
        )

    candidates = [item for r in scan.strata.values() for item in r.items]
    shard_of = {key: shard for key, _, _, shard in candidates}
    chosen = stratified_sample([(k, src, flags) for k, src, flags, _ in candidates], samples, seed)
    decoder = _DepthDecoder(out_dir, run, notes)
    cards = _cards(out_dir, audit_dir, [(k, shard_of[k]) for k in chosen], decoder)

    n_samples = sum(a.samples for a in scan.per_source.values())
    warnings = quality_warnings(sources, check)
    failures = [asdict(f) for f in check.failures[:MAX_FAILURES_SHOWN]]
    return {
        "out_dir": str(out_dir),
        "seed": seed,
        "config_hash": run.get("config_hash"),
        "summary": {
            "samples": n_samples,
            "episodes": len(scan.episodes),
            "sources": len(scan.per_source),
            "shards": check.shards,
            "templates": dict(sorted(scan.templates.items())),
            "dead_letters": len(dead),
            "failures_by_kind": dict(sorted(Counter(str(d.get("kind")) for d in dead).items())),
            "flags_by_kind": dict(sorted(scan.flags.items())),
            "check_ok": check.ok,
            "check_failures": len(check.failures),
            "unreadable_samples": scan.unreadable,
        },
        "trace_error": {
            "has_ground_truth": has_gt,
            "units": "[0,255] (u*255/(W-1), v*255/(H-1))",
            "per_frame": _stats_of(frame_all),
            "per_trace_point": _stats_of(point_all),
        },
        "sources": sources,
        "episodes_by_trace_quality": {
            "ranked": scan.worst.seen,
            "weights": dict(WEIGHTS),
            "worst_first": [q.to_dict() for q in scan.worst.worst_first()],
        },
        "check": {
            "ok": check.ok,
            "failures_by_kind": check.by_kind(),
            "failures": failures,
            "failures_shown": len(failures),
            "notes": list(check.notes),
        },
        "dead_letter_lines_unreadable": len(bad_dead),
        "depth_decoded": decoder.decoded,
        "cards": cards,
        "images": images,
        "warnings": warnings,
        "notes": notes,
    }


def run_audit(out_dir: str | Path, samples: int = DEFAULT_SAMPLES, seed: int = 0) -> Path:
    """Write ``OUT/audit/index.html``, its PNGs and ``OUT/audit/audit.json``; returns the page's path."""
    import json

    out_dir = Path(out_dir)
    audit = compute_audit(out_dir, samples=samples, seed=seed)
    audit_dir = out_dir / AUDIT_DIR
    page = _env().get_template("index.html").render(a=audit, title=f"armdata audit: {out_dir.name}")
    _write_atomic(audit_dir / AUDIT_JSON, json.dumps(audit, indent=1, sort_keys=True))
    _write_atomic(audit_dir / INDEX_HTML, page)
    logger.info("audit written to %s", audit_dir / INDEX_HTML)
    return audit_dir / INDEX_HTML


# -- one episode ---------------------------------------------------------------------------------------------


def _episode_members(out_dir: Path, source: str, episode: str) -> list[tuple[str, dict[str, bytes]]]:
    """Every sample of one episode (the index says which shards; every shard is read when it cannot)."""
    rows = None
    try:
        rows = rd.read_index_rows(out_dir)
    except Exception as e:  # a damaged index: fall back to reading every shard
        logger.warning("index unreadable (%s); scanning every shard", e)
    shards = None
    if rows:
        shards = sorted(
            {Path(str(r["shard"])).name for r in rows if r["source"] == source and r["episode"] == episode}
        )
    paths = [out_dir / rd.SHARDS_DIR / s for s in shards] if shards else rd.shard_paths(out_dir)
    prefix = f"{source}__{episode}__"
    out = []
    for p in paths:
        out += [(k, m) for k, m in rd.iter_shard(p) if k.startswith(prefix)]
    return out


def resolve_episode(out_dir: Path, key: str) -> tuple[str, str]:
    """``{source}__{episode}`` (or a sample key, or a bare episode key that one source has) -> (source,
    episode)."""
    parts = key.split("__")
    if len(parts) >= 2:
        return parts[0], parts[1]
    rows = rd.read_index_rows(out_dir) or []
    hits = sorted({(r["source"], r["episode"]) for r in rows if r["episode"] == key})
    if len(hits) == 1:
        return hits[0]
    known = sorted({f"{r['source']}__{r['episode']}" for r in rows})
    raise ArmdataError(
        f"episode {key!r}: give it as SOURCE__EPISODE; "
        f"{'several sources have it' if hits else 'not found'} (episodes: {', '.join(known[:20])})"
    )


def write_episode_report(out_dir: str | Path, key: str, max_frames: int = 10) -> Path:
    """``OUT/audit/episode-KEY/index.html``: filmstrip with the gripper track, depth strip decoded from the
    codes, actions over time, per-step table. Returns the page's path."""
    out_dir = Path(out_dir)
    source, episode = resolve_episode(out_dir, key)
    samples = _episode_members(out_dir, source, episode)
    if not samples:
        raise ArmdataError(f"episode {source}__{episode}: no samples in {out_dir / rd.SHARDS_DIR}")
    anns = {}
    members = {}
    for k, m in samples:
        a = SampleAnnotation.from_json(m["json"])
        anns[a.step] = a
        members[a.step] = m
    steps = sorted(anns)
    n = len(steps)
    page_dir = out_dir / AUDIT_DIR / f"episode-{_safe(f'{source}__{episode}')}"
    notes: list[str] = []
    run = rd.read_run(out_dir)
    by_step = {
        t: _Step(
            anns[t].key,
            "",
            t,
            list(anns[t].flags),
            anns[t].gripper.uv,
            anns[t].ground_truth.get("gripper_uv") if isinstance(anns[t].ground_truth, dict) else None,
            anns[t].trace_uv255,
            list(anns[t].image_size),
        )
        for t in steps
    }
    est = [by_step[t].uv for t in steps]
    gt = [by_step[t].gt for t in steps]

    shown = sorted({steps[i] for i in np.linspace(0, n - 1, min(n, max_frames)).astype(int)})
    frames = []
    for t in shown:
        big, scale = plots.upscale(plots.decode_rgb(members[t]["jpg"]), 240)
        frames.append(plots.mark_points(big, scale, est, gt, current=steps.index(t), track=True))
    labels = [f"step {t}" for t in shown]
    images = {"filmstrip": "filmstrip.png", "depth": "depth-strip.png", "actions": "actions.png"}
    _write_atomic(page_dir / images["filmstrip"], plots.png_bytes(plots.hstack(frames, labels)))
    decoder = _DepthDecoder(out_dir, run, notes)
    depth = decoder.images([anns[t].depth_codes for t in shown])
    if any(d is not None for d in depth):
        tiles = [d if d is not None else np.full((320, 320, 3), 255, np.uint8) for d in depth]
        _write_atomic(page_dir / images["depth"], plots.png_bytes(plots.hstack(tiles, labels)))
    else:
        images.pop("depth")
    normalized = np.asarray([anns[t].action.normalized for t in steps], dtype=np.float64)
    decoded = np.stack(
        [act.ids_to_normalized(np.asarray(anns[t].action.ids), anns[t].action.vocab_size) for t in steps]
    )
    _write_atomic(
        page_dir / images["actions"],
        plots.action_timeline(normalized, decoded, [FLAG_NO_TRACE in anns[t].flags for t in steps]),
    )

    errors: list[float | None] = []
    for t in steps:
        a = anns[t]
        h, w = a.image_size
        g = by_step[t].gt
        errors.append(
            float(np.hypot(*(_to255(a.gripper.uv, h, w) - _to255(g, h, w))))
            if a.gripper.uv is not None and g is not None
            else None
        )
    if any(e is not None for e in errors):
        images["errors"] = "gripper-error.png"
        _write_atomic(page_dir / images["errors"], plots.error_timeline(errors))
    _, point_errors = _trace_point_errors(by_step) if steps == list(range(n)) else ([], {})
    rows = []
    for i, t in enumerate(steps):
        a = anns[t]
        rows.append(
            {
                "step": t,
                "flags": a.flags,
                "uv": a.gripper.uv,
                "gt": by_step[t].gt,
                "error": errors[i],
                "trace": a.trace_uv255,
                "trace_errors": point_errors.get(t),
                "bins": a.action.bins,
                "method": a.gripper.method,
                "confidence": a.gripper.confidence,
            }
        )
    first = anns[steps[0]]
    page = (
        _env()
        .get_template("episode.html")
        .render(
            title=f"armdata episode {source}__{episode}",
            source=source,
            episode=episode,
            num_steps=first.num_steps,
            present=n,
            instruction=first.instruction,
            images=images,
            rows=rows,
            notes=notes,
            depth_decoded=decoder.decoded,
            shown=shown,
        )
    )
    path = page_dir / INDEX_HTML
    _write_atomic(path, page)
    logger.info("episode page written to %s", path)
    return path
