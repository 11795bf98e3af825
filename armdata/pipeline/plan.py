"""What a build will cost, before running it: counts from the data's metadata, model-hours from measured costs.

Per RLDS source: episodes from ``dataset_info.json`` (its shard lengths; nothing decoded); steps, stored image bytes
and a drawn-trace PNG size from the records of up to ``sample`` episodes, read through Beam's FileSystems without
decoding a step (every episode where the split has no more, so the counts are exact; else spread over the shards
and scaled, and marked as estimates). Frames per camera = steps (each camera has a frame at every step).

Output size per sample = the stored bytes of the cameras a sample carries (the primary's and each extra view's
JPEG pass through) + traj.png + the annotation JSON + tar headers. Model-hours per stage = frames x the seconds per
frame of the matching row of ``plan_costs.json`` (the newest measurement for that stage, model and device), on one
worker process; a stage without a row for a device is "not measured".
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from armdata.schemas.errors import ArmdataError
from armdata.schemas.source import SourceConfig

logger = logging.getLogger(__name__)

COSTS_FILE = Path(__file__).with_name("plan_costs.json")
STAGES = ("depth", "depth_codes", "trace", "samples")
TAR_BYTES_PER_MEMBER = 512 + 256  # a header, and half a 512-byte block of padding on average


@dataclass(frozen=True)
class SourcePlan:
    name: str
    episodes: int
    steps: int
    exact: bool  # steps (and sizes) counted on every episode, not scaled from a sample
    episodes_read: int
    frames: dict[str, int]  # camera field path -> frames
    bytes_per_sample: int
    output_bytes: int


@dataclass(frozen=True)
class StageCost:
    stage: str
    what: str
    device: str
    row: dict | None  # the plan_costs.json row used, None when not measured

    def hours(self, frames: int) -> float | None:
        return None if self.row is None else frames * float(self.row["seconds_per_frame"]) / 3600.0


@dataclass(frozen=True)
class Plan:
    sources: list[SourcePlan]
    stages: dict[str, list[StageCost]] = field(default_factory=dict)  # device -> cost per stage

    @property
    def frames(self) -> int:
        return sum(s.steps for s in self.sources)


def load_costs(path: str | Path = COSTS_FILE) -> dict:
    with open(path, encoding="utf-8") as f:
        table = json.load(f)
    for i, row in enumerate(table["costs"]):
        missing = {"stage", "what", "device", "seconds_per_frame", "batch", "dtype", "machine", "date"} - set(row)
        if missing:
            raise ArmdataError(f"{path}: row {i} lacks {sorted(missing)}")
    return table


def pick_cost(table: dict, stage: str, what: str, device: str) -> dict | None:
    """The newest measurement of ``what`` in ``stage`` on ``device`` (the fastest among the newest)."""
    rows = [r for r in table["costs"] if (r["stage"], r["what"], r["device"]) == (stage, what, device)]
    if not rows:
        return None
    newest = max(r["date"] for r in rows)
    return min((r for r in rows if r["date"] == newest), key=lambda r: float(r["seconds_per_frame"]))


def stage_models(cfg, source: SourceConfig) -> dict[str, str]:
    """Which measured model each stage runs for this source and config (the ``what`` of plan_costs.json)."""
    if cfg.depth.backend == "depth-camera" or (cfg.depth.backend == "auto" and source.cameras.depth
                                               and not cfg.depth.model):
        depth = "depth-camera"
    else:
        model = (cfg.depth.model or "Depth-Anything-V2-Base-hf").lower()
        size = next((s for s in ("small", "base", "large") if s in model), "base")
        depth = f"depth-anything-v2-{size}@{cfg.depth.input_size}"
    trace = "pointer" if cfg.trace.mode == "point-every-frame" else cfg.trace.tracker
    return {"depth": depth, "depth_codes": "vqvae-molmoact", "trace": trace, "samples": "samples"}


def _record_facts(record: bytes, source: SourceConfig, image_fields: list[str]) -> tuple[int, int, int]:
    """(steps, stored bytes of the sample's cameras over all steps, PNG bytes of the first primary frame)."""
    import cv2
    import numpy as np
    import tensorflow as tf

    ex = tf.train.Example.FromString(record)
    feats = ex.features.feature
    primary = feats.get(f"steps/{source.cameras.primary}")
    if primary is None or not primary.bytes_list.value:
        raise ArmdataError(f"source {source.name}: no encoded frames at steps/{source.cameras.primary} to count steps")
    steps = len(primary.bytes_list.value)
    stored = sum(len(v) for f in image_fields if (feat := feats.get(f"steps/{f}")) is not None
                 for v in feat.bytes_list.value)
    img = cv2.imdecode(np.frombuffer(primary.bytes_list.value[0], np.uint8), cv2.IMREAD_COLOR)
    png = len(cv2.imencode(".png", img)[1]) if img is not None else 0
    return steps, stored, png


def _sample_records(source: SourceConfig, builder, sample: int):
    """(record, ...) of up to ``sample`` episodes: all where the split has no more, else spread over the shards."""
    from armdata.pipeline.sources.rlds import iter_records

    split = builder.info.splits[source.data.split]
    if split.num_examples <= sample:
        for path in split.filepaths:
            for _, rec in iter_records(path):
                yield rec
        return
    shards = list(zip(split.filepaths, split.shard_lengths))
    picked = sorted({round(i * (len(shards) - 1) / max(1, sample - 1)) for i in range(sample)})
    per_shard = max(1, math.ceil(sample / len(picked)))
    for j in picked:
        for i, rec in iter_records(shards[j][0]):
            if i >= per_shard:
                break
            yield rec


def plan_source(source: SourceConfig, sample: int = 32, json_bytes: int = 5222) -> SourcePlan:
    """Counts and output size of one RLDS source (see the module docstring)."""
    from armdata.pipeline.sources.rlds import open_builder

    if source.data.format != "rlds":
        raise ArmdataError(f"source {source.name}: armdata plan reads RLDS sources only (this one is "
                           f"{source.data.format})")
    builder = open_builder(source)
    episodes = builder.info.splits[source.data.split].num_examples
    image_fields = [source.cameras.primary, *source.cameras.extra]
    n = steps = stored = png = 0
    for rec in _sample_records(source, builder, sample):
        t, b, p = _record_facts(rec, source, image_fields)
        n, steps, stored, png = n + 1, steps + t, stored + b, png + p * t
    if n == 0:
        raise ArmdataError(f"source {source.name}: no episode could be read from {builder.data_dir}")
    exact = n == episodes
    scale = episodes / n
    total_steps = steps if exact else round(steps * scale)
    members = len(image_fields) + 2  # the cameras' JPEGs, traj.png, json
    per_sample = round((stored + png) / steps + json_bytes + members * TAR_BYTES_PER_MEMBER)
    cams = [*image_fields, *([source.cameras.wrist] if source.cameras.wrist else []),
            *([source.cameras.depth] if source.cameras.depth else [])]
    return SourcePlan(source.name, episodes, total_steps, exact, n, {c: total_steps for c in cams}, per_sample,
                      per_sample * total_steps)


def make_plan(sources: list[SourceConfig], cfg, sample: int = 32, devices=("cpu", "cuda"),
              costs: dict | None = None) -> Plan:
    """Counts per source, and per device the cost row each stage uses (the stage's model for the first source;
    sources that differ in depth backend are costed by the first source's)."""
    costs = costs or load_costs()
    plans = [plan_source(s, sample, costs.get("sample_json_bytes", {}).get("value", 5222)) for s in sources]
    models = stage_models(cfg, sources[0])
    stages = {d: [StageCost(st, models[st], d, pick_cost(costs, st, models[st], d)) for st in STAGES]
              for d in devices}
    return Plan(plans, stages)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} PB"


