"""``armdata annotate``: episodes -> reasoning samples in sharded WebDataset, resumable, on Beam.

ReadRecords -> Standardize -> Depth -> DepthCodes -> Trace -> Samples (statistics as a side input) -> one tar
part per episode in the work folder -> shards. Finished episodes (their part exists for this config hash) are
skipped before decoding; shards are assembled from the parts in key order with fixed tar metadata, so a resumed
run ends with exactly the bytes of an uninterrupted one.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.pvalue import AsSingleton, TaggedOutput
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils.shared import Shared

from armdata import __version__
from armdata.beam_jobs.common import (
    FAILURES,
    MAIN,
    METRICS_NAMESPACE,
    FailureBudget,
    check_failure_fraction,
    finish_bundle_outputs_kept,
    join_sinks,
    make_pipeline,
    par_do,
    run_with_budget,
    read_standard_episodes_resumable,
    write_failures,
)
from armdata.pipeline.stages.batching import EpisodeBatcher
from armdata.pipeline.stages.annotate import (
    DepthCodeStage,
    DepthStage,
    EpisodeWork,
    SampleStage,
    TraceStageRunner,
    locator_for,
    require_depth_tokenizer,
    stage_error,
)
from armdata.pipeline.output.lock import OutputLock
from armdata.pipeline.stages.fit import FIT_FILE, load_tables
from armdata.pipeline.output.shards import iter_tar, write_tar
from armdata.pipeline.stages.config import AnnotateConfig, load_config
from armdata.pipeline import fs
from armdata.pipeline.sources.read import check_against_data, episode_keys
from armdata.schemas.errors import ArmdataError
from armdata.schemas.sample import (
    FAILURES_FILE,
    INDEX_FILE,
    STATS_FILE,
    SHARDS_DIR,
    ShardManifest,
    shard_name,
)
from armdata.schemas.source import SourceConfig, resolve_source

logger = logging.getLogger(__name__)

ACCEPTS_BEAM_ARGS = True
WORK_DIR = ".work"


def episode_id(source: str, episode: str) -> str:
    return f"{source}__{episode}"


def _ep_hash(ep_id: str) -> int:
    return int(hashlib.sha256(ep_id.encode()).hexdigest()[:16], 16)


@dataclass(frozen=True)
class ShardPlan:
    """Episodes go to shards by a hash of their id, cut at the hash quantiles of all the sources' episode ids:
    stable across runs, runners and worker counts, and balanced (no empty shard). Only the n-1 cut points travel
    to workers."""

    num_shards: int
    cuts: tuple[int, ...]

    @classmethod
    def make(cls, ep_ids: list[str], episodes_per_shard: int) -> "ShardPlan":
        n = max(1, math.ceil(len(ep_ids) / episodes_per_shard))
        hashes = sorted(_ep_hash(e) for e in ep_ids)
        cuts = tuple(hashes[(i * len(hashes)) // n] for i in range(1, n)) if hashes else ()
        return cls(n, cuts)

    def shard_of(self, ep_id: str) -> int:
        return bisect.bisect_right(self.cuts, _ep_hash(ep_id))


def _load_once(shared: Shared, stage, tag: str):
    """The stage with its model loaded, once per worker process: DoFn instances (one per runner thread) share it."""

    def load():
        stage.setup()
        return stage

    return shared.acquire(load, tag=tag)


class BatchedStageFn(beam.DoFn):
    """Runs one model stage over episodes in calls that span episodes (``EpisodeBatcher``); its model loads once
    per worker process.

    Episodes wait in a per-bundle buffer until their frames have run (at most the episode being filled plus fewer
    than a batch of frames of the one before); ``finish_bundle`` runs what is left. A retried bundle starts with an
    empty buffer and nothing is written before the last stage, so retries and resume stay exact.

    ``across_episodes=False`` runs each episode's last partial batch before the next episode (no buffer across
    episodes): for runners that drop what ``finish_bundle`` emits (Beam 2.77's Dask runner).
    """

    def __init__(self, stage, field_name: str, across_episodes: bool = True, require_cuda: bool = False):
        self.stage = stage
        self.field_name = field_name
        self.across_episodes = across_episodes
        self.require_cuda = require_cuda
        self._shared = Shared()
        # GPU discipline: throughput and batch size per model stage, as metrics (frames per busy second).
        self.rate = beam.metrics.Metrics.distribution(METRICS_NAMESPACE, f"{field_name}_frames_per_s")
        self.batch = beam.metrics.Metrics.distribution(METRICS_NAMESPACE, f"{field_name}_batch_size")
        self._busy_s = 0.0
        self._bundle_frames = 0
        self.failed = beam.metrics.Metrics.counter(METRICS_NAMESPACE, f"{field_name}_failed")
        self.frames = beam.metrics.Metrics.counter(METRICS_NAMESPACE, f"{field_name}_frames")
        self.calls = beam.metrics.Metrics.counter(METRICS_NAMESPACE, f"{field_name}_model_calls")
        self.padded = beam.metrics.Metrics.counter(METRICS_NAMESPACE, f"{field_name}_padded_inputs")
        self.batcher: EpisodeBatcher | None = None

    def setup(self):
        if self.require_cuda:
            check_cuda_visible(self.field_name)
        self.stage = _load_once(self._shared, self.stage, self.field_name)
        if not getattr(BatchedStageFn, f"_logged_{self.field_name}", False):  # once per worker process
            setattr(BatchedStageFn, f"_logged_{self.field_name}", True)
            logger.info("%s: batch %s, %s", self.field_name, getattr(self.stage, "batch_size", "?"),
                        _device_and_dtype(self.stage))

    def start_bundle(self):
        self.batcher = EpisodeBatcher(self.stage)
        self._busy_s, self._bundle_frames = 0.0, 0

    def process(self, work: EpisodeWork):
        t0 = time.perf_counter()
        outcomes = list(self.batcher.add(work))
        if not self.across_episodes:
            outcomes += list(self.batcher.flush())
        self._busy_s += time.perf_counter() - t0
        for outcome in outcomes:
            yield self._emit(outcome)

    def finish_bundle(self):
        t0 = time.perf_counter()
        outcomes = list(self.batcher.flush())
        self._busy_s += time.perf_counter() - t0
        for outcome in outcomes:
            out = self._emit(outcome)
            if isinstance(out, TaggedOutput):
                yield TaggedOutput(out.tag, GlobalWindows.windowed_value(out.value))
            else:
                yield GlobalWindows.windowed_value(out)
        self.calls.inc(self.batcher.calls)
        self.padded.inc(self.batcher.padded)
        if self._bundle_frames and self._busy_s > 0:
            self.rate.update(int(round(self._bundle_frames / self._busy_s)))
            self.batch.update(int(getattr(self.stage, "batch_size", 0) or 0))

    def _emit(self, outcome):
        if outcome.error is not None:  # a dead letter for this episode, not the end of the job
            self.failed.inc()
            return TaggedOutput(FAILURES, outcome.error.to_dict())
        self.frames.inc(outcome.work.episode.num_steps)
        self._bundle_frames += outcome.work.episode.num_steps
        return outcome.work


def _device_and_dtype(stage) -> str:
    """Where a loaded stage's models run, from the attributes its model objects carry (device, dtype)."""
    found = []
    for obj in [stage, *vars(stage).values(), *(v for d in vars(stage).values() if isinstance(d, dict)
                                                 for v in d.values())]:
        device = getattr(obj, "device", None)
        if device is not None and not callable(device):
            dtype = getattr(obj, "dtype_name", None) or getattr(obj, "dtype", None)
            found.append(f"{type(obj).__name__} on {device}" + (f" ({dtype})" if dtype is not None else ""))
    return "; ".join(dict.fromkeys(found)) or "no model (CPU code)"


def check_cuda_visible(what: str) -> None:
    """On a GPU preset a worker without a visible CUDA device fails at start: never a silent CPU fallback."""
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError(f"{what}: this job runs on a GPU preset but CUDA is not visible on this worker "
                           f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); refusing to run on CPU")
    logger.info("%s: CUDA device %s (%s)", what, torch.cuda.get_device_name(0), torch.version.cuda)


class _SampleFailed(Exception):
    """A sample of the episode could not be made (carries the error through the tar writer)."""

    def __init__(self, error: Exception):
        super().__init__(str(error))
        self.error = error


class WriteEpisodePart(beam.DoFn):
    """Samples of one episode -> ``{parts}/{source}__{episode}.tar`` (atomic), then (shard index, episode id)."""

    def __init__(self, stage: SampleStage, parts_dir: str, plan: ShardPlan):
        self.stage = stage
        self.parts_dir = parts_dir
        self.plan = plan
        self._shared = Shared()
        self.annotated = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "episodes_annotated")
        self.samples = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "samples_written")
        self.failed = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "samples_failed")

    def setup(self):
        self.stage = _load_once(self._shared, self.stage, "samples")

    def process(self, work: EpisodeWork, statistics: dict):
        ep_id = episode_id(work.episode.source, work.episode.episode_key)
        count = 0

        def samples():  # streamed into the tar, one sample in memory at a time
            nonlocal count
            it = self.stage.iter_samples(work, statistics)
            while True:
                try:
                    item = next(it)
                except StopIteration:
                    return
                except Exception as e:  # the episode's fault; a failing write (disk full) is not caught here
                    raise _SampleFailed(e) from e
                count += 1
                yield item

        try:  # a failure part-way leaves no part behind (the tar is written under a temporary name)
            write_tar(fs.join(self.parts_dir, f"{ep_id}.tar"), samples())
        except _SampleFailed as f:
            self.failed.inc()
            yield TaggedOutput(FAILURES, stage_error(work, "sample", f.error).to_dict())
            return
        self.annotated.inc()
        self.samples.inc(count)
        yield self.plan.shard_of(ep_id), ep_id


