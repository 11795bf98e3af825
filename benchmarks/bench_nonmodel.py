"""Benchmark 2, the non-model path: the whole annotate job with the cheapest real backends (the depth camera, the
projection locator and Lucas-Kanade) against Depth Anything V2 Small at 518 alone, per frame.

Everything but the models (reading, decoding, standardizing, the depth camera's maps, the VQ-VAE, tracking,
samples, PNG/JPEG, tars, index) must cost little next to one depth model call, or the models starve at scale.
Depth Anything V2 Small runs with random weights of the real architecture, on the same sample frames, batch 1
(batch 4 is no faster per frame on CPU), after one warm-up frame.

    python benchmarks/bench_nonmodel.py [--episodes 6 --steps 40] [--model-frames 3]

Goal: the job's seconds per frame <= 1/20 of Depth Anything V2 Small's at 518 (>= 20x faster).
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
    ap.add_argument("--episodes", type=int, default=6)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--model-frames", type=int, default=3)
    args = ap.parse_args(argv)
    header("benchmark 2: the job without models vs Depth Anything V2 Small at 518 alone")

    import numpy as np

    from armdata.annotators.depth.estimator import make_depth_backend
    from armdata.beam_jobs.annotate import annotate_sources
    from armdata.pipeline.sources.rlds import read_episodes
    from armdata.pipeline.sources.standardize import standardize
    from armdata.pipeline.stages.config import load_config

    tmp = workdir("bench-nonmodel-")
    src, stats, tok = job_inputs(tmp, sample_source(tmp, args.episodes, args.steps))
    cfg = load_config(None, None, **{**base_flags(tok), "output.episodes_per_shard": 2})
    frames = args.episodes * args.steps
    t0 = time.perf_counter()
    res = annotate_sources([src], fresh(tmp, "out"), cfg, stats, [])
    job = time.perf_counter() - t0
    assert res.samples == frames and res.episodes_failed == 0, res
    assert res.provenance["depth"]["per_source"][src.name] == "depth-camera"

    import torch

    torch.set_num_threads(cfg.torch_threads)
    ep = standardize(next(iter(read_episodes(src))), src)
    da = make_depth_backend("depth-anything", model=random_depth_model(tmp, "small"), input_size=518, batch_size=1)
    da.setup()
    da.process_batch(ep.primary[:1])  # warm-up
    t0 = time.perf_counter()
    for i in range(args.model_frames):
        da.process_batch(np.ascontiguousarray(ep.primary[i : i + 1]))
    model = (time.perf_counter() - t0) / args.model_frames

    per_frame = job / frames
    print(f"data: built-in sample, {args.episodes} x {args.steps} = {frames} frames of 128x160; "
          f"{cfg.torch_threads} torch thread(s), in-process runner")
    print(f"job, depth camera + projection + LK: {job:.2f} s = {per_frame * 1000:.1f} ms/frame "
          f"({frames / job:.1f} frames/s, start-up included)")
    print(f"Depth Anything V2 Small @518 alone: {model * 1000:.0f} ms/frame ({args.model_frames} frames, batch 1)")
    goal("non-model path faster per frame than DA-V2-Small@518", model / per_frame, ">=", 20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
