"""Beam plumbing shared by the jobs: pipeline options, reading episodes, dead letters.

Reading: the shard files of a source are listed at construction time; each shard is read by one worker (a
``Reshuffle`` spreads the records), and records are decoded and standardized in workers. Episodes stay whole.
Bad episodes become dead-letter dicts (``RecordError.to_dict()``) on a separate output; they are counted with Beam
metrics and never stop the job on their own.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import uuid

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pvalue import TaggedOutput

from armdata.pipeline import fs
from armdata.pipeline.sources.rlds import (
    EpisodeDecoder,
    episode_key,
    iter_records_or_errors,
    shard_lengths,
    shard_paths,
)
from armdata.pipeline.sources.standardize import standardize
from armdata.schemas.errors import ArmdataError, RecordError
from armdata.schemas.source import SourceConfig

logger = logging.getLogger(__name__)

FAILURES = "failures"
METRICS_NAMESPACE = "armdata"


def pipeline_options(beam_args: list[str]) -> PipelineOptions:
    """Beam options from the flags armdata did not know; they pass straight through to Beam."""
    return PipelineOptions(list(beam_args))


def beam_option_names() -> set[str]:
    """Every ``--flag`` Beam's pipeline options define, read from Beam itself: each registered PipelineOptions class
    adds its flags to a parser, as ``PipelineOptions.get_all_options`` does (runner modules that define their own
    options, such as the Dask runner's, are imported first where they import)."""
    import importlib

    from apache_beam.options import pipeline_options as po

    for module in ("apache_beam.runners.dask.dask_runner",):
        try:
            importlib.import_module(module)
        except ImportError:  # that runner's packages are not installed: its flags are not usable either
            pass
    parser = po._BeamArgumentParser(allow_abbrev=False)
    seen: dict[str, type] = {}
    for cls in po.PipelineOptions.__subclasses__():
        seen.setdefault(str(cls), cls)
    for cls in seen.values():
        cls._add_argparse_args(parser)
    return {opt for action in parser._actions for opt in action.option_strings if opt.startswith("--")}


def check_beam_args(beam_args: list[str], own_flags: list[str]) -> None:
    """Every flag armdata did not know must be a Beam pipeline option; otherwise an ArmdataError naming the
    closest armdata flag (or Beam option) instead of handing a typo silently to Beam."""
    import difflib

    known = None
    for arg in beam_args:
        if not arg.startswith("-") or arg == "--" or _is_number(arg):
            continue
        name = arg.split("=", 1)[0]
        known = known if known is not None else beam_option_names()
        if name in known:
            continue
        own = difflib.get_close_matches(name.replace("_", "-"), own_flags, n=1, cutoff=0.6)
        beam_near = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)
        hint = (f"did you mean {own[0]}?" if own else f"did you mean the Beam option {beam_near[0]}?" if beam_near
                else "it is neither an armdata flag (see --help) nor a Beam pipeline option")
        raise ArmdataError(f"unknown flag {name}: {hint}")


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def make_pipeline(beam_args: list[str]) -> beam.Pipeline:
    """A pipeline on the runner the flags name; locally Beam's in-process FnApiRunner (no network attempt).

    ``--direct_num_workers N --direct_running_mode multi_processing`` runs N worker processes on it.
    """
    opts = pipeline_options(beam_args)
    fs.configure(beam_args)
    runner = opts.get_all_options().get("runner")
    if runner:
        return beam.Pipeline(options=opts)
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    return beam.Pipeline(runner=FnApiRunner(), options=opts)


SKIPPED = "skipped"
MAIN = "main"


class _Tagged(beam.DoFn):
    """Runs a DoFn and turns what it yields into (tag, value) pairs: ``TaggedOutput(tag, v)`` -> (tag, v), anything
    else -> (MAIN, v). Lifecycle calls pass through, so the wrapped DoFn's setup() still loads its model once."""

    def __init__(self, fn: beam.DoFn):
        self.fn = fn

    def setup(self):
        self.fn.setup()

    def start_bundle(self):
        self.fn.start_bundle()

    def process(self, element, *args):
        for out in self.fn.process(element, *args) or ():
            yield (out.tag, out.value) if isinstance(out, TaggedOutput) else (MAIN, out)

    def finish_bundle(self):
        # finish_bundle emits WindowedValues (TaggedOutput-wrapped for a tag): tag them like process's outputs.
        for out in self.fn.finish_bundle() or ():
            tag, wv = (out.tag, out.value) if isinstance(out, TaggedOutput) else (MAIN, out)
            yield wv.with_value((tag, wv.value))

    def teardown(self):
        self.fn.teardown()


def _select(item, tag: str):
    if item[0] == tag:
        yield item[1]


def par_do(pcoll, label: str, fn: beam.DoFn, *side_inputs, tags: tuple[str, ...] = (FAILURES,)) -> dict:
    """``pcoll | label >> ParDo(fn)`` with its tagged outputs split apart: {MAIN: ..., tag: ...}.

    Not ``.with_outputs()``: Beam 2.77's Dask runner sends every output of a multi-output ParDo down every branch.
    One ParDo of (tag, value) pairs and one FlatMap per tag give the same result on every runner.
    """
    tagged = pcoll | label >> beam.ParDo(_Tagged(fn), *side_inputs)
    out = {MAIN: tagged | f"{label}/{MAIN}" >> beam.FlatMap(_select, MAIN)}
    for tag in tags:
        out[tag] = tagged | f"{label}/{tag}" >> beam.FlatMap(_select, tag)
    return out