class WriteShard(beam.DoFn):
    """(shard index, episode ids) -> the shard tar from the parts in id order, its manifest and index rows."""

    def __init__(self, parts_dir: str, shards_dir: str, index_dir: str, num_shards: int, config_hash: str):
        self.parts_dir = parts_dir
        self.shards_dir = shards_dir
        self.index_dir = index_dir
        self.num_shards = num_shards
        self.config_hash = config_hash

    def process(self, item):
        index, ep_ids = item
        ep_ids = sorted(set(ep_ids))
        name = shard_name(index, self.num_shards)
        rows: list[dict] = []
        digests: dict[str, dict[str, str]] = {}

        def samples():
            # One episode part in memory at a time: a shard of long episodes never has to fit in memory.
            for ep_id in ep_ids:
                for key, members in iter_tar(fs.join(self.parts_dir, f"{ep_id}.tar")):
                    ann = json.loads(members["json"])
                    rows.append({"key": key, "shard": name, "source": ann["source"], "episode": ann["episode"],
                                 "source_episode_id": ann["source_episode_id"], "step": ann["step"],
                                 "instruction": ann["instruction"], "flags": ann["flags"]})
                    digests[key] = {ext: hashlib.sha256(b).hexdigest() for ext, b in sorted(members.items())}
                    yield key, members

        num_bytes, sha256 = write_tar(fs.join(self.shards_dir, name), samples())
        manifest = ShardManifest(
            shard=name, num_samples=len(rows), num_bytes=num_bytes, sha256=sha256,
            keys=[r["key"] for r in rows], episodes=ep_ids, config_hash=self.config_hash, members=digests,
        )
        fs.write_bytes(fs.join(self.shards_dir, name[: -len(".tar")] + ".json"), manifest.to_json().encode())
        fs.write_bytes(fs.join(self.index_dir, name + ".json"), json.dumps(rows).encode())
        yield name


