"""End-to-end annotate throughput on the built-in sample against its slowest stage alone, in one run.

Prints frames/s of the whole Beam job (read, standardize, depth, depth codes, trace, samples, shards) and of
each stage run alone in-process on the same standardized episodes, and the ratio end-to-end / slowest stage:
how close the job comes to the bound its slowest stage sets.

    python benchmarks/bench_annotate.py [--episodes 6 --steps 40] [--depth-model DIR]
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time

import yaml


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=6)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--depth-model", help="Depth Anything dir (default: the sample's depth camera)")
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from armdata.annotators.actions.tokenizer import make_test_tokenizer
    from armdata.beam_jobs.annotate import annotate_sources
    from armdata.beam_jobs.stats import statistics_for
    from armdata.pipeline.stages.annotate import DepthCodeStage, DepthStage, EpisodeWork, SampleStage, TraceStageRunner
    from armdata.pipeline.stages.config import load_config
    from armdata.pipeline.sources.rlds import read_episodes
    from armdata.synthetic.world import make_sample
    from armdata.pipeline.sources.standardize import standardize
    from armdata.schemas.source import builtin_sources_dir, load_source

    tmp = tempfile.mkdtemp(prefix="bench-annotate-")
    data = make_sample(os.path.join(tmp, "data"), episodes=args.episodes, steps=args.steps)
    spec = yaml.safe_load((builtin_sources_dir() / "sample.yaml").read_text())
    spec["data"]["dir"] = data
    src_path = os.path.join(tmp, "sample.yaml")
    with open(src_path, "w") as f:
        yaml.safe_dump(spec, f)
    src = load_source(src_path)
    from armdata.annotators.depth.tokenizer import default_demo_tokenizer_path

    cfg = load_config(None, None, **{"actions.tokenizer": make_test_tokenizer(os.path.join(tmp, "tok")),
                                     "depth_tokenizer.checkpoint": default_demo_tokenizer_path(),
                                     "depth.model": args.depth_model, "output.episodes_per_shard": 2})
    stats = statistics_for([src], os.path.join(tmp, "stats"), [], use_cache=False)
    frames = args.episodes * args.steps

    beam_args = [] if args.workers == 1 else [f"--direct_num_workers={args.workers}",
                                              "--direct_running_mode=multi_processing"]
    t0 = time.perf_counter()
    res = annotate_sources([src], os.path.join(tmp, "out"), cfg, stats, beam_args)
    e2e = time.perf_counter() - t0
    assert res.samples == frames, (res.samples, frames)

    episodes = [standardize(e, src) for e in read_episodes(src)]
    stages = {"depth": DepthStage(cfg, [src]), "depth_codes": DepthCodeStage(cfg),
              "trace": TraceStageRunner(cfg, [src]), "samples": SampleStage(cfg, "bench")}
    for s in stages.values():
        s.setup()
    works = [EpisodeWork(e) for e in episodes]
    alone = {}
    for name, stage in stages.items():
        t0 = time.perf_counter()
        for w in works:
            if name == "samples":
                stage.process(w, stats)
            else:
                stage.process(w)
        alone[name] = time.perf_counter() - t0

    print(f"built-in sample: {args.episodes} episodes x {args.steps} steps = {frames} frames, "
          f"{args.workers} worker process(es), depth from {'model ' + args.depth_model if args.depth_model else 'the depth camera'}")
    print(f"{'what':<28}{'seconds':>10}{'frames/s':>12}")
    print(f"{'end-to-end (Beam job)':<28}{e2e:>10.2f}{frames / e2e:>12.1f}")
    for name, sec in alone.items():
        print(f"{'stage alone: ' + name:<28}{sec:>10.2f}{frames / sec:>12.1f}")
    slow = max(alone, key=alone.get)
    print(f"slowest stage: {slow}; end-to-end / slowest-stage throughput = {alone[slow] / e2e:.3f}")


if __name__ == "__main__":
    main()
