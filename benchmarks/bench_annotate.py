"""Benchmark 1, overhead: the annotate job's frames/s against its slowest model stage alone on the same frames.

The job (Beam's in-process runner: read, standardize, depth, depth codes, trace, samples, shards) runs on the
built-in sample with Depth Anything V2 Small (random weights of the real architecture) at input 252, so that the
model is the cost as at scale. Each stage then runs alone in this process on the same standardized episodes, with
the job's batching (``EpisodeBatcher``) and thread count. The job's start-up (pipeline, worker, model loads) is
measured on a 1-episode, 2-step run and must be under 10% of the measured run.

    python benchmarks/bench_annotate.py [--episodes 6 --steps 20] [--input-size 252] [--arch small]

Goal: job frames/s >= 0.9 x the slowest stage's frames/s alone.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench import base_flags, fresh, workdir, goal, header, job_inputs, random_depth_model, sample_source  # noqa: E402


def stage_alone(stage, works, stats=None) -> float:
    """Seconds for one stage over all episodes, batched across them as the job batches."""
    from armdata.pipeline.stages.batching import EpisodeBatcher

    t0 = time.perf_counter()
    if stats is not None:  # the sample stage is not a model stage: per episode
        for w in works:
            stage.process(w, stats)
        return time.perf_counter() - t0
    batcher = EpisodeBatcher(stage)
    done = []
    for w in works:
        done.extend(batcher.add(w))
    done.extend(batcher.flush())
    assert all(o.error is None for o in done), [o.error for o in done if o.error]
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=6)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--input-size", type=int, default=252)
    ap.add_argument("--arch", default="small", help="small (V2-Small) or tiny")
    args = ap.parse_args(argv)
    header("benchmark 1: annotate job vs its slowest model stage alone")

    from armdata.beam_jobs.annotate import annotate_sources
    from armdata.pipeline.sources.rlds import read_episodes
    from armdata.pipeline.sources.standardize import standardize
    from armdata.pipeline.stages.annotate import DepthCodeStage, DepthStage, EpisodeWork, SampleStage, TraceStageRunner
    from armdata.pipeline.stages.config import load_config

    tmp = workdir("bench-annotate-")
    model = random_depth_model(tmp, args.arch)
    src, stats, tok = job_inputs(tmp, sample_source(tmp, args.episodes, args.steps))
    small, small_stats, _ = job_inputs(tmp, sample_source(tmp, 1, 2, seed=1))
    cfg = load_config(None, [f"depth.input_size={args.input_size}"],
                      **{**base_flags(tok), "depth.model": model, "output.episodes_per_shard": 2})
    frames = args.episodes * args.steps

    t0 = time.perf_counter()
    annotate_sources([small], fresh(tmp, "out-startup"), cfg, small_stats, [])
    startup = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = annotate_sources([src], fresh(tmp, "out"), cfg, stats, [])
    job = time.perf_counter() - t0
    assert res.samples == frames and res.episodes_failed == 0, res

    episodes = [standardize(e, src) for e in read_episodes(src)]
    works = [EpisodeWork(e) for e in episodes]
    stages = {"depth": DepthStage(cfg, [src]), "depth_codes": DepthCodeStage(cfg),
              "trace": TraceStageRunner(cfg, [src]), "samples": SampleStage(cfg, "bench")}
    alone = {}
    for name, stage in stages.items():
        stage.setup()
        alone[name] = stage_alone(stage, works, stats if name == "samples" else None)
    model_stages = ("depth", "depth_codes", "trace")
    slow = max(model_stages, key=alone.get)

    print(f"data: built-in sample, {args.episodes} episodes x {args.steps} steps = {frames} frames of 128x160; "
          f"depth: Depth Anything V2 {args.arch} (random weights) at {args.input_size}, batch "
          f"{cfg.batch.depth.cpu}, {cfg.torch_threads} torch thread(s), in-process runner")
    print(f"{'what':<34}{'seconds':>10}{'frames/s':>12}")
    print(f"{'job (whole Beam run)':<34}{job:>10.2f}{frames / job:>12.2f}")
    print(f"{'job start-up (1 ep x 2 steps)':<34}{startup:>10.2f}{'':>12}")
    for name, sec in alone.items():
        print(f"{'stage alone: ' + name:<34}{sec:>10.2f}{frames / sec:>12.2f}")
    share = startup / job
    print(f"start-up share of the run: {share:.1%} (must be < 10% for the figure to count)")
    goal("job / slowest model stage alone (" + slow + ")", alone[slow] / job, ">=", 0.9,
         why="start-up included" + ("" if share < 0.1 else "; start-up >= 10%: run with more --episodes"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