@dataclass(frozen=True)
class AnnotateResult:
    out_dir: str
    config_hash: str
    num_shards: int
    shards: list[str]
    episodes_total: int
    episodes_annotated: int
    episodes_skipped: int
    episodes_failed: int
    samples: int
    provenance: dict


def _core_model_provenance(cfg: AnnotateConfig, sources: list[SourceConfig]) -> dict:
    """The depth model's, the depth tokenizer's and the action tokenizer's identity and licence, read without
    loading the big ones here (the machine that launches a cluster job may have no GPU); the depth tokenizer's
    layout is checked (fail early)."""
    from armdata.annotators.actions.tokenizer import ActionTokenizer

    depth = DepthStage(cfg, sources)
    tok = ActionTokenizer.from_pretrained(cfg.actions.tokenizer)
    return {
        "depth": {"backends": depth.provenance(), "per_source": depth.backend_of},
        "depth_tokenizer": DepthCodeStage(cfg).provenance(),
        "action_tokenizer": {"name_or_path": cfg.actions.tokenizer, "vocab_size": tok.vocab_size,
                             "revision": getattr(tok, "revision", None) or local_digest(cfg.actions.tokenizer),
                             "fingerprint": tok.fingerprint()},
    }


def _model_provenance(cfg: AnnotateConfig, sources: list[SourceConfig], fit_data=None, core: dict | None = None) -> dict:
    """Every model as workers will load it: the core models (:func:`_core_model_provenance`) and the trace's."""
    return {**(core or _core_model_provenance(cfg, sources)),
            "trace": TraceStageRunner(cfg, sources, fit_data).provenance()}


