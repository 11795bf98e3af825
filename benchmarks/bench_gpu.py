"""Benchmark 6, GPU: the depth stage inside the annotate job against the model alone, same batch size, bf16.

Where CUDA is present: Depth Anything V2 Small (random weights of the real architecture) at input 518 and 224.
"Model alone" is the forward pass on pixel values already on the GPU (bf16, ``--batch`` frames per call, after a
warm-up, synchronised); "in the job" is the annotate job's frames/s with ``depth.device=cuda`` and
``batch.depth.cuda=--batch`` (reading, preprocessing, depth codes, tracking, samples included). Where CUDA is
absent it says so and exits 0.

    python benchmarks/bench_gpu.py [--batch 64] [--episodes 8 --steps 64] [--sizes 518,224]

Goal: the job's frames/s >= 0.8 x the model's alone.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench import base_flags, fresh, workdir, goal, header, job_inputs, random_depth_model, sample_source  # noqa: E402


def model_alone(model_dir: str, size: int, batch: int, frames, calls: int = 5) -> float:
    """Frames/s of the bare forward pass, bf16, on preprocessed frames already on the GPU."""
    import torch
    from transformers import AutoModelForDepthEstimation

    model = AutoModelForDepthEstimation.from_pretrained(model_dir).to("cuda", torch.bfloat16).eval()
    from armdata.annotators.depth.estimator import make_depth_backend

    be = make_depth_backend("depth-anything", model=model_dir, input_size=size, device="cuda", batch_size=batch)
    be.setup()
    chunk = list(frames[:batch]) * (batch // max(1, len(frames[:batch])) + 1)
    pix = be.processor(images=chunk[:batch], return_tensors="pt", size={"height": size, "width": size})
    pix = pix["pixel_values"].to("cuda", torch.bfloat16)
    with torch.inference_mode():
        model(pixel_values=pix)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(calls):
            model(pixel_values=pix)
        torch.cuda.synchronize()
    return calls * batch / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--episodes", type=int, default=8)
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--sizes", default="518,224")
    args = ap.parse_args(argv)
    header("benchmark 6: depth stage in the job vs the model alone on a GPU (bf16)")
    import torch

    if not torch.cuda.is_available():
        print("SKIPPED: no CUDA device on this machine (torch.cuda.is_available() is False); no GPU figure measured")
        return 0

    from armdata.beam_jobs.annotate import annotate_sources
    from armdata.pipeline.sources.rlds import read_episodes
    from armdata.pipeline.sources.standardize import standardize
    from armdata.pipeline.stages.config import load_config

    tmp = workdir("bench-gpu-")
    model = random_depth_model(tmp, "small")
    src, stats, tok = job_inputs(tmp, sample_source(tmp, args.episodes, args.steps, height=256, width=256))
    frames = args.episodes * args.steps
    sample_frames = standardize(next(iter(read_episodes(src))), src).primary
    for size in (int(s) for s in args.sizes.split(",")):
        cfg = load_config(None, [f"depth.input_size={size}", "depth.device=cuda", f"batch.depth.cuda={args.batch}"],
                          **{**base_flags(tok), "depth.model": model, "output.episodes_per_shard": 4})
        t0 = time.perf_counter()
        res = annotate_sources([src], fresh(tmp, f"out{size}"), cfg, stats, [])
        job = frames / (time.perf_counter() - t0)
        assert res.samples == frames and res.episodes_failed == 0, res
        alone = model_alone(model, size, args.batch, sample_frames)
        print(f"input {size}: job {job:.1f} frames/s (start-up included), model alone {alone:.1f} frames/s, "
              f"batch {args.batch}, bf16, {torch.cuda.get_device_name(0)}")
        goal(f"job / model alone at {size}", job / alone, ">=", 0.8)
    return 0


if __name__ == "__main__":
    sys.exit(main())
