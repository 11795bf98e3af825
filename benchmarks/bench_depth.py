"""Depth Anything V2 frames/s on this machine: tiny and Small architectures, input 252 and 518, batch 1 and 4.

Random weights of the real architectures (saved and loaded through the users' path, ``DepthAnythingBackend``);
speed does not depend on the weights. Frames are 256x256 RGB (Bridge's size). Each setting processes the same
frames once to warm up, then ``--frames`` frames timed, in one run; ratios compare settings of that run only.

    python benchmarks/bench_depth.py [--frames 8] [--threads N] [--archs tiny,small] [--sizes 252,518]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--archs", default="tiny,small")
    ap.add_argument("--sizes", default="252,518")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import torch
    from transformers.utils import logging as hf_logging

    from armdata.annotators.depth.estimator import DepthAnythingBackend
    from armdata.annotators.depth.random_init import save_random_depth_anything

    hf_logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)
    frames = np.random.default_rng(0).integers(0, 256, (args.frames, 256, 256, 3), dtype=np.uint8)
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, cpu count {os.cpu_count()}, "
          f"{args.frames} frames of 256x256 per setting")
    results: dict[tuple[str, int, int], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs.split(","):
            model_dir = save_random_depth_anything(os.path.join(tmp, arch), arch)
            for size in (int(s) for s in args.sizes.split(",")):
                for batch in (1, 4):
                    b = DepthAnythingBackend(model=model_dir, input_size=size, batch_size=batch, device=args.device)
                    b.setup()
                    b.process_batch(frames[:batch])  # warm-up
                    t0 = time.perf_counter()
                    for i in range(0, len(frames), batch):
                        b.process_batch(frames[i : i + batch])
                    dt = time.perf_counter() - t0
                    fps = len(frames) / dt
                    results[(arch, size, batch)] = fps
                    ms = dt / len(frames) * 1000
                    print(f"{arch:5s} input {size}  batch {batch}: {fps:7.2f} frames/s  ({ms:7.1f} ms/frame)")
                    sys.stdout.flush()
    print("ratios (same run):")
    for arch in args.archs.split(","):
        sizes = [int(s) for s in args.sizes.split(",")]
        for size in sizes:
            r = results[(arch, size, 4)] / results[(arch, size, 1)]
            print(f"  {arch} {size}: batch 4 / batch 1 frames/s = {r:.2f}")
        if len(sizes) == 2:
            r = results[(arch, sizes[0], 1)] / results[(arch, sizes[1], 1)]
            print(f"  {arch} batch 1: input {sizes[0]} / input {sizes[1]} frames/s = {r:.2f}")
    archs = args.archs.split(",")
    if len(archs) == 2:
        for size in (int(s) for s in args.sizes.split(",")):
            r = results[(archs[0], size, 1)] / results[(archs[1], size, 1)]
            print(f"  input {size} batch 1: {archs[0]} / {archs[1]} frames/s = {r:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
