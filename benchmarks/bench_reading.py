"""Benchmark 5, reading: armdata's reader against plain ``tfds`` iteration over the same builder dir, and JPEG
pass-through against decode + re-encode.

Reading: frames/s of ``armdata.pipeline.sources.rlds.read_episodes`` (decodes the cameras the source file names,
keeps their stored JPEG bytes, stacks actions and state) against ``tfds.builder_from_directory(dir).as_dataset``
iterated with ``tfds.as_numpy`` (every step, every image decoded), on the real Bridge sample
(../shared/data/rlds/bridge_debug) and on the built-in sample. Passes alternate (armdata, tfds, armdata, ...)
so that load on a shared machine hits both alike; the best pass of each counts.

Pass-through: the sample stage (templates, JSON, traj.png, image members) per frame when the image members are
the source's own JPEG bytes, against the same stage when every view is decoded and re-encoded (quality 95).

    python benchmarks/bench_reading.py [--passes 3] [--sample-episodes 6 --sample-steps 40]

Goal: armdata's reader >= 0.9 x plain tfds iteration's frames/s.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench import base_flags, workdir, REPO, goal, header, job_inputs, sample_source  # noqa: E402


def read_armdata(src) -> int:
    from armdata.pipeline.sources.rlds import read_episodes

    return sum(ep.num_steps for ep in read_episodes(src))


def read_tfds(builder_dir: str, split: str) -> int:
    import tensorflow_datasets as tfds

    ds = tfds.builder_from_directory(builder_dir).as_dataset(split=split)
    n = 0
    for ep in tfds.as_numpy(ds):
        for _step in ep["steps"]:
            n += 1
    return n


def compare_reading(name: str, src, passes: int) -> float:
    from armdata.pipeline.sources.rlds import resolve_data_dir

    builder_dir = resolve_data_dir(src)
    read_armdata(src), read_tfds(builder_dir, src.data.split)  # warm-up: imports, file cache, graph building
    best = {"armdata": float("inf"), "tfds": float("inf")}
    frames = 0
    for _ in range(passes):
        for who, fn in (("armdata", lambda: read_armdata(src)), ("tfds", lambda: read_tfds(builder_dir, src.data.split))):
            t0 = time.perf_counter()
            frames = fn()
            best[who] = min(best[who], time.perf_counter() - t0)
    print(f"{name}: {frames} frames; armdata reader {frames / best['armdata']:.0f} frames/s, "
          f"plain tfds {frames / best['tfds']:.0f} frames/s (best of {passes})")
    return best["tfds"] / best["armdata"]


def compare_pass_through(src, stats, tok) -> float:
    from armdata.pipeline.sources.rlds import read_episodes
    from armdata.pipeline.sources.standardize import standardize
    from armdata.pipeline.stages.annotate import EpisodeWork, SampleStage
    from armdata.pipeline.stages.config import load_config
    from armdata.pipeline.stages.trace import EpisodePoints

    cfg = load_config(None, None, **base_flags(tok))
    episodes = [standardize(e, src) for e in read_episodes(src)]

    def no_points(t: int) -> EpisodePoints:  # Bridge has no locator here; the images are what is measured
        return EpisodePoints(np.full((t, 2), np.nan, np.float32), np.zeros(t, bool), [""] * t,
                             np.zeros(t, np.float32), [[] for _ in range(t)], 0)

    works = [EpisodeWork(e, points=no_points(e.num_steps)) for e in episodes]
    recoded = [dataclasses.replace(w, episode=dataclasses.replace(w.episode, primary_jpeg=None, extra_jpeg={}))
               for w in works]
    stage = SampleStage(cfg, "bench")
    stage.setup()
    frames = sum(e.num_steps for e in episodes)
    best = {"pass": float("inf"), "recode": float("inf")}
    for _ in range(3):
        for who, ws in (("pass", works), ("recode", recoded)):
            t0 = time.perf_counter()
            for w in ws:
                stage.process(w, stats)
            best[who] = min(best[who], time.perf_counter() - t0)
    import cv2

    decode = time.perf_counter()
    for e in episodes:
        for b in [*(e.primary_jpeg or []), *[x for v in e.extra_jpeg.values() for x in v]]:
            cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR)
    decode = time.perf_counter() - decode
    print(f"sample stage on {src.name} ({frames} frames, {1 + len(episodes[0].extra_views)} views): "
          f"{best['pass'] / frames * 1000:.2f} ms/frame passing the stored JPEG through, "
          f"{(best['recode'] + decode) / frames * 1000:.2f} ms/frame decoding ({decode / frames * 1000:.2f}) "
          f"and re-encoding every view")
    return (best["recode"] + decode) / best["pass"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--sample-episodes", type=int, default=6)
    ap.add_argument("--sample-steps", type=int, default=40)
    args = ap.parse_args(argv)
    header("benchmark 5: reading, and JPEG pass-through")

    from armdata.schemas.source import load_source

    tmp = workdir("bench-reading-")
    bridge_path = REPO / "sources" / "bridge_debug.yaml"
    ratios = {}
    if bridge_path.exists() and os.path.isdir(REPO.parent / "shared" / "data" / "rlds" / "bridge_debug"):
        ratios["bridge_debug (real, 64x64 JPEG, 4 cameras)"] = compare_reading(
            "bridge_debug", load_source(bridge_path), args.passes)
    else:
        print("bridge_debug: data not found next to the repository; skipped")
    sample, stats, tok = job_inputs(tmp, sample_source(tmp, args.sample_episodes, args.sample_steps))
    ratios["built-in sample (128x160, RGB + depth camera)"] = compare_reading("built-in sample", sample, args.passes)
    for name, r in ratios.items():
        goal(f"armdata reader / plain tfds, {name}", r, ">=", 0.9)
    if bridge_path.exists() and "bridge_debug (real, 64x64 JPEG, 4 cameras)" in ratios:
        bridge = load_source(bridge_path)
        _, bstats, _ = job_inputs(tmp, str(bridge_path))
        r = compare_pass_through(bridge, bstats, tok)
        print(f"FIGURE decode + re-encode / pass-through, sample stage per frame: {r:.2f}x (no goal; pass-through "
              f"also keeps the stored bytes exactly)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
