"""``armdata locate --source FILE --out POINTS``: the only VLM stage. A pointing model (Molmo 1 or 2) or an
open-vocabulary detector answers on a seeded sample of frames spread over episodes, and the answers become a
points table that ``armdata build --points POINTS`` fits the camera to.

Which frames: a seeded sample of episodes (``--max-frames / --frames-per-episode`` of them, spread over the
sources), and in each, ``--frames-per-episode`` frames drawn one from each of equal slices of the episode (so they
span its motion). Episodes not sampled are skipped before decoding. It runs apart from the rest (a GPU pool, or a
served model): ``--set trace.pointer_device=cuda`` and a Beam runner's flags.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass

import apache_beam as beam
import numpy as np
from apache_beam.utils.shared import Shared

from armdata.annotators.locate.points import PointRow, encode_points
from armdata.beam_jobs.common import METRICS_NAMESPACE, counter_value, make_pipeline, read_standard_episodes_resumable
from armdata.pipeline import fs
from armdata.pipeline.sources.read import episode_keys
from armdata.pipeline.stages.config import load_config
from armdata.schemas.errors import ArmdataError
from armdata.schemas.source import SourceConfig, resolve_source

logger = logging.getLogger(__name__)

ACCEPTS_BEAM_ARGS = True


def _seed_of(*parts) -> int:
    return int(hashlib.sha256("/".join(str(p) for p in parts).encode()).hexdigest()[:12], 16)


def pick_episodes(keys: list[str], n: int, seed: int, source: str) -> list[str]:
    """A seeded sample of n episode keys (all of them when n >= len(keys)), in key order."""
    if n >= len(keys):
        return sorted(keys)
    rng = np.random.default_rng(_seed_of(seed, source))
    return sorted(rng.choice(sorted(keys), n, replace=False).tolist())


def pick_frames(num_steps: int, k: int, seed: int, episode: str) -> list[int]:
    """k frames, one drawn from each of k equal slices of the episode (fewer when it is shorter)."""
    k = min(k, num_steps)
    edges = np.linspace(0, num_steps, k + 1)
    rng = np.random.default_rng(_seed_of(seed, episode))
    out = [int(rng.integers(int(edges[j]), max(int(edges[j]) + 1, int(edges[j + 1])))) for j in range(k)]
    return sorted(set(out))


class LocateFrames(beam.DoFn):
    """StandardEpisode -> points-table rows (dicts) for the sampled frames the locator found the gripper on."""

    def __init__(self, locator, sources: dict[str, SourceConfig], frames_per_episode: int, seed: int):
        self.locator = locator
        self.sources = sources
        self.k = frames_per_episode
        self.seed = seed
        self._shared = Shared()
        self.asked = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "locate_frames_asked")
        self.found = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "locate_points_found")
        self.calls = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "locate_model_calls")

    def setup(self):
        loc = self.locator

        def load():
            loc.setup()
            return loc

        self.locator = self._shared.acquire(load, tag="locator")

    def process(self, ep):
        idx = pick_frames(ep.num_steps, self.k, self.seed, f"{ep.source}/{ep.episode_key}")
        calls0 = self.locator.calls
        results = self.locator.locate(ep, self.sources[ep.source], idx)
        self.asked.inc(len(idx))
        self.calls.inc(self.locator.calls - calls0)
        name, episode_id = _episode_names(ep)
        h, w = ep.image_size
        for t, r in zip(idx, results):
            if not r.found:
                continue
            self.found.inc()
            yield {"source": ep.source, **PointRow(
                episode=name, episode_id=episode_id, step=int(t), u=float(r.uv[0]), v=float(r.uv[1]),
                confidence=float(r.confidence), image_width=w, image_height=h, method=r.method).to_dict()}


def _episode_names(ep) -> tuple[str, str | None]:
    """The table's ``episode`` (file_path where the source has one, else armdata's key) and ``episode_id``."""
    from armdata.pipeline.stages.fit import as_text

    md = ep.metadata or {}
    path = as_text(md["file_path"]).strip() if "file_path" in md else ""
    eid = md.get("episode_id")
    if eid is not None:
        eid = np.asarray(eid)
        eid = as_text(eid) if eid.dtype.kind in "SUO" else str(eid.item())
    if not path:
        return (ep.source_episode_id or ep.episode_key), None
    return path, eid


@dataclass(frozen=True)
class LocateSummary:
    out: str
    episodes_sampled: int
    frames_asked: int
    points_found: int
    model_calls: int


def locate_points(sources: list[SourceConfig], out: str, locator, frames_per_episode: int = 2,
                  max_frames: int = 500, seed: int = 0, beam_args: list[str] | None = None) -> LocateSummary:
    """Run the locator on a seeded sample of frames and write the points table to ``out`` (.jsonl or .parquet)."""
    if frames_per_episode < 1 or max_frames < 1:
        raise ArmdataError("--frames-per-episode and --max-frames must be at least 1")
    out = fs.absolute(out)
    per_source = max(1, math.ceil(max_frames / frames_per_episode / len(sources)))
    p = make_pipeline(list(beam_args or []))
    episodes, sampled = [], 0
    for s in sources:
        keys = episode_keys(s)
        chosen = set(pick_episodes(keys, per_source, seed, s.name))
        sampled += len(chosen)
        eps, _, _ = read_standard_episodes_resumable(p, s, f"Locate[{s.name}]", frozenset(set(keys) - chosen))
        episodes.append(eps)
    tmp = out + ".parts"
    fs.makedirs(tmp)
    _ = (
        episodes
        | "AllEpisodes" >> beam.Flatten()
        | "Locate" >> beam.ParDo(LocateFrames(locator, {s.name: s for s in sources}, frames_per_episode, seed))
        | "ToJson" >> beam.Map(lambda d: json.dumps(d, sort_keys=True))
        | "Write" >> beam.io.WriteToText(fs.join(tmp, "rows"), file_name_suffix=".jsonl", num_shards=1,
                                         shard_name_template="")
    )
    result = p.run()
    result.wait_until_finish()
    rows = [json.loads(line) for line in fs.read_bytes(fs.join(tmp, "rows.jsonl")).decode().splitlines() if line]
    rows.sort(key=lambda d: (d["source"], d["episode"], str(d["episode_id"]), d["step"]))
    fs.write_bytes(out, encode_points([PointRow(**{k: v for k, v in d.items() if k != "source"}) for d in rows], out))
    fs.delete([*fs.glob(fs.join(tmp, "*")), tmp])
    return LocateSummary(out, sampled, counter_value(result, "locate_frames_asked"), len(rows),
                         counter_value(result, "locate_model_calls"))


# -- CLI ---------------------------------------------------------------------------------------------------------

def configure(parser) -> None:
    parser.add_argument("--source", action="append", required=True, help="source file or known source name (repeatable)")
    parser.add_argument("--out", required=True, help="points table to write (.jsonl or .parquet; local, gs://, s3://)")
    parser.add_argument("--config", help="annotate config YAML (its trace section names the model)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="override a config field, e.g. trace.pointer_model=allenai/Molmo-7B-D-0924")
    parser.add_argument("--locator", choices=["pointer", "detector"], default="pointer",
                        help="pointer: a pointing VLM (trace.pointer_model); detector: an open-vocabulary detector "
                        "(trace.pointer_model names its checkpoint, e.g. google/owlv2-base-patch16-ensemble)")
    parser.add_argument("--frames-per-episode", type=int, default=2, help="frames asked per sampled episode")
    parser.add_argument("--max-frames", type=int, default=500, help="frames asked in all (sets how many episodes)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the episode and frame sample")


def build_locate_locator(kind: str, trace) -> object:
    """The pointer or the detector, configured from the trace settings."""
    if not trace.pointer_model:
        raise ArmdataError("armdata locate needs a model: --set trace.pointer_model=PATH_OR_HUB_ID")
    if kind == "detector":
        from armdata.annotators.locate.detector import DetectorConfig, DetectorLocator

        return DetectorLocator(DetectorConfig(model=trace.pointer_model, device=trace.pointer_device))
    from armdata.annotators.locate.pointer import PointerConfig, PointerLocator

    return PointerLocator(PointerConfig(model=trace.pointer_model, trust_remote_code=trace.pointer_trust_remote_code,
                                        arm=trace.pointer_arm, device=trace.pointer_device))


def run(args, beam_args) -> int:
    sources = [resolve_source(s) for s in args.source]
    cfg = load_config(args.config, args.set)
    locator = build_locate_locator(args.locator, cfg.trace)
    res = locate_points(sources, args.out, locator, args.frames_per_episode, args.max_frames, args.seed, beam_args)
    print(f"located the gripper on {res.points_found} of {res.frames_asked} frames from {res.episodes_sampled} "
          f"episodes ({res.model_calls} model calls) -> {res.out}\nnext: armdata build --source ... --points {res.out}")
    return 0
