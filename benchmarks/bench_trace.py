"""Trace benchmark, one run: LK tracker speed at 256x320 against plain OpenCV LK; the default tracker (hybrid) against
LK and the template tracker on a differently drawn robot (frames held, error, speed, ratios to LK); trace error on
the built-in sample (track + the default tracker seeded by projection / hint), and pointer calls of point-keyframes vs point-every-frame on
50-step episodes with a stand-in pointer (ground truth + noise).

    python benchmarks/bench_trace.py [--episodes 6] [--noise-px 1.0]

Everything is measured in this run on this machine; ratios compare numbers from the same run.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from armdata.annotators.track.lk import LKTracker  # noqa: E402
from armdata.pipeline.audit.trace_eval import (  # noqa: E402
    StandInPointerFromGroundTruth,
    evaluate_traces,
    ground_truth,
    summarize,
)
from armdata.pipeline.stages.trace import TraceAnnotator, TraceConfig  # noqa: E402


def bench_lk(frames_n: int = 100, repeats: int = 3) -> None:
    from trace_factory import moving_patch_video, smooth_path

    h, w = 256, 320
    gt = smooth_path(frames_n, h, w, seed=0)
    frames = moving_patch_video(gt, h, w, patch=28, seed=0)
    q = np.array([[0, *gt[0]]])
    tr = LKTracker()
    best = 1e9
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = tr.track(frames, q, size_px=28)
        best = min(best, time.perf_counter() - t0)
    err = np.linalg.norm(res.tracks[:, 0] - gt, axis=1)
    # Baseline: bare pyramidal LK on the one point, no checks, no support features.
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    base = 1e9
    for _ in range(repeats):
        t0 = time.perf_counter()
        p = q[:, 1:].reshape(-1, 1, 2).astype(np.float32)
        for i in range(1, len(gray)):
            p, _, _ = cv2.calcOpticalFlowPyrLK(gray[i - 1], gray[i], p, None, winSize=(15, 15), maxLevel=3)
        base = min(base, time.perf_counter() - t0)
    print(f"lk tracker, 256x320, {frames_n} frames, 1 point: {frames_n / best:.0f} frames/s "
          f"(mean error {err.mean():.3f} px, visible {res.visible.mean():.2f})")
    print(f"bare cv2 LK baseline: {frames_n / base:.0f} frames/s; armdata lk / baseline speed = {base / best:.2f}x")


def bench_drawn(episodes: int = 6) -> None:
    """Trackers seeded exactly on frame 0 of a 50-step differently drawn robot (blur, JPEG, 1.7x scale change)."""
    from trace_factory import drawn_robot_episode

    from armdata.annotators.track import TRACKERS

    rows = {}
    data = [drawn_robot_episode(seed=s) for s in range(episodes)]
    for name in ("lk", "template", "hybrid"):
        held, errs, secs = [], [], 0.0
        for frames, gt, size in data:
            tr = TRACKERS.create(name)
            t0 = time.perf_counter()
            res = tr.track(frames, np.array([[0, *gt[0]]]), size_px=size[0])
            secs += time.perf_counter() - t0
            v = res.visible[:, 0]
            err = np.linalg.norm(res.tracks[:, 0] - gt, axis=1)
            bad = v & (err > np.maximum(5.0, 0.25 * size))
            h = min(int(np.argmax(bad)) if bad.any() else len(gt), int(np.nonzero(v)[0].max()) + 1)
            held.append(h)
            errs.append(float(err[:h][v[:h]].mean()))
        rows[name] = (held, float(np.mean(errs)), secs / (len(data) * len(data[0][0])))
    print(f"\ndifferently drawn robot, {episodes} episodes x 50 frames at 240x320, seeded exactly on frame 0:")
    for name, (held, err, spf) in rows.items():
        print(f"  {name:<9} frames held {held} (mean {np.mean(held):.1f}), mean error while held {err:.2f} px, "
              f"{1000 * spf:.1f} ms/frame")
    base = rows["lk"]
    for name in ("template", "hybrid"):
        print(f"  {name} / lk: frames held {np.mean(rows[name][0]) / max(1e-9, np.mean(base[0])):.1f}x, "
              f"time per frame {rows[name][2] / base[2]:.1f}x")


def sample_episodes(steps: int | None, episodes: int):
    """The built-in sample read through the real reader and standardizer (steps=None: the built-in default)."""
    from armdata.pipeline.sources.rlds import read_episodes
    from armdata.synthetic.world import make_sample
    from armdata.pipeline.sources.standardize import standardize
    from armdata.schemas.source import DataLocation, resolve_source

    src = resolve_source("sample")
    if steps is not None:
        out = tempfile.mkdtemp(prefix="bench-trace-")
        d = make_sample(out, episodes=episodes, steps=steps)
        src = src.model_copy(update={"data": DataLocation(dir=d)})
    return src, [standardize(e, src) for e in read_episodes(src, limit=episodes)]


def run_mode(src, eps, cfg: TraceConfig, locator=None, source_for=None) -> dict:
    ann = TraceAnnotator(cfg, locator=locator)
    errs, calls, flagged, t0 = [], 0, 0, time.perf_counter()
    for ep in eps:
        s = source_for(ep) if source_for else src
        pts = ann.annotate(ep, s)
        gt_uv, gt_vis = ground_truth(ep)
        errs.append(evaluate_traces(pts.points_uv, pts.visible, gt_uv, gt_vis, *ep.image_size)["errors"])
        calls += pts.pointer_calls
        flagged += sum(bool(f) for f in pts.flags)
    out = summarize(errs)
    out.update(calls=calls, flagged_frames=flagged, seconds=time.perf_counter() - t0)
    return out


def line(name: str, r: dict) -> str:
    return (f"{name:<44} trace-point error mean {r['mean']:.2f}  p95 {r['p95']:.2f}  max {r['max']:.2f}  "
            f"(n={r['n']})  pointer calls {r['calls']}  flagged frames {r['flagged_frames']}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=6)
    ap.add_argument("--noise-px", type=float, default=1.0, help="stand-in pointer noise (pixels, per axis)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    bench_lk()
    bench_drawn()

    src, eps = sample_episodes(None, args.episodes)
    h, w = eps[0].image_size
    print(f"\nbuilt-in sample: {len(eps)} episodes x {eps[0].num_steps} steps, {w}x{h}; errors in [0,255] units")
    print(line("track + default tracker, seeded by projection", run_mode(src, eps, TraceConfig(mode="track", locator="projection"))))

    from armdata.schemas.source import LocatorHint

    def hinted_src(ep):
        u, v = ground_truth(ep)[0][0]
        return src.model_copy(update={"locator_hint": LocatorHint(pixel=(float(u), float(v)))})

    print(line("track + default tracker, seeded by hint (frame-0 pixel)", run_mode(src, eps, TraceConfig(mode="track", locator="hint"),
                                                                       source_for=hinted_src)))

    src50, eps50 = sample_episodes(50, args.episodes)
    print(f"\nsample re-rendered at 50 steps: {len(eps50)} episodes; stand-in pointer = ground truth + "
          f"N(0, {args.noise_px} px) per axis")
    every = run_mode(src50, eps50, TraceConfig(mode="point-every-frame", locator="pointer", pointer_model="stand-in"),
                     locator=StandInPointerFromGroundTruth(args.noise_px, seed=0))
    keyf = run_mode(src50, eps50, TraceConfig(mode="point-keyframes", locator="pointer", pointer_model="stand-in",
                                              keyframe_every=10),
                    locator=StandInPointerFromGroundTruth(args.noise_px, seed=0))
    track = run_mode(src50, eps50, TraceConfig(mode="track", locator="projection"))
    print(line("point-every-frame (stand-in pointer)", every))
    print(line("point-keyframes K=10 (stand-in pointer)", keyf))
    print(line("track + default tracker, seeded by projection", track))
    print(f"pointer calls every-frame / keyframes = {every['calls'] / max(1, keyf['calls']):.1f}x fewer; "
          f"mean error keyframes / every-frame = {keyf['mean'] / every['mean']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
