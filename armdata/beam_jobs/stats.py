"""``armdata stats``: one pass over each source's canonical actions -> ``dataset_statistics.json``.

Also the pieces the build command reuses: :class:`ComputeStatistics` (a PTransform from StandardEpisodes to one
statistics entry per dataset) and :func:`statistics_for` (cached statistics for a list of sources).

Outputs in ``--out``: ``dataset_statistics.json`` (OpenVLA / MolmoAct layout, see ``armdata.pipeline.statistics.actions``)
and ``failures.jsonl`` (one dead letter per bad episode, empty when none). Bad episodes are counted and
listed; the job fails only when more than ``--max-failure-fraction`` of the episodes are bad, or when a dataset
is left with fewer than 2 transitions (no statistics can be made from it).

Statistics are cached under a hash of what they depend on (the source file's settings, the data's
``dataset_info.json``/``features.json``, the statistics code version and settings): an unchanged source is not
recomputed, a changed one never reuses stale numbers.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterable

import apache_beam as beam
import numpy as np
from apache_beam.pvalue import TaggedOutput

from armdata.beam_jobs.common import (
    FAILURES,
    MAIN,
    METRICS_NAMESPACE,
    FailureBudget,
    WriteLines,
    check_failure_fraction,
    make_pipeline,
    par_do,
    run_with_budget,
)
from armdata.pipeline import fs
from armdata.pipeline.statistics.actions import (
    DEFAULT_EXACT_LIMIT,
    DEFAULT_SKETCH_K,
    DatasetAccumulator,
    StatsSettings,
    cache_key,
    write_json_atomic,
)
from armdata.schemas.errors import ArmdataError, RecordError
from armdata.schemas.records import StandardEpisode
from armdata.schemas.source import SourceConfig, resolve_source

logger = logging.getLogger(__name__)

ACCEPTS_BEAM_ARGS = True
STATISTICS_FILE = "dataset_statistics.json"
FAILURES_FILE = "failures.jsonl"
_DATASET_FAILED = "dataset_failed"


class StatisticsError(ArmdataError):
    """Statistics could not be made for a source (too few transitions, too many bad episodes)."""


# ---------------------------------------------------------------------------------------------------------
# Beam pieces


class CheckEpisode(beam.DoFn):
    """StandardEpisode -> (source, (actions, proprio)); a non-finite value goes to ``failures`` instead.

    The standardizer already rejects non-finite actions; proprio is checked here because one NaN state would
    poison every proprio figure. Only the arrays travel on, not the frames.
    """

    def __init__(self):
        self.ok = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "stats/episodes")
        self.transitions = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "stats/transitions")
        self.failed = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "stats/failures")

    def process(self, ep: StandardEpisode):
        for field, arr in (("action", ep.actions), ("proprio", ep.proprio)):
            if arr is None:
                continue
            bad = ~np.isfinite(arr)
            if bad.any():
                t, d = (int(x) for x in np.argwhere(bad)[0])
                self.failed.inc()
                yield TaggedOutput(FAILURES, RecordError(
                    ep.source, ep.episode_key, t, f"{field}[{d}]", f"non_finite_{field}",
                    f"{field} dimension {d} is {arr[t, d]} ({int(bad.sum())} non-finite values in the episode)",
                ).to_dict())
                return
        self.ok.inc()
        self.transitions.inc(ep.num_steps)
        yield ep.source, (ep.actions, ep.proprio)


class StatisticsCombineFn(beam.CombineFn):
    """(actions, proprio) per episode -> DatasetAccumulator -> (statistics entry or a dataset failure)."""

    def __init__(self, settings: StatsSettings):
        self.settings = settings

    def create_accumulator(self) -> DatasetAccumulator:
        return DatasetAccumulator(self.settings.exact_limit, self.settings.sketch_k)

    def add_input(self, acc: DatasetAccumulator, element) -> DatasetAccumulator:
        actions, proprio = element
        acc.add_episode(actions, proprio)
        return acc

    def merge_accumulators(self, accumulators: Iterable[DatasetAccumulator]) -> DatasetAccumulator:
        it = iter(accumulators)
        first = next(it)
        for other in it:
            first.merge(other)
        # No compaction here: merges may be repeated many times and re-concatenating the kept values each time
        # would cost O(n) per merge. Beam calls compact() once before an accumulator is encoded.
        return first

    def compact(self, acc: DatasetAccumulator) -> DatasetAccumulator:
        acc.compact()
        return acc

    def extract_output(self, acc: DatasetAccumulator):
        return acc


class _ToEntry(beam.DoFn):
    """(name, accumulator) -> (name, statistics entry); a dataset with < 2 transitions -> failures."""

    def __init__(self, cache_keys: dict[str, str]):
        self.cache_keys = cache_keys

    def process(self, item):
        name, acc = item
        try:
            yield name, acc.to_statistics(name, self.cache_keys.get(name))
        except RecordError as e:
            yield TaggedOutput(_DATASET_FAILED, e.to_dict())


class ComputeStatistics(beam.PTransform):
    """PCollection[StandardEpisode] -> {"statistics": PCollection[(name, entry)], "failures": PCollection[dict]}.

    One entry per dataset (``StandardEpisode.source``), in the dataset_statistics.json layout. Episodes with
    non-finite values and datasets with fewer than 2 transitions come out as dead-letter dicts.
    """

    def __init__(self, settings: StatsSettings = StatsSettings(), cache_keys: dict[str, str] | None = None):
        super().__init__()
        self.settings = settings
        self.cache_keys = dict(cache_keys or {})

    def expand(self, episodes):
        checked = par_do(episodes, "CheckEpisodes", CheckEpisode())
        accumulated = checked[MAIN] | "Accumulate" >> beam.CombinePerKey(StatisticsCombineFn(self.settings))
        entries = par_do(accumulated, "ToEntry", _ToEntry(self.cache_keys), tags=(_DATASET_FAILED,))
        failures = (checked[FAILURES], entries[_DATASET_FAILED]) | "AllFailures" >> beam.Flatten()
        return {"statistics": entries[MAIN], "failures": failures}


# ---------------------------------------------------------------------------------------------------------
# cached statistics for a list of sources


def default_cache_dir() -> str:
    """``$ARMDATA_CACHE/statistics``, else ``~/.cache/armdata/statistics``."""
    from armdata.cache import cache_root

    root = str(cache_root())
    return os.path.join(root, "statistics")


def source_cache_key(source: SourceConfig, settings: StatsSettings) -> str:
    from armdata.pipeline.sources.read import data_digest

    return cache_key(source.fingerprint(with_location=False), data_digest(source),
                     settings.exact_limit, settings.sketch_k)


def _cache_path(cache_dir: str, name: str, key: str) -> str:
    return os.path.join(cache_dir, f"{name}-{key}.json")


def _read_text_outputs(prefix: str) -> list[str]:
    lines: list[str] = []
    for path in fs.glob(prefix + "*"):
        lines.extend(line for line in fs.read_bytes(path).decode("utf-8").splitlines() if line.strip())
    return lines


def _run_statistics_job(sources: list[SourceConfig], keys: dict[str, str], settings: StatsSettings,
                        beam_args: list[str], work_dir: str, budget: FailureBudget,
                        failures_path: str) -> tuple[dict[str, dict], list[dict]]:
    """One Beam pipeline over all `sources`: (name -> entry, dead letters). Stops once `budget` is spent."""
    from armdata.beam_jobs.common import read_standard_episodes

    stats_prefix = fs.join(work_dir, "statistics")
    fail_prefix = fs.join(work_dir, "failures")
    p = make_pipeline(beam_args)
    episode_pcolls, failure_pcolls = [], []
    for src in sources:
        eps, fails = read_standard_episodes(p, src, src.name)
        episode_pcolls.append(eps)
        failure_pcolls.append(fails)
    episodes = tuple(episode_pcolls) | "AllEpisodes" >> beam.Flatten()
    out = episodes | "ComputeStatistics" >> ComputeStatistics(settings, keys)
    entries_written = (
        out["statistics"]
        | "EntryToJson" >> beam.MapTuple(lambda name, entry: json.dumps({"name": name, "entry": entry}))
        | "WriteEntries" >> WriteLines(stats_prefix + ".jsonl")
    )
    failures_written = (
        (*failure_pcolls, out["failures"])
        | "AllFailures" >> beam.Flatten()
        | "FailureBudget" >> beam.Map(budget.charge)
        | "FailureToJson" >> beam.Map(lambda d: json.dumps(d, sort_keys=True))
        | "WriteFailures" >> WriteLines(fail_prefix + ".jsonl")
    )
    run_with_budget(p, budget, failures_path, sinks=[entries_written, failures_written])
    entries = {}
    for line in _read_text_outputs(stats_prefix):
        rec = json.loads(line)
        entries[rec["name"]] = rec["entry"]
    failures = [json.loads(line) for line in _read_text_outputs(fail_prefix)]
    return entries, failures


def _write_failures_atomic(path: str, failures: list[dict]) -> None:
    fs.write_bytes(path, "".join(json.dumps(d, sort_keys=True) + "\n" for d in failures).encode("utf-8"))


def statistics_for(
    sources: list[SourceConfig],
    out_dir: str,
    beam_args: list[str],
    *,
    settings: StatsSettings = StatsSettings(),
    cache_dir: str | None = None,
    use_cache: bool = True,
    max_failure_fraction: float = 0.01,
    failures_file: str = FAILURES_FILE,
) -> dict:
    """Statistics for `sources`, computed where not cached; writes ``dataset_statistics.json`` into `out_dir`.

    Returns the whole file's content (``{name: entry}``). Writes the dead letters of every source (cached ones
    included) to ``out_dir/failures_file``. Raises StatisticsError when a dataset has fewer than 2 valid
    transitions, and TooManyFailures past `max_failure_fraction` of bad episodes (over all sources computed, as
    it runs: see FailureBudget); in both cases
    nothing is cached and the failures file is still written.
    """
    names = [s.name for s in sources]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise StatisticsError(f"sources named twice: {', '.join(dupes)}")
    if not sources:
        raise StatisticsError("no sources given")
    from armdata.pipeline.output.lock import OutputLock

    with OutputLock(out_dir):
        return _statistics_locked(sources, names, out_dir, beam_args, settings, cache_dir, use_cache,
                                  max_failure_fraction, failures_file)


def _statistics_locked(sources, names, out_dir, beam_args, settings, cache_dir, use_cache, max_failure_fraction,
                       failures_file) -> dict:
    cache_dir = cache_dir or default_cache_dir()
    fs.makedirs(out_dir)
    keys = {s.name: source_cache_key(s, settings) for s in sources}

    entries: dict[str, dict] = {}
    failures: dict[str, list[dict]] = {s.name: [] for s in sources}
    todo: list[SourceConfig] = []
    for s in sources:
        path = _cache_path(cache_dir, s.name, keys[s.name])
        if use_cache and os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                cached = json.load(f)
            entries[s.name] = cached["entry"]
            failures[s.name] = cached.get("failures", [])
            logger.info("statistics of %s from the cache (%s)", s.name, path)
        else:
            todo.append(s)

    if todo:
        logger.info("computing statistics of %s", ", ".join(s.name for s in todo))
        # Beam's text outputs go to a scratch folder in the output (workers on a cluster can reach it).
        work_dir = fs.join(out_dir, f".stats-{uuid.uuid4().hex[:12]}")
        fs.makedirs(work_dir)
        from armdata.pipeline.sources.read import episode_keys

        total = sum(len(episode_keys(s)) for s in todo)
        budget = FailureBudget(total, max_failure_fraction, fs.join(work_dir, "stopped.json"), failures_file)
        try:
            fresh, fresh_failures = _run_statistics_job(todo, keys, settings, beam_args, work_dir, budget,
                                                        fs.join(out_dir, failures_file))
        finally:
            fs.delete(fs.glob(fs.join(work_dir, "*")))
            if not fs.is_remote(work_dir):
                shutil.rmtree(work_dir, ignore_errors=True)
        for d in fresh_failures:
            failures.setdefault(d.get("source"), []).append(d)
        entries.update(fresh)

    all_failures = [d for name in names for d in sorted(failures.get(name, []), key=_failure_order)]
    all_failures += [d for name, fl in failures.items() if name not in names for d in fl]
    _write_failures_atomic(fs.join(out_dir, failures_file), all_failures)

    # One budget over every source computed here, as the annotate job counts it.
    n_bad = sum(1 for s in todo for d in failures.get(s.name, []) if d.get("episode") is not None)
    n_ok = sum(entries.get(s.name, {}).get("num_trajectories", 0) for s in todo)
    if todo:
        check_failure_fraction(n_bad, n_bad + n_ok, max_failure_fraction,
                               f"episodes of {', '.join(s.name for s in todo)}", failures_file)
    missing = [n for n in names if n not in entries]
    if missing:
        dataset_level = [d["message"] for d in all_failures
                         if d.get("episode") is None and d.get("source") in missing]
        detail = "; ".join(dataset_level) or "no valid episodes"
        raise StatisticsError(f"no statistics for {', '.join(missing)}: {detail} (see {failures_file})")

    if use_cache:
        for s in todo:
            write_json_atomic(_cache_path(cache_dir, s.name, keys[s.name]),
                              {"entry": entries[s.name], "failures": failures.get(s.name, [])})
    result = {n: entries[n] for n in names}
    fs.write_bytes(fs.join(out_dir, STATISTICS_FILE), (json.dumps(result, indent=2) + "\n").encode("utf-8"))
    return result


def _failure_order(d: dict):
    return (str(d.get("episode")), -1 if d.get("step") is None else d["step"], str(d.get("field")))


# ---------------------------------------------------------------------------------------------------------
# CLI


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", action="append", required=True, metavar="FILE_OR_NAME",
                        help="a source file or the name of one in sources/ (repeat for several)")
    parser.add_argument("--out", required=True, help="output directory for dataset_statistics.json")
    parser.add_argument("--max-failure-fraction", type=float, default=0.01,
                        help="fail when more than this fraction of a source's episodes is bad (default 0.01)")
    parser.add_argument("--exact-limit", type=int, default=DEFAULT_EXACT_LIMIT,
                        help="values per dimension kept for exact quantiles; past it a sketch is used")
    parser.add_argument("--sketch-k", type=int, default=DEFAULT_SKETCH_K,
                        help="sketch buffer size per level (rank error bound ~ levels / (2k))")
    parser.add_argument("--cache-dir", default=None, help=f"statistics cache (default {default_cache_dir()})")
    parser.add_argument("--no-cache", action="store_true", help="recompute and do not write the cache")
    parser.epilog = ("Other flags are Beam pipeline options, e.g. --direct_num_workers=2 "
                     "--direct_running_mode=multi_processing, or --runner=DataflowRunner --project=...")


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    sources = [resolve_source(s) for s in args.source]
    result = statistics_for(
        sources, args.out, beam_args,
        settings=StatsSettings(exact_limit=args.exact_limit, sketch_k=args.sketch_k),
        cache_dir=args.cache_dir, use_cache=not args.no_cache, max_failure_fraction=args.max_failure_fraction,
    )
    for name, entry in result.items():
        print(f"{name}: {entry['num_trajectories']} trajectories, {entry['num_transitions']} transitions, "
              f"quantiles {entry['armdata']['quantiles']}")
    print(os.path.join(args.out, STATISTICS_FILE))
    return 0