def check_unique_sources(sources: list[SourceConfig]) -> None:
    """Two sources of one name would write the same sample keys (one silently overwriting the other)."""
    names = [s.name for s in sources]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        files = [s.origin or s.name for s in sources if s.name in dupes]
        raise ArmdataError(f"source name {', '.join(dupes)} is used by more than one source ({', '.join(files)}); "
                           "sample keys start with the source name, so each must be unique")
    if not sources:
        raise ArmdataError("no sources given")


def check_unique_episodes(all_ids: list[str]) -> None:
    seen: set[str] = set()
    dupes = sorted({e for e in all_ids if e in seen or seen.add(e)})
    if dupes:
        raise ArmdataError(f"{len(dupes)} episode ids occur twice (e.g. {dupes[0]}): two shard files of a split "
                           "share a shard number; sample keys would collide")


def local_digest(path: str) -> str | None:
    """``sha256:...`` of a local model directory or file (its revision), None for a hub id."""
    import os

    from armdata.annotators.depth.estimator import content_digest

    return content_digest(path) if os.path.exists(path) else None


_IDENTITY_KEYS = ("revision", "sha256", "fingerprint")


def resume_inputs(statistics: dict, provenance: dict) -> dict:
    """What the resume key must see beyond the config: the statistics' content and every model's revision or
    content digest (a rerun after new statistics or new weights under the same name starts afresh)."""
    found: dict[str, str] = {}

    def walk(node, path: str) -> None:
        if isinstance(node, dict):
            for k, v in sorted(node.items()):
                if k in _IDENTITY_KEYS and not isinstance(v, (dict, list)):
                    found[f"{path}{k}"] = str(v)
                else:
                    walk(v, f"{path}{k}.")

    walk(provenance, "")
    stats = hashlib.sha256(json.dumps(statistics, sort_keys=True).encode()).hexdigest()
    return {"statistics_sha256": stats, "models": found}


def data_fingerprint(source: SourceConfig) -> str:
    """The source's settings and a digest of its data's dataset_info/features, not where the data lies: the same
    data read from a local folder or a bucket gives the same config hash, so the same shards, and a job can resume
    after the data moved."""
    from armdata.pipeline.sources.read import data_digest

    body = source.fingerprint(with_location=False) + data_digest(source)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def annotate_sources(
    sources: list[SourceConfig],
    out_dir: str,
    cfg: AnnotateConfig,
    statistics: dict,
    beam_args: list[str],
) -> AnnotateResult:
    """Run the job; returns counts. Resumes from ``OUT/.work/<config hash>`` when it exists. Holds the output
    folder's lock (another run into it is refused) and stops as soon as the failure budget is spent."""
    check_unique_sources(sources)
    require_depth_tokenizer(cfg, sources)
    with OutputLock(out_dir):
        return _annotate_locked(sources, fs.absolute(out_dir), cfg, statistics, beam_args)


@dataclass(frozen=True)
class _JobPlan:
    """What the launching process decides before building the pipeline: where the work goes, which episodes exist
    and which are done, the shard plan, the failure budget."""

    out_dir: str
    config_hash: str
    parts_dir: str
    index_dir: str
    shards_dir: str
    all_ids: list[str]
    done: set[str]
    plan: ShardPlan
    budget: FailureBudget
    provenance: dict
    fit_data: object = None  # camera fits for sources on the fit locator (beam_jobs/fit_cameras.py)


