"""The camera-fit pass: before the annotate job, fit each source's camera (or each episode's, where the source
file says its camera moves between episodes) to the points tables it uses.

ListShards -> ReadRecords -> Observe (decode only the end-effector state and metadata; join the table's points of
the episode) -> GroupByKey(fit key) -> Fit -> one JSON line per fit. The driver collects the lines into
``FitData`` and caches them as ``cameras.json`` in the job's work folder (named by the config hash, which covers
the tables' contents), so a resumed run does not fit again.
"""

from __future__ import annotations

import json
import logging

import apache_beam as beam
from apache_beam.pvalue import TaggedOutput

from armdata.beam_jobs.common import (
    FAILURES,
    METRICS_NAMESPACE,
    ReadShardRecords,
    make_pipeline,
    read_standard_episodes,
)
from armdata.pipeline import fs
from armdata.pipeline.sources.read import RLDS, read_episodes, source_format
from armdata.pipeline.sources.rlds import shard_paths
from armdata.pipeline.stages.fit import (
    FIT_FILE,
    EefDecoder,
    FitData,
    LoadedTables,
    fit_group,
    fit_key_of,
    observations,
    settings_from,
)
from armdata.schemas.errors import ArmdataError, RecordError
from armdata.schemas.source import SourceConfig

logger = logging.getLogger(__name__)


class Observe(beam.DoFn):
    """(shard, index, record) -> (fit key, EpisodeObservations) for an episode the table has points for."""

    def __init__(self, source: SourceConfig, table, image_size: tuple[int, int]):
        self.source = source
        self.table = table
        self.image_size = image_size
        self.with_points = beam.metrics.Metrics.counter(METRICS_NAMESPACE, f"{source.name}/fit_episodes_with_points")
        self.failed = beam.metrics.Metrics.counter(METRICS_NAMESPACE, f"{source.name}/fit_episodes_failed")

    def setup(self):
        self.decoder = EefDecoder(self.source)

    def process(self, item):
        shard, index, record = item
        try:
            key, metadata, eef = self.decoder.decode(record, shard, index)
            obs = observations(self.source, self.table, key, metadata, eef, *self.image_size)
        except RecordError as e:
            self.failed.inc()
            yield TaggedOutput(FAILURES, e.to_dict())
            return
        if obs is not None:
            self.with_points.inc()
            yield fit_key_of(self.source, key), obs


class ObserveStandard(beam.DoFn):
    """StandardEpisode -> (fit key, EpisodeObservations), for formats read whole (LeRobot: the video is decoded)."""

    def __init__(self, source: SourceConfig, table):
        self.source = source
        self.table = table

    def process(self, ep):
        h, w = ep.image_size
        obs = observations(self.source, self.table, ep.episode_key, ep.metadata, ep.eef_position, h, w,
                           ep.source_episode_id)
        if obs is not None:
            yield fit_key_of(self.source, ep.episode_key), obs


def _observe(p, s: SourceConfig, table):
    """The fit's observations of one source: RLDS decodes only the state; other formats are read whole."""
    if source_format(s) != RLDS:
        eps, _ = read_standard_episodes(p, s, f"Fit[{s.name}]")
        return eps | f"Observe[{s.name}]" >> beam.ParDo(ObserveStandard(s, table))
    return (
        p
        | f"FitShards[{s.name}]" >> beam.Create(shard_paths(s))
        | f"FitRecords[{s.name}]" >> beam.ParDo(ReadShardRecords(s.name, s.data.split))
        | f"FitSpread[{s.name}]" >> beam.Reshuffle()
        | f"Observe[{s.name}]" >> beam.ParDo(Observe(s, table, _image_size(s))).with_outputs(FAILURES, main="obs")
    ).obs


def _image_size(source: SourceConfig) -> tuple[int, int]:
    size = EefDecoder(source).image_size()
    if size is None:  # a spec without a fixed size: the first episode's frames say it
        ep = next(iter(read_episodes(source, limit=1)))
        size = tuple(ep.frames[source.cameras.primary].shape[1:3])
    return size


def fit_cameras(sources: list[SourceConfig], trace_cfg, tables: LoadedTables, work_dir: str,
                beam_args: list[str]) -> FitData:
    """Fit every camera the sources in ``tables`` need; cached in ``work_dir/cameras.json``."""
    path = fs.join(work_dir, FIT_FILE)
    if fs.exists(path):
        logger.info("camera fit: reusing %s", path)
        return FitData.from_dict(json.loads(fs.read_bytes(path)))
    fitting = [s for s in sources if s.name in tables.tables]
    settings = settings_from(trace_cfg)
    p = make_pipeline(beam_args)
    keyed = []
    for s in fitting:
        keyed.append(_observe(p, s, tables.tables[s.name]))
    parts_dir = fs.join(work_dir, "fit")
    fs.makedirs(parts_dir)
    _ = (
        keyed
        | "AllObservations" >> beam.Flatten()
        | "ByFitKey" >> beam.GroupByKey()
        | "Fit" >> beam.MapTuple(lambda key, obs: json.dumps(fit_group(key, list(obs), settings)))
        | "WriteFits" >> beam.io.WriteToText(fs.join(parts_dir, "fits"), file_name_suffix=".jsonl", num_shards=1,
                                             shard_name_template="")
    )
    p.run().wait_until_finish()
    cameras, points = {}, {}
    for line in fs.read_bytes(fs.join(parts_dir, "fits.jsonl")).decode().splitlines():
        if line.strip():
            rec = json.loads(line)
            cameras[rec["key"]] = rec["camera"]
            points.update(rec["points"])
    data = FitData(cameras, points, sorted(s.name for s in fitting if s.camera_moves_between_episodes),
                   tables.files, trace_cfg.fit_extrapolate_margin)
    for s in fitting:
        if any(k == s.name or k.startswith(s.name + "__") for k in cameras):
            continue
        if tables.tables[s.name].rows:  # rows that name no episode: the table's keys are wrong, not its points
            raise ArmdataError(
                f"source {s.name}: no row of its points tables ({', '.join(tables.files) or 'none'}) names one of its "
                f"episodes: the 'episode' column must hold episode_metadata/file_path or armdata's episode key"
            )
        # No usable point at all (a pointer that found nothing): every step is flagged fit_missing, nothing made up.
        logger.warning("source %s: its points tables hold no usable point; no step gets a trace (flag fit_missing)",
                       s.name)
    _log_summary(data, [s.name for s in fitting])
    fs.write_bytes(path, json.dumps(data.to_dict(), sort_keys=True).encode())
    return data


def _log_summary(data: FitData, names: list[str]) -> None:
    for name, e in data.summary(names)["per_source"].items():
        logger.info("camera fit %s (%s): %d/%d fits usable, %d points from %d episodes, %d disagree with the fit%s",
                    name, e["fit"], e["fits_ok"], e["fits"], e["points"], e["episodes_with_points"],
                    e["points_disagreeing"], f"; problems: {e['problems']}" if e["problems"] else "")