def format_plan(plan: Plan) -> str:
    lines = []
    for s in plan.sources:
        how = "exact" if s.exact else f"estimated from {s.episodes_read} of {s.episodes} episodes"
        lines.append(f"{s.name}: {s.episodes} episodes, {s.steps} steps ({how})")
        for cam, n in s.frames.items():
            lines.append(f"  frames {cam}: {n}")
        lines.append(f"  output: {_size(s.output_bytes)} ({s.bytes_per_sample} bytes per sample)")
    total_frames = plan.frames
    lines.append(f"total: {sum(s.episodes for s in plan.sources)} episodes, {total_frames} steps, "
                 f"output {_size(sum(s.output_bytes for s in plan.sources))}")
    for device, costs in plan.stages.items():
        lines.append(f"model-hours on {device} (one worker process; primary-camera frames: {total_frames}):")
        for c in costs:
            h = c.hours(total_frames)
            if h is None:
                lines.append(f"  {c.stage:<12} {c.what:<32} not measured")
            else:
                r = c.row
                lines.append(f"  {c.stage:<12} {c.what:<32} {h:10.2f} h  ({r['seconds_per_frame']} s/frame, batch "
                             f"{r['batch']}, {r['dtype']}, {r['machine']}, {r['date']})")
    return "\n".join(lines)