def finish_bundle_outputs_kept(beam_args: list[str]) -> bool:
    """False for Beam 2.77's Dask runner, which drops what a DoFn emits from ``finish_bundle`` (it collects a
    partition's outputs before calling it); DoFns that buffer across elements must then emit from ``process``."""
    runner = pipeline_options(beam_args).get_all_options().get("runner") or ""
    return "DaskRunner" not in str(runner)


def join_sinks(sinks: list) -> None:
    """Join every sink into one last step of the pipeline.

    Beam 2.77's Dask runner computes only the last step it visits and what that step reads: a sink on another
    branch would silently never run. With one last step that reads every sink, each runner runs them all.
    """
    _ = tuple(sinks) | "Finish" >> beam.Flatten() | "Done" >> beam.Filter(lambda _: False)


class ReadShardRecords(beam.DoFn):
    """shard path -> (shard path, record index, serialized example) for every record in it.

    Episodes whose key is in ``skip`` (work already done, for resume) are not passed on: their key goes to the
    ``skipped`` output instead, before anything is decoded.
    """

    def __init__(self, source_name: str, split: str = "train", skip: frozenset[str] = frozenset(),
                 lengths: dict[str, int] | None = None):
        self.source_name = source_name
        self.split = split
        self.skip = skip
        self.lengths = dict(lengths or {})
        self.records = beam.metrics.Metrics.counter(METRICS_NAMESPACE, f"{source_name}/records_read")
        self.skipped = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "episodes_skipped")
        self.lost = beam.metrics.Metrics.counter(METRICS_NAMESPACE, f"{source_name}/records_lost")

    def process(self, shard: str):
        # A shard cut short keeps the records before the cut; each episode past it is a dead letter.
        for i, rec in iter_records_or_errors(self.source_name, self.split, shard, self.lengths.get(shard)):
            if isinstance(rec, RecordError):
                self.lost.inc()
                yield TaggedOutput(FAILURES, rec.to_dict())
                continue
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
    lengths = shard_lengths(source, decoder.builder)
    records = par_do(p | f"ListShards[{label}]" >> beam.Create(shards), f"ReadRecords[{label}]",
                     ReadShardRecords(source.name, source.data.split, skip, lengths), tags=(SKIPPED, FAILURES))
    outs = par_do(records[MAIN] | f"Spread[{label}]" >> beam.Reshuffle(), f"Standardize[{label}]",
                  DecodeAndStandardize(source))
    failures = (records[FAILURES], outs[FAILURES]) | f"ReadFailures[{label}]" >> beam.Flatten()
    return outs[MAIN], failures, records[SKIPPED]


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
    keys = par_do(p | f"ListEpisodes[{label}]" >> beam.Create(reader.episode_keys()), f"SkipDone[{label}]",
                  SkipDone(skip), tags=(SKIPPED,))
    outs = par_do(keys[MAIN] | f"Spread[{label}]" >> beam.Reshuffle(), f"Standardize[{label}]",
                  ReadLeRobotEpisode(source))
    return outs[MAIN], outs[FAILURES], keys[SKIPPED]


class WriteLines(beam.PTransform):
    """PCollection[str] -> one file of sorted lines at ``path`` (written atomically through ``fs``; empty when none).

    Instead of ``WriteToText``: its sink writes nothing on some runners (seen on Dask) and an empty shard fails on
    S3 (Beam's uploader cannot write 0 bytes); sorted lines also make the file the same on every runner. For small
    outputs only (dead letters, one statistics entry per dataset): every line passes through one worker.
    """

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def expand(self, lines):
        # One group under one key, with a marker so that the group exists (and the file is written) when there is
        # no line. Not CombineGlobally: its empty-input default is a side input, which the Dask runner computes
        # by running everything upstream a second time inside a worker.
        path = self.path
        marker = lines.pipeline | "Marker" >> beam.Create([(0, None)])
        return (
            (lines | "Key" >> beam.Map(lambda x: (0, x)), marker)
            | "Join" >> beam.Flatten()
            | "Collect" >> beam.GroupByKey()
            | "Write" >> beam.MapTuple(lambda _, ls: fs.write_bytes(
                path, "".join(x + "\n" for x in sorted(x for x in ls if x is not None)).encode()))
        )


def write_failures(failures, out_dir: str, label: str = "WriteFailures"):
    """Dead letters as one JSON-lines file, ``failures.jsonl`` in the output directory (empty when none)."""
    return (
        failures
        | f"{label}/ToJson" >> beam.Map(lambda d: json.dumps(d, sort_keys=True))
        | f"{label}/Write" >> WriteLines(fs.join(out_dir, FAILURES + ".jsonl"))
    )