def _plan_job(sources, out_dir: str, cfg: AnnotateConfig, statistics: dict, beam_args: list[str]) -> _JobPlan:
    for s in sources:  # a source file that does not match its data fails here, before anything is loaded
        check_against_data(s)
    uses_fit = {s.name: locator_for(cfg, s) == "fit" for s in sources}
    tables = load_tables(sources, cfg.trace.points, uses_fit)  # read once; their contents go into the hash
    models = _core_model_provenance(cfg, sources)  # read before the hash: new weights or statistics start afresh
    config_hash = cfg.config_hash([data_fingerprint(s) for s in sources] + tables.fingerprints(), __version__,
                                  resume_inputs(statistics, models))
    work = fs.join(out_dir, WORK_DIR, config_hash)
    parts_dir, index_dir = fs.join(work, "episodes"), fs.join(work, "index")
    shards_dir = fs.join(out_dir, SHARDS_DIR)
    all_ids = [episode_id(s.name, k) for s in sources for k in episode_keys(s)]
    check_unique_episodes(all_ids)
    for d in (parts_dir, index_dir, shards_dir):
        fs.makedirs(d)
    done = {fs.basename(f)[: -len(".tar")] for f in fs.glob(fs.join(parts_dir, "*.tar"))}
    budget = FailureBudget(len(all_ids), cfg.max_failure_fraction, fs.join(work, "stopped.json"))
    plan = ShardPlan.make(all_ids, cfg.output.episodes_per_shard)
    fit_data = None
    if any(uses_fit.values()):
        from armdata.beam_jobs.fit_cameras import fit_cameras

        fit_data = fit_cameras(sources, cfg.trace, tables, work, beam_args)
        fs.write_bytes(fs.join(out_dir, FIT_FILE), json.dumps(fit_data.to_dict(), indent=1, sort_keys=True).encode())
    return _JobPlan(out_dir, config_hash, parts_dir, index_dir, shards_dir, all_ids, done, plan, budget,
                    _model_provenance(cfg, sources, fit_data, models), fit_data)


def _build_pipeline(job: _JobPlan, sources, cfg: AnnotateConfig, statistics: dict, beam_args) -> tuple:
    """The annotate pipeline, not run: (pipeline, its sinks)."""
    p = make_pipeline(beam_args)
    stats_side = p | "Statistics" >> beam.Create([statistics])
    episodes, failures, skipped = [], [], []
    for s in sources:
        skip = frozenset(k.split("__", 1)[1] for k in job.done if k.split("__", 1)[0] == s.name)
        e, f, sk = read_standard_episodes_resumable(p, s, s.name, skip)
        episodes.append(e)
        failures.append(f)
        skipped.append(sk | f"Done[{s.name}]" >> beam.Map(lambda k, n=s.name: episode_id(n, k)))
    eps = (episodes | "AllEpisodes" >> beam.Flatten()) | "Work" >> beam.Map(EpisodeWork)
    stages = [
        ("Depth", DepthStage(cfg, sources), "depth"),
        ("DepthCodes", DepthCodeStage(cfg), "depth_codes"),
        ("Trace", TraceStageRunner(cfg, sources, job.fit_data), "trace"),
    ]
    cross_episode = finish_bundle_outputs_kept(beam_args)
    for label, stage, field_name in stages:
        res = par_do(eps, label, BatchedStageFn(stage, field_name, across_episodes=cross_episode,
                                                 require_cuda=cfg.require_cuda))
        eps = res[MAIN]
        failures.append(res[FAILURES])
    written = par_do(eps, "Samples", WriteEpisodePart(SampleStage(cfg, job.config_hash), job.parts_dir, job.plan),
                     AsSingleton(stats_side))
    failures.append(written[FAILURES])
    plan = job.plan
    done_parts = (skipped | "AllSkipped" >> beam.Flatten()) | "DoneToShard" >> beam.Map(
        lambda ep_id: (plan.shard_of(ep_id), ep_id)
    )
    shards_written = (
        (written[MAIN], done_parts)
        | "AllParts" >> beam.Flatten()
        | "ByShard" >> beam.GroupByKey()
        | "WriteShards" >> beam.ParDo(WriteShard(job.parts_dir, job.shards_dir, job.index_dir, plan.num_shards,
                                                 job.config_hash))
    )
    all_failures = failures | "AllFailures" >> beam.Flatten()
    failures_written = write_failures(all_failures | "FailureBudget" >> beam.Map(job.budget.charge), job.out_dir)
    return p, [shards_written, failures_written]


def annotate_pipeline(sources: list[SourceConfig], out_dir: str, cfg: AnnotateConfig, statistics: dict,
                      beam_args: list[str]):
    """The whole annotate pipeline on the runner ``beam_args`` name, constructed and not submitted (to inspect its
    options and graph; ``annotate_sources`` runs it)."""
    check_unique_sources(sources)
    job = _plan_job(sources, fs.absolute(out_dir), cfg, statistics, beam_args)
    p, sinks = _build_pipeline(job, sources, cfg, statistics, beam_args)
    join_sinks(sinks)
    return p


