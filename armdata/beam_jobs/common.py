"""Beam plumbing shared by the jobs: pipeline options, reading episodes, dead letters.

Reading: the shard files of a source are listed at construction time; each shard is read by one worker (a
``Reshuffle`` spreads the records), and records are decoded and standardized in workers. Episodes stay whole.
Bad episodes become dead-letter dicts (``RecordError.to_dict()``) on a separate output; they are counted with Beam
metrics and never stop the job on their own.
"""

from __future__ import annotations

import json
import logging
import os

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pvalue import TaggedOutput

from armdata.pipeline.sources.rlds import EpisodeDecoder, episode_key, iter_records, shard_paths
from armdata.pipeline.sources.standardize import standardize
from armdata.schemas.errors import ArmdataError, RecordError
from armdata.schemas.source import SourceConfig

logger = logging.getLogger(__name__)

FAILURES = "failures"
METRICS_NAMESPACE = "armdata"


def pipeline_options(beam_args: list[str]) -> PipelineOptions:
    """Beam options from the flags armdata did not know; they pass straight through to Beam."""
    return PipelineOptions(list(beam_args))


def make_pipeline(beam_args: list[str]) -> beam.Pipeline:
    """A pipeline on the runner the flags name; locally Beam's in-process FnApiRunner (no network attempt).

    ``--direct_num_workers N --direct_running_mode multi_processing`` runs N worker processes on it.
    """
    opts = pipeline_options(beam_args)
    runner = opts.get_all_options().get("runner")
    if runner:
        return beam.Pipeline(options=opts)
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    return beam.Pipeline(runner=FnApiRunner(), options=opts)


SKIPPED = "skipped"


class ReadShardRecords(beam.DoFn):
    """shard path -> (shard path, record index, serialized example) for every record in it.

    Episodes whose key is in ``skip`` (work already done, for resume) are not passed on: their key goes to the
    ``skipped`` output instead, before anything is decoded.
    """

    def __init__(self, source_name: str, split: str = "train", skip: frozenset[str] = frozenset()):
        self.source_name = source_name
        self.split = split
        self.skip = skip
        self.records = beam.metrics.Metrics.counter(METRICS_NAMESPACE, f"{source_name}/records_read")
        self.skipped = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "episodes_skipped")

    def process(self, shard: str):
        for i, rec in iter_records(shard):
            if self.skip:
                key = episode_key(self.split, shard, i)
                if key in self.skip:
                    self.skipped.inc()
                    yield TaggedOutput(SKIPPED, key)
                    continue
            self.records.inc()
            yield shard, i, rec


class DecodeAndStandardize(beam.DoFn):
    """(shard, index, record) -> StandardEpisode; a bad episode goes to the ``failures`` output."""

    def __init__(self, source: SourceConfig):
        self.source = source
        self.ok = beam.metrics.Metrics.counter(METRICS_NAMESPACE, f"{source.name}/episodes_ok")
        self.failed = beam.metrics.Metrics.counter(METRICS_NAMESPACE, f"{source.name}/episodes_failed")

    def setup(self):
        self.decoder = EpisodeDecoder(self.source)
        self.decoder.features  # opens the builder and checks the source file against the data, once per worker

    def process(self, item):
        shard, index, record = item
        try:
            ep = standardize(self.decoder.decode(record, shard, index), self.source)
        except RecordError as e:
            self.failed.inc()
            yield TaggedOutput(FAILURES, e.to_dict())
            return
        self.ok.inc()
        yield ep


def read_standard_episodes(p: beam.Pipeline, source: SourceConfig, label: str | None = None):
    """Read and standardize one source. Returns (StandardEpisode PCollection, dead-letter dict PCollection).

    The source file is checked against the data's feature spec here, at construction, so a typo fails before
    any worker starts.
    """
    episodes, failures, _ = read_standard_episodes_resumable(p, source, label)
    return episodes, failures


def read_standard_episodes_resumable(
    p: beam.Pipeline, source: SourceConfig, label: str | None = None, skip: frozenset[str] = frozenset()
):
    """As read_standard_episodes, skipping episode keys in ``skip`` undecoded; also returns their keys."""
    label = label or source.name
    if source.data.format == "lerobot":
        return _read_lerobot_resumable(p, source, label, skip)
    decoder = EpisodeDecoder(source)
    decoder.features
    shards = shard_paths(source, decoder.builder)
    records = (
        p
        | f"ListShards[{label}]" >> beam.Create(shards)
        | f"ReadRecords[{label}]" >> beam.ParDo(ReadShardRecords(source.name, source.data.split, skip))
        .with_outputs(SKIPPED, main="records")
    )
    outs = (
        records.records
        | f"Spread[{label}]" >> beam.Reshuffle()
        | f"Standardize[{label}]" >> beam.ParDo(DecodeAndStandardize(source)).with_outputs(FAILURES, main="episodes")
    )
    return outs.episodes, outs[FAILURES], records[SKIPPED]


