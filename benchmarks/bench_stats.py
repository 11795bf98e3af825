"""Statistics throughput: transitions per second of the statistics job against a plain numpy pass, in one run.

The data is the real Bridge sample (sources/bridge_debug.yaml), standardized once, its episodes repeated
``--repeat`` times (with distinct keys) so that the timed work is not lost in start-up costs. Frames are
replaced by 1x1 images: this measures the statistics work, not the moving of pictures.

Rows:
  numpy            concatenate every action and state, then mean/std/min/max/np.quantile (the reference)
  accumulator      DatasetAccumulator, one episode at a time, merged over 8 partial accumulators (no Beam)
  beam, no stats   the same episodes made inside a Beam pipeline (FnApiRunner, this process), only counted:
                   Beam's own cost per episode, the floor for any Beam step
  beam + stats     the same pipeline with ComputeStatistics
  job end-to-end   statistics_for on the real sample: read TFRecords, decode, standardize, statistics, write
                   (only 250 transitions: start-up dominates; printed for scale, not as a ratio to trust)

Run: python benchmarks/bench_stats.py [--repeat 200]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import tempfile
import time

import numpy as np


def _load_base():
    from armdata.pipeline.sources.rlds import read_episodes
    from armdata.pipeline.sources.standardize import standardize
    from armdata.schemas.source import resolve_source

    source = resolve_source("bridge_debug")
    base = []
    for e in read_episodes(source):
        ep = standardize(e, source)
        # 1x1 frames: the base travels inside the pipeline graph (pickled, compressed) and must stay small.
        base.append(dataclasses.replace(ep, primary=np.zeros((ep.num_steps, 1, 1, 3), np.uint8), primary_jpeg=None,
                                        extra_views={}, extra_jpeg={}, metadata={}))
    return source, base


def _copies(base, r: int):
    """Copy r of the base episodes, with distinct keys."""
    for ep in base:
        yield dataclasses.replace(ep, episode_key=f"{ep.episode_key}-r{r}")


def _episodes(repeat: int):
    source, base = _load_base()
    return source, base, [e for r in range(repeat) for e in _copies(base, r)]


def _numpy_pass(eps) -> float:
    t0 = time.perf_counter()
    for block in ("actions", "proprio"):
        x = np.concatenate([getattr(e, block) for e in eps]).astype(np.float64)
        x.mean(0), x.std(0), x.min(0), x.max(0), np.quantile(x, [0.01, 0.99], axis=0)
    return time.perf_counter() - t0


def _accumulator_pass(eps) -> float:
    from armdata.pipeline.statistics.actions import DatasetAccumulator

    t0 = time.perf_counter()
    parts = [DatasetAccumulator() for _ in range(8)]
    for i, e in enumerate(eps):
        parts[i % 8].add_episode(e.actions, e.proprio)
    total = parts[0]
    for p in parts[1:]:
        total.merge(p)
    total.to_statistics("bench")
    return time.perf_counter() - t0


def _beam_pass(base, repeat: int, with_stats: bool) -> float:
    """Episodes are made inside the pipeline from copy numbers (beam.Create of the episodes themselves would
    time the pickling of the data into the pipeline graph). Without stats: the same pipeline, counting."""
    import apache_beam as beam
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from armdata.beam_jobs.stats import ComputeStatistics

    t0 = time.perf_counter()
    with beam.Pipeline(runner=FnApiRunner()) as p:
        eps = p | beam.Create(list(range(repeat))) | beam.FlatMap(lambda r: _copies(base, r))
        if with_stats:
            eps | ComputeStatistics()
        else:
            eps | beam.Map(lambda e: (e.source, e.num_steps)) | beam.CombinePerKey(sum)
    return time.perf_counter() - t0


def _job_pass(source) -> tuple[float, int]:
    from armdata.beam_jobs.stats import statistics_for

    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        out = statistics_for([source], d, [], use_cache=False)
        return time.perf_counter() - t0, out[source.name]["num_transitions"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=200, help="copies of the 25 Bridge episodes (default 200)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    source, base, eps = _episodes(args.repeat)
    n = sum(e.num_steps for e in eps)
    print(f"data: {len(eps)} episodes, {n} transitions (bridge_debug x {args.repeat}); action 7 + state 7 dims")
    rows = [("numpy", min(_numpy_pass(eps) for _ in range(3)))]
    rows.append(("accumulator", min(_accumulator_pass(eps) for _ in range(3))))
    # Best of 2, alternating, so neither Beam row pays the first pipeline's warm-up alone.
    beam_times = {False: [], True: []}
    for _ in range(2):
        for with_stats in (False, True):
            beam_times[with_stats].append(_beam_pass(base, args.repeat, with_stats))
    rows.append(("beam, no stats", min(beam_times[False])))
    rows.append(("beam + stats", min(beam_times[True])))
    base = rows[0][1]
    print(f"{'path':<16}{'seconds':>10}{'transitions/s':>16}{'vs numpy':>10}")
    for name, sec in rows:
        print(f"{name:<16}{sec:>10.3f}{n / sec:>16,.0f}{base / sec:>10.3f}")
    sec, n_job = _job_pass(source)
    print(f"{'job end-to-end':<16}{sec:>10.3f}{n_job / sec:>16,.0f}{'':>10}  ({n_job} transitions, start-up included)")


if __name__ == "__main__":
    main()
