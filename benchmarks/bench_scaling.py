"""Benchmark 3, scaling: the annotate job with 1 and 2 worker processes (``--direct_num_workers``).

Both runs use Beam's multi-process runner (``--direct_running_mode multi_processing``), so both pay a worker
process's start-up (imports, model loads); each worker uses one torch thread (the config's ``torch_threads``).
Depth Anything V2 Small (random weights) at input 252 makes the model the cost, as at scale. Speed-up = time
with 1 worker / time with 2 workers, on the same episodes, in one run of this script.

    python benchmarks/bench_scaling.py [--episodes 8 --steps 16] [--depth-camera]

Goal: >= 1.7x with 2 workers (on a 2-core machine; other processes on the machine take their share).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench import base_flags, fresh, workdir, goal, header, job_inputs, random_depth_model, sample_source  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=8)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--input-size", type=int, default=252)
    ap.add_argument("--depth-camera", action="store_true", help="no model: the non-model path's scaling")
    args = ap.parse_args(argv)
    header("benchmark 3: 1 vs 2 worker processes")

    from armdata.beam_jobs.annotate import annotate_sources
    from armdata.pipeline.stages.config import load_config

    tmp = workdir("bench-scaling-")
    src, stats, tok = job_inputs(tmp, sample_source(tmp, args.episodes, args.steps))
    flags = {**base_flags(tok), "output.episodes_per_shard": 2}
    if not args.depth_camera:
        flags["depth.model"] = random_depth_model(tmp, "small")
    cfg = load_config(None, [f"depth.input_size={args.input_size}"], **flags)
    frames = args.episodes * args.steps
    seconds, shards = {}, {}
    for n in (1, 2):
        beam_args = [f"--direct_num_workers={n}", "--direct_running_mode=multi_processing"]
        t0 = time.perf_counter()
        res = annotate_sources([src], fresh(tmp, f"out{n}"), cfg, stats, beam_args)
        seconds[n] = time.perf_counter() - t0
        assert res.samples == frames and res.episodes_failed == 0, res
        shards[n] = sorted(res.shards)

    what = "depth camera (no model)" if args.depth_camera else f"Depth Anything V2 Small (random) at {args.input_size}"
    print(f"data: built-in sample, {args.episodes} x {args.steps} = {frames} frames of 128x160; depth: {what}; "
          f"{cfg.torch_threads} torch thread(s) per worker")
    for n, s in seconds.items():
        print(f"{n} worker process(es): {s:.2f} s, {frames / s:.2f} frames/s (start-up included)")
    goal("speed-up with 2 worker processes", seconds[1] / seconds[2], ">=", 1.7,
         why=f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