def read_failures(out_dir: str) -> list[dict]:
    path = fs.join(out_dir, FAILURES + ".jsonl")
    if not fs.exists(path):
        return []
    return [json.loads(line) for line in fs.read_bytes(path).decode("utf-8").splitlines() if line.strip()]


class TooManyFailures(ArmdataError):
    pass


def check_failure_fraction(n_failed: int, n_total: int, max_fraction: float, what: str = "episodes",
                           failures_file: str = "failures.jsonl") -> None:
    """Fail the job only past a configurable fraction of bad records (the rest are in the failures file)."""
    if n_total and n_failed / n_total > max_fraction:
        raise TooManyFailures(
            f"{n_failed} of {n_total} {what} failed ({n_failed / n_total:.1%} > the allowed {max_fraction:.1%}, "
            f"--max-failure-fraction); see {failures_file}"
        )
    if n_failed:
        logger.warning("%d of %d %s failed; they are listed in %s", n_failed, n_total, what, failures_file)


class FailureBudget:
    """The one failure budget of a job, checked as dead letters are made, so a job over all-bad data stops after
    a handful of episodes instead of after hours.

    Each worker process counts the episodes it has dead-lettered; the global count is at least that, so once one
    process has seen more than ``max_fraction * total`` the job can no longer pass and stops there. A fatal dead
    letter (a ``fail`` policy in a source file's checks) stops it at once. Before raising, the worker writes
    ``stop_file`` (the reason and the dead letters it saw) so the launching process can name the reason in one
    line and keep the dead letters, whatever the runner did with the exception.
    """

    _counts: dict[str, list] = {}  # token -> dead letters seen in this process
    _lock = threading.Lock()

    def __init__(self, total: int, max_fraction: float, stop_file: str, failures_file: str = "failures.jsonl"):
        self.total = int(total)
        self.max_fraction = float(max_fraction)
        self.stop_file = stop_file
        self.failures_file = failures_file
        self.token = uuid.uuid4().hex

    @property
    def allowed(self) -> int:
        """The most failed episodes the job may have and still pass."""
        return int(math.floor(self.max_fraction * self.total + 1e-9))

    def charge(self, dead_letter: dict) -> dict:
        """Count one dead letter (pass-through, for ``beam.Map``); raises TooManyFailures past the budget."""
        with self._lock:
            seen = self._counts.setdefault(self.token, [])
            seen.append(dead_letter)
            n = sum(1 for d in seen if d.get("episode") is not None)
        reason = None
        if dead_letter.get("fatal"):
            reason = (f"stopped: {RecordError.from_dict(dead_letter)} - the source file's checks say this stops "
                      f"the job")
        elif n > self.allowed and self.max_fraction < 1.0:
            reason = (f"stopped early: {n} of {self.total} episodes failed so far, more than the allowed "
                      f"{self.max_fraction:.1%} (--max-failure-fraction); the last: {RecordError.from_dict(dead_letter)}")
        if reason:
            body = json.dumps({"reason": reason, "failures": seen[:1000]}).encode()
            from armdata.pipeline import fs

            try:
                fs.write_bytes(self.stop_file, body)
            except Exception:  # the reason still travels in the exception
                logger.exception("could not write %s", self.stop_file)
            raise TooManyFailures(reason)
        return dead_letter

    def stopped(self) -> tuple[str, list[dict]] | None:
        """(reason, dead letters) when a worker stopped the job, read in the launching process."""
        from armdata.pipeline import fs

        if not fs.exists(self.stop_file):
            return None
        d = json.loads(fs.read_bytes(self.stop_file))
        return d["reason"], d.get("failures", [])

    def clear(self) -> None:
        from armdata.pipeline import fs

        if fs.exists(self.stop_file):
            fs.delete([self.stop_file])


def run_with_budget(p: beam.Pipeline, budget: FailureBudget, failures_path: str, sinks: list | None = None):
    """Run a pipeline; when its failure budget stopped it, write the dead letters seen to ``failures_path`` and
    raise one TooManyFailures line (not the runner's traceback). ``sinks``: every output-writing step, joined
    into one last step so that every runner runs them all (see join_sinks)."""
    if sinks:
        join_sinks(sinks)
    budget.clear()
    try:
        result = p.run()
        result.wait_until_finish()
    except Exception as e:
        stopped = budget.stopped()
        if stopped is None:
            if "TooManyFailures" in f"{type(e).__name__}: {e}":  # a runner that lost the stop file
                raise TooManyFailures(str(e).split("TooManyFailures:")[-1].strip().splitlines()[0]) from None
            raise
        reason, seen = stopped
        from armdata.pipeline import fs

        fs.write_bytes(failures_path, "".join(json.dumps(d, sort_keys=True) + "\n" for d in seen).encode())
        budget.clear()
        raise TooManyFailures(f"{reason}; dead letters so far in {failures_path}") from None
    return result


def counter_value(result, name: str) -> int:
    """The committed (or attempted) value of one armdata counter from a finished pipeline result."""
    from apache_beam.metrics.metric import MetricsFilter

    res = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE).with_name(name))
    total = 0
    for c in res["counters"]:
        v = c.committed if c.committed is not None else c.attempted
        total += int(v or 0)
    return total