def _annotate_locked(sources, out_dir: str, cfg: AnnotateConfig, statistics: dict, beam_args) -> AnnotateResult:
    job = _plan_job(sources, out_dir, cfg, statistics, beam_args)
    config_hash, parts_dir, index_dir, shards_dir = job.config_hash, job.parts_dir, job.index_dir, job.shards_dir
    all_ids, done, num_shards, provenance = job.all_ids, job.done, job.plan.num_shards, job.provenance
    total = len(all_ids)
    logger.info("annotate: %d episodes, %d already done (config %s), %d shards", total, len(done), config_hash,
                num_shards)
    p, sinks = _build_pipeline(job, sources, cfg, statistics, beam_args)
    run_with_budget(p, job.budget, fs.join(out_dir, FAILURES_FILE), sinks=sinks)

    names = [n for n in (shard_name(i, num_shards) for i in range(num_shards))
             if fs.exists(fs.join(index_dir, n + ".json")) and _current(shards_dir, n, config_hash)]
    _remove_stale(shards_dir, names)
    rows = _write_index(out_dir, index_dir, names)
    # Counts come from what the job wrote, not from Beam metrics: not every runner reports metrics (Dask's
    # raises), and a retried bundle can count twice where a part file exists once.
    parts = {fs.basename(f)[: -len(".tar")] for f in fs.glob(fs.join(parts_dir, "*.tar"))}
    id_set = set(all_ids)
    annotated = len((parts - done) & id_set)
    skipped_n = len(done & id_set)
    failed = sum(1 for line in fs.read_bytes(fs.join(out_dir, FAILURES_FILE)).splitlines() if line.strip())
    check_failure_fraction(failed, total, cfg.max_failure_fraction)
    _remove_scratch(out_dir, config_hash)
    return AnnotateResult(out_dir, config_hash, num_shards, names, total, annotated, skipped_n, failed, rows,
                          provenance)


def _current(shards_dir: str, name: str, config_hash: str) -> bool:
    path = fs.join(shards_dir, name[: -len(".tar")] + ".json")
    if not fs.exists(path):
        return False
    return ShardManifest.from_json(fs.read_bytes(path).decode()).config_hash == config_hash


def _remove_stale(shards_dir: str, keep: list[str]) -> None:
    """Shards of another config or shard count: a changed config never leaves old samples beside new ones."""
    keep_set = set(keep) | {n[: -len(".tar")] + ".json" for n in keep}
    fs.delete([f for f in fs.glob(fs.join(shards_dir, "*")) if fs.basename(f) not in keep_set])


def _remove_scratch(out_dir: str, config_hash: str) -> None:
    """After a successful run: work folders of other configs and temporary files of killed writers. The current
    config's episode parts stay (a rerun reassembles its shards from them)."""
    import shutil

    if fs.is_remote(out_dir):
        return
    work_root = fs.join(out_dir, WORK_DIR)
    for name in os.listdir(work_root) if os.path.isdir(work_root) else []:
        if name != config_hash:
            shutil.rmtree(os.path.join(work_root, name), ignore_errors=True)
    for root, _, files in os.walk(out_dir):
        for f in files:
            if ".tmp-" in f:
                os.remove(os.path.join(root, f))


def _write_index(out_dir: str, index_dir: str, names: list[str]) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for n in names:
        rows.extend(json.loads(fs.read_bytes(fs.join(index_dir, n + ".json"))))
    table = pa.Table.from_pylist(
        rows,
        schema=pa.schema([("key", pa.string()), ("shard", pa.string()), ("source", pa.string()),
                          ("episode", pa.string()), ("source_episode_id", pa.string()), ("step", pa.int32()), ("instruction", pa.string()),
                          ("flags", pa.list_(pa.string()))]),
    )
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf)
    fs.write_bytes(fs.join(out_dir, INDEX_FILE), buf.getvalue().to_pybytes())
    return len(rows)


# -- CLI ---------------------------------------------------------------------------------------------------------