class ReadLeRobotEpisode(beam.DoFn):
    """episode key -> StandardEpisode of a LeRobot source (its frames decoded from the videos in the worker); a bad
    episode goes to the ``failures`` output. The reader keeps one data file open, so keys of one file read it once
    per worker."""

    def __init__(self, source: SourceConfig):
        self.source = source
        self.ok = beam.metrics.Metrics.counter(METRICS_NAMESPACE, f"{source.name}/episodes_ok")
        self.failed = beam.metrics.Metrics.counter(METRICS_NAMESPACE, f"{source.name}/episodes_failed")

    def setup(self):
        from armdata.pipeline.sources.lerobot import LeRobotEpisodeReader

        self.reader = LeRobotEpisodeReader(self.source)
        self.reader.check()

    def process(self, key: str):
        try:
            ep = standardize(self.reader.read(key), self.source)
        except RecordError as e:
            self.failed.inc()
            yield TaggedOutput(FAILURES, e.to_dict())
            return
        self.ok.inc()
        yield ep


class SkipDone(beam.DoFn):
    """Episode keys in ``skip`` (work already done, for resume) go to the ``skipped`` output, the rest pass on."""

    def __init__(self, skip: frozenset[str]):
        self.skip = skip
        self.skipped = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "episodes_skipped")

    def process(self, key: str):
        if key in self.skip:
            self.skipped.inc()
            yield TaggedOutput(SKIPPED, key)
        else:
            yield key


def _read_lerobot_resumable(p: beam.Pipeline, source: SourceConfig, label: str, skip: frozenset[str]):
    """A LeRobot source in parallel by episode: the keys come from the metadata at construction (which checks the
    source file against the dataset's features), each worker decodes whole episodes."""
    from armdata.pipeline.sources.lerobot import LeRobotEpisodeReader

    reader = LeRobotEpisodeReader(source)
    reader.check()
    keys = (
        p
        | f"ListEpisodes[{label}]" >> beam.Create(reader.episode_keys())
        | f"SkipDone[{label}]" >> beam.ParDo(SkipDone(skip)).with_outputs(SKIPPED, main="keys")
    )
    outs = (
        keys.keys
        | f"Spread[{label}]" >> beam.Reshuffle()
        | f"Standardize[{label}]" >> beam.ParDo(ReadLeRobotEpisode(source)).with_outputs(FAILURES, main="episodes")
    )
    return outs.episodes, outs[FAILURES], keys[SKIPPED]


def write_failures(failures, out_dir: str, label: str = "WriteFailures"):
    """Dead letters as one JSON-lines file, ``failures.jsonl`` in the output directory (empty when none)."""
    return (
        failures
        | f"{label}/ToJson" >> beam.Map(lambda d: json.dumps(d, sort_keys=True))
        | f"{label}/Write" >> beam.io.WriteToText(
            os.path.join(out_dir, FAILURES), file_name_suffix=".jsonl", num_shards=1, shard_name_template=""
        )
    )


def read_failures(out_dir: str) -> list[dict]:
    path = os.path.join(out_dir, FAILURES + ".jsonl")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class TooManyFailures(ArmdataError):
    pass


def check_failure_fraction(n_failed: int, n_total: int, max_fraction: float, what: str = "episodes") -> None:
    """Fail the job only past a configurable fraction of bad records (the rest are in failures.jsonl)."""
    if n_total and n_failed / n_total > max_fraction:
        raise TooManyFailures(
            f"{n_failed} of {n_total} {what} failed ({n_failed / n_total:.1%} > the allowed {max_fraction:.1%}); "
            f"see failures.jsonl"
        )
    if n_failed:
        logger.warning("%d of %d %s failed; they are listed in failures.jsonl", n_failed, n_total, what)


def counter_value(result, name: str) -> int:
    """The committed (or attempted) value of one armdata counter from a finished pipeline result."""
    from apache_beam.metrics.metric import MetricsFilter

    res = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE).with_name(name))
    total = 0
    for c in res["counters"]:
        v = c.committed if c.committed is not None else c.attempted
        total += int(v or 0)
    return total