def add_config_flags(parser) -> None:
    parser.add_argument("--source", action="append", required=True, help="source file or known source name (repeatable)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--config", help="annotate config YAML (see armdata/pipeline/stages/config.py)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE", help="override a config field")
    parser.add_argument("--depth-model", help="Depth Anything hub id or local dir (default: the source's depth camera if any)")
    parser.add_argument("--depth-tokenizer", help="VQ-VAE checkpoint (.pt in the AiT layout, or .safetensors)")
    parser.add_argument("--tokenizer", help="action tokenizer hub id or local dir (default Qwen/Qwen2-7B)")
    parser.add_argument("--trace-mode", choices=["track", "point-every-frame", "point-keyframes"])
    parser.add_argument("--locator", help="projection | fit | hint | pointer | auto")
    parser.add_argument("--tracker", help="auto (default: cotracker where installed with --tracker-checkpoint, else "
                        "hybrid) | hybrid | lk | template | cotracker | sam2")
    parser.add_argument("--tracker-checkpoint", help="cotracker: CoTracker3 .pth; sam2: Sam2Video checkpoint dir or id")
    parser.add_argument("--tracker-device", help="torch device of the cotracker/sam2 tracker (cuda on GPU workers)")
    parser.add_argument("--pointer-model", help="pointing VLM (Molmo 2, or Molmo 1 with --pointer-trust-remote-code)")
    parser.add_argument("--pointer-trust-remote-code", action="store_true", default=None,
                        help="let a Molmo 1 checkpoint run the code it ships (needed by allenai/Molmo-7B-D-0924)")
    parser.add_argument("--pointer-device", help="torch device of the pointer (cuda on GPU workers)")
    parser.add_argument("--points", action="append", default=None, metavar="FILE",
                        help="points table (JSONL, Parquet, or ECoT's embodied_features_bridge .json) for the fit "
                        "locator; repeatable; adds to the source file's locator_points")
    parser.add_argument("--episodes-per-shard", type=int)
    parser.add_argument("--max-failure-fraction", type=float)


def config_from_args(args) -> AnnotateConfig:
    from armdata.beam_jobs.presets import preset_config

    preset = preset_config(getattr(args, "preset", None))  # under the flags and --set, which win
    flags = {
        "depth.model": args.depth_model,
        "depth_tokenizer.checkpoint": args.depth_tokenizer,
        "actions.tokenizer": args.tokenizer,
        "trace.mode": args.trace_mode,
        "trace.locator": args.locator,
        "trace.tracker": args.tracker,
        "trace.tracker_checkpoint": args.tracker_checkpoint,
        "trace.tracker_device": args.tracker_device,
        "trace.pointer_model": args.pointer_model,
        "trace.pointer_trust_remote_code": args.pointer_trust_remote_code,
        "trace.pointer_device": args.pointer_device,
        "trace.points": args.points,
        "output.episodes_per_shard": args.episodes_per_shard,
        "max_failure_fraction": args.max_failure_fraction,
    }
    return load_config(args.config, args.set, **{**preset, **{k: v for k, v in flags.items() if v is not None}})


def configure(parser) -> None:
    add_config_flags(parser)
    parser.add_argument("--statistics", help="dataset_statistics.json from `armdata stats` (default: OUT's, else computed)")


def load_statistics(path: str) -> dict:
    return json.loads(fs.read_bytes(path))


def check_trace_setup(cfg: AnnotateConfig, sources: list[SourceConfig]) -> None:
    """A tracker or pointer that cannot run (no checkpoint, a missing extra, an unknown name) fails here, with a
    named error, before any data is read or any statistics computed."""
    from armdata.pipeline.stages.trace import check_trace_extras

    runner = TraceStageRunner(cfg, sources)
    for locator in sorted(set(runner.locator_of.values())):
        check_trace_extras(runner.trace_config(locator))


def run(args, beam_args) -> int:
    sources = [resolve_source(s) for s in args.source]
    check_unique_sources(sources)
    cfg = config_from_args(args)
    check_trace_setup(cfg, sources)
    stats_path = args.statistics or cfg.actions.statistics or fs.join(args.out, STATS_FILE)
    if not fs.exists(stats_path):
        raise ArmdataError(f"no action statistics at {stats_path}: run `armdata stats` first or use `armdata build`")
    res = annotate_sources(sources, args.out, cfg, load_statistics(stats_path), beam_args)
    print(f"annotated {res.episodes_annotated} episodes ({res.episodes_skipped} already done, "
          f"{res.episodes_failed} failed) -> {res.samples} samples in {res.num_shards} shards under "
          f"{fs.join(res.out_dir, SHARDS_DIR)}")
    return 0
